// GET /v1/stats against real parts: emails sent through the api and the sender, counted by the
// rollups each event updates, read back overall, per domain and per tag; tracked emails opened and
// clicked through the public tracking routes, by people and by machines, counted once per message
// as unique opens and clicks (also when two api replicas record a message's first opens at once),
// and the rates of it all.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { simpleParser } from 'mailparser';
import { startApi } from '../api/main.js';
import { openDatabase } from '../lib/db/index.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import type { Resource } from '../lib/resources.js';
import type { Sender } from '../sender/worker.js';
import { startInbox, type Inbox } from '../dev/inbox.js';
import { eventually } from './helpers/eventually.js';
import {
  sendingDomain,
  startTestPlatform,
  startTestSender,
  tenant,
  type TestPlatform,
} from './helpers/platform.js';

let platform: TestPlatform;
let inbox: Inbox;
let sender: Sender;
let key: string;

async function call(path: string, init: RequestInit = {}, apiKey = key) {
  const res = await fetch(`${platform.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const send = (to: string, tag: string) =>
  call('/v1/emails', {
    method: 'POST',
    body: JSON.stringify({
      from: 'hello@example.com',
      to,
      subject: 'Hi',
      text: 'hello',
      tags: [{ name: 'campaign', value: tag }],
    }),
  });

before(async () => {
  // The inbox answers 550 to a local part starting with `bounce`.
  inbox = await startInbox();
  platform = await startTestPlatform({
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${inbox.smtpPort}`,
    // The test stands in for the Ingress on loopback: it says which tracking host and client asked.
    MAILPLANE_TRUST_PROXY: 'loopback',
    // A person's click comes seconds after sending here, which the scanner window would take for
    // the receiving gateway's.
    MAILPLANE_TRACKING_SCAN_SECONDS: '0',
  });
  key = platform.keys.get('default/acme/backend')!;
  sender = await startTestSender(platform);
});
after(async () => {
  await sender?.stop();
  await platform?.close();
  await inbox?.close();
});

test('stats count what was sent, delivered and bounced, with rates, overall, per domain and per tag', async () => {
  assert.equal((await send('a@example.org', 'spring')).status, 202);
  assert.equal((await send('b@example.org', 'spring')).status, 202);
  assert.equal((await send('bounce-c@example.org', 'autumn')).status, 202);
  const totals = await eventually('three settled emails in the stats', async () => {
    const { body } = await call('/v1/stats');
    const t = body.totals as Record<string, number>;
    return t.delivered === 2 && t.bounced === 1 && t;
  });
  assert.equal(totals.sent, 3);
  assert.equal(totals.delivery_rate, 0.6667);
  assert.equal(totals.bounce_rate, 0.3333);
  assert.equal(totals.complaint_rate, 0);

  const byDomain = await call('/v1/stats?group_by=domain&interval=hour');
  const rows = byDomain.body.data as Record<string, unknown>[];
  assert.deepEqual(
    rows.map((r) => [r.domain, r.sent, r.delivered]),
    [['example.com', 3, 2]],
  );
  assert.match(String(rows[0]!.start), /:00:00\.000Z$/);

  const byTag = await call('/v1/stats?group_by=tag');
  const tags = Object.fromEntries(
    (byTag.body.data as Record<string, unknown>[]).map((r) => [r.tag, [r.delivered, r.bounced]]),
  );
  assert.deepEqual(tags, { 'campaign:autumn': [0, 1], 'campaign:spring': [2, 0] });
});

test('another tenant sees none of it, and a bad query is a 422 naming the parameter', async () => {
  await platform.apply([
    tenant('globex', [{ name: 'app', scopes: ['read'] }]),
    sendingDomain('globex-com', 'globex', 'globex.com'),
  ]);
  const other = await call('/v1/stats', {}, platform.keys.get('default/globex/app')!);
  assert.equal(other.status, 200);
  assert.equal((other.body.totals as Record<string, number>).sent, 0);
  // A share of nothing is no share: every rate is null, not 0.
  const { delivery_rate, bounce_rate, complaint_rate, unsubscribe_rate, open_rate, click_rate } = other.body
    .totals as Record<string, unknown>;
  assert.deepEqual(
    [delivery_rate, bounce_rate, complaint_rate, unsubscribe_rate, open_rate, click_rate],
    [null, null, null, null, null, null],
  );

  for (const [query, field] of [
    ['interval=week', 'interval'],
    ['group_by=planet', 'group_by'],
    ['from=yesterday', 'from'],
    ['from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z', 'from'],
  ] as const) {
    const res = await call(`/v1/stats?${query}`);
    assert.equal(res.status, 422, query);
    assert.equal((res.body.errors as { field: string }[])[0]!.field, field, query);
  }
});

