// The sender process: a graphile-worker runner with the send_message task, tuned for many short
// jobs, logging through Mailplane's JSON logger, and a stop() that lets sends under way finish.

import { Logger as WorkerLogger, run, type LogFunctionFactory, type Runner } from 'graphile-worker';
import type pg from 'pg';
import type { Config } from '../lib/config.js';
import type { Db } from '../lib/db/index.js';
import { SEND_MESSAGE } from '../lib/jobs.js';
import type { Logger } from '../lib/log.js';
import type { Metrics } from '../lib/metrics.js';
import type { Renderer } from '../lib/render/sandbox.js';
import { createSendMessageTask } from './send-message.js';
import { createTransport, type Transport } from './transport.js';

export interface SenderDeps {
  pool: pg.Pool;
  db: Db;
  config: Config;
  log: Logger;
  metrics: Metrics;
  renderer: Renderer;
  /** Where messages go; by default built from the config (relay or direct MX), and closed by stop(). */
  transport?: Transport;
}

export interface Sender {
  /** Takes no new jobs, returns locally queued ones, waits for sends under way, closes SMTP pools. */
  stop(): Promise<void>;
  /**
   * Settles when the job runner ends; rejects if it dies on its own (its database connection gone
   * for good, say), so that main can exit and let the orchestrator restart the process.
   */
  done: Promise<void>;
}

/**
 * Jobs the pool locks and fetches in one query, per concurrency slot. Twice the concurrency keeps
 * every slot fed while the next batch is fetched; locked jobs not started at stop() go back to
 * the queue.
 */
const LOCAL_QUEUE_PER_SLOT = 2;
/**
 * Completions (and failures) are written in batches gathered over this many milliseconds instead of
 * one UPDATE per job. A crash inside the window leaves those jobs to run again after their lock
 * expires, which is harmless: by then their messages are final (or deferred to a newer job), and the
 * task does nothing.
 */
const JOB_BATCH_DELAY_MS = 100;

/**
 * Starts sending; resolves once the runner is up.
 *
 *   const sender = await startSender({ pool, db, config, log, metrics, renderer });
 *   process.once('SIGTERM', () => void sender.stop());
 */
export async function startSender(deps: SenderDeps): Promise<Sender> {
  const { config, log } = deps;
  const transport =
    deps.transport ??
    createTransport({
      relayUrl: config.relayUrl,
      heloName: config.heloName,
      // Through a relay, every job can have its own connection.
      maxConnections: config.relayUrl ? config.senderConcurrency : undefined,
    });
  const ownsTransport = !deps.transport;

  let runner: Runner;
  try {
    runner = await run({
      pgPool: deps.pool,
      concurrency: config.senderConcurrency,
      noHandleSignals: true,
      taskList: { [SEND_MESSAGE]: createSendMessageTask({ ...deps, transport }) },
      // No crontab file: cron jobs are declared in code when there are any.
      parsedCronItems: [],
      logger: new WorkerLogger(workerLogFactory(log.child({ component: 'graphile-worker' }))),
      preset: {
        worker: {
          localQueue: { size: config.senderConcurrency * LOCAL_QUEUE_PER_SLOT },
          completeJobBatchDelay: JOB_BATCH_DELAY_MS,
          failJobBatchDelay: JOB_BATCH_DELAY_MS,
        },
      },
    });
  } catch (err) {
    if (ownsTransport) await transport.close();
    throw err;
  }
  const done = runner.promise.catch((err: unknown) => {
    log.error('job runner stopped with an error', { err: err as Error });
    throw err;
  });
  log.info('sender started', { concurrency: config.senderConcurrency, relay: Boolean(config.relayUrl) });

  let stopping: Promise<void> | undefined;
  return {
    done,
    stop() {
      stopping ??= (async () => {
        log.info('sender stopping: finishing the sends under way');
        try {
          await runner.stop();
        } finally {
          if (ownsTransport) await transport.close();
        }
        log.info('sender stopped');
      })();
      return stopping;
    },
  };
}

const LEVELS: Record<string, 'error' | 'warn' | 'info' | 'debug'> = {
  error: 'error',
  warning: 'warn',
  info: 'info',
  debug: 'debug',
};

/**
 * graphile-worker's log lines, as JSON lines of our logger with its scope as fields. A worker's
 * own info lines ("Completed task …", one per job) go to debug: the task logs each outcome itself.
 */
function workerLogFactory(log: Logger): LogFunctionFactory {
  return (scope) => {
    const scoped = log.child({ ...scope });
    const perJob = scope.workerId !== undefined;
    return (level, message, meta) => {
      let method = LEVELS[level] ?? 'info';
      if (perJob && method === 'info') method = 'debug';
      scoped[method](message, meta ? { ...meta } : undefined);
    };
  };
}
