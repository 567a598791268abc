// Broadcasts against real parts: Resend's own SDK against the api on a fresh database, the sender
// delivering to a loopback SMTP sink, contacts and segments in the tables their API writes. What it
// proves is the bulk-sender bar Gmail and Yahoo set, with Mailplane's defaults: every message of a
// broadcast carries one-click unsubscribe (List-Unsubscribe and List-Unsubscribe-Post), using it
// suppresses the address, and a broadcast that could not offer it is refused; beside that, that a
// fan-out killed at any point resumes with neither a duplicate nor a loss. The installation's
// public URL is a name nothing resolves (https://mail.mailplane.test): a link read from a message
// is sent to the api under test by its path.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { JobHelpers } from 'graphile-worker';
import { sql } from 'kysely';
import { simpleParser } from 'mailparser';
import { Resend } from 'resend';
import { startApi, type RunningApi } from '../api/main.js';
import { headerValue } from '../dev/inbox.js';
import { fanOutChunk, requeueStrandedBroadcasts } from '../lib/db/broadcasts.js';
import { silentLogger } from '../lib/log.js';
import { BULK_PRIORITY, insertEmails, type PreparedEmail } from '../lib/send/accept.js';
import { createMetrics } from '../lib/metrics.js';
import { createSendBroadcastTask, personalize, prepareEmail } from '../sender/broadcast-task.js';
import type { Sender } from '../sender/worker.js';
import { eventually } from './helpers/eventually.js';
import {
  sendingDomain,
  startTestPlatform,
  startTestSender,
  tenant,
  type TestPlatform,
} from './helpers/platform.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';

const PUBLIC_URL = 'https://mail.mailplane.test';
const FROM = 'Acme News <news@example.com>';
let platform: TestPlatform;
let sink: SmtpSink;
let sender: Sender;
/** The same database and settings, but no MAILPLANE_PUBLIC_URL. */
let withoutPublicUrl: RunningApi;
let resend: Resend;
let acmeId: string;
let otherId: string;

