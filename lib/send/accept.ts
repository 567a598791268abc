// The accept path: an email, its per-recipient messages and their send_message jobs are written in
// one statement, so a 202 means all of it is durable and nothing half-queued exists. A message row
// is itself the record of its `queued` transition (at created_at); the timeline shows it from there
// rather than from an events row, which cost a sixth of the accept rate in `make bench`. Only a
// message due later gets an event, `scheduled`, through the state machine's own fragment
// (lib/db/transitions.ts), so that its webhook follows.
//
// Concurrent requests are grouped (lib/group-commit.ts): each add_jobs call NOTIFYs once and Postgres
// serialises those commits, so one write per request caps near 1,500/s for the whole database
// while one write per group scales with the group.

import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Receipt } from '../db/idempotency.js';
import type { EmailContent } from '../db/schema.js';
import { EVENT_FIELDS_SQL } from '../db/event-fields.js';
import { scheduledEvents } from '../db/transitions.js';
import { SEND_MESSAGE, SEND_MESSAGE_MAX_ATTEMPTS } from '../jobs.js';
import { createGroupCommitter } from '../group-commit.js';

export interface PreparedEmail {
  id: string;
  tenantId: string;
  domainId: string;
  /** The formatted From mailbox. */
  from: string;
  subject: string;
  content: EmailContent;
  recipients: string[];
  scheduledAt: Date | null;
  /**
   * Bulk mail (a broadcast's): its send jobs run after every other waiting one, so that a
   * million-contact broadcast queued ahead of a password reset does not hold it back.
   */
  bulk?: boolean;
}

/**
 * graphile-worker's priority of a bulk email's send jobs; lower runs first, and every other job
 * has the default, 0.
 */
export const BULK_PRIORITY = 10;

export interface Acceptor {
  /**
   * Durably queues the emails, all or none, and with them the request's answer under its
   * Idempotency-Key, when it has one.
   */
  accept(emails: PreparedEmail[], receipt?: Receipt): Promise<void>;
  /** Waits for writes in flight. */
  drain(): Promise<void>;
}

/** Largest group written in one statement; beyond this the statement's parse time dominates. */
const MAX_GROUP = 500;

const INSERT = `
with new_emails as (
  insert into emails (id, tenant_id, domain_id, from_address, subject, content, event_fields, scheduled_at)
  select id, tenant_id, domain_id, from_address, subject, content, ${EVENT_FIELDS_SQL}, scheduled_at
  from jsonb_to_recordset($1::jsonb) as e(id uuid, tenant_id uuid, domain_id uuid, from_address text,
    subject text, content jsonb, scheduled_at timestamptz)
), receipts as (
  update idempotency_keys k set response_status = r.status, response_body = r.body
  from jsonb_to_recordset($5::jsonb) as r(tenant_id uuid, key text, fingerprint text, status int, body jsonb)
  where k.tenant_id = r.tenant_id and k.key = r.key and k.fingerprint = r.fingerprint
), new_messages as (
  insert into messages (id, email_id, tenant_id, recipient, status)
  select id, email_id, tenant_id, recipient, 'queued'
  from jsonb_to_recordset($2::jsonb) as m(id uuid, email_id uuid, tenant_id uuid, recipient text)
  returning id
), new_schedule as (
  select id, email_id, tenant_id, run_at
  from jsonb_to_recordset($2::jsonb) as m(id uuid, email_id uuid, tenant_id uuid, run_at timestamptz)
), ${scheduledEvents('new_schedule')}
select count(*)::int as jobs from graphile_worker.add_jobs((
  select array_agg(row($3::text, json_build_object('messageId', m.id), null, m.run_at, $4::int, null, m.priority, null)
    ::graphile_worker.job_spec)
  from jsonb_to_recordset($2::jsonb) as m(id uuid, run_at timestamptz, priority int)
))`;

/**
 * Creates the acceptor over a pool; at most `maxInFlight` groups are written at once.
 *
 *   const acceptor = createAcceptor(pool);
 *   await acceptor.accept([prepared]);   // resolves once committed
 */
export function createAcceptor(pool: pg.Pool, options: { maxInFlight?: number } = {}): Acceptor {
  const committer = createGroupCommitter<Accepted>((items) => insert(pool, items), {
    maxInFlight: options.maxInFlight ?? 4,
    maxGroup: MAX_GROUP,
    sizeOf: (item) => item.emails.length,
  });
  return {
    accept: (emails, receipt) => committer.write([{ emails, receipt }]),
    drain: () => committer.drain(),
  };
}

/** One request's share of a group. */
interface Accepted {
  emails: PreparedEmail[];
  receipt?: Receipt;
}

/**
 * Writes emails and their jobs with the statement of the accept path, on `client`: a transaction's,
 * when they must commit with something else (a broadcast's chunk with its cursor,
 * sender/broadcast-task.ts), without the grouping, which commits on its own connections.
 *
 *   await client.query('begin');
 *   await insertEmails(client, prepared);
 *   await client.query('update broadcasts set cursor = $1 …', […]);
 *   await client.query('commit');
 */
export async function insertEmails(
  client: Pick<pg.PoolClient, 'query'>,
  emails: PreparedEmail[],
): Promise<void> {
  await insert(client, [{ emails }]);
}

async function insert(pool: Pick<pg.Pool, 'query'>, items: Accepted[]): Promise<void> {
  const emails = items.flatMap((item) => item.emails);
  const receipts = items.flatMap(({ receipt }) =>
    receipt
      ? [
          {
            tenant_id: receipt.tenantId,
            key: receipt.key,
            fingerprint: receipt.fingerprint,
            status: receipt.status,
            body: receipt.body,
          },
        ]
      : [],
  );
  const emailRows = emails.map((e) => ({
    id: e.id,
    tenant_id: e.tenantId,
    domain_id: e.domainId,
    from_address: e.from,
    subject: e.subject,
    content: e.content,
    scheduled_at: e.scheduledAt,
  }));
  const messageRows = emails.flatMap((e) =>
    e.recipients.map((recipient) => ({
      id: randomUUID(),
      email_id: e.id,
      tenant_id: e.tenantId,
      recipient,
      run_at: e.scheduledAt,
      priority: e.bulk ? BULK_PRIORITY : null,
    })),
  );
  // Named, so that each connection parses and plans this long statement once, not per group.
  await pool.query({
    name: 'mailplane_accept',
    text: INSERT,
    values: [
      JSON.stringify(emailRows),
      JSON.stringify(messageRows),
      SEND_MESSAGE,
      SEND_MESSAGE_MAX_ATTEMPTS,
      JSON.stringify(receipts),
    ],
  });
}
