// The sender's SQL: reading a message with everything needed to send it, and its state changes.
//
// Each state change is one statement: a data-modifying CTE updates the message, and the same
// statement appends its event (and, as the case may be, the suppression or the retry job). One
// statement is one transaction, and one round trip instead of four. Every update only applies
// to a message that is not final yet, and the event is written only when the update applied, so a
// job that runs twice cannot overwrite an outcome nor duplicate its event. The two statements every
// delivered message runs (claim and settle) are named, so that Postgres plans them once per
// connection; Kysely cannot name a statement, so those two go through pg directly.

import { sql } from 'kysely';
import type pg from 'pg';
import type { Db } from '../lib/db/index.js';
import { FINAL_STATUSES, type DomainTable, type EmailContent, type MessageStatus } from '../lib/db/schema.js';
import { SEND_MESSAGE, SEND_MESSAGE_MAX_ATTEMPTS } from '../lib/jobs.js';

const FINAL = sql.join(FINAL_STATUSES.map((s) => sql.lit(s)));
const FINAL_LIST = FINAL_STATUSES.map((s) => `'${s}'`).join(', ');

/** What the statements run once per message need: a pool, or a client of one. */
export type Queryable = Pick<pg.Pool, 'query'>;

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
  };
}

/**
 * The statement run once per attempt, named so that each connection parses and plans it once
 * instead of once per message (Postgres shares this machine's cores with the sender). Read and
 * claim in one round trip: the final select sees the message as it was before the update (a CTE's changes
 * are not visible to its siblings), so `status` is the status found, and `attempt` says whether
 * the claim applied. The update repeats every condition on the row itself, so that a concurrent
 * change (a cancel, a twin job) is re-checked under the row lock.
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
    ), sending as (
      insert into events (tenant_id, email_id, message_id, type, detail)
      select tenant_id, email_id, id, 'sending', jsonb_build_object('attempt', attempts) from claimed
    )
    select m.id, m.email_id, m.tenant_id, m.recipient, m.status, t.suppressed, c.attempts as attempt,
           e.from_address, e.content, greatest(e.created_at, e.scheduled_at) as due_at,
           d.id as domain_id, d.name as domain_name, d.selector, d.dkim_private_key, d.return_path_domain
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
 * Reads a message, its email, its domain and whether its recipient is suppressed, and, unless it
 * is final, suppressed, or deferred to a later time (a newer job owns it), claims it for an
 * attempt: `sending`, attempts + 1, and a `sending` event.
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
    )
    insert into events (tenant_id, email_id, message_id, type, detail)
    select tenant_id, email_id, id, $2, $4::jsonb from m
    returning id`,
};

/** Moves a message to a final status that needs nothing else: delivered, failed or suppressed. */
export async function settle(pool: Queryable, s: Settlement): Promise<boolean> {
  const { rowCount } = await pool.query({
    ...SETTLE,
    values: [s.messageId, s.status, s.reply ?? null, JSON.stringify(s.detail)],
  });
  return (rowCount ?? 0) > 0;
}

/**
 * Defers a message: `deferred`, its next attempt time, and a new send_message job for that time,
 * queued in the same statement so that a deferred message always has a job.
 */
export async function defer(
  db: Db,
  d: { messageId: string; reply?: string; retryAt: Date; detail: Record<string, unknown> },
): Promise<boolean> {
  const { rows } = await sql`
    with m as (
      update messages
      set status = 'deferred', last_reply = coalesce(${d.reply ?? null}, last_reply),
          next_attempt_at = ${d.retryAt}, updated_at = now()
      where id = ${d.messageId} and status not in (${FINAL})
      returning id, email_id, tenant_id
    ), j as (
      select (graphile_worker.add_job(
        ${SEND_MESSAGE}, json_build_object('messageId', m.id),
        run_at => ${d.retryAt}, max_attempts => ${SEND_MESSAGE_MAX_ATTEMPTS}
      )).id as job_id
      from m
    )
    insert into events (tenant_id, email_id, message_id, type, detail)
    select m.tenant_id, m.email_id, m.id, 'deferred',
           ${JSON.stringify(d.detail)}::jsonb || jsonb_build_object('retry_at', ${d.retryAt}::timestamptz, 'job_id', j.job_id)
    from m cross join j
    returning id
  `.execute(db);
  return rows.length > 0;
}

/** The body of a template version, for rendering; versions never change once written. */
export async function loadTemplateVersion(
  db: Db,
  tenantId: string,
  templateId: string,
  version: number,
): Promise<{ subject: string; html: string | null; text: string | null } | undefined> {
  return db
    .selectFrom('template_versions as v')
    .innerJoin('templates as t', 't.id', 'v.template_id')
    .select(['v.subject', 'v.html', 'v.text'])
    .where('t.tenant_id', '=', tenantId)
    .where('v.template_id', '=', templateId)
    .where('v.version', '=', version)
    .executeTakeFirst();
}
