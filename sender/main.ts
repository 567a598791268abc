// `mailplane sender`: config → database → migrate → the job runner → probes → shutdown.

import { createMetrics } from '../lib/metrics.js';
import { startProbeServer } from '../lib/probe-server.js';
import { openRuntime, templateRenderer } from '../lib/runtime.js';
import { onShutdown } from '../lib/shutdown.js';
import { startSender } from './worker.js';

export async function main(env: Record<string, string | undefined>): Promise<void> {
  const { config, log, database } = await openRuntime('sender', env);
  const renderer = templateRenderer(config);
  const metrics = createMetrics({ defaults: true });
  const sender = await startSender({ pool: database.pool, db: database.db, config, log, metrics, renderer });
  // A sender that cannot go on sends nothing; exiting lets Kubernetes restart it.
  sender.done.catch(() => process.exit(1));
  const probes = await startProbeServer({
    port: config.port,
    registry: metrics.registry,
    readiness: () => sender.readiness(),
  });
  onShutdown(log, async () => {
    await sender.stop();
    await probes.close();
    renderer.dispose();
    await database.close();
  });
}
