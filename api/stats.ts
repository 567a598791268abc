// GET /v1/stats: how the tenant's mail fared, per hour or day, overall, per sending domain or per
// tag, read from the rollups every event updates (lib/db/stats.ts) — never by scanning messages,
// so it answers as fast for a billion messages as for ten. The query is StatsQuery and the answer
// api/schemas.ts's Stats, which the OpenAPI document describes.

import { Router } from 'express';
import { z } from 'zod';
import type { Db } from '../lib/db/index.js';
import { readStats, statRates, STAT_TYPES, type StatsRow, type StatType } from '../lib/db/stats.js';
import type { FieldError } from '../lib/problem.js';
import { principalOf, requireScope } from './auth.js';
import { parseRequest } from './requests.js';
import { parseDateTime } from './schemas-checks.js';
import { StatsGroup, StatsInterval, type Stats } from './schemas.js';

/** The default window: the last 7 days. */
const DEFAULT_DAYS = 7;
/** Longest window per interval, so that one answer stays a few thousand rows at most. */
const MAX_SPAN_DAYS: Record<Stats['interval'], number> = { hour: 31, day: 400 };
const DAY_MS = 86_400_000;
const NOT_RFC_3339 = 'must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z';

type Counts = Record<StatType, number>;

const instant = z
  .string({ error: NOT_RFC_3339 })
  .meta({ format: 'date-time' })
  .transform((value, ctx) => {
    const at = parseDateTime(value);
    if (typeof at === 'number') return new Date(at);
    ctx.addIssue({ code: 'custom', message: NOT_RFC_3339 });
    return z.NEVER;
  });

/** GET /v1/stats's query. Parameters it does not name are ignored. */
export const StatsQuery = z.object({
  from: instant
    .optional()
    .describe(`The window’s start, included; ${DEFAULT_DAYS} days before to when not given.`),
  to: instant.optional().describe('The window’s end, not included; now when not given.'),
  interval: z
    .enum(StatsInterval.options, { error: 'must be hour or day' })
    .optional()
    .describe(
      `hour or day (the default): a window spans at most ${MAX_SPAN_DAYS.hour} days by the hour, ` +
        `${MAX_SPAN_DAYS.day} by the day.`,
    ),
  group_by: z
    .enum(StatsGroup.options, { error: 'must be none, domain or tag' })
    .optional()
    .describe('none (the default), domain (the sending domain) or tag (name:value).'),
});

function parseQuery(query: unknown, now: Date) {
  const q = parseRequest(StatsQuery, query, {
    more: (q): FieldError[] => {
      const to = q.to ?? now;
      const from = q.from ?? new Date(to.getTime() - DEFAULT_DAYS * DAY_MS);
      const max = MAX_SPAN_DAYS[q.interval ?? 'day'];
      if (from >= to) return [{ field: 'from', message: 'must be before to' }];
      if (to.getTime() - from.getTime() > max * DAY_MS) {
        return [
          {
            field: 'from',
            message: `the window may span at most ${max} days at interval ${q.interval ?? 'day'}`,
          },
        ];
      }
      return [];
    },
  });
  const to = q.to ?? now;
  return {
    from: q.from ?? new Date(to.getTime() - DEFAULT_DAYS * DAY_MS),
    to,
    interval: q.interval ?? 'day',
    groupBy: q.group_by ?? 'none',
  };
}

export function statsRouter(db: Db): Router {
  const router = Router();
  router.get('/stats', requireScope('read'), async (req, res) => {
    const principal = principalOf(req);
    const q = parseQuery(req.query, new Date());
    const rows = await readStats(db, { tenantId: principal.tenantId, ...q });
    res.json(statsView(q, rows));
  });
  return router;
}

/** The window's totals and one entry per bucket (and group), each with its rates (lib/db/stats.ts STAT_RATES). */
export function statsView(
  q: { from: Date; to: Date; interval: Stats['interval']; groupBy: Stats['group_by'] },
  rows: StatsRow[],
): Stats {
  const totals = Object.fromEntries(STAT_TYPES.map((t) => [t, 0])) as Counts;
  for (const row of rows) for (const t of STAT_TYPES) totals[t] += row.counts[t];
  const groupKey = q.groupBy === 'domain' ? 'domain' : 'tag';
  return {
    object: 'stats',
    from: q.from.toISOString(),
    to: q.to.toISOString(),
    interval: q.interval,
    group_by: q.groupBy,
    totals: { ...totals, ...statRates(totals) },
    data: rows.map((row) => ({
      start: row.bucket.toISOString(),
      ...(row.group !== undefined ? { [groupKey]: row.group } : {}),
      ...row.counts,
      ...statRates(row.counts),
    })),
  };
}
