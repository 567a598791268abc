// The inbound listener's writes besides a bounce (lib/db/messages.ts): what a delay notice or a
// complaint does to its message. Each is one statement, and each is idempotent, because an MTA that
// did not see our 250 sends the same report again.

import { sql } from 'kysely';
import type { Db } from '../lib/db/index.js';

/**
 * A DSN saying a server down the line is still trying: an event on the timeline, nothing else
 * (our part, handing it over, is done). Answers whether the message exists.
 */
export async function recordDelay(
  db: Db,
  d: { messageId: string; detail: Record<string, unknown> },
): Promise<boolean> {
  const { rows } = await sql`
    insert into events (tenant_id, email_id, message_id, type, detail)
    select tenant_id, email_id, id, 'delayed', ${JSON.stringify(d.detail)}::jsonb
    from messages where id = ${d.messageId}
    returning id
  `.execute(db);
  return rows.length > 0;
}

/**
 * A recipient marked the message as spam (or another ARF feedback type): the address is
 * suppressed for the tenant, so that it is never mailed again unless the tenant lifts it, and a
 * `complained` event is recorded once per message.
 */
export async function recordComplaint(
  db: Db,
  c: { messageId: string; feedbackType: string; detail: Record<string, unknown> },
): Promise<boolean> {
  const { rows } = await sql`
    with m as (
      select id, email_id, tenant_id, recipient from messages where id = ${c.messageId}
    ), s as (
      insert into suppressions (tenant_id, address, reason, detail)
      select tenant_id, lower(recipient), 'complaint', ${`feedback-type ${c.feedbackType}`} from m
      on conflict (tenant_id, address) do nothing
    )
    insert into events (tenant_id, email_id, message_id, type, detail)
    select tenant_id, email_id, id, 'complained', ${JSON.stringify(c.detail)}::jsonb from m
    where not exists (
      select 1 from events e where e.email_id = m.email_id and e.message_id = m.id and e.type = 'complained'
    )
    returning id
  `.execute(db);
  return rows.length > 0;
}