before(async () => {
  sink = await startSmtpSink();
  platform = await startTestPlatform({
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${sink.port}`,
    MAILPLANE_PUBLIC_URL: PUBLIC_URL,
    MAILPLANE_INBOUND_HOST: 'mx.mailplane.test',
  });
  await platform.apply([
    tenant('other', [
      { name: 'all', scopes: ['send', 'read'] },
      { name: 'reader', scopes: ['read'] },
      { name: 'writer', scopes: ['send'] },
    ]),
    sendingDomain('other-example', 'other', 'other.example'),
  ]);
  const tenants = await platform.database.db.selectFrom('tenants').select(['id', 'name']).execute();
  acmeId = tenants.find((t) => t.name === 'acme')!.id;
  otherId = tenants.find((t) => t.name === 'other')!.id;
  resend = sdk(keyOf('acme/backend'));
  withoutPublicUrl = await startApi({
    database: platform.database,
    config: { ...platform.config, publicUrl: undefined },
    log: silentLogger,
    metrics: createMetrics(),
  });
  sender = await startTestSender(platform);
});

after(async () => {
  await sender?.stop();
  await withoutPublicUrl?.close();
  await platform?.close();
  await sink?.close();
});

const keyOf = (name: string) => platform.keys.get(`default/${name}`)!;
const sdk = (key: string, url = platform.url) => new Resend(key, { baseUrl: `${url}/v1` });
const db = () => platform.database.db;

interface NewContact {
  email: string;
  first_name?: string | null;
  last_name?: string | null;
  unsubscribed?: boolean;
  properties?: Record<string, unknown>;
}

/** A segment of the tenant's with these contacts, written as the contacts API writes them. */
async function segmentOf(tenantId: string, contacts: NewContact[]): Promise<string> {
  const segment = await db()
    .insertInto('segments')
    .values({ tenant_id: tenantId, name: `segment-${Math.random().toString(36).slice(2)}` })
    .returning('id')
    .executeTakeFirstOrThrow();
  for (const c of contacts) {
    const row = await db()
      .insertInto('contacts')
      .values({
        tenant_id: tenantId,
        email: c.email.toLowerCase(),
        first_name: c.first_name ?? null,
        last_name: c.last_name ?? null,
        unsubscribed: c.unsubscribed ?? false,
        properties: JSON.stringify(c.properties ?? {}),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await db()
      .insertInto('segment_contacts')
      .values({ segment_id: segment.id, contact_id: row.id })
      .execute();
  }
  return segment.id;
}

/** Messages the sink received for `to`. */
const receivedBy = (to: string) => sink.messages().filter((m) => m.envelope.to.includes(to));

/** The https link of List-Unsubscribe. */
function oneClickLink(raw: string): string {
  const value = headerValue(raw, 'list-unsubscribe');
  assert.ok(value, 'the message has a List-Unsubscribe field');
  const url = [...value.matchAll(/<([^>]*)>/g)]
    .map((m) => m[1]!.replace(/\s+/g, ''))
    .find((u) => u.startsWith('https://'));
  assert.ok(url, `an https link: ${value}`);
  return url;
}

async function broadcastRow(id: string) {
  return db().selectFrom('broadcasts').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

/** The broadcast's emails, each with the contact and address it went to. */
async function emailsOf(broadcastId: string) {
  return db()
    .selectFrom('broadcast_recipients as r')
    .innerJoin('emails', 'emails.id', 'r.email_id')
    .select(['emails.id', 'r.contact_id', 'r.address', 'emails.subject'])
    .where('r.broadcast_id', '=', broadcastId)
    .execute();
}

/** How many of the broadcast's messages are in each status. */
async function statusesOf(broadcastId: string): Promise<Record<string, number>> {
  const rows = await db()
    .selectFrom('broadcast_recipients as r')
    .innerJoin('messages', 'messages.email_id', 'r.email_id')
    .select(['messages.status', sql<number>`count(*)::int`.as('count')])
    .where('r.broadcast_id', '=', broadcastId)
    .groupBy('messages.status')
    .execute();
  return Object.fromEntries(rows.map((r) => [r.status, r.count]));
}

/** A task with the test's database, and these settings. */
const taskWith = (extra: Partial<Parameters<typeof createSendBroadcastTask>[0]> = {}) =>
  createSendBroadcastTask({
    db: db(),
    pool: platform.database.pool,
    config: platform.config,
    log: silentLogger,
    ...extra,
  });

/** A draft turned queued without a job, so that only the test runs its fan-out. */
async function queuedWithoutJob(segmentId: string, extra: Record<string, unknown> = {}): Promise<string> {
  const id = await draft(segmentId, extra);
  await db().updateTable('broadcasts').set({ status: 'queued' }).where('id', '=', id).execute();
  return id;
}

/** A job as graphile-worker hands it to a task, as far as the task reads it. */
const helpers = { job: { id: '0' } } as unknown as JobHelpers;

async function draft(segmentId: string, extra: Record<string, unknown> = {}): Promise<string> {
  const { data, error } = await resend.broadcasts.create({
    segmentId,
    from: FROM,
    subject: 'Hello {{{FIRST_NAME|there}}}',
    text: 'Hi {{{FIRST_NAME|there}}}. Unsubscribe: {{{RESEND_UNSUBSCRIBE_URL}}}',
    ...extra,
  });
  assert.equal(error, null, JSON.stringify(error));
  return data!.id;
}

describe('a broadcast sent with the defaults', () => {
  test('every contact of the segment who has not unsubscribed gets one personalised message with one-click unsubscribe; an unsubscribed contact gets no email and a suppressed one is suppressed; GET shows the progress', async () => {
    const segmentId = await segmentOf(acmeId, [
      {
        email: 'ada@example.org',
        first_name: 'Ada',
        last_name: 'Lovelace',
        properties: { company: 'Analytical <Engines>' },
      },
      { email: 'grace@example.org' },
      { email: 'bob@example.org', first_name: '<b>Bob</b>' },
      { email: 'gone@example.org', first_name: 'Gone', unsubscribed: true },
      { email: 'bounced@example.org', first_name: 'Bounced' },
    ]);
    await db()
      .insertInto('suppressions')
      .values({ tenant_id: acmeId, address: 'bounced@example.org', reason: 'bounce', detail: null })
      .execute();

    const { data, error } = await resend.broadcasts.create({
      name: 'November news',
      segmentId,
      from: FROM,
      replyTo: 'replies@example.com',
      subject: 'News for {{{FIRST_NAME|there}}}',
      previewText: 'What {{{FIRST_NAME|you}}} missed',
      html:
        '<p>Hi {{{FIRST_NAME|there}}} {{{LAST_NAME}}} of {{{company|your company}}}.</p>' +
        '<p><a href="{{{RESEND_UNSUBSCRIBE_URL}}}">Unsubscribe</a></p>',
      text: 'Hi {{{FIRST_NAME|there}}}. Unsubscribe: {{{RESEND_UNSUBSCRIBE_URL}}}',
      send: true,
    });
    assert.equal(error, null, JSON.stringify(error));
    const id = data!.id;

    const sent = await eventually('the broadcast sent and settled', async () => {
      const got = await resend.broadcasts.get(id);
      const b = got.data as unknown as { status: string; progress: Record<string, number> };
      const statuses = await statusesOf(id);
      return b.status === 'sent' && statuses.delivered === 3 && statuses.suppressed === 1 && b;
    });
    assert.deepEqual(Object.keys(sent.progress), ['emails'], 'progress is the counter alone');
    assert.equal(sent.progress.emails, 4, 'one email per contact who has not unsubscribed');
    const got = (await resend.broadcasts.get(id)).data!;
    assert.equal(got.object, 'broadcast');
    assert.equal(got.name, 'November news');
    assert.equal(got.segment_id, segmentId);
    assert.equal(got.audience_id, segmentId);
    assert.equal(got.from, FROM);
    assert.deepEqual(got.reply_to, ['replies@example.com']);
    assert.ok(got.sent_at);

    const expected = {
      'ada@example.org': {
        subject: 'News for Ada',
        html: 'Hi Ada Lovelace of Analytical &lt;Engines&gt;.',
        text: 'Hi Ada.',
      },
      'grace@example.org': {
        subject: 'News for there',
        html: 'Hi there  of your company.',
        text: 'Hi there.',
      },
      'bob@example.org': {
        subject: 'News for <b>Bob</b>',
        html: 'Hi &lt;b&gt;Bob&lt;/b&gt;  of your company.',
        text: 'Hi <b>Bob</b>.',
      },
    };
    const links = new Map<string, string>();
    for (const [address, want] of Object.entries(expected)) {
      const messages = await eventually(
        `mail to ${address}`,
        async () => receivedBy(address).length > 0 && receivedBy(address),
      );
      assert.equal(messages.length, 1, `one message to ${address}`);
      const raw = messages[0]!.raw;
      const link = oneClickLink(raw);
      assert.ok(link.startsWith(`${PUBLIC_URL}/u/`), link);
      assert.equal(headerValue(raw, 'list-unsubscribe-post'), 'List-Unsubscribe=One-Click');
      const parsed = await simpleParser(raw);
      assert.equal(parsed.subject, want.subject);
      assert.equal(parsed.replyTo?.text, 'replies@example.com');
      const html = String(parsed.html);
      assert.ok(html.includes(want.html), html);
      // The visible link is the very one a one-click POST goes to.
      assert.ok(html.includes(`<a href="${link}">Unsubscribe</a>`), html);
      assert.ok(!html.includes('RESEND_UNSUBSCRIBE_URL'));
      assert.ok(html.includes('display:none'), 'the preview text is hidden in the html');
      assert.ok(parsed.text?.includes(`${want.text} Unsubscribe: ${link}`), parsed.text);
      links.set(address, link);
    }
    assert.ok((await firstHtml('ada@example.org')).includes('What Ada missed'));
    assert.deepEqual(receivedBy('gone@example.org'), [], 'an unsubscribed contact gets nothing');
    assert.deepEqual(receivedBy('bounced@example.org'), [], 'a suppressed address gets nothing');

    // The unsubscribed contact has no email at all; the suppressed one has an email, suppressed.
    const emails = await emailsOf(id);
    assert.equal(emails.length, 4);
    const bounced = await db()
      .selectFrom('messages')
      .innerJoin('broadcast_recipients as r', 'r.email_id', 'messages.email_id')
      .select('messages.status')
      .where('r.broadcast_id', '=', id)
      .where('messages.recipient', '=', 'bounced@example.org')
      .executeTakeFirstOrThrow();
    assert.equal(bounced.status, 'suppressed');

    // Its emails are found by the broadcast's tag, as every list and statistic finds a tag.
    const listed = await fetch(`${platform.url}/v1/emails?tag=broadcast_id:${id}`, {
      headers: { authorization: `Bearer ${keyOf('acme/backend')}` },
    });
    assert.equal(((await listed.json()) as { data: unknown[] }).data.length, 4);

    // …and counted under it in the statistics.
    await eventually('the broadcast’s deliveries in the statistics', async () => {
      const res = await fetch(`${platform.url}/v1/stats?group_by=tag&interval=hour`, {
        headers: { authorization: `Bearer ${keyOf('acme/backend')}` },
      });
      const rows = ((await res.json()) as { data: { tag?: string; delivered: number }[] }).data;
      const delivered = rows
        .filter((r) => r.tag === `broadcast_id:${id}`)
        .reduce((n, r) => n + r.delivered, 0);
      assert.ok(delivered <= 3, `${delivered} deliveries counted`);
      return delivered === 3;
    });

    // A recipient's one-click POST (RFC 8058) suppresses the address for the tenant.
    const click = await fetch(`${platform.url}${new URL(links.get('ada@example.org')!).pathname}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click',
    });
    assert.equal(click.status, 200);
    const suppression = await db()
      .selectFrom('suppressions')
      .select('reason')
      .where('tenant_id', '=', acmeId)
      .where('address', '=', 'ada@example.org')
      .executeTakeFirst();
    assert.equal(suppression?.reason, 'unsubscribe');

    // The unsubscribe marked the contact too: the next broadcast to the segment leaves it out.
    const ada = await db()
      .selectFrom('contacts')
      .select('unsubscribed')
      .where('tenant_id', '=', acmeId)
      .where('email', '=', 'ada@example.org')
      .executeTakeFirstOrThrow();
    assert.equal(ada.unsubscribed, true);
    const again = await queuedWithoutJob(segmentId);
    await taskWith()({ broadcastId: again }, helpers);
    assert.equal((await broadcastRow(again)).status, 'sent');
    const addresses = (await emailsOf(again)).map((e) => e.address);
    assert.equal(addresses.length, 3);
    assert.ok(!addresses.includes('ada@example.org'), 'no email for the contact who unsubscribed');

    // The audit log names the key that created and sent it.
    const audit = await fetch(`${platform.url}/v1/audit-log?action=broadcast.`, {
      headers: { authorization: `Bearer ${keyOf('acme/backend')}` },
    });
    const entries = (
      (await audit.json()) as { data: { action: string; actor: string; target: string }[] }
    ).data
      .filter((e) => e.target === 'November news')
      .map((e) => `${e.action} ${e.actor}`);
    assert.deepEqual(entries.sort(), ['broadcast.created api_key:backend', 'broadcast.sent api_key:backend']);
  });

  test('is listed newest first a page at a time, in Resend’s list shape', async () => {
    const segmentId = await segmentOf(acmeId, []);
    const first = await draft(segmentId, { name: 'list-1' });
    const second = await draft(segmentId, { name: 'list-2' });
    const page = await resend.broadcasts.list({ limit: 1 });
    assert.equal(page.error, null);
    assert.equal(page.data!.object, 'list');
    assert.equal(page.data!.has_more, true);
    assert.equal(page.data!.data[0]!.id, second);
    assert.equal(page.data!.data[0]!.status, 'draft');
    const next = await resend.broadcasts.list({ limit: 1, after: second });
    assert.equal(next.data!.data[0]!.id, first);
  });

  test('a draft is changed with PATCH and deleted; a segment with no one to send to is sent at once', async () => {
    const segmentId = await segmentOf(acmeId, []);
    const id = await draft(segmentId);
    const updated = await resend.broadcasts.update(id, { subject: 'Changed', html: '<p>Changed</p>' });
    assert.equal(updated.error, null, JSON.stringify(updated.error));
    const got = (await resend.broadcasts.get(id)).data!;
    assert.equal(got.subject, 'Changed');
    assert.equal(got.html, '<p>Changed</p>');
    assert.equal(got.status, 'draft');

    const sent = await resend.broadcasts.send(id);
    assert.equal(sent.error, null, JSON.stringify(sent.error));
    await eventually('an empty broadcast sent', async () => (await broadcastRow(id)).status === 'sent');
    const again = await resend.broadcasts.update(id, { subject: 'Too late' });
    assert.equal(again.error?.name, 'broadcast_not_changeable');
    assert.match(again.error!.message, /is sent/);

    const other = await draft(segmentId);
    const removed = await resend.broadcasts.remove(other);
    assert.deepEqual(removed.data, { object: 'broadcast', id: other, deleted: true });
    assert.equal((await resend.broadcasts.get(other)).error?.name, 'not_found');
    assert.equal((await resend.broadcasts.remove(id)).error?.name, 'broadcast_not_changeable');
  });
});

