// `mailplane apply --dry-run`: the real reconcile functions on a database handle that can write
// nothing that lasts. Every statement runs on one connection inside one transaction, which is
// rolled back at the end, so the reconcile functions read and decide exactly as an apply would
// (a Tenant created first is found by its SendingDomain) and whatever they write is undone.
// The transactions they open themselves become savepoints inside that one.
//
// No rehearsed write can escape: the connection is taken once, BEGIN is its first statement, and
// a connection lost midway takes its transaction with it (Postgres rolls back what a gone client
// left open). What a dry run prints is the other half: see the key store in ./cli.ts.

import {
  CompiledQuery,
  Kysely,
  PostgresDialect,
  type DatabaseConnection,
  type Dialect,
  type Driver,
} from 'kysely';
import pg from 'pg';
import type { Db } from '../db/index.js';
import type { Database } from '../db/schema.js';

/** The same bound as lib/db's pool: an unreachable Postgres fails the dry run, not hangs it. */
const CONNECT_TIMEOUT_MS = 5_000;

export interface Rehearsal {
  db: Db;
  /** Rolls everything back and closes the connection. */
  close(): Promise<void>;
}

/**
 * Opens a handle whose every write is rolled back on close().
 *
 *   const rehearsal = openRehearsal(config.databaseUrl);
 *   try { await applyResources({ db: rehearsal.db, … }, resources); } finally { await rehearsal.close(); }
 */
export function openRehearsal(connectionString: string): Rehearsal {
  const pool = new pg.Pool({ connectionString, max: 1, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  pool.on('error', () => {});
  const base = new PostgresDialect({ pool });
  const dialect: Dialect = {
    createAdapter: () => base.createAdapter(),
    createDriver: () => new RehearsalDriver(base.createDriver()),
    createIntrospector: (db) => base.createIntrospector(db),
    createQueryCompiler: () => base.createQueryCompiler(),
  };
  const db = new Kysely<Database>({ dialect });
  return { db, close: () => db.destroy() };
}

class RehearsalDriver implements Driver {
  #connection: DatabaseConnection | undefined;
  /** Open savepoints, innermost last. */
  #depth = 0;

  constructor(private readonly inner: Driver) {}

  async init(): Promise<void> {
    await this.inner.init();
    const connection = await this.inner.acquireConnection();
    await connection.executeQuery(CompiledQuery.raw('begin'));
    this.#connection = connection;
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    return this.#connection!;
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    this.#depth += 1;
    await connection.executeQuery(CompiledQuery.raw(`savepoint rehearsal_${this.#depth}`));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`release savepoint rehearsal_${this.#depth}`));
    this.#depth -= 1;
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`rollback to savepoint rehearsal_${this.#depth}`));
    this.#depth -= 1;
  }

  async releaseConnection(): Promise<void> {
    // The one connection stays taken until destroy().
  }

  async destroy(): Promise<void> {
    const connection = this.#connection;
    this.#connection = undefined;
    if (connection) {
      await connection.executeQuery(CompiledQuery.raw('rollback')).catch(() => {});
      await this.inner.releaseConnection(connection);
    }
    await this.inner.destroy();
  }
}
