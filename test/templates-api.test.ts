// /v1/templates against real parts: the api and the sender on a fresh database with examples/
// applied (whose `welcome` is a Template resource), the dev inbox as the relay, the template
// sandbox the sender renders in, and the Resend SDK unchanged as the caller.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Resend } from 'resend';
import { startInbox, type Inbox } from '../dev/inbox.js';
import type { Sender } from '../sender/worker.js';
import { eventually } from './helpers/eventually.js';
import {
  sendingDomain,
  startTestPlatform,
  startTestSender,
  tenant,
  type TestPlatform,
} from './helpers/platform.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let inbox: Inbox;
let platform: TestPlatform;
let sender: Sender;
/** acme's key (send and read), a read-only one of acme's, globex's. */
const keys = { acme: '', acmeRead: '', globex: '' };
let resend: Resend;

interface Answer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read member by member
  body: any;
}

async function call(
  method: string,
  path: string,
  options: { key?: string; body?: unknown } = {},
): Promise<Answer> {
  const res = await fetch(`${platform.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${options.key ?? keys.acme}`,
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

before(async () => {
  inbox = await startInbox();
  platform = await startTestPlatform({ MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${inbox.smtpPort}` });
  await platform.apply([
    tenant('acme', [
      { name: 'backend', scopes: ['send', 'read'] },
      { name: 'dashboards', scopes: ['read'] },
    ]),
    tenant('globex', [{ name: 'backend', scopes: ['send', 'read'] }]),
    sendingDomain('globex-example', 'globex', 'globex.example'),
  ]);
  keys.acme = platform.keys.get('default/acme/backend')!;
  keys.acmeRead = platform.keys.get('default/acme/dashboards')!;
  keys.globex = platform.keys.get('default/globex/backend')!;
  resend = new Resend(keys.acme, { baseUrl: `${platform.url}/v1` });
  sender = await startTestSender(platform);
});
after(async () => {
  await sender?.stop();
  await platform?.close();
  await inbox?.close();
});

describe('the resend SDK, unchanged', () => {
  test('templates.create, get, list, update, duplicate and remove keep every version', async () => {
    const created = await resend.templates
      .create({
        name: 'order-shipped',
        subject: 'Order <%= order %> shipped',
        html: '<p>Hi <%= name %>, order <%= order %> is on its way.</p>',
        variables: [
          { key: 'name', type: 'string', fallbackValue: 'there' },
          { key: 'order', type: 'number', fallbackValue: 1 },
        ],
      })
      .publish();
    assert.equal(created.error, null, JSON.stringify(created.error));
    const id = created.data!.id;
    assert.match(id, UUID);

    const got = await resend.templates.get(id);
    assert.equal(got.error, null);
    assert.equal(got.data!.name, 'order-shipped');
    assert.equal(got.data!.subject, 'Order <%= order %> shipped');
    assert.equal(got.data!.status, 'published');
    assert.deepEqual(
      got.data!.variables!.map((v) => [v.key, v.type, v.fallback_value]),
      [
        ['name', 'string', 'there'],
        ['order', 'number', 1],
      ],
    );
    const view = got.data as unknown as { version: number; source: string; versions: { version: number }[] };
    assert.equal(view.version, 1);
    assert.equal(view.source, 'api');

    const updated = await resend.templates.update(id, { text: 'Order <%= order %> is on its way.' });
    assert.equal(updated.error, null, JSON.stringify(updated.error));
    const again = (await resend.templates.get('order-shipped')).data as unknown as typeof view & {
      html: string;
      text: string;
    };
    assert.equal(again.version, 2, 'an update is a new version');
    assert.equal(again.html, '<p>Hi <%= name %>, order <%= order %> is on its way.</p>', 'the rest is kept');
    assert.equal(again.text, 'Order <%= order %> is on its way.');
    assert.deepEqual(
      again.versions.map((v) => v.version),
      [2, 1],
    );
    // The same content again is no new version.
    await resend.templates.update(id, { text: 'Order <%= order %> is on its way.' });
    assert.equal(((await resend.templates.get(id)).data as unknown as typeof view).version, 2);

    const listed = await resend.templates.list();
    assert.equal(listed.error, null);
    const names = listed.data!.data.map((t) => t.name);
    assert.ok(names.includes('order-shipped'), JSON.stringify(names));
    assert.ok(names.includes('welcome'), 'a Template resource is listed too');

    const copy = await resend.templates.duplicate(id);
    assert.equal(copy.error, null, JSON.stringify(copy.error));
    assert.equal((await resend.templates.get(copy.data!.id)).data!.name, 'order-shipped (copy)');

    for (const gone of [id, copy.data!.id]) {
      const removed = await resend.templates.remove(gone);
      assert.equal(removed.error, null);
      assert.deepEqual(removed.data, { object: 'template', id: gone, deleted: true });
      assert.equal((await resend.templates.get(gone)).error?.name, 'not_found');
    }
  });

  test('templates.list pages newest first with limit and after', async () => {
    for (const n of [1, 2, 3]) {
      const { error } = await resend.templates.create({ name: `page-${n}`, subject: 'S', html: '<p>x</p>' });
      assert.equal(error, null);
    }
    const first = await resend.templates.list({ limit: 2 });
    assert.deepEqual(
      first.data!.data.map((t) => t.name),
      ['page-3', 'page-2'],
    );
    assert.equal(first.data!.has_more, true);
    const next = await resend.templates.list({ limit: 2, after: first.data!.data[1]!.id });
    assert.equal(next.data!.data[0]!.name, 'page-1');
    const back = await resend.templates.list({ limit: 2, before: next.data!.data[0]!.id });
    assert.deepEqual(
      back.data!.data.map((t) => t.name),
      ['page-3', 'page-2'],
    );
  });
});

describe('the compile-and-sample check a manifest passes', () => {
  test('a template that does not compile is refused with its part and line, and nothing is stored', async () => {
    const res = await call('POST', '/v1/templates', {
      body: { name: 'broken', subject: 'Hi', html: '<p>one</p>\n<p>two</p>\n<% if (x) { %>\n<p>open</p>' },
    });
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.equal(res.body.name, 'template_invalid');
    assert.equal(res.body.part, 'html');
    assert.equal(res.body.errors[0].field, 'html');
    assert.equal((await call('GET', '/v1/templates/broken')).status, 404);
  });

  test('the sample data and the declared variables are rendered before a version is stored', async () => {
    const res = await call('POST', '/v1/templates', {
      body: {
        name: 'sampled',
        subject: 'Hi <%= user.name %>',
        text: 'line one\nHello <%= user.name.toUpperCase() %>',
        sample_data: { user: {} },
      },
    });
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.equal(res.body.part, 'text');
    assert.equal(res.body.line, 2);
    assert.match(res.body.detail, /^The template does not render its sample: text line 2: TypeError/);

    // A declared variable renders with its fallback, or an empty value of its type.
    const ok = await resend.templates.create({
      name: 'declared',
      subject: 'Hi <%= name.trim() %>',
      html: '<p><%= count.toFixed(0) %></p>',
      variables: [
        { key: 'name', type: 'string' },
        { key: 'count', type: 'number' },
      ],
    });
    assert.equal(ok.error, null, JSON.stringify(ok.error));
  });

  test('an update that breaks the template keeps the version in use', async () => {
    const { data } = await resend.templates.create({ name: 'kept', subject: 'S', html: '<p>good</p>' });
    const res = await call('PATCH', `/v1/templates/${data!.id}`, { body: { html: '<p><%= oops(</p>' } });
    assert.equal(res.status, 422);
    assert.equal(res.body.name, 'template_invalid');
    const view = (await call('GET', `/v1/templates/${data!.id}`)).body;
    assert.equal(view.version, 1);
    assert.equal(view.html, '<p>good</p>');
  });

  test('bad input is refused field by field, as on /v1/emails', async () => {
    const res = await call('POST', '/v1/templates', {
      body: {
        name: 'a/b',
        subject: '',
        alias: 'x',
        from: 'a@example.com',
        html: 'x'.repeat(512 * 1024 + 1),
        variables: [{ key: '1bad', type: 'date' }],
      },
    });
    assert.equal(res.status, 422);
    assert.equal(res.body.name, 'validation_error');
    const fields = Object.fromEntries(
      res.body.errors.map((e: { field: string; message: string }) => [e.field, e.message]),
    );
    assert.match(fields.name, /must not contain/);
    assert.match(fields.subject, /must not be empty/);
    assert.match(fields.alias, /name is what a send names it by/);
    assert.match(fields.from, /a send gives its from/);
    assert.match(fields.html, /at most 524288 bytes/);
    assert.ok(fields['variables[0].key'] && fields['variables[0].type'], JSON.stringify(fields));

    const none = await call('POST', '/v1/templates', { body: { name: 'empty', subject: 'S' } });
    assert.deepEqual(none.body.errors, [{ field: 'html', message: 'html, text or both are required' }]);

    const sample = await call('POST', '/v1/templates', {
      body: { name: 'big', subject: 'S', text: 't', sample_data: { blob: 'x'.repeat(64 * 1024) } },
    });
    assert.equal(sample.status, 422);
    assert.match(sample.body.errors[0].message, /at most 65536 bytes as JSON/);

    const { error } = await resend.templates.create({ name: 'twice', subject: 'S', html: 'h' });
    assert.equal(error, null);
    const dup = await resend.templates.create({ name: 'twice', subject: 'S', html: 'h' });
    assert.equal(dup.error?.name, 'template_exists');
  });

  test('a key that may only read can list, read and preview, not change', async () => {
    const reader = new Resend(keys.acmeRead, { baseUrl: `${platform.url}/v1` });
    assert.equal((await reader.templates.list()).error, null);
    const refused = await reader.templates.create({ name: 'nope', subject: 'S', html: 'h' });
    assert.equal(refused.error?.name, 'restricted_api_key');
    const preview = await call('POST', '/v1/templates/welcome/render', {
      key: keys.acmeRead,
      body: { variables: { name: 'Ada', email: 'ada@example.org' } },
    });
    assert.equal(preview.status, 200);
  });
});

describe('the preview, in the sender’s sandbox', () => {
  test('renders subject, html and text with the variables given, or with the sample', async () => {
    const res = await call('POST', '/v1/templates/welcome/render', {
      body: { variables: { name: 'Grace', email: 'grace@example.org' } },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.object, 'rendered_template');
    assert.equal(res.body.subject, 'Welcome to Acme, Grace!');
    assert.match(res.body.html, /<h1>Welcome, Grace!<\/h1>/);
    assert.match(res.body.text, /Your account grace@example.org is ready/);

    const sample = await call('POST', '/v1/templates/welcome/render', {});
    assert.equal(sample.status, 200);
    assert.equal(
      sample.body.subject,
      'Welcome to Acme, Ada!',
      'a resource’s sample is not stored: its variables',
    );
  });

  test('a template that fails with these variables answers the part and the line', async () => {
    // The SDK sends no sample data: a request of its own, as a Template's spec.sampleData.
    const created = await call('POST', '/v1/templates', {
      body: {
        name: 'receipt',
        subject: 'Receipt',
        html: '<p>Thanks</p>\n<ul>\n<% for (const line of order.lines) { %><li><%= line %></li><% } %>\n</ul>',
        sample_data: { order: { lines: ['tea'] } },
      },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const data = created.body as { id: string };
    const res = await call('POST', `/v1/templates/${data.id}/render`, { body: { variables: { order: {} } } });
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.equal(res.body.name, 'template_render_failed');
    assert.equal(res.body.part, 'html');
    assert.equal(res.body.line, 3);

    const ok = await call('POST', `/v1/templates/${data.id}/render`, {
      body: { variables: { order: { lines: ['tea', 'cake'] } } },
    });
    assert.match(ok.body.html, /<li>tea<\/li><li>cake<\/li>/);
  });

  test('renders a stored version other than the current one', async () => {
    const { data } = await resend.templates.create({
      name: 'versioned',
      subject: 'v1',
      html: '<p>one</p>',
      text: 'one',
    });
    await resend.templates.update(data!.id, { subject: 'v2', text: 'two' });
    const old = await call('POST', `/v1/templates/${data!.id}/render`, { body: { version: 1 } });
    assert.deepEqual([old.body.version, old.body.subject, old.body.text], [1, 'v1', 'one']);
    const missing = await call('POST', `/v1/templates/${data!.id}/render`, { body: { version: 9 } });
    assert.equal(missing.status, 404);
  });
});

describe('Template resources and tenants', () => {
  test('a template declared as a resource is read-only: its resource is the source of truth', async () => {
    const updated = await resend.templates.update('welcome', { subject: 'Hacked' });
    assert.equal(updated.error?.name, 'template_read_only');
    assert.match(updated.error!.message, /Template resource default\/welcome/);
    const res = await call('DELETE', '/v1/templates/welcome');
    assert.equal(res.status, 403);
    assert.equal((await resend.templates.get('welcome')).data!.subject, 'Welcome to Acme, <%= name %>!');
  });

  test('a resource of the same name takes over a template made through the API', async () => {
    const { data } = await resend.templates.create({ name: 'adopted', subject: 'API', html: 'api' });
    await platform.apply([
      {
        kind: 'Template',
        metadata: { namespace: 'default', name: 'adopted' },
        spec: { tenantRef: { name: 'acme' }, subject: 'Resource', text: 'resource' },
      },
    ]);
    const view = (await call('GET', `/v1/templates/${data!.id}`)).body;
    assert.deepEqual([view.source, view.version, view.subject], ['resource', 2, 'Resource']);
    assert.equal((await resend.templates.remove(data!.id)).error?.name, 'template_read_only');
  });

  test('another tenant’s template is as absent as one that never existed', async () => {
    const { data } = await resend.templates.create({ name: 'private', subject: 'S', html: 'h' });
    const globex = new Resend(keys.globex, { baseUrl: `${platform.url}/v1` });
    assert.equal((await globex.templates.get(data!.id)).error?.name, 'not_found');
    assert.equal((await globex.templates.get('private')).error?.name, 'not_found');
    assert.equal((await globex.templates.get('welcome')).error?.name, 'not_found');
    assert.equal((await globex.templates.update(data!.id, { subject: 'x' })).error?.name, 'not_found');
    assert.equal((await globex.templates.remove(data!.id)).error?.name, 'not_found');
    assert.equal((await call('POST', `/v1/templates/${data!.id}/render`, { key: keys.globex })).status, 404);
    const theirs = (await globex.templates.list()).data!.data;
    assert.deepEqual(theirs, []);
    // And a send by globex cannot name it.
    const send = await call('POST', '/v1/emails', {
      key: keys.globex,
      body: { from: 'hello@globex.example', to: 'ada@example.org', template: { id: 'private' } },
    });
    assert.equal(send.status, 422);
  });

  test('each change is in the audit log, under the key that made it', async () => {
    const { data } = await resend.templates.create({ name: 'audited', subject: 'S', html: 'one' });
    await resend.templates.update(data!.id, { html: 'two' });
    await resend.templates.update(data!.id, { name: 'audited-renamed' });
    await resend.templates.remove(data!.id);
    const log = await call('GET', '/v1/audit-log?action=template.');
    const mine = log.body.data
      .filter((e: { target: string }) => e.target.startsWith('audited'))
      .map((e: { action: string; actor: string; detail: unknown }) => [e.action, e.actor])
      .reverse();
    assert.deepEqual(mine, [
      ['template.created', 'api_key:backend'],
      ['template.updated', 'api_key:backend'],
      ['template.renamed', 'api_key:backend'],
      ['template.deleted', 'api_key:backend'],
    ]);
  });
});

describe('sending with a template made through the API', () => {
  test('POST /v1/emails names it and the message arrives rendered', async () => {
    const { data, error } = await resend.templates.create({
      name: 'invoice',
      subject: 'Invoice <%= number %> for <%= name %>',
      html: '<p>Dear <%= name %>, invoice <%= number %> is attached.</p>',
      text: 'Dear <%= name %>, invoice <%= number %> is attached.',
    });
    assert.equal(error, null);
    const sent = await resend.emails.send({
      from: 'Acme <billing@example.com>',
      to: 'payer@example.org',
      template: { id: 'invoice', variables: { name: 'Ada', number: 42 } },
    });
    assert.equal(sent.error, null, JSON.stringify(sent.error));
    const message = await eventually('the rendered message in the inbox', async () =>
      inbox.messages().find((m) => m.envelope.to.includes('payer@example.org')),
    );
    assert.equal(message.subject, 'Invoice 42 for Ada');
    assert.match(message.raw, /Dear Ada, invoice 42 is attached\./);

    // An update changes the next email, by id as by name.
    await resend.templates.update(data!.id, { subject: 'Invoice <%= number %>, again' });
    await resend.emails.send({
      from: 'Acme <billing@example.com>',
      to: 'payer2@example.org',
      template: { id: data!.id, variables: { name: 'Ada', number: 43 } },
    });
    const second = await eventually('the second message', async () =>
      inbox.messages().find((m) => m.envelope.to.includes('payer2@example.org')),
    );
    assert.equal(second.subject, 'Invoice 43, again');
  });

  test('a variable an email leaves out renders with its declared fallback', async () => {
    const { error } = await resend.templates.create({
      name: 'greeting',
      subject: 'Hello <%= name %>',
      html: '<p>Hello <%= name %>, you have <%= count %> new messages.</p>',
      variables: [
        { key: 'name', type: 'string', fallbackValue: 'friend' },
        { key: 'count', type: 'number', fallbackValue: 0 },
      ],
    });
    assert.equal(error, null);
    const preview = await call('POST', '/v1/templates/greeting/render', {
      body: { variables: { count: 3 } },
    });
    assert.equal(preview.body.subject, 'Hello friend');
    const sent = await resend.emails.send({
      from: 'Acme <hello@example.com>',
      to: 'fallback@example.org',
      template: { id: 'greeting', variables: { count: 3 } },
    });
    assert.equal(sent.error, null, JSON.stringify(sent.error));
    const message = await eventually('the message in the inbox', async () =>
      inbox.messages().find((m) => m.envelope.to.includes('fallback@example.org')),
    );
    assert.equal(message.subject, 'Hello friend');
    assert.match(message.raw, /you have 3 new messages/);
  });
});
