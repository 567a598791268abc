// Webhook delivery against real parts: the api and the sender on a fresh database, the dev inbox as
// the relay, and a loopback HTTP receiver that verifies every request with the official
// `standardwebhooks` library and with `svix`. Endpoints are rows here; test/webhooks-api.test.ts
// manages them through /v1/webhooks.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import nodemailer from 'nodemailer';
import { Resend } from 'resend';
import { encrypt } from '../lib/crypto.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { bounceAddress } from '../lib/verp.js';
import { startInboundServer } from '../smtp/inbound-server.js';
import { newWebhookSecret } from '../lib/webhooks.js';
import type { Sender } from '../sender/worker.js';
import { isPublicAddress, postWebhook } from '../sender/webhook-http.js';
import { startInbox, type Inbox } from '../dev/inbox.js';
import { eventually } from './helpers/eventually.js';
import { startWebhookReceiver } from './helpers/webhook-receiver.js';
import { startTestPlatform, startTestSender, type TestPlatform } from './helpers/platform.js';

let platform: TestPlatform;
let inbox: Inbox;
let sender: Sender;
let key: string;
let tenantId: string;

async function addEndpoint(url: string, secret: string, events: string[] = []): Promise<string> {
  const row = await platform.database.db
    .insertInto('webhook_endpoints')
    .values({ tenant_id: tenantId, url, events, secret: encrypt(platform.config.secretKey, secret) })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

async function send(to: string): Promise<string> {
  const res = await fetch(`${platform.url}/v1/emails`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      from: 'Acme <hello@example.com>',
      to,
      subject: 'Hi',
      text: 'hello',
      tags: [{ name: 'kind', value: 'test' }],
    }),
  });
  assert.equal(res.status, 202);
  return ((await res.json()) as { id: string }).id;
}

