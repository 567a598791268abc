// `make dev` as a newcomer's first run meets it: as root in a private directory (a clone in /root,
// mode 700, which the `postgres` user cannot enter), a taken port, Ctrl-C in the terminal, a
// second start the next day, and starting over by deleting the state directory.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './helpers/free-port.js';

const isRoot = process.getuid?.() === 0;
/** A fresh initdb and the first compile by tsx take a while on a busy machine. */
const BANNER_TIMEOUT_MS = 120_000;

interface Banner {
  api: string;
  key: string;
  inbox: string;
  database: string;
  /** The line saying where the data went, when not in the state directory. */
  moved?: string;
}

interface Dev {
  child: ChildProcess;
  output(): string;
  banner: Promise<Banner>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Ctrl-C as a terminal sends it: SIGINT to the whole process group. */
  interrupt(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let privateDir: string;
let stateDir: string;
const running = new Set<Dev>();
const movedDirs = new Set<string>();

function startDev(env: Record<string, string> = {}): Dev {
  const base = { ...process.env };
  for (const key of [
    'DATABASE_URL',
    'MAILPLANE_RELAY_URL',
    'MAILPLANE_SECRET_KEY',
    'MAILPLANE_DEV_MANIFESTS',
  ]) {
    delete base[key];
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'cmd/mailplane.ts', 'dev'], {
    env: {
      ...base,
      MAILPLANE_DEV_DIR: stateDir,
      PORT: '0',
      MAILPLANE_INBOX_PORT: '0',
      MAILPLANE_INBOX_SMTP_PORT: '0',
      MAILPLANE_SUBMISSION_PORT: '0',
      MAILPLANE_SUBMISSIONS_PORT: '0',
      LOG_LEVEL: 'info',
      ...env,
    },
    // A process group of its own, as a shell gives a foreground job.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = once(child, 'exit').then(() => ({ code: child.exitCode, signal: child.signalCode }));
  const banner = new Promise<Banner>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner in time:\n${out}`)), BANNER_TIMEOUT_MS);
    const look = () => {
      if (!/^Ctrl-C stops everything\.$/m.test(out)) return;
      clearTimeout(timer);
      const line = (name: string) => new RegExp(`^${name}: (\\S+)`, 'm').exec(out)?.[1];
      resolve({
        api: line('API')!,
        key: line('API key')!,
        inbox: line('Inbox')!,
        database: line('Database')!,
        ...(/^Postgres data: .*$/m.test(out) ? { moved: /^Postgres data: .*$/m.exec(out)![0] } : {}),
      });
    };
    child.stdout!.on('data', look);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`mailplane dev exited with ${code} before its banner:\n${out}`));
    });
  });
  banner.catch(() => {});
  const dev: Dev = {
    child,
    output: () => out,
    banner,
    exited,
    interrupt: async () => {
      process.kill(-child.pid!, 'SIGINT');
      return exited;
    },
  };
  running.add(dev);
  void exited.then(() => running.delete(dev));
  return dev;
}

/** JSON log lines at error level, and anything that looks like a stack trace. */
function troubles(output: string): string[] {
  const errors = output
    .split('\n')
    .filter((line) => line.startsWith('{') && (JSON.parse(line) as { level?: string }).level === 'error');
  return [...errors, ...(/\n\s+at /.test(output) ? ['a stack trace'] : [])];
}

async function status(url: string, key: string): Promise<number> {
  return (await fetch(`${url}/v1/domains`, { headers: { authorization: `Bearer ${key}` } })).status;
}

function databasePort(banner: Banner): number {
  return Number(new URL(banner.database).port);
}

async function accepts(host: string, port: number): Promise<boolean> {
  const socket = connect(port, host);
  try {
    await once(socket, 'connect');
    return true;
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

/** Resolves once nothing accepts on the port (a server stopping takes a moment). */
async function closed(port: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (!(await accepts('127.0.0.1', port))) return true;
    await sleep(100);
  }
  return false;
}

async function occupy(port: number, host: string): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  return server;
}

before(() => {
  // mkdtemp makes it mode 700: as root, the postgres user cannot enter it, as /root.
  privateDir = mkdtempSync(join(tmpdir(), 'mailplane-first-run-'));
  stateDir = join(privateDir, 'checkout', '.dev');
});

after(async () => {
  for (const dev of running) {
    process.kill(-dev.child.pid!, 'SIGKILL');
    await dev.exited;
  }
  // A failed test may have left a Postgres behind (it runs in a process group of its own).
  for (const data of [join(stateDir, 'postgres'), ...[...movedDirs].map((d) => join(d, 'postgres'))]) {
    try {
      process.kill(Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]), 'SIGQUIT');
    } catch {
      // Not running.
    }
  }
  rmSync(privateDir, { recursive: true, force: true });
  for (const dir of movedDirs) rmSync(dir, { recursive: true, force: true });
});

let first: Banner;
let firstDev: Dev;
let smtpPort: number;

test('as root, a state directory the postgres user cannot enter works: the data goes elsewhere and the banner says where', async () => {
  smtpPort = await freePort();
  firstDev = startDev({ MAILPLANE_INBOX_SMTP_PORT: String(smtpPort) });
  first = await firstDev.banner;
  if (isRoot) {
    const moved = /^Postgres data: (\S+)\/postgres \(the postgres user cannot enter (\S+)\)$/.exec(
      first.moved ?? '',
    );
    assert.ok(moved, firstDev.output());
    assert.match(moved[1]!, /\/mailplane-dev-[0-9a-f]{12}$/);
    assert.equal(moved[2], stateDir);
    movedDirs.add(moved[1]!);
  } else {
    assert.equal(first.moved, undefined, 'a normal user keeps the data in the state directory');
    assert.ok(existsSync(join(stateDir, 'postgres', 'PG_VERSION')));
  }
  assert.equal(await status(first.api, first.key), 200, 'the printed key works');
  assert.deepEqual(troubles(firstDev.output()), []);
});

test('the inbox listens on 127.0.0.1 only, and answers only to the names of loopback', async () => {
  const inboxPort = Number(new URL(first.inbox).port);
  const outside = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  for (const port of [inboxPort, smtpPort]) {
    assert.ok(await accepts('127.0.0.1', port), `127.0.0.1:${port}`);
    if (outside) assert.equal(await accepts(outside, port), false, `${outside}:${port} must refuse`);
  }
  const rebound = await new Promise<number>((resolve, reject) => {
    request(
      { host: '127.0.0.1', port: inboxPort, path: '/messages', headers: { host: 'mail.attacker.example' } },
      (res) => {
        res.resume();
        resolve(res.statusCode!);
      },
    )
      .once('error', reject)
      .end();
  });
  assert.equal(rebound, 403, 'a page under another name (DNS rebinding) reads nothing');
  assert.equal((await fetch(`${first.inbox}/messages`)).status, 200);
});

test('Ctrl-C (SIGINT to the process group) stops everything: exit 0, no error-level line, no stack trace, Postgres stopped', async () => {
  const { code, signal } = await firstDev.interrupt();
  assert.equal(signal, null);
  assert.equal(code, 0, firstDev.output());
  assert.deepEqual(troubles(firstDev.output()), [], firstDev.output());
  assert.ok(await closed(databasePort(first)), 'the embedded Postgres has stopped');
  assert.ok(await closed(Number(new URL(first.api).port)), 'the api has stopped');
});

test('the embedded Postgres keeps its port across starts while it is free, and moves when it is taken', async () => {
  const again = startDev();
  const second = await again.banner;
  assert.equal(databasePort(second), databasePort(first), 'same port as before');
  assert.equal(second.key, first.key, 'same database, same key');
  assert.equal(await status(second.api, second.key), 200);
  assert.equal((await again.interrupt()).code, 0, again.output());

  const squatter = await occupy(databasePort(first), '127.0.0.1');
  try {
    const moved = startDev();
    const third = await moved.banner;
    assert.notEqual(databasePort(third), databasePort(first));
    assert.equal(await status(third.api, third.key), 200);
    assert.equal((await moved.interrupt()).code, 0, moved.output());
  } finally {
    squatter.close();
  }
});

test('a taken port says which port and which setting moves it, and leaves nothing running', async () => {
  for (const setting of [
    'MAILPLANE_INBOX_PORT',
    'MAILPLANE_INBOX_SMTP_PORT',
    'MAILPLANE_SUBMISSION_PORT',
    'MAILPLANE_SUBMISSIONS_PORT',
    'PORT',
  ]) {
    const port = await freePort();
    const squatter = await occupy(port, '0.0.0.0');
    try {
      const dev = startDev({ [setting]: String(port) });
      const { code } = await dev.exited;
      assert.equal(code, 1, dev.output());
      assert.match(
        dev.output(),
        new RegExp(
          `^mailplane: port ${port} \\(\\S+:${port}\\) is already in use; set ${setting} to another port$`,
          'm',
        ),
      );
      assert.deepEqual(troubles(dev.output()), [], dev.output());
    } finally {
      squatter.close();
    }
  }
  // PORT is taken after Postgres started: it was stopped on the way out.
  const { port } = JSON.parse(readFileSync(join(stateDir, 'postgres.json'), 'utf8')) as { port: number };
  assert.ok(await closed(port), 'no Postgres left running');
});

test('deleting the state directory starts over with a new database, and a key the database does not hold is never printed', async () => {
  rmSync(stateDir, { recursive: true, force: true });
  const fresh = startDev();
  const banner = await fresh.banner;
  assert.notEqual(banner.key, first.key);
  assert.equal(await status(banner.api, banner.key), 200);
  assert.equal(await status(banner.api, first.key), 401, 'the old database is gone, and its keys with it');
  assert.equal((await fresh.interrupt()).code, 0, fresh.output());

  // A key file that lists a key the database never issued (a database reset behind its back).
  const keyFile = join(stateDir, 'api-keys.json');
  const keys = JSON.parse(readFileSync(keyFile, 'utf8')) as Record<string, string>;
  writeFileSync(keyFile, JSON.stringify({ 'default/gone/old': 'mp_live_stale', ...keys }));
  const next = startDev();
  const after = await next.banner;
  assert.equal(after.key, banner.key);
  assert.equal(await status(after.api, after.key), 200);
  assert.ok(!readFileSync(keyFile, 'utf8').includes('mp_live_stale'), 'the stale key is forgotten');
  assert.equal((await next.interrupt()).code, 0, next.output());
});
