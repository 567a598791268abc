// PATCH /v1/emails/:id against real parts: a scheduled email's time and its queued jobs move
// together, a running sender leaves it alone until the new time and then delivers it, the
// timeline says why, and every email that is no longer scheduled, or not the caller's, is refused;
// the resend SDK's emails.update unchanged.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { Resend } from 'resend';
import { startInbox, type Inbox } from '../dev/inbox.js';
import type { Sender } from '../sender/worker.js';
import { eventually } from './helpers/eventually.js';
import {
  sendingDomain,
  startTestPlatform,
  startTestSender,
  tenant,
  type TestPlatform,
} from './helpers/platform.js';

let platform: TestPlatform;
let inbox: Inbox;
let sender: Sender;
let key: string;
let otherKey: string;

const SECOND = 1000;

async function call(method: string, path: string, body?: unknown, apiKey = key, type = 'application/json') {
  const res = await fetch(platform.url + path, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': type },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function schedule(to: string, at: Date | null): Promise<string> {
  const res = await call('POST', '/v1/emails', {
    from: 'hello@example.com',
    to,
    subject: `For ${to}`,
    text: 'Hi',
    ...(at ? { scheduled_at: at.toISOString() } : {}),
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.id as string;
}

const reschedule = (id: string, at: Date | string, apiKey = key) =>
  call('PATCH', `/v1/emails/${id}`, { scheduled_at: typeof at === 'string' ? at : at.toISOString() }, apiKey);

/** The run_at of each send_message job of the email's messages. */
async function jobsOf(emailId: string): Promise<Date[]> {
  const { rows } = await sql<{ run_at: Date }>`
    select j.run_at from graphile_worker._private_jobs j
    join messages m on j.payload->>'messageId' = m.id::text
    where m.email_id = ${emailId} order by j.run_at`.execute(platform.database.db);
  return rows.map((r) => r.run_at);
}

const delivered = (to: string) => inbox.messages().find((m) => m.envelope.to.includes(to));

before(async () => {
  inbox = await startInbox();
  platform = await startTestPlatform({ MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${inbox.smtpPort}` });
  await platform.apply([
    tenant('globex', [{ name: 'app', scopes: ['send', 'read'] }]),
    sendingDomain('globex-com', 'globex', 'globex.example'),
  ]);
  key = platform.keys.get('default/acme/backend')!;
  otherKey = platform.keys.get('default/globex/app')!;
  sender = await startTestSender(platform);
});
after(async () => {
  await sender?.stop();
  await platform?.close();
  await inbox?.close();
});

describe('rescheduling', () => {
  test('the email and its jobs move together; the sender waits for the new time, then delivers it', async () => {
    const first = new Date(Date.now() + 2 * SECOND);
    const id = await schedule('ada@example.org', first);
    assert.deepEqual(await jobsOf(id), [first]);

    const later = new Date(Date.now() + 60 * 60 * SECOND);
    const moved = await reschedule(id, later);
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    assert.deepEqual(moved.body, { object: 'email', id });
    assert.deepEqual(await jobsOf(id), [later]);
    const read = await call('GET', `/v1/emails/${id}`);
    assert.equal(read.body.scheduled_at, later.toISOString());
    assert.equal(read.body.last_event, 'scheduled', 'Resend’s word for an email waiting for its time');
    const events = read.body.events as {
      type: string;
      scheduled_at?: string;
      previous_scheduled_at?: string;
    }[];
    assert.deepEqual(
      events.map((e) => e.type),
      ['queued', 'scheduled', 'scheduled'],
    );
    assert.equal(Date.parse(events[2]!.scheduled_at!), later.getTime());
    assert.equal(Date.parse(events[2]!.previous_scheduled_at!), first.getTime());

    // Past the first time, with a sender running: still waiting.
    await sleep(first.getTime() - Date.now() + 3 * SECOND);
    assert.equal(delivered('ada@example.org'), undefined);
    assert.equal((await call('GET', `/v1/emails/${id}`)).body.status, 'queued');

    // Brought forward, it goes at its new time and not before.
    const soon = new Date(Date.now() + 2 * SECOND);
    assert.equal((await reschedule(id, soon)).status, 200);
    await eventually('delivered at the new time', async () => delivered('ada@example.org'));
    const sent = (await call('GET', `/v1/emails/${id}`)).body as {
      status: string;
      events: { type: string; at: string }[];
    };
    assert.equal(sent.status, 'delivered');
    const attempt = sent.events.find((e) => e.type === 'sending')!;
    assert.ok(Date.parse(attempt.at) >= soon.getTime(), `${attempt.at} is before ${soon.toISOString()}`);

    // Sent: there is nothing left to move.
    const refused = await reschedule(id, new Date(Date.now() + 60 * SECOND));
    assert.equal(refused.status, 409);
    assert.equal(refused.body.name, 'not_reschedulable');
    assert.match(String(refused.body.detail), /scheduled time has come|sent to/);
  });

  test('a time already past sends now, as on a send', async () => {
    const id = await schedule('grace@example.org', new Date(Date.now() + 60 * 60 * SECOND));
    assert.equal((await reschedule(id, '2020-01-01T00:00:00Z')).status, 200);
    await eventually('delivered now', async () => delivered('grace@example.org'));
  });

  test('an email not scheduled, canceled, or being sent is refused with 409 and changes nothing', async () => {
    const now = await schedule('alan@example.org', null);
    const notScheduled = await reschedule(now, new Date(Date.now() + 60 * 60 * SECOND));
    assert.equal(notScheduled.status, 409);
    assert.match(String(notScheduled.body.detail), /not scheduled/);

    const canceled = await schedule('barbara@example.org', new Date(Date.now() + 60 * 60 * SECOND));
    assert.equal((await call('POST', `/v1/emails/${canceled}/cancel`)).status, 200);
    const jobs = await jobsOf(canceled);
    const refused = await reschedule(canceled, new Date(Date.now() + 2 * 60 * 60 * SECOND));
    assert.equal(refused.status, 409);
    assert.match(String(refused.body.detail), /canceled/);
    assert.deepEqual(await jobsOf(canceled), jobs);

    // A job a sender holds is not moved, and then nothing is.
    const held = await schedule('edsger@example.org', new Date(Date.now() + 60 * 60 * SECOND));
    await sql`update graphile_worker._private_jobs set locked_at = now(), locked_by = 'a-sender'
      where payload->>'messageId' in (select id::text from messages where email_id = ${held})`.execute(
      platform.database.db,
    );
    const busy = await reschedule(held, new Date(Date.now() + 2 * 60 * 60 * SECOND));
    assert.equal(busy.status, 409);
    assert.match(String(busy.body.detail), /being sent/);
    const read = await call('GET', `/v1/emails/${held}`);
    assert.equal((read.body.events as unknown[]).length, 2, 'queued and scheduled, no more');
  });

  test('a reschedule that meets a sender settling one of its messages waits for it, and neither fails', async () => {
    const id = await schedule('ken@example.org', new Date(Date.now() + 60 * 60 * SECOND));
    const { rows } = await sql<{ id: string; tenant_id: string }>`
      select id, tenant_id from messages where email_id = ${id}`.execute(platform.database.db);
    const message = rows[0]!;
    // As a sender settles: the message's row first, then an event, whose foreign key checks the email.
    const settling = await platform.database.pool.connect();
    try {
      await settling.query('begin');
      await settling.query('update messages set updated_at = now() where id = $1', [message.id]);
      const moving = reschedule(id, new Date(Date.now() + 2 * 60 * 60 * SECOND));
      await sleep(300);
      await settling.query(
        `insert into events (tenant_id, email_id, message_id, type, detail) values ($1, $2, $3, 'scheduled', '{}')`,
        [message.tenant_id, id, message.id],
      );
      await settling.query('commit');
      assert.equal((await moving).status, 200);
    } finally {
      settling.release();
    }
  });

  test('scheduled_at is checked as on a send: RFC 3339, at most 30 days ahead, and nothing else changes', async () => {
    const id = await schedule('linus@example.org', new Date(Date.now() + 60 * 60 * SECOND));
    for (const [body, field, message] of [
      [{ scheduled_at: 'tomorrow' }, 'scheduled_at', /RFC 3339/],
      [{ scheduled_at: '2030-02-30T09:00:00Z' }, 'scheduled_at', /day 30/],
      [
        { scheduled_at: new Date(Date.now() + 31 * 24 * 60 * 60 * SECOND).toISOString() },
        'scheduled_at',
        /30 days/,
      ],
      [{}, 'scheduled_at', /RFC 3339/],
      [{ scheduledAt: '2030-01-01T00:00:00Z' }, 'scheduledAt', /`scheduled_at`/],
      [{ scheduled_at: new Date().toISOString(), subject: 'New' }, 'subject', /only `scheduled_at`/],
    ] as const) {
      const res = await call('PATCH', `/v1/emails/${id}`, body);
      assert.equal(res.status, 422, JSON.stringify(body));
      const fault = (res.body.errors as { field: string; message: string }[]).find((e) => e.field === field);
      assert.ok(fault, `${JSON.stringify(body)}: ${JSON.stringify(res.body.errors)}`);
      assert.match(fault.message, message, JSON.stringify(body));
    }
    assert.equal(
      (await call('PATCH', `/v1/emails/${id}`, 'scheduled_at=now', key, 'text/plain')).status,
      415,
    );
    assert.equal((await call('GET', `/v1/emails/${id}`)).body.status, 'queued');
  });
});

describe('the resend SDK, unchanged', () => {
  test('emails.update reschedules, and its errors carry our reasons', async () => {
    const resend = new Resend(key, { baseUrl: `${platform.url}/v1` });
    const id = await schedule('margaret@example.org', new Date(Date.now() + 60 * 60 * SECOND));
    const at = new Date(Date.now() + 2 * 60 * 60 * SECOND);
    const { data, error } = await resend.emails.update({ id, scheduledAt: at.toISOString() });
    assert.equal(error, null, JSON.stringify(error));
    assert.deepEqual(data, { object: 'email', id });
    assert.deepEqual(await jobsOf(id), [at]);

    const tooFar = await resend.emails.update({ id, scheduledAt: '2099-01-01T00:00:00Z' });
    assert.equal(tooFar.error?.name, 'validation_error');
    assert.match(tooFar.error!.message, /^scheduled_at: must be at most 30 days ahead/);
    const missing = await resend.emails.update({
      id: '5f0c7c5e-0000-4000-8000-000000000000',
      scheduledAt: at.toISOString(),
    });
    assert.equal(missing.error?.name, 'not_found');
  });
});

describe('tenant isolation', () => {
  test("another tenant's email is a 404, and is not moved", async () => {
    const id = await schedule('ken@example.org', new Date(Date.now() + 60 * 60 * SECOND));
    const jobs = await jobsOf(id);
    const res = await reschedule(id, new Date(Date.now() + 2 * 60 * 60 * SECOND), otherKey);
    assert.equal(res.status, 404);
    assert.equal(res.body.name, 'not_found');
    assert.deepEqual(await jobsOf(id), jobs);
    assert.equal(
      (await call('PATCH', '/v1/emails/not-an-id', { scheduled_at: new Date().toISOString() })).status,
      404,
    );
  });
});
