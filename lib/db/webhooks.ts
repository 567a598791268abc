// Webhook deliveries: the dispatcher's claim of due ones, what one attempt reads, and what its
// outcome writes. Each outcome is one statement on the delivery row and its endpoint, applied only
// to a pending delivery, so an attempt that runs twice (a lease that ran out) records once.
// Below them, what /v1/webhooks reads and writes: a tenant's endpoints (every query scoped to the
// tenant, every change to endpoints of source 'api' only), the log of deliveries, and replay.

import { sql, type Selectable } from 'kysely';
import type { Db } from './index.js';
import { eventFields } from './event-fields.js';
import type { WebhookDeliveryTable, WebhookEndpointTable } from './schema.js';
import type { EventType, Queryable } from './transitions.js';
import { WEBHOOK_TYPE_SQL, type WebhookEventType } from '../webhooks.js';
import { messageIdOf } from '../message-id.js';

/**
 * Seconds before each retry, after the first attempt (which is immediate): Standard Webhooks'
 * schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), eight attempts over about 28 hours.
 */
export const WEBHOOK_RETRY_SECONDS = [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600];
/**
 * How long an endpoint is paused after a timeout: as long as it has been failing, at least the
 * first and at most the second of these.
 */
export const PAUSE_SECONDS = [5, 300] as const;
/** An endpoint that has failed every attempt for this long is disabled, and told why. */
export const DISABLE_AFTER_FAILING_DAYS = 5;

/**
 * Records the attempts that got a 2xx (`delivered`: each delivery delivered, its endpoint no
 * longer failing), then takes up to `limit` due deliveries for this dispatcher, oldest first, for
 * `leaseSeconds`: one that is not settled by then (its dispatcher died) is due again for anyone.
 * Skips rows another dispatcher is taking at the same moment.
 *
 * Most attempts succeed, and a busy dispatcher records and claims hundreds a second: one named
 * statement and one commit do both, for a whole batch. Each delivery taken comes with what its
 * attempt needs (as loadDelivery reads it).
 *
 * After five runs Postgres may plan the statement once for any parameters. That plan cannot see
 * `limit`, guesses a tenth of the due rows, and read whole tables to join them (a claim took 3.6
 * times as long at 20,000 deliveries, and more with every email sent). So the rows taken are named
 * by an array (`= any(array(…))`), and each is joined through a lateral subquery that Postgres
 * cannot flatten into a join (`offset 0`), run once per row taken, by its key. A plan made once is
 * then as good as one made per run, and Postgres can keep it instead of planning every claim (it
 * did with 20,000 due). test/webhook-claim-plan.test.ts checks that plan.
 *
 * Postgres keeps it only while a plan made for the parameters looks no cheaper. With a small
 * `limit` (a dispatcher with few slots) one did, so each such claim was planned anew, and planning
 * costs more than the claim: at a limit of 2, 396 µs of Postgres CPU a row against 161. So the
 * limit and the arrays (whose lengths such a plan would see too) reach the statement through
 * scalar subqueries (`(select $1::int)`), which no plan sees into: every plan costs the same, and
 * the one made once is kept.
 *
 *   const due = await claimDueDeliveries(pool, { limit: 16, leaseSeconds: 60, holder, delivered: [] });
 */
