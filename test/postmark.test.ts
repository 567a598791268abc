// Postmark's send routes with the official `postmark` client as the caller, pointed here by its
// requestHost: what is queued, template sends, attachments, batches where each message is
// answered on its own, and every refusal as the client surfaces it (its error class, `code` as
// Postmark's ErrorCode, `statusCode` as the HTTP status), with nothing queued; then bodies no
// client would send, none of which is a 500.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { Errors, ServerClient } from 'postmark';
import { sendingDomain, startTestPlatform, tenant, type TestPlatform } from './helpers/platform.js';

let platform: TestPlatform;
let key: string;

const FROM = 'Acme <hello@example.com>';
const PNG = Buffer.from('not really a png').toString('base64');

/** The client as an application sets it up, with the Mailplane key as its server token. */
function postmark(token = key): ServerClient {
  return new ServerClient(token, { requestHost: new URL(platform.url).host, useHttps: false });
}

async function refusal(send: Promise<unknown>): Promise<Errors.PostmarkError> {
  const err = await send.then(
    () => assert.fail('the send was accepted'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof Errors.PostmarkError, String(err));
  return err;
}

async function queuedJobs(): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from graphile_worker.jobs`.execute(
    platform.database.db,
  );
  return rows[0]!.n;
}

async function emailOf(id: string) {
  return platform.database.db.selectFrom('emails').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

async function recipientsOf(emailId: string): Promise<string[]> {
  const rows = await platform.database.db
    .selectFrom('messages')
    .select(['recipient', 'status'])
    .where('email_id', '=', emailId)
    .execute();
  assert.ok(rows.every((m) => m.status === 'queued'));
  return rows.map((m) => m.recipient).sort();
}

/** A body written by hand, as no client would. */
async function post(path: string, body: string | unknown, headers: Record<string, string> = {}) {
  const res = await fetch(platform.url + path, {
    method: 'POST',
    headers: { 'x-postmark-server-token': key, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

before(async () => {
  platform = await startTestPlatform();
  key = platform.keys.get('default/acme/backend')!;
  await platform.apply([
    tenant('globex', [
      { name: 'app', scopes: ['send', 'read'] },
      { name: 'dashboards', scopes: ['read'] },
    ]),
    sendingDomain('globex-com', 'globex', 'globex.example'),
  ]);
});
after(async () => platform.close());

describe('the postmark client, unchanged', () => {
  test('sendEmail queues the message with a job per recipient and answers in Postmark’s shape', async () => {
    const jobs = await queuedJobs();
    const sent = await postmark().sendEmail({
      From: FROM,
      To: 'Ada <ada@example.org>, grace@example.org',
      Cc: 'lin@example.org',
      Bcc: 'audit@example.org',
      ReplyTo: 'support@example.com',
      Subject: 'Hello',
      HtmlBody: '<p>Hi <img src="cid:logo.png"></p>',
      TextBody: 'Hi',
      Tag: 'welcome',
      Metadata: { user: 'u1' },
      MessageStream: 'outbound',
      Headers: [{ Name: 'X-Entity-Ref-ID', Value: 'ref-1' }],
      TrackOpens: true,
      Attachments: [
        { Name: 'logo.png', Content: PNG, ContentType: 'image/png', ContentID: 'cid:logo.png' },
        {
          Name: 'a.txt',
          Content: Buffer.from('hello').toString('base64'),
          ContentType: 'text/plain',
          ContentID: null,
        },
      ],
    });
    assert.equal(sent.ErrorCode, 0);
    assert.equal(sent.Message, 'OK');
    assert.match(sent.MessageID, /^[0-9a-f-]{36}$/);
    assert.ok(!Number.isNaN(Date.parse(sent.SubmittedAt)));
    assert.equal(sent.To, 'Ada <ada@example.org>, grace@example.org');
    assert.deepEqual(await recipientsOf(sent.MessageID), [
      'ada@example.org',
      'audit@example.org',
      'grace@example.org',
      'lin@example.org',
    ]);
    assert.equal((await queuedJobs()) - jobs, 4);

    const email = await emailOf(sent.MessageID);
    assert.equal(email.subject, 'Hello');
    assert.deepEqual(email.content.reply_to, ['support@example.com']);
    assert.equal(email.content.headers['X-Entity-Ref-ID'], 'ref-1');
    assert.deepEqual(email.content.tags, [
      { name: 'tag', value: 'welcome' },
      { name: 'user', value: 'u1' },
      { name: 'message_stream', value: 'outbound' },
    ]);
    assert.deepEqual(email.content.attachments, [
      { filename: 'logo.png', content: PNG, content_type: 'image/png', content_id: 'logo.png' },
      { filename: 'a.txt', content: Buffer.from('hello').toString('base64'), content_type: 'text/plain' },
    ]);
  });

  test('sendEmailBatch answers each message on its own: the valid ones are queued, the others refused', async () => {
    const jobs = await queuedJobs();
    const results = await postmark().sendEmailBatch([
      { From: FROM, To: 'a@example.org', Subject: 'one', TextBody: '1' },
      { From: FROM, To: 'nope', Subject: 'two', TextBody: '2' },
      { From: 'me@globex.example', To: 'b@example.org', Subject: 'three', TextBody: '3' },
      { From: FROM, To: 'c@example.org', Subject: 'four', HtmlBody: '<p>4</p>' },
    ]);
    assert.deepEqual(
      results.map((r) => r.ErrorCode),
      [0, 300, 400, 0],
    );
    assert.match(results[1]!.Message, /^To: "nope" is not an email address/);
    assert.match(results[2]!.Message, /not a sending domain/);
    assert.deepEqual(await recipientsOf(results[0]!.MessageID), ['a@example.org']);
    assert.deepEqual(await recipientsOf(results[3]!.MessageID), ['c@example.org']);
    assert.equal((await queuedJobs()) - jobs, 2);
  });

  test('sendEmailWithTemplate and sendEmailBatchWithTemplates pin a Mailplane Template, its model as variables', async () => {
    const template = await platform.database.db
      .selectFrom('templates')
      .select(['id', 'current_version'])
      .where('name', '=', 'welcome')
      .executeTakeFirstOrThrow();
    const model = { name: 'Ada', email: 'ada@example.org' };
    const sent = await postmark().sendEmailWithTemplate({
      From: FROM,
      To: 'ada@example.org',
      TemplateAlias: 'welcome',
      TemplateModel: model,
    });
    assert.equal(sent.ErrorCode, 0);
    const email = await emailOf(sent.MessageID);
    assert.deepEqual(email.content.template, {
      id: template.id,
      version: template.current_version,
      variables: model,
    });

    const batch = await postmark().sendEmailBatchWithTemplates([
      {
        From: FROM,
        To: 'grace@example.org',
        TemplateId: template.id as unknown as number,
        TemplateModel: model,
      },
      { From: FROM, To: 'lin@example.org', TemplateAlias: 'nope', TemplateModel: model },
    ]);
    assert.deepEqual(
      batch.map((r) => r.ErrorCode),
      [0, 1101],
    );
    assert.equal((await emailOf(batch[0]!.MessageID)).content.template?.id, template.id);

    const jobs = await queuedJobs();
    const missing = await refusal(
      postmark().sendEmailWithTemplate({
        From: FROM,
        To: 'a@example.org',
        TemplateId: 12345,
        TemplateModel: {},
      }),
    );
    assert.equal(missing.code, 1101);
    assert.equal(missing.statusCode, 422);
    assert.equal(await queuedJobs(), jobs);
  });

  test('an Idempotency-Key retry gets the first answer and queues nothing more', async () => {
    const body = { From: FROM, To: 'a@example.org', Subject: 'once', TextBody: 'once' };
    const first = await post('/email', body, { 'idempotency-key': 'postmark-order-9' });
    const jobs = await queuedJobs();
    const again = await post('/email', body, { 'idempotency-key': 'postmark-order-9' });
    assert.equal(again.status, 200);
    assert.equal(again.body.MessageID, first.body.MessageID);
    assert.equal(await queuedJobs(), jobs);
  });

  test('the key also works as Authorization: Bearer, as everywhere else', async () => {
    const res = await post(
      '/email',
      { From: FROM, To: 'a@example.org', Subject: 's', TextBody: 't' },
      { 'x-postmark-server-token': '', authorization: `Bearer ${key}` },
    );
    assert.equal(res.status, 200);
    assert.equal(res.body.ErrorCode, 0);
  });
});

describe('refusals, as the postmark client shows them', () => {
  test('an invalid message is InvalidEmailRequestError (300, HTTP 422) naming the Postmark field', async () => {
    const jobs = await queuedJobs();
    const err = await refusal(
      postmark().sendEmail({
        From: FROM,
        To: 'a@example.org',
        Subject: 'Hi\r\nBcc: victim@example.org',
        TextBody: 't',
        Headers: [{ Name: 'Bcc', Value: 'x@example.org' }],
      }),
    );
    assert.ok(err instanceof Errors.InvalidEmailRequestError);
    assert.equal(err.code, 300);
    assert.equal(err.statusCode, 422);
    assert.match(err.message, /^Subject: /);
    assert.match(err.message, /and 1 more fault/);

    const noBody = await refusal(postmark().sendEmail({ From: FROM, To: 'a@example.org', Subject: 's' }));
    assert.match(noBody.message, /^HtmlBody: html, text or template is required/);
    const tooMany = Array.from({ length: 51 }, (_, i) => `r${i}@example.org`).join(', ');
    const over = await refusal(
      postmark().sendEmail({ From: FROM, To: tooMany, Subject: 's', TextBody: 't' }),
    );
    assert.equal(over.code, 300);
    assert.match(over.message, /^To: 51 recipients .* limit of 50/);
    const attachment = await refusal(
      postmark().sendEmail({
        From: FROM,
        To: 'a@example.org',
        Subject: 's',
        TextBody: 't',
        Attachments: [{ Name: 'a\r\n.txt', Content: '!!', ContentType: 'text/plain', ContentID: null }],
      }),
    );
    assert.match(attachment.message, /^Attachments\[0\]\.Name: /);
    assert.equal(await queuedJobs(), jobs);
  });

  test('a From domain the tenant does not own is 400 (sender signature not found), also one another tenant owns', async () => {
    const err = await refusal(
      postmark().sendEmail({ From: 'me@globex.example', To: 'a@example.org', Subject: 's', TextBody: 't' }),
    );
    assert.equal(err.code, 400);
    assert.equal(err.statusCode, 422);
    const globex = platform.keys.get('default/globex/app')!;
    const theirs = await refusal(
      postmark(globex).sendEmail({ From: FROM, To: 'a@example.org', Subject: 's', TextBody: 't' }),
    );
    assert.equal(theirs.code, 400);
  });

  test('a wrong token is InvalidAPIKeyError (10, HTTP 401); a token without the send scope 405', async () => {
    const message = { From: FROM, To: 'a@example.org', Subject: 's', TextBody: 't' };
    const wrong = await refusal(postmark('mp_live_not-a-key').sendEmail(message));
    assert.ok(wrong instanceof Errors.InvalidAPIKeyError);
    assert.equal(wrong.code, 10);
    assert.equal(wrong.statusCode, 401);
    const readOnly = await refusal(
      postmark(platform.keys.get('default/globex/dashboards')!).sendEmail(message),
    );
    assert.equal(readOnly.code, 405);
    assert.match(readOnly.message, /send/);
  });

  test('a message to none but suppressed recipients is InactiveRecipientsError (406); one with others is sent', async () => {
    const acme = await platform.database.db
      .selectFrom('tenants')
      .select('id')
      .where('name', '=', 'acme')
      .executeTakeFirstOrThrow();
    await platform.database.db
      .insertInto('suppressions')
      .values({ tenant_id: acme.id, address: 'bounced@example.org', reason: 'bounce', detail: null })
      .execute();
    const jobs = await queuedJobs();
    const err = await refusal(
      postmark().sendEmail({ From: FROM, To: 'Bounced@example.org', Subject: 's', TextBody: 't' }),
    );
    assert.ok(err instanceof Errors.InactiveRecipientsError);
    assert.equal(err.code, 406);
    assert.deepEqual(err.recipients, ['bounced@example.org']);
    assert.equal(await queuedJobs(), jobs);

    // As under /v1, a suppressed recipient among others is skipped when the message is sent.
    const mixed = await postmark().sendEmail({
      From: FROM,
      To: 'bounced@example.org, ada@example.org',
      Subject: 's',
      TextBody: 't',
    });
    assert.equal(mixed.ErrorCode, 0);
    assert.equal((await queuedJobs()) - jobs, 2);
  });

  test('a message over the size limit is 300 and a batch of more than 100 messages 410', async () => {
    const big = Buffer.alloc(11 * 1024 * 1024, 1).toString('base64');
    const large = await refusal(
      postmark().sendEmail({
        From: FROM,
        To: 'a@example.org',
        Subject: 's',
        TextBody: 't',
        Attachments: [
          { Name: 'big.bin', Content: big, ContentType: 'application/octet-stream', ContentID: null },
        ],
      }),
    );
    assert.equal(large.code, 300);
    assert.match(large.message, /limit/);
    const message = { From: FROM, To: 'a@example.org', Subject: 's', TextBody: 't' };
    const jobs = await queuedJobs();
    const batch = await refusal(postmark().sendEmailBatch(Array.from({ length: 101 }, () => message)));
    assert.equal(batch.code, 410);
    assert.equal(await queuedJobs(), jobs);
  });
});

describe('bodies no client would send', () => {
  test('are refused with a Postmark ErrorCode, never a 500, and queue nothing', async () => {
    const jobs = await queuedJobs();
    const base = { From: FROM, To: 'a@example.org', Subject: 's', TextBody: 't' };
    const cases: [string, unknown][] = [
      ['/email', '{"From": '],
      ['/email', 'null'],
      ['/email', []],
      ['/email', '"text"'],
      ['/email', {}],
      ['/email', { ...base, From: 5, To: ['a@example.org'], Cc: {} }],
      ['/email', { ...base, Headers: 'x' }],
      ['/email', { ...base, Headers: [null, { Name: 5 }, { Name: 'X-A', Value: 5 }] }],
      ['/email', { ...base, Headers: [{ Name: 'X-A', Value: 'a\r\nBcc: x@example.org' }] }],
      ['/email', { ...base, Attachments: 'x' }],
      ['/email', { ...base, Attachments: [null, 5, { Name: {}, Content: 5, ContentID: 7 }] }],
      ['/email', { ...base, Attachments: [{ Name: 'a.png', Content: PNG, ContentID: 'cid:<bad>' }] }],
      ['/email', { ...base, Tag: { x: 1 } }],
      ['/email', { ...base, Tag: 'not ok!' }],
      ['/email', { ...base, Metadata: 'x' }],
      ['/email', { ...base, Metadata: { 'bad key': 'v', k: { deep: 1 } } }],
      ['/email', { ...base, MessageStream: 5 }],
      ['/email', { ...base, Subject: 'x'.repeat(5000) }],
      ['/email/batch', {}],
      ['/email/batch', 'null'],
      ['/email/batch', [null, 5, 'x']],
      ['/email/withTemplate', { ...base }],
      ['/email/withTemplate', { ...base, TemplateId: {} }],
      ['/email/withTemplate', { ...base, TemplateAlias: 'welcome', TemplateModel: 5 }],
      ['/email/withTemplate', { ...base, TemplateAlias: 'x'.repeat(10_000) }],
      [
        '/email/withTemplate',
        {
          ...base,
          TemplateAlias: 'welcome',
          TemplateModel: JSON.parse('{"a":'.repeat(200) + '1' + '}'.repeat(200)),
        },
      ],
      ['/email/batchWithTemplates', []],
      ['/email/batchWithTemplates', { Messages: 'x' }],
      ['/email/batchWithTemplates', { Messages: [null, { ...base }] }],
    ];
    for (const [path, body] of cases) {
      const res = await post(path, body);
      const shown = `${path} ${typeof body === 'string' ? body : JSON.stringify(body).slice(0, 200)}`;
      assert.ok(res.status < 500, `${res.status} for ${shown}`);
      const answers = Array.isArray(res.body) ? res.body : [res.body];
      assert.ok(answers.length > 0, shown);
      for (const a of answers) {
        assert.equal(typeof a.ErrorCode, 'number', shown);
        assert.notEqual(a.ErrorCode, 0, shown);
        assert.equal(typeof a.Message, 'string', shown);
      }
    }
    assert.equal(await queuedJobs(), jobs);
  });

  test('malformed JSON is 402, another media type 409, a missing token 10', async () => {
    const bad = await post('/email', '{"From": ');
    assert.deepEqual([bad.status, bad.body.ErrorCode], [422, 402]);
    const plain = await post('/email', 'hello', { 'content-type': 'text/plain' });
    assert.deepEqual([plain.status, plain.body.ErrorCode], [422, 409]);
    const none = await post('/email', {}, { 'x-postmark-server-token': '' });
    assert.deepEqual([none.status, none.body.ErrorCode], [401, 10]);
  });

  test('a header or Metadata key named __proto__ is a name like any other, not a prototype', async () => {
    const res = await post(
      '/email',
      '{"From":"hello@example.com","To":"a@example.org","Subject":"s","TextBody":"t",' +
        '"Headers":[{"Name":"__proto__","Value":"x"}],"Metadata":{"__proto__":"kept"}}',
    );
    assert.equal(res.status, 200);
    const email = await emailOf(res.body.MessageID);
    assert.ok(Object.hasOwn(email.content.headers, '__proto__'));
    assert.deepEqual(email.content.tags, [{ name: '__proto__', value: 'kept' }]);
    assert.equal(({} as Record<string, unknown>).kept, undefined);
  });
});
