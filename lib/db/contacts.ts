// A tenant's contacts and segments: the people it mails in bulk and the named groups a broadcast
// goes to. Every query names the tenant, so another tenant's contact or segment is as absent as
// one that never existed; a membership is only made between a contact and a segment of the same
// tenant. Lists are in id order, the cursor being an id: a cursor stays valid when its own row is
// deleted meanwhile, and a deep page costs what the first does (a tenant's contacts by
// (tenant_id, id), a segment's by its primary key). Who made a change is the transaction's
// (lib/db/audit.ts): the audit trigger on these tables writes the line.
//
// A contact's `unsubscribed` is its own consent. An unsubscribe from the tenant's mail (the
// one-click link or the mailto address) sets it in the transaction that suppresses the address
// (lib/db/transitions.ts recordUnsubscribes calls unsubscribeContacts).

import { sql } from 'kysely';
import type { Db } from './index.js';
import { pageOf, type Page, type PageOf } from './webhooks.js';

/** A property's value, as the API takes and keeps it. */
export type ContactPropertyValue = string | number | boolean;

export interface ContactRow {
  id: string;
  email: string;
  first_name: string | null;
  last_name: string | null;
  unsubscribed: boolean;
  properties: Record<string, ContactPropertyValue>;
  created_at: Date;
  updated_at: Date;
}

export interface SegmentRow {
  id: string;
  name: string;
  created_at: Date;
}

/** A contact named by its id or by its address (lower-cased), as Resend's paths name one. */
export type ContactRef = { id: string } | { email: string };

export interface NewContact {
  /** Lower-cased. */
  email: string;
  firstName?: string | null;
  lastName?: string | null;
  unsubscribed?: boolean;
  properties?: Record<string, ContactPropertyValue>;
  /** Segments of the tenant's the contact is put in. */
  segmentIds?: readonly string[];
}

export interface ContactChanges {
  firstName?: string | null;
  lastName?: string | null;
  unsubscribed?: boolean;
  /** Merged into the contact's: a key given null is removed. */
  properties?: Record<string, ContactPropertyValue | null>;
}

export type CreateContactOutcome =
  | { outcome: 'created'; contact: ContactRow }
  | { outcome: 'exists'; contact: ContactRow }
  | { outcome: 'segment-not-found'; segmentIds: string[] };

export type MembershipOutcome = 'added' | 'removed' | 'unchanged' | 'contact-not-found' | 'segment-not-found';

const CONTACT_COLUMNS = [
  'id',
  'email',
  'first_name',
  'last_name',
  'unsubscribed',
  'properties',
  'created_at',
  'updated_at',
] as const;
const SEGMENT_COLUMNS = ['id', 'name', 'created_at'] as const;

/** In the caller's transaction when it has one (withAuditContext), else in one of its own. */
function inTransaction<T>(db: Db, fn: (trx: Db) => Promise<T>): Promise<T> {
  return db.isTransaction ? fn(db) : db.transaction().execute(fn);
}

/** The segment ids of `ids` that name none of the tenant's segments. */
async function missingSegments(db: Db, tenantId: string, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const found = await db
    .selectFrom('segments')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('id', 'in', [...ids])
    .execute();
  const known = new Set(found.map((s) => s.id));
  return [...new Set(ids)].filter((id) => !known.has(id));
}

/**
 * Adds a contact, and puts it in the segments named, in one transaction: a segment that is not
 * the tenant's adds nothing. An address the tenant has a contact for already is `exists`, with
 * that contact, unchanged.
 *
 *   const r = await createContact(trx, tenantId, { email: 'ada@example.org', firstName: 'Ada', segmentIds: [id] });
 *   if (r.outcome === 'created') r.contact.id;
 */
