// Statistics from the rollups that every event updates (lib/db/transitions.ts FOLLOW_UPS): counts
// per hour of sent, delivered, deferred, bounced, complained, failed, suppressed and canceled
// messages, and of opens and clicks (a person's apart from a machine's), per sending domain and per
// tag, and their rates. Reading never touches messages.

import { sql } from 'kysely';
import type { Db } from './index.js';

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
