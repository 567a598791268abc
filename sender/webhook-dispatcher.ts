// The webhook dispatcher: takes due deliveries (rows the event statements wrote, or retries whose
// time has come) under a lease and runs them in slots of their own, apart from the send slots, so
// that a slow or dead endpoint never delays mail. The rows are the queue: nothing per event goes
// through graphile-worker, whose NOTIFY on every job would serialise the senders' commits. A
// dispatcher that dies leaves its deliveries to another once the lease ends (at least once; the
// receiver tells a repeat by its webhook-id).

import {
  claimDueDeliveries,
  releaseDeliveries,
  type DeliveredAttempt,
  type DeliveryToSend,
} from '../lib/db/webhooks.js';
import type { Db } from '../lib/db/index.js';
import type { Queryable } from '../lib/db/transitions.js';
import type { Logger } from '../lib/log.js';

/** How often an idle dispatcher looks for due deliveries: an event's webhook leaves within this. */
const POLL_MS = 250;
/**
 * With the queue drained, how long after an attempt ends to let others end and new deliveries
 * come due before the next claim: attempts end and events arrive one by one, and a claim (which
 * also records the 2xx answers) for each would be a statement and a commit per event instead of
 * one per batch. A busy dispatcher, whose claims come back full, claims again at once.
 */
const GATHER_MS = 20;
/**
 * A delivery taken is someone else's to retry after this: longer than an attempt can take (the
 * receiver's 10 s timeout, plus the claim before it and the one that records it, at most a poll
 * later).
 */
const LEASE_SECONDS = 60;
/** A dispatcher that could not poll for this long is not ready (Postgres away). */
const STALL_NOT_READY_MS = 15_000;

export interface WebhookDispatcher {
  /** Undefined while it polls; otherwise why not. */
  readiness(): string | undefined;
  /** Stops taking deliveries, waits for the attempts under way and records their answers. */
  close(): Promise<void>;
}

/**
 * Starts polling; `deliver` runs one attempt of a delivery this dispatcher holds and resolves with
 * a 2xx answer to record, which goes with the next claim (at the latest one poll later). A
 * dispatcher killed before that leaves the delivery pending, sent again once its lease ends.
 *
 *   const dispatcher = startWebhookDispatcher({ db, pool, holder, concurrency: 32, log, deliver });
 */
export function startWebhookDispatcher(options: {
  db: Db;
  /** For the claim, a named statement. */
  pool: Queryable;
  /**
   * Whose leases: the worker id of this sender's send pool. When peers find its heartbeat stale,
   * they end its leases (releaseLeasesOf) instead of waiting for them to run out.
   */
  holder: string;
  concurrency: number;
  log: Logger;
  deliver: (delivery: DeliveryToSend) => Promise<DeliveredAttempt | undefined>;
  pollMs?: number;
}): WebhookDispatcher {
  const { db, log, concurrency } = options;
  const pollMs = options.pollMs ?? POLL_MS;
  const inFlight = new Set<Promise<void>>();
  let closed = false;
  let lastPollAt = Date.now();
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;

  // Deliveries taken but not yet started. A claim takes up to twice the slots, and claims again
  // only once half of that is gone, so that a busy dispatcher claims in batches rather than once
  // per delivery; a waiting delivery is behind at most one attempt per slot, well within its lease.
  const waiting: DeliveryToSend[] = [];
  const held = () => waiting.length + inFlight.size;
  // 2xx answers not yet recorded: the next statement records them.
  const delivered: DeliveredAttempt[] = [];

  const start = () => {
    while (inFlight.size < concurrency && waiting.length > 0) run(waiting.shift()!);
  };

  const run = (delivery: DeliveryToSend) => {
    const id = delivery.id;
    const attempt = options
      .deliver(delivery)
      .then((outcome) => {
        if (outcome) delivered.push(outcome);
      })
      .catch((err: unknown) =>
        log.error('webhook attempt failed unexpectedly', { deliveryId: id, err: err as Error }),
      )
      .finally(() => {
        inFlight.delete(attempt);
        start();
        // Room for another claim: look again at once, there may be more due.
        if (held() <= concurrency) wake?.();
      });
    inFlight.add(attempt);
  };

  /** Records `settling`; claims up to `limit` more. Resolves with how many it took. */
  const claim = async (limit: number, settling: DeliveredAttempt[]): Promise<number> => {
    try {
      const due = await claimDueDeliveries(options.pool, {
        limit,
        leaseSeconds: LEASE_SECONDS,
        holder: options.holder,
        delivered: settling,
      });
      lastPollAt = Date.now();
      waiting.push(...due);
      start();
      return due.length;
    } catch (err) {
      // Kept for the next statement; well within their lease.
      delivered.unshift(...settling);
      log.warn('could not look for due webhooks', { err: err as Error });
      return 0;
    }
  };

  const loop = async () => {
    // Whether the last claim found fewer due than it could take, and whether the last wait ended
    // on the poll rather than on an attempt ending.
    let drained = false;
    let polled = false;
    while (!closed) {
      const limit = held() <= concurrency ? 2 * concurrency - held() : 0;
      // Holding enough, answers go with the next claim, unless a whole poll passed without one.
      if (limit > 0 || (polled && delivered.length > 0)) {
        const taken = await claim(limit, delivered.splice(0));
        if (limit > 0) drained = taken < limit;
        // A full claim: there may be more due at once.
        if (limit > 0 && !drained) {
          polled = false;
          continue;
        }
      }
      // Wait for an attempt to end or for the next poll. With the queue drained, give others a
      // moment to end and new deliveries to come due, so that the next claim takes them together.
      const woken = await new Promise<boolean>((resolve) => {
        wake = () => resolve(true);
        timer = setTimeout(() => resolve(false), pollMs);
      });
      clearTimeout(timer);
      wake = undefined;
      polled = !woken;
      if (woken && drained && !closed) await new Promise((resolve) => setTimeout(resolve, GATHER_MS));
    }
  };
  const looping = loop();

  return {
    readiness() {
      const stalled = Date.now() - lastPollAt;
      if (held() <= concurrency && stalled > STALL_NOT_READY_MS) {
        return `webhooks: no poll for ${Math.round(stalled / 1000)} s`;
      }
      return undefined;
    },
    async close() {
      closed = true;
      wake?.();
      await looping;
      // Deliveries not started go back for another dispatcher to take now rather than when their
      // lease ends; those under way finish.
      const unstarted = waiting.splice(0).map((d) => d.id);
      await releaseDeliveries(db, unstarted).catch((err: unknown) =>
        log.warn('could not give back webhooks not attempted; they are due again when their lease ends', {
          err: err as Error,
        }),
      );
      while (inFlight.size > 0) await Promise.all(inFlight);
      const settling = delivered.splice(0);
      if (settling.length > 0) {
        await claimDueDeliveries(options.pool, {
          limit: 0,
          leaseSeconds: LEASE_SECONDS,
          holder: options.holder,
          delivered: settling,
        }).catch((err: unknown) =>
          log.warn('could not record webhooks delivered; they are sent again when their lease ends', {
            err: err as Error,
          }),
        );
      }
    },
  };
}