export async function createContact(db: Db, tenantId: string, c: NewContact): Promise<CreateContactOutcome> {
  return inTransaction(db, async (trx) => {
    const segmentIds = [...new Set(c.segmentIds ?? [])];
    const missing = await missingSegments(trx, tenantId, segmentIds);
    if (missing.length > 0) return { outcome: 'segment-not-found', segmentIds: missing };
    const row = (await trx
      .insertInto('contacts')
      .values({
        tenant_id: tenantId,
        email: c.email,
        first_name: c.firstName ?? null,
        last_name: c.lastName ?? null,
        unsubscribed: c.unsubscribed ?? false,
        properties: JSON.stringify(c.properties ?? {}),
      })
      .onConflict((oc) => oc.columns(['tenant_id', 'email']).doNothing())
      .returning(CONTACT_COLUMNS)
      .executeTakeFirst()) as ContactRow | undefined;
    if (!row) {
      const existing = await getContact(trx, tenantId, { email: c.email });
      // Deleted between the insert and the read: as if it had never been there, try once more.
      if (!existing) return createContact(trx, tenantId, c);
      return { outcome: 'exists', contact: existing };
    }
    if (segmentIds.length > 0) {
      await trx
        .insertInto('segment_contacts')
        .values(segmentIds.map((segment_id) => ({ segment_id, contact_id: row.id })))
        .execute();
    }
    return { outcome: 'created', contact: row };
  });
}

/** The column a reference names a contact by, and its value. */
function byRef(ref: ContactRef): ['id' | 'email', string] {
  return 'id' in ref ? ['id', ref.id] : ['email', ref.email];
}

/**
 * The tenant's contact by id or address; undefined for another tenant's.
 *
 *   await getContact(db, tenantId, { email: 'ada@example.org' });
 */
export async function getContact(db: Db, tenantId: string, ref: ContactRef): Promise<ContactRow | undefined> {
  return (await db
    .selectFrom('contacts')
    .select(CONTACT_COLUMNS)
    .where('tenant_id', '=', tenantId)
    .where(byRef(ref)[0], '=', byRef(ref)[1])
    .executeTakeFirst()) as ContactRow | undefined;
}

/**
 * A page of the tenant's contacts, or of one segment's (the caller has checked that the segment
 * is the tenant's), in id order.
 *
 *   const { rows, hasMore } = await listContacts(db, tenantId, { limit: 20, after: lastId });
 *   await listContacts(db, tenantId, { limit: 100 }, { segmentId });
 */
export async function listContacts(
  db: Db,
  tenantId: string,
  page: Page,
  filter: { segmentId?: string } = {},
): Promise<PageOf<ContactRow>> {
  const backwards = page.before !== undefined;
  const order = backwards ? 'desc' : 'asc';
  if (filter.segmentId === undefined) {
    let query = db
      .selectFrom('contacts')
      .select(CONTACT_COLUMNS)
      .where('tenant_id', '=', tenantId)
      .orderBy('id', order)
      .limit(page.limit + 1);
    if (page.after !== undefined) query = query.where('id', '>', page.after);
    if (page.before !== undefined) query = query.where('id', '<', page.before);
    return pageOf((await query.execute()) as ContactRow[], page);
  }
  let query = db
    .selectFrom('segment_contacts as sc')
    .innerJoin('contacts as c', 'c.id', 'sc.contact_id')
    .select(CONTACT_COLUMNS.map((column) => `c.${column}` as const))
    .where('sc.segment_id', '=', filter.segmentId)
    .where('c.tenant_id', '=', tenantId)
    .orderBy('sc.contact_id', order)
    .limit(page.limit + 1);
  if (page.after !== undefined) query = query.where('sc.contact_id', '>', page.after);
  if (page.before !== undefined) query = query.where('sc.contact_id', '<', page.before);
  return pageOf((await query.execute()) as ContactRow[], page);
}

/**
 * Changes the tenant's contact; undefined when there is none. Properties given are merged into
 * the contact's, a key given null removed. `updated_at` moves only when something did.
 *
 *   await updateContact(trx, tenantId, { id }, { unsubscribed: true, properties: { plan: 'pro' } });
 */
