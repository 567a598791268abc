// One `mailplane <command>` kept running the way a Deployment's restart policy keeps a container
// running: when the process exits, for whatever reason, a new one (a new process, new pools) is
// started after a delay, and every exit is recorded. A test can kill it (kill -9, as the OOM killer
// or a lost node would) and read what happened next.
//
//   const sender = await superviseCliProcess('sender', env);
//   await sender.kill('SIGKILL');             // the next one starts KILL_RESTART_DELAY_MS later
//   sender.current()?.url;                    // the running one's probes, once it is up
//   await sender.close();

import { setTimeout as sleep } from 'node:timers/promises';
import { startCliProcess, type CliProcess } from './cli-process.js';
import { killWhenTestProcessEnds } from './reaper.js';

export interface ProcessExit {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
  /** Whether the test killed it (kill()), rather than it exiting on its own. */
  killed: boolean;
}

export interface SupervisedProcess {
  command: string;
  /** The process running now and past its readiness check; undefined between two of them. */
  current(): CliProcess | undefined;
  /** Every exit so far, oldest first. */
  exits(): ProcessExit[];
  /** Starts that failed (exited or not ready in time), each followed by another try. */
  failedStarts(): number;
  /**
   * Restarts after an exit the test did not cause: what Kubernetes' restart count would show for
   * the container beyond the kills.
   */
  restarts(): number;
  /** Sends `signal` to the running process and resolves with its pid once it has exited. */
  kill(signal: NodeJS.Signals): Promise<number>;
  /** Resolves once a process is running and ready again (after a kill, say); fails after `timeoutMs`. */
  running(timeoutMs: number): Promise<CliProcess>;
  /** Output of every process so far, each headed by its pid, for a failure message. */
  tail(lines?: number): string;
  /** Stops supervising and stops the running process. */
  close(): Promise<void>;
}

export interface SuperviseOptions {
  /** Delay before the process that follows a kill() starts: a pod rescheduled a few seconds later. */
  killRestartDelayMs?: number;
  /**
   * Delay after an exit on its own, doubling per consecutive failure up to the cap: Kubernetes'
   * CrashLoopBackOff (10 s doubling to 5 min), shortened so that a test sees several.
   */
  crashBackoffMs?: number;
  crashBackoffCapMs?: number;
  /** Starts in all, so that a process that can never start does not loop for ever. */
  maxStarts?: number;
}

/** Longest line tail() shows. */
const MAX_LINE_CHARS = 400;

const DEFAULTS: Required<SuperviseOptions> = {
  killRestartDelayMs: 3_000,
  crashBackoffMs: 1_000,
  crashBackoffCapMs: 5_000,
  maxStarts: 20,
};

/** Starts the first process and resolves once it is ready (a first start that fails is thrown). */
export async function superviseCliProcess(
  command: string,
  env: Record<string, string>,
  options: SuperviseOptions = {},
): Promise<SupervisedProcess> {
  const o = { ...DEFAULTS, ...options };
  /**
   * Starts one process. cli-process.ts kills it in an 'exit' hook; a reaper also kills it if the
   * test process is killed (no hooks run), until it has exited by itself.
   */
  const start = async () => {
    const proc = await startCliProcess(command, env);
    const cancel = killWhenTestProcessEnds(proc.pid);
    void proc.exited.then(cancel);
    return proc;
  };
  let current: CliProcess | undefined = await start();
  const exits: ProcessExit[] = [];
  const outputs: { pid: number; tail: (lines?: number) => string }[] = [
    { pid: current.pid, tail: current.tail },
  ];
  let failedStarts = 0;
  let restarts = 0;
  let starts = 1;
  let closing = false;
  const killedPids = new Set<number>();
  const wake = new AbortController();
  const readyWaiters = new Set<() => void>();

  const loop = (async () => {
    let backoff = o.crashBackoffMs;
    while (!closing && current) {
      const proc: CliProcess = current;
      const { code, signal } = await proc.exited;
      // stop() of an exited process only unregisters its exit hook.
      await proc.stop();
      current = undefined;
      const killed = killedPids.has(proc.pid);
      exits.push({ pid: proc.pid, code, signal, at: Date.now(), killed });
      if (closing) return;
      if (!killed) restarts++;
      let delay = killed ? o.killRestartDelayMs : backoff;
      for (;;) {
        await sleep(delay, undefined, { signal: wake.signal }).catch(() => {});
        if (closing) return;
        if (starts >= o.maxStarts) return;
        starts++;
        try {
          current = await start();
        } catch (err) {
          // It exited before it was ready (Postgres still down, say) or was never ready.
          failedStarts++;
          outputs.push({ pid: -1, tail: () => (err as Error).message });
          delay = backoff = Math.min(backoff * 2, o.crashBackoffCapMs);
          continue;
        }
        break;
      }
      if (closing) {
        await current.stop();
        return;
      }
      outputs.push({ pid: current.pid, tail: current.tail });
      if (!killed) backoff = Math.min(backoff * 2, o.crashBackoffCapMs);
      for (const resolve of readyWaiters) resolve();
    }
  })();

  // JSON log lines carry stacks: each is cut short, so that a failure message stays readable.
  const cut = (text: string) =>
    text
      .split('\n')
      .map((line) => (line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}…` : line))
      .join('\n');
  const tail = (lines = 20) => outputs.map((o) => `[pid ${o.pid}]\n${cut(o.tail(lines))}`).join('\n');

  return {
    command,
    current: () => current,
    exits: () => [...exits],
    failedStarts: () => failedStarts,
    restarts: () => restarts,
    async kill(signal) {
      const proc = current;
      if (!proc) throw new Error(`mailplane ${command} is not running`);
      killedPids.add(proc.pid);
      proc.kill(signal);
      await proc.exited;
      return proc.pid;
    },
    async running(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!current) {
        if (Date.now() > deadline || closing) {
          throw new Error(`mailplane ${command} not running again after ${timeoutMs} ms\n${tail()}`);
        }
        await new Promise<void>((resolve) => {
          const done = () => {
            readyWaiters.delete(done);
            clearTimeout(timer);
            resolve();
          };
          const timer = setTimeout(done, Math.max(0, deadline - Date.now()));
          readyWaiters.add(done);
        });
      }
      return current;
    },
    tail,
    async close() {
      closing = true;
      wake.abort();
      await current?.stop();
      await loop;
    },
  };
}
