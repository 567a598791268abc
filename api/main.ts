// `mailplane api`: config → database → migrate → the accept path and the HTTP server (which
// serves its own probes and metrics) → shutdown. startApi is what tests start.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../lib/config.js';
import type { DatabaseHandle } from '../lib/db/index.js';
import { listen } from '../lib/listen.js';
import type { Logger } from '../lib/log.js';
import { createMetrics, type Metrics } from '../lib/metrics.js';
import { openRuntime, templateRenderer } from '../lib/runtime.js';
import { createResolver } from '../lib/resolver.js';
import { onShutdown } from '../lib/shutdown.js';
import { createAcceptor } from '../lib/send/accept.js';
import { createApp } from './app.js';
import { answerClientError } from './problems.js';
import { createEngagementRecorder } from './engagement-recorder.js';
import { loadMachineSignals } from './machine-fetch.js';

export interface RunningApi {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts the HTTP server on config.port (0 picks a free port) and resolves once it listens.
 * close() stops accepting connections and waits for requests and writes in flight.
 */
export async function startApi(deps: {
  database: DatabaseHandle;
  config: Config;
  log: Logger;
  metrics: Metrics;
}): Promise<RunningApi> {
  const { database, config, log, metrics } = deps;
  const acceptor = createAcceptor(database.pool);
  // Opens and clicks, classified and written in groups off the request path.
  const recorder = createEngagementRecorder({
    pool: database.pool,
    signals: loadMachineSignals(config.tracking.signalsFile),
    tunables: config.tracking,
    log,
    metrics,
  });
  // Previews and the checks of templates made through the API render as the sender does.
  const renderer = templateRenderer(config);
  const app = createApp({
    db: database.db,
    acceptor,
    log,
    metrics,
    limits: { maxRecipients: config.maxRecipients, maxMessageBytes: config.maxMessageBytes },
    inboundHost: config.inboundHost,
    dns: config.dns,
    renderer,
    resolver: createResolver(config.dnsServers),
    webhooks: { secretKey: config.secretKey, allowPrivate: config.webhooksAllowPrivate },
    secretKey: config.secretKey,
    recorder,
    trustProxy: config.tracking.trustProxy,
    publicUrl: config.publicUrl,
  });
  const server: Server = createServer(app);
  server.on('clientError', answerClientError);
  await listen(server, { port: config.port, setting: 'PORT' });
  // Clients inside a cluster keep connections open; a keep-alive shorter than a load balancer's
  // idle timeout makes them race a closing socket.
  server.keepAliveTimeout = 65_000;
  const { port } = server.address() as AddressInfo;
  const url = `http://localhost:${port}`;
  log.info('api listening', { url });
  return {
    url,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await acceptor.drain();
      await recorder.close();
      renderer.dispose();
    },
  };
}

/**
 * No statement of the api runs longer (an accept takes milliseconds): a request cannot outlive
 * the lease on its Idempotency-Key (lib/db/idempotency.ts) and commit after a retry took it over.
 */
export const API_STATEMENT_TIMEOUT_MS = 10_000;

export async function main(env: Record<string, string | undefined>): Promise<void> {
  const { config, log, database } = await openRuntime('api', env, {
    statementTimeoutMs: API_STATEMENT_TIMEOUT_MS,
  });
  const api = await startApi({ database, config, log, metrics: createMetrics({ defaults: true }) });
  onShutdown(log, async () => {
    await api.close();
    await database.close();
  });
}
