// The message state machine: every change of a message's status, and every event on its timeline,
// goes through this module — the sender's claim and outcomes, the inbound listener's late bounces,
// delays and complaints, the api's cancel and reschedule. One statement per transition: a
// data-modifying CTE changes the message, the same statement appends the event (EVENTS), and then
// runs what must follow every event (FOLLOW_UPS), so that nothing that happened can be missed
// downstream.
//
//   queued ─claim→ sending ─settle→ delivered | failed | suppressed
//      │              └──defer→ deferred ─claim→ sending …      └─(late) bounce→ bounced
//      └─cancel→ canceled       └──bounce→ bounced             complaint, delay, open, click,
//                                                              unsubscribe: events only
//   queued and not yet due ─reschedule→ queued, due at another time (a `scheduled` event again)
//
// Each transition applies only from the statuses it may leave, and the event is written only when
// it applied, so a job that runs twice after a crash cannot overwrite an outcome nor duplicate its
// event. A crash at any point leaves a message where it was or where it was going.
//
// The two statements every delivered message runs (claim and settle) are named, so that Postgres
// plans them once per connection; Kysely cannot name a statement, so those go through pg directly,
// and the shared SQL is kept as text.

import { sql, type RawBuilder } from 'kysely';
import type pg from 'pg';
import type { Db } from './index.js';
import {
  FINAL_STATUSES,
  type DomainTable,
  type EmailContent,
  type MessageStatus,
  type SuppressionReason,
} from './schema.js';
import { SEND_MESSAGE, SEND_MESSAGE_MAX_ATTEMPTS } from '../jobs.js';
import { WEBHOOK_TYPE_SQL } from '../webhooks.js';
import { rollupInserts, STAT_TYPE_SQL } from './stats.js';
import { unsubscribeContacts } from './contacts.js';

/**
 * Every event type a timeline holds: the statuses a message moves through, and what is reported
 * about it afterwards without changing its status (a delay down the line, a complaint).
 */