describe('unique opens and clicks, and the rates of tracked mail', () => {
  const TRACKING_HOST = 'track.initech.example';
  const BROWSER =
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
  /** Apple Mail Privacy Protection fetching the pixel: Apple's network, a bare user agent. */
  const APPLE = { 'user-agent': 'Mozilla/5.0', 'x-forwarded-for': '17.58.101.12' };
  /** A link checker: its user agent gives it away. */
  const SCANNER = { 'user-agent': 'python-requests/2.32.3', 'x-forwarded-for': '198.51.100.20' };
  /** A person, each time from another address, so that no fetch is a repeat of the one before. */
  let people = 0;
  const person = () => ({ 'user-agent': BROWSER, 'x-forwarded-for': `203.0.113.${++people}` });
  let initech: string;

  const initechResources: Resource[] = [
    tenant('initech', [{ name: 'app', scopes: ['send', 'read'] }]),
    {
      kind: 'SendingDomain',
      metadata: { namespace: 'default', name: 'initech-example' },
      spec: {
        tenantRef: { name: 'initech' },
        domain: 'initech.example',
        dkim: { selector: 'mp1', algorithm: 'rsa-2048' },
        tracking: { domain: TRACKING_HOST, opens: true, clicks: true },
      },
    },
  ];

  const stats = async (query = '') =>
    (await call(`/v1/stats${query}`, {}, initech)).body as {
      totals: Record<string, number | null>;
      data: Record<string, unknown>[];
    };

  /** Sends one tracked email and answers its message id, its pixel and its one tracked link. */
  async function sendTracked(to: string) {
    const subject = `launch-${Math.random().toString(36).slice(2)}`;
    const res = await call(
      '/v1/emails',
      {
        method: 'POST',
        body: JSON.stringify({
          from: 'hello@initech.example',
          to,
          subject,
          html: '<p>Hi</p><p><a href="https://initech.example/launch">The launch</a></p>',
          tags: [{ name: 'campaign', value: 'launch' }],
        }),
      },
      initech,
    );
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const { id: messageId } = await platform.database.db
      .selectFrom('messages')
      .select('id')
      .where('email_id', '=', res.body.id as string)
      .executeTakeFirstOrThrow();
    if (to.startsWith('bounce')) return { messageId, pixel: '', link: '' };
    const raw = await eventually(
      `${subject} in the inbox`,
      async () => inbox.messages().find((m) => m.subject === subject)?.raw,
    );
    const html = String((await simpleParser(raw)).html);
    const pixel = /<img src="([^"]+)"/.exec(html)?.[1];
    const link = /href="(https:\/\/track\.initech\.example\/t\/c\/[^"]+)"/.exec(html)?.[1];
    assert.ok(pixel && link, html);
    return { messageId, pixel, link };
  }

  /** Fetches a tracked URL as the Ingress would hand it to the api (at `base`, another replica's). */
  async function fetchTracked(url: string, headers: Record<string, string>, base = platform.url) {
    const { pathname, host } = new URL(url);
    const res = await fetch(`${base}${pathname}`, {
      redirect: 'manual',
      headers: { 'x-forwarded-host': host, ...headers },
    });
    await res.arrayBuffer();
    return res.status;
  }

  /** Waits until `count` opens and clicks of the message are on its timeline. */
  const engagementsOf = (messageId: string, count: number) =>
    eventually(`${count} opens and clicks of ${messageId}`, async () => {
      const rows = await platform.database.db
        .selectFrom('events')
        .select('id')
        .where('message_id', '=', messageId)
        .where('type', 'in', ['opened', 'clicked'])
        .execute();
      return rows.length >= count && rows.length;
    });

  before(async () => {
    await platform.apply(initechResources);
    initech = platform.keys.get('default/initech/app')!;
  });

  test('repeated opens count once per message, a machine’s apart from a person’s, with every rate', async () => {
    // a: Apple's proxy fetches the pixel first, then a person opens it three times and clicks twice.
    // b: a person opens it once; only a link scanner follows its link.
    // c: only Apple's proxy opens it.  d: nobody.  bounce-e: bounced, never delivered.
    const [a, b, c, d] = await Promise.all(['a', 'b', 'c', 'd'].map((n) => sendTracked(`${n}@example.org`)));
    await sendTracked('bounce-e@example.org');
    await eventually('four delivered and one bounced', async () => {
      const t = (await stats()).totals;
      return t.delivered === 4 && t.bounced === 1;
    });
    assert.ok(d);

    assert.equal(await fetchTracked(a!.pixel, APPLE), 200);
    await engagementsOf(a!.messageId, 1);
    for (let i = 0; i < 3; i++) assert.equal(await fetchTracked(a!.pixel, person()), 200);
    for (let i = 0; i < 2; i++) assert.equal(await fetchTracked(a!.link, person()), 302);
    assert.equal(await fetchTracked(b!.pixel, person()), 200);
    assert.equal(await fetchTracked(b!.link, SCANNER), 302);
    assert.equal(await fetchTracked(c!.pixel, APPLE), 200);
    await engagementsOf(a!.messageId, 6);
    await engagementsOf(b!.messageId, 2);
    await engagementsOf(c!.messageId, 1);

    const { totals, data } = await stats();
    const pick = (t: Record<string, unknown>, keys: string[]) =>
      Object.fromEntries(keys.map((k) => [k, t[k]]));
    assert.deepEqual(
      pick(totals, [
        'sent',
        'delivered',
        'bounced',
        'opened',
        'machine_opened',
        'unique_opened',
        'unique_opened_any',
        'clicked',
        'machine_clicked',
        'unique_clicked',
        'unique_clicked_any',
      ]),
      {
        sent: 5,
        delivered: 4,
        bounced: 1,
        // Every open and click, as before: a's three and b's one.
        opened: 4,
        machine_opened: 2,
        // Messages: a and b opened by a person; c by Apple's proxy alone.
        unique_opened: 2,
        unique_opened_any: 3,
        clicked: 2,
        machine_clicked: 1,
        unique_clicked: 1,
        unique_clicked_any: 2,
      },
    );
    assert.deepEqual(
      pick(totals, [
        'delivery_rate',
        'bounce_rate',
        'complaint_rate',
        'unsubscribe_rate',
        'open_rate',
        'click_rate',
      ]),
      {
        delivery_rate: 0.8,
        bounce_rate: 0.2,
        complaint_rate: 0,
        unsubscribe_rate: 0,
        // Of the four delivered, a person opened two and clicked one.
        open_rate: 0.5,
        click_rate: 0.25,
      },
    );
    // Each bucket sums to the totals, and carries its own rates.
    const sum = (key: string) => data.reduce((n, row) => n + (row[key] as number), 0);
    assert.deepEqual(
      [sum('unique_opened'), sum('unique_opened_any'), sum('unique_clicked'), sum('unique_clicked_any')],
      [2, 3, 1, 2],
    );
    assert.ok(data.every((row) => 'open_rate' in row && 'click_rate' in row));

    // Per tag and per domain alike.
    const byTag = (await stats('?group_by=tag')).data.filter((r) => r.tag === 'campaign:launch');
    assert.deepEqual(
      ['unique_opened', 'unique_clicked'].map((k) => byTag.reduce((n, r) => n + (r[k] as number), 0)),
      [2, 1],
    );
    const byDomain = (await stats('?group_by=domain')).data.filter((r) => r.domain === 'initech.example');
    assert.equal(
      byDomain.reduce((n, r) => n + (r.unique_opened_any as number), 0),
      3,
    );

    // The message remembers its firsts: a machine opened a before a person did.
    const firsts = await platform.database.db
      .selectFrom('messages')
      .select(['id', 'first_open_at', 'first_human_open_at', 'first_click_at', 'first_human_click_at'])
      .where('id', 'in', [a!.messageId, b!.messageId, c!.messageId, d!.messageId])
      .execute();
    const of = (id: string) => firsts.find((f) => f.id === id)!;
    assert.ok(of(a!.messageId).first_open_at! < of(a!.messageId).first_human_open_at!);
    assert.ok(of(a!.messageId).first_human_click_at);
    assert.equal(of(b!.messageId).first_human_click_at, null);
    assert.ok(of(b!.messageId).first_click_at);
    assert.equal(of(c!.messageId).first_human_open_at, null);
    assert.deepEqual(Object.values(of(d!.messageId)).slice(1), [null, null, null, null]);
  });

  test('two api replicas recording the first opens of one message at once count it once', async () => {
    const { messageId, pixel } = await sendTracked('race@example.org');
    await eventually('delivered', async () => {
      const { status } = await platform.database.db
        .selectFrom('messages')
        .select('status')
        .where('id', '=', messageId)
        .executeTakeFirstOrThrow();
      return status === 'delivered';
    });
    const before = (await stats()).totals;

    // A second replica: its own api, recorder and connections, on the same database.
    const database = openDatabase(platform.config.databaseUrl, { max: 4 });
    const replica = await startApi({
      database,
      config: platform.config,
      log: silentLogger,
      metrics: createMetrics(),
    });
    // Both replicas' statements must meet at the message: while a transaction holds its row, each
    // writes its open and then waits for the row, having seen it unopened.
    const holder = await platform.database.pool.connect();
    try {
      await holder.query('begin');
      await holder.query('select id from messages where id = $1 for update', [messageId]);
      assert.equal(await fetchTracked(pixel, person()), 200);
      assert.equal(await fetchTracked(pixel, person(), replica.url), 200);
      await eventually('both replicas’ statements waiting on the message', async () => {
        // Asked outside the holder's transaction, which sees activity as it was when it began.
        const { rows } = await platform.database.pool.query<{ waiting: number }>(
          `select count(*)::int as waiting from pg_stat_activity
           where datname = current_database() and wait_event_type = 'Lock'`,
        );
        return rows[0]!.waiting >= 2;
      });
    } finally {
      // Committed or not, the row is let go before anything waits for the replica to finish.
      await holder.query('rollback');
      holder.release();
      await replica.close();
      await database.close();
    }
    await engagementsOf(messageId, 2);

    const totals = (await stats()).totals;
    assert.equal(totals.opened, (before.opened as number) + 2, 'both opens are on the timeline');
    assert.equal(totals.unique_opened, (before.unique_opened as number) + 1, 'the message counts once');
    assert.equal(totals.unique_opened_any, (before.unique_opened_any as number) + 1);
  });
});
