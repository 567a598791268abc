// GET /v1/emails against a real Postgres: emails sent through the api, brought to every status by
// the real transitions and spread over six weeks, then listed page by page with each filter and
// held to what GET /v1/emails/:id says of each email; the resend SDK's emails.list paging them
// unchanged; a cursor that stays put while new emails arrive; and another tenant seeing none.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { Resend, type ListEmailsResponseSuccess } from 'resend';
import { listEmails, type EmailFilter } from '../lib/db/email-list.js';
import {
  bounceMessage,
  cancelEmail,
  claimMessage,
  defer,
  recordComplaint,
  settle,
} from '../lib/db/transitions.js';
import { sendingDomain, startTestPlatform, tenant, type TestPlatform } from './helpers/platform.js';

let platform: TestPlatform;
let key: string;
let otherKey: string;
let tenantId: string;

const HOUR = 3_600_000;
const ARCHIVE = 'Archive@Example.org';
const isArchive = (address: string) => address.toLowerCase() === ARCHIVE.toLowerCase();

interface Listed {
  id: string;
  from: string;
  to: string[];
  cc: string[];
  subject: string | null;
  tags: { name: string; value: string }[];
  created_at: string;
  last_event: string;
  message_id: string;
  status: string;
}
interface Page {
  object: 'list';
  has_more: boolean;
  data: Listed[];
}
/** What GET /v1/emails/:id says of an email: what each filter is held to. */
interface Truth {
  id: string;
  from: string;
  status: string;
  last_event: string;
  tags: { name: string; value: string }[];
  created_at: string;
  recipients: { address: string }[];
}

