// The api against a real Postgres: what a caller sees for good and bad sends, and what is queued.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { Resend } from 'resend';
import { sendingDomain, startTestPlatform, tenant, type TestPlatform } from './helpers/platform.js';

let platform: TestPlatform;
let key: string;

const FROM = 'Acme <hello@example.com>';

async function call(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  apiKey = key,
) {
  const res = await fetch(platform.url + path, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    body: text ? JSON.parse(text) : undefined,
  };
}

async function queuedJobs(): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from graphile_worker.jobs`.execute(
    platform.database.db,
  );
  return rows[0]!.n;
}

before(async () => {
  platform = await startTestPlatform();
  key = platform.keys.get('default/acme/backend')!;
  assert.match(key, /^mp_live_/);
});
after(async () => platform.close());

describe('sending', () => {
  test('a valid send is answered 202 only with its rows and one job per recipient committed', async () => {
    const jobsBefore = await queuedJobs();
    const res = await call('POST', '/v1/emails', {
      from: FROM,
      to: ['ada@example.org', 'Grace <grace@example.org>'],
      cc: 'lin@example.org',
      bcc: ['audit@example.org'],
      subject: 'Hello',
      html: '<p>Hi</p>',
    });
    assert.equal(res.status, 202);
    assert.match(res.body.id, /^[0-9a-f-]{36}$/);
    const messages = await platform.database.db
      .selectFrom('messages')
      .selectAll()
      .where('email_id', '=', res.body.id)
      .execute();
    assert.deepEqual(messages.map((m) => m.recipient).sort(), [
      'ada@example.org',
      'audit@example.org',
      'grace@example.org',
      'lin@example.org',
    ]);
    assert.ok(messages.every((m) => m.status === 'queued'));
    assert.equal((await queuedJobs()) - jobsBefore, 4);

    const read = await call('GET', `/v1/emails/${res.body.id}`);
    assert.equal(read.status, 200);
    assert.equal(read.body.status, 'queued');
    assert.equal(read.body.recipients.length, 4);
    assert.deepEqual(
      read.body.events.map((e: { type: string }) => e.type),
      ['queued', 'queued', 'queued', 'queued'],
    );
  });

  test('a comma-joined address string counts as several recipients, against the limit too', async () => {
    const res = await call('POST', '/v1/emails', {
      from: FROM,
      to: 'a@example.org, "Doe, J" <b@example.org>',
      subject: 's',
      text: 't',
    });
    assert.equal(res.status, 202);
    const n = await platform.database.db
      .selectFrom('messages')
      .select('id')
      .where('email_id', '=', res.body.id)
      .execute();
    assert.equal(n.length, 2);

    const many = Array.from({ length: 51 }, (_, i) => `r${i}@example.org`).join(',');
    const over = await call('POST', '/v1/emails', { from: FROM, to: many, subject: 's', text: 't' });
    assert.equal(over.status, 422);
    assert.match(over.body.errors[0].message, /51 recipients .* limit of 50/);
  });

  test('missing and malformed fields are all reported at once as problem+json, and nothing is queued', async () => {
    const jobsBefore = await queuedJobs();
    const res = await call('POST', '/v1/emails', {
      to: ['not-an-address', 42],
      subject: 7,
      tags: [{ name: 'bad tag!' }],
    });
    assert.equal(res.status, 422);
    assert.match(res.type, /application\/problem\+json/);
    const fields = res.body.errors.map((e: { field: string }) => e.field).sort();
    assert.deepEqual(fields, ['from', 'html', 'subject', 'tags[0].name', 'to[0]', 'to[1]']);
    assert.equal(res.body.type, 'https://mailplane.io/problems/validation-error');
    assert.equal(await queuedJobs(), jobsBefore);
  });

  test('malformed JSON and a non-JSON body get clear errors', async () => {
    const bad = await call('POST', '/v1/emails', '{"from": ');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.type, 'https://mailplane.io/problems/malformed-json');
    const plain = await call('POST', '/v1/emails', 'hello', { 'content-type': 'text/plain' });
    assert.equal(plain.status, 415);
  });

  test('CR/LF in the subject, a display name or a header is refused: no header injection', async () => {
    const base = { from: FROM, to: 'a@example.org', subject: 'ok', text: 't' };
    for (const [body, field] of [
      [{ ...base, subject: 'Hi\r\nBcc: victim@example.org' }, 'subject'],
      [{ ...base, from: 'Acme\r\nBcc: x@example.org <hello@example.com>' }, 'from'],
      [{ ...base, to: 'Eve\n <a@example.org>' }, 'to'],
      [{ ...base, headers: { 'X-Campaign': 'a\r\nBcc: victim@example.org' } }, 'headers.X-Campaign'],
      [{ ...base, headers: { 'Bad Name:': 'x' } }, 'headers.Bad Name:'],
      [{ ...base, headers: { Bcc: 'x@example.org' } }, 'headers.Bcc'],
      [{ ...base, attachments: [{ filename: 'a\r\n.txt', content: 'aGk=' }] }, 'attachments[0].filename'],
    ] as const) {
      const res = await call('POST', '/v1/emails', body);
      assert.equal(res.status, 422, JSON.stringify(body));
      assert.ok(
        res.body.errors.some((e: { field: string }) => e.field === field),
        JSON.stringify(res.body),
      );
    }
  });

  test('a from domain the tenant does not own is 403', async () => {
    const res = await call('POST', '/v1/emails', {
      from: 'me@not-ours.example.net',
      to: 'a@example.org',
      subject: 's',
      text: 't',
    });
    assert.equal(res.status, 403);
    assert.equal(res.body.type, 'https://mailplane.io/problems/domain-not-owned');
  });

  test('a body or attachment over the size limit is 413', async () => {
    const big = Buffer.alloc(11 * 1024 * 1024, 1).toString('base64');
    const attachment = await call('POST', '/v1/emails', {
      from: FROM,
      to: 'a@example.org',
      subject: 's',
      text: 't',
      attachments: [{ filename: 'big.bin', content: big }],
    });
    assert.equal(attachment.status, 413);
    const huge = await call('POST', '/v1/emails', {
      from: FROM,
      to: 'a@example.org',
      subject: 's',
      text: 'x'.repeat(20 * 1024 * 1024),
    });
    assert.equal(huge.status, 413);
  });

  test('an Idempotency-Key retry returns the first answer and queues nothing more', async () => {
    const body = { from: FROM, to: 'a@example.org', subject: 's', text: 't' };
    const first = await call('POST', '/v1/emails', body, { 'idempotency-key': 'order-42' });
    const jobs = await queuedJobs();
    const again = await call('POST', '/v1/emails', body, { 'idempotency-key': 'order-42' });
    assert.equal(first.status, 202);
    assert.equal(again.status, 202);
    assert.equal(again.body.id, first.body.id);
    assert.equal(await queuedJobs(), jobs);
  });

  test('a template send pins the current version; read back, it shows the template, not its source as a subject', async () => {
    const variables = { name: 'Ada', email: 'a@example.org' };
    const res = await call('POST', '/v1/emails', {
      from: FROM,
      to: 'a@example.org',
      template: { id: 'welcome', variables },
    });
    assert.equal(res.status, 202);
    const email = await platform.database.db
      .selectFrom('emails')
      .selectAll()
      .where('id', '=', res.body.id)
      .executeTakeFirstOrThrow();
    // Rendered for each message as it is sent: no subject was sent as such yet.
    assert.equal(email.subject, '');
    assert.equal(email.content.template?.version, 1);
    const read = await call('GET', `/v1/emails/${res.body.id}`);
    assert.equal(read.status, 200);
    assert.equal(read.body.subject, null);
    assert.equal(read.body.html, null);
    assert.equal(read.body.text, null);
    assert.deepEqual(read.body.template, {
      id: email.content.template!.id,
      name: 'welcome',
      version: 1,
      variables,
    });
    const plain = await call('POST', '/v1/emails', {
      from: FROM,
      to: 'a@example.org',
      subject: 's',
      text: 't',
    });
    assert.equal((await call('GET', `/v1/emails/${plain.body.id}`)).body.template, null);

    const missing = await call('POST', '/v1/emails', {
      from: FROM,
      to: 'a@example.org',
      template: { id: 'nope' },
    });
    assert.equal(missing.status, 422);
    assert.equal(missing.body.errors[0].field, 'template.id');
  });
});

describe('keys and tenants', () => {
  let otherKey: string;
  let readOnly: string;
  let otherEmail: string;

  before(async () => {
    await platform.apply([
      tenant('globex', [
        { name: 'app', scopes: ['send', 'read'] },
        { name: 'dashboards', scopes: ['read'] },
      ]),
      sendingDomain('globex-com', 'globex', 'globex.example'),
    ]);
    otherKey = platform.keys.get('default/globex/app')!;
    readOnly = platform.keys.get('default/globex/dashboards')!;
    const sent = await call(
      'POST',
      '/v1/emails',
      { from: 'x@globex.example', to: 'a@example.org', subject: 's', text: 't' },
      {},
      otherKey,
    );
    assert.equal(sent.status, 202);
    otherEmail = sent.body.id;
  });

  test("another tenant's email is a 404, as is an id that never existed", async () => {
    assert.equal((await call('GET', `/v1/emails/${otherEmail}`)).status, 404);
    assert.equal((await call('GET', '/v1/emails/00000000-0000-0000-0000-000000000000')).status, 404);
    assert.equal((await call('GET', '/v1/emails/not-a-uuid')).status, 404);
    assert.equal((await call('GET', `/v1/emails/${otherEmail}`, undefined, {}, otherKey)).status, 200);
  });

  test('a key without the send scope gets 403 on send', async () => {
    const res = await call(
      'POST',
      '/v1/emails',
      { from: 'x@globex.example', to: 'a@example.org', subject: 's', text: 't' },
      {},
      readOnly,
    );
    assert.equal(res.status, 403);
    assert.equal(res.body.type, 'https://mailplane.io/problems/restricted-api-key');
  });

  test('a missing, unknown or revoked key gets 401', async () => {
    assert.equal((await call('GET', '/v1/domains', undefined, {}, '')).status, 401);
    assert.equal((await call('GET', '/v1/domains', undefined, {}, 'mp_live_unknown')).status, 401);
    await platform.apply([tenant('globex', [{ name: 'app', scopes: ['send', 'read'] }])]);
    // A looked-up key is remembered for up to a second.
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await call('GET', '/v1/domains', undefined, {}, readOnly)).status, 401);
    assert.equal((await call('GET', '/v1/domains', undefined, {}, otherKey)).status, 200);
  });
});

describe('domains and probes', () => {
  test('GET /v1/domains lists the tenant’s domains with the DKIM TXT record to publish', async () => {
    const res = await call('GET', '/v1/domains');
    assert.equal(res.status, 200);
    assert.deepEqual(
      res.body.data.map((d: { name: string }) => d.name),
      ['example.com'],
    );
    const dkim = res.body.data[0].records.find((r: { purpose: string }) => r.purpose === 'dkim');
    assert.equal(dkim.name, 'mailplane._domainkey.example.com');
    assert.match(dkim.value, /^v=DKIM1; k=rsa; p=MII/);
  });

  test('a path the API has, asked with another method, is a 405 that lists the methods it takes', async () => {
    const put = await fetch(`${platform.url}/v1/emails/5f0c7c5e-0000-4000-8000-000000000000`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get('allow'), 'GET, PATCH, HEAD');
    const body = (await put.json()) as { type: string; detail: string };
    assert.equal(body.type, 'https://mailplane.io/problems/method-not-allowed');
    assert.match(
      body.detail,
      /^PUT is not a method of \/v1\/emails\/5f0c7c5e-[^;]+; it takes GET, PATCH, HEAD\.$/,
    );

    // Nothing is told before the key is: an unauthenticated caller gets a 401 whatever the method.
    assert.equal((await fetch(`${platform.url}/v1/emails`, { method: 'DELETE' })).status, 401);
    // A path the API does not have is still a 404.
    assert.equal((await call('GET', '/v1/nothing-here')).status, 404);
  });

  test("the SDK's domain and API key writes say the cluster declares them, and change nothing", async () => {
    const resend = new Resend(key, { baseUrl: `${platform.url}/v1` });
    const domains = () =>
      platform.database.db.selectFrom('domains').select(['id', 'name']).orderBy('id').execute();
    const before = await domains();

    const created = await resend.domains.create({ name: 'new.example' });
    assert.equal(created.error?.name, 'method_not_allowed');
    assert.match(created.error!.message, /SendingDomain resources \(kubectl apply\)/);
    const removed = await resend.domains.remove(before[0]!.id);
    assert.equal(removed.error?.name, 'method_not_allowed');
    assert.match(removed.error!.message, /it takes GET, HEAD\. Sending domains are declared/);
    assert.deepEqual(await domains(), before);

    const key2 = await resend.apiKeys.create({ name: 'ci' });
    assert.equal(key2.error?.name, 'not_found');
    assert.match(key2.error!.message, /spec\.apiKeys/);
    assert.equal((await resend.apiKeys.list()).error?.name, 'not_found');
  });

  test('healthz, readyz and metrics answer without a key', async () => {
    assert.equal((await fetch(`${platform.url}/healthz`)).status, 200);
    assert.equal((await fetch(`${platform.url}/readyz`)).status, 200);
    const metrics = await (await fetch(`${platform.url}/metrics`)).text();
    assert.match(metrics, /mailplane_messages_accepted_total\{tenant="default\/acme"\} \d+/);
  });
});

describe('the resend SDK, unchanged', () => {
  test('sends, reads and batches through the SDK with its base URL pointed here', async () => {
    const resend = new Resend(key, { baseUrl: `${platform.url}/v1` });
    const sent = await resend.emails.send({
      from: FROM,
      to: ['ada@example.org'],
      subject: 'From the SDK',
      html: '<b>hi</b>',
      replyTo: 'support@example.com',
      tags: [{ name: 'category', value: 'welcome' }],
      attachments: [{ filename: 'a.txt', content: Buffer.from('hello') }],
      headers: { 'X-Entity-Ref-ID': '123' },
    });
    assert.equal(sent.error, null, JSON.stringify(sent.error));
    const got = await resend.emails.get(sent.data!.id);
    assert.equal(got.error, null);
    assert.equal(got.data!.id, sent.data!.id);
    assert.equal(got.data!.subject, 'From the SDK');
    assert.deepEqual(got.data!.reply_to, ['support@example.com']);

    const batch = await resend.batch.send([
      { from: FROM, to: 'a@example.org', subject: 'one', text: '1' },
      { from: FROM, to: 'b@example.org', subject: 'two', text: '2' },
    ]);
    assert.equal(batch.error, null, JSON.stringify(batch.error));
    assert.equal(batch.data!.data.length, 2);

    const refused = await resend.emails.send({
      from: 'x@not-ours.example.net',
      to: 'a@example.org',
      subject: 's',
      text: 't',
    });
    assert.equal(refused.data, null);
    assert.match(refused.error!.message, /not a sending domain/);
  });

  test("the SDK's errors carry Resend's names and a message naming the field at fault", async () => {
    const resend = new Resend(key, { baseUrl: `${platform.url}/v1` });
    const invalid = await resend.emails.send({ from: FROM, to: 'nope', subject: 's', text: 't' });
    assert.equal(invalid.error?.name, 'validation_error');
    assert.match(invalid.error!.message, /^to: "nope" is not an email address/);

    const wrongKey = new Resend('mp_live_not-a-key', { baseUrl: `${platform.url}/v1` });
    assert.equal(
      (await wrongKey.emails.get('5f0c7c5e-0000-4000-8000-000000000000')).error?.name,
      'invalid_api_key',
    );

    const missing = await fetch(`${platform.url}/v1/emails/5f0c7c5e-0000-4000-8000-000000000000`);
    assert.equal(((await missing.json()) as { name: string }).name, 'missing_api_key');

    const notFound = await resend.emails.get('5f0c7c5e-0000-4000-8000-000000000000');
    assert.equal(notFound.error?.name, 'not_found');
  });

  test('a strict batch with one bad email queues nothing and names the bad field by index', async () => {
    const jobs = await queuedJobs();
    const res = await call('POST', '/v1/emails/batch', [
      { from: FROM, to: 'a@example.org', subject: 'ok', text: 't' },
      { from: FROM, to: 'nope', subject: 'bad', text: 't' },
    ]);
    assert.equal(res.status, 422);
    assert.equal(res.body.errors[0].field, '[1].to');
    assert.equal(await queuedJobs(), jobs);
  });
  test('a permissive batch sends the valid emails and reports the others by index', async () => {
    const jobs = await queuedJobs();
    const res = await call(
      'POST',
      '/v1/emails/batch',
      [
        { from: FROM, to: 'a@example.org', subject: 'ok', text: 't' },
        { from: 'x@not-ours.example.net', to: 'b@example.org', subject: 'bad', text: 't' },
      ],
      { 'x-batch-validation': 'permissive' },
    );
    assert.equal(res.status, 202);
    assert.equal(res.body.data.length, 1);
    assert.equal(res.body.errors[0].index, 1);
    assert.match(res.body.errors[0].message, /not a sending domain/);
    assert.equal((await queuedJobs()) - jobs, 1);
  });
});
