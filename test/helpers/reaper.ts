// Cleanup that survives the test process: a small shell loop, in a session of its own, that waits
// for this process to be gone and then runs a cleanup command. 'exit' hooks cover a test that
// ends or throws; they do not run when the process is killed by a signal (the runner's SIGTERM on
// a timeout, a SIGKILL), which would leave a Postgres server or a sender running.
//
//   const cancel = whenTestProcessEnds('kill -9 "$1"', [String(child.pid)]);
//   ...
//   cancel(); // it ended normally and was cleaned up in process

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** How often the loop looks for this process. */
const POLL_S = 1;

/**
 * Runs `script` with `sh -c` (its arguments in "$1", "$2", …) once this process has ended, as
 * `user` if given. Returns a function that cancels it (kills the loop, by its pid).
 */
export function whenTestProcessEnds(
  script: string,
  args: string[],
  user: { uid?: number; gid?: number } = {},
): () => void {
  // /proc/<pid> rather than `kill -0`: another user's loop (postgres') may not signal root's process.
  const loop = `while [ -d /proc/${process.pid} ]; do sleep ${POLL_S}; done; ${script}`;
  const child = spawn('sh', ['-c', loop, 'reaper', ...args], {
    ...user,
    cwd: '/',
    detached: true,
    stdio: 'ignore',
  });
  child.on('error', () => {});
  child.unref();
  return () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
}

/**
 * Kills `pid` with SIGKILL once this process has ended, unless it is gone by then: it is matched by
 * its start time, so that a pid reused by another process meanwhile is spared.
 */
export function killWhenTestProcessEnds(pid: number): () => void {
  const started = startTime(pid);
  if (!started) return () => {};
  // Field 22 of /proc/<pid>/stat, counted after the ")" that closes the command name.
  return whenTestProcessEnds(
    `s=$(sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -d' ' -f20); [ "$s" = "$2" ] && kill -9 "$1"`,
    [String(pid), started],
  );
}

/**
 * /proc/<pid>/stat's fields from the third (the state) on; the command name before them may hold
 * spaces and parentheses, so the split is after the last ')'. Undefined when the process is gone.
 */
export function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Field 22, starttime, in clock ticks since boot: a pid and its start time name one process. */
export function startTime(pid: number): string | undefined {
  return procStat(pid)?.[19];
}
