// /v1/suppressions against a real api and database: list with a stable cursor and filters, add one
// or many, lift (a complaint only when asked to), CSV import and export streamed and round-tripped,
// every change in the audit log under its key, tenants apart, the sender honouring the list, and
// `mailplane suppressions import|export` run as a user runs it.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { Sender } from '../sender/worker.js';
import { cliArgs } from './helpers/cli-process.js';
import { eventually } from './helpers/eventually.js';
import { startTestPlatform, startTestSender, tenant, type TestPlatform } from './helpers/platform.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';

let platform: TestPlatform;
let sink: SmtpSink;
let sender: Sender;
let dir: string;
const keys = { acme: '', globex: '', viewer: '' };

before(async () => {
  sink = await startSmtpSink();
  platform = await startTestPlatform({ MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${sink.port}` });
  await platform.apply([
    tenant('globex', [
      { name: 'ops', scopes: ['send', 'read'] },
      { name: 'viewer', scopes: ['read'] },
    ]),
  ]);
  keys.acme = platform.keys.get('default/acme/backend')!;
  keys.globex = platform.keys.get('default/globex/ops')!;
  keys.viewer = platform.keys.get('default/globex/viewer')!;
  sender = await startTestSender(platform);
  dir = await mkdtemp(join(tmpdir(), 'mailplane-suppressions-'));
});

after(async () => {
  await sender?.stop();
  await platform?.close();
  await sink?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  type: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read member by member
  body: any;
  text: string;
}

async function call(
  method: string,
  path: string,
  options: { body?: unknown; key?: string; contentType?: string } = {},
): Promise<Answer> {
  const { key = keys.acme, body } = options;
  const raw = typeof body === 'string' || body instanceof ReadableStream;
  const res = await fetch(`${platform.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': options.contentType ?? 'application/json' }),
    },
    body: body === undefined ? undefined : raw ? (body as RequestInit['body']) : JSON.stringify(body),
    ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
  } as RequestInit);
  const type = res.headers.get('content-type') ?? '';
  const text = await res.text();
  return { status: res.status, type, text, body: /json/.test(type) ? JSON.parse(text) : undefined };
}

const add = (body: unknown, key?: string) =>
  call('POST', '/v1/suppressions', { body, ...(key ? { key } : {}) });
const addresses = (answer: Answer) => (answer.body.data as { address: string }[]).map((s) => s.address);

async function sendTo(to: string): Promise<string> {
  const res = await call('POST', '/v1/emails', {
    body: { from: 'Acme <hello@example.com>', to, subject: 'Hi', text: 'Hello' },
  });
  assert.equal(res.status, 202, res.text);
  return res.body.id as string;
}

async function statusOf(emailId: string): Promise<string> {
  return (await call('GET', `/v1/emails/${emailId}`)).body.status as string;
}

describe('the suppression API', () => {
  test('adds one address or many; an address suppressed already keeps its reason; every fault is a 422 naming its field', async () => {
    const one = await add({ address: 'Ada@Example.ORG', detail: 'asked by phone' });
    assert.equal(one.status, 200, one.text);
    assert.deepEqual(
      one.body.data.map((s: Record<string, unknown>) => ({ ...s, created_at: typeof s.created_at })),
      [
        {
          object: 'suppression',
          address: 'ada@example.org',
          reason: 'manual',
          detail: 'asked by phone',
          created_at: 'string',
          added: true,
        },
      ],
    );
    const many = await add({
      suppressions: [
        { address: 'ada@example.org', reason: 'bounce' },
        { address: 'grace@example.org', reason: 'complaint' },
        { address: 'linus@example.org', reason: 'unsubscribe' },
      ],
    });
    assert.equal(many.status, 200, many.text);
    assert.deepEqual(
      many.body.data.map((s: { address: string; reason: string; added: boolean }) => [
        s.address,
        s.reason,
        s.added,
      ]),
      [
        ['ada@example.org', 'manual', false],
        ['grace@example.org', 'complaint', true],
        ['linus@example.org', 'unsubscribe', true],
      ],
    );
    const bad = await add({
      suppressions: [
        { address: 'ok@example.org' },
        { address: 'nope' },
        { address: 'x@example.org', reason: 'spam' },
      ],
    });
    assert.equal(bad.status, 422);
    assert.deepEqual(
      bad.body.errors.map((e: { field: string }) => e.field),
      ['suppressions[1].address', 'suppressions[2].reason'],
    );
    assert.equal(
      (await call('GET', '/v1/suppressions/ok@example.org')).status,
      404,
      'nothing of a refused request is kept',
    );
    assert.equal(
      (await add({ address: 'r@example.org' }, keys.viewer)).status,
      403,
      'adding needs the send scope',
    );
  });

  test('lists in address order with a cursor that stays valid when its own row is lifted, filtered by reason and address', async () => {
    const list = Array.from({ length: 23 }, (_, i) => ({
      address: `page-${String(i).padStart(2, '0')}@example.net`,
      reason: i % 2 ? 'bounce' : 'manual',
    }));
    assert.equal((await add({ suppressions: list }, keys.globex)).status, 200);

    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await call('GET', `/v1/suppressions?limit=10${after ? `&after=${after}` : ''}`, {
        key: keys.globex,
      });
      assert.equal(page.status, 200, page.text);
      seen.push(...addresses(page));
      if (!page.body.has_more) break;
      after = addresses(page).at(-1);
      // Lifted under the reader's feet: the next page still follows it.
      assert.equal((await call('DELETE', `/v1/suppressions/${after}`, { key: keys.globex })).status, 200);
    }
    assert.deepEqual(
      seen,
      list.map((s) => s.address),
    );

    const back = await call('GET', '/v1/suppressions?limit=5&before=page-10@example.net', {
      key: keys.globex,
    });
    // page-09, the first page's last, was lifted above.
    assert.deepEqual(
      addresses(back),
      ['page-04', 'page-05', 'page-06', 'page-07', 'page-08'].map((a) => `${a}@example.net`),
    );
    assert.equal(back.body.has_more, true);

    const bounces = await call('GET', '/v1/suppressions?reason=bounce&limit=100', { key: keys.globex });
    assert.ok(bounces.body.data.every((s: { reason: string }) => s.reason === 'bounce'));
    assert.equal(bounces.body.data.length, 9, 'eleven, less the two lifted');
    const one = await call('GET', '/v1/suppressions?address=PAGE-04@example.net', { key: keys.globex });
    assert.deepEqual(addresses(one), ['page-04@example.net']);

    const wrong = await call('GET', '/v1/suppressions?reason=spam&limit=0&colour=red', { key: keys.globex });
    assert.equal(wrong.status, 422);
    assert.deepEqual(wrong.body.errors.map((e: { field: string }) => e.field).sort(), [
      'colour',
      'limit',
      'reason',
    ]);
  });

  test('lifting a suppression that came from a complaint needs lift_complaint=true; each change is in the audit log under its key and request', async () => {
    await add({
      suppressions: [
        { address: 'complainer@example.org', reason: 'complaint' },
        { address: 'lift-me@example.org' },
      ],
    });
    const refused = await call('DELETE', '/v1/suppressions/complainer@example.org');
    assert.equal(refused.status, 409);
    assert.equal(refused.body.type, 'https://mailplane.io/problems/suppression-from-complaint');
    assert.match(refused.body.detail, /lift_complaint=true/);
    assert.equal(
      (await call('GET', '/v1/suppressions/complainer@example.org')).status,
      200,
      'still suppressed',
    );

    const lifted = await call('DELETE', '/v1/suppressions/COMPLAINER@example.org?lift_complaint=true');
    assert.deepEqual(lifted.body, {
      object: 'suppression',
      address: 'complainer@example.org',
      reason: 'complaint',
      deleted: true,
    });
    const manual = await call('DELETE', '/v1/suppressions/lift-me@example.org');
    assert.equal(manual.status, 200);
    assert.equal((await call('DELETE', '/v1/suppressions/lift-me@example.org')).status, 404);
    assert.equal((await call('DELETE', '/v1/suppressions/x@example.org?lift_complaint=yes')).status, 422);

    const log = await call('GET', '/v1/audit-log?action=suppression.&limit=100');
    const lines = (
      log.body.data as { action: string; target: string; actor: string; request_id: string | null }[]
    ).filter((e) => e.target === 'complainer@example.org');
    assert.deepEqual(
      lines.map((e) => e.action),
      ['suppression.removed', 'suppression.added'],
    );
    assert.ok(
      lines.every((e) => e.actor === 'api_key:backend' && e.request_id),
      JSON.stringify(lines),
    );
  });

  test('another tenant’s suppressions are as absent as ones that never existed', async () => {
    await add({ address: 'private@example.org' });
    assert.equal(
      (await call('GET', '/v1/suppressions/private@example.org', { key: keys.globex })).status,
      404,
    );
    assert.equal(
      (await call('DELETE', '/v1/suppressions/private@example.org', { key: keys.globex })).status,
      404,
    );
    const theirs = await call('GET', '/v1/suppressions?address=private@example.org', { key: keys.globex });
    assert.deepEqual(theirs.body.data, []);
    const export_ = await call('GET', '/v1/suppressions/export', { key: keys.globex });
    assert.doesNotMatch(export_.text, /private@example\.org/);
    assert.equal((await call('GET', '/v1/suppressions/private@example.org')).status, 200, 'still acme’s');
  });

  test('an address added through the API is not mailed; once lifted, it is again', async () => {
    await add({ address: 'paused@example.org' });
    const first = await sendTo('paused@example.org');
    await eventually('suppressed', async () => (await statusOf(first)) === 'suppressed');
    assert.equal((await call('DELETE', '/v1/suppressions/paused@example.org')).status, 200);
    const second = await sendTo('paused@example.org');
    await eventually('delivered', async () => (await statusOf(second)) === 'delivered');
    assert.equal(sink.messages().filter((m) => m.envelope.to.includes('paused@example.org')).length, 1);
  });

  test('CSV import keeps the good rows and reports each bad one by its line; export writes what import reads, so a list round-trips into another tenant', async () => {
    const csv = [
      '\uFEFFaddress,reason,detail',
      'one@csv.example,bounce,"550 5.1.1 no such user, really"',
      'TWO@csv.example,,',
      'not an address,manual,',
      '',
      'three@csv.example,spam,',
      'four@csv.example,unsubscribe,"said ""stop"""',
      'five"@csv.example,manual,',
      'one@csv.example,manual,again',
    ].join('\r\n');
    const imported = await call('POST', '/v1/suppressions/import', { body: csv, contentType: 'text/csv' });
    assert.equal(imported.status, 200, imported.text);
    assert.equal(imported.body.added, 3);
    assert.equal(imported.body.existing, 1);
    assert.equal(imported.body.rejected, 3);
    assert.deepEqual(
      imported.body.errors.map((e: { line: number }) => e.line),
      [4, 6, 8],
    );
    assert.match(imported.body.errors[1].message, /reason: "spam"/);
    const one = (await call('GET', '/v1/suppressions/one@csv.example')).body;
    assert.deepEqual([one.reason, one.detail], ['bounce', '550 5.1.1 no such user, really']);

    const exported = await call('GET', '/v1/suppressions/export');
    assert.equal(exported.status, 200);
    assert.match(exported.type, /^text\/csv/);
    const rows = exported.text.trimEnd().split('\r\n');
    assert.equal(rows[0], 'address,reason,detail,created_at');
    assert.ok(
      rows.includes(
        'four@csv.example,unsubscribe,"said ""stop""",' +
          rows
            .find((r) => r.startsWith('four@'))!
            .split(',')
            .at(-1),
      ),
    );
    const listed = (await call('GET', '/v1/suppressions?limit=100')).body.data as {
      address: string;
      reason: string;
      detail: string | null;
    }[];
    assert.equal(rows.length - 1, listed.length);

    // Into a tenant of its own, and out again: the same list.
    await platform.apply([tenant('initech', [{ name: 'ops', scopes: ['send', 'read'] }])]);
    const initech = platform.keys.get('default/initech/ops')!;
    const again = await call('POST', '/v1/suppressions/import', {
      body: exported.text,
      contentType: 'text/csv',
      key: initech,
    });
    assert.deepEqual([again.body.added, again.body.rejected], [listed.length, 0]);
    const out = (await call('GET', '/v1/suppressions/export', { key: initech })).text;
    const strip = (text: string) =>
      text
        .trimEnd()
        .split('\r\n')
        .map((r) => r.replace(/,[^,]*$/, ''));
    assert.deepEqual(strip(out), strip(exported.text), 'the same addresses, reasons and details');

    const notCsv = await call('POST', '/v1/suppressions/import', { body: { address: 'a@b.example' } });
    assert.equal(notCsv.status, 415);
    assert.equal(
      (
        await call('POST', '/v1/suppressions/import', {
          body: csv,
          contentType: 'text/csv',
          key: keys.viewer,
        })
      ).status,
      403,
    );
  });

  test('a detail a spreadsheet would run as a formula is exported behind an apostrophe', async () => {
    const added = await call('POST', '/v1/suppressions', {
      body: { address: 'formula@csv.example', detail: '=HYPERLINK("https://evil.example","x")' },
    });
    assert.ok(added.status < 300, added.text);
    const exported = await call('GET', '/v1/suppressions/export');
    const line = exported.text.split('\r\n').find((l: string) => l.startsWith('formula@csv.example,'));
    assert.match(
      line ?? '',
      /^formula@csv\.example,manual,"'=HYPERLINK\(""https:\/\/evil\.example"",""x""\)",/,
    );
  });

  test('a CSV import is streamed: 20,000 rows sent as they are made are all taken', async () => {
    const ROWS = 20_000;
    let i = 0;
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (i === 0) controller.enqueue(encoder.encode('address\n'));
        if (i >= ROWS) return controller.close();
        const chunk = Array.from({ length: 1000 }, () => `bulk-${i++}@stream.example\n`).join('');
        controller.enqueue(encoder.encode(chunk));
      },
    });
    const res = await call('POST', '/v1/suppressions/import', {
      body,
      contentType: 'text/csv',
      key: keys.globex,
    });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual([res.body.added, res.body.rejected], [ROWS, 0]);
    const last = await call('GET', `/v1/suppressions/bulk-${ROWS - 1}@stream.example`, { key: keys.globex });
    assert.equal(last.status, 200);
  });
});

