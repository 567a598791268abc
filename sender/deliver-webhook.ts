// One attempt of one event to one endpoint, as the webhook dispatcher (webhook-dispatcher.ts) runs
// it in slots of its own, so a slow or dead endpoint holds webhook slots, never send slots.
//
//   load → endpoint disabled? abandoned | endpoint paused? not sent, retried on the schedule |
//   sign → POST → 2xx delivered (the dispatcher records it with its next claim) |
//   410 Gone: endpoint disabled | a timeout: the endpoint paused, retried on the schedule |
//   anything else: retried on the schedule, then failed

import type { KeyObject } from 'node:crypto';
import { decrypt } from '../lib/crypto.js';
import type { Db } from '../lib/db/index.js';
import {
  PAUSE_SECONDS,
  deliveryAbandoned,
  deliveryFailed,
  deliveryOrphaned,
  type DeliveredAttempt,
  type DeliveryToSend,
} from '../lib/db/webhooks.js';
import type { Logger } from '../lib/log.js';
import type { Metrics } from '../lib/metrics.js';
import { signWebhook, webhookPayload, webhookSigningKey } from '../lib/webhooks.js';
import { postWebhook, WebhookError, type WebhookErrorCode } from './webhook-http.js';

export interface DeliverWebhookDeps {
  db: Db;
  secretKey: Buffer;
  log: Logger;
  metrics: Pick<Metrics, 'webhookAttempts' | 'webhookLatency'>;
  /** MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: plain http and private addresses (tests, `make dev`). */
  allowPrivate: boolean;
}

/** The attempts counter's outcome for an attempt that got no answer. */
const OUTCOME_OF: Record<WebhookErrorCode, string> = {
  ETIMEOUT: 'timeout',
  ENETWORK: 'network',
  EBLOCKED: 'blocked',
  EURL: 'blocked',
};

/** Endpoints whose pause this sender remembers itself (beyond, the endpoint's row still tells). */
const PAUSED_ENDPOINT_ENTRIES = 1_000;

/** The later of two times, either of which may be missing. */
function later(a: Date | null | undefined, b: Date | undefined): Date | undefined {
  if (!a) return b;
  if (!b) return a;
  return a > b ? a : b;
}

/** Bounded excerpt of a receiver's answer kept in the log of deliveries. */
const ERROR_CHARS = 500;

/** Signing keys by secret envelope: an envelope never changes, and decrypting costs per event. */
const SECRET_CACHE_ENTRIES = 1_000;

/**
 * Creates the attempt function the dispatcher calls with a delivery it holds. An attempt that got
 * a 2xx is not written here: it resolves with what to record, and the dispatcher records it with
 * its next claim, one statement for a whole batch (claimDueDeliveries). Every other outcome is
 * written before it resolves.
 *
 *   const deliver = createWebhookDeliverer({ db, secretKey, log, metrics, allowPrivate });
 *   const delivered = await deliver(delivery);   // one claimDueDeliveries returned
 */
