// The first steps every process's main.ts takes: read the configuration, open the logger and the
// database, bring the schema up to date and check the installation's secret key. What follows
// (starting the work, probes, shutdown) is each process's own.

import { readConfig, type Config } from './config.js';
import { isDatabaseUnavailable, openDatabase, type DatabaseHandle } from './db/index.js';
import { migrate } from './db/migrate.js';
import { verifySecretKey } from './installation.js';
import { createLogger, type Level, type Logger } from './log.js';
import { createRenderer, type Renderer } from './render/sandbox.js';
import { UserError } from './user-error.js';

export interface Runtime {
  config: Readonly<Config>;
  log: Logger;
  database: DatabaseHandle;
}

/**
 * Opens what a process needs; throws a UserError (printed without a stack trace) for a wrong
 * setting, an unreachable database or a wrong secret key.
 *
 *   const { config, log, database } = await openRuntime('sender', process.env);
 */
export async function openRuntime(
  component: string,
  env: Record<string, string | undefined>,
  options: {
    logLevel?: Level;
    /** A server-side limit on every statement of the process's pool (not of its migrations). */
    statementTimeoutMs?: number;
  } = {},
): Promise<Runtime> {
  const config = readConfig(env);
  const log = createLogger({ level: options.logLevel ?? config.logLevel }).child({ component });
  const database = openDatabase(config.databaseUrl, {
    max: config.databasePoolSize,
    statementTimeoutMs: options.statementTimeoutMs,
    applicationName: `mailplane-${component}`,
  });
  // A migration may run longer than any request should: it gets connections of its own.
  const setup = options.statementTimeoutMs
    ? openDatabase(config.databaseUrl, { max: 2, applicationName: `mailplane-${component}` })
    : database;
  try {
    await migrate(setup.db, setup.pool, log);
    await verifySecretKey(setup.db, config.secretKey);
    if (setup !== database) await setup.close();
  } catch (err) {
    if (setup !== database) await setup.close().catch(() => {});
    await database.close().catch(() => {});
    if (isDatabaseUnavailable(err)) {
      throw new UserError(
        `cannot reach Postgres at DATABASE_URL (${redact(config.databaseUrl)}): ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    throw err;
  }
  return { config, log, database };
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

/**
 * The template sandbox as the configuration sets it: one place, so that the sender, the operator,
 * `apply` and `dev` render alike.
 *
 *   const renderer = templateRenderer(config);
 */
export function templateRenderer(config: Readonly<Config>): Renderer {
  return createRenderer({
    timeoutMs: config.renderTimeoutMs,
    memoryMb: config.renderMemoryMb,
    isolates: config.renderIsolates,
    // A render's output is part of the message: no larger than the message may be.
    maxOutputBytes: config.maxMessageBytes,
  });
}

/** `mailplane migrate`: what every process does at start-up, and nothing else. */
export async function migrateCommand(env: Record<string, string | undefined>): Promise<number> {
  const { log, database } = await openRuntime('migrate', env);
  log.info('database is up to date');
  await database.close();
  return 0;
}
