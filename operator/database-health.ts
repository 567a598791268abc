// Whether Postgres answers, for the operator's /readyz and for knowing when it is back: every
// reconcile needs it, so while it is away the operator is not ready, and the moment it answers
// again every object is reconciled at once instead of at the next resync or after the work
// queue's backoff (which after a long outage reaches minutes).

import { sql } from 'kysely';
import type { Db } from '../lib/db/index.js';
import type { Logger } from '../lib/log.js';

/** Between checks while Postgres answers: a readiness probe period, give or take. */
const CHECK_INTERVAL_MS = 5_000;
/** Between checks while it does not: converging soon after it is back is the point. */
const DOWN_CHECK_INTERVAL_MS = 1_000;

export interface DatabaseHealth {
  /** Undefined while Postgres answers; otherwise what the last attempt said. */
  problem(): string | undefined;
  /** A reconcile found Postgres unreachable: not ready from now, and check again soon. */
  unavailable(err: unknown): void;
  close(): void;
}

/**
 * Checks Postgres on an interval and calls `onRecovered` when it answers again after failing.
 *
 *   const health = watchDatabase({ db, log, onRecovered: () => controller.requeueAll() });
 */
export function watchDatabase(options: { db: Db; log: Logger; onRecovered: () => void }): DatabaseHealth {
  const { db, log } = options;
  let problem: string | undefined;
  let closed = false;
  let checking = false;
  let timer: NodeJS.Timeout | undefined;

  const schedule = (ms: number) => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => void check(), ms);
    timer.unref();
  };
  const fail = (err: unknown) => {
    const was = problem;
    problem = `Postgres is unreachable: ${errorText(err)}`;
    if (was === undefined) log.warn('database unreachable', { error: problem });
  };
  const check = async () => {
    if (checking || closed) return;
    checking = true;
    try {
      await sql`select 1`.execute(db);
      if (problem !== undefined) {
        problem = undefined;
        log.info('database reachable again; reconciling everything');
        options.onRecovered();
      }
    } catch (err) {
      fail(err);
    } finally {
      checking = false;
      schedule(problem === undefined ? CHECK_INTERVAL_MS : DOWN_CHECK_INTERVAL_MS);
    }
  };
  void check();

  return {
    problem: () => problem,
    unavailable(err) {
      fail(err);
      schedule(DOWN_CHECK_INTERVAL_MS);
    },
    close() {
      closed = true;
      clearTimeout(timer);
    },
  };
}

/** A connection error's words: pg's message, or, for an AggregateError (IPv4 and IPv6), its first. */
export function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.message) return err.message;
  const first = (err as { errors?: unknown[] }).errors?.[0];
  if (first instanceof Error && first.message) return first.message;
  return (err as { code?: string }).code ?? err.name;
}
