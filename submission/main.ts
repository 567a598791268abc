// `mailplane submission`: config → database → migrate → the certificate → both listeners and the
// accept path → probes → shutdown. Without a certificate it does not start: AUTH is refused
// before TLS, so a listener without one could take no mail at all.

import type { Config } from '../lib/config.js';
import type { DatabaseHandle } from '../lib/db/index.js';
import type { Logger } from '../lib/log.js';
import { createMetrics, type Metrics } from '../lib/metrics.js';
import { startProbeServer } from '../lib/probe-server.js';
import { openRuntime } from '../lib/runtime.js';
import { createAcceptor } from '../lib/send/accept.js';
import { onShutdown } from '../lib/shutdown.js';
import { UserError } from '../lib/user-error.js';
import { startSubmissionServer, type SubmissionServer } from './server.js';
import { readTlsPair, TLS_RELOAD_MS, watchTlsPair } from './tls.js';

export interface RunningSubmission {
  server: SubmissionServer;
  close(): Promise<void>;
}

/**
 * Reads the certificate, starts both listeners and the certificate's reload; what main runs and
 * what tests start. close() stops taking connections and waits for writes in flight.
 *
 *   const submission = await startSubmission({ database, config, log, metrics });
 */
export async function startSubmission(deps: {
  database: DatabaseHandle;
  config: Readonly<Config>;
  log: Logger;
  metrics: Metrics;
  /** How often the certificate files are read again; TLS_RELOAD_MS by default. */
  tlsReloadMs?: number;
  authDelayMs?: number;
}): Promise<RunningSubmission> {
  const { database, config, log, metrics } = deps;
  const { tlsCertFile: certFile, tlsKeyFile: keyFile } = config;
  if (!certFile || !keyFile) {
    throw new UserError(
      'mailplane submission needs a certificate: set MAILPLANE_TLS_CERT_FILE and MAILPLANE_TLS_KEY_FILE ' +
        '(PEM files, e.g. a cert-manager Secret mounted as a volume); AUTH is refused without TLS',
    );
  }
  const files = { certFile, keyFile };
  const tls = await readTlsPair(files);
  const acceptor = createAcceptor(database.pool);
  const server = await startSubmissionServer(
    {
      db: database.db,
      acceptor,
      log,
      registry: metrics.registry,
      hostname: config.heloName,
      limits: { maxRecipients: config.maxRecipients, maxMessageBytes: config.maxMessageBytes },
      tls,
      authDelayMs: deps.authDelayMs,
    },
    { port: config.submissionPort, securePort: config.submissionsPort },
  );
  const watch = watchTlsPair(
    files,
    tls,
    (pair) => server.updateTls(pair),
    log,
    deps.tlsReloadMs ?? TLS_RELOAD_MS,
  );
  log.info('listening for SMTP submission', { port: server.port, securePort: server.securePort });
  return {
    server,
    close: async () => {
      watch.close();
      await server.close();
      await acceptor.drain();
    },
  };
}

export async function main(env: Record<string, string | undefined>): Promise<void> {
  const { config, log, database } = await openRuntime('submission', env);
  const metrics = createMetrics({ defaults: true });
  let submission: RunningSubmission;
  try {
    submission = await startSubmission({ database, config, log, metrics });
  } catch (err) {
    await database.close().catch(() => {});
    throw err;
  }
  const probes = await startProbeServer({
    port: config.port,
    registry: metrics.registry,
    readiness: () => undefined,
  });
  onShutdown(log, async () => {
    await submission.close();
    await probes.close();
    await database.close();
  });
}