before(async () => {
  // The inbox answers 550 to a local part starting with `bounce`.
  inbox = await startInbox();
  platform = await startTestPlatform({
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${inbox.smtpPort}`,
    MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: 'true',
  });
  key = platform.keys.get('default/acme/backend')!;
  tenantId = (await platform.database.db.selectFrom('tenants').select('id').executeTakeFirstOrThrow()).id;
  sender = await startTestSender(platform);
});
after(async () => {
  await sender?.stop();
  await platform?.close();
  await inbox?.close();
});

describe('webhook delivery', () => {
  test('a delivered and a bounced email reach the endpoint as signed Resend events that standardwebhooks verifies', async () => {
    const secret = newWebhookSecret();
    const receiver = await startWebhookReceiver(() => [secret]);
    const endpoint = await addEndpoint(receiver.url, secret);
    try {
      const delivered = await send('ada@example.org');
      const bounced = await send('bounce-me@example.org');
      const types = () => receiver.received.map((r) => `${r.body.type}:${String(r.body.data.email_id)}`);
      await eventually('the three events', async () =>
        [`email.sent:${delivered}`, `email.delivered:${delivered}`, `email.bounced:${bounced}`].every((t) =>
          types().includes(t),
        ),
      );
      for (const r of receiver.received) {
        assert.deepEqual(r.verifiedWith, [secret], 'every request verifies');
        assert.match(r.headers['webhook-id']!, /^msg_\d+$/);
      }
      const event = receiver.received.find((r) => r.body.type === 'email.delivered')!;
      assert.deepEqual(event.body.data.to, ['ada@example.org']);
      assert.equal(event.body.data.from, 'Acme <hello@example.com>');
      assert.equal(event.body.data.subject, 'Hi');
      assert.deepEqual(event.body.data.tags, { kind: 'test' });
      // Resend's message_id: the Message-ID header the recipient got.
      const got = inbox.messages().find((m) => m.envelope.to.includes('ada@example.org'))!;
      const header = /^Message-ID:\s*(.+)$/im.exec(got.raw)![1]!.trim();
      assert.equal(event.body.data.message_id, header);
      assert.equal(header, `<${delivered}@example.com>`);
      const bounce = receiver.received.find((r) => r.body.type === 'email.bounced')!;
      assert.equal((bounce.body.data.bounce as { type: string }).type, 'Permanent');
      assert.match((bounce.body.data.bounce as { message: string }).message, /550/);

      // The receiver records a request before it answers, and the dispatcher records the answer
      // after it arrives, so the log catches up a moment after the receiver has everything.
      await eventually('every attempt logged as delivered with its 200', async () => {
        const deliveries = await platform.database.db
          .selectFrom('webhook_deliveries')
          .select(['status', 'response_status'])
          .where('endpoint_id', '=', endpoint)
          .execute();
        return (
          deliveries.length > 0 &&
          deliveries.every((d) => d.status === 'delivered' && d.response_status === 200)
        );
      });
    } finally {
      await platform.database.db.deleteFrom('webhook_endpoints').where('id', '=', endpoint).execute();
      await receiver.close();
    }
  });

  test('an endpoint subscribed to some events gets only those; during a rotation both secrets sign', async () => {
    const current = newWebhookSecret();
    const previous = newWebhookSecret();
    const receiver = await startWebhookReceiver(() => [current, previous]);
    const endpoint = await addEndpoint(receiver.url, current, ['email.delivered']);
    await platform.database.db
      .updateTable('webhook_endpoints')
      .set({
        previous_secret: encrypt(platform.config.secretKey, previous),
        previous_secret_expires_at: new Date(Date.now() + 3600_000),
      })
      .where('id', '=', endpoint)
      .execute();
    try {
      const id = await send('grace@example.org');
      await eventually('the delivered event', async () =>
        receiver.received.some((r) => r.body.data.email_id === id),
      );
      await new Promise((r) => setTimeout(r, 300));
      const mine = receiver.received.filter((r) => r.body.data.email_id === id);
      assert.deepEqual(
        mine.map((r) => r.body.type),
        ['email.delivered'],
      );
      assert.deepEqual(mine[0]!.verifiedWith.sort(), [current, previous].sort());
    } finally {
      await platform.database.db.deleteFrom('webhook_endpoints').where('id', '=', endpoint).execute();
      await receiver.close();
    }
  });

  test('a 500 is retried after 5 s and then delivered; a 410 disables the endpoint', async () => {
    const secret = newWebhookSecret();
    let answer = 500;
    const receiver = await startWebhookReceiver(
      () => [secret],
      () => answer,
    );
    const endpoint = await addEndpoint(receiver.url, secret, ['email.delivered']);
    try {
      const id = await send('retry@example.org');
      await eventually('the first attempt', async () => receiver.received.length === 1);
      // Recorded once its answer is in, a moment after the receiver has the request.
      const pending = await eventually('the first attempt recorded', async () => {
        const [row] = await platform.database.db
          .selectFrom('webhook_deliveries')
          .selectAll()
          .where('endpoint_id', '=', endpoint)
          .execute();
        return row && row.attempts > 0 && row;
      });
      assert.equal(pending!.status, 'pending');
      assert.equal(pending!.attempts, 1);
      assert.equal(pending!.response_status, 500);
      const wait = pending!.next_attempt_at!.getTime() - Date.now();
      assert.ok(wait > 2_000 && wait <= 5_500, `retried in ${wait} ms`);
      answer = 200;
      await eventually('the retry', async () => receiver.received.length === 2, 15_000);
      assert.equal(receiver.received[1]!.headers['webhook-id'], receiver.received[0]!.headers['webhook-id']);
      assert.equal(receiver.received[1]!.body.data.email_id, id);

      // Both attempts, as Resend's SDK lists them: the success first, then the 500 before it.
      const resend = new Resend(key, { baseUrl: `${platform.url}/v1` });
      const attempts = await eventually('both attempts listed', async () => {
        const listed = await resend.webhooks.events.attempts.list({
          webhookId: endpoint,
          eventId: pending!.id,
        });
        assert.equal(listed.error, null, JSON.stringify(listed.error));
        return listed.data!.data.length === 2 && listed.data!;
      });
      assert.deepEqual(
        attempts.data.map((a) => [a.id, a.http_status_code]),
        [
          ['2', 200],
          ['1', 500],
        ],
      );
      assert.equal(attempts.has_more, false);
      const [second, first] = attempts.data.map((a) => Date.parse(a.sent_at));
      assert.ok(second! - first! >= 4_000, `the retry went ${second! - first!} ms after the first`);
      const paged = await resend.webhooks.events.attempts.list({
        webhookId: endpoint,
        eventId: pending!.id,
        limit: 1,
        after: '2',
      });
      assert.deepEqual(
        paged.data!.data.map((a) => a.id),
        ['1'],
      );
      // A cursor past any attempt number is a cursor, not a 500.
      const far = await resend.webhooks.events.attempts.list({
        webhookId: endpoint,
        eventId: pending!.id,
        after: '99999999999',
      });
      assert.equal(far.error, null, JSON.stringify(far.error));
      assert.equal(far.data!.data.length, 2);

      answer = 410;
      await send('gone@example.org');
      const disabled = await eventually('the endpoint disabled', async () => {
        const row = await platform.database.db
          .selectFrom('webhook_endpoints')
          .select(['enabled', 'disabled_reason'])
          .where('id', '=', endpoint)
          .executeTakeFirstOrThrow();
        return !row.enabled && row;
      });
      assert.match(disabled.disabled_reason ?? '', /410/);
    } finally {
      await platform.database.db.deleteFrom('webhook_endpoints').where('id', '=', endpoint).execute();
      await receiver.close();
    }
  });
});

describe('an endpoint deleted', () => {
  /** The `delivered` event of an email. */
  const deliveredEventOf = (emailId: string) =>
    platform.database.db
      .selectFrom('events')
      .select('id')
      .where('email_id', '=', emailId)
      .where('type', '=', 'delivered')
      .executeTakeFirstOrThrow();
  /** A delivery written for later, so that the dispatcher left it to be looked at, made due now. */
  const dueNow = (deliveryId: string) =>
    platform.database.db
      .updateTable('webhook_deliveries')
      .set({ next_attempt_at: new Date() })
      .where('id', '=', deliveryId)
      .execute();

  test('takes its deliveries and their attempts with it; one written as it was deleted is dropped when taken, not retried', async () => {
    const secret = newWebhookSecret();
    const receiver = await startWebhookReceiver(
      () => [secret],
      () => 500,
    );
    const endpoint = await addEndpoint(receiver.url, secret, ['email.delivered']);
    const db = platform.database.db;
    const deliveries = () =>
      db
        .selectFrom('webhook_deliveries')
        .select(['id', 'status'])
        .where('endpoint_id', '=', endpoint)
        .execute();
    const attemptsOf = async (ids: string[]) =>
      (await db.selectFrom('webhook_attempts').select('attempt').where('delivery_id', 'in', ids).execute())
        .length;
    try {
      const id = await send('deleted@example.org');
      const [first] = await eventually('the first attempt logged', async () => {
        const rows = await deliveries();
        return rows.length === 1 && (await attemptsOf([rows[0]!.id])) === 1 && rows;
      });
      const event = await deliveredEventOf(id);

      // An event statement writing a delivery while the endpoint is deleted, as two connections
      // meet: the insert does not hold the endpoint, so the delete goes through and the row
      // outlives it.
      const writer = await platform.database.pool.connect();
      try {
        await writer.query('begin');
        await writer.query(
          `insert into webhook_deliveries (endpoint_id, tenant_id, event_id, type, next_attempt_at)
           select w.id, w.tenant_id, $2, 'email.delivered', now() + interval '1 hour'
           from webhook_endpoints w where w.id = $1`,
          [endpoint, event.id],
        );
        await db.deleteFrom('webhook_endpoints').where('id', '=', endpoint).execute();
        await writer.query('commit');
      } finally {
        writer.release();
      }
      const left = await deliveries();
      assert.equal(left.length, 1, 'only the delivery written alongside the delete is left');
      assert.notEqual(left[0]!.id, first!.id);
      assert.equal(left[0]!.status, 'pending');
      assert.equal(await attemptsOf([first!.id]), 0, 'the attempts went with their delivery');

      await dueNow(left[0]!.id);
      await eventually(
        'the orphan dropped when the dispatcher takes it',
        async () => (await deliveries()).length === 0,
      );
      assert.equal(
        receiver.received.filter((r) => r.body.data.email_id === id).length,
        1,
        'never sent again',
      );
    } finally {
      await db.deleteFrom('webhook_endpoints').where('id', '=', endpoint).execute();
      await receiver.close();
    }
  });

  test('a delivery whose email was deleted as it was written (a tenant purged) is dropped when taken, not leased again', async () => {
    const secret = newWebhookSecret();
    const receiver = await startWebhookReceiver(() => [secret]);
    const endpoint = await addEndpoint(receiver.url, secret, ['email.delivered']);
    const db = platform.database.db;
    try {
      const email = await send('purged@example.org');
      await eventually('its event sent', async () =>
        receiver.received.some((r) => r.body.data.email_id === email),
      );
      const event = await deliveredEventOf(email);
      // A delivery of its event written as the email goes (its events with it), as when an event
      // statement meets a tenant purge; written for later, then made due once the email is gone.
      const { id } = await db
        .insertInto('webhook_deliveries')
        .values({
          endpoint_id: endpoint,
          tenant_id: tenantId,
          event_id: event.id,
          type: 'email.delivered',
          next_attempt_at: new Date(Date.now() + 3600_000),
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      await db.deleteFrom('emails').where('id', '=', email).execute();
      assert.equal(
        await db.selectFrom('events').select('id').where('id', '=', event.id).executeTakeFirst(),
        undefined,
        'the event went with its email',
      );
      await dueNow(id);
      await eventually(
        'the delivery dropped',
        async () =>
          !(await db.selectFrom('webhook_deliveries').select('id').where('id', '=', id).executeTakeFirst()),
      );
      assert.equal(
        receiver.received.filter((r) => r.body.data.email_id === email).length,
        1,
        'nothing was sent for it',
      );
    } finally {
      await db.deleteFrom('webhook_endpoints').where('id', '=', endpoint).execute();
      await receiver.close();
    }
  });
});

describe('where webhooks may go', () => {
  test('private, loopback, link-local and metadata addresses are refused; public ones are not', () => {
    for (const address of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '::1',
      'fd00:ec2::254',
      'fe80::1',
      '::ffff:127.0.0.1',
      '0.0.0.0',
      // 6to4 and NAT64 addresses that reach 127.0.0.1 and 10.0.0.1, and Teredo.
      '2002:7f00:1::',
      '2002:a00:1::1',
      '64:ff9b::7f00:1',
      '64:ff9b::10.0.0.1',
      '2001::1',
      '::ffff:0:127.0.0.1',
      '::ffff:0:a00:1',
    ]) {
      assert.equal(isPublicAddress(address), false, address);
    }
    for (const address of [
      '93.184.215.14',
      '2606:2800:21f:cb07:6820:80da:af6b:8b2c',
      '8.8.8.8',
      '2002:5db8:d70e::1',
      '64:ff9b::808:808',
    ]) {
      assert.equal(isPublicAddress(address), true, address);
    }
  });

  test('by default a URL must be https and may not resolve to a private address, checked when it is posted', async () => {
    const post = (url: string) => postWebhook(url, {}, '{}', { allowPrivate: false, timeoutMs: 2_000 });
    await assert.rejects(post('http://example.com/hook'), { code: 'EURL' });
    await assert.rejects(post('https://127.0.0.1/hook'), { code: 'EBLOCKED' });
    await assert.rejects(post('https://[::1]/hook'), { code: 'EBLOCKED' });
    // A name that resolves to loopback, as a rebinding name would at delivery time.
    await assert.rejects(post('https://localhost/hook'), { code: 'EBLOCKED' });
  });
});

describe('what a receiver answers', () => {
  test('a body holding NUL bytes is kept in the log without them, so the attempt can be recorded', async () => {
    const server = createServer((_req, res) => res.writeHead(200).end('ok\0\0done'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const res = await postWebhook(`http://127.0.0.1:${port}/`, {}, '{}', { allowPrivate: true });
      assert.equal(res.status, 200);
      assert.equal(res.excerpt, 'ok\uFFFD\uFFFDdone');
    } finally {
      server.close();
    }
  });
});

