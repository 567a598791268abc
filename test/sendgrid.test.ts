// POST /v3/mail/send with the official @sendgrid/mail as the caller, pointed here by its base URL:
// what is queued for each personalization, template sends, attachments, and every refusal as
// SendGrid's client surfaces it (the status as `code`, SendGrid's `errors` in `response.body`),
// with nothing queued; then bodies no client would send, none of which is a 500.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@sendgrid/client';
import { MailService, type MailDataRequired } from '@sendgrid/mail';
import { sql } from 'kysely';
import { sendingDomain, startTestPlatform, tenant, type TestPlatform } from './helpers/platform.js';

let platform: TestPlatform;
let key: string;

const FROM = { email: 'hello@example.com', name: 'Acme' };
const PNG = Buffer.from('not really a png').toString('base64');

/**
 * A @sendgrid/client with the Mailplane key and base URL. Its setApiKey warns that the key does
 * not start with "SG."; the tests keep their output to themselves.
 */
function sendgridClient(apiKey = key): Client {
  const client = new Client();
  const warn = console.warn;
  console.warn = () => {};
  try {
    client.setApiKey(apiKey);
  } finally {
    console.warn = warn;
  }
  // After setApiKey, which sets SendGrid's own base URL.
  client.setDefaultRequest('baseUrl', platform.url);
  return client;
}

/** @sendgrid/mail as an application sets it up. */
function sendgrid(apiKey = key): MailService {
  const mail = new MailService();
  mail.setClient(sendgridClient(apiKey));
  return mail;
}

/** What the client throws: SendGrid's ResponseError, its status as `code`. */
interface SendGridError {
  code: number;
  response: { body: { errors: { message: string; field: string | null; help: string | null }[] } };
}

async function refusal(send: Promise<unknown>): Promise<SendGridError> {
  const err = await send.then(
    () => assert.fail('the send was accepted'),
    (e: unknown) => e as SendGridError,
  );
  assert.equal(typeof err.code, 'number', String(err));
  return err;
}

async function queuedJobs(): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from graphile_worker.jobs`.execute(
    platform.database.db,
  );
  return rows[0]!.n;
}

/** The emails of a send, found by the batch_id tag each carries. */
async function emailsTagged(batchId: string) {
  const rows = await platform.database.db.selectFrom('emails').selectAll().orderBy('created_at').execute();
  return rows.filter((e) => e.content.tags.some((t) => t.name === 'batch_id' && t.value === batchId));
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
async function post(body: string | unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${platform.url}/v3/mail/send`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
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

