// The sender's SQL: reading a message with everything needed to send it, and its state changes.
//
// Each state change is one statement: a data-modifying CTE updates the message, and the same
// statement appends its event (and, as the case may be, the suppression or the retry job). One
// statement is one transaction, and one round trip instead of four. Every update only applies
// to a message that is not final yet, and the event is written only when the update applied, so a
// job that runs twice cannot overwrite an outcome nor duplicate its event.

import { sql } from 'kysely';
import type { Db } from '../lib/db/index.js';
import type { DomainTable, EmailContent, MessageStatus } from '../lib/db/schema.js';
import { SEND_MESSAGE, SEND_MESSAGE_MAX_ATTEMPTS } from '../lib/jobs.js';

/** Statuses nothing moves a message out of. */
export const FINAL_STATUSES: readonly MessageStatus[] = [
  'delivered',
  'bounced',
  'failed',
  'suppressed',
  'canceled',
];
const FINAL = sql.join(FINAL_STATUSES.map((s) => sql.lit(s)));

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
 * Reads a message, its email, its domain and whether its recipient is suppressed, in one query.
 *
 *   const message = await loadMessage(db, messageId);   // undefined when it no longer exists
 */
export async function loadMessage(db: Db, messageId: string): Promise<MessageToSend | undefined> {
  const row = await db
    .selectFrom('messages as m')
    .innerJoin('emails as e', 'e.id', 'm.email_id')
    .leftJoin('domains as d', (join) =>
      join.onRef('d.id', '=', 'e.domain_id').onRef('d.tenant_id', '=', 'e.tenant_id'),
    )
    .select([
      'm.id',
      'm.email_id',
      'm.tenant_id',
      'm.recipient',
      'm.status',
      'e.from_address',
      'e.content',
      sql<Date>`greatest(e.created_at, e.scheduled_at)`.as('due_at'),
      sql<boolean>`exists (
        select 1 from suppressions s where s.tenant_id = m.tenant_id and s.address = lower(m.recipient)
      )`.as('suppressed'),
      'd.id as domain_id',
      'd.name as domain_name',
      'd.selector',
      'd.dkim_private_key',
      'd.return_path_domain',
    ])
    .where('m.id', '=', messageId)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
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
}

/**
 * Claims a message for an attempt: `sending`, attempts + 1, and a `sending` event. Returns the
 * attempt number, or undefined when there is nothing to do: the message is final, or it was
 * deferred and a newer job owns its next attempt (this one ran twice).
 */
export async function markSending(db: Db, messageId: string): Promise<number | undefined> {
  const { rows } = await sql<{ attempt: number }>`
    with m as (
      update messages set status = 'sending', attempts = attempts + 1, updated_at = now()
      where id = ${messageId}
        and status not in (${FINAL})
        and not (status = 'deferred' and next_attempt_at > now())
      returning id, email_id, tenant_id, attempts
    )
    insert into events (tenant_id, email_id, message_id, type, detail)
    select tenant_id, email_id, id, 'sending', jsonb_build_object('attempt', attempts) from m
    returning (detail->>'attempt')::int as attempt
  `.execute(db);
  return rows[0]?.attempt;
}

export interface Settlement {
  messageId: string;
  status: 'delivered' | 'failed' | 'suppressed';
  /** The SMTP reply that settled it, if any. */
  reply?: string;
  detail: Record<string, unknown>;
}

/** Moves a message to a final status that needs nothing else: delivered, failed or suppressed. */
export async function settle(db: Db, s: Settlement): Promise<boolean> {
  const { rows } = await sql`
    with m as (
      update messages
      set status = ${s.status}, last_reply = coalesce(${s.reply ?? null}, last_reply),
          next_attempt_at = null, updated_at = now()
      where id = ${s.messageId} and status not in (${FINAL})
      returning id, email_id, tenant_id
    )
    insert into events (tenant_id, email_id, message_id, type, detail)
    select tenant_id, email_id, id, ${s.status}, ${JSON.stringify(s.detail)}::jsonb from m
    returning id
  `.execute(db);
  return rows.length > 0;
}

/** Bounces a message and suppresses its recipient for the tenant, with the reply as the reason. */
export async function bounce(
  db: Db,
  b: { messageId: string; reply: string; detail: Record<string, unknown> },
): Promise<boolean> {
  const { rows } = await sql`
    with m as (
      update messages set status = 'bounced', last_reply = ${b.reply}, next_attempt_at = null, updated_at = now()
      where id = ${b.messageId} and status not in (${FINAL})
      returning id, email_id, tenant_id, recipient
    ), s as (
      insert into suppressions (tenant_id, address, reason, detail)
      select tenant_id, lower(recipient), 'bounce', ${b.reply} from m
      on conflict (tenant_id, address) do nothing
    )
    insert into events (tenant_id, email_id, message_id, type, detail)
    select tenant_id, email_id, id, 'bounced', ${JSON.stringify(b.detail)}::jsonb from m
    returning id
  `.execute(db);
  return rows.length > 0;
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