/** Runs `run` with the URL of a loopback HTTP server answering with `handler`, then closes it. */
async function withServer(
  handler: Parameters<typeof createServer>[1],
  run: (url: string) => Promise<void>,
): Promise<void> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await run(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

describe('an endpoint that hangs', () => {
  test('holds back no other endpoint: after its first timeout it is paused, and what falls due meanwhile is recorded as not sent and retried', async () => {
    // Never answers: every attempt to it waits out the 10 s timeout.
    await withServer(
      () => {},
      async (hangingUrl) => {
        const secret = newWebhookSecret();
        const healthy = await startWebhookReceiver(() => [secret]);
        const events = ['email.sent', 'email.delivered'];
        const stuck = await addEndpoint(hangingUrl, secret, events);
        const fine = await addEndpoint(healthy.url, secret, events);
        try {
          // Enough that, one slot per attempt for 10 s, the hanging endpoint's alone would take the
          // sender's 32 slots for a minute: 200 attempts.
          const started = Date.now();
          const res = await fetch(`${platform.url}/v1/emails/batch`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify(
              Array.from({ length: 100 }, (_, i) => ({
                from: 'Acme <hello@example.com>',
                to: `hang-${i}@example.org`,
                subject: 'Hi',
                text: 'hello',
              })),
            ),
          });
          assert.ok(res.ok, `${res.status} ${await res.text()}`);
          await eventually(
            'every event at the endpoint that answers',
            async () => healthy.received.length >= 200,
            45_000,
          );
          const took = Date.now() - started;
          assert.ok(took < 30_000, `the endpoint that answers had every event after ${took} ms`);

          const rows = await platform.database.db
            .selectFrom('webhook_deliveries')
            .select(['status', 'error', 'next_attempt_at'])
            .where('endpoint_id', '=', stuck)
            .execute();
          assert.equal(rows.length, 200, 'none lost');
          const errors = rows.map((r) => r.error ?? '');
          assert.ok(
            errors.some((e) => e.startsWith('ETIMEOUT')),
            'some attempts timed out',
          );
          assert.ok(
            errors.some((e) => e.startsWith('EPAUSED: not sent')),
            'those falling due while it was paused were not sent',
          );
          assert.ok(
            rows.every((r) => r.status === 'pending' && r.next_attempt_at),
            'each is still pending, with its next attempt',
          );
          const endpoint = await platform.database.db
            .selectFrom('webhook_endpoints')
            .select(['enabled'])
            .where('id', '=', stuck)
            .executeTakeFirstOrThrow();
          assert.equal(endpoint.enabled, true, 'paused, not disabled');
          // And the API says so.
          const shown = (await (
            await fetch(`${platform.url}/v1/webhooks/${stuck}`, {
              headers: { authorization: `Bearer ${key}` },
            })
          ).json()) as { status: string; failing_since: string | null; paused_until: string | null };
          assert.equal(shown.status, 'enabled');
          assert.ok(shown.failing_since && Date.parse(shown.failing_since) <= Date.now(), 'failing since');
          assert.ok(
            shown.paused_until === null || Date.parse(shown.paused_until) > Date.parse(shown.failing_since),
            'paused after it began to fail',
          );
        } finally {
          await platform.database.db
            .deleteFrom('webhook_endpoints')
            .where('id', 'in', [stuck, fine])
            .execute();
          await healthy.close();
        }
      },
    );
  });
});