describe('@sendgrid/mail, unchanged', () => {
  test('each personalization is one email, queued with a job per recipient; 202 with the first id in X-Message-Id', async () => {
    const jobs = await queuedJobs();
    const sendAt = Math.floor(Date.now() / 1000) + 3600;
    const [response] = await sendgrid().send({
      from: FROM,
      replyTo: 'support@example.com',
      // The client wraps each substitution's key in {{ }}, as SendGrid's legacy templates write them.
      subject: 'Hello {{name}}',
      text: 'Hi {{name}}, your code is {{code}}.',
      html: '<p>Hi {{name}}, your code is <b>{{code}}</b>.</p>',
      categories: ['welcome', 'onboarding'],
      customArgs: { campaign: 'spring' },
      headers: { 'X-Entity-Ref-ID': 'ref-1' },
      batchId: 'batch-personalizations',
      personalizations: [
        {
          to: [{ email: 'ada@example.org', name: 'Ada Lovelace' }],
          cc: 'lin@example.org',
          substitutions: { name: 'Ada', code: '1234' },
          customArgs: { user: 'u1' },
        },
        {
          to: ['grace@example.org', 'alan@example.org'],
          bcc: ['audit@example.org'],
          subject: 'For you, {{name}}',
          substitutions: { name: 'Grace', code: '5678' },
          headers: { 'X-Entity-Ref-ID': 'ref-2' },
          sendAt,
        },
      ],
    } as MailDataRequired);
    assert.equal(response.statusCode, 202);
    const messageId = response.headers['x-message-id'] as string;
    assert.match(messageId, /^[0-9a-f-]{36}$/);

    const emails = await emailsTagged('batch-personalizations');
    assert.equal(emails.length, 2);
    const first = emails.find((e) => e.id === messageId);
    const second = emails.find((e) => e.id !== messageId);
    assert.deepEqual(await recipientsOf(first!.id), ['ada@example.org', 'lin@example.org']);
    assert.deepEqual(await recipientsOf(second!.id), [
      'alan@example.org',
      'audit@example.org',
      'grace@example.org',
    ]);
    assert.equal((await queuedJobs()) - jobs, 5);

    assert.equal(first!.from_address, 'Acme <hello@example.com>');
    assert.equal(first!.subject, 'Hello Ada');
    assert.equal(first!.content.text, 'Hi Ada, your code is 1234.');
    assert.equal(first!.content.html, '<p>Hi Ada, your code is <b>1234</b>.</p>');
    assert.deepEqual(first!.content.to, ['Ada Lovelace <ada@example.org>']);
    assert.deepEqual(first!.content.reply_to, ['support@example.com']);
    assert.equal(first!.content.headers['X-Entity-Ref-ID'], 'ref-1');
    assert.deepEqual(first!.content.tags, [
      { name: 'category', value: 'welcome' },
      { name: 'category', value: 'onboarding' },
      { name: 'batch_id', value: 'batch-personalizations' },
      { name: 'campaign', value: 'spring' },
      { name: 'user', value: 'u1' },
    ]);
    assert.equal(first!.scheduled_at, null);

    assert.equal(second!.subject, 'For you, Grace');
    assert.equal(second!.content.headers['X-Entity-Ref-ID'], 'ref-2');
    assert.equal(second!.scheduled_at?.getTime(), sendAt * 1000);
  });

  test('a template_id names a Mailplane Template (the d- prefix left off), its variables each personalization’s dynamic_template_data', async () => {
    const [response] = await sendgrid().send({
      from: FROM,
      templateId: 'd-welcome',
      batchId: 'batch-template',
      personalizations: [
        { to: 'ada@example.org', dynamicTemplateData: { name: 'Ada', email: 'ada@example.org' } },
        { to: 'grace@example.org', dynamicTemplateData: { name: 'Grace', email: 'grace@example.org' } },
      ],
    } as MailDataRequired);
    assert.equal(response.statusCode, 202);
    const emails = await emailsTagged('batch-template');
    assert.equal(emails.length, 2);
    const template = await platform.database.db
      .selectFrom('templates')
      .select(['id', 'current_version'])
      .where('name', '=', 'welcome')
      .executeTakeFirstOrThrow();
    const pinned = emails.map((e) => e.content.template);
    assert.deepEqual(pinned.map((t) => t?.variables.name).sort(), ['Ada', 'Grace']);
    for (const t of pinned) {
      assert.equal(t?.id, template.id);
      assert.equal(t?.version, template.current_version);
    }
    assert.ok(emails.every((e) => e.subject === ''));

    // Without the prefix the name is read as it is; a name no Template has is refused.
    const byName = await sendgrid().send({ from: FROM, to: 'a@example.org', templateId: 'welcome' });
    assert.equal(byName[0].statusCode, 202);
    const jobs = await queuedJobs();
    const missing = await refusal(sendgrid().send({ from: FROM, to: 'a@example.org', templateId: 'd-nope' }));
    assert.equal(missing.code, 400);
    assert.equal(missing.response.body.errors[0]!.field, 'template_id');
    assert.equal(await queuedJobs(), jobs);
  });

  test('attachments are stored as sent, an inline one under its content_id', async () => {
    const [response] = await sendgrid().send({
      from: FROM,
      to: 'ada@example.org',
      subject: 'Files',
      html: '<img src="cid:logo">',
      attachments: [
        { content: PNG, filename: 'logo.png', type: 'image/png', disposition: 'inline', contentId: 'logo' },
        { content: Buffer.from('a,b\n1,2\n').toString('base64'), filename: 'data.csv', type: 'text/csv' },
      ],
    });
    assert.equal(response.statusCode, 202);
    const email = await platform.database.db
      .selectFrom('emails')
      .selectAll()
      .where('id', '=', response.headers['x-message-id'] as string)
      .executeTakeFirstOrThrow();
    assert.deepEqual(email.content.attachments, [
      { filename: 'logo.png', content: PNG, content_type: 'image/png', content_id: 'logo' },
      {
        filename: 'data.csv',
        content: Buffer.from('a,b\n1,2\n').toString('base64'),
        content_type: 'text/csv',
      },
    ]);
  });

  test('an Idempotency-Key retry gets the first answer and queues nothing more', async () => {
    const client = sendgridClient();
    client.setDefaultHeader('Idempotency-Key', 'sendgrid-order-7');
    const mail = new MailService();
    mail.setClient(client);
    const message = { from: FROM, to: 'ada@example.org', subject: 'Once', text: 'only once' };
    const [first] = await mail.send(message);
    const jobs = await queuedJobs();
    const [again] = await mail.send(message);
    assert.equal(again.statusCode, 202);
    assert.equal(again.headers['x-message-id'], first.headers['x-message-id']);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(await queuedJobs(), jobs);
  });

  test('a sandbox_mode send is checked in full, answered 200 and not queued', async () => {
    const jobs = await queuedJobs();
    const [ok] = await sendgrid().send({
      from: FROM,
      to: 'ada@example.org',
      subject: 'Test',
      text: 't',
      mailSettings: { sandboxMode: { enable: true } },
    });
    assert.equal(ok.statusCode, 200);
    const bad = await refusal(
      sendgrid().send({
        from: FROM,
        to: 'nope',
        subject: 'Test',
        text: 't',
        mailSettings: { sandboxMode: { enable: true } },
      }),
    );
    assert.equal(bad.code, 400);
    assert.equal(await queuedJobs(), jobs);
  });
});