export async function claimDueDeliveries(
  pool: Queryable,
  options: {
    limit: number;
    leaseSeconds: number;
    /** Whose lease: the sender's send pool, whose heartbeat says whether it is alive. */
    holder: string;
    delivered: readonly DeliveredAttempt[];
  },
): Promise<DeliveryToSend[]> {
  const column = <T>(pick: (a: DeliveredAttempt) => T) => options.delivered.map(pick);
  const { rows } = await pool.query<DueDeliveryRow>({
    name: 'mailplane_claim_webhooks',
    text: `
    with r as (
      select * from unnest((select $3::bigint[]), (select $4::int[]), (select $5::text[]), (select $6::int[]), (select $7::timestamptz[]))
        as r(id, response_status, response_excerpt, latency_ms, sent_at)
    ), settled as (
      update webhook_deliveries d
      set status = 'delivered', attempts = d.attempts + 1, delivered_at = now(), next_attempt_at = null,
          locked_until = null, locked_by = null, response_status = r.response_status, response_excerpt = r.response_excerpt,
          error = null, latency_ms = r.latency_ms, last_attempt_at = r.sent_at
      from r where d.id = r.id and d.status = 'pending'
      returning d.endpoint_id
    ), healed as (
      update webhook_endpoints w set failing_since = null, paused_until = null
      where w.id = any(array(select endpoint_id from settled)) and w.failing_since is not null
    ), d as (
      update webhook_deliveries d set locked_until = now() + make_interval(secs => $2), locked_by = $8
      where d.id = any(array(
        select id from webhook_deliveries
        where status = 'pending' and next_attempt_at <= now() and (locked_until is null or locked_until < now())
          and id not in (select id from r)
        order by next_attempt_at
        limit (select $1::int)
        for update skip locked
      ))
      returning d.id, d.endpoint_id, d.event_id, d.status, d.attempts, d.type
    )
    ${DELIVERY_SELECT}`,
    values: [
      options.limit,
      options.leaseSeconds,
      column((a) => a.id),
      column((a) => a.result.status ?? null),
      column((a) => a.result.excerpt ?? null),
      column((a) => a.result.latencyMs ?? null),
      column((a) => a.result.sentAt),
      options.holder,
    ],
  });
  return rows.map(deliveryOf);
}

/**
 * Ends the leases of senders their peers found dead (sender/heartbeat.ts), so that the deliveries
 * they held are due again now rather than when each lease runs out. A lease is taken on a due
 * delivery, so the due index finds them. Resolves with how many.
 */
export async function releaseLeasesOf(pool: Queryable, holders: readonly string[]): Promise<number> {
  const { rowCount } = await pool.query(
    `update webhook_deliveries set locked_until = null, locked_by = null
     where status = 'pending' and next_attempt_at <= now() and locked_until > now() and locked_by = any($1)`,
    [holders],
  );
  return rowCount ?? 0;
}

/** Gives deliveries taken but not attempted back at once (a dispatcher closing), not at lease end. */
export async function releaseDeliveries(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await db
    .updateTable('webhook_deliveries')
    .set({ locked_until: null, locked_by: null })
    .where('id', 'in', [...ids])
    .where('status', '=', 'pending')
    .execute();
}

/**
 * The columns of a delivery row joined to what its attempt needs, from a relation named `d`. What
 * it was for may be gone: no foreign key locks the endpoint row for every event (migration
 * 2026-12-03T15-00), so a delivery written while its endpoint, or its tenant, was being deleted
 * outlives them. Such a row comes back `orphaned`, its other columns empty, and is deleted when
 * it is taken, rather than leased again at every claim. Each is looked up by its key in a lateral
 * subquery (see claimDueDeliveries), whatever the number of rows `d` is guessed to hold.
 */
const DELIVERY_SELECT = `
    select d.id, d.endpoint_id, (w.id is null or e.id is null) as orphaned, coalesce(w.url, '') as url,
           coalesce(w.enabled, false) as enabled, coalesce(w.secret, '') as secret,
           case when w.previous_secret_expires_at > now() then w.previous_secret end as previous_secret,
           case when w.paused_until > now() then w.paused_until end as paused_until,
           d.status, d.attempts, d.type, ev.type as event_type, coalesce(ev.created_at, now()) as event_created_at,
           coalesce(e.id::text, '') as email_id, coalesce(e.from_address, '') as from_address,
           e.fields->'to' as to_addresses, e.fields->'tags' as tags,
           coalesce(e.subject, '') as subject, e.fields->>'message_id' as submitted_message_id,
           m.recipient, coalesce(ev.detail, '{}'::jsonb) as detail
    from d
    left join lateral (
      select id, url, enabled, secret, previous_secret, previous_secret_expires_at, paused_until
      from webhook_endpoints w where w.id = d.endpoint_id offset 0
    ) w on true
    left join lateral (
      select id, type, created_at, detail, email_id, message_id from events ev where ev.id = d.event_id offset 0
    ) ev on true
    left join lateral (
      select id, from_address, subject, ${eventFields('e')} as fields from emails e where e.id = ev.email_id offset 0
    ) e on true
    left join lateral (select recipient from messages m where m.id = ev.message_id offset 0) m on true`;