describe('no broadcast goes out without one-click unsubscribe', () => {
  test('without MAILPLANE_PUBLIC_URL or a tracking domain, sending is a 422 naming both settings, and a create with send: true makes nothing', async () => {
    const segmentId = await segmentOf(acmeId, [{ email: 'nolink@example.org' }]);
    const bare = sdk(keyOf('acme/backend'), withoutPublicUrl.url);
    const created = await bare.broadcasts.create({ segmentId, from: FROM, subject: 'S', text: 't' });
    assert.equal(created.error, null);
    const refused = await bare.broadcasts.send(created.data!.id);
    assert.equal(refused.error?.name, 'unsubscribe_unavailable');
    assert.equal(refused.error?.statusCode, 422);
    assert.match(refused.error!.message, /spec\.tracking\.domain/);
    assert.match(refused.error!.message, /MAILPLANE_PUBLIC_URL/);
    assert.equal((await broadcastRow(created.data!.id)).status, 'draft');

    const before = (
      await db()
        .selectFrom('broadcasts')
        .select(sql<number>`count(*)::int`.as('n'))
        .executeTakeFirstOrThrow()
    ).n;
    const atOnce = await bare.broadcasts.create({
      segmentId,
      from: FROM,
      subject: 'S',
      text: 't',
      send: true,
    });
    assert.equal(atOnce.error?.name, 'unsubscribe_unavailable');
    const after = (
      await db()
        .selectFrom('broadcasts')
        .select(sql<number>`count(*)::int`.as('n'))
        .executeTakeFirstOrThrow()
    ).n;
    assert.equal(after, before, 'nothing was created');

    // A tracking domain serves the links instead.
    await db()
      .updateTable('domains')
      .set({ tracking_domain: 'track.example.com' })
      .where('name', '=', 'example.com')
      .execute();
    try {
      const sent = await bare.broadcasts.send(created.data!.id);
      assert.equal(sent.error, null, JSON.stringify(sent.error));
      const [message] = await eventually(
        'mail to nolink@',
        async () => receivedBy('nolink@example.org').length > 0 && receivedBy('nolink@example.org'),
      );
      assert.ok(oneClickLink(message!.raw).startsWith('https://track.example.com/u/'));
    } finally {
      await db()
        .updateTable('domains')
        .set({ tracking_domain: null })
        .where('name', '=', 'example.com')
        .execute();
    }
  });

  test('a fan-out whose time comes when no link can be offered fails the broadcast, with why, and creates no email', async () => {
    const segmentId = await segmentOf(acmeId, [{ email: 'late@example.org' }]);
    const id = await draft(segmentId);
    await db().updateTable('broadcasts').set({ status: 'queued' }).where('id', '=', id).execute();
    const task = createSendBroadcastTask({
      db: db(),
      pool: platform.database.pool,
      config: { publicUrl: undefined },
      log: silentLogger,
    });
    await task({ broadcastId: id }, helpers);
    const row = await broadcastRow(id);
    assert.equal(row.status, 'failed');
    assert.match(row.failure!, /MAILPLANE_PUBLIC_URL/);
    assert.deepEqual(await emailsOf(id), []);
  });
});

