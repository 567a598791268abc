// Crash recovery in seconds. graphile-worker locks the jobs a worker pool fetches (up to its
// concurrency plus its local queue) and frees a crashed pool's locks only after 4 hours; its Pro
// edition adds heartbeats for this, the open-source one does not. So each sender beats a row in
// sender_heartbeats for its pool, and every sender sweeps: a pool whose beat is older than
// STALE_AFTER_MS is dead, its row is deleted and its jobs unlocked
// (graphile_worker.force_unlock_workers), so that a live sender runs them at its next fetch.
//
// Two rules keep a sweep from taking the jobs of a pool that is alive:
// - a sender sweeps only once its own beats have succeeded for a whole STALE_AFTER_MS, so that
//   after a Postgres outage, when every beat is old, nobody declares the others dead before they
//   had the time to beat again;
// - a pool that finds its own row gone was declared dead by a peer that could reach Postgres while
//   it could not, and its jobs may already run elsewhere: it reports itself lost (the sender
//   exits and is restarted) instead of finishing them a second time.
//
// A job unlocked this way runs again, so a message its dead sender had already handed to the
// receiving server is sent a second time, with the same Message-ID: delivery is at least once,
// and at most one extra time per crash.

import { hostname } from 'node:os';
import type { Queryable } from '../lib/db/transitions.js';
import type { Logger } from '../lib/log.js';

/** How often a pool beats and sweeps. */
export const BEAT_INTERVAL_MS = 5_000;
/**
 * A beat older than this means the pool is dead: four missed beats, so that a loaded event loop
 * or a slow query does not kill a live one, and short enough that a dead pool's jobs run again
 * within about half a minute (this, plus one interval for the sweep, plus a fetch).
 */
export const STALE_AFTER_MS = 20_000;

export interface Heartbeat {
  /** Resolves after the first beat is written; rejects if Postgres cannot be reached. */
  started: Promise<void>;
  /** When a beat last succeeded (ms since the epoch). */
  lastBeatAt(): number;
  /** Stops beating and deletes the row: a clean stop leaves nothing for a peer to sweep. */
  close(): Promise<void>;
}

export interface HeartbeatOptions {
  pool: Queryable;
  /** graphile-worker's pool id: the `locked_by` of the jobs this pool holds. */
  workerId: string;
  log: Logger;
  /** Called once if a peer declared this pool dead (its row is gone). */
  onLost: (reason: string) => void;
  /** Called after a sweep took jobs from dead pools. */
  onRecovered?: (workers: string[], jobs: number) => void;
  intervalMs?: number;
  staleAfterMs?: number;
}

const BEAT = `update sender_heartbeats set beat_at = now() where worker_id = $1`;
const REGISTER = `insert into sender_heartbeats (worker_id, host) values ($1, $2)
  on conflict (worker_id) do update set beat_at = now()`;

/**
 * One statement: delete the stale rows, find the pools holding locks that have no row at all (a
 * sender that died before its first beat, or ran a version without heartbeats) and whose locks are
 * as old as a stale beat, count their jobs, and unlock them. The count reads the statement's
 * snapshot, taken before the function's update.
 */
const SWEEP = `
  with dead as (
    delete from sender_heartbeats where beat_at < now() - $1 * interval '1 millisecond'
    returning worker_id
  ), orphaned as (
    select distinct j.locked_by as worker_id from graphile_worker.jobs j
    where j.locked_by is not null and j.locked_at < now() - $1 * interval '1 millisecond'
      and not exists (select 1 from sender_heartbeats h where h.worker_id = j.locked_by)
  ), swept as (
    select array(select worker_id from dead union select worker_id from orphaned) as ids
  )
  select ids,
         (select count(*)::int from graphile_worker.jobs j where j.locked_by = any(swept.ids)) as jobs,
         graphile_worker.force_unlock_workers(ids)
  from swept where cardinality(ids) > 0`;

/**
 * Starts beating for `workerId` and sweeping dead pools.
 *
 *   const heartbeat = startHeartbeat({ pool, workerId: workerPool.id, log, onLost: (why) => fail(why) });
 *   await heartbeat.started;
 *   …
 *   await heartbeat.close();
 */
export function startHeartbeat(options: HeartbeatOptions): Heartbeat {
  const { pool, workerId, log } = options;
  const intervalMs = options.intervalMs ?? BEAT_INTERVAL_MS;
  const staleAfterMs = options.staleAfterMs ?? STALE_AFTER_MS;
  let lastBeatAt = 0;
  /** Since when every beat has succeeded; 0 after a failure. */
  let healthySince = 0;
  let lost = false;
  let closed = false;
  let running: Promise<void> = Promise.resolve();

  const beat = async (): Promise<void> => {
    try {
      const { rowCount } = await pool.query(BEAT, [workerId]);
      if (rowCount === 0) {
        lost = true;
        options.onLost('a peer declared this sender dead (its heartbeat row is gone) and took its jobs');
        return;
      }
      lastBeatAt = Date.now();
      healthySince ||= lastBeatAt;
    } catch (err) {
      healthySince = 0;
      log.warn('heartbeat failed', { err: err as Error });
      return;
    }
    if (lastBeatAt - healthySince < staleAfterMs) return;
    try {
      const { rows } = await pool.query<{ ids: string[]; jobs: number }>(SWEEP, [staleAfterMs]);
      const swept = rows[0];
      if (swept) {
        log.warn('took over the jobs of senders that stopped beating', {
          workers: swept.ids,
          jobs: swept.jobs,
        });
        options.onRecovered?.(swept.ids, swept.jobs);
      }
    } catch (err) {
      log.warn('sweep for dead senders failed', { err: err as Error });
    }
  };

  const started = pool.query(REGISTER, [workerId, hostname()]).then(() => {
    lastBeatAt = healthySince = Date.now();
  });
  const timer = setInterval(() => {
    if (closed || lost) return;
    // One beat at a time: a slow one is not stacked behind by the next.
    running = running.then(beat);
  }, intervalMs);
  timer.unref();

  return {
    started,
    lastBeatAt: () => lastBeatAt,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      await running;
      await pool.query('delete from sender_heartbeats where worker_id = $1', [workerId]).catch(() => {});
    },
  };
}
