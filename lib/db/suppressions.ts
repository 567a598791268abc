// A tenant's suppression list as the API manages it: read a page, add, lift, and walk the whole of
// it for an export. Pages are in address order, keyed by the address itself (the primary key is
// (tenant_id, address)), so a cursor stays valid when its own row is lifted meanwhile and a deep
// page costs what the first does. Who made a change is the transaction's (lib/db/audit.ts): the
// audit trigger on suppressions writes the line.

import { sql } from 'kysely';
import type { Db } from './index.js';
import type { SuppressionReason } from './schema.js';

export interface SuppressionRow {
  address: string;
  reason: SuppressionReason;
  detail: string | null;
  created_at: Date;
}

export interface SuppressionFilter {
  reason?: SuppressionReason;
  /** One address, lower-cased. */
  address?: string;
}

export interface SuppressionPage {
  limit: number;
  /** The last address of the previous page: the next ones. */
  after?: string;
  /** The first address of a page: the ones before it. */
  before?: string;
}

const COLUMNS = ['address', 'reason', 'detail', 'created_at'] as const;

/**
 * A page of the tenant's suppressions in address order.
 *
 *   const { rows, hasMore } = await listSuppressions(db, tenantId, { reason: 'bounce' }, { limit: 20 });
 */
export async function listSuppressions(
  db: Db,
  tenantId: string,
  filter: SuppressionFilter,
  page: SuppressionPage,
): Promise<{ rows: SuppressionRow[]; hasMore: boolean }> {
  const backwards = page.before !== undefined;
  let query = db
    .selectFrom('suppressions')
    .select(COLUMNS)
    .where('tenant_id', '=', tenantId)
    .orderBy('address', backwards ? 'desc' : 'asc')
    .limit(page.limit + 1);
  if (filter.reason) query = query.where('reason', '=', filter.reason);
  if (filter.address) query = query.where('address', '=', filter.address);
  if (page.after !== undefined) query = query.where('address', '>', page.after);
  if (page.before !== undefined) query = query.where('address', '<', page.before);
  const rows = (await query.execute()) as SuppressionRow[];
  const hasMore = rows.length > page.limit;
  const kept = rows.slice(0, page.limit);
  return { rows: backwards ? kept.reverse() : kept, hasMore };
}

/** The tenant's suppression of one address, if any. */
export async function getSuppression(
  db: Db,
  tenantId: string,
  address: string,
): Promise<SuppressionRow | undefined> {
  return (await db
    .selectFrom('suppressions')
    .select(COLUMNS)
    .where('tenant_id', '=', tenantId)
    .where('address', '=', address)
    .executeTakeFirst()) as SuppressionRow | undefined;
}

export interface NewSuppression {
  /** Lower-cased. */
  address: string;
  reason: SuppressionReason;
  detail?: string | null;
}

/**
 * Suppresses the addresses for the tenant in one statement; an address suppressed already keeps
 * its reason (a complaint must not become `manual` by an import), and one given twice is added
 * once. Answers each item as its address is now suppressed, in the order given, with whether this
 * call added it.
 *
 *   await addSuppressions(trx, tenantId, [{ address: 'ada@example.org', reason: 'manual' }]);
 */
export async function addSuppressions(
  db: Db,
  tenantId: string,
  items: readonly NewSuppression[],
): Promise<(SuppressionRow & { added: boolean })[]> {
  if (items.length === 0) return [];
  const input = JSON.stringify(
    items.map((i) => ({ address: i.address, reason: i.reason, detail: i.detail ?? null })),
  );
  const { rows } = await sql<SuppressionRow & { added: boolean; ord: number }>`
    with given as (
      select * from rows from (jsonb_to_recordset(${input}::jsonb) as (address text, reason text, detail text))
        with ordinality as g(address, reason, detail, ord)
    ), first as (
      select distinct on (address) address, reason, detail, ord from given order by address, ord
    ), added as (
      insert into suppressions (tenant_id, address, reason, detail)
      select ${tenantId}::uuid, address, reason, detail from first order by address
      on conflict (tenant_id, address) do nothing
      returning address, reason, detail, created_at
    )
    select g.address, coalesce(a.reason, s.reason) as reason, coalesce(a.detail, s.detail) as detail,
           coalesce(a.created_at, s.created_at) as created_at, a.address is not null and f.ord = g.ord as added, g.ord
    from given g
    join first f on f.address = g.address
    left join added a on a.address = g.address
    left join suppressions s on a.address is null and s.tenant_id = ${tenantId}::uuid and s.address = g.address
    order by g.ord`.execute(db);
  return rows.map(({ ord: _ord, ...row }) => row);
}

export type LiftOutcome = 'lifted' | 'not-found' | 'complaint';

/**
 * Lifts one suppression. One that came from a complaint is lifted only with `liftComplaint`: the
 * person said the mail was spam, and mailing them again harms the whole installation's reputation.
 *
 *   await liftSuppression(trx, tenantId, 'ada@example.org', { liftComplaint: false });   // 'lifted'
 */
export async function liftSuppression(
  db: Db,
  tenantId: string,
  address: string,
  options: { liftComplaint: boolean },
): Promise<{ outcome: LiftOutcome; row?: SuppressionRow }> {
  const deleted = (await db
    .deleteFrom('suppressions')
    .where('tenant_id', '=', tenantId)
    .where('address', '=', address)
    .where((eb) =>
      options.liftComplaint ? eb.lit(true) : eb('reason', '<>', 'complaint' satisfies SuppressionReason),
    )
    .returning(COLUMNS)
    .executeTakeFirst()) as SuppressionRow | undefined;
  if (deleted) return { outcome: 'lifted', row: deleted };
  const row = await getSuppression(db, tenantId, address);
  return row ? { outcome: 'complaint', row } : { outcome: 'not-found' };
}

/** Rows read per query of an export: large enough to stream fast, small enough to hold. */
const EXPORT_PAGE = 2000;

/**
 * Every suppression of the tenant that passes `filter`, in address order, a page of queries at a
 * time, so that an export of millions holds one page in memory.
 *
 *   for await (const rows of walkSuppressions(db, tenantId, {})) write(rows);
 */
export async function* walkSuppressions(
  db: Db,
  tenantId: string,
  filter: SuppressionFilter,
): AsyncGenerator<SuppressionRow[]> {
  let after: string | undefined;
  for (;;) {
    const page = await listSuppressions(db, tenantId, filter, {
      limit: EXPORT_PAGE,
      ...(after === undefined ? {} : { after }),
    });
    if (page.rows.length > 0) yield page.rows;
    if (!page.hasMore) return;
    after = page.rows.at(-1)!.address;
  }
}
