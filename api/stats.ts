// GET /v1/stats: how the tenant's mail fared, per hour or day, overall, per sending domain or per
// tag, read from the rollups every event updates (lib/db/stats.ts) — never by scanning messages,
// so it answers as fast for a billion messages as for ten.

import { Router } from 'express';
import type { Db } from '../lib/db/index.js';
import {
  readStats,
  STAT_TYPES,
  type StatsGroup,
  type StatsInterval,
  type StatType,
} from '../lib/db/stats.js';
import { Problem, type FieldError } from '../lib/problem.js';
import { principalOf, requireScope } from './auth.js';

/** The default window: the last 7 days. */
const DEFAULT_DAYS = 7;
/** Longest window per interval, so that one answer stays a few thousand rows at most. */
const MAX_SPAN_DAYS: Record<StatsInterval, number> = { hour: 31, day: 400 };
const DAY_MS = 86_400_000;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

type Counts = Record<StatType, number>;

/** Rates as Resend and ESPs report them: of what was sent, and complaints of what was delivered. */
function rates(c: Counts) {
  const ratio = (n: number, d: number) => (d > 0 ? Math.round((n / d) * 10_000) / 10_000 : 0);
  return {
    delivery_rate: ratio(c.delivered, c.sent),
    bounce_rate: ratio(c.bounced, c.sent),
    complaint_rate: ratio(c.complained, c.delivered),
  };
}

function parseQuery(query: Record<string, unknown>, now: Date) {
  const errors: FieldError[] = [];
  const time = (field: 'from' | 'to', fallback: Date): Date => {
    const raw = query[field];
    if (raw === undefined) return fallback;
    const when = typeof raw === 'string' && RFC3339.test(raw) ? new Date(raw) : new Date(NaN);
    if (Number.isNaN(when.getTime())) {
      errors.push({ field, message: 'must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z' });
      return fallback;
    }
    return when;
  };
  const interval = (query.interval ?? 'day') as StatsInterval;
  if (interval !== 'day' && interval !== 'hour')
    errors.push({ field: 'interval', message: 'must be hour or day' });
  const groupBy = (query.group_by ?? 'none') as StatsGroup;
  if (!['none', 'domain', 'tag'].includes(groupBy)) {
    errors.push({ field: 'group_by', message: 'must be none, domain or tag' });
  }
  const to = time('to', now);
  const from = time('from', new Date(to.getTime() - DEFAULT_DAYS * DAY_MS));
  if (errors.length === 0) {
    const max = MAX_SPAN_DAYS[interval];
    if (from >= to) errors.push({ field: 'from', message: 'must be before to' });
    else if (to.getTime() - from.getTime() > max * DAY_MS) {
      errors.push({
        field: 'from',
        message: `the window may span at most ${max} days at interval ${interval}`,
      });
    }
  }
  if (errors.length > 0) {
    throw new Problem(422, 'validation-error', `${errors[0]!.field}: ${errors[0]!.message}`, errors);
  }
  return { from, to, interval, groupBy };
}

export function statsRouter(db: Db): Router {
  const router = Router();
  router.get('/stats', requireScope('read'), async (req, res) => {
    const principal = principalOf(req);
    const q = parseQuery(req.query as Record<string, unknown>, new Date());
    const rows = await readStats(db, { tenantId: principal.tenantId, ...q });
    const totals = Object.fromEntries(STAT_TYPES.map((t) => [t, 0])) as Counts;
    for (const row of rows) for (const t of STAT_TYPES) totals[t] += row.counts[t];
    const groupKey = q.groupBy === 'domain' ? 'domain' : 'tag';
    res.json({
      object: 'stats',
      from: q.from.toISOString(),
      to: q.to.toISOString(),
      interval: q.interval,
      group_by: q.groupBy,
      totals: { ...totals, ...rates(totals) },
      data: rows.map((row) => ({
        start: row.bucket.toISOString(),
        ...(row.group !== undefined ? { [groupKey]: row.group } : {}),
        ...row.counts,
        ...rates(row.counts),
      })),
    });
  });
  return router;
}