async function call(method: string, path: string, body?: unknown, apiKey = key) {
  const res = await fetch(platform.url + path, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function send(body: Record<string, unknown>, apiKey = key): Promise<string> {
  const res = await call('POST', '/v1/emails', { subject: 'Hello', text: 'Hi', ...body }, apiKey);
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.id as string;
}

/** Every id of a listing, page by page with `after`, checking each page's has_more. */
async function listAll(query: Record<string, string>, limit = 4, apiKey = key): Promise<string[]> {
  const ids: string[] = [];
  let after: string | undefined;
  for (;;) {
    const params = new URLSearchParams({ ...query, limit: String(limit), ...(after ? { after } : {}) });
    const res = await call('GET', `/v1/emails?${params}`, undefined, apiKey);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const page = res.body as unknown as Page;
    assert.ok(page.data.length <= limit);
    ids.push(...page.data.map((e) => e.id));
    if (!page.has_more) return ids;
    assert.equal(page.data.length, limit, 'a page with more after it is full');
    after = page.data.at(-1)!.id;
  }
}

/** The same listing read backwards from its end with `before`, turned to read newest first. */
async function listBackwards(query: Record<string, string>, last: string, limit = 3): Promise<string[]> {
  const ids: string[] = [last];
  let before = last;
  for (;;) {
    const params = new URLSearchParams({ ...query, limit: String(limit), before });
    const res = await call('GET', `/v1/emails?${params}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const page = res.body as unknown as Page;
    ids.unshift(...page.data.map((e) => e.id));
    if (!page.has_more) return ids;
    before = page.data[0]!.id;
  }
}

/** The tenant's emails newest first, as Postgres orders them (created_at to the microsecond, then id). */
async function newestFirst(): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    select id from emails where tenant_id = ${tenantId} order by created_at desc, id desc`.execute(
    platform.database.db,
  );
  return rows.map((r) => r.id);
}

async function truths(): Promise<Map<string, Truth>> {
  const out = new Map<string, Truth>();
  for (const id of await newestFirst())
    out.set(id, (await call('GET', `/v1/emails/${id}`)).body as unknown as Truth);
  return out;
}

async function messagesOf(emailId: string): Promise<{ id: string; recipient: string }[]> {
  return platform.database.db
    .selectFrom('messages')
    .select(['id', 'recipient'])
    .where('email_id', '=', emailId)
    .orderBy('recipient')
    .execute();
}

/** Moves an email and its messages back in time together, as if accepted then. */
async function backdate(emailId: string, at: Date): Promise<void> {
  const { db } = platform.database;
  await db.updateTable('emails').set({ created_at: at }).where('id', '=', emailId).execute();
  await db.updateTable('messages').set({ created_at: at }).where('email_id', '=', emailId).execute();
}

/** Brings an email's first recipient to `status` through the real transitions, any other recipient to delivered. */
async function bring(emailId: string, status: string): Promise<void> {
  const { db, pool } = platform.database;
  const [first, ...rest] = (await messagesOf(emailId)).sort(
    (a, b) => Number(isArchive(a.recipient)) - Number(isArchive(b.recipient)),
  );
  for (const m of rest) {
    await claimMessage(pool, m.id);
    await settle(pool, { messageId: m.id, status: 'delivered', detail: { attempt: 1 } });
  }
  const messageId = first!.id;
  if (status === 'canceled') {
    // Cancel takes every recipient not sent to yet; the others were delivered already.
    await cancelEmail(db, { emailId, tenantId });
    return;
  }
  if (status === 'queued') return;
  await claimMessage(pool, messageId);
  if (status === 'delivered') await settle(pool, { messageId, status: 'delivered', detail: { attempt: 1 } });
  if (status === 'failed') await settle(pool, { messageId, status: 'failed', detail: { attempt: 1 } });
  if (status === 'bounced') {
    await bounceMessage(db, {
      messageId,
      reply: '550 5.1.1 no such user',
      detail: { attempt: 1 },
      suppress: false,
    });
  }
  if (status === 'deferred') {
    await defer(db, { messageId, retryAt: new Date(Date.now() + HOUR), detail: { attempt: 1 } });
  }
}

const STATUSES = ['delivered', 'bounced', 'queued', 'sending', 'canceled', 'deferred', 'failed'];
let all: string[];
let truth: Map<string, Truth>;

before(async () => {
  platform = await startTestPlatform();
  await platform.apply([
    sendingDomain('acme-mail', 'acme', 'mail.example.com'),
    tenant('globex', [{ name: 'app', scopes: ['send', 'read'] }]),
    sendingDomain('globex-com', 'globex', 'globex.example'),
  ]);
  key = platform.keys.get('default/acme/backend')!;
  otherKey = platform.keys.get('default/globex/app')!;
  tenantId = (
    await platform.database.db
      .selectFrom('tenants')
      .select('id')
      .where('name', '=', 'acme')
      .executeTakeFirstOrThrow()
  ).id;

  // 21 emails, seven hours apart over six days, each status three times, from two domains, a
  // quarter of them copied to an archive address, tagged by category and one by order; and one
  // six weeks old, the only one of its campaign.
  const now = Date.now();
  for (let i = 0; i < 21; i++) {
    const id = await send({
      from: i % 3 === 0 ? 'Acme <news@mail.example.com>' : 'Acme <hello@example.com>',
      to: `user${i}@example.org`,
      ...(i % 4 === 0 ? { cc: ARCHIVE } : {}),
      tags: [
        { name: 'category', value: i % 2 === 0 ? 'welcome' : 'receipt' },
        ...(i === 5 ? [{ name: 'order', value: 'o5' }] : []),
      ],
    });
    await bring(id, STATUSES[i % STATUSES.length]!);
    await backdate(id, new Date(now - (i + 1) * 7 * HOUR));
  }
  const old = await send({
    from: 'hello@example.com',
    to: 'user99@example.org',
    tags: [{ name: 'campaign', value: 'old' }],
  });
  await bring(old, 'delivered');
  await backdate(old, new Date(now - 42 * 24 * HOUR));
  const complained = (await newestFirst())[0]!;
  const [message] = await messagesOf(complained);
  await recordComplaint(platform.database.db, { messageId: message!.id, feedbackType: 'abuse', detail: {} });
  // Another tenant's mail, to the same archive address with the same tags.
  await send(
    {
      from: 'ops@globex.example',
      to: 'user1@example.org',
      cc: ARCHIVE,
      tags: [{ name: 'category', value: 'welcome' }],
    },
    otherKey,
  );

  all = await newestFirst();
  truth = await truths();
});
after(async () => platform?.close());

const where = (keep: (t: Truth) => boolean) => all.filter((id) => keep(truth.get(id)!));
const domainOf = (from: string) => /@([^>]+)>?$/.exec(from)![1]!;

describe('listing', () => {
  test('a message carries its email’s created_at, the position every filter pages by', async () => {
    const id = await send({ from: 'hello@example.com', to: ['x1@example.org', 'x2@example.org'] });
    const { rows } = await sql<{ same: boolean }>`
      select bool_and(m.created_at = e.created_at) as same from messages m join emails e on e.id = m.email_id
      where e.id = ${id}`.execute(platform.database.db);
    assert.equal(rows[0]!.same, true);
    await platform.database.db.deleteFrom('messages').where('email_id', '=', id).execute();
    await platform.database.db.deleteFrom('emails').where('id', '=', id).execute();
  });

  test('without a filter: every email once, newest first, forwards with after and backwards with before', async () => {
    const forwards = await listAll({});
    assert.deepEqual(forwards, all);
    assert.deepEqual(await listBackwards({}, all.at(-1)!), all);
    const first = (await call('GET', '/v1/emails')).body as unknown as Page;
    assert.equal(first.data.length, 20, 'twenty by default');
    const item = first.data[0]!;
    assert.deepEqual(Object.keys(item).sort(), [
      'bcc',
      'cc',
      'created_at',
      'from',
      'id',
      'last_event',
      'message_id',
      'reply_to',
      'scheduled_at',
      'status',
      'subject',
      'tags',
      'to',
    ]);
    assert.equal(item.last_event, 'complained');
    const fromDomain = /@([^>]+)>?$/.exec(item.from)![1];
    assert.equal(item.message_id, `<${item.id}@${fromDomain}>`, 'the Message-ID its recipients see');
    assert.equal(item.status, truth.get(item.id)!.status);
  });

  test('each filter lists exactly the emails GET /v1/emails/:id says pass it, in order, on every page', async () => {
    const day = 24 * HOUR;
    const from = new Date(Date.now() - 3 * day).toISOString();
    const to = new Date(Date.now() - 1 * day).toISOString();
    const cases: [Record<string, string>, (t: Truth) => boolean][] = [
      ...STATUSES.map((status): [Record<string, string>, (t: Truth) => boolean] => [
        { status },
        (t) => t.status === status,
      ]),
      [{ status: 'suppressed' }, (t) => t.status === 'suppressed'],
      [{ recipient: 'archive@example.org' }, (t) => t.recipients.some((r) => isArchive(r.address))],
      [
        { recipient: 'USER3@example.org' },
        (t) => t.recipients.some((r) => r.address === 'user3@example.org'),
      ],
      [{ recipient: 'nobody@example.org' }, () => false],
      [
        { tag: 'category:welcome' },
        (t) => t.tags.some((g) => g.name === 'category' && g.value === 'welcome'),
      ],
      [{ tag: 'order:o5' }, (t) => t.tags.some((g) => g.name === 'order')],
      [{ tag: 'campaign:old' }, (t) => t.tags.some((g) => g.name === 'campaign')],
      [{ tag: 'category:none' }, () => false],
      [{ domain: 'mail.example.com' }, (t) => domainOf(t.from) === 'mail.example.com'],
      [{ domain: 'EXAMPLE.com' }, (t) => domainOf(t.from) === 'example.com'],
      [{ domain: 'globex.example' }, () => false],
      [{ from, to }, (t) => t.created_at >= from && t.created_at < to],
      [
        { status: 'delivered', domain: 'example.com' },
        (t) => t.status === 'delivered' && domainOf(t.from) === 'example.com',
      ],
      [
        { recipient: 'archive@example.org', status: 'bounced' },
        (t) => t.status === 'bounced' && t.recipients.some((r) => isArchive(r.address)),
      ],
      [
        { tag: 'category:welcome', status: 'delivered', from },
        (t) => t.status === 'delivered' && t.tags.some((g) => g.value === 'welcome') && t.created_at >= from,
      ],
      [
        { tag: 'category:receipt', recipient: 'archive@example.org' },
        (t) => t.tags.some((g) => g.value === 'receipt') && t.recipients.some((r) => isArchive(r.address)),
      ],
    ];
    for (const [query, keep] of cases) {
      const expected = where(keep);
      const label = new URLSearchParams(query).toString();
      assert.deepEqual(await listAll(query, 2), expected, label);
      if (expected.length > 0)
        assert.deepEqual(await listBackwards(query, expected.at(-1)!, 2), expected, label);
    }
    // Every status occurs, so that no case above passed by listing nothing.
    for (const status of STATUSES) assert.ok(where((t) => t.status === status).length > 0, status);
  });

  test('a tag with other filters, read in its spans of days whatever the counts, lists the same emails', async () => {
    const viaSpans = async (filter: EmailFilter) => {
      const ids: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await listEmails(
          platform.database.db,
          tenantId,
          filter,
          { limit: 2, ...(after ? { after } : {}) },
          { countCap: 0 },
        );
        ids.push(...page!.rows.map((r) => r.id));
        if (!page!.hasMore) return ids;
        after = ids.at(-1);
      }
    };
    const welcome = (t: Truth) => t.tags.some((g) => g.value === 'welcome');
    const cases: [EmailFilter, (t: Truth) => boolean][] = [
      [{ tag: 'category:welcome', status: 'delivered' }, (t) => welcome(t) && t.status === 'delivered'],
      [
        { tag: 'category:welcome', recipient: 'ARCHIVE@example.org' },
        (t) => welcome(t) && t.recipients.some((r) => isArchive(r.address)),
      ],
      [
        { tag: 'category:welcome', domain: 'mail.example.com' },
        (t) => welcome(t) && domainOf(t.from) === 'mail.example.com',
      ],
      [
        {
          tag: 'category:welcome',
          from: new Date(Date.now() - 3 * 24 * HOUR),
          to: new Date(Date.now() - 24 * HOUR),
        },
        (t) =>
          welcome(t) &&
          Date.parse(t.created_at) >= Date.now() - 3 * 24 * HOUR &&
          Date.parse(t.created_at) < Date.now() - 24 * HOUR,
      ],
    ];
    for (const [filter, keep] of cases) {
      const expected = where(keep);
      assert.ok(expected.length > 0, JSON.stringify(filter));
      assert.deepEqual(await viaSpans(filter), expected, JSON.stringify(filter));
    }
  });

  test('a cursor stays put while new emails arrive: the next page goes on where the last ended', async () => {
    const first = (await call('GET', '/v1/emails?limit=5')).body as unknown as Page;
    assert.deepEqual(
      first.data.map((e) => e.id),
      all.slice(0, 5),
    );
    const arrived = [
      await send({ from: 'hello@example.com', to: 'late1@example.org' }),
      await send({ from: 'hello@example.com', to: 'late2@example.org' }),
    ];
    const next = (await call('GET', `/v1/emails?limit=5&after=${first.data.at(-1)!.id}`))
      .body as unknown as Page;
    assert.deepEqual(
      next.data.map((e) => e.id),
      all.slice(5, 10),
    );
    // And what arrived is before the first page, newest first.
    const newer = (await call('GET', `/v1/emails?before=${first.data[0]!.id}`)).body as unknown as Page;
    assert.deepEqual(
      newer.data.map((e) => e.id),
      arrived.reverse(),
    );
    assert.equal(newer.has_more, false);
    for (const id of arrived) {
      await platform.database.db.deleteFrom('messages').where('email_id', '=', id).execute();
      await platform.database.db.deleteFrom('emails').where('id', '=', id).execute();
    }
  });

  test('a bad query is a 422 naming the parameter, and nothing is listed', async () => {
    for (const [query, field] of [
      ['status=lost', 'status'],
      ['limit=0', 'limit'],
      ['limit=101', 'limit'],
      ['after=42', 'after'],
      [`after=${all[0]}&before=${all[1]}`, 'before'],
      ['tag=category', 'tag'],
      ['recipient=ada', 'recipient'],
      ['domain=not a domain', 'domain'],
      ['from=yesterday', 'from'],
      ['from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z', 'to'],
      ['stauts=bounced', 'stauts'],
      ['after=00000000-0000-4000-8000-000000000000', 'after'],
    ] as const) {
      const res = await call('GET', `/v1/emails?${query}`);
      assert.equal(res.status, 422, query);
      assert.equal((res.body.errors as { field: string }[])[0]!.field, field, query);
    }
  });
});

describe('the resend SDK, unchanged', () => {
  test('emails.list pages every email with limit, after and before, and filters through the SDK’s own get', async () => {
    const resend = new Resend(key, { baseUrl: `${platform.url}/v1` });
    const ids: string[] = [];
    let after: string | undefined;
    for (;;) {
      const { data, error } = await resend.emails.list({ limit: 7, ...(after ? { after } : {}) });
      assert.equal(error, null, JSON.stringify(error));
      ids.push(...data!.data.map((e) => e.id));
      if (!data!.has_more) break;
      after = data!.data.at(-1)!.id;
    }
    assert.deepEqual(ids, all);
    const back = await resend.emails.list({ limit: 3, before: all[5]! });
    assert.deepEqual(
      back.data!.data.map((e) => e.id),
      all.slice(2, 5),
    );
    assert.equal(back.data!.data[0]!.subject, 'Hello');

    // emails.list sends only limit, after and before; a filter goes in the path of resend.get.
    const bounced = where((t) => t.status === 'bounced');
    const page = await resend.get<ListEmailsResponseSuccess>('/emails?status=bounced&limit=2');
    assert.equal(page.error, null);
    assert.deepEqual(
      page.data!.data.map((e) => e.id),
      bounced.slice(0, 2),
    );
    const rest = await resend.get<ListEmailsResponseSuccess>(`/emails?status=bounced&after=${bounced[1]}`);
    assert.deepEqual(
      rest.data!.data.map((e) => e.id),
      bounced.slice(2),
    );

    const refused = await resend.emails.list({ after: 'not-an-id' });
    assert.equal(refused.error?.name, 'validation_error');
    assert.match(refused.error!.message, /^after: /);
  });
});

describe('tenant isolation', () => {
  test('another tenant lists only its own emails, by any filter, and cannot page from ours', async () => {
    const theirs = (await call('GET', '/v1/emails?recipient=archive@example.org', undefined, otherKey))
      .body as unknown as Page;
    assert.equal(theirs.data.length, 1);
    assert.equal(domainOf(theirs.data[0]!.from), 'globex.example');
    const welcome = (await call('GET', '/v1/emails?tag=category:welcome&limit=100', undefined, otherKey))
      .body as unknown as Page;
    assert.deepEqual(
      welcome.data.map((e) => domainOf(e.from)),
      ['globex.example'],
    );
    const byOurDomain = (await call('GET', '/v1/emails?domain=example.com', undefined, otherKey))
      .body as unknown as Page;
    assert.deepEqual(byOurDomain.data, []);
    const fromOurs = await call('GET', `/v1/emails?after=${all[0]}`, undefined, otherKey);
    assert.equal(fromOurs.status, 422);
    assert.equal((fromOurs.body.errors as { field: string }[])[0]!.field, 'after');
    assert.ok(!(await listAll({}, 50)).includes(theirs.data[0]!.id));
  });
});