describe('scheduling and canceling', () => {
  test('a scheduled broadcast waits in a job at its time; cancel takes the job back and nothing is sent; a scheduled one can also be deleted', async () => {
    const segmentId = await segmentOf(acmeId, [{ email: 'later@example.org' }]);
    const at = new Date(Date.now() + 3600_000).toISOString();
    const { data, error } = await resend.broadcasts.create({
      segmentId,
      from: FROM,
      subject: 'Later',
      text: 'later',
      send: true,
      scheduledAt: at,
    });
    assert.equal(error, null, JSON.stringify(error));
    const id = data!.id;
    const got = (await resend.broadcasts.get(id)).data!;
    assert.equal(got.status as string, 'scheduled');
    assert.equal(got.scheduled_at, at);
    const job = await sql<{ run_at: Date; task_identifier: string }>`
      select run_at, task_identifier from graphile_worker.jobs where key = ${`broadcast:${id}`}`.execute(
      db(),
    );
    assert.equal(job.rows[0]?.task_identifier, 'send_broadcast');
    assert.equal(job.rows[0]?.run_at.toISOString(), at);

    assert.equal(
      (await resend.broadcasts.update(id, { subject: 'x' })).error?.name,
      'broadcast_not_changeable',
    );
    const canceled = await resend.broadcasts.cancel(id);
    assert.deepEqual(canceled.data, { object: 'broadcast', id });
    assert.equal((await resend.broadcasts.get(id)).data!.status as string, 'canceled');
    const left = await sql<{
      n: number;
    }>`select count(*)::int as n from graphile_worker.jobs where key = ${`broadcast:${id}`}`.execute(db());
    assert.equal(left.rows[0]!.n, 0);
    assert.equal((await resend.broadcasts.send(id)).error?.name, 'broadcast_not_changeable');
    assert.equal((await resend.broadcasts.cancel(id)).error?.name, 'broadcast_not_changeable');
    assert.deepEqual(await emailsOf(id), []);

    const other = await draft(segmentId);
    assert.equal((await resend.broadcasts.send(other, { scheduledAt: at })).error, null);
    assert.equal((await resend.broadcasts.remove(other)).data?.deleted, true);
    const gone = await sql<{
      n: number;
    }>`select count(*)::int as n from graphile_worker.jobs where key = ${`broadcast:${other}`}`.execute(db());
    assert.equal(gone.rows[0]!.n, 0);
    assert.deepEqual(receivedBy('later@example.org'), []);
  });

  test('a broadcast scheduled a moment ahead goes out when its time comes', async () => {
    const segmentId = await segmentOf(acmeId, [{ email: 'soon@example.org', first_name: 'Soon' }]);
    const id = await draft(segmentId);
    const sent = await resend.broadcasts.send(id, { scheduledAt: new Date(Date.now() + 2000).toISOString() });
    assert.equal(sent.error, null, JSON.stringify(sent.error));
    const [message] = await eventually(
      'mail to soon@',
      async () => receivedBy('soon@example.org').length > 0 && receivedBy('soon@example.org'),
    );
    assert.equal((await simpleParser(message!.raw)).subject, 'Hello Soon');
    await eventually('sent', async () => (await broadcastRow(id)).status === 'sent');
  });

  test('cancel during a fan-out stops it before its next chunk', async () => {
    const contacts = Array.from({ length: 5 }, (_, i) => ({ email: `halt-${i}@example.org` }));
    const segmentId = await segmentOf(acmeId, contacts);
    const id = await draft(segmentId);
    await db().updateTable('broadcasts').set({ status: 'queued' }).where('id', '=', id).execute();
    const task = createSendBroadcastTask({
      db: db(),
      pool: platform.database.pool,
      config: platform.config,
      log: silentLogger,
      chunkSize: 2,
      afterChunk: async () => {
        assert.equal((await resend.broadcasts.cancel(id)).error, null);
      },
    });
    await task({ broadcastId: id }, helpers);
    const row = await broadcastRow(id);
    assert.equal(row.status, 'canceled');
    assert.equal(row.created_count, 2);
    assert.equal((await emailsOf(id)).length, 2);
  });
});

describe('a fan-out that dies resumes without a duplicate or a loss', () => {
  test('killed after a chunk committed, killed inside one, and run again twice: each contact has exactly one email and one message', async () => {
    const contacts = Array.from({ length: 7 }, (_, i) => ({
      email: `resume-${i}@example.org`,
      first_name: `R${i}`,
    }));
    const segmentId = await segmentOf(acmeId, contacts);
    const id = await draft(segmentId);
    // Queued without a job, so that only this test runs its fan-out.
    await db().updateTable('broadcasts').set({ status: 'queued' }).where('id', '=', id).execute();
    const deps = {
      db: db(),
      pool: platform.database.pool,
      config: platform.config,
      log: silentLogger,
      chunkSize: 3,
    };

    // Dies right after its first chunk committed.
    const dying = createSendBroadcastTask({
      ...deps,
      afterChunk: () => {
        throw new Error('killed');
      },
    });
    await assert.rejects(dying({ broadcastId: id }, helpers), /killed/);
    let row = await broadcastRow(id);
    assert.equal(row.status, 'sending');
    assert.equal(row.created_count, 3);
    assert.equal((await emailsOf(id)).length, 3);

    // Dies inside the next chunk, before it commits: none of that chunk is written.
    await assert.rejects(
      fanOutChunk(platform.database.pool, id, { contacts: 3, bytes: 1 << 20 }, () => {
        throw new Error('killed mid-chunk');
      }),
      /killed mid-chunk/,
    );
    assert.equal((await emailsOf(id)).length, 3);
    assert.equal((await broadcastRow(id)).created_count, 3);

    const task = createSendBroadcastTask(deps);
    await task({ broadcastId: id }, helpers);
    await task({ broadcastId: id }, helpers);
    row = await broadcastRow(id);
    assert.equal(row.status, 'sent');
    assert.equal(row.created_count, 7);
    const emails = await emailsOf(id);
    assert.equal(emails.length, 7);
    assert.equal(new Set(emails.map((e) => e.contact_id)).size, 7, 'one email per contact');

    for (const c of contacts) {
      const messages = await eventually(
        `mail to ${c.email}`,
        async () => receivedBy(c.email).length > 0 && receivedBy(c.email),
      );
      assert.equal(messages.length, 1, `one message to ${c.email}`);
    }

    // Whatever runs twice, an address this broadcast mailed is never mailed again: a fan-out started
    // over from the first contact creates nothing.
    await db()
      .updateTable('broadcasts')
      .set({ status: 'sending', cursor: null })
      .where('id', '=', id)
      .execute();
    await task({ broadcastId: id }, helpers);
    row = await broadcastRow(id);
    assert.equal(row.status, 'sent');
    assert.equal(row.created_count, 7);
    assert.equal((await emailsOf(id)).length, 7);
  });
});

