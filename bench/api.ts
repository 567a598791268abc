// API throughput: single-recipient sends at 50 concurrent connections against the real api
// process, and the same load against the bare ceiling (bench/bare-api.ts), in one run.

import type { ChildProcess } from 'node:child_process';
import autocannon from 'autocannon';
import { startChild } from './child.js';

export interface LoadResult {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

const CONNECTIONS = 50;

/** Starts a server process and resolves with its port once it prints `listening <port>` or its URL. */
export async function startServer(
  args: string[],
  env: Record<string, string>,
): Promise<{ port: number; child: ChildProcess }> {
  const { child, match } = await startChild(args, env, /listening (\d+)|"url":"http:\/\/localhost:(\d+)"/);
  return { port: Number(match[1] ?? match[2]), child };
}

/** Runs autocannon for `seconds` after a short warm-up and returns what it measured. */
export async function load(
  url: string,
  body: string,
  headers: Record<string, string>,
  seconds: number,
): Promise<LoadResult> {
  const options = {
    url,
    method: 'POST' as const,
    body,
    headers: { 'content-type': 'application/json', ...headers },
  };
  await autocannon({ ...options, connections: CONNECTIONS, duration: 2 });
  const result = await autocannon({ ...options, connections: CONNECTIONS, duration: seconds });
  return {
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
  };
}

export const loadConnections = CONNECTIONS;
