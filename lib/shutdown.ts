// SIGTERM and SIGINT stop a process once, in order: stop taking work, finish what is in flight,
// close connections. A second signal exits at once.

import type { Logger } from './log.js';

/**
 * Runs `stop` on the first SIGTERM/SIGINT, then exits.
 *
 *   onShutdown(log, async () => { await server.close(); await sender.stop(); });
 */
export function onShutdown(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn('second signal, exiting now', { signal });
      process.exit(1);
    }
    stopping = true;
    log.info('shutting down', { signal });
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('shutdown failed', { err: err as Error });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
