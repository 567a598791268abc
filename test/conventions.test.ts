// The conventions a caller and an operator of the api rely on: an X-Request-Id on every answer, in
// every problem body and on every log line of its request; one access-log line per request under
// its route template; Node's process metrics under their standard names; route labels that are
// templates or `unmatched`; and a POST with no body read as {} while a non-JSON one stays a 415.

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import { createLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { eventually } from './helpers/eventually.js';
import { startTestPlatform, type TestPlatform } from './helpers/platform.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

type Line = Record<string, unknown>;

let platform: TestPlatform;
let key: string;
const lines: Line[] = [];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const FROM = 'Acme <hello@example.com>';

before(async () => {
  const log = createLogger({ level: 'debug', write: (line) => lines.push(JSON.parse(line) as Line) });
  platform = await startTestPlatform({}, { log, metrics: createMetrics({ defaults: true }) });
  key = platform.keys.get('default/acme/backend')!;
});
after(async () => platform.close());

async function call(
  method: string,
  path: string,
  options: { body?: string; headers?: Record<string, string>; auth?: boolean } = {},
) {
  const res = await fetch(platform.url + path, {
    method,
    headers: { ...(options.auth === false ? {} : { authorization: `Bearer ${key}` }), ...options.headers },
    body: options.body,
  });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: text && /json/.test(res.headers.get('content-type') ?? '') ? JSON.parse(text) : text,
  };
}

/**
 * A request written byte for byte, as curl and Python's requests frame it (fetch cannot omit
 * Content-Length). The socket stays open for the answer.
 */
async function raw(start: string, headers: string[], body = ''): Promise<{ status: number; body: string }> {
  const socket = open();
  socket.write(rawRequest(start, headers, body));
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString();
  return { status: Number(text.split(' ')[1]), body: text.slice(text.indexOf('\r\n\r\n') + 4) };
}

function open(): Socket {
  const { hostname, port } = new URL(platform.url);
  return connect(Number(port), hostname);
}

function rawRequest(start: string, headers: string[], body = ''): string {
  const head = [
    start,
    `Host: ${new URL(platform.url).hostname}`,
    `Authorization: Bearer ${key}`,
    'Connection: close',
  ];
  return [...head, ...headers, '', body].join('\r\n');
}

/**
 * A client that goes away while its request is being handled: it asks `Expect: 100-continue`,
 * waits for the server's `100 Continue` (so the request has reached its route and is reading the
 * body), then drops the connection without sending the body.
 */
async function hangUpMidRequest(start: string, headers: string[]): Promise<void> {
  const socket = open();
  socket.write(
    rawRequest(start, [
      ...headers,
      'Content-Type: application/json',
      'Content-Length: 100',
      'Expect: 100-continue',
    ]),
  );
  await once(socket, 'data');
  socket.destroy();
}

const linesOf = (requestId: string) => lines.filter((l) => l.requestId === requestId);

/** The access-log line of a request: written once its answer has gone out, so waited for. */
async function accessLineOf(requestId: string): Promise<Line> {
  const line = await eventually(`the access-log line of ${requestId}`, async () =>
    linesOf(requestId).find((l) => l.msg === 'request'),
  );
  // A response also emits 'close' after 'finish'; give a second line the time to show up.
  await sleep(50);
  assert.equal(linesOf(requestId).filter((l) => l.msg === 'request').length, 1, 'exactly one access line');
  return line;
}

describe('X-Request-Id', () => {
  test('a sane id from the caller is echoed; a missing, over-long or spaced one is replaced by a UUID', async () => {
    const given = await call('GET', '/healthz', { headers: { 'x-request-id': 'lb-7f3a:01' } });
    assert.equal(given.headers.get('x-request-id'), 'lb-7f3a:01');

    const made = await call('GET', '/healthz');
    assert.match(made.headers.get('x-request-id') ?? '', UUID);
    const other = await call('GET', '/healthz');
    assert.notEqual(other.headers.get('x-request-id'), made.headers.get('x-request-id'));

    for (const insane of ['x'.repeat(129), 'two words', 'a, b']) {
      const res = await call('GET', '/healthz', { headers: { 'x-request-id': insane } });
      assert.match(res.headers.get('x-request-id') ?? '', UUID, insane);
    }
  });

  test("a 4xx problem body carries the request id beside its usual members, and so do the request's log lines", async () => {
    const res = await call('POST', '/v1/emails', {
      body: JSON.stringify({ subject: 's' }),
      headers: { 'content-type': 'application/json', 'x-request-id': 'conv-422' },
    });
    assert.equal(res.status, 422);
    assert.equal(res.headers.get('x-request-id'), 'conv-422');
    assert.equal(res.body.request_id, 'conv-422');
    for (const member of ['type', 'title', 'status', 'detail', 'errors', 'statusCode', 'name', 'message']) {
      assert.ok(member in res.body, member);
    }
    await accessLineOf('conv-422');
    assert.ok(linesOf('conv-422').every((l) => l.requestId === 'conv-422'));

    // A made id is the same in the header and in the body of a refusal by middleware.
    const unauthenticated = await call('GET', '/v1/domains', { auth: false });
    assert.equal(unauthenticated.status, 401);
    assert.match(unauthenticated.body.request_id, UUID);
    assert.equal(unauthenticated.body.request_id, unauthenticated.headers.get('x-request-id'));
  });
});

