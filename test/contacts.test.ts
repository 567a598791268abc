// /v1/contacts, /v1/segments and the older /v1/audiences against real parts: the api on a fresh
// database, driven by the Resend SDK unchanged where it has a call for the route and by fetch
// where a test needs the status or the problem; the sender and a loopback SMTP sink for a real
// message whose List-Unsubscribe link and mailto address are then used, the mailto one through the
// real inbound listener. A second tenant (globex) proves that one tenant's contacts and segments
// are absent for another.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { sql } from 'kysely';
import { Resend } from 'resend';
import { headerValue } from '../dev/inbox.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import type { Sender } from '../sender/worker.js';
import { startInboundServer, type InboundServer } from '../smtp/inbound-server.js';
import { eventually } from './helpers/eventually.js';
import { startTestPlatform, startTestSender, tenant, type TestPlatform } from './helpers/platform.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const PUBLIC_URL = 'https://mail.mailplane.test';

let platform: TestPlatform;
let sink: SmtpSink;
let sender: Sender;
let inbound: InboundServer;
/** acme's key (send and read); globex's with both, and globex's read-only one. */
const keys = { acme: '', globex: '', globexRead: '' };
let resend: Resend;
let globex: Resend;

before(async () => {
  sink = await startSmtpSink();
  platform = await startTestPlatform({
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${sink.port}`,
    MAILPLANE_PUBLIC_URL: PUBLIC_URL,
    MAILPLANE_INBOUND_HOST: 'mx.mailplane.test',
  });
  await platform.apply([
    tenant('globex', [
      { name: 'backend', scopes: ['send', 'read'] },
      { name: 'dashboards', scopes: ['read'] },
    ]),
  ]);
  keys.acme = platform.keys.get('default/acme/backend')!;
  keys.globex = platform.keys.get('default/globex/backend')!;
  keys.globexRead = platform.keys.get('default/globex/dashboards')!;
  resend = new Resend(keys.acme, { baseUrl: `${platform.url}/v1` });
  globex = new Resend(keys.globex, { baseUrl: `${platform.url}/v1` });
  inbound = await startInboundServer(
    {
      db: platform.database.db,
      secretKey: platform.config.secretKey,
      log: silentLogger,
      registry: createMetrics().registry,
      hostname: 'inbound.test',
    },
    { port: 0, host: '127.0.0.1' },
  );
  sender = await startTestSender(platform);
});

after(async () => {
  await sender?.stop();
  await inbound?.close();
  await platform?.close();
  await sink?.close();
});

interface Answer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read member by member
  body: any;
  headers: Headers;
}

async function call(
  method: string,
  path: string,
  options: { key?: string; body?: unknown; raw?: string; type?: string } = {},
): Promise<Answer> {
  const body = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  const res = await fetch(`${platform.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${options.key ?? keys.acme}`,
      ...(body === undefined ? {} : { 'content-type': options.type ?? 'application/json' }),
    },
    body,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

/** What an SDK call answered, or a failure naming its error. */
function ok<T>(result: { data: T | null; error: unknown }): T {
  assert.equal(result.error, null, JSON.stringify(result.error));
  assert.ok(result.data);
  return result.data;
}

async function newContact(email: string, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await call('POST', '/v1/contacts', { body: { email, ...extra } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.id as string;
}

async function newSegment(name: string, client = resend): Promise<string> {
  return ok(await client.segments.create({ name })).id;
}

/** Every contact of a list, read a page of `limit` at a time with `after`. */
async function walk(
  list: (after: string | undefined) => Promise<{ has_more: boolean; data: { id: string }[] }>,
): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let after: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await list(after);
    pages++;
    ids.push(...page.data.map((c) => c.id));
    if (!page.has_more) return { ids, pages };
    after = page.data.at(-1)!.id;
  }
}

async function auditActions(target: string): Promise<string[]> {
  const rows = await platform.database.db
    .selectFrom('audit_log')
    .select(['action', 'actor'])
    .where('target', '=', target)
    .orderBy('id')
    .execute();
  return rows.map((r) => `${r.action} by ${r.actor}`);
}

describe('contacts through the Resend SDK', () => {
  test('create, get by id and by address in any case, update (properties merged, null removes one), list, and delete', async () => {
    const created = ok(
      await resend.contacts.create({
        email: 'Ada@Example.org',
        firstName: 'Ada',
        lastName: 'Lovelace',
        properties: { plan: 'pro', seats: 3, gone: null },
      }),
    );
    assert.equal(created.object, 'contact');
    assert.match(created.id, UUID);

    const byId = ok(await resend.contacts.get(created.id));
    assert.deepEqual(
      { ...byId, created_at: undefined, updated_at: undefined },
      {
        object: 'contact',
        id: created.id,
        email: 'ada@example.org',
        first_name: 'Ada',
        last_name: 'Lovelace',
        unsubscribed: false,
        properties: { plan: { type: 'string', value: 'pro' }, seats: { type: 'number', value: 3 } },
        created_at: undefined,
        updated_at: undefined,
      },
    );
    assert.ok(!Number.isNaN(Date.parse(byId.created_at)));
    const byEmail = ok(await resend.contacts.get({ email: 'ADA@example.ORG' }));
    assert.equal(byEmail.id, created.id);

    const updated = ok(
      await resend.contacts.update({
        email: 'ada@example.org',
        firstName: null,
        unsubscribed: true,
        properties: { seats: null, beta: true },
      }),
    );
    assert.deepEqual(updated, { object: 'contact', id: created.id });
    const after = ok(await resend.contacts.get({ id: created.id }));
    assert.equal(after.first_name, null);
    assert.equal(after.last_name, 'Lovelace', 'a member not given is left as it was');
    assert.equal(after.unsubscribed, true);
    assert.deepEqual(after.properties, {
      plan: { type: 'string', value: 'pro' },
      beta: { type: 'boolean', value: true },
    });

    const listed = ok(await resend.contacts.list());
    assert.equal(listed.object, 'list');
    const entry = listed.data.find((c) => c.id === created.id);
    assert.deepEqual(entry && { ...entry, created_at: undefined }, {
      id: created.id,
      email: 'ada@example.org',
      first_name: null,
      last_name: 'Lovelace',
      unsubscribed: true,
      created_at: undefined,
    });

    const removed = ok(await resend.contacts.remove({ email: 'ada@example.org' }));
    assert.deepEqual(removed, { object: 'contact', contact: created.id, deleted: true });
    const gone = await resend.contacts.get(created.id);
    assert.equal(gone.data, null);
    assert.equal((gone.error as { name: string }).name, 'not_found');
    assert.equal((await call('DELETE', `/v1/contacts/${created.id}`)).status, 404);

    assert.deepEqual(await auditActions('ada@example.org'), [
      'contact.created by api_key:backend',
      'contact.updated by api_key:backend',
      'contact.deleted by api_key:backend',
    ]);
  });

  test('a second contact for an address the tenant has is a 409 naming the contact there is, and changes nothing', async () => {
    const id = await newContact('twice@example.org', { first_name: 'First' });
    const again = await call('POST', '/v1/contacts', {
      body: { email: 'TWICE@example.org', first_name: 'Second' },
    });
    assert.equal(again.status, 409);
    assert.equal(again.body.type, 'https://mailplane.io/problems/contact-exists');
    assert.match(again.body.detail, new RegExp(id));
    const sdk = await resend.contacts.create({ email: 'twice@example.org' });
    assert.equal((sdk.error as { name: string }).name, 'contact_exists');
    assert.equal(ok(await resend.contacts.get(id)).first_name, 'First');
  });

  test('an international address is kept with its domain in A-labels, and found by either spelling', async () => {
    const id = await newContact('José@Bücher.example');
    const row = ok(await resend.contacts.get(id));
    assert.equal(row.email, 'josé@xn--bcher-kva.example');
    assert.equal(ok(await resend.contacts.get({ email: 'josé@bücher.example' })).id, id);
    const path = `/v1/contacts/${encodeURIComponent('JOSÉ@XN--BCHER-KVA.EXAMPLE')}`;
    assert.equal((await call('GET', path)).body.id, id);
  });

  test('the list pages forwards with after and back with before, in id order, every contact once', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await newContact(`page-${i}@paging.example`));
    const all = await walk(async (after) =>
      ok(await resend.contacts.list({ limit: 2, ...(after ? { after } : {}) })),
    );
    const mine = all.ids.filter((id) => ids.includes(id));
    assert.deepEqual(mine, [...ids].sort());
    assert.equal(new Set(all.ids).size, all.ids.length, 'no contact twice');
    assert.ok(all.pages >= 4);

    const sorted = [...ids].sort();
    const back = ok(await resend.contacts.list({ limit: 2, before: sorted[4]! }));
    assert.deepEqual(
      back.data.map((c) => c.id),
      all.ids.slice(all.ids.indexOf(sorted[4]!) - 2, all.ids.indexOf(sorted[4]!)),
    );
    assert.equal(back.has_more, all.ids.indexOf(sorted[4]!) > 2);

    // A cursor whose contact was deleted meanwhile still says where to go on from.
    await call('DELETE', `/v1/contacts/${sorted[2]}`);
    const next = ok(await resend.contacts.list({ limit: 1, after: sorted[2]! }));
    assert.equal(next.data[0]!.id, all.ids[all.ids.indexOf(sorted[2]!) + 1]);
  });
});

describe('segments and membership', () => {
  test('create, get, rename, list; contacts put in at create and one at a time, listed by segment, taken out, and the segments of a contact', async () => {
    const created = ok(await resend.segments.create({ name: 'Newsletter' }));
    assert.equal(created.object, 'segment');
    assert.equal(created.name, 'Newsletter');
    const other = await newSegment('Beta');
    const segment = created.id;
    assert.deepEqual(
      { ...ok(await resend.segments.get(segment)), created_at: undefined },
      { object: 'segment', id: segment, name: 'Newsletter', created_at: undefined },
    );
    assert.deepEqual(ok(await resend.segments.update(segment, { name: 'Weekly' })), {
      object: 'segment',
      id: segment,
    });
    assert.equal(ok(await resend.segments.get(segment)).name, 'Weekly');
    assert.ok(ok(await resend.segments.list()).data.some((s) => s.id === segment && s.name === 'Weekly'));

    const grace = ok(
      await resend.contacts.create({
        email: 'grace@example.org',
        segments: [{ id: segment }, { id: other }],
      }),
    ).id;
    const alan = await newContact('alan@example.org', { segments: [segment] });
    const edsger = await newContact('edsger@example.org');

    assert.deepEqual(
      ok(await resend.contacts.segments.add({ email: 'edsger@example.org', segmentId: segment })),
      {
        id: segment,
      },
    );
    // Adding twice is no error, and no second membership.
    ok(await resend.contacts.segments.add({ contactId: edsger, segmentId: segment }));

    const members = ok(await resend.contacts.list({ segmentId: segment }));
    assert.deepEqual(
      members.data.map((c) => c.id),
      [grace, alan, edsger].sort(),
    );
    assert.deepEqual(
      ok(await resend.contacts.list({ segmentId: other })).data.map((c) => c.email),
      ['grace@example.org'],
    );
    const paged = await walk(async (after) =>
      ok(await resend.contacts.list({ segmentId: segment, limit: 1, ...(after ? { after } : {}) })),
    );
    assert.deepEqual(paged.ids, [grace, alan, edsger].sort());

    const ofGrace = ok(await resend.contacts.segments.list({ email: 'grace@example.org' }));
    assert.deepEqual(ofGrace.data.map((s) => s.id).sort(), [segment, other].sort());

    const removed = ok(await resend.contacts.segments.remove({ contactId: alan, segmentId: segment }));
    assert.equal(removed.deleted, true);
    const again = ok(await resend.contacts.segments.remove({ contactId: alan, segmentId: segment }));
    assert.equal(again.deleted, false, 'it was not in the segment any more');
    assert.deepEqual(
      ok(await resend.contacts.list({ segmentId: segment })).data.map((c) => c.id),
      [grace, edsger].sort(),
    );

    // A segment deleted takes its memberships, never its contacts.
    assert.deepEqual(ok(await resend.segments.remove(other)), {
      object: 'segment',
      id: other,
      deleted: true,
    });
    assert.equal((await call('GET', `/v1/segments/${other}`)).status, 404);
    assert.deepEqual(
      ok(await resend.contacts.segments.list({ contactId: grace })).data.map((s) => s.id),
      [segment],
    );
    assert.equal(ok(await resend.contacts.get(grace)).email, 'grace@example.org');

    // A contact deleted leaves the segment.
    ok(await resend.contacts.remove(edsger));
    assert.deepEqual(
      ok(await resend.contacts.list({ segmentId: segment })).data.map((c) => c.id),
      [grace],
    );

    assert.deepEqual(await auditActions('grace@example.org'), [
      'contact.created by api_key:backend',
      'contact.segment_added by api_key:backend',
      'contact.segment_added by api_key:backend',
    ]);
    const segmentLines = await platform.database.db
      .selectFrom('audit_log')
      .select('action')
      .where('action', 'like', 'segment.%')
      .where(sql<boolean>`detail @> ${JSON.stringify({ id: segment })}::jsonb`)
      .orderBy('id')
      .execute();
    assert.deepEqual(
      segmentLines.map((r) => r.action),
      ['segment.created', 'segment.updated'],
    );
  });

  test('a create naming a segment the tenant does not have is a 422 naming it, and creates nothing', async () => {
    const segment = await newSegment('Real');
    const foreign = await newSegment('Globex only', globex);
    const res = await call('POST', '/v1/contacts', {
      body: { email: 'nobody-yet@example.org', segments: [segment, foreign] },
    });
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.deepEqual(res.body.errors, [{ field: 'segments[1]', message: 'names no segment of this tenant' }]);
    assert.equal((await call('GET', '/v1/contacts/nobody-yet@example.org')).status, 404);
  });

  test('the older audience paths: an audience is a segment, and its contacts are its members', async () => {
    const audience = await call('POST', '/v1/audiences', { body: { name: 'Customers' } });
    assert.equal(audience.status, 201);
    assert.deepEqual(
      { ...audience.body, id: undefined },
      { object: 'audience', id: undefined, name: 'Customers' },
    );
    const id = audience.body.id as string;
    assert.equal((await call('GET', `/v1/audiences/${id}`)).body.object, 'audience');
    assert.equal(ok(await resend.segments.get(id)).name, 'Customers', 'the same segment');
    assert.ok((await call('GET', '/v1/audiences')).body.data.some((a: { id: string }) => a.id === id));

    const contact = ok(
      await resend.contacts.create({ audienceId: id, email: 'linus@example.org', firstName: 'Linus' }),
    );
    assert.equal(
      ok(await resend.contacts.get({ audienceId: id, email: 'linus@example.org' })).first_name,
      'Linus',
    );
    ok(await resend.contacts.update({ audienceId: id, id: contact.id, lastName: 'Torvalds' }));
    assert.equal(ok(await resend.contacts.get(contact.id)).last_name, 'Torvalds');
    assert.deepEqual(
      ok(await resend.contacts.list({ audienceId: id })).data.map((c) => c.id),
      [contact.id],
    );

    // The tenant's contact of an address another audience holds joins this one; twice is a 409.
    const second = await call('POST', '/v1/audiences', { body: { name: 'Partners' } });
    const joined = ok(
      await resend.contacts.create({ audienceId: second.body.id, email: 'LINUS@example.org' }),
    );
    assert.equal(joined.id, contact.id);
    const twice = await call('POST', `/v1/audiences/${second.body.id}/contacts`, {
      body: { email: 'linus@example.org' },
    });
    assert.equal(twice.status, 409);
    assert.equal(twice.body.type, 'https://mailplane.io/problems/contact-exists');

    // Removing from an audience takes the contact out of it, not out of the tenant.
    assert.deepEqual(ok(await resend.contacts.remove({ audienceId: id, email: 'linus@example.org' })), {
      object: 'contact',
      contact: contact.id,
      deleted: true,
    });
    assert.equal((await call('GET', `/v1/audiences/${id}/contacts/linus@example.org`)).status, 404);
    assert.equal(ok(await resend.contacts.get(contact.id)).email, 'linus@example.org');

    assert.deepEqual((await call('DELETE', `/v1/audiences/${id}`)).body, {
      object: 'audience',
      id,
      deleted: true,
    });
    assert.equal((await call('GET', `/v1/audiences/${id}/contacts`)).status, 404);
  });
});

describe('tenant isolation', () => {
  test("another tenant's contacts and segments are as absent as ones that never existed, by id and by address", async () => {
    const contact = await newContact('private@example.org');
    const segment = await newSegment('Private');
    await call('POST', `/v1/contacts/${contact}/segments/${segment}`);

    for (const path of [
      `/v1/contacts/${contact}`,
      '/v1/contacts/private@example.org',
      `/v1/contacts/${contact}/segments`,
      `/v1/segments/${segment}`,
      `/v1/segments/${segment}/contacts`,
      `/v1/audiences/${segment}`,
      `/v1/audiences/${segment}/contacts`,
      `/v1/audiences/${segment}/contacts/${contact}`,
    ]) {
      const res = await call('GET', path, { key: keys.globex });
      assert.equal(res.status, 404, path);
      assert.equal(res.body.type, 'https://mailplane.io/problems/not-found');
    }
    assert.ok(!ok(await globex.contacts.list()).data.some((c) => c.id === contact));
    assert.ok(!ok(await globex.segments.list()).data.some((s) => s.id === segment));

    assert.equal(
      (await call('PATCH', `/v1/contacts/${contact}`, { key: keys.globex, body: { unsubscribed: true } }))
        .status,
      404,
    );
    assert.equal((await call('DELETE', `/v1/contacts/${contact}`, { key: keys.globex })).status, 404);
    assert.equal(
      (await call('PATCH', `/v1/segments/${segment}`, { key: keys.globex, body: { name: 'x' } })).status,
      404,
    );
    assert.equal((await call('DELETE', `/v1/segments/${segment}`, { key: keys.globex })).status, 404);

    // Globex's own contact cannot be put in acme's segment, nor acme's in globex's.
    const theirs = ok(await globex.contacts.create({ email: 'private@example.org' })).id;
    assert.notEqual(theirs, contact, 'the same address is a contact of each tenant apart');
    const theirSegment = await newSegment('Theirs', globex);
    assert.equal(
      (await call('POST', `/v1/contacts/${theirs}/segments/${segment}`, { key: keys.globex })).status,
      404,
    );
    assert.equal(
      (await call('POST', `/v1/contacts/${contact}/segments/${theirSegment}`, { key: keys.globex })).status,
      404,
    );
    assert.equal((await call('POST', `/v1/contacts/${contact}/segments/${theirSegment}`)).status, 404);

    const mine = ok(await resend.contacts.get(contact));
    assert.equal(mine.unsubscribed, false);
    assert.deepEqual(
      ok(await resend.contacts.list({ segmentId: segment })).data.map((c) => c.id),
      [contact],
    );
  });

  test('reading needs the read scope and changing the send scope', async () => {
    const res = await call('POST', '/v1/contacts', {
      key: keys.globexRead,
      body: { email: 'x@example.org' },
    });
    assert.equal(res.status, 403);
    assert.equal(res.body.type, 'https://mailplane.io/problems/restricted-api-key');
    assert.equal(
      (await call('POST', '/v1/segments', { key: keys.globexRead, body: { name: 'x' } })).status,
      403,
    );
    assert.equal((await call('GET', '/v1/contacts', { key: keys.globexRead })).status, 200);
    assert.equal((await call('GET', '/v1/contacts', { key: 'mp_live_nope' })).status, 401);
  });
});

describe('bad input', () => {
  test('each fault is a 4xx problem naming its field, never a 500', async () => {
    const cases: [string, string, unknown, string, string | RegExp][] = [
      ['POST', '/v1/contacts', {}, 'email', 'is required'],
      ['POST', '/v1/contacts', { email: 'not-an-address' }, 'email', /not an email address/],
      ['POST', '/v1/contacts', { email: 42 }, 'email', /must be a string/],
      ['POST', '/v1/contacts', { email: `${'a'.repeat(250)}@example.org` }, 'email', /at most 254/],
      ['POST', '/v1/contacts', { email: 'a\u0000b@example.org' }, 'email', /NUL/],
      [
        'POST',
        '/v1/contacts',
        { email: 'a@example.org', first_name: 'x'.repeat(300) },
        'first_name',
        /at most 256/,
      ],
      [
        'POST',
        '/v1/contacts',
        { email: 'a@example.org', first_name: 'Ada\r\nBcc: x' },
        'first_name',
        /one line/,
      ],
      [
        'POST',
        '/v1/contacts',
        { email: 'a@example.org', unsubscribed: 'yes' },
        'unsubscribed',
        /true or false/,
      ],
      ['POST', '/v1/contacts', { email: 'a@example.org', properties: [] }, 'properties', /object/],
      [
        'POST',
        '/v1/contacts',
        { email: 'a@example.org', properties: { 'bad key': 1 } },
        'properties.bad key',
        /letters/,
      ],
      [
        'POST',
        '/v1/contacts',
        { email: 'a@example.org', properties: { nested: { a: 1 } } },
        'properties.nested',
        /.+/,
      ],
      [
        'POST',
        '/v1/contacts',
        { email: 'a@example.org', properties: { v: 'x\u0000' } },
        'properties.v',
        /NUL/,
      ],
      [
        'POST',
        '/v1/contacts',
        {
          email: 'a@example.org',
          properties: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i])),
        },
        'properties',
        /at most 50/,
      ],
      ['POST', '/v1/contacts', { email: 'a@example.org', segments: ['nope'] }, 'segments[0]', /segment id/],
      ['POST', '/v1/contacts', { email: 'a@example.org', topics: [] }, 'topics', /not supported/],
      ['POST', '/v1/contacts', { email: 'a@example.org', firstName: 'Ada' }, 'firstName', /first_name/],
      ['POST', '/v1/contacts', { email: 'a@example.org', colour: 'blue' }, 'colour', /not a member/],
      ['PATCH', '/v1/contacts/a@example.org', { email: 'b@example.org' }, 'email', /cannot be changed/],
      ['POST', '/v1/segments', {}, 'name', 'is required'],
      ['POST', '/v1/segments', { name: '  ' }, 'name', /empty/],
      ['POST', '/v1/segments', { name: 'x'.repeat(257) }, 'name', /at most 256/],
      ['PATCH', `/v1/segments/${crypto.randomUUID()}`, { name: 7 }, 'name', /string/],
      ['GET', '/v1/contacts?limit=0', undefined, 'limit', /1 to 100/],
      ['GET', '/v1/contacts?after=nope', undefined, 'after', /contact id/],
      [
        'GET',
        `/v1/contacts?after=${crypto.randomUUID()}&before=${crypto.randomUUID()}`,
        undefined,
        'before',
        /after/,
      ],
      ['GET', '/v1/segments?colour=blue', undefined, 'colour', /not a member/],
    ];
    for (const [method, path, body, field, message] of cases) {
      const res = await call(method, path, body === undefined ? {} : { body });
      assert.equal(res.status, 422, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.type, 'https://mailplane.io/problems/validation-error');
      const fault = (res.body.errors as { field: string; message: string }[]).find((e) => e.field === field);
      assert.ok(fault, `${method} ${path}: ${field} in ${JSON.stringify(res.body.errors)}`);
      if (typeof message === 'string') assert.equal(fault.message, message);
      else assert.match(fault.message, message);
    }

    // A number JSON can write but no double can hold.
    const huge = await call('POST', '/v1/contacts', {
      raw: '{"email":"a@example.org","properties":{"n":1e400}}',
    });
    assert.equal(huge.status, 422);
    assert.deepEqual(huge.body.errors, [{ field: 'properties.n', message: 'must be a finite number' }]);

    const notJson = await call('POST', '/v1/contacts', { raw: '{"email":', type: 'application/json' });
    assert.equal(notJson.status, 400);
    const notAnObject = await call('POST', '/v1/contacts', { raw: '["a@example.org"]' });
    assert.equal(notAnObject.status, 422);
    const wrongType = await call('PATCH', '/v1/contacts/a@example.org', {
      raw: 'unsubscribed',
      type: 'text/plain',
    });
    assert.equal(wrongType.status, 415);
    for (const path of [
      '/v1/contacts/not-a-contact',
      '/v1/contacts/nobody@example.org',
      `/v1/contacts/${crypto.randomUUID()}`,
      '/v1/contacts/%40',
      '/v1/segments/not-a-segment',
      `/v1/segments/${crypto.randomUUID()}/contacts`,
    ]) {
      const res = await call('GET', path);
      assert.equal(res.status, 404, path);
    }
    assert.equal(
      (await call('POST', `/v1/contacts/nobody@example.org/segments/${crypto.randomUUID()}`)).status,
      404,
    );
    assert.equal((await call('POST', '/v1/contacts/nobody@example.org/segments/nope')).status, 404);
  });
});

describe('unsubscribes mark the contact', () => {
  /** Sends one email to `to` with List-Unsubscribe; answers the message as the sink received it. */
  async function deliver(to: string): Promise<string> {
    const res = await call('POST', '/v1/emails', {
      body: {
        from: 'Acme <hello@example.com>',
        to,
        subject: 'News',
        text: 'This week at Acme.',
        unsubscribe: true,
      },
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const message = await eventually(`mail to ${to}`, async () =>
      sink.messages().find((m) => m.envelope.to.includes(to)),
    );
    return message.raw;
  }

  function offers(raw: string): { url: string; mailto: string } {
    const value = headerValue(raw, 'list-unsubscribe');
    assert.ok(value, 'the message has a List-Unsubscribe field');
    const uris = [...value.matchAll(/<([^>]*)>/g)].map((m) => m[1]!.replace(/\s+/g, ''));
    const url = uris.find((u) => u.startsWith('https://'));
    const mailto = uris.find((u) => u.startsWith('mailto:'));
    assert.ok(url && mailto, value);
    return { url, mailto: mailto.slice('mailto:'.length).split('?')[0]! };
  }

  test("a one-click POST of a delivered message's link marks the tenant's contact of that address unsubscribed, and only that tenant's", async () => {
    const address = 'reader@example.org';
    const contact = await newContact('Reader@example.org');
    const theirs = ok(await globex.contacts.create({ email: address })).id;
    const { url } = offers(await deliver(address));
    assert.equal(ok(await resend.contacts.get(contact)).unsubscribed, false, 'sending changes nothing');

    const res = await fetch(`${platform.url}${new URL(url).pathname}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click',
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(ok(await resend.contacts.get(contact)).unsubscribed, true);
    assert.equal(
      ok(await globex.contacts.get(theirs)).unsubscribed,
      false,
      "another tenant's contact is its own",
    );
    const suppressed = await call('GET', `/v1/suppressions/${address}`);
    assert.equal(suppressed.body.reason, 'unsubscribe');
    assert.deepEqual(
      (await auditActions(address)).filter((line) => line.startsWith('contact.updated')),
      ['contact.updated by recipient:unsubscribe-link'],
    );
  });

  test('a mail to the mailto address, through the real inbound listener, marks the contact too', async () => {
    const address = 'mailto-reader@example.org';
    const contact = await newContact(address);
    const { mailto } = offers(await deliver(address));
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: inbound.port,
      secure: false,
      ignoreTLS: true,
    });
    try {
      await transport.sendMail({ from: address, to: mailto, subject: 'unsubscribe', text: 'unsubscribe' });
    } finally {
      transport.close();
    }
    await eventually(
      'the contact unsubscribed',
      async () => ok(await resend.contacts.get(contact)).unsubscribed,
    );
  });
});
