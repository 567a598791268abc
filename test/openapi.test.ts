// The document the api serves at /v1/openapi.json against the api itself: every route's real
// answers (success and every kind of refusal we can bring about, the database gone included) are
// validated with a JSON Schema validator against the response the document lists for their status
// and media type, where an object allows no member it does not name. An answer with a status, a
// media type or a member the document lacks fails, and so does a status the document lists that
// no answer shows; every body the api accepts, the document's request schema takes too. The
// document names every route the app serves, and passes Redocly's strictest ruleset.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { createApp, type AppDeps } from '../api/app.js';
import { claimMessage, defer, recordComplaint, recordDelay } from '../lib/db/transitions.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { sendingDomain, startTestPlatform, tenant, type TestPlatform } from './helpers/platform.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

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
/**
 * Routes the app serves whose request and response schemas are still to be written (in
 * api/schemas*.ts, described in api/openapi.ts): they came with webhooks and stats. A route leaves
 * this list when it is documented, and the test below says so.
 */
const AWAITING_SCHEMAS = new Set([
  'GET /v1/stats',
  'POST /v1/webhooks',
  'GET /v1/webhooks',
  'GET /v1/webhooks/:id',
  'PATCH /v1/webhooks/:id',
  'DELETE /v1/webhooks/:id',
  'POST /v1/webhooks/:id/signing-secret/rotate',
  'GET /v1/webhooks/:id/deliveries',
  'GET /v1/webhooks/:id/events',
  'GET /v1/webhooks/:id/events/:eventId',
  'POST /v1/webhooks/:id/events/:eventId/replay',
  'POST /v1/webhooks/:id/replay',
]);
/** The operations that answer no 4xx, which Redocly's strict ruleset asks of every operation. */
const NO_4XX = ['/v1/openapi.json', '/healthz', '/readyz', '/metrics'];

let database: TestDatabase;
let proxy: TcpProxy;
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
  const proxied = new URL(database.url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  platform = await startTestPlatform({
    DATABASE_URL: proxied.toString(),
    MAILPLANE_INBOUND_HOST: 'mx.mailplane.example',
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
  await database?.drop();
});

/** Sends a request; `body` as JSON unless it is already a string or bytes. */
async function exchange(
  method: string,
  path: string,
  options: { body?: unknown; key?: string | null; headers?: Record<string, string> } = {},
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
  const res = await fetch(platform.url + path, { method, headers, body: payload as RequestInit['body'] });
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
function templateOf(method: string, path: string): string {
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
    await check('GET', '/v1/openapi.json', 200, { key: null });
    await check('GET', '/healthz', 200, { key: null });
    await check('GET', '/readyz', 200, { key: null });
    await check('GET', '/metrics', 200, { key: null });
  });

  test('with Postgres unreachable, every route that reads it answers the documented 503', async () => {
    const id = idOf(await check('POST', '/v1/emails', 202, { body: EMAIL }));
    await proxy.cut();
    try {
      await check('POST', '/v1/emails', 503, { body: EMAIL });
      await check('POST', '/v1/emails/batch', 503, { body: [EMAIL] });
      await check('GET', `/v1/emails/${id}`, 503);
      await check('POST', `/v1/emails/${id}/cancel`, 503);
      await check('GET', '/v1/domains', 503);
      await check('GET', '/readyz', 503, { key: null });
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
  test('names every route the app serves, but for those awaiting their schemas', () => {
    // An app built only to list its routes: nothing is listened on or asked of its dependencies.
    const app = createApp({
      db: platform.database.db,
      log: silentLogger,
      metrics: createMetrics(),
      limits: { maxRecipients: 50, maxMessageBytes: 10 << 20 },
    } as unknown as AppDeps);
    const served = routesOf((app as unknown as { router: { stack: Layer[] } }).router.stack);
    assert.ok(served.includes('POST /v1/emails'), JSON.stringify(served));
    const documented = Object.entries(document.paths).flatMap(([template, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${template.replace(/\{(\w+)\}/g, ':$1')}`),
    );
    assert.deepEqual(
      served.filter((route) => !documented.includes(route) && !AWAITING_SCHEMAS.has(route)),
      [],
      'served but not in the document',
    );
    assert.deepEqual(
      documented.filter((route) => !served.includes(route)),
      [],
      'in the document but not served',
    );
    assert.deepEqual(
      [...AWAITING_SCHEMAS].filter((route) => documented.includes(route) || !served.includes(route)),
      [],
      'documented or gone: take it off AWAITING_SCHEMAS',
    );
  });

  test("passes Redocly's recommended-strict ruleset with no error and no warning", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailplane-openapi-'));
    try {
      await writeFile(join(dir, 'openapi.json'), JSON.stringify(document, null, 2));
      // The only exceptions, by pointer: operations with nothing a client could do wrong.
      await writeFile(
        join(dir, '.redocly.lint-ignore.yaml'),
        `openapi.json:\n  operation-4xx-response:\n${NO_4XX.map((p) => `    - '#/${pointer('paths', p, 'get', 'responses')}'\n`).join('')}`,
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
      assert.deepEqual(report.totals, { errors: 0, warnings: 0, ignored: NO_4XX.length });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