export async function updateContact(
  db: Db,
  tenantId: string,
  ref: ContactRef,
  changes: ContactChanges,
): Promise<ContactRow | undefined> {
  const set: Record<string, unknown> = {};
  if (changes.firstName !== undefined) set.first_name = changes.firstName;
  if (changes.lastName !== undefined) set.last_name = changes.lastName;
  if (changes.unsubscribed !== undefined) set.unsubscribed = changes.unsubscribed;
  if (changes.properties !== undefined) {
    const given = JSON.stringify(changes.properties);
    set.properties = sql`jsonb_strip_nulls(properties || ${given}::jsonb)`;
  }
  if (Object.keys(set).length === 0) return getContact(db, tenantId, ref);
  return (await db
    .updateTable('contacts')
    .set({
      ...set,
      updated_at: sql`case when (${sql.join(
        Object.keys(set).map((column) => sql`${sql.ref(column)} is distinct from ${set[column]}`),
        sql` or `,
      )}) then now() else updated_at end`,
    })
    .where('tenant_id', '=', tenantId)
    .where(byRef(ref)[0], '=', byRef(ref)[1])
    .returning(CONTACT_COLUMNS)
    .executeTakeFirst()) as ContactRow | undefined;
}

/**
 * Deletes the tenant's contact and its memberships; answers its id, or undefined when there was
 * none. Its address stays suppressed if it was: the suppression list is the tenant's, not the
 * contact's.
 *
 *   await deleteContact(trx, tenantId, { email: 'ada@example.org' });
 */
export async function deleteContact(db: Db, tenantId: string, ref: ContactRef): Promise<string | undefined> {
  const row = await db
    .deleteFrom('contacts')
    .where('tenant_id', '=', tenantId)
    .where(byRef(ref)[0], '=', byRef(ref)[1])
    .returning('id')
    .executeTakeFirst();
  return row?.id;
}

/**
 * Marks the tenants' contacts of these addresses unsubscribed, in the caller's transaction: the
 * unsubscribe paths call it where they suppress the address (lib/db/transitions.ts
 * recordUnsubscribes), so that a contact never says subscribed for an address its tenant stopped
 * mailing on its recipient's word. Answers how many contacts changed.
 *
 *   await unsubscribeContacts(trx, [{ tenantId, address: 'ada@example.org' }]);
 */
