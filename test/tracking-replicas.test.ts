// Open and click tracking behind several api replicas: two apis on one database, each with its own
// pool and memory, as two pods behind a Service are. A link scanner's burst that the Service split
// between them is still a burst on both; the cap on stored events holds over both; and when
// Postgres cannot say what the others saw, each judges on its own view without holding anything up.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { createEngagementRecorder, type Fetched } from '../api/engagement-recorder.js';
import { loadMachineSignals } from '../api/machine-fetch.js';
import { startApi, type RunningApi } from '../api/main.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import type { Queryable } from '../lib/db/transitions.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics, type Metrics } from '../lib/metrics.js';
import { clickUrl, openUrl } from '../lib/tracking.js';
import { eventually } from './helpers/eventually.js';
import { startTestPlatform, type TestPlatform } from './helpers/platform.js';

const BROWSER =
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
const TRACKING_HOST = 'track.example.com';
/** Sent an hour ago: past the scanner window, so that only the burst can make a click a machine's. */
const AN_HOUR_AGO = () => Date.now() - 3600_000;
/**
 * Wider than the default, so that three fetches in a row fall in one window however busy the
 * machine; what is proved does not depend on the width.
 */
const BURST_SECONDS = '5';
/** Stored opens (and clicks) of one message per hour, small enough to reach in a test. */
const CAP = 4;

let platform: TestPlatform;
/** The second replica: its own pool, recorder and metrics, on the platform's database. */
let second: { api: RunningApi; database: DatabaseHandle; metrics: Metrics };
let replicas: { url: string; metrics: Metrics }[];

before(async () => {
  platform = await startTestPlatform({
    MAILPLANE_PUBLIC_URL: 'https://mail.example.com',
    // The test stands in for the Ingress controller on loopback, saying who asked and for which host.
    MAILPLANE_TRUST_PROXY: 'loopback',
    MAILPLANE_TRACKING_BURST_SECONDS: BURST_SECONDS,
    MAILPLANE_TRACKING_EVENTS_PER_HOUR: String(CAP),
  });
  const database = openDatabase(platform.config.databaseUrl, { max: 5 });
  const metrics = createMetrics();
  const api = await startApi({ database, config: platform.config, log: silentLogger, metrics });
  second = { api, database, metrics };
  replicas = [
    { url: platform.url, metrics: platform.metrics },
    { url: api.url, metrics },
  ];
});

after(async () => {
  await second?.api.close();
  await second?.database.close();
  await platform?.close();
});

/** Queued messages of the example tenant, one per id: the timelines the fetches land on. */
async function messages(n: number): Promise<string[]> {
  const key = platform.keys.get('default/acme/backend')!;
  const res = await fetch(`${platform.url}/v1/emails/batch`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(
      Array.from({ length: n }, (_, i) => ({
        from: 'hello@example.com',
        to: `replica-${i}@example.org`,
        subject: 'replicas',
        text: 'hello',
      })),
    ),
  });
  assert.equal(res.status, 202);
  const ids = ((await res.json()) as { data: { id: string }[] }).data.map((e) => e.id);
  const rows = await platform.database.db
    .selectFrom('messages')
    .select(['id', 'email_id'])
    .where('email_id', 'in', ids)
    .execute();
  return ids.map((emailId) => rows.find((r) => r.email_id === emailId)!.id);
}

/** Fetches a tracked URL from one replica, as the Ingress would hand it on. */
async function fetchAt(replica: { url: string }, tracked: string, ip: string): Promise<Response> {
  const { pathname, host } = new URL(tracked);
  return fetch(`${replica.url}${pathname}`, {
    redirect: 'manual',
    headers: { 'x-forwarded-host': host, 'x-forwarded-for': ip, 'user-agent': BROWSER },
  });
}

function click(id: string, link: string): string {
  return clickUrl(platform.config.secretKey, `https://${TRACKING_HOST}`, id, AN_HOUR_AGO(), link);
}

async function engagements(id: string, type: 'opened' | 'clicked') {
  return platform.database.db
    .selectFrom('events')
    .select('detail')
    .where('message_id', '=', id)
    .where('type', '=', type)
    .orderBy('id')
    .execute();
}

