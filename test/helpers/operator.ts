// Runs `mailplane operator` as a child process, the way a Deployment runs it, so that a test can
// stop it, kill -9 it, and read its /metrics.
//
//   const op = await startOperatorProcess({ KUBECONFIG: cp.kubeconfig, DATABASE_URL: db.url, ... });
//   await op.stop();

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface OperatorProcess {
  url: string;
  child: ChildProcess;
  /** Every JSON log line so far, parsed. */
  logs: Record<string, unknown>[];
  /**
   * The value of one sample of /metrics, summed over the samples matching `labels` and not
   * `except`, from one scrape (two scrapes would see writes made in between).
   */
  metric(name: string, labels?: Record<string, string>, except?: Record<string, string>): Promise<number>;
  isLeader(): Promise<boolean>;
  /** SIGTERM, and wait for the exit. */
  stop(): Promise<void>;
  /** SIGKILL: no lease release, no cleanup. */
  kill(): Promise<void>;
}

/** How long an operator may take to start listening (tsx compiles on the fly). */
const START_TIMEOUT_MS = 30_000;

export async function startOperatorProcess(env: Record<string, string>): Promise<OperatorProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'cmd/mailplane.ts', 'operator'], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'exit');
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`operator did not start:\n${stderr}`)), START_TIMEOUT_MS);
    let partial = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (entry.msg === 'operator started') {
            clearTimeout(timer);
            resolve(String(entry.url));
          }
        } catch {
          // not a log line
        }
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`operator exited before it started:\n${stderr}`));
    });
  });

  const metrics = async () => (await fetch(`${url}/metrics`)).text();
  const waitExit = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    await exited;
  };
  const metric = async (
    name: string,
    labels: Record<string, string> = {},
    except: Record<string, string> = {},
  ) => {
    let total = 0;
    for (const line of (await metrics()).split('\n')) {
      const match = /^([a-z_]+)(\{[^}]*\})? ([-+\d.eE]+)$/.exec(line);
      if (!match || match[1] !== name) continue;
      const set = match[2] ?? '';
      const has = ([k, v]: [string, string]) => set.includes(`${k}="${v}"`);
      const excluded = Object.keys(except).length > 0 && Object.entries(except).every(has);
      if (Object.entries(labels).every(has) && !excluded) total += Number(match[3]);
    }
    return total;
  };
  return {
    url,
    child,
    logs,
    metric,
    isLeader: async () => (await metric('mailplane_operator_leader')) === 1,
    stop: () => waitExit('SIGTERM'),
    kill: () => waitExit('SIGKILL'),
  };
}
