// Webhook deliveries: what one attempt reads, and what its outcome writes. Each outcome is one
// statement on the delivery row and its endpoint (a retry queues its next job in the same
// statement), applied only to a pending delivery, so a job that runs twice records once.

import { sql } from 'kysely';
import type { Db } from './index.js';
import type { EventType } from './transitions.js';
import { DELIVER_WEBHOOK, DELIVER_WEBHOOK_MAX_ATTEMPTS } from '../jobs.js';
import type { WebhookEventType } from '../webhooks.js';

/**
 * Seconds before each retry, after the first attempt (which is immediate): Standard Webhooks'
 * schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), eight attempts over about 28 hours.
 */
export const WEBHOOK_RETRY_SECONDS = [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600];
/** An endpoint that has failed every attempt for this long is disabled, and told why. */
export const DISABLE_AFTER_FAILING_DAYS = 5;

export interface DeliveryToSend {
  id: string;
  endpointId: string;
  url: string;
  enabled: boolean;
  /** Encrypted envelopes; the previous one while a rotation is under way. */
  secrets: string[];
  status: string;
  attempts: number;
  type: WebhookEventType;
  eventType: EventType;
  eventCreatedAt: Date;
  emailId: string;
  from: string;
  to: string[];
  subject: string;
  recipient: string | null;
  tags: { name: string; value: string }[];
  detail: Record<string, unknown>;
}

/** Reads a delivery with its endpoint, event, email and message; undefined when it is gone. */
export async function loadDelivery(db: Db, deliveryId: string): Promise<DeliveryToSend | undefined> {
  const { rows } = await sql<{
    id: string;
    endpoint_id: string;
    url: string;
    enabled: boolean;
    secret: string;
    previous_secret: string | null;
    status: string;
    attempts: number;
    type: WebhookEventType;
    event_type: EventType;
    event_created_at: Date;
    email_id: string;
    from_address: string;
    content: { to?: string[]; tags?: { name: string; value: string }[] };
    subject: string;
    recipient: string | null;
    detail: Record<string, unknown>;
  }>`
    select d.id, d.endpoint_id, w.url, w.enabled, w.secret,
           case when w.previous_secret_expires_at > now() then w.previous_secret end as previous_secret,
           d.status, d.attempts, d.type, ev.type as event_type, ev.created_at as event_created_at,
           e.id as email_id, e.from_address, e.content, e.subject, m.recipient, ev.detail
    from webhook_deliveries d
    join webhook_endpoints w on w.id = d.endpoint_id
    join events ev on ev.id = d.event_id
    join emails e on e.id = ev.email_id
    left join messages m on m.id = ev.message_id
    where d.id = ${deliveryId}`.execute(db);
  const row = rows[0];
  if (!row) return undefined;
  return {
    id: row.id,
    endpointId: row.endpoint_id,
    url: row.url,
    enabled: row.enabled,
    secrets: [row.secret, ...(row.previous_secret ? [row.previous_secret] : [])],
    status: row.status,
    attempts: row.attempts,
    type: row.type,
    eventType: row.event_type,
    eventCreatedAt: row.event_created_at,
    emailId: row.email_id,
    from: row.from_address,
    to: row.content.to ?? [],
    subject: row.subject,
    recipient: row.recipient,
    tags: row.content.tags ?? [],
    detail: row.detail,
  };
}

export interface AttemptResult {
  status?: number;
  excerpt?: string;
  error?: string;
  latencyMs?: number;
}

/** A 2xx: delivered, and the endpoint no longer failing. */
export async function deliveryDelivered(db: Db, id: string, result: AttemptResult): Promise<boolean> {
  const { rows } = await sql`
    with d as (
      update webhook_deliveries
      set status = 'delivered', attempts = attempts + 1, delivered_at = now(), next_attempt_at = null,
          response_status = ${result.status ?? null}, response_excerpt = ${result.excerpt ?? null},
          error = null, latency_ms = ${result.latencyMs ?? null}
      where id = ${id} and status = 'pending'
      returning endpoint_id
    )
    update webhook_endpoints w set failing_since = null
    from d where w.id = d.endpoint_id and w.failing_since is not null
    returning 1`.execute(db);
  return rows.length >= 0;
}

/**
 * A failed attempt: retried on WEBHOOK_RETRY_SECONDS (a new job at that time, in the same
 * statement), or failed once the schedule is spent. The endpoint is marked failing since its
 * first failure, and disabled (with the reason) when `disable` says so or once it has failed for
 * DISABLE_AFTER_FAILING_DAYS. Answers when the next attempt is, if any.
 */
export async function deliveryFailed(
  db: Db,
  id: string,
  result: AttemptResult,
  options: { disable?: string } = {},
): Promise<Date | null> {
  const { rows } = await sql<{ next_attempt_at: Date | null }>`
    with current as (
      select d.id, d.endpoint_id, d.attempts + 1 as attempts,
             (${sql.raw(`array[${WEBHOOK_RETRY_SECONDS.join(', ')}]`)})[d.attempts + 1] as delay
      from webhook_deliveries d where d.id = ${id} and d.status = 'pending'
    ), endpoint as (
      update webhook_endpoints w
      set failing_since = coalesce(w.failing_since, now()), updated_at = now(),
          enabled = case when ${options.disable ?? null}::text is not null
                           or coalesce(w.failing_since, now()) < now() - make_interval(days => ${DISABLE_AFTER_FAILING_DAYS})
                         then false else w.enabled end,
          disabled_reason = case
            when ${options.disable ?? null}::text is not null then ${options.disable ?? null}
            when coalesce(w.failing_since, now()) < now() - make_interval(days => ${DISABLE_AFTER_FAILING_DAYS})
              then 'every delivery has failed since ' || to_char(w.failing_since, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            else w.disabled_reason end
      from current c where w.id = c.endpoint_id
      returning w.enabled
    ), updated as (
      update webhook_deliveries d
      set attempts = c.attempts,
          status = case when c.delay is null or not e.enabled then 'failed' else 'pending' end,
          next_attempt_at = case when c.delay is null or not e.enabled then null
                                 else now() + make_interval(secs => c.delay) end,
          response_status = ${result.status ?? null}, response_excerpt = ${result.excerpt ?? null},
          error = ${result.error ?? null}, latency_ms = ${result.latencyMs ?? null}
      from current c, endpoint e
      where d.id = c.id
      returning d.id, d.status, d.next_attempt_at
    ), job as (
      select graphile_worker.add_job(
        ${DELIVER_WEBHOOK}, json_build_object('deliveryId', u.id::text),
        run_at => u.next_attempt_at, max_attempts => ${DELIVER_WEBHOOK_MAX_ATTEMPTS}
      ) from updated u where u.status = 'pending'
    )
    select u.next_attempt_at, (select count(*) from job) as jobs from updated u`.execute(db);
  return rows[0]?.next_attempt_at ?? null;
}

/** An endpoint disabled (or deleted) before this attempt: the delivery ends unsent. */
export async function deliveryAbandoned(db: Db, id: string, reason: string): Promise<void> {
  await sql`
    update webhook_deliveries set status = 'failed', error = ${reason}, next_attempt_at = null
    where id = ${id} and status = 'pending'`.execute(db);
}
