// State changes of a message that more than one process makes: the sender bounces a message the
// recipient's server refuses, the inbound listener one whose bounce comes back later.

import { sql } from 'kysely';
import type { Db } from './index.js';
import { FINAL_STATUSES } from './schema.js';

/** A late bounce may still turn `delivered` into `bounced`: delivered was only a server's word. */
const SETTLED = sql.join(FINAL_STATUSES.filter((s) => s !== 'delivered').map((s) => sql.lit(s)));
const FINAL = sql.join(FINAL_STATUSES.map((s) => sql.lit(s)));

/**
 * Bounces a message in one statement: `bounced` with the reply, a `bounced` event and, when
 * `suppress`, the recipient suppressed for the tenant with the reply as the reason. Applies once:
 * answers false when the message was already final (or, for a `late` bounce, settled otherwise).
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
  const { rows } = await sql`
    with m as (
      update messages set status = 'bounced', last_reply = ${b.reply}, next_attempt_at = null, updated_at = now()
      where id = ${b.messageId} and status not in (${b.late ? SETTLED : FINAL})
      returning id, email_id, tenant_id, recipient
    ), s as (
      insert into suppressions (tenant_id, address, reason, detail)
      select tenant_id, lower(recipient), 'bounce', ${b.reply} from m where ${b.suppress}
      on conflict (tenant_id, address) do nothing
    )
    insert into events (tenant_id, email_id, message_id, type, detail)
    select tenant_id, email_id, id, 'bounced', ${JSON.stringify(b.detail)}::jsonb from m
    returning id
  `.execute(db);
  return rows.length > 0;
}
