// The shared memory of the api replicas' tracking (migration 2026-12-02T09-00-recent-clicks): the
// clicks of the last seconds, which the burst signal (`all-links-at-once`) is judged on across
// replicas, and the hourly count of each message's opens and clicks, which the cap on stored events
// is held to. Each is a grouped statement, one for as many clicks as a flush has, named, since the
// api runs them many times a second under a scanner's burst (api/engagement-recorder.ts).

import { hash } from 'node:crypto';
import type { Queryable } from './transitions.js';

/** A click as the other replicas need it: which message, which link (as a digest), when. */
export interface SharedClick {
  messageId: string;
  /** linkHash(link). */
  linkHash: string;
  /** When it came, ms, by the clock of the replica that served it. */
  at: number;
}

/**
 * A link's digest as recent_clicks keeps it: the first 64 bits of its SHA-256, as the decimal a
 * bigint is written in. A link may be kilobytes long; two links of one message colliding in 64
 * bits is beyond any burst.
 *
 *   linkHash('https://example.org/a') // '-5354483293844772436'
 */
export function linkHash(link: string): string {
  return hash('sha256', link, 'buffer').readBigInt64BE(0).toString();
}

const REMEMBER = {
  name: 'mailplane_remember_clicks',
  text: `insert into recent_clicks (message_id, link_hash, at)
    select * from unnest($1::uuid[], $2::bigint[], $3::timestamptz[])`,
};

/**
 * Writes clicks where every replica sees them.
 *
 *   await rememberClicks(pool, [{ messageId, linkHash: linkHash(url), at: Date.now() }]);
 */
export async function rememberClicks(pool: Queryable, clicks: readonly SharedClick[]): Promise<void> {
  if (clicks.length === 0) return;
  await pool.query({
    ...REMEMBER,
    values: [
      clicks.map((c) => c.messageId),
      clicks.map((c) => c.linkHash),
      clicks.map((c) => new Date(c.at).toISOString()),
    ],
  });
}

const AROUND = {
  name: 'mailplane_links_around',
  text: `
    select i.n::int as n,
      (array_agg(distinct r.link_hash) filter (where r.link_hash is not null))[1:$4::int] as links
    from unnest($1::uuid[], $2::timestamptz[]) with ordinality as i(message_id, at, n)
    left join recent_clicks r on r.message_id = i.message_id
      and r.at between i.at - make_interval(secs => $3::float8 / 1000) and i.at + make_interval(secs => $3::float8 / 1000)
    group by i.n`,
};

/**
 * For each click, the digests of the links of its message that any replica saw clicked within
 * `windowMs` either side of it (its own included, once written), in the order given: up to
 * `enough` of them, since past the burst threshold more say nothing more.
 *
 *   const [links] = await linksAround(pool, [{ messageId, at }], { windowMs: 2000, enough: 3 });
 *   links.length // 3: a scanner's
 */
export async function linksAround(
  pool: Queryable,
  clicks: readonly Pick<SharedClick, 'messageId' | 'at'>[],
  options: { windowMs: number; enough: number },
): Promise<string[][]> {
  if (clicks.length === 0) return [];
  const { rows } = await pool.query<{ n: number; links: string[] | null }>({
    ...AROUND,
    values: [
      clicks.map((c) => c.messageId),
      clicks.map((c) => new Date(c.at).toISOString()),
      options.windowMs,
      options.enough,
    ],
  });
  const found: string[][] = clicks.map(() => []);
  for (const row of rows) found[row.n - 1] = row.links ?? [];
  return found;
}

const PRUNE_CLICKS = {
  name: 'mailplane_prune_recent_clicks',
  text: `delete from recent_clicks where at < $1::timestamptz`,
};

/**
 * Forgets clicks that came before `before` (ms): no burst judged from now on reaches back to them.
 * `before` is by the pruning replica's clock and `at` by the clocks of the replicas that served
 * the clicks; a keep of several windows leaves room for their skew, which NTP holds to milliseconds.
 *
 *   await pruneRecentClicks(pool, Date.now() - 10_000);
 */
export async function pruneRecentClicks(pool: Queryable, before: number): Promise<number> {
  const { rowCount } = await pool.query({ ...PRUNE_CLICKS, values: [new Date(before).toISOString()] });
  return rowCount ?? 0;
}

/** Opens and clicks of one message of one kind, arrived together. */
export interface EngagementTally {
  messageId: string;
  type: 'opened' | 'clicked';
  /** How many arrived. */
  fetches: number;
}

/*
 * The counts of the hour are kept by Postgres's clock, not each replica's. In (message, type)
 * order: two replicas adding to the same rows lock them in the same order and never deadlock. The
 * row lock of the upsert orders them too, so that each sees what the other added before it.
 */
const COUNT = {
  name: 'mailplane_count_engagements',
  text: `
    with input as (
      select * from unnest($1::uuid[], $2::text[], $3::bigint[]) as i(message_id, type, fetches)
    ), counted as (
      insert into engagement_counts as c (message_id, type, hour, fetches)
      select message_id, type, date_trunc('hour', now()), fetches from input order by message_id, type
      on conflict (message_id, type, hour) do update set fetches = c.fetches + excluded.fetches
      returning message_id, type, fetches
    )
    select message_id, type, fetches from counted`,
};

/**
 * Adds `tallies` to the hour's counts and answers, for each in the order given, how many of its
 * fetches fit under `cap` — the cap is counted over every replica's fetches, so that a token
 * replayed through the whole Service stores no more than through one replica. Each (message,
 * type) at most once in `tallies`.
 *
 *   const [stored] = await countEngagements(pool, [{ messageId, type: 'opened', fetches: 3 }], 200);
 */
export async function countEngagements(
  pool: Queryable,
  tallies: readonly EngagementTally[],
  cap: number,
): Promise<number[]> {
  if (tallies.length === 0) return [];
  const { rows } = await pool.query<{ message_id: string; type: string; fetches: string }>({
    ...COUNT,
    values: [tallies.map((t) => t.messageId), tallies.map((t) => t.type), tallies.map((t) => t.fetches)],
  });
  const totals = new Map(rows.map((r) => [`${r.message_id} ${r.type}`, Number(r.fetches)]));
  return tallies.map((t) => {
    const total = totals.get(`${t.messageId.toLowerCase()} ${t.type}`) ?? t.fetches;
    // What was counted before these, and what of the cap it left.
    const before = total - t.fetches;
    return Math.max(0, Math.min(t.fetches, cap - before));
  });
}

const PRUNE_COUNTS = {
  name: 'mailplane_prune_engagement_counts',
  text: `delete from engagement_counts where hour < date_trunc('hour', now())`,
};

/**
 * Forgets the counts of past hours.
 *
 *   await pruneEngagementCounts(pool);
 */
export async function pruneEngagementCounts(pool: Queryable): Promise<number> {
  const { rowCount } = await pool.query(PRUNE_COUNTS);
  return rowCount ?? 0;
}
