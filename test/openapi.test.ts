// The document the api serves at /v1/openapi.json against the api itself: every route's real
// answers (success and every kind of refusal we can bring about, the database gone included) are
// validated with a JSON Schema validator against the response the document lists for their status
// and media type, where an object allows no member it does not name. An answer with a status, a
// media type or a member the document lacks fails, and so does a status the document lists that
// no answer shows; every body the api accepts, the document's request schema takes too. The
// document names every route of the api the app serves (the SendGrid- and Postmark-compatible
// routes answer in those vendors' shapes, which their own documents describe), states the
// installation's recipient limit, and passes Redocly's strictest ruleset.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { createApp, type AppDeps } from '../api/app.js';
import { encrypt } from '../lib/crypto.js';
import { claimMessage, defer, recordComplaint, recordDelay } from '../lib/db/transitions.js';
import { newWebhookSecret } from '../lib/webhooks.js';
import { clickUrl, openUrl } from '../lib/tracking.js';
import { unsubscribeUrl } from '../lib/unsubscribe.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { sendingDomain, startTestPlatform, tenant, type TestPlatform } from './helpers/platform.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';

interface OpenApiDocument {
  paths: Record<string, Record<string, { responses: Record<string, Response> }>>;
}
interface Response {
  headers?: Record<string, unknown>;
  content?: Record<string, { schema: unknown }>;
}
interface Answer {
  status: number;
  mediaType: string;
  headers: Headers;
  body: unknown;
}

const FROM = 'Acme <hello@example.com>';
const EMAIL = { from: FROM, to: 'ada@example.org', subject: 'Hello', text: 'Hi' };
const DOCUMENT_ID = 'https://mailplane.test/openapi.json';
/** The statuses no request of a test can bring about: a bug on our side. */
const UNREACHABLE = new Set(['500']);
/** The routes outside /v1 that are the api's own; the others are the vendor-compatible ones. */
const SERVICE_ROUTES = ['/healthz', '/readyz', '/metrics'];
/** The recipient limit the installation under test sets, which the document states. */
const MAX_RECIPIENTS = 40;
/** The operations that answer no 4xx, which Redocly's strict ruleset asks of every operation. */
const NO_4XX = ['/v1/openapi.json', '/healthz', '/readyz', '/metrics'];
/** The operations that answer no 2xx, which the same ruleset asks of every operation: a redirect. */
const NO_2XX = ['/t/c/{token}'];

let database: TestDatabase;
let proxy: TcpProxy;
/** Where the api's checks of domains look: loopback, never the machine's resolvers. */
let dns: DnsServer;
let platform: TestPlatform;
let document: OpenApiDocument;
let ajv: Ajv2020;
/** Keys by what they may do: acme's (send and read), globex's read-only and send-only. */
const keys = { both: '', read: '', send: '' };
/** `METHOD /path/template STATUS` of every answer checked. */
const seen = new Set<string>();

before(async () => {
  database = await createTestDatabase();
  const direct = new URL(database.url);
  proxy = await startTcpProxy(Number(direct.port || 5432), direct.hostname);
  dns = await startDnsServer();
  const proxied = new URL(database.url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  platform = await startTestPlatform({
    DATABASE_URL: proxied.toString(),
    MAILPLANE_INBOUND_HOST: 'mx.mailplane.example',
    MAILPLANE_MAX_RECIPIENTS: String(MAX_RECIPIENTS),
    MAILPLANE_DNS_SERVERS: dns.address,
  });
  await platform.apply([
    tenant('globex', [
      { name: 'dashboards', scopes: ['read'] },
      { name: 'jobs', scopes: ['send'] },
    ]),
    sendingDomain('globex-com', 'globex', 'globex.example'),
  ]);
  keys.both = platform.keys.get('default/acme/backend')!;
  keys.read = platform.keys.get('default/globex/dashboards')!;
  keys.send = platform.keys.get('default/globex/jobs')!;

  const res = await fetch(`${platform.url}/v1/openapi.json`);
  document = (await res.json()) as OpenApiDocument;
  ajv = new Ajv2020({ allErrors: true, strict: true });
  // The document's own members are not schemas; only the schemas in it are compiled.
  for (const keyword of ['openapi', 'info', 'servers', 'security', 'tags', 'paths', 'components']) {
    ajv.addKeyword({ keyword });
  }
  ajv.addFormat('uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
  ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i);
  ajv.addSchema(document, DOCUMENT_ID);
});
after(async () => {
  await platform?.close();
  await proxy?.close();
  await dns?.close();
  await database?.drop();
});

/** Sends a request; `body` as JSON unless it is already a string or bytes. */
async function exchange(
  method: string,
  path: string,
  options: {
    body?: unknown;
    key?: string | null;
    headers?: Record<string, string>;
    /** `manual` to see a redirect itself rather than where it leads. */
    redirect?: RequestInit['redirect'];
  } = {},
): Promise<Answer> {
  const { body, key = keys.both } = options;
  const headers: Record<string, string> = {
    ...(key === null ? {} : { authorization: `Bearer ${key}` }),
    ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    ...options.headers,
  };
  const payload =
    body === undefined || typeof body === 'string' || body instanceof Uint8Array
      ? body
      : JSON.stringify(body);
  const res = await fetch(platform.url + path, {
    method,
    headers,
    body: payload as RequestInit['body'],
    ...(options.redirect ? { redirect: options.redirect } : {}),
  });
  const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
  const text = await res.text();
  return {
    status: res.status,
    mediaType,
    headers: res.headers,
    body: /json/.test(mediaType) ? (JSON.parse(text) as unknown) : text,
  };
}

/** The document's path template a concrete path falls under: a literal path before a templated one. */
function templateOf(method: string, pathAndQuery: string): string {
  const path = pathAndQuery.split('?')[0]!;
  const candidates = Object.keys(document.paths).filter((t) => document.paths[t]![method]);
  const literal = candidates.find((t) => t === path);
  if (literal) return literal;
  const templated = candidates.find((t) => new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path));
  assert.ok(templated, `${method.toUpperCase()} ${path} is not in the document`);
  return templated;
}