describe('a fan-out that meets a failure ends, or carries on, and never hangs', () => {
  const contactsNamed = (prefix: string, n: number) =>
    Array.from({ length: n }, (_, i) => ({ email: `${prefix}-${i}@example.org` }));

  test('its segment deleted mid-way: the broadcast fails, saying so', async () => {
    const segmentId = await segmentOf(acmeId, contactsNamed('segment-gone', 4));
    const id = await queuedWithoutJob(segmentId);
    await taskWith({
      chunkSize: 2,
      afterChunk: async () => {
        await db().deleteFrom('segments').where('id', '=', segmentId).execute();
      },
    })({ broadcastId: id }, helpers);
    const row = await broadcastRow(id);
    assert.equal(row.status, 'failed');
    assert.match(row.failure ?? '', /segment was deleted/);
    assert.equal(row.created_count, 2);
  });

  test('DELETE of a segment a broadcast is going out to is a 409 until it is canceled', async () => {
    const segmentId = await segmentOf(acmeId, contactsNamed('in-use', 1));
    const id = await queuedWithoutJob(segmentId);
    const remove = () =>
      fetch(`${platform.url}/v1/segments/${segmentId}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${keyOf('acme/backend')}` },
      });
    const refused = await remove();
    assert.equal(refused.status, 409);
    assert.equal(((await refused.json()) as { type: string }).type.endsWith('segment-in-use'), true);
    assert.equal((await resend.broadcasts.cancel(id)).error, null);
    assert.equal((await remove()).status, 200);
  });

  test('its tenant deleted mid-way (retained): the broadcast fails, saying so', async () => {
    const segmentId = await segmentOf(otherId, contactsNamed('tenant-gone', 3));
    const { data, error } = await sdk(keyOf('other/all')).broadcasts.create({
      segmentId,
      from: 'news@other.example',
      subject: 'Hi',
      text: 'Hi. {{{RESEND_UNSUBSCRIBE_URL}}}',
    });
    assert.equal(error, null, JSON.stringify(error));
    const id = data!.id;
    await db().updateTable('broadcasts').set({ status: 'queued' }).where('id', '=', id).execute();
    const retire = (at: Date | null) =>
      db().updateTable('tenants').set({ deleted_at: at }).where('id', '=', otherId).execute();
    try {
      await taskWith({ chunkSize: 1, afterChunk: async () => void (await retire(new Date())) })(
        { broadcastId: id },
        helpers,
      );
    } finally {
      await retire(null);
    }
    const row = await broadcastRow(id);
    assert.equal(row.status, 'failed');
    assert.match(row.failure ?? '', /tenant was deleted/);
    assert.equal(row.created_count, 1);
  });

  test('a deadlock inside a chunk is tried again at once: every contact gets one email', async () => {
    const segmentId = await segmentOf(acmeId, contactsNamed('deadlock', 3));
    const id = await queuedWithoutJob(segmentId);
    const domain = await db()
      .selectFrom('domains')
      .select('id')
      .where('name', '=', 'example.com')
      .executeTakeFirstOrThrow();
    let thrown = 0;
    const outcome = await fanOutChunk(
      platform.database.pool,
      id,
      { contacts: 10, bytes: 1 << 20 },
      (broadcast, contact) => {
        if (thrown++ === 0) throw Object.assign(new Error('deadlock detected'), { code: '40P01' });
        return prepareEmail(broadcast, domain.id, contact);
      },
    );
    assert.deepEqual(outcome, { kind: 'created', count: 3 });
    assert.equal((await emailsOf(id)).length, 3);
  });

  test('a contact deleted and added again mid-way gets the broadcast once', async () => {
    const segmentId = await segmentOf(acmeId, contactsNamed('again', 2));
    const id = await queuedWithoutJob(segmentId);
    await taskWith({
      chunkSize: 1,
      afterChunk: async () => {
        const mailed = (await emailsOf(id)).map((e) => e.address);
        if (mailed.length !== 1) return;
        await db().deleteFrom('contacts').where('email', '=', mailed[0]!).execute();
        // Added again with an id after every other, so that the fan-out reaches it again.
        const readded = await db()
          .insertInto('contacts')
          .values({
            id: 'ffffffff-ffff-4fff-bfff-ffffffffffff',
            tenant_id: acmeId,
            email: mailed[0]!,
            properties: '{}',
          })
          .returning('id')
          .executeTakeFirstOrThrow();
        await db()
          .insertInto('segment_contacts')
          .values({ segment_id: segmentId, contact_id: readded.id })
          .execute();
      },
    })({ broadcastId: id }, helpers);
    await db().deleteFrom('contacts').where('id', '=', 'ffffffff-ffff-4fff-bfff-ffffffffffff').execute();
    const row = await broadcastRow(id);
    assert.equal(row.status, 'sent');
    const addresses = (await emailsOf(id)).map((e) => e.address).sort();
    assert.deepEqual(addresses, ['again-0@example.org', 'again-1@example.org']);
    assert.equal(row.created_count, 2);
  });

  test('a chunk is bounded by bytes too: a large html goes out a contact at a time', async () => {
    const segmentId = await segmentOf(acmeId, contactsNamed('large', 3));
    const id = await queuedWithoutJob(segmentId, { html: `<p>${'x'.repeat(100_000)}</p>` });
    const chunks: number[] = [];
    await taskWith({ chunkBytes: 150_000, afterChunk: (n) => void chunks.push(n) })(
      { broadcastId: id },
      helpers,
    );
    assert.deepEqual(chunks, [1, 1, 1]);
    assert.equal((await broadcastRow(id)).status, 'sent');
  });

  test('an html or text past the broadcast limit is a 422 naming it', async () => {
    const segmentId = await segmentOf(acmeId, []);
    for (const field of ['html', 'text'] as const) {
      const res = await fetch(`${platform.url}/v1/broadcasts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${keyOf('acme/backend')}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          segment_id: segmentId,
          from: FROM,
          subject: 'Big',
          [field]: 'x'.repeat(512 * 1024 + 1),
        }),
      });
      assert.equal(res.status, 422);
      const problem = (await res.json()) as { errors?: { field: string }[] };
      assert.ok(
        problem.errors?.some((e) => e.field === field),
        JSON.stringify(problem),
      );
    }
  });

  test('a worker shutting down stops between chunks and hands the fan-out on to a new job', async () => {
    const segmentId = await segmentOf(acmeId, contactsNamed('deploy', 4));
    const id = await queuedWithoutJob(segmentId);
    const abort = new AbortController();
    // Held until the hand-on is seen, so that the running sender cannot take the new job's chunks.
    const holder = await platform.database.pool.connect();
    try {
      await taskWith({
        chunkSize: 2,
        afterChunk: async () => {
          abort.abort();
          await holder.query('begin');
          await holder.query('select 1 from broadcasts where id = $1 for update', [id]);
        },
      })({ broadcastId: id }, {
        job: { id: '0', attempts: 1, max_attempts: 10 },
        abortSignal: abort.signal,
      } as unknown as JobHelpers);
      const row = await broadcastRow(id);
      assert.equal(row.status, 'sending');
      assert.equal(row.created_count, 2, 'stopped after the chunk under way');
      const { rows } = await holder.query<{ attempts: number }>(
        'select attempts, max_attempts from graphile_worker.jobs where key = $1',
        [`broadcast:${id}`],
      );
      assert.equal(rows.length, 1, 'a job of its own');
    } finally {
      await holder.query('commit');
      holder.release();
    }
    await eventually('the new job finished it', async () => (await broadcastRow(id)).status === 'sent');
    assert.equal((await emailsOf(id)).length, 4);
  });

  test('the last attempt failing fails the broadcast with the reason', async () => {
    const segmentId = await segmentOf(acmeId, contactsNamed('last', 3));
    const id = await queuedWithoutJob(segmentId);
    const last = { job: { id: '0', attempts: 10, max_attempts: 10 } } as unknown as JobHelpers;
    await assert.rejects(
      taskWith({
        chunkSize: 1,
        afterChunk: () => {
          throw new Error('relation went away');
        },
      })({ broadcastId: id }, last),
      /relation went away/,
    );
    const row = await broadcastRow(id);
    assert.equal(row.status, 'failed');
    assert.match(row.failure ?? '', /relation went away/);
  });

  test('a broadcast left without a job is given one again by the sweep, and goes out', async () => {
    const segmentId = await segmentOf(acmeId, contactsNamed('stranded', 2));
    const id = await queuedWithoutJob(segmentId);
    assert.equal(await requeueStrandedBroadcasts(db()), 0, 'not while it may still be taken');
    await db()
      .updateTable('broadcasts')
      .set({ updated_at: sql`now() - interval '1 hour'` })
      .where('id', '=', id)
      .execute();
    assert.ok((await requeueStrandedBroadcasts(db())) >= 1);
    await eventually('the sweep’s job sent it', async () => (await broadcastRow(id)).status === 'sent');
    assert.equal((await emailsOf(id)).length, 2);
  });
});

describe('a sender process killed with SIGKILL mid-fan-out', () => {
  /** The fan-out alone, in a process of its own, slowed between chunks so that a kill lands mid-way. */
  const CHILD = `
    import { openDatabase } from './lib/db/index.js';
    import { silentLogger } from './lib/log.js';
    import { createSendBroadcastTask } from './sender/broadcast-task.js';
    const database = openDatabase(process.env.DATABASE_URL, { max: 2 });
    const task = createSendBroadcastTask({
      db: database.db, pool: database.pool, config: { publicUrl: 'https://mail.mailplane.test' },
      log: silentLogger, chunkSize: 40, afterChunk: () => new Promise((r) => setTimeout(r, 200)),
    });
    await task({ broadcastId: process.env.BROADCAST_ID }, { job: { id: 'child' } });
    await database.close();
  `;

  test('leaves every chunk written and passed or not at all: the next run completes with one email per contact', async () => {
    const segment = await db()
      .insertInto('segments')
      .values({ tenant_id: acmeId, name: 'killed' })
      .returning('id')
      .executeTakeFirstOrThrow();
    const contacts = await db()
      .insertInto('contacts')
      .values(
        Array.from({ length: 400 }, (_, i) => ({
          tenant_id: acmeId,
          email: `killed-${i}@example.org`,
          properties: '{}',
        })),
      )
      .returning('id')
      .execute();
    await db()
      .insertInto('segment_contacts')
      .values(contacts.map((c) => ({ segment_id: segment.id, contact_id: c.id })))
      .execute();
    const id = await draft(segment.id);
    await db().updateTable('broadcasts').set({ status: 'queued' }).where('id', '=', id).execute();

    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
      env: { ...process.env, DATABASE_URL: platform.config.databaseUrl, BROADCAST_ID: id },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = once(child, 'exit');
    await eventually(
      'the fan-out under way',
      async () => (await broadcastRow(id)).created_count >= 80,
      60_000,
      () => stderr,
    );
    child.kill('SIGKILL');
    const [code, signal] = (await exited) as [number | null, string | null];
    assert.equal(signal, 'SIGKILL', `the child was killed, not done (exit ${code}): ${stderr}`);
    const killed = await broadcastRow(id);
    assert.equal(killed.status, 'sending');
    assert.ok(killed.created_count < 400, `killed mid-way, at ${killed.created_count}`);
    assert.equal((await emailsOf(id)).length, killed.created_count, 'the cursor and the emails agree');

    await createSendBroadcastTask({
      db: db(),
      pool: platform.database.pool,
      config: platform.config,
      log: silentLogger,
    })({ broadcastId: id }, helpers);
    const row = await broadcastRow(id);
    assert.equal(row.status, 'sent');
    assert.equal(row.created_count, 400);
    const emails = await emailsOf(id);
    assert.equal(emails.length, 400);
    assert.equal(new Set(emails.map((e) => e.contact_id)).size, 400);
    await eventually(
      'every message of it delivered',
      async () => {
        return (await statusesOf(id)).delivered === 400;
      },
      120_000,
    );
    for (let i = 0; i < 400; i++)
      assert.equal(receivedBy(`killed-${i}@example.org`).length, 1, `killed-${i}@`);
  });
});

describe('tenants and input', () => {
  test('another tenant’s broadcast is as absent as one that never existed, and its segments cannot be named', async () => {
    const segmentId = await segmentOf(acmeId, [{ email: 'mine@example.org' }]);
    const id = await draft(segmentId);
    const other = sdk(keyOf('other/all'));
    assert.equal((await other.broadcasts.get(id)).error?.name, 'not_found');
    assert.equal((await other.broadcasts.update(id, { subject: 'x' })).error?.name, 'not_found');
    assert.equal((await other.broadcasts.send(id)).error?.name, 'not_found');
    assert.equal((await other.broadcasts.cancel(id)).error?.name, 'not_found');
    assert.equal((await other.broadcasts.remove(id)).error?.name, 'not_found');
    const listed = await other.broadcasts.list();
    assert.ok(!listed.data!.data.some((b) => b.id === id));
    const named = await other.broadcasts.create({
      segmentId,
      from: 'news@other.example',
      subject: 'S',
      text: 't',
    });
    assert.equal(named.error?.name, 'validation_error');
    assert.match(named.error!.message, /segment_id: names no segment of this tenant/);
    const ownSegment = await segmentOf(otherId, []);
    const wrongFrom = await other.broadcasts.create({
      segmentId: ownSegment,
      from: FROM,
      subject: 'S',
      text: 't',
    });
    assert.equal(wrongFrom.error?.name, 'domain_not_owned');
    assert.equal((await broadcastRow(id)).status, 'draft');
  });

  test('bad input is a 4xx naming the field; a key that may only read cannot create', async () => {
    const segmentId = await segmentOf(acmeId, []);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ from: FROM, subject: 'S', text: 't' }, /^segment_id: is required/],
      [{ segment_id: segmentId, subject: 'S', text: 't' }, /^from: is required/],
      [{ segment_id: segmentId, from: 'not an address', subject: 'S', text: 't' }, /^from:/],
      [{ segment_id: segmentId, from: FROM, text: 't' }, /^subject: is required/],
      [{ segment_id: segmentId, from: FROM, subject: 'S' }, /^html: html or text is required/],
      [
        { segment_id: 'nope', from: FROM, subject: 'S', text: 't' },
        /^segment_id: must be the id of a segment/,
      ],
      [
        { segment_id: segmentId, audience_id: crypto.randomUUID(), from: FROM, subject: 'S', text: 't' },
        /^audience_id: names another segment/,
      ],
      [
        {
          segment_id: segmentId,
          from: FROM,
          subject: 'S',
          text: 't',
          scheduled_at: new Date().toISOString(),
        },
        /^scheduled_at: can only be given with send: true/,
      ],
      [
        { segment_id: segmentId, from: FROM, subject: 'S', text: 't', send: true, scheduled_at: 'tomorrow' },
        /^scheduled_at:/,
      ],
      [
        { segment_id: segmentId, from: FROM, subject: 'S', text: 't', topic_id: 'news' },
        /^topic_id: topics are not supported/,
      ],
      [{ segment_id: segmentId, from: FROM, subject: 'S', text: 't', colour: 'red' }, /^colour:/],
    ];
    const key = keyOf('acme/backend');
    for (const [body, message] of cases) {
      const res = await fetch(`${platform.url}/v1/broadcasts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const problem = (await res.json()) as { message: string; type: string };
      assert.equal(res.status, 422, `${JSON.stringify(body)}: ${problem.message}`);
      assert.match(problem.message, message, JSON.stringify(body));
    }
    // The audience_id alias is taken on its own.
    const aliased = await fetch(`${platform.url}/v1/broadcasts`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ audience_id: segmentId, from: FROM, subject: 'S', text: 't' }),
    });
    assert.equal(aliased.status, 201);
    assert.equal(((await aliased.json()) as { id: string }).id.length, 36);

    const reader = sdk(keyOf('other/reader'));
    assert.equal(
      (
        await reader.broadcasts.create({
          segmentId: await segmentOf(otherId, []),
          from: 'a@other.example',
          subject: 'S',
          text: 't',
        })
      ).error?.name,
      'restricted_api_key',
    );
    assert.equal((await resend.broadcasts.get('not-a-uuid')).error?.name, 'not_found');
    const id = await draft(segmentId);
    const farOff = await resend.broadcasts.send(id, {
      scheduledAt: new Date(Date.now() + 40 * 86400_000).toISOString(),
    });
    assert.equal(farOff.error?.name, 'validation_error');
    assert.match(farOff.error!.message, /at most 30 days ahead/);
    const emptied = await resend.broadcasts.update(id, { text: '' });
    assert.match(emptied.error!.message, /^html: html or text must remain/);
  });
});

