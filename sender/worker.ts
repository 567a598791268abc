// The sender process: a graphile-worker runner with the send_message task, tuned for many short
// jobs, logging through Mailplane's JSON logger, and a stop() that lets sends under way finish.
// It also keeps itself honest: a heartbeat lets peers take its jobs if it dies (heartbeat.ts),
// and a runner that ended, lost its heartbeat or cannot fetch jobs makes `done` reject and
// `readiness()` say why, so that main exits and Kubernetes restarts the process.

import { EventEmitter } from 'node:events';
import {
  Logger as WorkerLogger,
  parseCronItems,
  run,
  type LogFunctionFactory,
  type CronItem,
  type TaskList,
  type WorkerEvents,
} from 'graphile-worker';
import type pg from 'pg';
import type { Config } from '../lib/config.js';
import type { Db } from '../lib/db/index.js';
import { purgeIdempotencyKeys } from '../lib/db/idempotency.js';
import { requeueStrandedBroadcasts } from '../lib/db/broadcasts.js';
import { releaseLeasesOf } from '../lib/db/webhooks.js';
import { PURGE_IDEMPOTENCY_KEYS, REQUEUE_BROADCASTS, SEND_BROADCAST, SEND_MESSAGE } from '../lib/jobs.js';
import type { Logger } from '../lib/log.js';
import type { Metrics } from '../lib/metrics.js';
import type { Renderer } from '../lib/render/sandbox.js';
import { createResolver } from '../lib/resolver.js';
import { createWebhookDeliverer } from './deliver-webhook.js';
import { startHeartbeat, type Heartbeat } from './heartbeat.js';
import { createSendMessageTask } from './send-message.js';
import { createSendBroadcastTask } from './broadcast-task.js';
import { createTransport, isFqdn, type Transport } from './transport.js';
import { createTlsReport } from './tls-report.js';
import { startWebhookDispatcher } from './webhook-dispatcher.js';

export interface SenderDeps {
  pool: pg.Pool;
  db: Db;
  config: Config;
  log: Logger;
  metrics: Metrics;
  renderer: Renderer;
  /** Where messages go; by default built from the config (relay or direct MX), and closed by stop(). */
  transport?: Transport;
  /** Shorter bounds for tests; the defaults are the constants below and in heartbeat.ts. */
  timing?: { beatIntervalMs?: number; staleAfterMs?: number; stallNotReadyMs?: number; stallExitMs?: number };
}

