// One-click unsubscribe and managed suppressions.
//
// - tenants.unsubscribe: the Tenant's default for an email that does not say (`spec.unsubscribe`),
//   whether its messages carry List-Unsubscribe headers; a change is in the audit log.
// - suppressions.reason: held to the four reasons the API speaks of, now that the API writes them.
// - suppressions are listed by reason in address order (the primary key serves the unfiltered
//   list): an index led by tenant and reason keeps a filtered page as cheap as the first.

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('tenants')
    .addColumn('unsubscribe', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
  await sql`alter table suppressions add constraint suppressions_reason_check
    check (reason in ('bounce', 'complaint', 'unsubscribe', 'manual'))`.execute(db);
  // The audit log's own trigger (2026-12-01T08-00-audit-log) notes a change of limits; a change
  // of this default changes the mail every application of the tenant sends, so it is noted too.
  await sql`
    create function mailplane_audit_tenant_unsubscribe() returns trigger language plpgsql as $$
    begin
      insert into audit_log (tenant_id, actor, action, target, detail, request_id)
      values (
        new.id,
        coalesce(nullif(current_setting('mailplane.actor', true), ''), nullif(current_setting('application_name'), ''), 'unknown'),
        'tenant.updated', new.namespace || '/' || new.name, jsonb_build_object('unsubscribe', new.unsubscribe),
        nullif(current_setting('mailplane.request_id', true), '')
      );
      return null;
    end $$`.execute(db);
  await sql`create trigger audit_unsubscribe after update of unsubscribe on tenants
    for each row when (old.unsubscribe is distinct from new.unsubscribe)
    execute function mailplane_audit_tenant_unsubscribe()`.execute(db);
  await db.schema
    .createIndex('suppressions_by_reason')
    .on('suppressions')
    .columns(['tenant_id', 'reason', 'address'])
    .execute();
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger if exists audit_unsubscribe on tenants`.execute(db);
  await sql`drop function if exists mailplane_audit_tenant_unsubscribe()`.execute(db);
  await db.schema.dropIndex('suppressions_by_reason').ifExists().execute();
  await sql`alter table suppressions drop constraint if exists suppressions_reason_check`.execute(db);
  await db.schema.alterTable('tenants').dropColumn('unsubscribe').execute();
}
