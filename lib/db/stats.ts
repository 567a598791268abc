// Statistics from the rollups that every event updates (lib/db/transitions.ts FOLLOW_UPS): counts
// per hour of sent, delivered, deferred, bounced, complained, failed, suppressed and canceled
// messages, of opens and clicks (a person's apart from a machine's), and of the messages opened and
// clicked at least once (unique: counted at the first, by recordEngagements), per sending domain
// and per tag, and their rates. Reading never touches messages.

import { sql } from 'kysely';
import type { Db } from './index.js';
import { eventFields } from './event-fields.js';

/** Shards per counter row: more than the connections that write at once in a busy installation. */
export const STATS_SHARDS = 16;

/** What each counted event is called in statistics; `sending` counts once, as `sent`. */
export const STAT_TYPES = [
  'sent',
  'delivered',
  'deferred',
  'bounced',
  'complained',
  'failed',
  'suppressed',
  'canceled',
  'unsubscribed',
  'opened',
  'clicked',
  'machine_opened',
  'machine_clicked',
  // Messages, not events: each counted once, in the hour of its first open or click (a person's;
  // `_any`: a person's, a proxy's or a scanner's, whichever came first).
  'unique_opened',
  'unique_clicked',
  'unique_opened_any',
  'unique_clicked_any',
] as const;
export type StatType = (typeof STAT_TYPES)[number];

/**
 * The stat an `ev` row counts as, or null: for the statement that writes the event. An open or a
 * click a machine made (api/machine-fetch.ts) counts apart, as machine_opened or machine_clicked,
 * so that opened and clicked are people's.
 */
export const STAT_TYPE_SQL = `case ev.type when 'sending' then case when (ev.detail->>'attempt')::int = 1 then 'sent' end
      when 'opened' then case when (ev.detail->>'machine')::boolean then 'machine_opened' else 'opened' end
      when 'clicked' then case when (ev.detail->>'machine')::boolean then 'machine_clicked' else 'clicked' end
      when 'delayed' then null when 'scheduled' then null else ev.type end`;

/**
 * The rates GET /v1/stats answers with, each a count of another (null where that one is 0), as
 * ESPs report them: what became of what was sent, and what recipients did with what was delivered.
 * Opens and clicks are the unique ones, a person's: the share of delivered messages a person opened
 * or clicked, which neither a repeated open nor a proxy's fetch can raise.
 */
export const STAT_RATES = {
  delivery_rate: { of: 'delivered', per: 'sent' },
  bounce_rate: { of: 'bounced', per: 'sent' },
  complaint_rate: { of: 'complained', per: 'delivered' },
  unsubscribe_rate: { of: 'unsubscribed', per: 'delivered' },
  open_rate: { of: 'unique_opened', per: 'delivered' },
  click_rate: { of: 'unique_clicked', per: 'delivered' },
} as const satisfies Record<string, { of: StatType; per: StatType }>;
export type StatRate = keyof typeof STAT_RATES;

/**
 * Each rate of `counts`, to 4 decimal places; null where its denominator is 0, since a share of
 * nothing is not 0.
 *
 *   statRates({ ...counts, sent: 3, delivered: 2 }).delivery_rate   // 0.6667
 */
export function statRates(counts: Record<StatType, number>): Record<StatRate, number | null> {
  const rates = {} as Record<StatRate, number | null>;
  for (const [name, { of, per }] of Object.entries(STAT_RATES) as [
    StatRate,
    { of: StatType; per: StatType },
  ][]) {
    rates[name] = counts[per] > 0 ? Math.round((counts[of] / counts[per]) * 10_000) / 10_000 : null;
  }
  return rates;
}

/**
 * The CTEs `<name>_stats` and `<name>_tag_stats` that add the rows of `source` (tenant_id,
 * email_id, bucket: an hour, type: a StatType) to the rollups: for the email's sending domain and
 * for each of its tags, in the writing connection's shard. Every event's count goes through it
 * (lib/db/transitions.ts FOLLOW_UPS), and so do the unique opens and clicks, which are not one per
 * event; a CTE list to continue.
 *
 *   `${rollupInserts('unique', 'unique_counted')}`
 */