describe('refusals, as @sendgrid/mail shows them', () => {
  test('every fault is a 400 naming the SendGrid field, and nothing is queued', async () => {
    const jobs = await queuedJobs();
    const err = await refusal(
      sendgrid().send({
        from: FROM,
        subject: 'Hi\r\nBcc: victim@example.org',
        text: 't',
        headers: { Bcc: 'x@example.org' },
        personalizations: [
          { to: [{ email: 'ada@example.org' }, { email: 'not-an-address' }] },
          { to: 'grace@example.org', sendAt: Math.floor(Date.now() / 1000) + 90 * 86400 },
        ],
        attachments: [{ content: '!!!', filename: 'a.txt' }],
        categories: ['not ok!'],
      } as MailDataRequired),
    );
    assert.equal(err.code, 400);
    const fields = err.response.body.errors.map((e) => e.field).sort();
    assert.deepEqual(fields, [
      'attachments.0.content',
      'categories.0',
      'headers.Bcc',
      'personalizations.0.to.1',
      'personalizations.1.send_at',
      'subject',
    ]);
    assert.ok(err.response.body.errors.every((e) => e.message && e.help === null));
    assert.equal(await queuedJobs(), jobs);
  });

  test('recipients over the tenant’s limit in a personalization are refused at its to', async () => {
    const to = Array.from({ length: 51 }, (_, i) => `r${i}@example.org`);
    const err = await refusal(sendgrid().send({ from: FROM, to, subject: 's', text: 't' }));
    assert.equal(err.code, 400);
    assert.equal(err.response.body.errors[0]!.field, 'personalizations.0.to');
    assert.match(err.response.body.errors[0]!.message, /over the limit of 50/);
  });

  test('a From domain the tenant does not own is 403, also one another tenant owns', async () => {
    const jobs = await queuedJobs();
    const notOurs = await refusal(
      sendgrid().send({ from: 'me@globex.example', to: 'a@example.org', subject: 's', text: 't' }),
    );
    assert.equal(notOurs.code, 403);
    assert.equal(notOurs.response.body.errors[0]!.field, 'from');
    assert.match(notOurs.response.body.errors[0]!.message, /not a sending domain/);
    const globex = platform.keys.get('default/globex/app')!;
    const theirs = await refusal(
      sendgrid(globex).send({ from: 'me@example.com', to: 'a@example.org', subject: 's', text: 't' }),
    );
    assert.equal(theirs.code, 403);
    assert.equal(await queuedJobs(), jobs);
  });

  test('a wrong key is 401 and a key without the send scope 403', async () => {
    const message = { from: FROM, to: 'a@example.org', subject: 's', text: 't' };
    const wrong = await refusal(sendgrid('mp_live_not-a-key').send(message));
    assert.equal(wrong.code, 401);
    assert.match(wrong.response.body.errors[0]!.message, /not valid/);
    const readOnly = await refusal(sendgrid(platform.keys.get('default/globex/dashboards')!).send(message));
    assert.equal(readOnly.code, 403);
    assert.match(readOnly.response.body.errors[0]!.message, /send/);
  });

  test('a message over the size limit is 413, as is a request whose emails would hold too much together', async () => {
    const big = Buffer.alloc(11 * 1024 * 1024, 1).toString('base64');
    const one = await refusal(
      sendgrid().send({
        from: FROM,
        to: 'a@example.org',
        subject: 's',
        text: 't',
        attachments: [{ content: big, filename: 'big.bin' }],
      }),
    );
    assert.equal(one.code, 413);
    assert.equal(one.response.body.errors[0]!.field, null);

    // 8 MB sent once, but 30 personalizations would store it 30 times.
    const jobs = await queuedJobs();
    const many = await post({
      from: FROM,
      subject: 's',
      content: [{ type: 'text/plain', value: 'x'.repeat(8 * 1024 * 1024) }],
      personalizations: Array.from({ length: 30 }, (_, i) => ({ to: [{ email: `r${i}@example.org` }] })),
    });
    assert.equal(many.status, 413);
    assert.match(many.body.errors[0].message, /30 emails/);
    // And substitutions may not make more of a body than the emails may hold.
    const grown = await post({
      from: FROM,
      subject: 's',
      content: [{ type: 'text/plain', value: '%x%'.repeat(1024 * 1024) }],
      personalizations: [{ to: [{ email: 'a@example.org' }], substitutions: { '%x%': 'y'.repeat(5000) } }],
    });
    assert.equal(grown.status, 413);
    assert.equal(await queuedJobs(), jobs);
  });
});

