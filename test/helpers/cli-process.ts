// Runs one `mailplane <command>` (api, sender, operator) as a child process the way a container
// runs it: with exactly the environment it is given (plus PATH and HOME), on a free PORT, and
// resolves once its /readyz answers 200. Its output is kept so that a failing test can show it.
//
//   const api = await startCliProcess('api', { DATABASE_URL: ..., MAILPLANE_SECRET_KEY: ... });
//   await fetch(`${api.url}/v1/emails`, ...);
//   assert.ok(ok, `...\n${api.tail()}`);
//   await api.stop();

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort } from './free-port.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** tsx compiles on the fly and each process runs the migrations check first: give it room. */
const READY_TIMEOUT_MS = 60_000;
/** The sender finishes what it is sending on SIGTERM; an idle one exits at once. */
const STOP_TIMEOUT_MS = 15_000;
/** Output kept per process, so that a chatty one cannot grow without bound. */
const MAX_OUTPUT_CHARS = 1_000_000;

export interface CliProcess {
  command: string;
  /** http://127.0.0.1:<PORT>, where /healthz, /readyz and /metrics (and the api's routes) are. */
  url: string;
  /** Its stdout and stderr so far, interleaved as they came. */
  output(): string;
  /** The last `lines` lines of output(), headed by the command, for a failure message. */
  tail(lines?: number): string;
  /** SIGTERM, then SIGKILL if it has not exited after a while; resolves once it has exited. */
  stop(): Promise<void>;
  /** The child's process id. */
  pid: number;
  /** Sends `signal` at once (SIGKILL: the process dies as an OOM kill or a lost node leaves it). */
  kill(signal: NodeJS.Signals): void;
  /** Resolves, once it has exited, with its exit code or the signal that ended it. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * node's arguments for `mailplane <command> [args]` from the source tree, for a test that runs a
 * command to its end (`apply`) rather than as a server. --no-node-snapshot: what the binary's
 * shebang runs node with, as isolated-vm needs.
 */
export function cliArgs(...command: string[]): string[] {
  return ['--no-node-snapshot', '--import', 'tsx', 'cmd/mailplane.ts', ...command];
}

/**
 * Starts `node --import tsx cmd/mailplane.ts <command>` with `env` (PORT is replaced by a free port) and
 * waits for /readyz. Fails with the process's output if it exits or is not ready in time.
 */
export async function startCliProcess(
  command: string,
  env: Record<string, string>,
  options: { readyTimeoutMs?: number } = {},
): Promise<CliProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, cliArgs(command), {
    cwd: ROOT,
    // Not process.env: what the test runner happens to have (a DATABASE_URL, a MAILPLANE_RELAY_URL)
    // must not stand in for what the Deployment gives.
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      ...env,
      PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (chunk: string) => {
    output += chunk;
    if (output.length > MAX_OUTPUT_CHARS) output = output.slice(-MAX_OUTPUT_CHARS / 2);
  };
  child.stdout.setEncoding('utf8').on('data', collect);
  child.stderr.setEncoding('utf8').on('data', collect);
  const exited = once(child, 'exit').then(() => ({ code: child.exitCode, signal: child.signalCode }));
  const hasExited = () => child.exitCode !== null || child.signalCode !== null;
  // A test process that dies without its after hook must not leave this one running.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const url = `http://127.0.0.1:${port}`;
  const tail = (lines = 40) => {
    const all = output.trimEnd().split('\n');
    return `--- last ${Math.min(lines, all.length)} lines of \`mailplane ${command}\` ---\n${all.slice(-lines).join('\n')}`;
  };
  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (hasExited()) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };

  const timeoutMs = options.readyTimeoutMs ?? READY_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    if (hasExited()) {
      await stop();
      throw new Error(
        `mailplane ${command} exited (code ${child.exitCode}, signal ${child.signalCode}) before it was ready\n${tail()}`,
      );
    }
    try {
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) });
      if (res.status === 200) break;
      last = `${res.status} ${(await res.text()).trim()}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) {
      const shown = tail();
      await stop();
      throw new Error(
        `mailplane ${command}: ${url}/readyz not 200 after ${timeoutMs} ms (last: ${last})\n${shown}`,
      );
    }
    await sleep(100);
  }
  return {
    command,
    url,
    output: () => output,
    tail,
    stop,
    pid: child.pid!,
    kill: (signal) => void child.kill(signal),
    exited,
  };
}
