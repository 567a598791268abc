// `mailplane smtp`: config → database → migrate → the inbound listener → probes → shutdown.

import { createMetrics } from '../lib/metrics.js';
import { startProbeServer } from '../lib/probe-server.js';
import { openRuntime } from '../lib/runtime.js';
import { onShutdown } from '../lib/shutdown.js';
import { startInboundServer } from './inbound-server.js';

export async function main(env: Record<string, string | undefined>): Promise<void> {
  const { config, log, database } = await openRuntime('smtp', env);
  const metrics = createMetrics({ defaults: true });
  const inbound = await startInboundServer(
    {
      db: database.db,
      secretKey: config.secretKey,
      log,
      registry: metrics.registry,
      hostname: config.heloName,
    },
    { port: config.smtpPort },
  );
  const probes = await startProbeServer({
    port: config.port,
    registry: metrics.registry,
    readiness: () => undefined,
  });
  log.info('listening for bounces and complaints', { port: inbound.port });
  onShutdown(log, async () => {
    await inbound.close();
    await probes.close();
    await database.close();
  });
}
