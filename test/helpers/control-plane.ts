// A real etcd + kube-apiserver for tests (scripts/envtest.sh), in a state directory of its own so
// that a test run never reuses or stops a developer's control plane, nor another run's.
//
//   const cp = await startControlPlane();
//   const { code, stderr } = await cp.kubectl(['apply', '-f', 'crds/']);
//   await cp.stop();

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ENVTEST = join(ROOT, 'scripts', 'envtest.sh');
const KUBECTL = join(ROOT, 'bin', 'kubectl');

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ControlPlane {
  /** Path of the admin kubeconfig (client certificate in system:masters). */
  kubeconfig: string;
  /** Runs bin/kubectl against this control plane; never throws on a non-zero exit. */
  kubectl(args: string[], input?: string): Promise<CommandResult>;
  /** Stops etcd and the API server and removes their state. */
  stop(): Promise<void>;
}

/**
 * Runs a command to completion from the repository root, collecting its output; never throws on
 * a non-zero exit. `onStderrLine` sees stderr as it comes.
 *
 *   const { code, stdout } = await run('bin/helm', ['version'], { env: { ...process.env, KUBECONFIG } });
 */
export function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string; onStderrLine?: (line: string) => void } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      if (!options.onStderrLine) return;
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(options.onStderrLine);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/**
 * Starts etcd and kube-apiserver (building them first on a fresh machine, which takes minutes)
 * and resolves once the API server is ready.
 */
export async function startControlPlane(): Promise<ControlPlane> {
  // envtest.sh treats an existing state directory as a stale control plane to clean up, so it
  // gets a path that does not exist yet, inside a temp directory this function owns.
  const parent = mkdtempSync(join(tmpdir(), 'mailplane-cp-'));
  const env = { ...process.env, MAILPLANE_ENVTEST_DIR: join(parent, 'envtest') };
  const down = async () => {
    const result = await run('bash', [ENVTEST, 'down'], { env });
    rmSync(parent, { recursive: true, force: true });
    if (result.code !== 0) throw new Error(`envtest.sh down failed:\n${result.stderr}`);
  };

  const started = Date.now();
  // A build of the tools is the only slow part: say so, and keep saying it is still going.
  const progress = setInterval(() => {
    const secs = Math.round((Date.now() - started) / 1000);
    process.stderr.write(`control plane: still starting after ${secs}s (building tools?)\n`);
  }, 30_000);
  progress.unref();
  let up: CommandResult;
  try {
    up = await run('bash', [ENVTEST, 'up'], {
      env,
      onStderrLine: (line) => {
        if (/building|built in|FAILED/.test(line)) process.stderr.write(`control plane: ${line}\n`);
      },
    });
  } finally {
    clearInterval(progress);
  }
  const match = /^export KUBECONFIG=(.+)$/m.exec(up.stdout);
  if (up.code !== 0 || !match) {
    await down().catch(() => {});
    throw new Error(`envtest.sh up failed (exit ${up.code}):\n${up.stderr}${up.stdout}`);
  }
  const kubeconfig = match[1]!.trim();

  let stopped = false;
  return {
    kubeconfig,
    kubectl: (args, input) => run(KUBECTL, args, { env: { ...process.env, KUBECONFIG: kubeconfig }, input }),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await down();
    },
  };
}
