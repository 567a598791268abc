// /v1/webhooks against real parts: the api and the sender on a fresh database, the dev inbox as
// the relay, loopback receivers that verify every request with the official `standardwebhooks`
// library and with `svix`, and the Resend SDK unchanged. The installation allows private addresses (a loopback
// receiver is one); a second api on the same database runs with the default settings, for what
// registration refuses there.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Resend } from 'resend';
import { startApi, type RunningApi } from '../api/main.js';
import { encrypt } from '../lib/crypto.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { newWebhookSecret } from '../lib/webhooks.js';
import type { Sender } from '../sender/worker.js';
import { startInbox, type Inbox } from '../dev/inbox.js';
import { eventually } from './helpers/eventually.js';
import {
  sendingDomain,
  startTestPlatform,
  startTestSender,
  tenant,
  type TestPlatform,
} from './helpers/platform.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ACME_FROM = 'Acme <hello@example.com>';
const GLOBEX_FROM = 'Globex <hello@globex.example>';

let inbox: Inbox;
let platform: TestPlatform;
/** The sender's: what its /metrics would show. */
const senderMetrics = createMetrics();
let sender: Sender;
/** An api on the same database with MAILPLANE_WEBHOOKS_ALLOW_PRIVATE unset. */
let strict: RunningApi;
/** acme's key (send and read); globex's with both, read only and send only. */
const keys = { acme: '', globex: '', globexRead: '', globexSend: '' };

interface Answer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read member by member
  body: any;
  headers: Headers;
}