interface DueDeliveryRow {
  id: string;
  endpoint_id: string;
  orphaned: boolean;
  url: string;
  enabled: boolean;
  secret: string;
  previous_secret: string | null;
  paused_until: Date | null;
  status: string;
  attempts: number;
  type: WebhookEventType;
  event_type: EventType;
  event_created_at: Date;
  email_id: string;
  from_address: string;
  to_addresses: string[] | null;
  tags: { name: string; value: string }[] | null;
  subject: string;
  submitted_message_id: string | null;
  recipient: string | null;
  detail: Record<string, unknown>;
}

function deliveryOf(row: DueDeliveryRow): DeliveryToSend {
  return {
    id: row.id,
    endpointId: row.endpoint_id,
    orphaned: row.orphaned,
    url: row.url,
    enabled: row.enabled,
    secrets: [row.secret, ...(row.previous_secret ? [row.previous_secret] : [])],
    pausedUntil: row.paused_until,
    status: row.status,
    attempts: row.attempts,
    type: row.type,
    eventType: row.event_type,
    eventCreatedAt: row.event_created_at,
    emailId: row.email_id,
    messageId: row.orphaned
      ? ''
      : messageIdOf({
          id: row.email_id,
          fromAddress: row.from_address,
          submitted: row.submitted_message_id,
        }),
    from: row.from_address,
    to: row.to_addresses ?? [],
    subject: row.subject,
    recipient: row.recipient,
    tags: row.tags ?? [],
    detail: row.detail,
  };
}

export interface DeliveryToSend {
  id: string;
  endpointId: string;
  /** Its endpoint or its email was deleted as it was written (DELIVERY_SELECT): nothing to send. */
  orphaned: boolean;
  url: string;
  enabled: boolean;
  /** Encrypted envelopes; the previous one while a rotation is under way. */
  secrets: string[];
  /** While the endpoint is paused after a timeout (deliveryFailed's `pause`); otherwise null. */
  pausedUntil: Date | null;
  status: string;
  attempts: number;
  type: WebhookEventType;
  eventType: EventType;
  eventCreatedAt: Date;
  emailId: string;
  /** The Message-ID its recipients see (lib/message-id.ts). */
  messageId: string;
  from: string;
  to: string[];
  subject: string;
  recipient: string | null;
  tags: { name: string; value: string }[];
  detail: Record<string, unknown>;
}

/** Reads a delivery with its endpoint, event, email and message; undefined when it is gone. */
export async function loadDelivery(db: Db, deliveryId: string): Promise<DeliveryToSend | undefined> {
  const { rows } = await sql<DueDeliveryRow>`
    with d as (select * from webhook_deliveries where id = ${deliveryId})
    ${sql.raw(DELIVERY_SELECT)}`.execute(db);
  return rows[0] && deliveryOf(rows[0]);
}

export interface AttemptResult {
  /** When the request went out. */
  sentAt: Date;
  status?: number;
  excerpt?: string;
  error?: string;
  latencyMs?: number;
}

/** A delivery whose attempt got a 2xx, as claimDueDeliveries records it. */
export interface DeliveredAttempt {
  id: string;
  result: AttemptResult;
}

/**
 * A failed attempt: retried on WEBHOOK_RETRY_SECONDS (due again then), or failed once the schedule
 * is spent. The endpoint is marked failing since its
 * first failure, and disabled (with the reason) when `disable` says so or once it has failed for
 * DISABLE_AFTER_FAILING_DAYS. Answers when the next attempt is, if any.
 */
