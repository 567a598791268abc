// CPU time by process, read from /proc (Linux), for the benchmarks' cost per message: on a busy
// machine a rate moves with the neighbours, the CPU a message costs much less. Elsewhere the
// readings are undefined and the figures are left out.

import { readdirSync, readFileSync } from 'node:fs';

/** Seconds of CPU (user + system) a process has used; undefined when it is gone or not Linux. */
export function processCpu(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  const fields = statFields(pid);
  return fields && (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

/**
 * Seconds of CPU all Postgres processes on this machine have used: the live ones, and those the
 * server has reaped (counted in its own children's time). Undefined when none is found.
 */
export function postgresCpu(): number | undefined {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return undefined;
  }
  let total = 0;
  let found = false;
  const postgres = new Map<number, string[]>();
  for (const pid of pids) {
    const fields = statFields(Number(pid));
    if (fields?.comm === 'postgres') postgres.set(Number(pid), fields);
  }
  for (const fields of postgres.values()) {
    found = true;
    total += Number(fields[11]) + Number(fields[12]);
    // A server (its parent is not Postgres) also holds the time of the backends it reaped.
    if (!postgres.has(Number(fields[1]))) total += Number(fields[13]) + Number(fields[14]);
  }
  return found ? total / ticksPerSecond : undefined;
}

/** USER_HZ: 100 on every Linux that Node runs on. */
const ticksPerSecond = 100;

/** The fields of /proc/<pid>/stat after the command name (0 is the state), and that name. */
function statFields(pid: number): (string[] & { comm: string }) | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const close = stat.lastIndexOf(')');
  const comm = stat.slice(stat.indexOf('(') + 1, close);
  return Object.assign(stat.slice(close + 2).split(' '), { comm });
}