describe('a receiver that is slow, long-winded or redirects', () => {
  test('no answer at all is a timeout, in the time allowed', async () => {
    await withServer(
      () => {},
      async (url) => {
        const started = Date.now();
        await assert.rejects(postWebhook(url, {}, '{}', { allowPrivate: true, timeoutMs: 300 }), {
          code: 'ETIMEOUT',
        });
        assert.ok(Date.now() - started < 3_000);
      },
    );
  });

  test('an answer that trickles without end is a timeout at the time allowed', async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200);
        const drip = setInterval(() => res.write('.'), 50);
        res.on('close', () => clearInterval(drip));
      },
      async (url) => {
        const started = Date.now();
        await assert.rejects(postWebhook(url, {}, '{}', { allowPrivate: true, timeoutMs: 400 }), {
          code: 'ETIMEOUT',
        });
        assert.ok(Date.now() - started < 3_000);
      },
    );
  });

  test('a 200 whose body then stops is a timeout, not a delivery', async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { 'content-length': '100' });
        res.write('partial');
      },
      async (url) => {
        for (let i = 0; i < 5; i++) {
          await assert.rejects(postWebhook(url, {}, '{}', { allowPrivate: true, timeoutMs: 700 }), {
            code: 'ETIMEOUT',
          });
        }
      },
    );
  });

  test('a 1xx is not the answer: 103 Early Hints and then a closed connection is a network error', async () => {
    const server = createNetServer((socket) => {
      socket.once('data', () =>
        socket.end('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n'),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      await assert.rejects(postWebhook(`http://127.0.0.1:${port}/hook`, {}, '{}', { allowPrivate: true }), {
        code: 'ENETWORK',
      });
    } finally {
      server.close();
    }
  });

  test('a long answer is kept to its first 1 KB; a redirect is an answer, not followed', async () => {
    await withServer(
      (req, res) => {
        if (req.url === '/hook') return res.writeHead(200).end('x'.repeat(1_000_000));
        res.writeHead(500).end();
      },
      async (url) => {
        const res = await postWebhook(url, {}, '{}', { allowPrivate: true });
        assert.equal(res.status, 200);
        assert.equal(res.excerpt, 'x'.repeat(1024));
      },
    );
    let followed = false;
    await withServer(
      (req, res) => {
        if (req.url === '/elsewhere') followed = true;
        res.writeHead(302, { location: '/elsewhere' }).end();
      },
      async (url) => {
        const res = await postWebhook(url, {}, '{}', { allowPrivate: true });
        assert.equal(res.status, 302);
        assert.equal(followed, false);
      },
    );
  });
});