describe('bodies no client would send', () => {
  test('are refused in SendGrid’s shape, never with a 500, and queue nothing', async () => {
    const jobs = await queuedJobs();
    const to = [{ email: 'a@example.org' }];
    const base = { from: FROM, subject: 's', content: [{ type: 'text/plain', value: 't' }] };
    const bodies: unknown[] = [
      '{"personalizations": ',
      'null',
      '[]',
      '"text"',
      {},
      { ...base, personalizations: 'everyone' },
      { ...base, personalizations: [] },
      { ...base, personalizations: [null, 7, []] },
      { ...base, personalizations: Array.from({ length: 101 }, () => ({ to })) },
      { ...base, personalizations: [{ to: 'a@example.org' }] },
      {
        ...base,
        personalizations: [{ to: [null, 5, { email: 7 }, { email: 'a@example.org, b@example.org' }] }],
      },
      { ...base, personalizations: [{ to, cc: { email: 'x' }, substitutions: [], custom_args: 'x' }] },
      { ...base, personalizations: [{ to, substitutions: { a: 5 }, dynamic_template_data: 5, send_at: -1 }] },
      { ...base, personalizations: [{ to, send_at: 1.5 }] },
      { ...base, personalizations: [{ to, headers: 'x' }] },
      { ...base, from: 'hello@example.com', personalizations: [{ to }] },
      { ...base, from: { email: 'hello@example.com', name: 'A "quoted" name' }, personalizations: [{ to }] },
      {
        ...base,
        from: { email: 'hello@example.com', name: 'Eve\r\nBcc: x@example.org' },
        personalizations: [{ to }],
      },
      { ...base, personalizations: [{ to }], content: 'text' },
      { ...base, personalizations: [{ to }], content: [null, { type: 'text/calendar', value: 'x' }] },
      { ...base, personalizations: [{ to }], content: [{ type: 'text/plain', value: 5 }] },
      { ...base, personalizations: [{ to }], attachments: 'x' },
      { ...base, personalizations: [{ to }], attachments: [null, { content: 5, filename: {} }] },
      {
        ...base,
        personalizations: [{ to }],
        attachments: [{ content: PNG, filename: 'a.png', disposition: 'inline' }],
      },
      {
        ...base,
        personalizations: [{ to }],
        attachments: [{ content: PNG, filename: 'a.png', disposition: 'x' }],
      },
      { ...base, personalizations: [{ to }], headers: { 'Bad Name:': 'x', 'X-A': 'a\r\nb' } },
      { ...base, personalizations: [{ to }], categories: 'x' },
      { ...base, personalizations: [{ to }], categories: Array.from({ length: 11 }, (_, i) => `c${i}`) },
      { ...base, personalizations: [{ to }], categories: [5, null] },
      { ...base, personalizations: [{ to }], template_id: 5 },
      { ...base, personalizations: [{ to }], template_id: 'x'.repeat(10_000) },
      { ...base, personalizations: [{ to, substitutions: { a: 'b' } }], template_id: 'd-welcome' },
      { ...base, personalizations: [{ to }], reply_to: 'x' },
      { ...base, personalizations: [{ to }], reply_to_list: [{}] },
      { ...base, personalizations: [{ to }], batch_id: { x: 1 } },
      { ...base, personalizations: [{ to }], send_at: '2030-01-01' },
      { ...base, personalizations: [{ to }], custom_args: { 'bad key': 'v', k: 'bad value!' } },
      {
        ...base,
        personalizations: [
          { to, substitutions: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`k${i}`, 'v'])) },
        ],
      },
      {
        ...base,
        personalizations: [
          { to, dynamic_template_data: JSON.parse('{"a":'.repeat(200) + '1' + '}'.repeat(200)) },
        ],
        template_id: 'welcome',
      },
    ];
    for (const body of bodies) {
      const res = await post(body);
      const shown = typeof body === 'string' ? body : JSON.stringify(body).slice(0, 200);
      assert.ok(res.status >= 400 && res.status < 500, `${res.status} for ${shown}`);
      assert.ok(Array.isArray(res.body?.errors) && res.body.errors.length > 0, shown);
      for (const e of res.body.errors) {
        assert.equal(typeof e.message, 'string', shown);
        assert.ok('field' in e && 'help' in e, shown);
      }
    }
    assert.equal(await queuedJobs(), jobs);
  });

  test('a header or custom_arg named __proto__ is a name like any other, not a prototype', async () => {
    const body =
      '{"from":{"email":"hello@example.com"},"subject":"s","content":[{"type":"text/plain","value":"t"}],' +
      '"personalizations":[{"to":[{"email":"a@example.org"}],"headers":{"__proto__":"x"},' +
      '"custom_args":{"__proto__":"kept"}}]}';
    const res = await post(body);
    assert.equal(res.status, 202);
    const email = await platform.database.db
      .selectFrom('emails')
      .selectAll()
      .where('id', '=', res.headers.get('x-message-id')!)
      .executeTakeFirstOrThrow();
    assert.ok(Object.hasOwn(email.content.headers, '__proto__'));
    assert.deepEqual(email.content.tags, [{ name: '__proto__', value: 'kept' }]);
    assert.equal(({} as Record<string, unknown>).kept, undefined);
  });

  test('a JSON body that is not JSON is a 400 and one of another type a 415, in SendGrid’s shape', async () => {
    const bad = await post('{"from": ');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.errors[0].field, null);
    const plain = await post('hello', { 'content-type': 'text/plain' });
    assert.equal(plain.status, 415);
    assert.ok(plain.body.errors[0].message);
    const none = await post({}, { authorization: '' });
    assert.equal(none.status, 401);
  });
});