describe('bulk mail waits its turn', () => {
  test('a broadcast email’s send job runs after any other send waiting with it', async () => {
    const domain = await db()
      .selectFrom('domains')
      .select('id')
      .where('tenant_id', '=', acmeId)
      .where('name', '=', 'example.com')
      .executeTakeFirstOrThrow();
    // An hour ahead, so that the running sender leaves both jobs where they are.
    const later = new Date(Date.now() + 3600_000);
    const email = (to: string, bulk: boolean): PreparedEmail => ({
      id: randomUUID(),
      tenantId: acmeId,
      domainId: domain.id,
      from: FROM,
      subject: 'Turn',
      content: {
        to: [to],
        cc: [],
        bcc: [],
        reply_to: [],
        subject: 'Turn',
        text: 'x',
        headers: {},
        attachments: [],
        tags: [],
      },
      recipients: [to],
      scheduledAt: later,
      ...(bulk ? { bulk } : {}),
    });
    const bulk = email('bulk-turn@example.org', true);
    const transactional = email('reset-turn@example.org', false);
    await insertEmails(platform.database.pool, [bulk, transactional]);
    const { rows } = await sql<{ recipient: string; priority: number }>`
      select m.recipient, j.priority from messages m
      join graphile_worker._private_jobs j on j.payload->>'messageId' = m.id::text
      where m.email_id in (${bulk.id}, ${transactional.id})`.execute(db());
    const priorities = Object.fromEntries(rows.map((r) => [r.recipient, r.priority]));
    // graphile-worker runs a lower number first; every other job has 0.
    assert.deepEqual(priorities, { 'bulk-turn@example.org': BULK_PRIORITY, 'reset-turn@example.org': 0 });
  });
});