async function counted(metrics: Metrics[], name: 'trackingCapped' | 'trackingBurstLocal'): Promise<number> {
  let sum = 0;
  for (const m of metrics) for (const v of (await m[name].get()).values) sum += v.value;
  return sum;
}

describe('the burst signal over replicas', () => {
  test('a scanner’s clicks of every link, split by the Service between two replicas, are all-links-at-once on both', async () => {
    const [id] = await messages(1);
    const links = ['https://example.org/a', 'https://example.org/b', 'https://example.org/c'];
    // a and c to the first replica, b to the second: neither sees three links of its own.
    for (const [i, link] of links.entries()) {
      const res = await fetchAt(replicas[i % 2]!, click(id!, link), '198.51.100.60');
      assert.equal(res.status, 302);
      assert.equal(res.headers.get('location'), link);
    }
    const rows = await eventually('three clicks', async () => {
      const found = await engagements(id!, 'clicked');
      return found.length >= 3 && found;
    });
    assert.deepEqual(
      rows.map((r) => [r.detail.link, r.detail.machine, r.detail.machine_reason]).sort(),
      links.map((link) => [link, true, 'all-links-at-once']),
    );
  });

  test('two links of a message over two replicas are a person’s, and another message’s clicks meanwhile do not count', async () => {
    const [id, other] = await messages(2);
    assert.equal(
      (await fetchAt(replicas[0]!, click(id!, 'https://example.org/x'), '203.0.113.61')).status,
      302,
    );
    assert.equal(
      (await fetchAt(replicas[1]!, click(other!, 'https://example.org/o1'), '203.0.113.62')).status,
      302,
    );
    assert.equal(
      (await fetchAt(replicas[1]!, click(other!, 'https://example.org/o2'), '203.0.113.62')).status,
      302,
    );
    assert.equal(
      (await fetchAt(replicas[1]!, click(id!, 'https://example.org/y'), '203.0.113.61')).status,
      302,
    );
    const rows = await eventually('two clicks', async () => {
      const found = await engagements(id!, 'clicked');
      return found.length >= 2 && found;
    });
    assert.deepEqual(rows.map((r) => [r.detail.link, r.detail.machine]).sort(), [
      ['https://example.org/x', false],
      ['https://example.org/y', false],
    ]);
  });
});

describe('the cap on stored opens and clicks', () => {
  test(`a token replayed from many clients through both replicas stores ${CAP} opens in the hour, counts the rest, and leaves clicks their own cap`, async () => {
    const hour = async () =>
      String(
        (await sql<{ h: Date }>`select date_trunc('hour', now()) as h`.execute(platform.database.db)).rows[0]!
          .h,
      );
    // The cap is per clock hour: a run that straddles the hour's turn starts a new count midway,
    // so it is run again on a fresh message (twice in a row cannot both straddle).
    for (let attempt = 1; ; attempt++) {
      const started = await hour();
      const [id] = await messages(1);
      const cappedBefore = await counted(
        replicas.map((r) => r.metrics),
        'trackingCapped',
      );
      const opens = openUrl(platform.config.secretKey, `https://${TRACKING_HOST}`, id!, AN_HOUR_AGO());
      const fetches = 7;
      for (let i = 0; i < fetches; i++) {
        // Each from its own client, so that none is the repeat of another.
        const res = await fetchAt(replicas[i % 2]!, opens, `198.51.100.${70 + i}`);
        assert.equal(res.status, 200, 'the pixel is served whatever is stored');
      }
      const clicked = await fetchAt(replicas[1]!, click(id!, 'https://example.org/after'), '203.0.113.80');
      assert.equal(clicked.status, 302);
      // The capped ones are counted before the others are written: once both add up, all are in.
      const [stored, capped] = await eventually('every open stored or counted as capped', async () => {
        const rows = await engagements(id!, 'opened');
        const c =
          (await counted(
            replicas.map((r) => r.metrics),
            'trackingCapped',
          )) - cappedBefore;
        return rows.length + c >= fetches && ([rows.length, c] as const);
      });
      const clicks = await eventually('the click', async () => {
        const rows = await engagements(id!, 'clicked');
        return rows.length > 0 && rows;
      });
      if ((await hour()) !== started && attempt === 1) continue;
      assert.equal(stored, CAP);
      assert.equal(capped, fetches - CAP);
      assert.equal(clicks.length, 1);
      const count = await platform.database.db
        .selectFrom('engagement_counts')
        .select('fetches')
        .where('message_id', '=', id!)
        .where('type', '=', 'opened')
        .executeTakeFirstOrThrow();
      assert.equal(Number(count.fetches), fetches, 'the count is of every fetch, over both replicas');
      return;
    }
  });
});