describe('mailplane suppressions', () => {
  const run = (args: string[], env: Record<string, string>) =>
    promisify(execFile)(process.execPath, cliArgs('suppressions', ...args), {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code: number; stdout: string; stderr: string }) => ({
        code: err.code,
        stdout: err.stdout,
        stderr: err.stderr,
      }),
    );

  test('import -f reads the file through the API with a progress line on stderr, and reports a bad row by its line; export -o writes it back', async () => {
    const file = join(dir, 'list.csv');
    await writeFile(
      file,
      'address,reason\ncli-1@cli.example,manual\ncli-2@cli.example,bounce\nbroken,manual\n',
    );
    const env = { MAILPLANE_API_URL: platform.url, MAILPLANE_API_KEY: keys.globex };
    const imported = await run(['import', '-f', file], env);
    assert.equal(imported.code, 1, 'a rejected row makes the exit code 1');
    assert.match(imported.stderr, /sent 4 lines \(100%\)/);
    assert.match(imported.stderr, /imported .*list\.csv: 2 added, 0 already suppressed, 1 rejected/);
    assert.match(imported.stderr, /line 4: address:/);

    const out = join(dir, 'out.csv');
    const exported = await run(
      ['export', '-o', out, '--reason', 'bounce', '--api-url', platform.url, '--api-key', keys.globex],
      {},
    );
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stderr, /exported \d+ suppressions to/);
    const text = await readFile(out, 'utf8');
    assert.match(text, /^address,reason,detail,created_at\r\n/);
    assert.match(text, /cli-2@cli\.example,bounce,/);
    assert.doesNotMatch(text, /cli-1@cli\.example/);

    const keyless = await run(['export'], { MAILPLANE_API_URL: platform.url });
    assert.equal(keyless.code, 1);
    assert.match(keyless.stderr, /needs an API key \(--api-key or MAILPLANE_API_KEY\)/);
  });
});