const pointer = (...segments: string[]) =>
  segments.map((s) => s.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

/** Holds an answer to the document: its status listed, its media type and its body as described. */
function conforms(method: string, path: string, answer: Answer): void {
  const template = templateOf(method, path);
  const label = `${method.toUpperCase()} ${template} ${answer.status}`;
  const response = document.paths[template]![method]!.responses[String(answer.status)];
  assert.ok(response, `${label}: the document lists no such answer (${JSON.stringify(answer.body)})`);
  assert.ok(response.content?.[answer.mediaType], `${label}: answered ${answer.mediaType}, not documented`);
  const at = pointer(
    'paths',
    template,
    method,
    'responses',
    String(answer.status),
    'content',
    answer.mediaType,
  );
  const validate = ajv.getSchema(`${DOCUMENT_ID}#/${at}/schema`);
  assert.ok(validate, `${label}: no schema`);
  const excerpt = JSON.stringify(answer.body)?.slice(0, 2000);
  assert.ok(validate(answer.body), `${label}: ${ajv.errorsText(validate.errors)}\n${excerpt}`);
  // The headers the document promises, X-Request-Id on every answer and Retry-After on a 503.
  for (const name of Object.keys(response.headers ?? {})) {
    if (name === 'X-Request-Id' || name === 'Retry-After') {
      assert.ok(answer.headers.get(name), `${label}: no ${name} header`);
    }
  }
  seen.add(label);
}

/** Sends, holds the answer to the document, and checks it has the status expected. */
async function check(
  method: string,
  path: string,
  status: number,
  options: Parameters<typeof exchange>[2] = {},
): Promise<Answer> {
  const answer = await exchange(method, path, options);
  assert.equal(answer.status, status, `${method} ${path}: ${JSON.stringify(answer.body)?.slice(0, 500)}`);
  conforms(method.toLowerCase(), path, answer);
  if (status < 300 && options.body !== undefined && typeof options.body === 'object') {
    acceptedBodyConforms(method.toLowerCase(), path, options.body);
  }
  return answer;
}

/** A body the api accepted is one the document's request schema takes too. */
function acceptedBodyConforms(method: string, path: string, body: unknown): void {
  const template = templateOf(method, path);
  const at = pointer('paths', template, method, 'requestBody', 'content', 'application/json');
  const validate = ajv.getSchema(`${DOCUMENT_ID}#/${at}/schema`);
  assert.ok(validate, `${method.toUpperCase()} ${template}: accepted a body the document does not describe`);
  assert.ok(
    validate(body),
    `${method.toUpperCase()} ${template} request: ${ajv.errorsText(validate.errors)}`,
  );
}

/** A JSON body over the api's limit (the body parser's 413), without allocating its text twice. */
const tooLarge = () => `{"text":"${'x'.repeat(15 * 1024 * 1024)}"}`;
/** A message over the size limit in a body under the parser's (the validator's 413). */
const heavyEmail = () => ({ ...EMAIL, text: 'x'.repeat(10 * 1024 * 1024 + 1) });
const idOf = (answer: Answer) => (answer.body as { id: string }).id;

describe('every answer of every route is one the document describes', () => {
  test('POST /v1/emails: queued, replayed, and each refusal', async () => {
    const sent = await check('POST', '/v1/emails', 202, {
      body: {
        ...EMAIL,
        cc: ['Grace <grace@example.org>'],
        html: '<img src="cid:logo">',
        headers: { 'X-Entity-Ref-ID': '42' },
        tags: [{ name: 'category', value: 'welcome' }],
        attachments: [
          { filename: 'logo.png', content: 'aGk=', content_type: 'image/png', content_id: 'logo' },
        ],
      },
    });
    assert.ok(sent.headers.get('location'));
    const idem = { 'idempotency-key': `order-${idOf(sent)}` };
    await check('POST', '/v1/emails', 202, { body: EMAIL, headers: idem });
    const replay = await check('POST', '/v1/emails', 202, { body: EMAIL, headers: idem });
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    await check('POST', '/v1/emails', 409, { body: { ...EMAIL, subject: 'Other' }, headers: idem });

    await check('POST', '/v1/emails', 400, { body: '{"from": ' });
    await check('POST', '/v1/emails', 400, { body: EMAIL, headers: { 'idempotency-key': 'k'.repeat(257) } });
    await check('POST', '/v1/emails', 400, { body: 'not gzip', headers: { 'content-encoding': 'gzip' } });
    await check('POST', '/v1/emails', 401, { body: EMAIL, key: null });
    await check('POST', '/v1/emails', 401, { body: EMAIL, key: 'mp_live_unknown' });
    await check('POST', '/v1/emails', 403, { body: EMAIL, key: keys.read });
    await check('POST', '/v1/emails', 403, { body: { ...EMAIL, from: 'me@not-ours.example.net' } });
    await check('POST', '/v1/emails', 413, { body: tooLarge() });
    await check('POST', '/v1/emails', 413, { body: heavyEmail() });
    await check('POST', '/v1/emails', 415, { body: 'hello', headers: { 'content-type': 'text/plain' } });
    await check('POST', '/v1/emails', 415, {
      body: JSON.stringify(EMAIL),
      headers: { 'content-type': 'application/json; charset=latin1' },
    });
    const invalid = await check('POST', '/v1/emails', 422, {
      body: { to: ['nope', 42], subject: 7, tags: [{ name: 'bad tag!' }] },
    });
    assert.ok(((invalid.body as { errors: unknown[] }).errors ?? []).length >= 5);
  });

  test('POST /v1/emails/batch: strict and permissive, and each refusal', async () => {
    const batch = [EMAIL, { ...EMAIL, to: 'grace@example.org' }];
    await check('POST', '/v1/emails/batch', 202, { body: batch });
    const permissive = await check('POST', '/v1/emails/batch', 202, {
      body: [EMAIL, { ...EMAIL, to: 'nope' }],
      headers: { 'x-batch-validation': 'permissive' },
    });
    assert.equal((permissive.body as { errors: unknown[] }).errors.length, 1);
    const idem = { 'idempotency-key': `batch-${Date.now()}` };
    await check('POST', '/v1/emails/batch', 202, { body: batch, headers: idem });
    await check('POST', '/v1/emails/batch', 202, { body: batch, headers: idem });
    await check('POST', '/v1/emails/batch', 409, { body: [EMAIL], headers: idem });

    await check('POST', '/v1/emails/batch', 400, { body: '[{' });
    await check('POST', '/v1/emails/batch', 401, { body: batch, key: null });
    await check('POST', '/v1/emails/batch', 403, { body: batch, key: keys.read });
    await check('POST', '/v1/emails/batch', 403, { body: [EMAIL, { ...EMAIL, from: 'x@not-ours.example' }] });
    await check('POST', '/v1/emails/batch', 413, { body: `[${tooLarge()}]` });
    await check('POST', '/v1/emails/batch', 413, { body: [EMAIL, heavyEmail()] });
    await check('POST', '/v1/emails/batch', 415, { body: '[]', headers: { 'content-type': 'text/plain' } });
    await check('POST', '/v1/emails/batch', 422, { body: [] });
    await check('POST', '/v1/emails/batch', 422, { body: [EMAIL, { ...EMAIL, to: 'nope' }] });
  });

  test('GET /v1/emails/{id}: a plain, a template, a scheduled and a canceled email, its timeline, and each refusal', async () => {
    const plain = idOf(await check('POST', '/v1/emails', 202, { body: EMAIL }));
    const read = await check('GET', `/v1/emails/${plain}`, 200);
    assert.equal((read.body as { template: unknown }).template, null);

    const templated = idOf(
      await check('POST', '/v1/emails', 202, {
        body: { from: FROM, to: 'ada@example.org', template: { id: 'welcome', variables: { name: 'Ada' } } },
      }),
    );
    const template = await check('GET', `/v1/emails/${templated}`, 200);
    assert.equal((template.body as { subject: unknown }).subject, null);

    const later = new Date(Date.now() + 24 * 60 * 60 * 1000).toISOString();
    const scheduled = idOf(
      await check('POST', '/v1/emails', 202, { body: { ...EMAIL, scheduled_at: later } }),
    );
    await check('POST', `/v1/emails/${scheduled}/cancel`, 200);
    await check('GET', `/v1/emails/${scheduled}`, 200);

    // A timeline written by the real transitions: an attempt deferred, a delay reported down the
    // line and a complaint, each with the detail its writer records.
    const { db, pool } = platform.database;
    const message = await db
      .selectFrom('messages')
      .select('id')
      .where('email_id', '=', plain)
      .executeTakeFirstOrThrow();
    assert.ok(await claimMessage(pool, message.id));
    const retryAt = new Date(Date.now() + 60_000);
    assert.ok(
      await defer(db, {
        messageId: message.id,
        reply: '451 4.7.1 try later',
        retryAt,
        detail: { attempt: 1, reply: '451 4.7.1 try later', code: 'EENVELOPE', command: 'RCPT TO' },
      }),
    );
    await recordDelay(db, {
      messageId: message.id,
      detail: { async: true, action: 'delayed', status: '4.4.7', reporting_mta: 'mx.example.org' },
    });
    await recordComplaint(db, {
      messageId: message.id,
      feedbackType: 'abuse',
      detail: { feedback_type: 'abuse', user_agent: 'ExampleFBL/1.0' },
    });
    const timeline = await check('GET', `/v1/emails/${plain}`, 200);
    const body = timeline.body as { last_event: string; events: { type: string }[] };
    assert.equal(body.last_event, 'complained');
    assert.deepEqual(
      body.events.map((e) => e.type),
      ['queued', 'sending', 'deferred', 'delayed', 'complained'],
    );

    await check('GET', `/v1/emails/${plain}`, 401, { key: null });
    await check('GET', `/v1/emails/${plain}`, 401, { key: 'mp_live_unknown' });
    await check('GET', `/v1/emails/${plain}`, 403, { key: keys.send });
    await check('GET', '/v1/emails/00000000-0000-4000-8000-000000000000', 404);
    await check('GET', '/v1/emails/not-an-id', 404);
  });

  test('POST /v1/emails/{id}/cancel: canceled, and each refusal', async () => {
    const later = new Date(Date.now() + 24 * 60 * 60 * 1000).toISOString();
    const id = idOf(await check('POST', '/v1/emails', 202, { body: { ...EMAIL, scheduled_at: later } }));
    await check('POST', `/v1/emails/${id}/cancel`, 200);
    await check('POST', `/v1/emails/${id}/cancel`, 409);
    await check('POST', '/v1/emails/00000000-0000-4000-8000-000000000000/cancel', 404);
    await check('POST', `/v1/emails/${id}/cancel`, 400, { body: '{' });
    await check('POST', `/v1/emails/${id}/cancel`, 401, { key: null });
    await check('POST', `/v1/emails/${id}/cancel`, 403, { key: keys.read });
    await check('POST', `/v1/emails/${id}/cancel`, 413, { body: tooLarge() });
    await check('POST', `/v1/emails/${id}/cancel`, 415, {
      body: 'x',
      headers: { 'content-type': 'text/plain' },
    });
  });

  test('GET /v1/domains and the service routes', async () => {
    const domains = await check('GET', '/v1/domains', 200);
    const records = (domains.body as { data: { records: { record: string }[] }[] }).data[0]!.records;
    assert.deepEqual(
      records.map((r) => r.record),
      ['DKIM', 'SPF', 'DMARC', 'RETURN-PATH'],
    );
    await check('GET', '/v1/domains', 401, { key: null });
    await check('GET', '/v1/domains', 403, { key: keys.send });
    await check('GET', '/v1/domains?limit=0', 422);
    await check('GET', '/v1/domains?after=00000000-0000-4000-8000-000000000000', 422);
    await check('GET', '/v1/openapi.json', 200, { key: null });
    await check('GET', '/healthz', 200, { key: null });
    await check('GET', '/readyz', 200, { key: null });
    await check('GET', '/metrics', 200, { key: null });
  });

  test('GET /v1/emails: a page, filtered, and each refusal', async () => {
    const id = idOf(
      await check('POST', '/v1/emails', 202, { body: { ...EMAIL, tags: [{ name: 'list', value: 'me' }] } }),
    );
    const page = await check('GET', '/v1/emails?limit=2', 200);
    assert.equal((page.body as { has_more: boolean }).has_more, true);
    // The template email of an earlier test shows no subject, as GET /v1/emails/{id} does.
    const listed = await check('GET', '/v1/emails?limit=100', 200);
    assert.ok((listed.body as { data: { subject: string | null }[] }).data.some((e) => e.subject === null));
    const tagged = await check('GET', '/v1/emails?tag=list:me&status=queued&recipient=ada@example.org', 200);
    assert.deepEqual(
      (tagged.body as { data: { id: string }[] }).data.map((e) => e.id),
      [id],
    );
    await check('GET', `/v1/emails?after=${id}&domain=example.com&from=2020-01-01T00:00:00Z`, 200);
    await check('GET', '/v1/emails', 401, { key: null });
    await check('GET', '/v1/emails', 403, { key: keys.send });
    await check('GET', '/v1/emails?status=lost', 422);
  });

  test('PATCH /v1/emails/{id}: rescheduled, and each refusal', async () => {
    const day = 24 * 60 * 60 * 1000;
    const id = idOf(
      await check('POST', '/v1/emails', 202, {
        body: { ...EMAIL, scheduled_at: new Date(Date.now() + day).toISOString() },
      }),
    );
    const at = { scheduled_at: new Date(Date.now() + 2 * day).toISOString() };
    await check('PATCH', `/v1/emails/${id}`, 200, { body: at });
    await check('PATCH', `/v1/emails/${id}`, 400, { body: '{' });
    await check('PATCH', `/v1/emails/${id}`, 401, { body: at, key: null });
    await check('PATCH', `/v1/emails/${id}`, 403, { body: at, key: keys.read });
    await check('PATCH', '/v1/emails/00000000-0000-4000-8000-000000000000', 404, { body: at });
    const now = idOf(await check('POST', '/v1/emails', 202, { body: EMAIL }));
    await check('PATCH', `/v1/emails/${now}`, 409, { body: at });
    await check('PATCH', `/v1/emails/${id}`, 413, { body: tooLarge() });
    await check('PATCH', `/v1/emails/${id}`, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('PATCH', `/v1/emails/${id}`, 422, { body: { scheduled_at: 'soon' } });
  });

  test('GET /v1/stats and GET /v1/audit-log: read, and each refusal', async () => {
    await check('GET', '/v1/stats', 200);
    await check('GET', '/v1/stats?group_by=tag&interval=hour', 200);
    await check('GET', '/v1/stats', 401, { key: null });
    await check('GET', '/v1/stats', 403, { key: keys.send });
    await check('GET', '/v1/stats?interval=week', 422);
    await check('GET', '/v1/audit-log?limit=5', 200);
    await check('GET', '/v1/audit-log', 401, { key: null });
    await check('GET', '/v1/audit-log', 403, { key: keys.send });
    await check('GET', '/v1/audit-log?limit=0', 422);
  });

  test('/v1/webhooks: every route, its log and replays, and each refusal', async () => {
    const created = await check('POST', '/v1/webhooks', 201, {
      body: { endpoint: 'https://hooks.example.com/mail', events: ['email.sent', 'email.delivered'] },
    });
    assert.ok(created.headers.get('location'));
    const hook = `/v1/webhooks/${idOf(created)}`;
    const missing = '/v1/webhooks/00000000-0000-4000-8000-000000000000';
    const valid = { endpoint: 'https://hooks.example.com/other', events: ['email.sent'] };
    await check('POST', '/v1/webhooks', 400, { body: '{' });
    await check('POST', '/v1/webhooks', 401, { body: valid, key: null });
    await check('POST', '/v1/webhooks', 403, { body: valid, key: keys.read });
    await check('POST', '/v1/webhooks', 413, { body: tooLarge() });
    await check('POST', '/v1/webhooks', 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('POST', '/v1/webhooks', 422, { body: { endpoint: 'http://127.0.0.1/hooks', events: [] } });

    await check('GET', '/v1/webhooks?limit=10', 200);
    await check('GET', '/v1/webhooks', 401, { key: null });
    await check('GET', '/v1/webhooks', 403, { key: keys.send });
    await check('GET', '/v1/webhooks?limit=0', 422);
    await check('GET', hook, 200);
    await check('GET', hook, 401, { key: null });
    await check('GET', hook, 403, { key: keys.send });
    await check('GET', missing, 404);

    // One declared in the Tenant, which the API shows but does not change.
    const { id: tenantId } = await platform.database.db
      .selectFrom('tenants')
      .select('id')
      .where('name', '=', 'acme')
      .executeTakeFirstOrThrow();
    const declared = await platform.database.db
      .insertInto('webhook_endpoints')
      .values({
        tenant_id: tenantId,
        name: 'ops',
        url: 'https://ops.example.com/hooks',
        events: [],
        secret: encrypt(platform.config.secretKey, newWebhookSecret()),
        source: 'tenant',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const tenantHook = `/v1/webhooks/${declared.id}`;

    await check('PATCH', hook, 200, { body: { events: ['email.sent', 'email.bounced'] } });
    await check('PATCH', hook, 400, { body: '{' });
    await check('PATCH', hook, 401, { body: { status: 'enabled' }, key: null });
    await check('PATCH', hook, 403, { body: { status: 'enabled' }, key: keys.read });
    await check('PATCH', tenantHook, 403, { body: { status: 'disabled' } });
    await check('PATCH', missing, 404, { body: { status: 'enabled' } });
    await check('PATCH', hook, 413, { body: tooLarge() });
    await check('PATCH', hook, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('PATCH', hook, 422, { body: { status: 'paused' } });

    await check('POST', `${hook}/signing-secret/rotate`, 200);
    await check('POST', `${hook}/signing-secret/rotate`, 400, { body: '{' });
    await check('POST', `${hook}/signing-secret/rotate`, 401, { key: null });
    await check('POST', `${hook}/signing-secret/rotate`, 403, { key: keys.read });
    await check('POST', `${tenantHook}/signing-secret/rotate`, 403);
    await check('POST', `${missing}/signing-secret/rotate`, 404);
    await check('POST', `${hook}/signing-secret/rotate`, 413, { body: tooLarge() });
    await check('POST', `${hook}/signing-secret/rotate`, 415, {
      body: 'x',
      headers: { 'content-type': 'text/plain' },
    });

    // An event for the log: a first attempt is email.sent (to an address no complaint has suppressed).
    const emailId = idOf(
      await check('POST', '/v1/emails', 202, { body: { ...EMAIL, to: 'hook@example.org' } }),
    );
    const message = await platform.database.db
      .selectFrom('messages')
      .select('id')
      .where('email_id', '=', emailId)
      .executeTakeFirstOrThrow();
    assert.ok((await claimMessage(platform.database.pool, message.id))?.attempt);
    for (const log of ['deliveries', 'events']) {
      const listed = await check('GET', `${hook}/${log}`, 200);
      assert.equal((listed.body as { data: unknown[] }).data.length, 1);
      await check('GET', `${hook}/${log}`, 401, { key: null });
      await check('GET', `${hook}/${log}`, 403, { key: keys.send });
      await check('GET', `${missing}/${log}`, 404);
      await check('GET', `${hook}/${log}?limit=0`, 422);
    }
    const deliveries = (await exchange('GET', `${hook}/deliveries`)).body as { data: { id: string }[] };
    const event = `${hook}/events/${deliveries.data[0]!.id}`;
    const sent = await check('GET', event, 200);
    assert.equal((sent.body as { payload: { type: string } }).payload.type, 'email.sent');
    await check('GET', event, 401, { key: null });
    await check('GET', event, 403, { key: keys.send });
    await check('GET', `${hook}/events/999999999`, 404);
    const attempts = await check('GET', `${event}/attempts`, 200);
    assert.deepEqual((attempts.body as { data: unknown[] }).data, [], 'not tried yet');
    await check('GET', `${event}/attempts`, 401, { key: null });
    await check('GET', `${event}/attempts`, 403, { key: keys.send });
    await check('GET', `${hook}/events/999999999/attempts`, 404);
    await check('GET', `${event}/attempts?limit=0`, 422);

    await check('POST', `${event}/replay`, 202);
    await check('POST', `${event}/replay`, 400, { body: '{' });
    await check('POST', `${event}/replay`, 401, { key: null });
    await check('POST', `${event}/replay`, 403, { key: keys.read });
    await check('POST', `${hook}/events/999999999/replay`, 404);
    await check('POST', `${event}/replay`, 413, { body: tooLarge() });
    await check('POST', `${event}/replay`, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('POST', `${hook}/replay`, 202, { body: { email_id: emailId } });
    const hour = 60 * 60 * 1000;
    await check('POST', `${hook}/replay`, 202, {
      body: {
        from: new Date(Date.now() - hour).toISOString(),
        to: new Date(Date.now() + hour).toISOString(),
      },
    });
    await check('POST', `${hook}/replay`, 400, { body: '{' });
    await check('POST', `${hook}/replay`, 401, { body: { email_id: emailId }, key: null });
    await check('POST', `${hook}/replay`, 403, { body: { email_id: emailId }, key: keys.read });
    await check('POST', `${missing}/replay`, 404, { body: { email_id: emailId } });
    await check('POST', `${hook}/replay`, 413, { body: tooLarge() });
    await check('POST', `${hook}/replay`, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('POST', `${hook}/replay`, 422, { body: {} });
    // No longer subscribed to the event's type, and then disabled.
    await check('PATCH', hook, 200, { body: { events: ['email.delivered'] } });
    await check('POST', `${event}/replay`, 422);
    await check('PATCH', hook, 200, { body: { status: 'disabled' } });
    await check('POST', `${event}/replay`, 409);
    await check('POST', `${hook}/replay`, 409, { body: { email_id: emailId } });

    await check('DELETE', hook, 401, { key: null });
    await check('DELETE', hook, 403, { key: keys.read });
    await check('DELETE', tenantHook, 403);
    await check('DELETE', hook, 200);
    await check('DELETE', hook, 404);
  });

  test('/v1/domains/{id} and its verify: read, checked, and each refusal', async () => {
    const list = await check('GET', '/v1/domains', 200);
    const domain = `/v1/domains/${(list.body as { data: { id: string }[] }).data[0]!.id}`;
    const missing = '/v1/domains/00000000-0000-4000-8000-000000000000';
    // A check first: the domain may be checked once every 10 s, and a read of it unchecked checks.
    await check('POST', `${domain}/verify`, 200);
    await check('GET', domain, 200);
    await check('GET', domain, 401, { key: null });
    await check('GET', domain, 403, { key: keys.send });
    await check('GET', missing, 404);
    await check('POST', `${domain}/verify`, 429);
    await check('POST', `${domain}/verify`, 400, { body: '{' });
    await check('POST', `${domain}/verify`, 401, { key: null });
    await check('POST', `${domain}/verify`, 403, { key: keys.send });
    await check('POST', `${missing}/verify`, 404);
    await check('POST', `${domain}/verify`, 413, { body: tooLarge() });
    await check('POST', `${domain}/verify`, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
  });

  test('/v1/templates: every route, its preview, and each refusal', async () => {
    const body = { name: 'documented', subject: 'Hi <%= name %>', html: '<p><%= name %></p>', text: 'Hi' };
    const created = await check('POST', '/v1/templates', 201, { body });
    assert.ok(created.headers.get('location'));
    const template = `/v1/templates/${idOf(created)}`;
    const missing = '/v1/templates/no-such-template';
    const plain = { body: 'x', headers: { 'content-type': 'text/plain' } };
    await check('POST', '/v1/templates', 400, { body: '{' });
    await check('POST', '/v1/templates', 401, { body, key: null });
    await check('POST', '/v1/templates', 403, { body, key: keys.read });
    await check('POST', '/v1/templates', 409, { body });
    await check('POST', '/v1/templates', 413, { body: tooLarge() });
    await check('POST', '/v1/templates', 415, plain);
    await check('POST', '/v1/templates', 422, { body: { ...body, name: 'other', alias: 'x' } });
    await check('POST', '/v1/templates', 422, { body: { ...body, name: 'other', html: '<% if (x) { %>' } });

    await check('GET', '/v1/templates?limit=10', 200);
    await check('GET', '/v1/templates', 401, { key: null });
    await check('GET', '/v1/templates', 403, { key: keys.send });
    await check('GET', '/v1/templates?limit=0', 422);
    await check('GET', template, 200);
    await check('GET', '/v1/templates/welcome', 200);
    await check('GET', template, 401, { key: null });
    await check('GET', template, 403, { key: keys.send });
    await check('GET', missing, 404);

    await check('PATCH', template, 200, { body: { text: 'Hello' } });
    await check('PATCH', template, 400, { body: '{' });
    await check('PATCH', template, 401, { body: {}, key: null });
    await check('PATCH', template, 403, { body: {}, key: keys.read });
    await check('PATCH', '/v1/templates/welcome', 403, { body: { subject: 'x' } });
    await check('PATCH', missing, 404, { body: {} });
    await check('PATCH', template, 409, { body: { name: 'welcome' } });
    await check('PATCH', template, 413, { body: tooLarge() });
    await check('PATCH', template, 415, plain);
    await check('PATCH', template, 422, { body: { subject: '' } });
    await check('PATCH', template, 422, { body: { html: '<%= ( %>' } });

    await check('POST', `${template}/render`, 200, { body: { variables: { name: 'Ada' } } });
    await check('POST', `${template}/render`, 400, { body: '{' });
    await check('POST', `${template}/render`, 401, { key: null });
    await check('POST', `${template}/render`, 403, { key: keys.send });
    await check('POST', `${missing}/render`, 404);
    await check('POST', `${template}/render`, 413, { body: tooLarge() });
    await check('POST', `${template}/render`, 415, plain);
    await check('POST', `${template}/render`, 422, { body: { version: 0 } });
    const failed = await check('POST', `${template}/render`, 422, { body: { variables: {} } });
    assert.equal((failed.body as { part: string }).part, 'subject');

    await check('POST', `${template}/publish`, 200);
    await check('POST', `${template}/publish`, 400, { body: '{' });
    await check('POST', `${template}/publish`, 401, { key: null });
    await check('POST', `${template}/publish`, 403, { key: keys.read });
    await check('POST', `${missing}/publish`, 404);
    await check('POST', `${template}/publish`, 413, { body: tooLarge() });
    await check('POST', `${template}/publish`, 415, plain);

    const copy = await check('POST', `${template}/duplicate`, 201);
    await check('POST', `${template}/duplicate`, 400, { body: '{' });
    await check('POST', `${template}/duplicate`, 401, { key: null });
    await check('POST', `${template}/duplicate`, 403, { key: keys.read });
    await check('POST', `${missing}/duplicate`, 404);
    await check('POST', `${template}/duplicate`, 413, { body: tooLarge() });
    await check('POST', `${template}/duplicate`, 415, plain);
    // Every name a copy may take, taken.
    for (let n = 2; n <= 10; n++) await check('POST', `${template}/duplicate`, 201);
    await check('POST', `${template}/duplicate`, 409);

    await check('DELETE', `/v1/templates/${idOf(copy)}`, 200);
    await check('DELETE', template, 401, { key: null });
    await check('DELETE', template, 403, { key: keys.read });
    await check('DELETE', '/v1/templates/welcome', 403);
    await check('DELETE', `/v1/templates/${idOf(copy)}`, 404);
  });

  test('/v1/suppressions: list, add, read, lift, import and export, and each refusal', async () => {
    await check('POST', '/v1/suppressions', 200, { body: { address: 'doc-1@example.org' } });
    await check('POST', '/v1/suppressions', 200, {
      body: { suppressions: [{ address: 'doc-2@example.org', reason: 'complaint', detail: 'abuse' }] },
    });
    await check('POST', '/v1/suppressions', 401, { key: null, body: { address: 'x@example.org' } });
    await check('POST', '/v1/suppressions', 403, { key: keys.read, body: { address: 'x@example.org' } });
    await check('POST', '/v1/suppressions', 400, { body: '{' });
    await check('POST', '/v1/suppressions', 413, { body: tooLarge() });
    await check('POST', '/v1/suppressions', 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('POST', '/v1/suppressions', 422, { body: { address: 'nope' } });
    await check('GET', '/v1/suppressions?limit=1', 200);
    await check('GET', '/v1/suppressions?reason=complaint&address=DOC-2@example.org', 200);
    await check('GET', '/v1/suppressions', 401, { key: null });
    await check('GET', '/v1/suppressions', 403, { key: keys.send });
    await check('GET', '/v1/suppressions?reason=spam', 422);
    await check('GET', '/v1/suppressions/doc-1@example.org', 200);
    await check('GET', '/v1/suppressions/doc-1@example.org', 401, { key: null });
    await check('GET', '/v1/suppressions/doc-1@example.org', 403, { key: keys.send });
    await check('GET', '/v1/suppressions/none@example.org', 404);
    await check('DELETE', '/v1/suppressions/doc-2@example.org', 409);
    await check('DELETE', '/v1/suppressions/doc-2@example.org?lift_complaint=maybe', 422);
    await check('DELETE', '/v1/suppressions/doc-2@example.org?lift_complaint=true', 200);
    await check('DELETE', '/v1/suppressions/doc-2@example.org', 404);
    await check('DELETE', '/v1/suppressions/doc-1@example.org', 401, { key: null });
    await check('DELETE', '/v1/suppressions/doc-1@example.org', 403, { key: keys.read });
    const csv = {
      body: 'address,reason\ndoc-3@example.org,bounce\nbad,manual\n',
      headers: { 'content-type': 'text/csv' },
    };
    await check('POST', '/v1/suppressions/import', 200, csv);
    await check('POST', '/v1/suppressions/import', 401, { ...csv, key: null });
    await check('POST', '/v1/suppressions/import', 403, { ...csv, key: keys.read });
    await check('POST', '/v1/suppressions/import', 415, { body: { address: 'doc-4@example.org' } });
    await check('GET', '/v1/suppressions/export', 200);
    await check('GET', '/v1/suppressions/export?reason=bounce', 200);
    await check('GET', '/v1/suppressions/export', 401, { key: null });
    await check('GET', '/v1/suppressions/export', 403, { key: keys.send });
    await check('GET', '/v1/suppressions/export?reason=spam', 422);
  });

  test('/v1/contacts, /v1/segments and /v1/audiences: every route, and each refusal', async () => {
    /** The refusals every route of these shares: no key, a key without the scope, and for a body the parser's. */
    const refusals = async (method: string, path: string, scope: 'read' | 'send', body?: unknown) => {
      await check(method, path, 401, { key: null, ...(body === undefined ? {} : { body }) });
      await check(method, path, 403, {
        key: scope === 'read' ? keys.send : keys.read,
        ...(body === undefined ? {} : { body }),
      });
      if (body === undefined) return;
      await check(method, path, 400, { body: '{' });
      await check(method, path, 413, { body: tooLarge() });
      await check(method, path, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
      await check(method, path, 422, { body: { colour: 'blue' } });
    };
    const none = crypto.randomUUID();

    const segment = idOf(await check('POST', '/v1/segments', 201, { body: { name: 'Doc' } }));
    await refusals('POST', '/v1/segments', 'send', { name: 'x' });
    await check('GET', '/v1/segments?limit=1', 200);
    await check('GET', '/v1/segments?limit=0', 422);
    await refusals('GET', '/v1/segments', 'read');
    await check('GET', `/v1/segments/${segment}`, 200);
    await check('GET', `/v1/segments/${none}`, 404);
    await refusals('GET', `/v1/segments/${segment}`, 'read');
    await check('PATCH', `/v1/segments/${segment}`, 200, { body: { name: 'Docs' } });
    await check('PATCH', `/v1/segments/${none}`, 404, { body: { name: 'Docs' } });
    await refusals('PATCH', `/v1/segments/${segment}`, 'send', { name: 'x' });

    const contact = idOf(
      await check('POST', '/v1/contacts', 201, {
        body: {
          email: 'doc@example.org',
          first_name: 'Doc',
          properties: { plan: 'pro', seats: 2 },
          segments: [segment],
        },
      }),
    );
    await check('POST', '/v1/contacts', 409, { body: { email: 'DOC@example.org' } });
    await refusals('POST', '/v1/contacts', 'send', { email: 'x@example.org' });
    await check('GET', '/v1/contacts?limit=1', 200);
    await check('GET', '/v1/contacts?after=nope', 422);
    await refusals('GET', '/v1/contacts', 'read');
    for (const ref of [contact, 'doc@example.org']) await check('GET', `/v1/contacts/${ref}`, 200);
    await check('GET', '/v1/contacts/none@example.org', 404);
    await refusals('GET', `/v1/contacts/${contact}`, 'read');
    await check('PATCH', `/v1/contacts/${contact}`, 200, {
      body: { unsubscribed: false, properties: { seats: null } },
    });
    await check('PATCH', `/v1/contacts/${none}`, 404, { body: { unsubscribed: true } });
    await refusals('PATCH', `/v1/contacts/${contact}`, 'send', { unsubscribed: true });
    await check('GET', `/v1/contacts/${contact}/segments`, 200);
    await check('GET', `/v1/contacts/${none}/segments`, 404);
    await check('GET', `/v1/contacts/${contact}/segments?limit=x`, 422);
    await refusals('GET', `/v1/contacts/${contact}/segments`, 'read');
    const membership = `/v1/contacts/${contact}/segments/${segment}`;
    await check('POST', membership, 200);
    await check('POST', `/v1/contacts/${contact}/segments/${none}`, 404);
    await check('POST', membership, 401, { key: null });
    await check('POST', membership, 403, { key: keys.read });
    await check('POST', membership, 400, { body: '{' });
    await check('POST', membership, 413, { body: tooLarge() });
    await check('POST', membership, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('GET', `/v1/segments/${segment}/contacts`, 200);
    await check('GET', `/v1/segments/${none}/contacts`, 404);
    await check('GET', `/v1/segments/${segment}/contacts?before=x`, 422);
    await refusals('GET', `/v1/segments/${segment}/contacts`, 'read');
    await check('DELETE', membership, 200);
    await check('DELETE', `/v1/contacts/${none}/segments/${segment}`, 404);
    await refusals('DELETE', membership, 'send');

    const audience = idOf(await check('POST', '/v1/audiences', 201, { body: { name: 'Older' } }));
    await refusals('POST', '/v1/audiences', 'send', { name: 'x' });
    await check('GET', '/v1/audiences', 200);
    await check('GET', '/v1/audiences?limit=101', 422);
    await refusals('GET', '/v1/audiences', 'read');
    await check('GET', `/v1/audiences/${audience}`, 200);
    await check('GET', `/v1/audiences/${none}`, 404);
    await refusals('GET', `/v1/audiences/${audience}`, 'read');
    const members = `/v1/audiences/${audience}/contacts`;
    await check('POST', members, 201, { body: { email: 'doc@example.org' } });
    await check('POST', members, 409, { body: { email: 'doc@example.org' } });
    await check('POST', `/v1/audiences/${none}/contacts`, 404, { body: { email: 'doc@example.org' } });
    await refusals('POST', members, 'send', { email: 'x@example.org' });
    await check('GET', members, 200);
    await check('GET', `/v1/audiences/${none}/contacts`, 404);
    await check('GET', `${members}?limit=0`, 422);
    await refusals('GET', members, 'read');
    const member = `${members}/doc@example.org`;
    await check('GET', member, 200);
    await check('GET', `${members}/none@example.org`, 404);
    await refusals('GET', member, 'read');
    await check('PATCH', member, 200, { body: { last_name: 'Brown' } });
    await check('PATCH', `${members}/none@example.org`, 404, { body: { last_name: 'Brown' } });
    await refusals('PATCH', member, 'send', { last_name: 'x' });
    await refusals('DELETE', member, 'send');
    await check('DELETE', member, 200);
    await check('DELETE', member, 404);

    // Not while a broadcast is going out to it.
    const db = platform.database.db;
    const going = await db
      .insertInto('broadcasts')
      .values({
        tenant_id: (
          await db
            .selectFrom('segments')
            .select('tenant_id')
            .where('id', '=', segment)
            .executeTakeFirstOrThrow()
        ).tenant_id,
        segment_id: audience,
        from_address: 'news@example.com',
        subject: 'Going out',
        text: 'Hi',
        status: 'queued',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await check('DELETE', `/v1/audiences/${audience}`, 409);
    await db.updateTable('broadcasts').set({ segment_id: segment }).where('id', '=', going.id).execute();
    await check('DELETE', `/v1/segments/${segment}`, 409);
    await db.updateTable('broadcasts').set({ status: 'canceled' }).where('id', '=', going.id).execute();
    await refusals('DELETE', `/v1/audiences/${audience}`, 'send');
    await check('DELETE', `/v1/audiences/${audience}`, 200);
    await check('DELETE', `/v1/audiences/${audience}`, 404);
    await refusals('DELETE', `/v1/segments/${segment}`, 'send');
    await check('DELETE', `/v1/segments/${segment}`, 200);
    await check('DELETE', `/v1/segments/${segment}`, 404);
    await refusals('DELETE', `/v1/contacts/${contact}`, 'send');
    await check('DELETE', `/v1/contacts/${contact}`, 200);
    await check('DELETE', `/v1/contacts/${contact}`, 404);

    // With Postgres unreachable, each answers the documented 503.
    await proxy.cut();
    try {
      const reads = [
        '/v1/contacts',
        `/v1/contacts/${none}`,
        `/v1/contacts/${none}/segments`,
        '/v1/segments',
        `/v1/segments/${none}`,
        `/v1/segments/${none}/contacts`,
        '/v1/audiences',
        `/v1/audiences/${none}`,
        `/v1/audiences/${none}/contacts`,
        `/v1/audiences/${none}/contacts/${none}`,
      ];
      for (const path of reads) await check('GET', path, 503);
      await check('POST', '/v1/contacts', 503, { body: { email: 'cut@example.org' } });
      await check('PATCH', `/v1/contacts/${none}`, 503, { body: { unsubscribed: true } });
      await check('DELETE', `/v1/contacts/${none}`, 503);
      await check('POST', `/v1/contacts/${none}/segments/${none}`, 503);
      await check('DELETE', `/v1/contacts/${none}/segments/${none}`, 503);
      await check('POST', '/v1/segments', 503, { body: { name: 'cut' } });
      await check('PATCH', `/v1/segments/${none}`, 503, { body: { name: 'cut' } });
      await check('DELETE', `/v1/segments/${none}`, 503);
      await check('POST', '/v1/audiences', 503, { body: { name: 'cut' } });
      await check('DELETE', `/v1/audiences/${none}`, 503);
      await check('POST', `/v1/audiences/${none}/contacts`, 503, { body: { email: 'cut@example.org' } });
      await check('PATCH', `/v1/audiences/${none}/contacts/${none}`, 503, { body: { last_name: 'x' } });
      await check('DELETE', `/v1/audiences/${none}/contacts/${none}`, 503);
    } finally {
      await proxy.restore();
    }
  });

  test('/v1/broadcasts: every route, a send and a cancel, and each refusal', async () => {
    const { db } = platform.database;
    const segment = idOf(await check('POST', '/v1/segments', 201, { body: { name: 'Broadcast doc' } }));
    const body = { name: 'doc', segment_id: segment, from: FROM, subject: 'S', text: 'Hi {{{FIRST_NAME}}}' };
    const missing = `/v1/broadcasts/${crypto.randomUUID()}`;

    const id = idOf(await check('POST', '/v1/broadcasts', 201, { body }));
    const at = `/v1/broadcasts/${id}`;
    await check('POST', '/v1/broadcasts', 400, { body: '{"name": ' });
    await check('POST', '/v1/broadcasts', 401, { body, key: null });
    await check('POST', '/v1/broadcasts', 403, { body, key: keys.read });
    await check('POST', '/v1/broadcasts', 403, { body: { ...body, from: 'a@elsewhere.example' } });
    await check('POST', '/v1/broadcasts', 413, { body: tooLarge() });
    await check('POST', '/v1/broadcasts', 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('POST', '/v1/broadcasts', 422, { body: { ...body, subject: '' } });
    await check('POST', '/v1/broadcasts', 422, { body: { ...body, segment_id: crypto.randomUUID() } });
    // The installation here has no public URL and example.com no tracking domain: no unsubscribe link.
    const refused = await check('POST', '/v1/broadcasts', 422, { body: { ...body, send: true } });
    assert.match((refused.body as { type: string }).type, /\/unsubscribe-unavailable$/);

    await check('GET', '/v1/broadcasts?limit=1', 200);
    await check('GET', '/v1/broadcasts', 401, { key: null });
    await check('GET', '/v1/broadcasts', 403, { key: keys.send });
    await check('GET', '/v1/broadcasts?limit=0', 422);
    await check('GET', `/v1/broadcasts?after=${crypto.randomUUID()}`, 422);

    await check('GET', at, 200);
    await check('GET', at, 401, { key: null });
    await check('GET', at, 403, { key: keys.send });
    await check('GET', missing, 404);

    await check('PATCH', at, 200, { body: { subject: 'Changed {{{FIRST_NAME}}}' } });
    await check('PATCH', at, 400, { body: '{' });
    await check('PATCH', at, 401, { body: {}, key: null });
    await check('PATCH', at, 403, { body: {}, key: keys.read });
    await check('PATCH', at, 403, { body: { from: 'a@elsewhere.example' } });
    await check('PATCH', missing, 404, { body: {} });
    await check('PATCH', at, 413, { body: tooLarge() });
    await check('PATCH', at, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('PATCH', at, 422, { body: { html: 7 } });

    const send = `${at}/send`;
    await check('POST', send, 400, { body: '{' });
    await check('POST', send, 401, { body: {}, key: null });
    await check('POST', send, 403, { body: {}, key: keys.read });
    await check('POST', `${missing}/send`, 404, { body: {} });
    await check('POST', send, 413, { body: tooLarge() });
    await check('POST', send, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('POST', send, 422, { body: { scheduled_at: 'soon' } });
    await check('POST', send, 422, { body: {} });
    // The from domain stops being the tenant's between the draft and its send.
    const stray = idOf(await check('POST', '/v1/broadcasts', 201, { body }));
    await db
      .updateTable('broadcasts')
      .set({ from_address: 'a@elsewhere.example' })
      .where('id', '=', stray)
      .execute();
    await check('POST', `/v1/broadcasts/${stray}/send`, 403, { body: {} });

    // A tracking domain on example.com serves the unsubscribe link; the other tests see it as it was.
    const domains = db.updateTable('domains').where('name', '=', 'example.com');
    const { tracking_domain: previous } = await db
      .selectFrom('domains')
      .select('tracking_domain')
      .where('name', '=', 'example.com')
      .executeTakeFirstOrThrow();
    await domains.set({ tracking_domain: 'track.example.com' }).execute();
    try {
      // An hour ahead, so that the broadcast waits in its job and no email is created.
      await check('POST', send, 202, {
        body: { scheduled_at: new Date(Date.now() + 3600_000).toISOString() },
      });
    } finally {
      await domains.set({ tracking_domain: previous }).execute();
    }
    await check('POST', send, 409, { body: {} });
    await check('PATCH', at, 409, { body: { subject: 'x' } });

    const cancel = `${at}/cancel`;
    await check('POST', cancel, 400, { body: '{' });
    await check('POST', cancel, 401, { key: null });
    await check('POST', cancel, 403, { key: keys.read });
    await check('POST', `${missing}/cancel`, 404);
    await check('POST', cancel, 413, { body: tooLarge() });
    await check('POST', cancel, 415, { body: 'x', headers: { 'content-type': 'text/plain' } });
    await check('POST', cancel, 200);
    await check('POST', cancel, 409);

    await check('DELETE', at, 401, { key: null });
    await check('DELETE', at, 403, { key: keys.read });
    await check('DELETE', missing, 404);
    await check('DELETE', at, 409);
    await check('DELETE', `/v1/broadcasts/${stray}`, 200);
    await check('DELETE', `/v1/broadcasts/${stray}`, 404);
  });

  test('the recipients’ routes: the unsubscribe link, the open pixel and a tracked link, and each refusal', async () => {
    const { secretKey } = platform.config;
    const { id: tenantId } = await platform.database.db
      .selectFrom('tenants')
      .select('id')
      .where('name', '=', 'acme')
      .executeTakeFirstOrThrow();
    // A message that no longer exists: the link still unsubscribes, and an open of it is answered.
    const messageId = '00000000-0000-4000-8000-000000000001';
    const unsubscribe = new URL(
      unsubscribeUrl(secretKey, platform.url, { tenantId, messageId, address: 'unsub-doc@example.org' }),
    ).pathname;
    const forged = `${unsubscribe.slice(0, -3)}AAA`;
    const form = (body: string, type = 'application/x-www-form-urlencoded') => ({
      key: null,
      body,
      headers: { 'content-type': type },
    });
    const page = await check('GET', unsubscribe, 200, { key: null });
    assert.equal(page.mediaType, 'text/html');
    await check('GET', forged, 404, { key: null });
    const oneClick = await check('POST', unsubscribe, 200, form('List-Unsubscribe=One-Click'));
    assert.equal(oneClick.mediaType, 'text/plain');
    const button = await check('POST', unsubscribe, 200, form('confirm=page'));
    assert.equal(button.mediaType, 'text/html');
    await check('POST', forged, 404, form('List-Unsubscribe=One-Click'));
    await check('POST', unsubscribe, 400, {
      ...form('not gzip'),
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'gzip' },
    });
    await check('POST', unsubscribe, 413, form(`confirm=${'x'.repeat(4096)}`));
    await check(
      'POST',
      unsubscribe,
      415,
      form('confirm=page', 'application/x-www-form-urlencoded; charset=koi8-r'),
    );

    const pixel = new URL(openUrl(secretKey, platform.url, messageId, Date.now())).pathname;
    const gif = await check('GET', pixel, 200, { key: null });
    assert.equal(gif.mediaType, 'image/gif');
    await check('GET', `${pixel.slice(0, -3)}AAA`, 404, { key: null });
    // Signed for the host the api is asked under here, as a tracking domain's links are for theirs.
    const link = new URL(clickUrl(secretKey, platform.url, messageId, Date.now(), 'https://example.org/doc'))
      .pathname;
    const followed = await check('GET', link, 302, { key: null, redirect: 'manual' });
    assert.equal(followed.headers.get('location'), 'https://example.org/doc');
    await check('GET', link, 302, { key: null, redirect: 'manual', headers: { accept: 'text/html' } });
    await check('GET', `${link.slice(0, -3)}AAA`, 404, { key: null, redirect: 'manual' });
  });

  test('with Postgres unreachable, every route that reads it answers the documented 503', async () => {
    const id = idOf(await check('POST', '/v1/emails', 202, { body: EMAIL }));
    const hook = idOf(
      await check('POST', '/v1/webhooks', 201, {
        body: { endpoint: 'https://hooks.example.com/cut', events: ['email.sent'] },
      }),
    );
    const webhook = `/v1/webhooks/${hook}`;
    const at = { scheduled_at: new Date(Date.now() + 60_000).toISOString() };
    await proxy.cut();
    try {
      await check('POST', '/v1/emails', 503, { body: EMAIL });
      await check('POST', '/v1/emails/batch', 503, { body: [EMAIL] });
      await check('GET', '/v1/emails', 503);
      await check('GET', `/v1/emails/${id}`, 503);
      await check('PATCH', `/v1/emails/${id}`, 503, { body: at });
      await check('POST', `/v1/emails/${id}/cancel`, 503);
      await check('GET', '/v1/domains', 503);
      await check('GET', `/v1/domains/${id}`, 503);
      await check('POST', `/v1/domains/${id}/verify`, 503);
      await check('GET', '/v1/templates', 503);
      await check('POST', '/v1/templates', 503, { body: { name: 'cut', subject: 'S', text: 't' } });
      await check('GET', '/v1/templates/welcome', 503);
      await check('PATCH', '/v1/templates/welcome', 503, { body: { text: 't' } });
      await check('DELETE', '/v1/templates/welcome', 503);
      await check('POST', '/v1/templates/welcome/publish', 503);
      await check('POST', '/v1/templates/welcome/duplicate', 503);
      await check('POST', '/v1/templates/welcome/render', 503);
      await check('GET', '/v1/stats', 503);
      await check('GET', '/v1/audit-log', 503);
      await check('POST', '/v1/webhooks', 503, {
        body: { endpoint: 'https://hooks.example.com/x', events: ['email.sent'] },
      });
      await check('GET', '/v1/webhooks', 503);
      await check('GET', webhook, 503);
      await check('PATCH', webhook, 503, { body: { status: 'enabled' } });
      await check('DELETE', webhook, 503);
      await check('POST', `${webhook}/signing-secret/rotate`, 503);
      await check('GET', `${webhook}/deliveries`, 503);
      await check('GET', `${webhook}/events`, 503);
      await check('GET', `${webhook}/events/1`, 503);
      await check('GET', `${webhook}/events/1/attempts`, 503);
      await check('POST', `${webhook}/events/1/replay`, 503);
      await check('POST', `${webhook}/replay`, 503, { body: { email_id: id } });
      await check('GET', '/v1/suppressions', 503);
      await check('POST', '/v1/suppressions', 503, { body: { address: 'cut@example.org' } });
      await check('GET', '/v1/suppressions/export', 503);
      await check('GET', '/v1/suppressions/cut@example.org', 503);
      await check('DELETE', '/v1/suppressions/cut@example.org', 503);
      await check('POST', '/v1/suppressions/import', 503, {
        body: 'address\ncut@example.org\n',
        headers: { 'content-type': 'text/csv' },
      });
      await check('POST', '/v1/broadcasts', 503, {
        body: { name: 'cut', segment_id: id, from: FROM, subject: 'S', text: 't' },
      });
      await check('GET', '/v1/broadcasts', 503);
      await check('GET', `/v1/broadcasts/${id}`, 503);
      await check('PATCH', `/v1/broadcasts/${id}`, 503, { body: { subject: 'cut' } });
      await check('DELETE', `/v1/broadcasts/${id}`, 503);
      await check('POST', `/v1/broadcasts/${id}/send`, 503, { body: {} });
      await check('POST', `/v1/broadcasts/${id}/cancel`, 503);
      await check('GET', '/readyz', 503, { key: null });
      // A press of the unsubscribe button, which writes at once.
      const unsubscribe = new URL(
        unsubscribeUrl(platform.config.secretKey, platform.url, {
          tenantId: '00000000-0000-4000-8000-000000000002',
          messageId: '00000000-0000-4000-8000-000000000003',
          address: 'cut@example.org',
        }),
      ).pathname;
      await check('POST', unsubscribe, 503, {
        key: null,
        body: 'List-Unsubscribe=One-Click',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
    } finally {
      await proxy.restore();
    }
  });

  test('every answer the document lists was seen, but for a 500', () => {
    const listed = Object.entries(document.paths).flatMap(([template, methods]) =>
      Object.entries(methods).flatMap(([method, op]) =>
        Object.keys(op.responses)
          .filter((status) => !UNREACHABLE.has(status))
          .map((status) => `${method.toUpperCase()} ${template} ${status}`),
      ),
    );
    assert.deepEqual(
      listed.filter((label) => !seen.has(label)),
      [],
    );
  });
});

/** An express router layer, as far as listing routes needs. */
interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
  rawPath?: string;
  slash?: boolean;
}

/** `METHOD /full/:template` of every route in a router's stack, its sub-routers' included. */
function routesOf(stack: Layer[], prefix = ''): string[] {
  return stack.flatMap((layer) => {
    if (layer.route) {
      const { path, methods } = layer.route;
      return Object.keys(methods).map((method) => `${method.toUpperCase()} ${prefix}${path}`);
    }
    if (!layer.handle?.stack) return [];
    return routesOf(layer.handle.stack, layer.slash ? prefix : `${prefix}${layer.rawPath ?? ''}`);
  });
}

describe('the document itself', () => {
  test("states the installation's recipient limit", () => {
    const schemas = (
      document as unknown as { components: { schemas: Record<string, { description: string }> } }
    ).components.schemas;
    assert.match(schemas.SendEmail!.description, new RegExp(`at most ${MAX_RECIPIENTS} recipients`));
  });

  test('names every route of the api the app serves, and no other', () => {
    // An app built only to list its routes: nothing is listened on or asked of its dependencies.
    const app = createApp({
      db: platform.database.db,
      log: silentLogger,
      metrics: createMetrics(),
      limits: { maxRecipients: 50, maxMessageBytes: 10 << 20 },
      // Only so that the tracking routes are mounted: nothing is recorded.
      recorder: { record: () => {}, close: async () => {} },
    } as unknown as AppDeps);
    const served = routesOf((app as unknown as { router: { stack: Layer[] } }).router.stack);
    assert.ok(served.includes('POST /v1/emails'), JSON.stringify(served));
    const documented = Object.entries(document.paths).flatMap(([template, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${template.replace(/\{(\w+)\}/g, ':$1')}`),
    );
    const own = (route: string) => {
      const path = route.split(' ')[1]!;
      // The recipients' links are the api's own too.
      return (
        path.startsWith('/v1/') ||
        SERVICE_ROUTES.includes(path) ||
        path.startsWith('/u/') ||
        path.startsWith('/t/')
      );
    };
    assert.deepEqual(
      served.filter((route) => own(route) && !documented.includes(route)),
      [],
      'served but not in the document',
    );
    assert.deepEqual(
      documented.filter((route) => !served.includes(route)),
      [],
      'in the document but not served',
    );
  });

  test("passes Redocly's recommended-strict ruleset with no error and no warning", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailplane-openapi-'));
    try {
      await writeFile(join(dir, 'openapi.json'), JSON.stringify(document, null, 2));
      // The only exceptions, by pointer: operations with nothing a client could do wrong.
      await writeFile(
        join(dir, '.redocly.lint-ignore.yaml'),
        `openapi.json:\n  operation-4xx-response:\n${NO_4XX.map((p) => `    - '#/${pointer('paths', p, 'get', 'responses')}'\n`).join('')}` +
          `  operation-2xx-response:\n${NO_2XX.map((p) => `    - '#/${pointer('paths', p, 'get', 'responses')}'\n`).join('')}`,
      );
      const cli = join(process.cwd(), 'node_modules', '@redocly', 'cli', 'bin', 'cli.js');
      const run = promisify(execFile);
      const { stdout } = await run(
        process.execPath,
        [cli, 'lint', '--extends=recommended-strict', '--format=json', 'openapi.json'],
        {
          cwd: dir,
          env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
          maxBuffer: 16 << 20,
        },
      ).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
      const report = JSON.parse(stdout.slice(stdout.indexOf('{'))) as {
        totals: { errors: number; warnings: number; ignored: number };
        problems: unknown[];
      };
      assert.deepEqual(report.problems, []);
      assert.deepEqual(report.totals, { errors: 0, warnings: 0, ignored: NO_4XX.length + NO_2XX.length });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
