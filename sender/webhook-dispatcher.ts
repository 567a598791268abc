// The webhook dispatcher: takes due deliveries (rows the event statements wrote, or retries whose
// time has come) under a lease and runs them in slots of their own, apart from the send slots, so
// that a slow or dead endpoint never delays mail. The rows are the queue: nothing per event goes
// through graphile-worker, whose NOTIFY on every job would serialise the senders' commits. A
// dispatcher that dies leaves its deliveries to another once the lease ends (at least once; the
// receiver tells a repeat by its webhook-id).

import { claimDueDeliveries, releaseDeliveries, type DeliveryToSend } from '../lib/db/webhooks.js';
import type { Db } from '../lib/db/index.js';
import type { Logger } from '../lib/log.js';

/** How often an idle dispatcher looks for due deliveries: an event's webhook leaves within this. */
const POLL_MS = 250;
/**
 * A delivery taken is someone else's to retry after this: longer than an attempt can take (the
 * receiver's 10 s timeout, plus the two statements around it).
 */
const LEASE_SECONDS = 60;
/** A dispatcher that could not poll for this long is not ready (Postgres away). */
const STALL_NOT_READY_MS = 15_000;

export interface WebhookDispatcher {
  /** Undefined while it polls; otherwise why not. */
  readiness(): string | undefined;
  /** Stops taking deliveries and waits for the attempts under way. */
  close(): Promise<void>;
}

/**
 * Starts polling; `deliver` runs one attempt of a delivery this dispatcher holds.
 *
 *   const dispatcher = startWebhookDispatcher({ db, concurrency: 8, log, deliver });
 */
export function startWebhookDispatcher(options: {
  db: Db;
  concurrency: number;
  log: Logger;
  deliver: (delivery: DeliveryToSend) => Promise<void>;
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

  const start = () => {
    while (inFlight.size < concurrency && waiting.length > 0) run(waiting.shift()!);
  };

  const run = (delivery: DeliveryToSend) => {
    const id = delivery.id;
    const attempt = options
      .deliver(delivery)
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

  const loop = async () => {
    while (!closed) {
      let taken = 0;
      if (held() <= concurrency) {
        try {
          const due = await claimDueDeliveries(db, {
            limit: 2 * concurrency - held(),
            leaseSeconds: LEASE_SECONDS,
          });
          lastPollAt = Date.now();
          taken = due.length;
          waiting.push(...due);
          start();
        } catch (err) {
          log.warn('could not look for due webhooks', { err: err as Error });
        }
      }
      // Holding enough, or nothing due: wait for room to free or for the next poll.
      if (taken === 0 || held() > concurrency) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, pollMs);
        });
        clearTimeout(timer);
        wake = undefined;
      }
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
    },
  };
}