export function createWebhookDeliverer(deps: DeliverWebhookDeps) {
  const { db } = deps;
  const attempts = deps.metrics.webhookAttempts;
  const latency = deps.metrics.webhookLatency;
  const keys = new Map<string, KeyObject>();
  // Endpoints this sender saw time out, until when: the shortest pause, as deliveryFailed sets it.
  const pauses = new Map<string, Date>();
  const pauseLocally = (endpointId: string) => {
    if (pauses.size >= PAUSED_ENDPOINT_ENTRIES) {
      const now = Date.now();
      for (const [id, until] of pauses) if (until.getTime() <= now) pauses.delete(id);
      if (pauses.size >= PAUSED_ENDPOINT_ENTRIES) pauses.delete(pauses.keys().next().value!);
    }
    pauses.set(endpointId, new Date(Date.now() + PAUSE_SECONDS[0] * 1000));
  };
  const keyOf = (envelope: string): KeyObject => {
    let key = keys.get(envelope);
    if (key === undefined) {
      key = webhookSigningKey(decrypt(deps.secretKey, envelope));
      if (keys.size >= SECRET_CACHE_ENTRIES) keys.delete(keys.keys().next().value!);
      keys.set(envelope, key);
    }
    return key;
  };
  return async function deliverWebhook(delivery: DeliveryToSend): Promise<DeliveredAttempt | undefined> {
    // A logger of its own only when there is something to say: most attempts say nothing.
    const log = () => deps.log.child({ deliveryId: delivery.id });
    if (delivery.status !== 'pending') return;
    if (delivery.orphaned) {
      await deliveryOrphaned(db, delivery.id);
      attempts.inc({ outcome: 'abandoned' });
      return;
    }
    if (!delivery.enabled) {
      await deliveryAbandoned(db, delivery.id, 'the endpoint is disabled');
      attempts.inc({ outcome: 'abandoned' });
      return;
    }
    // Paused after a timeout, here or in another sender (as the claim read it): not sent, and due
    // again on its schedule, rather than holding a slot for another timeout.
    const pausedUntil = later(delivery.pausedUntil, pauses.get(delivery.endpointId));
    if (pausedUntil !== undefined && pausedUntil.getTime() > Date.now()) {
      attempts.inc({ outcome: 'paused' });
      const next = await deliveryFailed(db, delivery.id, {
        sentAt: new Date(),
        error: `EPAUSED: not sent: the endpoint did not answer in time lately; paused until ${pausedUntil.toISOString()}`,
      });
      deps.log.debug('webhook not sent: the endpoint is paused', { deliveryId: delivery.id, next });
      return;
    }

    const body = JSON.stringify(
      webhookPayload({
        type: delivery.type,
        eventType: delivery.eventType,
        createdAt: delivery.eventCreatedAt,
        emailId: delivery.emailId,
        messageId: delivery.messageId,
        from: delivery.from,
        to: delivery.to,
        subject: delivery.subject,
        recipient: delivery.recipient,
        tags: delivery.tags,
        detail: delivery.detail,
      }),
    );
    // The same id on every attempt, so that a receiver can tell a retry from a new event.
    const id = `msg_${delivery.id}`;
    const timestamp = Math.floor(Date.now() / 1000);
    const signers = delivery.secrets.map(keyOf);
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'Mailplane-Webhooks/1',
      'webhook-id': id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signWebhook(signers, id, timestamp, body),
    };

    const sentAt = new Date();
    try {
      const res = await postWebhook(delivery.url, headers, body, { allowPrivate: deps.allowPrivate });
      const result = { sentAt, status: res.status, excerpt: res.excerpt, latencyMs: res.latencyMs };
      latency.observe(res.latencyMs / 1000);
      if (res.status >= 200 && res.status < 300) {
        attempts.inc({ outcome: 'delivered' });
        deps.log.debug('webhook delivered', {
          deliveryId: delivery.id,
          status: res.status,
          latencyMs: res.latencyMs,
        });
        return { id: delivery.id, result };
      }
      // 410 Gone: the receiver says the endpoint is no more (Standard Webhooks).
      const disable = res.status === 410 ? 'the endpoint answered 410 Gone' : undefined;
      attempts.inc({ outcome: disable ? 'gone' : 'refused' });
      const next = await deliveryFailed(db, delivery.id, result, { disable });
      log().info('webhook refused', { status: res.status, next });
    } catch (err) {
      if (!(err instanceof WebhookError)) throw err;
      attempts.inc({ outcome: OUTCOME_OF[err.code] });
      const pause = err.code === 'ETIMEOUT';
      // At once for the attempts this sender already holds; the endpoint's row tells the others.
      if (pause) pauseLocally(delivery.endpointId);
      const next = await deliveryFailed(
        db,
        delivery.id,
        { sentAt, error: `${err.code}: ${err.message}`.slice(0, ERROR_CHARS) },
        { pause },
      );
      log().info('webhook not delivered', { code: err.code, error: err.message, next });
    }
  };
}
