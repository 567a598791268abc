// One pg Pool and one kysely instance per process; queries are plain functions taking `db`.

import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';

export type Db = Kysely<Database>;

export interface DatabaseHandle {
  db: Db;
  pool: pg.Pool;
  close(): Promise<void>;
}

/**
 * A connection that cannot be made within this fails the query that asked for it (and the api
 * answers 503) instead of waiting for ever; pg's default is no limit.
 */
const CONNECT_TIMEOUT_MS = 5_000;
/** Idle connections are closed after this, so that a quiet process holds few. */
const IDLE_TIMEOUT_MS = 30_000;

/**
 * Opens a pool and a kysely instance over it.
 *
 *   const { db, pool, close } = openDatabase(config.databaseUrl, { max: config.databasePoolSize });
 */
export function openDatabase(
  connectionString: string,
  options: {
    max?: number;
    statementTimeoutMs?: number;
    /** Names the connections (`mailplane-api`, …): pg_stat_activity and the audit log show it. */
    applicationName?: string;
  } = {},
): DatabaseHandle {
  const pool = new pg.Pool({
    connectionString,
    ...(options.applicationName ? { application_name: options.applicationName } : {}),
    max: options.max ?? 10,
    ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: IDLE_TIMEOUT_MS,
    // Finds a peer that vanished (a failed-over Postgres, a dropped NAT entry) on an idle connection.
    keepAlive: true,
  });
  // A client that loses its connection emits 'error', idle (on the pool) or checked out (on the
  // client); without a listener that kills the process. The query in flight fails and says why.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, pool, close: () => db.destroy() };
}

/**
 * SQLSTATEs and pg errors that mean Postgres cannot be reached or cannot take the query now (as
 * opposed to refusing it): connection failures (class 08), too many connections (53300), an
 * administrator or crash shutdown and recovery (57P01-57P03). pg's own connection timeout and a
 * connection dropped mid-query carry no code, only these messages.
 */
const UNAVAILABLE_CODES = new Set([
  '53300',
  '57P01',
  '57P02',
  '57P03',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
]);
const UNAVAILABLE_MESSAGES = [
  'timeout exceeded when trying to connect',
  'Connection terminated unexpectedly',
  'Connection terminated due to connection timeout',
  'Client has encountered a connection error and is not queryable',
];

/**
 * Whether an error says that Postgres is unreachable for now, so that a caller answers "try
 * again" (503, SMTP 451) rather than "failed".
 *
 *   if (isDatabaseUnavailable(err)) throw new Problem(503, …);
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { code, message, errors } = err as { code?: unknown; message?: unknown; errors?: unknown };
  if (typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) return true;
  if (typeof message === 'string' && UNAVAILABLE_MESSAGES.some((m) => message.includes(m))) return true;
  // An AggregateError (a refused connection to ::1 and 127.0.0.1 both) is unavailable if all are.
  return Array.isArray(errors) && errors.length > 0 && errors.every(isDatabaseUnavailable);
}