export interface Sender {
  /** Takes no new jobs, returns locally queued ones, waits for sends under way, closes SMTP pools. */
  stop(): Promise<void>;
  /**
   * Resolves when stop() has stopped the runner; rejects when the sender cannot go on by itself:
   * the runner ended without stop() (graphile-worker may resolve rather than reject when its pool
   * fails), a peer declared it dead, or it could not fetch jobs for FETCH_STALL_EXIT_MS. Main
   * exits on the rejection and the orchestrator starts a fresh process.
   */
  done: Promise<void>;
  /** Undefined while the sender takes jobs; otherwise why not, for /readyz. */
  readiness(): string | undefined;
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
 * A sender with a free slot that has not fetched jobs for this long is not ready: graphile-worker's
 * local queue fetches at least every pollInterval (2 s) while it has room, so this is many missed
 * polls (Postgres unreachable, the pool exhausted).
 */
const FETCH_STALL_NOT_READY_MS = 15_000;
/**
 * …and past this it gives up and exits, to be restarted with fresh connections: a sender that
 * survives a Postgres restart resumes well within it, one that cannot must not linger as a live
 * process that sends nothing.
 */
const FETCH_STALL_EXIT_MS = 60_000;
/** How often the stall is checked. */
const WATCHDOG_INTERVAL_MS = 1_000;

/** One graphile-worker runner with its heartbeat and watchdog: see startSender. */
interface SupervisedRunner {
  /** Its pool's id: the `locked_by` of its jobs, and what its heartbeat beats for. */
  workerId: string;
  done: Promise<void>;
  readiness(): string | undefined;
  stop(): Promise<void>;
}

/**
 * Starts a runner for `taskList`, beating a heartbeat for its pool, and watching that it fetches:
 * `done` rejects when it cannot go on (see Sender.done).
 */
async function startRunner(
  deps: SenderDeps,
  spec: {
    name: string;
    concurrency: number;
    taskList: TaskList;
    cron?: CronItem[];
  },
): Promise<SupervisedRunner> {
  const log = deps.log.child({ runner: spec.name });
  const events: WorkerEvents = new EventEmitter();
  let workerId: string | undefined;
  events.on('pool:create', ({ workerPool }) => (workerId = workerPool.id));
  // Signs of a runner that works: a fetch that returned (jobs or none), a job started or ended.
  let lastFetchAt = Date.now();
  let running = 0;
  const fetched = () => (lastFetchAt = Date.now());
  events.on('localQueue:getJobs:complete', fetched);
  events.on('worker:getJob:empty', fetched);
  events.on('job:start', () => {
    running++;
    fetched();
  });
  events.on('job:complete', () => {
    running--;
    fetched();
  });

  const runner = await run({
    pgPool: deps.pool,
    concurrency: spec.concurrency,
    noHandleSignals: true,
    events,
    taskList: spec.taskList,
    // Cron jobs are declared in code, not in a crontab file; graphile-worker schedules each once
    // across all senders.
    parsedCronItems: parseCronItems(spec.cron ?? []),
    logger: new WorkerLogger(workerLogFactory(log.child({ component: 'graphile-worker' }))),
    preset: {
      worker: {
        localQueue: { size: spec.concurrency * LOCAL_QUEUE_PER_SLOT },
        completeJobBatchDelay: JOB_BATCH_DELAY_MS,
        failJobBatchDelay: JOB_BATCH_DELAY_MS,
      },
    },
  });

  let stopping: Promise<void> | undefined;
  let fatal: ((reason: string) => void) | undefined;
  const failed = new Promise<never>((_, reject) => {
    fatal = (reason: string) => {
      if (stopping) return;
      log.error('sender cannot go on; exiting so that it is restarted', { reason });
      reject(new Error(reason));
    };
  });
  failed.catch(() => {});

  let heartbeat: Heartbeat;
  try {
    if (!workerId) throw new Error('graphile-worker started no worker pool');
    heartbeat = startHeartbeat({
      pool: deps.pool,
      workerId,
      log,
      onLost: (reason) => fatal!(reason),
      onRecovered: (workers, jobs) => {
        deps.metrics.recoveredJobs.inc(jobs);
        // Their webhooks too: a dead sender's dispatcher held leases in its send pool's name.
        releaseLeasesOf(deps.pool, workers).then(
          (released) => {
            deps.metrics.recoveredWebhooks.inc(released);
            if (released > 0)
              log.warn('took over the webhooks of senders that stopped beating', { released });
          },
          (err: unknown) =>
            log.warn('could not end the webhook leases of dead senders; they end on their own', {
              err: err as Error,
            }),
        );
      },
      intervalMs: deps.timing?.beatIntervalMs,
      staleAfterMs: deps.timing?.staleAfterMs,
    });
    await heartbeat.started;
  } catch (err) {
    await runner.stop().catch(() => {});
    throw err;
  }

  // graphile-worker can resolve its promise when its pool fails; only stop() may end it.
  let runnerEnded = false;
  void runner.promise.then(
    () => {
      runnerEnded = true;
      fatal!('the job runner stopped');
    },
    (err: unknown) => {
      runnerEnded = true;
      fatal!(`the job runner failed: ${(err as Error)?.message ?? String(err)}`);
    },
  );

  const stallNotReadyMs = deps.timing?.stallNotReadyMs ?? FETCH_STALL_NOT_READY_MS;
  const stallExitMs = deps.timing?.stallExitMs ?? FETCH_STALL_EXIT_MS;
  const stalledFor = () => (running >= spec.concurrency ? 0 : Date.now() - lastFetchAt);
  const watchdog = setInterval(() => {
    if (stalledFor() > stallExitMs) {
      fatal!(`no jobs could be fetched for ${Math.round(stalledFor() / 1000)} s`);
    }
  }, WATCHDOG_INTERVAL_MS);
  watchdog.unref();

  const done = Promise.race([
    failed,
    // An end without stop() is a failure, which `failed` reports (see above).
    runner.promise.then(() => (stopping ? undefined : failed)),
  ]);
  // Whoever runs the sender decides what a failure means (main exits); unobserved, it is no crash.
  done.catch(() => {});
  log.debug('job runner started', { workerId, concurrency: spec.concurrency });

  return {
    workerId,
    done,
    readiness() {
      const stalled = stalledFor();
      if (stopping) return 'stopping';
      if (stalled > stallNotReadyMs)
        return `${spec.name}: no jobs fetched for ${Math.round(stalled / 1000)} s`;
      return undefined;
    },
    stop() {
      stopping ??= (async () => {
        clearInterval(watchdog);
        try {
          if (!runnerEnded) await runner.stop();
        } finally {
          await heartbeat.close();
        }
      })();
      return stopping;
    },
  };
}

/**
 * Starts sending; resolves once the job runner is up (send_message and the cron jobs), with the
 * webhook dispatcher beside it in slots of its own, so that a slow or dead webhook endpoint never
 * takes a send slot.
 *
 *   const sender = await startSender({ pool, db, config, log, metrics, renderer });
 *   process.once('SIGTERM', () => void sender.stop());
 */
export async function startSender(deps: SenderDeps): Promise<Sender> {
  const { config, log } = deps;
  if (!deps.transport && !isFqdn(config.heloName)) {
    log.warn(
      'MAILPLANE_HELO_NAME is not a fully qualified domain name; EHLO names each sending domain instead',
      {
        heloName: config.heloName,
      },
    );
  }
  const transport =
    deps.transport ??
    createTransport({
      relayUrl: config.relayUrl,
      heloName: config.heloName,
      // Through a relay, every job can have its own connection.
      maxConnections: config.relayUrl ? config.senderConcurrency : undefined,
      resolver: createResolver(config.dnsServers),
      port: config.mxPort,
      mtaStsPort: config.mtaStsPort,
      allowPrivate: config.deliveryAllowPrivate,
      tlsReport: createTlsReport(deps.metrics),
      log: log.child({ component: 'transport' }),
    });
  const ownsTransport = !deps.transport;

  const runners: SupervisedRunner[] = [];
  try {
    runners.push(
      await startRunner(deps, {
        name: 'send',
        concurrency: config.senderConcurrency,
        taskList: {
          [SEND_MESSAGE]: createSendMessageTask({ ...deps, transport }),
          [SEND_BROADCAST]: createSendBroadcastTask({ db: deps.db, pool: deps.pool, config, log }),
          [PURGE_IDEMPOTENCY_KEYS]: async () => {
            const purged = await purgeIdempotencyKeys(deps.db);
            if (purged > 0) log.info('purged expired idempotency keys', { purged });
          },
          [REQUEUE_BROADCASTS]: async () => {
            const requeued = await requeueStrandedBroadcasts(deps.db);
            if (requeued > 0) log.warn('requeued broadcasts left without a job', { requeued });
          },
        },
        cron: [
          {
            task: PURGE_IDEMPOTENCY_KEYS,
            identifier: PURGE_IDEMPOTENCY_KEYS,
            match: '17 * * * *',
            // A missed hour is caught up by the next one: nothing to backfill.
            options: { backfillPeriod: 0, maxAttempts: 3 },
          },
          {
            task: REQUEUE_BROADCASTS,
            identifier: REQUEUE_BROADCASTS,
            match: '*/10 * * * *',
            options: { backfillPeriod: 0, maxAttempts: 3 },
          },
        ],
      }),
    );
  } catch (err) {
    await Promise.all(runners.map((r) => r.stop().catch(() => {})));
    if (ownsTransport) await transport.close();
    throw err;
  }
  const dispatcher = startWebhookDispatcher({
    db: deps.db,
    pool: deps.pool,
    holder: runners[0]!.workerId,
    concurrency: config.webhookConcurrency,
    log: log.child({ component: 'webhooks' }),
    deliver: createWebhookDeliverer({
      db: deps.db,
      secretKey: config.secretKey,
      metrics: deps.metrics,
      log: log.child({ component: 'webhooks' }),
      allowPrivate: config.webhooksAllowPrivate,
    }),
  });
  log.info('sender started', {
    concurrency: config.senderConcurrency,
    webhookConcurrency: config.webhookConcurrency,
    relay: Boolean(config.relayUrl),
  });

  let stopping: Promise<void> | undefined;
  const done = Promise.all(runners.map((r) => r.done)).then(() => {});
  done.catch(() => {});
  return {
    done,
    readiness() {
      if (stopping) return 'stopping';
      return [...runners.map((r) => r.readiness()), dispatcher.readiness()].find(
        (reason) => reason !== undefined,
      );
    },
    stop() {
      stopping ??= (async () => {
        log.info('sender stopping: finishing the sends under way');
        try {
          await Promise.all([...runners.map((r) => r.stop()), dispatcher.close()]);
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
      // A pool smaller than the concurrency is the design here (a job holds a connection only for
      // its two statements, not while it talks SMTP), not the misconfiguration it warns of.
      if (message.startsWith('WARNING: having maxPoolSize')) method = 'debug';
      scoped[method](message, meta ? { ...meta } : undefined);
    };
  };
}