describe('personalize', () => {
  const values = {
    builtIn: { FIRST_NAME: 'Ada & co', LAST_NAME: null, EMAIL: 'ada@example.org' },
    properties: { plan: 'pro', seats: 3, nested: { value: 'given' }, empty: '' },
  };
  test('fills built-in and property placeholders, fallbacks for what is missing, escapes only in html, and leaves the unsubscribe link to the sender', () => {
    assert.equal(
      personalize('{{{FIRST_NAME}}}|{{{first_name}}}|{{{ LAST_NAME | friend }}}|{{{EMAIL}}}', values, false),
      'Ada & co|Ada & co|friend|ada@example.org',
    );
    assert.equal(personalize('{{{FIRST_NAME}}}', values, true), 'Ada &amp; co');
    assert.equal(
      personalize('{{{plan}}} {{{seats}}} {{{nested}}} {{{empty|none}}} {{{missing}}}.', values, false),
      'pro 3 given none .',
    );
    assert.equal(personalize('{{{RESEND_UNSUBSCRIBE_URL}}}', values, true), '{{{RESEND_UNSUBSCRIBE_URL}}}');
    assert.equal(personalize('{{not three}} {{{bad key}}}', values, false), '{{not three}} {{{bad key}}}');
  });
});

async function firstHtml(address: string): Promise<string> {
  return String((await simpleParser(receivedBy(address)[0]!.raw)).html);
}

interface OpenApiDocument {
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>>;
}