export const EVENT_TYPES = [
  'scheduled',
  'sending',
  'delivered',
  'deferred',
  'bounced',
  'failed',
  'suppressed',
  'canceled',
  'delayed',
  'complained',
  'unsubscribed',
  'opened',
  'clicked',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** What the statements run once per message need: a pool, or a client of one. */
export type Queryable = Pick<pg.Pool, 'query'>;

const FINAL_LIST = FINAL_STATUSES.map((s) => `'${s}'`).join(', ');
/** A late bounce may still turn `delivered` into `bounced`: delivered was only a server's word. */
const SETTLED_LIST = FINAL_STATUSES.filter((s) => s !== 'delivered')
  .map((s) => `'${s}'`)
  .join(', ');

/**
 * The CTE that appends one event per row of `source` (which has id, email_id and tenant_id of the
 * message), named `ev`; `type` and `detail` are SQL expressions. As text, for the named
 * statements; eventsSql below is the same for Kysely's sql templates.
 */
function events(source: string, type: string, detail: string): string {
  return `ev as (
      insert into events (tenant_id, email_id, message_id, type, detail)
      select s.tenant_id, s.email_id, s.id, ${type}, ${detail} from ${source} s
      returning id, tenant_id, email_id, message_id, type, detail, created_at
    )`;
}

function eventsSql(source: string, type: EventType, detail: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`ev as (
      insert into events (tenant_id, email_id, message_id, type, detail)
      select s.tenant_id, s.email_id, s.id, ${type}, ${detail} from ${sql.raw(source)} s
      returning id, tenant_id, email_id, message_id, type, detail, created_at
    )`;
}

/**
 * What follows every event, as CTEs over `ev`, in the statement that wrote it (a data-modifying
 * CTE always runs, whether the statement reads it or not):
 * - the statistics rollups (lib/db/stats.ts): the event counted in its hour, for its sending
 *   domain and for each of its email's tags, in the shard of the writing connection;
 * - one webhook delivery per enabled endpoint of the tenant subscribed to the event's webhook
 *   type, due now, which the senders' webhook dispatcher picks up (sender/webhook-dispatcher.ts).
 *   Not a job per delivery: graphile-worker NOTIFYs for every job, and Postgres serialises
 *   notifying commits, which made two more per message halve the sender's rate in `make bench`.
 */
const FOLLOW_UPS = `, counted as (
      select * from (
        select ev.tenant_id, ev.email_id, date_trunc('hour', ev.created_at, 'UTC') as bucket, ${STAT_TYPE_SQL} as type
        from ev
      ) c where c.type is not null
    ), ${rollupInserts('event', 'counted')}, hooks as (
      insert into webhook_deliveries (endpoint_id, tenant_id, event_id, type, next_attempt_at)
      select w.id, ev.tenant_id, ev.id, h.type, now()
      from ev
      cross join lateral (select ${WEBHOOK_TYPE_SQL} as type) h
      join webhook_endpoints w on w.tenant_id = ev.tenant_id and w.enabled
        and (cardinality(w.events) = 0 or h.type = any(w.events))
      where h.type is not null
    )`;
/**
 * For the accept statement (lib/send/accept.ts): a `scheduled` event for each new message of `source`
 * (id, email_id, tenant_id, run_at) due later, and what follows it; a CTE list to continue.
 */
export function scheduledEvents(source: string): string {
  return `due_later as (select * from ${source} where run_at > now()),
    ${events('due_later', `'scheduled'`, `jsonb_build_object('scheduled_at', s.run_at)`)}${FOLLOW_UPS}`;
}

/** The end of every transition: the follow-ups, and the number of events written. */
const FINISH = `${FOLLOW_UPS}
    select count(*)::int as events from ev`;

export interface MessageToSend {
  id: string;
  emailId: string;
  tenantId: string;
  recipient: string;
  status: MessageStatus;
  fromAddress: string;
  content: EmailContent;
  /** When the message became due: acceptance, or its scheduled time. Latency and lifetime count from here. */
  dueAt: Date;
  /** Whether the tenant suppresses the recipient. */
  suppressed: boolean;
  /** Undefined when the domain is gone (or belongs to another tenant now). */
  domain?: Pick<DomainTable, 'name' | 'selector' | 'dkim_private_key' | 'return_path_domain'> & {
    id: string;
    /** Open and click tracking defaults (lib/tracking.ts). */
    tracking_domain: string | null;
    track_opens: boolean;
    track_clicks: boolean;
    /** Keys that sign beside the row's (the RSA key of a dual-signing domain), from dkim_keys. */
    also_signing?: { selector: string; private_key: string }[];
  };
}

/**
 * Read and claim in one round trip: the final select sees the message as it was before the
 * update (a CTE's changes are not visible to its siblings), so `status` is the status found, and
 * `attempt` says whether the claim applied. The update repeats every condition on the row itself,
 * so that a concurrent change (a cancel, a twin job) is re-checked under the row lock.
 */
const CLAIM = {
  name: 'mailplane_claim_message',
  text: `
    with target as (
      select m.id, exists (
        select 1 from suppressions s where s.tenant_id = m.tenant_id and s.address = lower(m.recipient)
      ) as suppressed
      from messages m where m.id = $1
    ), claimed as (
      update messages m set status = 'sending', attempts = m.attempts + 1, updated_at = now()
      from target t
      where m.id = t.id and not t.suppressed
        and m.status not in (${FINAL_LIST})
        and not (m.status = 'deferred' and m.next_attempt_at > now())
      returning m.id, m.email_id, m.tenant_id, m.attempts
    ), ${events('claimed', `'sending'`, `jsonb_build_object('attempt', s.attempts)`)}${FOLLOW_UPS}
    select m.id, m.email_id, m.tenant_id, m.recipient, m.status, t.suppressed, c.attempts as attempt,
           e.from_address, e.content, greatest(e.created_at, e.scheduled_at) as due_at,
           d.id as domain_id, d.name as domain_name, d.selector, d.dkim_private_key, d.return_path_domain,
           d.tracking_domain, d.track_opens, d.track_clicks,
           (select json_agg(json_build_object('selector', k.selector, 'private_key', k.private_key) order by k.selector)
              from dkim_keys k where k.domain_id = d.id and k.state = 'active') as also_signing
    from messages m
    join target t on t.id = m.id
    join emails e on e.id = m.email_id
    left join domains d on d.id = e.domain_id and d.tenant_id = e.tenant_id
    left join claimed c on c.id = m.id
    where m.id = $1`,
};

export interface Claim {
  message: MessageToSend;
  /** The attempt number when the message is now `sending` and this job owns the attempt. */
  attempt?: number;
}

/**
 * queued | deferred (due) | sending (a crashed attempt) → sending. Reads a message, its email,
 * its domain and whether its recipient is suppressed, and, unless it is final, suppressed, or
 * deferred to a later time (a newer job owns it), claims it for an attempt: attempts + 1.
 *
 *   const claim = await claimMessage(pool, messageId);   // undefined when it no longer exists
 *   if (claim?.attempt) … send …
 */
export async function claimMessage(pool: Queryable, messageId: string): Promise<Claim | undefined> {
  const { rows } = await pool.query<{
    id: string;
    email_id: string;
    tenant_id: string;
    recipient: string;
    status: MessageStatus;
    suppressed: boolean;
    attempt: number | null;
    from_address: string;
    content: EmailContent;
    due_at: Date;
    domain_id: string | null;
    domain_name: string | null;
    selector: string | null;
    dkim_private_key: string | null;
    return_path_domain: string | null;
    tracking_domain: string | null;
    track_opens: boolean | null;
    track_clicks: boolean | null;
    also_signing: { selector: string; private_key: string }[] | null;
  }>({ ...CLAIM, values: [messageId] });
  const row = rows[0];
  if (!row) return undefined;
  const message: MessageToSend = {
    id: row.id,
    emailId: row.email_id,
    tenantId: row.tenant_id,
    recipient: row.recipient,
    status: row.status,
    fromAddress: row.from_address,
    content: row.content,
    dueAt: row.due_at,
    suppressed: row.suppressed,
    domain:
      row.domain_id && row.domain_name && row.selector && row.dkim_private_key
        ? {
            id: row.domain_id,
            name: row.domain_name,
            selector: row.selector,
            dkim_private_key: row.dkim_private_key,
            return_path_domain: row.return_path_domain,
            tracking_domain: row.tracking_domain,
            track_opens: row.track_opens ?? false,
            track_clicks: row.track_clicks ?? false,
            ...(row.also_signing ? { also_signing: row.also_signing } : {}),
          }
        : undefined,
  };
  return row.attempt === null ? { message } : { message, attempt: row.attempt };
}

export interface Settlement {
  messageId: string;
  status: 'delivered' | 'failed' | 'suppressed';
  /** The SMTP reply that settled it, if any. */
  reply?: string;
  detail: Record<string, unknown>;
}

const SETTLE = {
  // Named for the same reason as CLAIM: a delivered message is settled with it.
  name: 'mailplane_settle_message',
  text: `
    with m as (
      update messages
      set status = $2, last_reply = coalesce($3, last_reply), next_attempt_at = null, updated_at = now()
      where id = $1 and status not in (${FINAL_LIST})
      returning id, email_id, tenant_id
    ), ${events('m', '$2', '$4::jsonb')}${FINISH}`,
};

/**
 * (any but final) → delivered | failed | suppressed, which need nothing else. Answers whether it
 * applied.
 *
 *   await settle(pool, { messageId, status: 'delivered', reply: '250 OK', detail: { attempt: 1 } });
 */
export async function settle(pool: Queryable, s: Settlement): Promise<boolean> {
  const { rows } = await pool.query<{ events: number }>({
    ...SETTLE,
    values: [s.messageId, s.status, s.reply ?? null, JSON.stringify(s.detail)],
  });
  return (rows[0]?.events ?? 0) > 0;
}

/** The events written by a Kysely transition statement, for callers that answer "applied?". */
async function written(db: Db, statement: RawBuilder<{ events: number }>): Promise<number> {
  const { rows } = await statement.execute(db);
  return rows[0]?.events ?? 0;
}

const json = (value: Record<string, unknown>) => sql`${JSON.stringify(value)}::jsonb`;

/**
 * (any but final) → deferred: its next attempt time, and a new send_message job for that time,
 * queued in the same statement so that a deferred message always has a job.
 */
export async function defer(
  db: Db,
  d: { messageId: string; reply?: string; retryAt: Date; detail: Record<string, unknown> },
): Promise<boolean> {
  const detail = sql`${json(d.detail)} || jsonb_build_object('retry_at', ${d.retryAt}::timestamptz, 'job_id', s.job_id)`;
  const events = await written(
    db,
    sql<{ events: number }>`
      with changed as (
        update messages
        set status = 'deferred', last_reply = coalesce(${d.reply ?? null}, last_reply),
            next_attempt_at = ${d.retryAt}, updated_at = now()
        where id = ${d.messageId} and status not in (${sql.raw(FINAL_LIST)})
        returning id, email_id, tenant_id
      ), m as (
        select changed.*, (graphile_worker.add_job(
          ${SEND_MESSAGE}, json_build_object('messageId', changed.id),
          run_at => ${d.retryAt}, max_attempts => ${SEND_MESSAGE_MAX_ATTEMPTS}
        )).id as job_id
        from changed
      ), ${eventsSql('m', 'deferred', detail)}${sql.raw(FINISH)}`,
  );
  return events > 0;
}

/**
 * (any but final; for a `late` bounce, also delivered) → bounced, with the reply, and when
 * `suppress`, the recipient suppressed for the tenant (reason `bounce`, the reply as detail).
 * Answers whether it applied; a repeated report changes nothing.
 *
 *   await bounceMessage(db, { messageId, reply: '550 5.1.1 no such user', detail, suppress: true })
 */
export async function bounceMessage(
  db: Db,
  b: {
    messageId: string;
    reply: string;
    detail: Record<string, unknown>;
    suppress: boolean;
    /** A bounce reported after the hand-over, which may follow `delivered`. */
    late?: boolean;
  },
): Promise<boolean> {
  const events = await written(
    db,
    sql<{ events: number }>`
      with m as (
        update messages set status = 'bounced', last_reply = ${b.reply}, next_attempt_at = null, updated_at = now()
        where id = ${b.messageId} and status not in (${sql.raw(b.late ? SETTLED_LIST : FINAL_LIST)})
        returning id, email_id, tenant_id, recipient
      ), suppressed as (
        ${suppress('m', 'bounce', sql`${b.reply}`, b.suppress)}
      ), ${eventsSql('m', 'bounced', json(b.detail))}${sql.raw(FINISH)}`,
  );
  return events > 0;
}

/** The insert that suppresses the recipients of `source` for their tenant (once: the first reason stays). */
function suppress(source: string, reason: SuppressionReason, detail: RawBuilder<unknown>, when = true) {
  return sql`insert into suppressions (tenant_id, address, reason, detail)
        select tenant_id, lower(recipient), ${reason}, ${detail} from ${sql.raw(source)} where ${when}
        on conflict (tenant_id, address) do nothing`;
}

/**
 * A DSN saying a server down the line is still trying: a `delayed` event, nothing else (our part,
 * handing it over, is done). Answers whether the message exists.
 */
export async function recordDelay(
  db: Db,
  d: { messageId: string; detail: Record<string, unknown> },
): Promise<boolean> {
  const events = await written(
    db,
    sql<{ events: number }>`
      with m as (select id, email_id, tenant_id from messages where id = ${d.messageId}),
      ${eventsSql('m', 'delayed', json(d.detail))}${sql.raw(FINISH)}`,
  );
  return events > 0;
}

/**
 * A recipient marked the message as spam (or another ARF feedback type): the address is
 * suppressed for the tenant (reason `complaint`), so that it is never mailed again unless the
 * tenant lifts it, and a `complained` event is recorded once per message. The status stays.
 */
export async function recordComplaint(
  db: Db,
  c: { messageId: string; feedbackType: string; detail: Record<string, unknown> },
): Promise<boolean> {
  const events = await written(
    db,
    sql<{ events: number }>`
      with found as (
        select id, email_id, tenant_id, recipient from messages where id = ${c.messageId}
      ), suppressed as (
        ${suppress('found', 'complaint', sql`${`feedback-type ${c.feedbackType}`}`)}
      ), m as (
        select * from found f where not exists (
          select 1 from events e where e.email_id = f.email_id and e.message_id = f.id and e.type = 'complained'
        )
      ), ${eventsSql('m', 'complained', json(c.detail))}${sql.raw(FINISH)}`,
  );
  return events > 0;
}

/** An open (the pixel fetched) or a click (a tracked link followed), as api/tracking.ts records it. */
export interface Engagement {
  type: 'opened' | 'clicked';
  messageId: string;
  /** What the timeline, webhooks and statistics read: `machine` and its reason, the link, the client. */
  detail: Record<string, unknown> & { machine: boolean };
}

/** An `ev` row of an open or click a person made: not one api/machine-fetch.ts took for a machine's. */
const BY_A_PERSON = `not coalesce((ev.detail->>'machine')::boolean, false)`;

/**
 * After the engagement events (`ev`): the unique opens and clicks. Each message's first open and
 * first click, by anything and by a person, is set once (messages.first_*_at, where still null)
 * and counted in the rollups (unique_opened, unique_clicked, unique_opened_any,
 * unique_clicked_any) only when this statement set it.
 *
 * Two replicas may write the first opens of one message at once, each seeing it unopened in its
 * snapshot. So the messages that may have a first here are locked (`for update`), which waits
 * for the other's commit and then re-reads the row as it is now: the later of the two finds the
 * time set, drops the row, and counts nothing. They are locked in id order, so that two groups of
 * a scanner's burst never wait on each other; a message whose snapshot shows every time set
 * already (most opens after the first) is not locked at all.
 */
const FIRST_ENGAGEMENTS = `firsts as (
      select ev.message_id as id, min(ev.created_at) as at,
        bool_or(ev.type = 'opened') as opened,
        bool_or(ev.type = 'opened' and ${BY_A_PERSON}) as opened_by_person,
        bool_or(ev.type = 'clicked') as clicked,
        bool_or(ev.type = 'clicked' and ${BY_A_PERSON}) as clicked_by_person
      from ev group by ev.message_id
    ), firsts_now as materialized (
      select msg.id, msg.email_id, msg.tenant_id, f.at,
        f.opened and msg.first_open_at is null as open_any,
        f.opened_by_person and msg.first_human_open_at is null as open,
        f.clicked and msg.first_click_at is null as click_any,
        f.clicked_by_person and msg.first_human_click_at is null as click
      from firsts f join messages msg on msg.id = f.id
      where (f.opened and msg.first_open_at is null)
        or (f.opened_by_person and msg.first_human_open_at is null)
        or (f.clicked and msg.first_click_at is null)
        or (f.clicked_by_person and msg.first_human_click_at is null)
      order by msg.id
      for update of msg
    ), firsts_set as (
      update messages msg set
        first_open_at = case when l.open_any then l.at else msg.first_open_at end,
        first_human_open_at = case when l.open then l.at else msg.first_human_open_at end,
        first_click_at = case when l.click_any then l.at else msg.first_click_at end,
        first_human_click_at = case when l.click then l.at else msg.first_human_click_at end
      from firsts_now l
      where msg.id = l.id
    ), unique_counted as (
      select l.tenant_id, l.email_id, date_trunc('hour', l.at, 'UTC') as bucket, u.type
      from firsts_now l
      cross join lateral (values
        ('unique_opened', l.open), ('unique_opened_any', l.open_any),
        ('unique_clicked', l.click), ('unique_clicked_any', l.click_any)
      ) as u(type, first)
      where u.first
    ), ${rollupInserts('unique', 'unique_counted')}`;

const ENGAGEMENT = {
  // Named: a scanner's burst of fetches is written through it in groups, many a second.
  name: 'mailplane_record_engagement',
  text: `
    with input as (
      select * from jsonb_to_recordset($1::jsonb) as h(message_id uuid, type text, detail jsonb)
    ), m as (
      select msg.id, msg.email_id, msg.tenant_id, i.type, i.detail
      from input i join messages msg on msg.id = i.message_id
    ), ${events('m', 's.type', 's.detail')}, ${FIRST_ENGAGEMENTS}${FINISH}`,
};

/**
 * Opens and clicks: an `opened` or `clicked` event for each of a message that still exists, with
 * its follow-ups — webhooks (email.opened, email.clicked) and statistics, which count a machine's
 * apart from a person's (lib/db/stats.ts), and count the message once more as opened or clicked
 * (unique) at its first open or click (FIRST_ENGAGEMENTS). The status stays. Many in one
 * statement, since a scanner may fetch every link of every message at once. Answers the events
 * written.
 *
 *   await recordEngagements(pool, [{ type: 'clicked', messageId, detail: { machine: false, link } }]);
 */
export async function recordEngagements(pool: Queryable, items: readonly Engagement[]): Promise<number> {
  if (items.length === 0) return 0;
  const rows = items.map((e) => ({ message_id: e.messageId, type: e.type, detail: e.detail }));
  const { rows: result } = await pool.query<{ events: number }>({
    ...ENGAGEMENT,
    values: [JSON.stringify(rows)],
  });
  return result[0]?.events ?? 0;
}

/** The advisory lock space (the first of the two keys) that orders unsubscribes of one message. */
const UNSUBSCRIBE_LOCK = 0x756e7375; // "unsu"

/** One recipient's unsubscribe: from a link's token or the message a mailto address names. */
export interface Unsubscribe {
  tenantId: string;
  /** Lower-cased. */
  address: string;
  /** The message whose timeline gets the event, when it still exists. */
  messageId: string;
  /** How: `{ method: 'one-click' | 'page' | 'mailto' }`; the method is also the suppression's detail. */
  detail: Record<string, unknown> & { method: string };
}

/**
 * Recipients who asked for no more mail: each address suppressed for its tenant (reason
 * `unsubscribe`; an address suppressed already keeps its first reason), and an `unsubscribed`
 * event once per message that still exists, so that webhooks (email.unsubscribed) and statistics
 * hear of it. The status stays. Many in one statement: the api writes a burst of one-click POSTs
 * in groups. A tenant deleted with its rows is skipped. Answers the events written.
 *
 *   await recordUnsubscribes(db, [{ tenantId, address: 'ada@example.org', messageId, detail: { method: 'one-click' } }]);
 */
export async function recordUnsubscribes(db: Db, items: readonly Unsubscribe[]): Promise<number> {
  if (items.length === 0) return 0;
  if (!db.isTransaction) return db.transaction().execute((trx) => recordUnsubscribes(trx, items));
  // Two presses of one link at once (a double click, a client retrying) would both find no event
  // and write one each: the second waits here, and then sees the first's. In id order, so that two
  // groups never wait on each other.
  const ids = [...new Set(items.map((u) => u.messageId))].sort();
  await sql`select pg_advisory_xact_lock(${UNSUBSCRIBE_LOCK}, hashtext(id))
    from (select unnest(${ids}::text[]) as id order by 1) ids`.execute(db);
  const rows = items.map((u) => ({
    tenant_id: u.tenantId,
    address: u.address.toLowerCase(),
    message_id: u.messageId,
    detail: u.detail,
  }));
  // The contact of the address says so too, in this transaction (lib/db/contacts.ts).
  await unsubscribeContacts(db, items);
  return written(
    db,
    sql<{ events: number }>`
      with input as (
        select * from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
          as u(tenant_id uuid, address text, message_id uuid, detail jsonb)
      ), suppressed as (
        insert into suppressions (tenant_id, address, reason, detail)
        select distinct on (i.tenant_id, i.address) i.tenant_id, i.address, 'unsubscribe', i.detail->>'method'
        from input i join tenants t on t.id = i.tenant_id
        on conflict (tenant_id, address) do nothing
      ), found as (
        select distinct on (m.id) m.id, m.email_id, m.tenant_id, i.detail
        from input i
        join messages m on m.id = i.message_id and m.tenant_id = i.tenant_id and lower(m.recipient) = i.address
      ), m as (
        select * from found f where not exists (
          select 1 from events e where e.email_id = f.email_id and e.message_id = f.id and e.type = 'unsubscribed'
        )
      ), ${sql.raw(events('m', `'unsubscribed'`, 's.detail'))}${sql.raw(FINISH)}`,
  );
}

/**
 * queued | deferred → canceled, for every recipient of one of the tenant's emails not yet sent
 * to. Answers how many were canceled (0: none was cancelable, or no such email).
 *
 *   const canceled = await cancelEmail(db, { emailId, tenantId });
 */
export async function cancelEmail(db: Db, c: { emailId: string; tenantId: string }): Promise<number> {
  return written(
    db,
    sql<{ events: number }>`
      with m as (
        update messages set status = 'canceled', next_attempt_at = null, updated_at = now()
        where email_id = ${c.emailId} and tenant_id = ${c.tenantId} and status in ('queued', 'deferred')
        returning id, email_id, tenant_id
      ), ${eventsSql('m', 'canceled', sql`'{}'::jsonb`)}${sql.raw(FINISH)}`,
  );
}

/** Why an email could not be rescheduled; the api answers each with a 409 saying so. */
export type RescheduleRefusal = 'not-scheduled' | 'due' | 'not-pending' | 'sending';

export type RescheduleOutcome =
  | { outcome: 'rescheduled'; previous: Date; at: Date }
  | { outcome: 'not-found' }
  | { outcome: RescheduleRefusal };

/**
 * A scheduled email not yet due, every recipient still queued → the same, due at `at` (now when
 * null): the email's scheduled_at and the run_at of its messages' send_message jobs move together,
 * and each message gets a `scheduled` event again, with the time it had (`previous_scheduled_at`),
 * so that its timeline says why it went out when it did and a webhook on email.scheduled hears of
 * the new time. One statement, all of it or nothing.
 *
 * The email, its messages and their jobs are locked in that order, the email and its messages
 * `for no key update`: a sender settling one of the messages holds it and then checks the email
 * its event points to (the foreign key's `for key share`), which a `for update` here would block
 * while this waits for the message, a deadlock. A sender takes a job with
 * `for update skip locked`, so it passes over them while they are locked here; a job a sender
 * already holds (locked_at set) is not moved, and then nothing is: the email is being sent. A job
 * is found by its email's scheduled_at, which the accept statement gives it as run_at, at the
 * default priority: a seek in graphile-worker's own (priority, run_at) index of available jobs,
 * where a search by payload would read every queued job. A message whose job is not found so
 * refuses the change rather than leave a job at the old time; the move itself goes through
 * graphile-worker's reschedule_jobs.
 *
 *   const r = await rescheduleEmail(db, { emailId, tenantId, at: new Date('2030-01-01T09:00:00Z') });
 *   if (r.outcome === 'rescheduled') …
 */
export async function rescheduleEmail(
  db: Db,
  r: { emailId: string; tenantId: string; at: Date | null },
): Promise<RescheduleOutcome> {
  const { rows } = await sql<{
    found: boolean;
    previous: Date | null;
    at: Date | null;
    due: boolean | null;
    pending: boolean | null;
    free: boolean | null;
    /** Read, so that the move runs: a CTE that only selects runs when something reads it. */
    moved: number;
    events: number;
  }>`
    with email as (
      select e.id, e.scheduled_at from emails e
      where e.id = ${r.emailId} and e.tenant_id = ${r.tenantId}
      for no key update
    ), msgs as (
      select m.id, m.email_id, m.tenant_id, m.status from messages m
      where m.email_id = (select id from email) and m.tenant_id = ${r.tenantId}
      for no key update
    ), jobs as (
      select j.id from graphile_worker._private_jobs j
      where j.task_id = (select t.id from graphile_worker._private_tasks t where t.identifier = ${SEND_MESSAGE})
        and j.priority = 0 and j.run_at = (select scheduled_at from email)
        and j.locked_at is null
        and j.payload->>'messageId' in (select id::text from msgs)
      for update of j
    ), verdict as (
      select (select scheduled_at from email) as previous,
        (select scheduled_at from email) <= now() as due,
        not exists (select 1 from msgs where status <> 'queued') as pending,
        (select count(*) from jobs) = (select count(*) from msgs) as free
    ), go as (
      select previous, coalesce(${r.at}::timestamptz, now()) as at from verdict
      where not due and pending and free
    ), moved_jobs as (
      select j.id from graphile_worker.reschedule_jobs(
        (select array_agg(id) from jobs where exists (select 1 from go)), run_at => (select at from go)
      ) j
    ), moved as (
      update emails set scheduled_at = (select at from go)
      where id = (select id from email) and exists (select 1 from go)
    ), m as (
      select msgs.id, msgs.email_id, msgs.tenant_id from msgs where exists (select 1 from go)
    ), ${eventsSql(
      'm',
      'scheduled',
      sql`jsonb_build_object('scheduled_at', (select at from go), 'previous_scheduled_at', (select previous from go))`,
    )}${sql.raw(FOLLOW_UPS)}
    select exists (select 1 from email) as found, v.previous, (select at from go) as at, v.due, v.pending,
      v.free, (select count(*)::int from moved_jobs) as moved, (select count(*)::int from ev) as events
    from verdict v`.execute(db);
  const v = rows[0];
  if (!v?.found) return { outcome: 'not-found' };
  if (v.previous === null) return { outcome: 'not-scheduled' };
  if (v.due) return { outcome: 'due' };
  if (!v.pending) return { outcome: 'not-pending' };
  if (!v.free || v.at === null || v.events === 0) return { outcome: 'sending' };
  return { outcome: 'rescheduled', previous: v.previous, at: v.at };
}