describe('what events read of an email', () => {
  test('is kept beside its content, and an email from before that is read from its content: webhooks and statistics alike', async () => {
    const secret = newWebhookSecret();
    const receiver = await startWebhookReceiver(() => [secret]);
    const endpoint = await addEndpoint(receiver.url, secret, ['email.delivered']);
    const db = platform.database.db;
    const delivered = (id: string) =>
      eventually(`email.delivered for ${id}`, async () =>
        receiver.received.find((r) => r.body.type === 'email.delivered' && r.body.data.email_id === id),
      );
    const taggedDeliveries = async (tag: string) => {
      const res = await fetch(`${platform.url}/v1/stats?group_by=tag&interval=hour`, {
        headers: { authorization: `Bearer ${key}` },
      });
      const rows = ((await res.json()) as { data: { tag?: string; delivered: number }[] }).data;
      return rows.filter((r) => r.tag === tag).reduce((n, r) => n + r.delivered, 0);
    };
    try {
      // Accepted now: the fields are kept in the row, whatever the size of the content.
      const attachment = randomBytes(256 * 1024).toString('base64');
      const res = await fetch(`${platform.url}/v1/emails`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          from: 'hello@example.com',
          to: ['kept@example.org'],
          subject: 'Kept',
          text: 'x',
          tags: [{ name: 'fields', value: 'kept' }],
          attachments: [{ filename: 'big.bin', content: attachment }],
        }),
      });
      assert.equal(res.status, 202);
      const kept = ((await res.json()) as { id: string }).id;
      const row = await db
        .selectFrom('emails')
        .select('event_fields')
        .where('id', '=', kept)
        .executeTakeFirstOrThrow();
      assert.deepEqual(row.event_fields, {
        to: ['kept@example.org'],
        tags: [{ name: 'fields', value: 'kept' }],
        message_id: null,
      });
      const event = await delivered(kept);
      assert.deepEqual(event.body.data.to, ['kept@example.org']);
      assert.deepEqual(event.body.data.tags, { fields: 'kept' });
      await eventually('counted under its tag', async () => (await taggedDeliveries('fields:kept')) === 1);

      // Scheduled, then brought forward and sent, after a change to its row in between.
      const scheduled = async (to: string, tag: string) => {
        const res = await fetch(`${platform.url}/v1/emails`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            from: 'hello@example.com',
            to: [to],
            subject: 'Later',
            text: 'x',
            tags: [{ name: 'fields', value: tag }],
            scheduled_at: new Date(Date.now() + 3600_000).toISOString(),
          }),
        });
        assert.equal(res.status, 202);
        return ((await res.json()) as { id: string }).id;
      };
      const bringForward = async (id: string) => {
        const res = await fetch(`${platform.url}/v1/emails/${id}`, {
          method: 'PATCH',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ scheduled_at: new Date(Date.now() + 1000).toISOString() }),
        });
        assert.equal(res.status, 200, await res.clone().text());
      };

      // Its events read the copy, not the content: content's tags changed, the copy's win.
      const copied = await scheduled('copy@example.org', 'copy');
      await sql`update emails set content = jsonb_set(content, '{tags}', '[{"name": "fields", "value": "content"}]')
                where id = ${copied}`.execute(db);
      await bringForward(copied);
      assert.deepEqual((await delivered(copied)).body.data.tags, { fields: 'copy' });
      await eventually(
        'counted under the copy’s tag',
        async () => (await taggedDeliveries('fields:copy')) === 1,
      );
      assert.equal(await taggedDeliveries('fields:content'), 0);

      // Accepted before the fields were kept (none in its row): read from its content.
      const older = await scheduled('older@example.org', 'older');
      await db.updateTable('emails').set({ event_fields: null }).where('id', '=', older).execute();
      await bringForward(older);
      const olderEvent = await delivered(older);
      assert.deepEqual(olderEvent.body.data.to, ['older@example.org']);
      assert.deepEqual(olderEvent.body.data.tags, { fields: 'older' });
      assert.equal(olderEvent.body.data.message_id, `<${older}@example.com>`);
      await eventually('counted under its tag', async () => (await taggedDeliveries('fields:older')) === 1);
    } finally {
      await db.deleteFrom('webhook_endpoints').where('id', '=', endpoint).execute();
      await receiver.close();
    }
  });
});