describe('every answer of /v1/broadcasts is one the served document describes', () => {
  const DOCUMENT_ID = 'https://mailplane.test/openapi.json';
  /** Statuses no request here brings about: a bug (500), the database gone (503). */
  const UNREACHABLE = new Set(['500', '503']);
  const seen = new Set<string>();
  let document: OpenApiDocument;
  let ajv: Ajv2020;

  before(async () => {
    document = (await (await fetch(`${platform.url}/v1/openapi.json`)).json()) as OpenApiDocument;
    ajv = new Ajv2020({ allErrors: true, strict: true });
    for (const keyword of ['openapi', 'info', 'servers', 'security', 'tags', 'paths', 'components']) {
      ajv.addKeyword({ keyword });
    }
    ajv.addFormat('uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
    ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i);
    ajv.addSchema(document, DOCUMENT_ID);
  });

  const pointer = (...segments: string[]) =>
    segments.map((x) => x.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

  /** Sends; holds the answer (and an accepted body) to the document; answers the body. */
  async function check(
    method: string,
    path: string,
    status: number,
    options: { body?: unknown; key?: string | null; headers?: Record<string, string>; url?: string } = {},
  ): Promise<unknown> {
    const { body, key = keyOf('acme/backend') } = options;
    const res = await fetch((options.url ?? platform.url) + path, {
      method,
      headers: {
        ...(key === null ? {} : { authorization: `Bearer ${key}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...options.headers,
      },
      body: body === undefined || typeof body === 'string' ? body : JSON.stringify(body),
    });
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    const answer = JSON.parse(await res.text()) as unknown;
    assert.equal(res.status, status, `${method} ${path}: ${JSON.stringify(answer).slice(0, 300)}`);
    const m = method.toLowerCase();
    const template = Object.keys(document.paths).find(
      (t) =>
        document.paths[t]![m] &&
        new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path.split('?')[0]!),
    );
    assert.ok(template, `${method} ${path} is not in the document`);
    const label = `${method} ${template} ${status}`;
    assert.ok(
      document.paths[template]![m]!.responses[String(status)]?.content?.[mediaType],
      `${label} ${mediaType}`,
    );
    const validate = ajv.getSchema(
      `${DOCUMENT_ID}#/${pointer('paths', template, m, 'responses', String(status), 'content', mediaType)}/schema`,
    )!;
    assert.ok(
      validate(answer),
      `${label}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(answer).slice(0, 1000)}`,
    );
    if (status < 300 && body !== undefined && typeof body === 'object') {
      const request = ajv.getSchema(
        `${DOCUMENT_ID}#/${pointer('paths', template, m, 'requestBody', 'content', 'application/json')}/schema`,
      )!;
      assert.ok(request(body), `${label} request: ${ajv.errorsText(request.errors)}`);
    }
    seen.add(label);
    return answer;
  }

  test('each route, its success and each refusal', async () => {
    const segmentId = await segmentOf(acmeId, [{ email: 'doc@example.org', first_name: 'Doc' }]);
    const body = {
      name: 'doc',
      segment_id: segmentId,
      from: FROM,
      subject: 'S',
      text: 't {{{RESEND_UNSUBSCRIBE_URL}}}',
    };
    const tooLarge = () => `{"text":"${'x'.repeat(15 * 1024 * 1024)}"}`;
    const writer = keyOf('other/writer');
    const reader = keyOf('other/reader');
    const missing = '/v1/broadcasts/00000000-0000-4000-8000-000000000000';

    const id = ((await check('POST', '/v1/broadcasts', 201, { body })) as { id: string }).id;
    const at = `/v1/broadcasts/${id}`;
    await check('POST', '/v1/broadcasts', 400, { body: '{"name": ' });
    await check('POST', '/v1/broadcasts', 401, { body, key: null });
    await check('POST', '/v1/broadcasts', 403, { body, key: reader });
    await check('POST', '/v1/broadcasts', 403, { body: { ...body, from: 'a@elsewhere.example' } });
    await check('POST', '/v1/broadcasts', 413, { body: tooLarge() });
    await check('POST', '/v1/broadcasts', 415, { body: 'hello', headers: { 'content-type': 'text/plain' } });
    await check('POST', '/v1/broadcasts', 422, { body: { ...body, subject: '' } });
    await check('POST', '/v1/broadcasts', 422, { body: { ...body, send: true }, url: withoutPublicUrl.url });

    await check('GET', '/v1/broadcasts?limit=2', 200);
    await check('GET', '/v1/broadcasts', 401, { key: null });
    await check('GET', '/v1/broadcasts', 403, { key: writer });
    await check('GET', '/v1/broadcasts?limit=0', 422);

    await check('GET', at, 200);
    await check('GET', at, 401, { key: null });
    await check('GET', at, 403, { key: writer });
    await check('GET', missing, 404);

    await check('PATCH', at, 200, { body: { subject: 'Changed {{{FIRST_NAME}}}' } });
    await check('PATCH', at, 400, { body: '{' });
    await check('PATCH', at, 401, { body: {}, key: null });
    await check('PATCH', at, 403, { body: {}, key: reader });
    await check('PATCH', at, 403, { body: { from: 'a@elsewhere.example' } });
    await check('PATCH', missing, 404, { body: {} });
    await check('PATCH', at, 413, { body: tooLarge() });
    await check('PATCH', at, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('PATCH', at, 422, { body: { html: 7 } });

    await check('POST', `${at}/send`, 400, { body: '{' });
    await check('POST', `${at}/send`, 401, { body: {}, key: null });
    await check('POST', `${at}/send`, 403, { body: {}, key: reader });
    await check('POST', `${missing}/send`, 404, { body: {} });
    await check('POST', `${at}/send`, 413, { body: tooLarge() });
    await check('POST', `${at}/send`, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('POST', `${at}/send`, 422, { body: { scheduled_at: 'soon' } });
    await check('POST', `${at}/send`, 422, { body: {}, url: withoutPublicUrl.url });
    // The from domain stops being the tenant's between the draft and its send.
    const stray = ((await check('POST', '/v1/broadcasts', 201, { body })) as { id: string }).id;
    await db()
      .updateTable('broadcasts')
      .set({ from_address: 'a@elsewhere.example' })
      .where('id', '=', stray)
      .execute();
    await check('POST', `/v1/broadcasts/${stray}/send`, 403, { body: {} });
    await check('POST', `${at}/send`, 202, {
      body: { scheduled_at: new Date(Date.now() + 3600_000).toISOString() },
    });
    await check('POST', `${at}/send`, 409, { body: {} });
    await check('PATCH', at, 409, { body: { subject: 'x' } });

    await check('POST', `${at}/cancel`, 400, { body: '{' });
    await check('POST', `${at}/cancel`, 401, { key: null });
    await check('POST', `${at}/cancel`, 403, { key: reader });
    await check('POST', `${missing}/cancel`, 404);
    await check('POST', `${at}/cancel`, 413, { body: tooLarge() });
    await check('POST', `${at}/cancel`, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('POST', `${at}/cancel`, 200);
    await check('POST', `${at}/cancel`, 409);

    await check('DELETE', at, 401, { key: null });
    await check('DELETE', at, 403, { key: reader });
    await check('DELETE', missing, 404);
    await check('DELETE', at, 409);
    await check('DELETE', `/v1/broadcasts/${stray}`, 200);
  });

  test('every answer the document lists for /v1/broadcasts was seen, but for a 500 or a 503', () => {
    const listed = Object.entries(document.paths)
      .filter(([template]) => template.startsWith('/v1/broadcasts'))
      .flatMap(([template, methods]) =>
        Object.entries(methods).flatMap(([method, op]) =>
          Object.keys(op.responses)
            .filter((status) => !UNREACHABLE.has(status))
            .map((status) => `${method.toUpperCase()} ${template} ${status}`),
        ),
      );
    assert.ok(listed.length > 40, listed.join('\n'));
    assert.deepEqual(
      listed.filter((label) => !seen.has(label)),
      [],
    );
  });
});
