// The audit log (written by triggers: see its migration): who a change is attributed to, and
// reading a tenant's log newest first.

import { sql } from 'kysely';
import type { Db } from './index.js';

export interface AuditContext {
  /** Who acts: `api_key:<prefix>` for a request, a controller's name, `mailplane apply`. */
  actor: string;
  requestId?: string;
}

/**
 * Runs `fn` in a transaction whose changes the audit log attributes to `context`.
 *
 *   await withAuditContext(db, { actor: `api_key:${principal.keyPrefix}`, requestId }, (trx) => createWebhook(trx, …));
 */
export async function withAuditContext<T>(
  db: Db,
  context: AuditContext,
  fn: (trx: Db) => Promise<T>,
): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await sql`select set_config('mailplane.actor', ${context.actor}, true),
                     set_config('mailplane.request_id', ${context.requestId ?? ''}, true)`.execute(trx);
    return fn(trx);
  });
}

export interface AuditEntry {
  id: string;
  at: Date;
  actor: string;
  action: string;
  target: string;
  detail: Record<string, unknown>;
  request_id: string | null;
}

/**
 * A page of the tenant's log, newest first; `before` is the id the previous page ended at.
 *
 *   const { data, hasMore } = await listAudit(db, tenantId, { limit: 50 });
 */
export async function listAudit(
  db: Db,
  tenantId: string,
  page: { limit: number; before?: string; action?: string },
): Promise<{ data: AuditEntry[]; hasMore: boolean }> {
  let query = db
    .selectFrom('audit_log')
    .select(['id', 'at', 'actor', 'action', 'target', 'detail', 'request_id'])
    .where('tenant_id', '=', tenantId)
    .orderBy('id', 'desc')
    .limit(page.limit + 1);
  if (page.before) query = query.where('id', '<', page.before);
  if (page.action) query = query.where('action', 'like', `${page.action.replace(/[%_\\]/g, '\\$&')}%`);
  const rows = (await query.execute()) as AuditEntry[];
  return { data: rows.slice(0, page.limit), hasMore: rows.length > page.limit };
}