describe('when Postgres cannot say what the other replicas saw', () => {
  /** Clicks of every link at one instant: they come due together, in one read of recent_clicks. */
  const burst = (id: string, links: string[], at = Date.now()): Fetched[] =>
    links.map((link) => ({
      kind: 'click',
      messageId: id,
      sentAt: AN_HOUR_AGO(),
      at,
      link,
      method: 'GET',
      ip: '198.51.100.90',
      userAgent: BROWSER,
    }));

  /** The platform's pool, but the read of recent_clicks does as `read` says. */
  const poolWhoseRead = (read: () => Promise<never>): Queryable => ({
    query: ((config: unknown, values?: unknown) => {
      if (typeof config === 'object' && (config as { name?: string }).name === 'mailplane_links_around') {
        return read();
      }
      return platform.database.pool.query(config as string, values as unknown[]);
    }) as Queryable['query'],
  });

  for (const c of [
    { what: 'does not answer', reason: 'timeout', read: () => new Promise<never>(() => {}) },
    { what: 'refuses', reason: 'error', read: () => Promise.reject(new Error('the database is going down')) },
  ]) {
    test(`when the read ${c.what}, a burst on one replica is still judged on its own view, and counted as ${c.reason}`, async () => {
      const [id] = await messages(1);
      const metrics = createMetrics();
      const recorder = createEngagementRecorder({
        pool: poolWhoseRead(c.read),
        signals: loadMachineSignals(),
        tunables: { scanSeconds: 5, burstLinks: 3, burstSeconds: 1 },
        log: silentLogger,
        metrics,
      });
      try {
        // record() answers at once whatever Postgres does: the routes never wait on it.
        for (const f of burst(id!, [
          'https://example.org/p',
          'https://example.org/q',
          'https://example.org/r',
        ])) {
          recorder.record(f);
        }
        const rows = await eventually('the burst written', async () => {
          const found = await engagements(id!, 'clicked');
          return found.length >= 3 && found;
        });
        assert.deepEqual(
          rows.map((r) => r.detail.machine_reason),
          ['all-links-at-once', 'all-links-at-once', 'all-links-at-once'],
        );
        const local = (await metrics.trackingBurstLocal.get()).values;
        assert.deepEqual(
          local.map((v) => [v.labels.reason, v.value]),
          [[c.reason, 3]],
        );
      } finally {
        await recorder.close();
      }
    });
  }
});

describe('the shared tables stay small', () => {
  test('clicks older than a few windows and counts of past hours are deleted as replicas record', async () => {
    const [id, old] = await messages(2);
    const db = platform.database.db;
    await db
      .insertInto('recent_clicks')
      .values({ message_id: old!, link_hash: '1', at: new Date(Date.now() - 3600_000) })
      .execute();
    await db
      .insertInto('engagement_counts')
      .values({
        message_id: old!,
        type: 'opened',
        hour: sql<Date>`date_trunc('hour', now()) - interval '1 hour'`,
        fetches: 9,
      })
      .execute();
    const recorder = createEngagementRecorder({
      pool: platform.database.pool,
      signals: loadMachineSignals(),
      tunables: { scanSeconds: 5, burstLinks: 3, burstSeconds: 1, eventsPerHour: CAP },
      log: silentLogger,
    });
    try {
      recorder.record({
        kind: 'click',
        messageId: id!,
        sentAt: AN_HOUR_AGO(),
        at: Date.now(),
        link: 'https://example.org/kept',
        method: 'GET',
        ip: '203.0.113.95',
        userAgent: BROWSER,
      });
      await eventually('the old rows gone, the new click kept', async () => {
        const clicks = await db.selectFrom('recent_clicks').select('message_id').execute();
        const counts = await db.selectFrom('engagement_counts').select('message_id').execute();
        const ids = [...clicks, ...counts].map((r) => r.message_id);
        return !ids.includes(old!) && ids.includes(id!);
      });
    } finally {
      await recorder.close();
    }
  });
});
