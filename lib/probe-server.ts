// The HTTP endpoints of a process that serves nothing else (the operator, the sender): /healthz
// for the kubelet's liveness probe, /readyz for readiness, /metrics for Prometheus.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { listen } from './listen.js';

export interface ProbeServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Listens on `port` (0: any free port).
 *
 *   const probes = await startProbeServer({ port: 8080, registry, readiness: () => synced ? undefined : 'caches not synced' });
 */
export async function startProbeServer(options: {
  port: number;
  registry: Registry;
  /** Undefined when ready; otherwise why not, which /readyz answers with a 503. */
  readiness: () => string | undefined;
}): Promise<ProbeServer> {
  const { registry } = options;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const text = (status: number, body: string) =>
      void res.writeHead(status, { 'content-type': 'text/plain' }).end(`${body}\n`);
    if (path === '/healthz') return text(200, 'ok');
    if (path === '/readyz') {
      const reason = options.readiness();
      return reason === undefined ? text(200, 'ok') : text(503, reason);
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (err: Error) => text(500, err.message),
      );
      return;
    }
    text(404, 'not found');
  });
  await listen(server, { port: options.port, setting: 'PORT' });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