export async function deliveryFailed(
  db: Db,
  id: string,
  result: AttemptResult,
  options: {
    disable?: string;
    /**
     * The attempt timed out: pause the endpoint for as long as it has been failing, from 5 s to
     * 5 min, so that what falls due meanwhile does not wait out the timeout, slot by slot.
     */
    pause?: boolean;
  } = {},
): Promise<Date | null> {
  const { rows } = await sql<{ next_attempt_at: Date | null }>`
    with current as (
      select d.id, d.endpoint_id, d.attempts + 1 as attempts,
             (${sql.raw(`array[${WEBHOOK_RETRY_SECONDS.join(', ')}]`)})[d.attempts + 1] as delay
      from webhook_deliveries d where d.id = ${id} and d.status = 'pending'
    ), endpoint as (
      update webhook_endpoints w
      set failing_since = coalesce(w.failing_since, now()), updated_at = now(),
          paused_until = case when ${options.pause ?? false}::boolean
            then now() + least(greatest(now() - coalesce(w.failing_since, now()), ${`${PAUSE_SECONDS[0]} seconds`}::interval),
                               ${`${PAUSE_SECONDS[1]} seconds`}::interval)
            else w.paused_until end,
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
    ), logged as (
      insert into webhook_attempts (delivery_id, attempt, response_status, response_excerpt, error, latency_ms, sent_at)
      select c.id, c.attempts, ${result.status ?? null}::int, ${result.excerpt ?? null}::text, ${result.error ?? null}::text,
             ${result.latencyMs ?? null}::int, ${result.sentAt}
      from current c
      on conflict (delivery_id, attempt) do nothing
    ), updated as (
      update webhook_deliveries d
      set attempts = c.attempts,
          status = case when c.delay is null or not e.enabled then 'failed' else 'pending' end,
          next_attempt_at = case when c.delay is null or not e.enabled then null
                                 else now() + make_interval(secs => c.delay) end,
          locked_until = null, locked_by = null,
          response_status = ${result.status ?? null}, response_excerpt = ${result.excerpt ?? null},
          error = ${result.error ?? null}, latency_ms = ${result.latencyMs ?? null},
          last_attempt_at = ${result.sentAt}
      from current c, endpoint e
      where d.id = c.id
      returning d.id, d.status, d.next_attempt_at
    )
    select u.next_attempt_at from updated u`.execute(db);
  return rows[0]?.next_attempt_at ?? null;
}

/** A delivery whose endpoint or email is gone (DELIVERY_SELECT): deleted, as their others were. */
export async function deliveryOrphaned(db: Db, id: string): Promise<void> {
  await db.deleteFrom('webhook_deliveries').where('id', '=', id).execute();
}

/** An endpoint disabled before this attempt: the delivery ends unsent. */
export async function deliveryAbandoned(db: Db, id: string, reason: string): Promise<void> {
  await sql`
    update webhook_deliveries set status = 'failed', error = ${reason}, next_attempt_at = null, locked_until = null, locked_by = null
    where id = ${id} and status = 'pending'`.execute(db);
}

/**
 * Endpoints one tenant may have, whatever their source. Every event writes one delivery row per
 * subscribed endpoint inside the sender's own statement (FOLLOW_UPS in transitions.ts), so
 * this multiplies the sender's writes: 20 covers an application's environments and tools.
 */
export const MAX_ENDPOINTS_PER_TENANT = 20;
/**
 * How long the previous secret keeps signing after a rotation: a day for a receiver to deploy the
 * new one, as Svix allows.
 */
export const PREVIOUS_SECRET_HOURS = 24;
/**
 * Events one replay may re-send. Each is a delivery row, written by one statement that must end
 * well inside the api's 10 s statement timeout (api/main.ts): 50 000 take about 0.4 s on a
 * developer's Postgres, in a table of a million events. A larger recovery is several replays of
 * shorter ranges.
 */
export const REPLAY_MAX_EVENTS = 50_000;
/** Why an endpoint is disabled when its tenant disabled it. */
const DISABLED_THROUGH_API = 'disabled through the API';

const ENDPOINT_COLUMNS = [
  'id',
  'name',
  'url',
  'events',
  'enabled',
  'disabled_reason',
  'source',
  'previous_secret_expires_at',
  'failing_since',
  'paused_until',
  'created_at',
  'updated_at',
] as const;

/** An endpoint as /v1/webhooks shows it: everything but its secrets. */
export type EndpointRow = Pick<Selectable<WebhookEndpointTable>, (typeof ENDPOINT_COLUMNS)[number]>;

/** One endpoint of one tenant: every query below is scoped by both. */
export interface EndpointKey {
  tenantId: string;
  id: string;
}

/**
 * A page of a list ordered newest first: `limit` items after a cursor (older ones) or before it
 * (newer ones), the cursor being an item's id, as Resend's lists page.
 */
export interface Page {
  limit: number;
  after?: string;
  before?: string;
}