export async function unsubscribeContacts(
  db: Db,
  items: readonly { tenantId: string; address: string }[],
): Promise<number> {
  if (items.length === 0) return 0;
  const input = JSON.stringify(
    items.map((i) => ({ tenant_id: i.tenantId, address: i.address.toLowerCase() })),
  );
  // Locked in id order first, so that two groups naming the same contacts in another order (one
  // address pressed through two messages) wait for each other instead of deadlocking.
  const result = await sql`
    with locked as (
      select c.id
      from contacts c
      join (select distinct * from jsonb_to_recordset(${input}::jsonb) as u(tenant_id uuid, address text)) u
        on c.tenant_id = u.tenant_id and c.email = u.address
      where not c.unsubscribed
      order by c.id
      for no key update of c
    )
    update contacts c set unsubscribed = true, updated_at = now()
    from locked where c.id = locked.id`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/**
 * Adds a segment to the tenant.
 *
 *   const segment = await createSegment(trx, tenantId, 'Newsletter');
 */
export async function createSegment(db: Db, tenantId: string, name: string): Promise<SegmentRow> {
  return db
    .insertInto('segments')
    .values({ tenant_id: tenantId, name })
    .returning(SEGMENT_COLUMNS)
    .executeTakeFirstOrThrow();
}

/** The tenant's segment; undefined for another tenant's. */
export async function getSegment(db: Db, tenantId: string, id: string): Promise<SegmentRow | undefined> {
  return db
    .selectFrom('segments')
    .select(SEGMENT_COLUMNS)
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/**
 * A page of the tenant's segments, or of the segments one contact of the tenant's is in, in id
 * order.
 *
 *   const { rows, hasMore } = await listSegments(db, tenantId, { limit: 20 });
 *   await listSegments(db, tenantId, { limit: 20 }, { contactId });
 */
export async function listSegments(
  db: Db,
  tenantId: string,
  page: Page,
  filter: { contactId?: string } = {},
): Promise<PageOf<SegmentRow>> {
  const order = page.before !== undefined ? 'desc' : 'asc';
  if (filter.contactId === undefined) {
    let query = db
      .selectFrom('segments')
      .select(SEGMENT_COLUMNS)
      .where('tenant_id', '=', tenantId)
      .orderBy('id', order)
      .limit(page.limit + 1);
    if (page.after !== undefined) query = query.where('id', '>', page.after);
    if (page.before !== undefined) query = query.where('id', '<', page.before);
    return pageOf(await query.execute(), page);
  }
  // From the contact's memberships (the index led by contact_id), not from all the tenant's segments.
  let query = db
    .selectFrom('segment_contacts as sc')
    .innerJoin('segments as s', 's.id', 'sc.segment_id')
    .select(SEGMENT_COLUMNS.map((column) => `s.${column}` as const))
    .where('sc.contact_id', '=', filter.contactId)
    .where('s.tenant_id', '=', tenantId)
    .orderBy('sc.segment_id', order)
    .limit(page.limit + 1);
  if (page.after !== undefined) query = query.where('sc.segment_id', '>', page.after);
  if (page.before !== undefined) query = query.where('sc.segment_id', '<', page.before);
  return pageOf(await query.execute(), page);
}

/** Renames the tenant's segment; undefined when there is none. */
export async function renameSegment(
  db: Db,
  tenantId: string,
  id: string,
  name: string,
): Promise<SegmentRow | undefined> {
  return db
    .updateTable('segments')
    .set({ name })
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .returning(SEGMENT_COLUMNS)
    .executeTakeFirst();
}

/**
 * Deletes the tenant's segment and its memberships, never its contacts; false when there was none.
 *
 *   await deleteSegment(trx, tenantId, id);
 */
export async function deleteSegment(db: Db, tenantId: string, id: string): Promise<boolean> {
  const row = await db
    .deleteFrom('segments')
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .returning('id')
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Puts the tenant's contact in its segment (`unchanged` when it is in already), or takes it out
 * (`unchanged` when it was not in). Both must be the tenant's.
 *
 *   await setMembership(trx, tenantId, { email: 'ada@example.org' }, segmentId, true);   // 'added'
 */
export async function setMembership(
  db: Db,
  tenantId: string,
  ref: ContactRef,
  segmentId: string,
  member: boolean,
): Promise<{ outcome: MembershipOutcome; contactId?: string }> {
  return inTransaction(db, async (trx) => {
    const contact = await getContact(trx, tenantId, ref);
    if (!contact) return { outcome: 'contact-not-found' };
    if (!(await getSegment(trx, tenantId, segmentId))) return { outcome: 'segment-not-found' };
    const changed = member
      ? await trx
          .insertInto('segment_contacts')
          .values({ segment_id: segmentId, contact_id: contact.id })
          .onConflict((oc) => oc.columns(['segment_id', 'contact_id']).doNothing())
          .executeTakeFirst()
      : await trx
          .deleteFrom('segment_contacts')
          .where('segment_id', '=', segmentId)
          .where('contact_id', '=', contact.id)
          .executeTakeFirst();
    const rows =
      'numInsertedOrUpdatedRows' in changed ? changed.numInsertedOrUpdatedRows : changed.numDeletedRows;
    const outcome: MembershipOutcome = Number(rows ?? 0) === 0 ? 'unchanged' : member ? 'added' : 'removed';
    return { outcome, contactId: contact.id };
  });
}

/**
 * Whether the contact is in the segment (both already known to be the tenant's).
 *
 *   if (!(await isMember(db, segmentId, contactId))) …
 */
export async function isMember(db: Db, segmentId: string, contactId: string): Promise<boolean> {
  const row = await db
    .selectFrom('segment_contacts')
    .select('contact_id')
    .where('segment_id', '=', segmentId)
    .where('contact_id', '=', contactId)
    .executeTakeFirst();
  return row !== undefined;
}