describe('access log', () => {
  test('each request is logged once, at info, with its route template and not its raw path', async () => {
    const id = randomUUID();
    const res = await call('GET', `/v1/emails/${id}`, {
      headers: { 'x-request-id': 'conv-read', 'user-agent': 'conventions-test/1.0' },
    });
    assert.equal(res.status, 404);
    const line = await accessLineOf('conv-read');
    assert.equal(line.level, 'info');
    assert.equal(line.method, 'GET');
    assert.equal(line.route, '/v1/emails/:id');
    assert.equal(line.status, 404);
    assert.equal(line.tenant, 'default/acme');
    assert.equal(line.userAgent, 'conventions-test/1.0');
    assert.equal(line.bytes, Buffer.byteLength(JSON.stringify(res.body)));
    assert.equal(typeof line.durationMs, 'number');
    assert.ok((line.durationMs as number) >= 0);
    assert.ok(!JSON.stringify(line).includes(id), 'the raw path stays out of the line');

    // An error leaving the /v1 router keeps the full template.
    await call('POST', '/v1/emails', {
      body: '{}',
      headers: { 'content-type': 'application/json', 'x-request-id': 'conv-send' },
    });
    assert.equal((await accessLineOf('conv-send')).route, '/v1/emails');

    // Refused before any route matched: unmatched, and no tenant without a valid key.
    await call('GET', `/v1/emails/${id}`, { auth: false, headers: { 'x-request-id': 'conv-401' } });
    const refused = await accessLineOf('conv-401');
    assert.equal(refused.route, 'unmatched');
    assert.equal(refused.status, 401);
    assert.equal(refused.tenant, undefined);
  });

  test('a client that hangs up before its answer is still logged once, as aborted and without a status', async () => {
    await hangUpMidRequest('POST /v1/emails HTTP/1.1', ['X-Request-Id: conv-gone']);
    const line = await accessLineOf('conv-gone');
    assert.equal(line.aborted, true);
    assert.equal(line.status, undefined);
    assert.equal(line.method, 'POST');
  });

  test('probes and scrapes are logged at debug, so that they do not flood an info-level log', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const requestId = `conv-probe${path.replace('/', '-')}`;
      await call('GET', path, { auth: false, headers: { 'x-request-id': requestId } });
      const line = await accessLineOf(requestId);
      assert.equal(line.level, 'debug', path);
      assert.equal(line.route, path);
    }
  });
});

describe('metrics', () => {
  const scrape = async () => (await call('GET', '/metrics', { auth: false })).body as string;

  test("/metrics serves Node's process metrics under their standard names beside the mailplane_ ones", async () => {
    const text = await scrape();
    assert.match(text, /^process_cpu_seconds_total \d/m);
    assert.match(text, /^nodejs_heap_size_used_bytes \d/m);
    assert.match(text, /^mailplane_http_request_duration_seconds_count\{/m);
    assert.match(text, /^# TYPE mailplane_messages_accepted_total counter/m);
    assert.doesNotMatch(text, /^mailplane_(process|nodejs)_/m);
  });

  test('the route label is the full template of the matched route, unmatched otherwise, never a raw path', async () => {
    assert.equal((await call('GET', `/v1/no-such-thing/${randomUUID()}`)).status, 404);
    assert.equal((await call('GET', `/nowhere/${randomUUID()}`, { auth: false })).status, 404);
    const invalid = await call('POST', '/v1/emails', {
      body: '{}',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(invalid.status, 422);

    const counts = (await scrape())
      .split('\n')
      .filter((l) => l.startsWith('mailplane_http_request_duration_seconds_count{'));
    const series = counts.map((l) => ({
      route: /route="([^"]*)"/.exec(l)?.[1],
      status: /status="([^"]*)"/.exec(l)?.[1],
    }));
    assert.ok(series.some((s) => s.route === 'unmatched' && s.status === '404'));
    assert.ok(series.some((s) => s.route === '/v1/emails' && s.status === '422'));
    const templates = new Set([
      '/healthz',
      '/readyz',
      '/metrics',
      '/v1/openapi.json',
      '/v1/emails',
      '/v1/emails/batch',
      '/v1/emails/:id',
      '/v1/emails/:id/cancel',
      '/v1/domains',
      'unmatched',
    ]);
    for (const s of series) assert.ok(templates.has(s.route!), `route label ${s.route}`);
  });
});