describe('events from elsewhere than a send', () => {
  test('a scheduled email announces email.scheduled and, canceled, email.canceled; a late bounce through the smtp listener is email.bounced', async () => {
    const secret = newWebhookSecret();
    const receiver = await startWebhookReceiver(() => [secret]);
    const endpoint = await addEndpoint(receiver.url, secret, [
      'email.scheduled',
      'email.canceled',
      'email.bounced',
    ]);
    const inbound = await startInboundServer(
      {
        db: platform.database.db,
        secretKey: platform.config.secretKey,
        log: silentLogger,
        registry: createMetrics().registry,
        hostname: 'inbound.test',
      },
      { port: 0, host: '127.0.0.1' },
    );
    try {
      const later = new Date(Date.now() + 3600_000).toISOString();
      const res = await fetch(`${platform.url}/v1/emails`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          from: 'hello@example.com',
          to: 'later@example.org',
          subject: 'Later',
          text: 'x',
          scheduled_at: later,
        }),
      });
      const scheduled = ((await res.json()) as { id: string }).id;
      const cancel = await fetch(`${platform.url}/v1/emails/${scheduled}/cancel`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}` },
      });
      assert.equal(cancel.status, 200);

      // Delivered first, then a DSN comes back to its signed return path.
      const delivered = await send('late-bounce@example.org');
      const message = await eventually('the message delivered', async () =>
        platform.database.db
          .selectFrom('messages')
          .select('id')
          .where('email_id', '=', delivered)
          .where('status', '=', 'delivered')
          .executeTakeFirst(),
      );
      const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port: inbound.port,
        secure: false,
        ignoreTLS: true,
      });
      await transport.sendMail({
        envelope: {
          from: '',
          to: [bounceAddress(platform.config.secretKey, message.id, 'bounces.example.com')],
        },
        raw: [
          'From: MAILER-DAEMON@mx.example.net',
          'To: bounces@example.com',
          'Subject: Undelivered Mail Returned to Sender',
          'MIME-Version: 1.0',
          'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
          '',
          '--b',
          'Content-Type: message/delivery-status',
          '',
          'Reporting-MTA: dns; mx.example.net',
          '',
          'Final-Recipient: rfc822; late-bounce@example.org',
          'Action: failed',
          'Status: 5.1.1',
          'Diagnostic-Code: smtp; 550 5.1.1 no such user',
          '',
          '--b--',
          '',
        ].join('\r\n'),
      });
      transport.close();

      const seen = () => receiver.received.map((r) => `${r.body.type}:${String(r.body.data.email_id)}`);
      await eventually('the three events', async () =>
        [`email.scheduled:${scheduled}`, `email.canceled:${scheduled}`, `email.bounced:${delivered}`].every(
          (t) => seen().includes(t),
        ),
      );
      assert.ok(receiver.received.every((r) => r.verifiedWith.length === 1));
    } finally {
      await inbound.close();
      await platform.database.db.deleteFrom('webhook_endpoints').where('id', '=', endpoint).execute();
      await receiver.close();
    }
  });
});