async function call(
  method: string,
  path: string,
  options: { key?: string; body?: unknown; base?: string } = {},
): Promise<Answer> {
  const res = await fetch(`${options.base ?? platform.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${options.key ?? keys.acme}`,
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

async function send(to: string, options: { key?: string; from?: string } = {}): Promise<string> {
  const res = await call('POST', '/v1/emails', {
    key: options.key,
    body: { from: options.from ?? ACME_FROM, to, subject: 'Hi', text: 'hello' },
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.id as string;
}

/** Registers an endpoint through the API; answers its id and the secret shown once. */
async function register(
  url: string,
  events: string[],
  key = keys.acme,
): Promise<{ id: string; secret: string }> {
  const res = await call('POST', '/v1/webhooks', { key, body: { endpoint: url, events } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return { id: res.body.id, secret: res.body.signing_secret };
}

async function removeAll(): Promise<void> {
  await platform.database.db.deleteFrom('webhook_endpoints').execute();
}

/** The requests a receiver got about one email, as `type` in arrival order. */
const typesFor = (receiver: WebhookReceiver, emailId: string) =>
  receiver.received.filter((r) => r.body.data.email_id === emailId).map((r) => r.body.type);

before(async () => {
  inbox = await startInbox();
  platform = await startTestPlatform({
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${inbox.smtpPort}`,
    MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: 'true',
  });
  await platform.apply([
    tenant('globex', [
      { name: 'backend', scopes: ['send', 'read'] },
      { name: 'dashboards', scopes: ['read'] },
      { name: 'jobs', scopes: ['send'] },
    ]),
    sendingDomain('globex-example', 'globex', 'globex.example'),
  ]);
  keys.acme = platform.keys.get('default/acme/backend')!;
  keys.globex = platform.keys.get('default/globex/backend')!;
  keys.globexRead = platform.keys.get('default/globex/dashboards')!;
  keys.globexSend = platform.keys.get('default/globex/jobs')!;
  sender = await startTestSender(platform, senderMetrics);
  strict = await startApi({
    database: platform.database,
    config: { ...platform.config, webhooksAllowPrivate: false },
    log: silentLogger,
    metrics: createMetrics(),
  });
});
after(async () => {
  await strict?.close();
  await sender?.stop();
  await platform?.close();
  await inbox?.close();
});

describe('the resend SDK, unchanged', () => {
  test('webhooks.create, get, list, update, rotateSigningSecret and remove work against /v1/webhooks', async () => {
    const resend = new Resend(keys.acme, { baseUrl: `${platform.url}/v1` });
    try {
      const created = await resend.webhooks.create({
        endpoint: 'https://hooks.acme.example/mailplane',
        events: ['email.delivered', 'email.bounced'],
      });
      assert.equal(created.error, null);
      const { id, signing_secret: secret } = created.data!;
      assert.match(id, UUID);
      assert.equal(created.data!.object, 'webhook');
      assert.match(secret, /^whsec_[A-Za-z0-9+/]{32}$/);

      const got = await resend.webhooks.get(id);
      assert.equal(got.error, null);
      assert.equal(got.data!.endpoint, 'https://hooks.acme.example/mailplane');
      assert.deepEqual(got.data!.events, ['email.delivered', 'email.bounced']);
      assert.equal(got.data!.status, 'enabled');
      assert.ok(!Number.isNaN(Date.parse(got.data!.created_at)));
      // Shown once: a key that reads cannot learn the secret that signs.
      assert.equal('signing_secret' in got.data!, false);
      const stored = await platform.database.db
        .selectFrom('webhook_endpoints')
        .select('secret')
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
      assert.ok(!stored.secret.includes(secret.slice(6)), 'the secret is stored encrypted');

      const listed = await resend.webhooks.list();
      assert.equal(listed.data!.object, 'list');
      assert.equal(listed.data!.has_more, false);
      assert.deepEqual(
        listed.data!.data.map((w) => w.id),
        [id],
      );

      const disabled = await resend.webhooks.update(id, { status: 'disabled' });
      assert.equal(disabled.error, null);
      assert.equal(disabled.data!.id, id);
      const off = await resend.webhooks.get(id);
      assert.equal(off.data!.status, 'disabled');
      assert.equal(
        (off.data as unknown as { disabled_reason: string }).disabled_reason,
        'disabled through the API',
      );

      await resend.webhooks.update(id, {
        endpoint: 'https://hooks.acme.example/v2',
        events: ['email.sent'],
        status: 'enabled',
      });
      const changed = await resend.webhooks.get(id);
      assert.equal(changed.data!.endpoint, 'https://hooks.acme.example/v2');
      assert.deepEqual(changed.data!.events, ['email.sent']);
      assert.equal(changed.data!.status, 'enabled');

      const rotated = await resend.webhooks.rotateSigningSecret(id);
      assert.equal(rotated.error, null);
      assert.equal(rotated.data!.id, id);
      assert.match(rotated.data!.signing_secret, /^whsec_/);
      assert.notEqual(rotated.data!.signing_secret, secret);

      const removed = await resend.webhooks.remove(id);
      assert.deepEqual(removed.data, { object: 'webhook', id, deleted: true });
      const gone = await resend.webhooks.get(id);
      assert.equal(gone.error?.name, 'not_found');
      assert.equal(gone.error?.statusCode, 404);
    } finally {
      await removeAll();
    }
  });

  test('webhooks.list pages newest first with limit, after and before', async () => {
    const resend = new Resend(keys.acme, { baseUrl: `${platform.url}/v1` });
    try {
      const ids: string[] = [];
      for (const n of [1, 2, 3])
        ids.push((await register(`https://hooks.acme.example/${n}`, ['email.sent'])).id);
      const newestFirst = [...ids].reverse();

      const first = await resend.webhooks.list({ limit: 2 });
      assert.deepEqual(
        first.data!.data.map((w) => w.id),
        newestFirst.slice(0, 2),
      );
      assert.equal(first.data!.has_more, true);
      const rest = await resend.webhooks.list({ limit: 2, after: newestFirst[1]! });
      assert.deepEqual(
        rest.data!.data.map((w) => w.id),
        newestFirst.slice(2),
      );
      assert.equal(rest.data!.has_more, false);
      const back = await resend.webhooks.list({ limit: 2, before: newestFirst[2]! });
      assert.deepEqual(
        back.data!.data.map((w) => w.id),
        newestFirst.slice(0, 2),
      );

      const wrong = await call('GET', '/v1/webhooks?limit=0&after=nope');
      assert.equal(wrong.status, 422);
      assert.deepEqual(
        wrong.body.errors.map((e: { field: string }) => e.field),
        ['limit', 'after'],
      );
    } finally {
      await removeAll();
    }
  });
});

describe('events reach an endpoint registered through the API', () => {
  test('a real send’s events arrive signed with the secret that create answered, and the log and the SDK show them', async () => {
    let secret = '';
    const receiver = await startWebhookReceiver(() => [secret]);
    try {
      const resend = new Resend(keys.acme, { baseUrl: `${platform.url}/v1` });
      const created = await resend.webhooks.create({
        endpoint: receiver.url,
        events: ['email.sent', 'email.delivered', 'email.bounced'],
      });
      secret = created.data!.signing_secret;
      const webhookId = created.data!.id;
      const delivered = await send('ada@example.org');
      const bounced = await send('bounce-me@example.org');
      await eventually(
        'the events of both emails',
        async () =>
          ['email.sent', 'email.delivered'].every((t) => typesFor(receiver, delivered).includes(t)) &&
          typesFor(receiver, bounced).includes('email.bounced'),
      );
      for (const r of receiver.received) assert.deepEqual(r.verifiedWith, [secret], 'every request verifies');

      const log = await eventually('every delivery settled', async () => {
        const page = await resend.webhooks.events.list({ webhookId });
        return page.data!.data.length === receiver.received.length &&
          page.data!.data.every((d) => d.status === 'success')
          ? page.data!
          : undefined;
      });
      assert.equal(log.object, 'list');
      const ids = log.data.map((d) => Number(d.id));
      assert.deepEqual(
        ids,
        [...ids].sort((a, b) => b - a),
        'newest first',
      );
      const entry = (await call('GET', `/v1/webhooks/${webhookId}/deliveries`)).body.data.find(
        (d: { type: string }) => d.type === 'email.delivered',
      );
      assert.equal(entry.email_id, delivered);
      assert.equal(entry.attempts, 1);
      assert.equal(entry.response_status, 200);
      assert.equal(entry.response_excerpt, 'answered 200');
      assert.equal(typeof entry.latency_ms, 'number');
      assert.equal(entry.error, null);
      assert.equal(entry.replay, false);
      assert.ok(entry.delivered_at && entry.created_at);

      const one = await resend.webhooks.events.get({ webhookId, eventId: entry.id });
      assert.equal(one.data!.type, 'email.delivered');
      const sent = receiver.received.find((r) => r.headers['webhook-id'] === `msg_${entry.id}`)!;
      assert.deepEqual(one.data!.payload, sent.body, 'the payload is the body that was sent');
    } finally {
      await removeAll();
      await receiver.close();
    }
  });

  test('after a rotation, events verify with the new secret and with the old one for 24 hours, then with the new one only', async () => {
    const secrets: string[] = [];
    const receiver = await startWebhookReceiver(() => secrets);
    try {
      const { id, secret: old } = await register(receiver.url, ['email.delivered']);
      const rotated = await call('POST', `/v1/webhooks/${id}/signing-secret/rotate`);
      assert.equal(rotated.status, 200);
      const fresh = rotated.body.signing_secret as string;
      secrets.push(old, fresh);
      const overlap = Date.parse(rotated.body.previous_secret_expires_at) - Date.now();
      assert.ok(Math.abs(overlap - 24 * 3600_000) < 60_000, `the old secret signs for ${overlap} ms`);

      const during = await send('rotation@example.org');
      const [first] = await eventually('the event during the overlap', async () => {
        const got = receiver.received.filter((r) => r.body.data.email_id === during);
        return got.length > 0 && got;
      });
      assert.deepEqual(first!.verifiedWith.sort(), [old, fresh].sort());

      // A day later (the overlap ended): only the new secret signs.
      await platform.database.db
        .updateTable('webhook_endpoints')
        .set({ previous_secret_expires_at: new Date(Date.now() - 1000) })
        .where('id', '=', id)
        .execute();
      const later = await send('rotation-later@example.org');
      const [second] = await eventually('the event after the overlap', async () => {
        const got = receiver.received.filter((r) => r.body.data.email_id === later);
        return got.length > 0 && got;
      });
      assert.deepEqual(second!.verifiedWith, [fresh]);
      assert.equal((await call('GET', `/v1/webhooks/${id}`)).body.previous_secret_expires_at, null);
    } finally {
      await removeAll();
      await receiver.close();
    }
  });

  test('the log shows each attempt: a 500 with the answer and the next attempt, then the retry that succeeded; pages by cursor; /metrics counts them', async () => {
    const counted = async () =>
      Object.fromEntries(
        (await senderMetrics.webhookAttempts.get()).values.map((v) => [v.labels.outcome, v.value]),
      ) as Record<string, number | undefined>;
    const before = await counted();
    const answered = async () =>
      (await senderMetrics.webhookLatency.get()).values.find((v) => v.metricName?.endsWith('_count'))
        ?.value ?? 0;
    const answeredBefore = await answered();
    let answer = 500;
    let secret = '';
    const receiver = await startWebhookReceiver(
      () => [secret],
      () => answer,
    );
    try {
      const endpoint = await register(receiver.url, ['email.sent', 'email.delivered']);
      secret = endpoint.secret;
      const id = await send('retry@example.org');
      const path = `/v1/webhooks/${endpoint.id}/deliveries`;
      const failed = await eventually('both first attempts', async () => {
        const { body } = await call('GET', path);
        return (
          body.data.length === 2 && body.data.every((d: { attempts: number }) => d.attempts === 1) && body
        );
      });
      for (const d of failed.data) {
        assert.equal(d.status, 'attempting');
        assert.equal(d.response_status, 500);
        assert.equal(d.response_excerpt, 'answered 500');
        assert.equal(d.email_id, id);
        assert.ok(Date.parse(d.next_attempt_at) > Date.now(), 'a retry is scheduled');
        assert.equal(d.delivered_at, null);
      }

      answer = 200;
      const settled = await eventually(
        'both retries',
        async () => {
          const { body } = await call('GET', path);
          return body.data.every((d: { status: string }) => d.status === 'success') && body;
        },
        20_000,
      );
      for (const d of settled.data) {
        assert.equal(d.attempts, 2);
        assert.equal(d.response_status, 200);
        assert.equal(d.next_attempt_at, null);
      }

      const [newer, older] = settled.data as { id: string }[];
      const page1 = await call('GET', `${path}?limit=1`);
      assert.deepEqual([page1.body.data[0].id, page1.body.has_more], [newer!.id, true]);
      const page2 = await call('GET', `${path}?limit=1&after=${newer!.id}`);
      assert.deepEqual([page2.body.data[0].id, page2.body.has_more], [older!.id, false]);
      const back = await call('GET', `${path}?limit=1&before=${older!.id}`);
      assert.deepEqual(
        back.body.data.map((d: { id: string }) => d.id),
        [newer!.id],
      );
      // Two refused, then two delivered; each answer's latency observed.
      const after = await counted();
      assert.equal((after.refused ?? 0) - (before.refused ?? 0), 2);
      assert.equal((after.delivered ?? 0) - (before.delivered ?? 0), 2);
      assert.equal((await answered()) - answeredBefore, 4);
    } finally {
      await removeAll();
      await receiver.close();
    }
  });
});

describe('replay', () => {
  test('one email’s events, a time range’s and one delivery’s are sent again as new deliveries marked replay, subscribed types only', async () => {
    let secret = '';
    const receiver = await startWebhookReceiver(() => [secret]);
    try {
      // Subscribed to delivered only: each email's `sending` event is not replayed either.
      const endpoint = await register(receiver.url, ['email.delivered']);
      secret = endpoint.secret;
      const from = new Date(Date.now() - 1000).toISOString();
      const first = await send('replay-1@example.org');
      const second = await send('replay-2@example.org');
      await eventually('both events', async () => receiver.received.length === 2);
      const webhookIds = () => new Set(receiver.received.map((r) => r.headers['webhook-id']));

      const one = await call('POST', `/v1/webhooks/${endpoint.id}/replay`, { body: { email_id: first } });
      assert.equal(one.status, 202);
      assert.deepEqual(one.body, { object: 'webhook_replay', webhook_id: endpoint.id, queued: 1 });
      await eventually('the replayed event', async () => receiver.received.length === 3);
      assert.deepEqual(typesFor(receiver, first), ['email.delivered', 'email.delivered']);
      assert.equal(webhookIds().size, 3, 'a replay is a new delivery, with its own webhook-id');

      const to = new Date(Date.now() + 1000).toISOString();
      const range = await call('POST', `/v1/webhooks/${endpoint.id}/replay`, { body: { from, to } });
      assert.equal(range.status, 202);
      assert.equal(range.body.queued, 2);
      await eventually('the range replayed', async () => receiver.received.length === 5);
      assert.equal(typesFor(receiver, second).length, 2);
      assert.ok(receiver.received.every((r) => r.verifiedWith.length === 1));

      const resend = new Resend(keys.acme, { baseUrl: `${platform.url}/v1` });
      const original = (await call('GET', `/v1/webhooks/${endpoint.id}/deliveries`)).body.data.find(
        (d: { replay: boolean; email_id: string }) => !d.replay && d.email_id === second,
      );
      const again = await resend.webhooks.events.replay({ webhookId: endpoint.id, eventId: original.id });
      assert.equal(again.data!.object, 'webhook_event');
      assert.notEqual(again.data!.id, original.id);
      await eventually('the delivery replayed', async () => receiver.received.length === 6);

      const rows = await platform.database.db
        .selectFrom('webhook_deliveries')
        .select(['replay', 'status'])
        .where('endpoint_id', '=', endpoint.id)
        .execute();
      assert.equal(rows.length, 6);
      assert.equal(rows.filter((r) => r.replay).length, 4);
      await eventually('every replay delivered', async () => {
        const log = (await call('GET', `/v1/webhooks/${endpoint.id}/deliveries`)).body.data;
        return (
          log.filter((d: { replay: boolean; status: string }) => d.replay && d.status === 'success')
            .length === 4
        );
      });
    } finally {
      await removeAll();
      await receiver.close();
    }
  });

  test('a replay is refused with a 422 naming the field: no form, both forms, a range backwards or over 7 days, a date that is not RFC 3339, another tenant’s email; and 409 while disabled', async () => {
    try {
      const { id } = await register('https://hooks.acme.example/replay', ['email.delivered']);
      const globexEmail = await send('from-globex@example.org', { key: keys.globex, from: GLOBEX_FROM });
      const cases: [unknown, string, RegExp][] = [
        [{}, '(body)', /email_id, or from and to/],
        [
          { email_id: globexEmail, from: '2030-01-01T00:00:00Z', to: '2030-01-01T01:00:00Z' },
          '(body)',
          /not both/,
        ],
        [{ from: '2030-01-02T00:00:00Z', to: '2030-01-01T00:00:00Z' }, 'to', /after from/],
        [{ from: '2030-01-01T00:00:00Z', to: '2030-01-08T00:00:01Z' }, 'to', /at most 7 days/],
        [{ from: '2030-01-01', to: '2030-01-02T00:00:00Z' }, 'from', /RFC 3339/],
        [{ from: '2030-01-01T00:00:00Z' }, 'to', /required/],
        [{ email_id: globexEmail }, 'email_id', /no email of this tenant/],
        [{ email_id: 'nope' }, 'email_id', /UUID/],
        [{ emailId: globexEmail }, 'emailId', /not a member/],
      ];
      for (const [body, field, message] of cases) {
        const res = await call('POST', `/v1/webhooks/${id}/replay`, { body });
        assert.equal(res.status, 422, JSON.stringify(body));
        assert.equal(res.body.name, 'validation_error');
        assert.equal(res.body.errors[0].field, field, JSON.stringify(body));
        assert.match(res.body.errors[0].message, message);
      }
      assert.equal(
        (await platform.database.db.selectFrom('webhook_deliveries').select('id').execute()).length,
        0,
        'nothing was queued',
      );

      await call('PATCH', `/v1/webhooks/${id}`, { body: { status: 'disabled' } });
      const disabled = await call('POST', `/v1/webhooks/${id}/replay`, {
        body: { from: '2030-01-01T00:00:00Z', to: '2030-01-01T01:00:00Z' },
      });
      assert.equal(disabled.status, 409);
      assert.equal(disabled.body.name, 'webhook_disabled');
      assert.match(disabled.body.detail, /disabled through the API.*enable it first/);
    } finally {
      await removeAll();
    }
  });
});

describe('where a webhook may point, checked at registration', () => {
  test('by default: a private, loopback or metadata address, plain http, localhost, a single-label host, credentials and an over-long URL are refused with a 422 naming endpoint', async () => {
    const cases: [string, RegExp][] = [
      ['https://10.0.0.7/hook', /private address \(10\.0\.0\.7\)/],
      ['https://169.254.169.254/latest/meta-data', /private address/],
      ['https://127.0.0.1:8443/hook', /private address/],
      ['https://2130706433/hook', /private address \(127\.0\.0\.1\)/],
      ['https://[::1]/hook', /private address \(::1\)/],
      ['https://[::ffff:192.168.0.1]/hook', /private address/],
      ['https://[64:ff9b::10.0.0.1]/hook', /private address/],
      ['http://hooks.acme.example/hook', /must be an https URL/],
      ['https://localhost/hook', /this machine/],
      ['https://mailplane-api/hook', /public host/],
      ['https://user:secret@hooks.acme.example/hook', /credentials/],
      [`https://hooks.acme.example/${'x'.repeat(2048)}`, /at most 2048 characters/],
      ['hooks.acme.example/hook', /absolute URL/],
    ];
    for (const [endpoint, message] of cases) {
      const res = await call('POST', '/v1/webhooks', {
        base: strict.url,
        body: { endpoint, events: ['email.delivered'] },
      });
      assert.equal(res.status, 422, endpoint);
      assert.equal(res.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      assert.equal(res.body.name, 'validation_error');
      assert.deepEqual(
        res.body.errors.map((e: { field: string }) => e.field),
        ['endpoint'],
      );
      assert.match(res.body.errors[0].message, message, endpoint);
      assert.match(res.body.detail, /^endpoint: /);
    }
    const changed = await call('PATCH', '/v1/webhooks/00000000-0000-4000-8000-000000000000', {
      base: strict.url,
      body: { endpoint: 'https://10.0.0.7/hook' },
    });
    assert.equal(changed.status, 404, 'an update is checked too, once the webhook is found');

    const ok = await call('POST', '/v1/webhooks', {
      base: strict.url,
      body: { endpoint: 'https://hooks.acme.example/hook', events: ['email.delivered'] },
    });
    assert.equal(ok.status, 201);
    const update = await call('PATCH', `/v1/webhooks/${ok.body.id}`, {
      base: strict.url,
      body: { endpoint: 'http://hooks.acme.example/hook' },
    });
    assert.equal(update.status, 422);
    assert.match(update.body.errors[0].message, /https/);
    await removeAll();
  });

  test('events must be a non-empty list of the events Mailplane sends; unknown members are named', async () => {
    const cases: [unknown, string, RegExp][] = [
      [{ endpoint: 'https://h.acme.example' }, 'events', /is required/],
      [{ endpoint: 'https://h.acme.example', events: 'email.sent' }, 'events', /list of event types/],
      [{ endpoint: 'https://h.acme.example', events: [] }, 'events', /at least one/],
      [
        { endpoint: 'https://h.acme.example', events: ['email.delivered', 'email.forwarded'] },
        'events[1]',
        /"email.forwarded" is not an event Mailplane sends/,
      ],
      [{ url: 'https://h.acme.example', events: ['email.sent'] }, 'endpoint', /is required/],
      [{ endpoint: 42, events: ['email.sent'] }, 'endpoint', /must be a URL/],
      [['https://h.acme.example'], '(body)', /JSON object/],
    ];
    for (const [body, field, message] of cases) {
      const res = await call('POST', '/v1/webhooks', { body });
      assert.equal(res.status, 422, JSON.stringify(body));
      const fault = res.body.errors.find((e: { field: string }) => e.field === field);
      assert.ok(fault, `${field} in ${JSON.stringify(res.body.errors)}`);
      assert.match(fault.message, message);
    }
    const url = await call('POST', '/v1/webhooks', {
      body: { url: 'https://h.acme.example', events: ['email.sent'] },
    });
    assert.match(
      url.body.errors.find((e: { field: string }) => e.field === 'url').message,
      /the URL goes in `endpoint`/,
    );
    assert.equal(
      (await platform.database.db.selectFrom('webhook_endpoints').select('id').execute()).length,
      0,
      'nothing was registered',
    );
  });

  test('with MAILPLANE_WEBHOOKS_ALLOW_PRIVATE, plain http and private addresses are taken; a tenant has at most 20 webhooks', async () => {
    try {
      for (let n = 0; n < 20; n++) await register(`http://10.0.0.${n + 1}/hook`, ['email.sent'], keys.globex);
      const over = await call('POST', '/v1/webhooks', {
        key: keys.globex,
        body: { endpoint: 'http://10.0.0.99/hook', events: ['email.sent'] },
      });
      assert.equal(over.status, 422);
      assert.match(over.body.detail, /at most 20 webhooks/);
      // Another tenant's count is its own.
      await register('http://10.0.1.1/hook', ['email.sent'], keys.acme);
    } finally {
      await removeAll();
    }
  });
});

describe('an endpoint declared in a Tenant', () => {
  test('is shown, logged and replayed, but cannot be changed, rotated or deleted through the API (403)', async () => {
    const { id: tenantId } = await platform.database.db
      .selectFrom('tenants')
      .select('id')
      .where('name', '=', 'acme')
      .executeTakeFirstOrThrow();
    const envelope = encrypt(platform.config.secretKey, newWebhookSecret());
    const { id } = await platform.database.db
      .insertInto('webhook_endpoints')
      .values({
        tenant_id: tenantId,
        name: 'ops',
        url: 'https://ops.acme.example/hooks',
        events: [],
        secret: envelope,
        source: 'tenant',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    try {
      const got = await call('GET', `/v1/webhooks/${id}`);
      assert.equal(got.status, 200);
      assert.equal(got.body.source, 'tenant');
      assert.equal(got.body.name, 'ops');
      assert.equal(got.body.events, null, 'every event');

      for (const [method, path, body] of [
        ['PATCH', `/v1/webhooks/${id}`, { status: 'disabled' }],
        ['PATCH', `/v1/webhooks/${id}`, { endpoint: 'https://evil.example/hooks' }],
        ['DELETE', `/v1/webhooks/${id}`, undefined],
        ['POST', `/v1/webhooks/${id}/signing-secret/rotate`, undefined],
      ] as const) {
        const res = await call(method, path, { body });
        assert.equal(res.status, 403, `${method} ${path}`);
        assert.equal(res.body.name, 'webhook_read_only');
        assert.match(
          res.body.detail,
          /"ops"\) is declared in the Tenant resource default\/acme \(spec\.webhooks\)/,
        );
        assert.equal(res.body.request_id, res.headers.get('x-request-id'));
      }
      const row = await platform.database.db
        .selectFrom('webhook_endpoints')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
      assert.deepEqual(
        [row.url, row.enabled, row.secret, row.previous_secret],
        ['https://ops.acme.example/hooks', true, envelope, null],
      );

      assert.equal((await call('GET', `/v1/webhooks/${id}/deliveries`)).status, 200);
      const replay = await call('POST', `/v1/webhooks/${id}/replay`, {
        body: { from: '2030-01-01T00:00:00Z', to: '2030-01-01T01:00:00Z' },
      });
      assert.equal(replay.status, 202);
    } finally {
      await removeAll();
    }
  });
});

describe('tenant isolation', () => {
  test("another tenant's key gets 404 for every route of an endpoint, sees none of it, and gets none of its events", async () => {
    let acmeSecret = '';
    let globexSecret = '';
    const acmeReceiver = await startWebhookReceiver(() => [acmeSecret]);
    const globexReceiver = await startWebhookReceiver(() => [globexSecret]);
    try {
      const acme = await register(acmeReceiver.url, ['email.delivered']);
      acmeSecret = acme.secret;
      const globex = await register(globexReceiver.url, ['email.delivered'], keys.globex);
      globexSecret = globex.secret;
      const acmeEmail = await send('isolation@example.org');
      await eventually('acme’s event', async () => acmeReceiver.received.length === 1);
      const delivery = (await call('GET', `/v1/webhooks/${acme.id}/deliveries`)).body.data[0].id as string;

      const range = { from: new Date(Date.now() - 60_000).toISOString(), to: new Date().toISOString() };
      for (const [method, path, body] of [
        ['GET', `/v1/webhooks/${acme.id}`, undefined],
        ['PATCH', `/v1/webhooks/${acme.id}`, { status: 'disabled' }],
        ['DELETE', `/v1/webhooks/${acme.id}`, undefined],
        ['POST', `/v1/webhooks/${acme.id}/signing-secret/rotate`, undefined],
        ['GET', `/v1/webhooks/${acme.id}/deliveries`, undefined],
        ['GET', `/v1/webhooks/${acme.id}/events`, undefined],
        ['GET', `/v1/webhooks/${acme.id}/events/${delivery}`, undefined],
        ['POST', `/v1/webhooks/${acme.id}/events/${delivery}/replay`, undefined],
        ['POST', `/v1/webhooks/${acme.id}/replay`, range],
        // acme's delivery under globex's own endpoint
        ['GET', `/v1/webhooks/${globex.id}/events/${delivery}`, undefined],
        ['POST', `/v1/webhooks/${globex.id}/events/${delivery}/replay`, undefined],
      ] as const) {
        const res = await call(method, path, { key: keys.globex, body });
        assert.equal(res.status, 404, `${method} ${path}`);
        assert.equal(res.body.name, 'not_found');
      }
      const listed = await call('GET', '/v1/webhooks', { key: keys.globex });
      assert.deepEqual(
        listed.body.data.map((w: { id: string }) => w.id),
        [globex.id],
      );
      // Neither acme's email nor its events can be replayed to globex's endpoint.
      const stolen = await call('POST', `/v1/webhooks/${globex.id}/replay`, {
        key: keys.globex,
        body: { email_id: acmeEmail },
      });
      assert.equal(stolen.status, 422);
      // A range re-sends globex's own events only (those of its email in an earlier test, if any).
      const ranged = await call('POST', `/v1/webhooks/${globex.id}/replay`, {
        key: keys.globex,
        body: { ...range, to: new Date(Date.now() + 1000).toISOString() },
      });
      assert.equal(ranged.status, 202);

      const globexEmail = await send('isolation-globex@example.org', { key: keys.globex, from: GLOBEX_FROM });
      await eventually(
        'globex’s events',
        async () => globexReceiver.received.length === ranged.body.queued + 1,
      );
      await sleep(300);
      const toGlobex = globexReceiver.received.map((r) => r.body.data.email_id);
      assert.ok(toGlobex.includes(globexEmail));
      assert.ok(!toGlobex.includes(acmeEmail), 'no event of acme’s reached globex');
      assert.deepEqual(
        acmeReceiver.received.map((r) => r.body.data.email_id),
        [acmeEmail],
        'no event of globex’s reached acme',
      );
      const row = await platform.database.db
        .selectFrom('webhook_endpoints')
        .select(['enabled', 'url'])
        .where('id', '=', acme.id)
        .executeTakeFirstOrThrow();
      assert.deepEqual(row, { enabled: true, url: acmeReceiver.url });
    } finally {
      await removeAll();
      await acmeReceiver.close();
      await globexReceiver.close();
    }
  });

  test('reading needs the read scope; changing needs send and read both', async () => {
    const read = await call('GET', '/v1/webhooks', { key: keys.globexRead });
    assert.equal(read.status, 200);
    const body = { endpoint: 'https://hooks.globex.example/x', events: ['email.sent'] };
    const byReader = await call('POST', '/v1/webhooks', { key: keys.globexRead, body });
    assert.equal(byReader.status, 403);
    assert.equal(byReader.body.name, 'restricted_api_key');
    const bySender = await call('POST', '/v1/webhooks', { key: keys.globexSend, body });
    assert.equal(bySender.status, 403);
    assert.match(bySender.body.detail, /"read"/);
    assert.equal((await call('GET', '/v1/webhooks', { key: keys.globexSend })).status, 403);
  });
});