export function rollupInserts(name: string, source: string): string {
  return `${name}_stats as (
      insert into email_stats (tenant_id, bucket, domain_id, type, shard, count)
      select c.tenant_id, c.bucket, e.domain_id, c.type, pg_backend_pid() % ${STATS_SHARDS}, count(*)
      from ${source} c join emails e on e.id = c.email_id
      group by c.tenant_id, c.bucket, e.domain_id, c.type
      on conflict (tenant_id, bucket, domain_id, type, shard) do update set count = email_stats.count + excluded.count
    ), ${name}_tag_stats as (
      insert into email_tag_stats (tenant_id, bucket, tag, type, shard, count)
      select c.tenant_id, c.bucket, (t.tag->>'name') || ':' || (t.tag->>'value'), c.type, pg_backend_pid() % ${STATS_SHARDS}, count(*)
      from ${source} c join emails e on e.id = c.email_id
      cross join lateral jsonb_array_elements(coalesce(${eventFields('e')}->'tags', '[]'::jsonb)) as t(tag)
      group by 1, 2, 3, 4
      on conflict (tenant_id, bucket, tag, type, shard) do update set count = email_tag_stats.count + excluded.count
    )`;
}

export type StatsInterval = 'hour' | 'day';
export type StatsGroup = 'none' | 'domain' | 'tag';

export interface StatsQuery {
  tenantId: string;
  from: Date;
  to: Date;
  interval: StatsInterval;
  groupBy: StatsGroup;
}

export interface StatsRow {
  bucket: Date;
  /** The domain's name or the tag (`name:value`), when grouped. */
  group?: string;
  counts: Record<StatType, number>;
}

/**
 * Counts per interval in [from, to), summed over shards (and over domains or tags unless grouped).
 *
 *   await readStats(db, { tenantId, from, to, interval: 'day', groupBy: 'domain' });
 */
export async function readStats(db: Db, q: StatsQuery): Promise<StatsRow[]> {
  const bucket = sql.raw(`date_trunc('${q.interval === 'day' ? 'day' : 'hour'}', s.bucket, 'UTC')`);
  const source =
    q.groupBy === 'tag'
      ? sql`select s.bucket, s.type, s.count, s.tag as grp from email_tag_stats s
            where s.tenant_id = ${q.tenantId} and s.bucket >= ${q.from} and s.bucket < ${q.to}`
      : sql`select s.bucket, s.type, s.count, d.name as grp from email_stats s
            left join domains d on d.id = s.domain_id
            where s.tenant_id = ${q.tenantId} and s.bucket >= ${q.from} and s.bucket < ${q.to}`;
  const grouped = q.groupBy !== 'none';
  const { rows } = await sql<{ bucket: Date; grp: string | null; type: StatType; count: string }>`
    select ${bucket} as bucket, ${grouped ? sql`s.grp` : sql`null`} as grp, s.type, sum(s.count)::bigint as count
    from (${source}) s
    group by 1, 2, 3
    order by 1, 2`.execute(db);
  const byKey = new Map<string, StatsRow>();
  for (const row of rows) {
    const key = `${row.bucket.toISOString()}|${row.grp ?? ''}`;
    let entry = byKey.get(key);
    if (!entry) {
      entry = {
        bucket: row.bucket,
        ...(grouped ? { group: row.grp ?? '(deleted)' } : {}),
        counts: Object.fromEntries(STAT_TYPES.map((t) => [t, 0])) as Record<StatType, number>,
      };
      byKey.set(key, entry);
    }
    if ((STAT_TYPES as readonly string[]).includes(row.type)) entry.counts[row.type] = Number(row.count);
  }
  return [...byKey.values()];
}
