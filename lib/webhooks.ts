// Webhook events in Resend's names and shapes, signed by the Standard Webhooks scheme
// (standardwebhooks.com): `webhook-id`, `webhook-timestamp` and `webhook-signature` headers, the
// signature an HMAC-SHA256 of `${id}.${timestamp}.${body}` under the endpoint's `whsec_` secret,
// so that the `standardwebhooks` and `svix` libraries verify them unchanged. While a secret is
// being rotated both the new and the previous one sign (space-separated signatures), and a receiver
// accepts either.

import { createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import type { EventType } from './db/transitions.js';

/** The events a webhook endpoint may subscribe to, in Resend's names. */
export const WEBHOOK_EVENT_TYPES = [
  'email.scheduled',
  'email.sent',
  'email.delivered',
  'email.delivery_delayed',
  'email.bounced',
  'email.complained',
  'email.failed',
  'email.suppressed',
  'email.canceled',
  'email.unsubscribed',
  'email.opened',
  'email.clicked',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/**
 * The webhook event a timeline event becomes, or none. `sending` is announced once, as
 * `email.sent`, at the first attempt; a deferral and a delay reported down the line are both
 * `email.delivery_delayed`.
 */
export const WEBHOOK_TYPE_OF: Record<EventType, WebhookEventType | null> = {
  scheduled: 'email.scheduled',
  sending: 'email.sent',
  delivered: 'email.delivered',
  deferred: 'email.delivery_delayed',
  delayed: 'email.delivery_delayed',
  bounced: 'email.bounced',
  complained: 'email.complained',
  failed: 'email.failed',
  suppressed: 'email.suppressed',
  canceled: 'email.canceled',
  unsubscribed: 'email.unsubscribed',
  opened: 'email.opened',
  clicked: 'email.clicked',
};

/**
 * WEBHOOK_TYPE_OF as a SQL expression over an `ev` row (type, detail), for the statement that
 * writes the event (lib/db/transitions.ts).
 */
export const WEBHOOK_TYPE_SQL = `case ev.type ${Object.entries(WEBHOOK_TYPE_OF)
  .filter(([, hook]) => hook !== null)
  .map(([type, hook]) =>
    type === 'sending'
      ? `when 'sending' then case when (ev.detail->>'attempt')::int = 1 then '${hook}' end`
      : `when '${type}' then '${hook}'`,
  )
  .join(' ')} end`;

const SECRET_PREFIX = 'whsec_';
/** Svix's size: 24 random bytes, 192 bits. */
const SECRET_BYTES = 24;

/**
 * A new signing secret, `whsec_` and base64, as Standard Webhooks libraries take it.
 *
 *   const secret = newWebhookSecret();   // shown once to the user, stored encrypted
 */
export function newWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(SECRET_BYTES).toString('base64');
}

/**
 * The key a `whsec_…` secret signs with. Made once per secret and kept: an HMAC from a KeyObject
 * costs a quarter of one from the secret's bytes, which Node turns into a key on every call.
 *
 *   const key = webhookSigningKey(secret);
 */
export function webhookSigningKey(secret: string): KeyObject {
  return createSecretKey(
    Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64'),
  );
}

/**
 * The `webhook-signature` header value: one `v1,<base64>` per key, space-separated.
 *
 *   signWebhook([webhookSigningKey(secret)], 'msg_42', 1733000000, body)   // 'v1,K5oZ…'
 */
export function signWebhook(keys: readonly KeyObject[], id: string, timestamp: number, body: string): string {
  const content = `${id}.${timestamp}.${body}`;
  return keys.map((key) => `v1,${createHmac('sha256', key).update(content).digest('base64')}`).join(' ');
}

/** What a delivery reads to build its payload. */
export interface WebhookEventRow {
  type: WebhookEventType;
  eventType: EventType;
  createdAt: Date;
  emailId: string;
  messageId: string;
  from: string;
  to: string[];
  subject: string;
  recipient: string | null;
  tags: { name: string; value: string }[];
  detail: Record<string, unknown>;
}

/**
 * The body Resend sends for an event: `{type, created_at, data: {email_id, from, to, subject, …}}`,
 * with the bounce or the reply where Resend has one.
 */
export function webhookPayload(event: WebhookEventRow): Record<string, unknown> {
  const { detail } = event;
  const reply = typeof detail.reply === 'string' ? detail.reply : undefined;
  const data: Record<string, unknown> = {
    created_at: event.createdAt.toISOString(),
    email_id: event.emailId,
    message_id: event.messageId,
    from: event.from,
    to: event.to,
    subject: event.subject,
    ...(event.recipient ? { recipient: event.recipient } : {}),
    tags: Object.fromEntries(event.tags.map((t) => [t.name, t.value])),
  };
  if (event.type === 'email.bounced') {
    // The class (sender/outcome.ts) says whose fault: only a wrong address is Permanent, as SES and
    // Resend mean it (the address will never take mail); events from before classes read the status.
    const permanent =
      typeof detail.class === 'string'
        ? detail.class === 'hard'
        : typeof detail.status === 'string'
          ? detail.status.startsWith('5')
          : true;
    data.bounce = {
      type: permanent ? 'Permanent' : 'Transient',
      subType: typeof detail.status === 'string' ? detail.status : 'General',
      message: reply ?? 'The recipient’s server refused the message.',
    };
  }
  if (event.type === 'email.failed' || event.type === 'email.delivery_delayed') {
    data.failed = { reason: String(detail.reason ?? reply ?? detail.message ?? event.eventType) };
  }
  if (event.type === 'email.complained' && typeof detail.feedback_type === 'string') {
    data.complaint = { type: detail.feedback_type };
  }
  if (event.type === 'email.unsubscribed') {
    data.unsubscribe = { method: typeof detail.method === 'string' ? detail.method : 'one-click' };
  }
  if (event.type === 'email.opened' || event.type === 'email.clicked') {
    // Resend's click object (ipAddress, link, timestamp, userAgent), and whether a person made it.
    const fetch: Record<string, unknown> = {
      ...(typeof detail.ip === 'string' ? { ipAddress: detail.ip } : {}),
      ...(typeof detail.link === 'string' ? { link: detail.link } : {}),
      timestamp: event.createdAt.toISOString(),
      ...(typeof detail.user_agent === 'string' ? { userAgent: detail.user_agent } : {}),
      machine: detail.machine === true,
      ...(typeof detail.machine_reason === 'string' ? { machineReason: detail.machine_reason } : {}),
    };
    data[event.type === 'email.opened' ? 'open' : 'click'] = fetch;
  }
  if (reply && event.type === 'email.delivered') data.reply = reply;
  return { type: event.type, created_at: event.createdAt.toISOString(), data };
}