describe('request bodies', () => {
  test('a cancel with no body gets the answer the email deserves, never a 415, however the client frames it', async () => {
    const sent = await call('POST', '/v1/emails', {
      body: JSON.stringify({ from: FROM, to: 'ada@example.org', subject: 's', text: 't' }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(sent.status, 202);
    const id = sent.body.id as string;

    // curl -X POST: neither Content-Length nor Content-Type.
    const curl = await raw(`POST /v1/emails/${randomUUID()}/cancel HTTP/1.1`, []);
    assert.equal(curl.status, 404, curl.body);
    // Python requests without data: Content-Length: 0 and no Content-Type.
    const python = await raw(`POST /v1/emails/${id}/cancel HTTP/1.1`, ['Content-Length: 0']);
    assert.equal(python.status, 200, python.body);
    assert.deepEqual(JSON.parse(python.body), { object: 'email', id });
    // fetch without a body; the email is canceled by now, so there is nothing left to cancel.
    const again = await call('POST', `/v1/emails/${id}/cancel`);
    assert.equal(again.status, 409);
    assert.match(again.body.type, /not-cancelable$/);
    const unknown = await call('POST', `/v1/emails/${randomUUID()}/cancel`);
    assert.equal(unknown.status, 404);
  });

  test('a send with no body is read as {}: every missing field is listed, not a 415', async () => {
    const res = await call('POST', '/v1/emails');
    assert.equal(res.status, 422);
    assert.match(res.body.type, /validation-error$/);
  });

  test('a POST with a body that is not JSON is still a 415', async () => {
    const plain = await call('POST', `/v1/emails/${randomUUID()}/cancel`, {
      body: 'hello',
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(plain.status, 415);
    assert.match(plain.body.type, /unsupported-media-type$/);
    const untyped = await raw('POST /v1/emails HTTP/1.1', ['Content-Length: 5'], 'hello');
    assert.equal(untyped.status, 415, untyped.body);
  });
  test('a request the HTTP parser refuses is still answered as a problem: a control character in a header, headers over 16 KB', async () => {
    for (const [headers, status] of [
      [['X-Note: a\x01b'], 400],
      [[`X-Padding: ${'p'.repeat(20_000)}`], 431],
    ] as const) {
      const answer = await raw('GET /v1/emails HTTP/1.1', [...headers]);
      assert.equal(answer.status, status, answer.body);
      const problem = JSON.parse(answer.body) as { type: string; status: number; message: string };
      assert.match(problem.type, /bad-request$/);
      assert.equal(problem.status, status);
      assert.ok(problem.message.length > 0);
    }
  });
});

describe('while Postgres is away', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let cut: TestPlatform;
  let cutKey: string;
  const cutLines: Line[] = [];

  before(async () => {
    database = await createTestDatabase();
    const direct = new URL(database.url);
    proxy = await startTcpProxy(Number(direct.port || 5432), direct.hostname);
    const proxied = new URL(database.url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
    const log = createLogger({ write: (line) => cutLines.push(JSON.parse(line) as Line) });
    cut = await startTestPlatform({ DATABASE_URL: proxied.toString() }, { log });
    cutKey = cut.keys.get('default/acme/backend')!;
  });
  after(async () => {
    await cut?.close();
    await proxy?.close();
    await database?.drop();
  });

  test("the api's own log line about a failed request carries that request's id", async () => {
    await proxy.cut();
    const res = await fetch(`${cut.url}/v1/domains`, {
      headers: { authorization: `Bearer ${cutKey}`, 'x-request-id': 'conv-503' },
    });
    assert.equal(res.status, 503);
    assert.equal(((await res.json()) as { request_id: string }).request_id, 'conv-503');
    const mine = await eventually('the access-log line', async () => {
      const found = cutLines.filter((l) => l.requestId === 'conv-503');
      return found.some((l) => l.msg === 'request') && found;
    });
    const warning = mine.find((l) => l.msg === 'database unavailable');
    assert.ok(warning, JSON.stringify(mine));
    assert.equal(warning.level, 'warn');
  });
});
