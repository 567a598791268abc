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
 * Opens a pool and a kysely instance over it.
 *
 *   const { db, pool, close } = openDatabase(config.databaseUrl, { max: 20 });
 */
export function openDatabase(connectionString: string, options: { max?: number } = {}): DatabaseHandle {
  const pool = new pg.Pool({ connectionString, max: options.max ?? 10 });
  // A client that loses its connection emits 'error', idle (on the pool) or checked out (on the
  // client); without a listener that kills the process. The query in flight fails and says why.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, pool, close: () => db.destroy() };
}

/**
 * Connections a process needs: one per concurrent sender job plus graphile-worker's own (its
 * listener and job fetches), and room for the api's grouped writes and reads.
 */
export function poolSize(config: { senderConcurrency: number }): number {
  return config.senderConcurrency + 8;
}