export interface PageOf<T> {
  rows: T[];
  /** More items lie beyond this page, in the direction it was read. */
  hasMore: boolean;
}

/**
 * A page from the `limit + 1` rows read for it: one more than asked says whether there are more,
 * and a page read backwards (`before`) is turned round.
 *
 *   return pageOf(await query.limit(page.limit + 1).execute(), page);
 */
export function pageOf<T>(rows: T[], page: Page): PageOf<T> {
  const kept = rows.slice(0, page.limit);
  return { rows: page.before === undefined ? kept : kept.reverse(), hasMore: rows.length > page.limit };
}

/**
 * Registers an endpoint with its encrypted secret; undefined when the tenant already has
 * MAX_ENDPOINTS_PER_TENANT. Creates of one tenant take turns on an advisory lock, so that two at
 * once cannot both pass the count.
 *
 *   const row = await createEndpoint(db, { tenantId, url, events: ['email.bounced'], secret: encrypt(key, s) });
 */
export async function createEndpoint(
  db: Db,
  e: { tenantId: string; url: string; events: WebhookEventType[]; secret: string },
): Promise<EndpointRow | undefined> {
  // In the caller's transaction when it has one (withAuditContext), else in one of its own.
  const inTransaction = <T>(fn: (trx: Db) => Promise<T>) =>
    db.isTransaction ? fn(db) : db.transaction().execute(fn);
  return inTransaction(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtextextended(${`webhook_endpoints/${e.tenantId}`}, 0))`.execute(
      trx,
    );
    const { count } = await trx
      .selectFrom('webhook_endpoints')
      .select((eb) => eb.fn.countAll<string>().as('count'))
      .where('tenant_id', '=', e.tenantId)
      .executeTakeFirstOrThrow();
    if (Number(count) >= MAX_ENDPOINTS_PER_TENANT) return undefined;
    return trx
      .insertInto('webhook_endpoints')
      .values({ tenant_id: e.tenantId, url: e.url, events: e.events, secret: e.secret, source: 'api' })
      .returning(ENDPOINT_COLUMNS)
      .executeTakeFirstOrThrow();
  });
}

/** One endpoint of the tenant's, of either source; undefined for another tenant's. */
export async function getEndpoint(db: Db, key: EndpointKey): Promise<EndpointRow | undefined> {
  return db
    .selectFrom('webhook_endpoints')
    .select(ENDPOINT_COLUMNS)
    .where('id', '=', key.id)
    .where('tenant_id', '=', key.tenantId)
    .executeTakeFirst();
}

/**
 * The tenant's endpoints, newest first. A cursor that names none of the tenant's endpoints
 * reads as an empty page.
 *
 *   const { rows, hasMore } = await listEndpoints(db, tenantId, { limit: 20, after: lastId });
 */
export async function listEndpoints(db: Db, tenantId: string, page: Page): Promise<PageOf<EndpointRow>> {
  const newer = page.before !== undefined;
  const cursor = page.before ?? page.after;
  let query = db
    .selectFrom('webhook_endpoints')
    .select(ENDPOINT_COLUMNS)
    .where('tenant_id', '=', tenantId)
    .orderBy('created_at', newer ? 'asc' : 'desc')
    .orderBy('id', newer ? 'asc' : 'desc')
    .limit(page.limit + 1);
  if (cursor !== undefined) {
    query = query.where(
      sql<boolean>`(created_at, id) ${sql.raw(newer ? '>' : '<')} (
        select c.created_at, c.id from webhook_endpoints c where c.id = ${cursor} and c.tenant_id = ${tenantId})`,
    );
  }
  return pageOf(await query.execute(), page);
}

/**
 * Changes an endpoint registered through the API (never one declared in a Tenant). Enabling it
 * forgets why it was disabled and since when it was failing; disabling one already disabled keeps
 * the reason it had (a 410, days of failures).
 */
export async function updateEndpoint(
  db: Db,
  key: EndpointKey,
  changes: { url?: string; events?: WebhookEventType[]; enabled?: boolean },
): Promise<EndpointRow | undefined> {
  return db
    .updateTable('webhook_endpoints')
    .set({
      ...(changes.url === undefined ? {} : { url: changes.url }),
      ...(changes.events === undefined ? {} : { events: changes.events }),
      ...(changes.enabled === true ? { enabled: true, disabled_reason: null, failing_since: null } : {}),
      ...(changes.enabled === false
        ? {
            enabled: false,
            disabled_reason: sql<string>`case when enabled then ${DISABLED_THROUGH_API} else disabled_reason end`,
          }
        : {}),
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', key.id)
    .where('tenant_id', '=', key.tenantId)
    .where('source', '=', 'api')
    .returning(ENDPOINT_COLUMNS)
    .executeTakeFirst();
}

/**
 * Deletes an endpoint registered through the API, and with it its deliveries (an attempt under
 * way records nothing: its outcome applies to a row that is gone). Answers whether it did.
 */
export async function deleteEndpoint(db: Db, key: EndpointKey): Promise<boolean> {
  const result = await db
    .deleteFrom('webhook_endpoints')
    .where('id', '=', key.id)
    .where('tenant_id', '=', key.tenantId)
    .where('source', '=', 'api')
    .executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/**
 * A new secret (an encrypted envelope) for an endpoint registered through the API; the current one
 * becomes the previous one and signs too for PREVIOUS_SECRET_HOURS (loadDelivery reads both). A
 * second rotation within that time ends the first one's overlap: only two secrets ever sign.
 */
export async function rotateSecret(
  db: Db,
  key: EndpointKey,
  secret: string,
): Promise<EndpointRow | undefined> {
  return db
    .updateTable('webhook_endpoints')
    .set((eb) => ({
      previous_secret: eb.ref('secret'),
      previous_secret_expires_at: sql<Date>`now() + make_interval(hours => ${PREVIOUS_SECRET_HOURS})`,
      secret,
      updated_at: sql<Date>`now()`,
    }))
    .where('id', '=', key.id)
    .where('tenant_id', '=', key.tenantId)
    .where('source', '=', 'api')
    .returning(ENDPOINT_COLUMNS)
    .executeTakeFirst();
}

const DELIVERY_COLUMNS = [
  'd.id',
  'd.type',
  'd.status',
  'd.attempts',
  'd.next_attempt_at',
  'd.response_status',
  'd.response_excerpt',
  'd.error',
  'd.latency_ms',
  'd.replay',
  'd.created_at',
  'd.delivered_at',
  'ev.email_id',
] as const;

/** A delivery as the log of deliveries shows it, with the email its event is about. */
export type DeliveryRow = Pick<
  Selectable<WebhookDeliveryTable>,
  | 'id'
  | 'type'
  | 'status'
  | 'attempts'
  | 'next_attempt_at'
  | 'response_status'
  | 'response_excerpt'
  | 'error'
  | 'latency_ms'
  | 'replay'
  | 'created_at'
  | 'delivered_at'
> & { email_id: string };

function deliveriesOf(db: Db, endpoint: EndpointKey) {
  return db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('events as ev', 'ev.id', 'd.event_id')
    .select(DELIVERY_COLUMNS)
    .where('d.endpoint_id', '=', endpoint.id)
    .where('d.tenant_id', '=', endpoint.tenantId);
}

/**
 * An endpoint's deliveries, newest first (the index on endpoint_id, id), cursors being delivery
 * ids.
 *
 *   const { rows, hasMore } = await listDeliveries(db, { tenantId, id: endpointId }, { limit: 20 });
 */
export async function listDeliveries(
  db: Db,
  endpoint: EndpointKey,
  page: Page,
): Promise<PageOf<DeliveryRow>> {
  const newer = page.before !== undefined;
  const cursor = page.before ?? page.after;
  let query = deliveriesOf(db, endpoint)
    .orderBy('d.id', newer ? 'asc' : 'desc')
    .limit(page.limit + 1);
  if (cursor !== undefined) query = query.where('d.id', newer ? '>' : '<', cursor);
  return pageOf(await query.execute(), page);
}

/** One delivery of the endpoint's; undefined for another endpoint's. */
export async function getDelivery(
  db: Db,
  endpoint: EndpointKey,
  deliveryId: string,
): Promise<DeliveryRow | undefined> {
  return deliveriesOf(db, endpoint).where('d.id', '=', deliveryId).executeTakeFirst();
}

export interface AttemptRow {
  attempt: number;
  response_status: number | null;
  response_excerpt: string | null;
  error: string | null;
  latency_ms: number | null;
  sent_at: Date | null;
}

/**
 * A delivery's attempts, newest first, cursors being attempt numbers: the failed ones as they were
 * logged, and its success, which is the delivery row's own last attempt.
 *
 *   const { rows } = await listAttempts(db, deliveryId, { limit: 20 });
 */
export async function listAttempts(db: Db, deliveryId: string, page: Page): Promise<PageOf<AttemptRow>> {
  const newer = page.before !== undefined;
  const cursor = page.before ?? page.after;
  const { rows } = await sql<AttemptRow>`
    select * from (
      select attempt, response_status, response_excerpt, error, latency_ms, sent_at
      from webhook_attempts where delivery_id = ${deliveryId}
      union all
      select attempts, response_status, response_excerpt, null, latency_ms, coalesce(last_attempt_at, delivered_at)
      from webhook_deliveries where id = ${deliveryId} and status = 'delivered'
    ) a
    where ${cursor === undefined ? sql`true` : sql`attempt ${sql.raw(newer ? '>' : '<')} ${cursor}::bigint`}
    order by attempt ${sql.raw(newer ? 'asc' : 'desc')}
    limit ${page.limit + 1}`.execute(db);
  return pageOf(rows, page);
}

/**
 * What a replay re-sends: the events of one email, of a time range (`from` included, `to` not),
 * or the event of one delivery of the endpoint's.
 */
export type ReplayFilter = { emailId: string } | { from: Date; to: Date } | { deliveryId: string };

export interface Replayed {
  /** Events that matched, up to REPLAY_MAX_EVENTS + 1. */
  matched: number;
  /** Deliveries queued: `matched`, or none when more than REPLAY_MAX_EVENTS matched. */
  queued: number;
  /** The newest delivery queued (for one delivery's event, its replay). */
  lastDeliveryId: string | null;
}

/**
 * Re-sends the tenant's events that match `filter` to one of its enabled endpoints: one new
 * delivery (`replay = true`), due now for the webhook dispatcher, per event of a type the endpoint
 * subscribes to, oldest first, in one statement. All or nothing: when more than REPLAY_MAX_EVENTS
 * match, nothing is queued and `matched` says so.
 *
 *   const { queued } = await replayEvents(db, { tenantId, id }, { from, to });
 */
export async function replayEvents(db: Db, endpoint: EndpointKey, filter: ReplayFilter): Promise<Replayed> {
  const matches =
    'emailId' in filter
      ? sql`ev.email_id = ${filter.emailId}`
      : 'deliveryId' in filter
        ? sql`ev.id = (select event_id from webhook_deliveries where id = ${filter.deliveryId} and endpoint_id = t.id)`
        : sql`ev.created_at >= ${filter.from} and ev.created_at < ${filter.to}`;
  const { rows } = await sql<{ matched: number; queued: number; last_delivery_id: string | null }>`
    with t as (
      select id, tenant_id, events from webhook_endpoints
      where id = ${endpoint.id} and tenant_id = ${endpoint.tenantId} and enabled
    ), matched as (
      select ev.id, ev.created_at, h.type
      from t
      join events ev on ev.tenant_id = t.tenant_id and ${matches}
      cross join lateral (select ${sql.raw(WEBHOOK_TYPE_SQL)} as type) h
      where h.type is not null and (cardinality(t.events) = 0 or h.type = any(t.events))
      order by ev.created_at, ev.id
      limit ${REPLAY_MAX_EVENTS + 1}
    ), hooks as (
      insert into webhook_deliveries (endpoint_id, tenant_id, event_id, type, next_attempt_at, replay)
      select t.id, t.tenant_id, m.id, m.type, now(), true
      from matched m cross join t
      where (select count(*) from matched) <= ${REPLAY_MAX_EVENTS}
      order by m.created_at, m.id
      returning id
    )
    select (select count(*)::int from matched) as matched, (select count(*)::int from hooks) as queued,
           (select max(id)::text from hooks) as last_delivery_id`.execute(db);
  const row = rows[0];
  return {
    matched: row?.matched ?? 0,
    queued: row?.queued ?? 0,
    lastDeliveryId: row?.last_delivery_id ?? null,
  };
}
