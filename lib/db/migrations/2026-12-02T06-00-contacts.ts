// Contacts and segments: the people a tenant mails in bulk, and the named groups a broadcast goes
// to (Resend's contacts and segments; its older "audiences" are segments too).
//
// - contacts: one row per address and tenant (lower-cased, unique), with the contact's own consent
//   (`unsubscribed`) and custom fields (`properties`). A contact is a tenant's record of a person
//   like a suppression is, so it outlives a deleted Tenant the same way: the foreign key restricts,
//   and only a Tenant deleted with deletionPolicy Delete takes them (lib/reconcile/tenant.ts).
// - segments: named groups; segment_contacts says who is in which. Deleting a segment or a contact
//   takes its memberships with it, never the other side.
// - A segment's contacts are paged in contact id order by the primary key (segment_id,
//   contact_id); a contact's segments, and the cascade of a contact's deletion, by the index led
//   by contact_id. A tenant's contacts are paged by (tenant_id, id).
// - Changes are in the audit log (one trigger function for the three tables). A membership that
//   goes because its segment or contact went is not noted again: the deletion itself is.

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('contacts')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('tenant_id', 'uuid', (c) => c.notNull())
    // Lower-cased by the code that writes it, as suppressions.address is, so that the two match.
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('first_name', 'text')
    .addColumn('last_name', 'text')
    .addColumn('unsubscribed', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('properties', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('contacts_tenant_email', ['tenant_id', 'email'])
    .execute();
  // Named as 2026-12-01T06-00-tenant-retention names the others, and restricting like them.
  await sql`alter table contacts add constraint contacts_tenant_id_fkey
    foreign key (tenant_id) references tenants (id) on delete restrict`.execute(db);
  await db.schema.createIndex('contacts_tenant_id').on('contacts').columns(['tenant_id', 'id']).execute();

  await db.schema
    .createTable('segments')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('tenant_id', 'uuid', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`alter table segments add constraint segments_tenant_id_fkey
    foreign key (tenant_id) references tenants (id) on delete restrict`.execute(db);
  await db.schema.createIndex('segments_tenant_id').on('segments').columns(['tenant_id', 'id']).execute();

  await db.schema
    .createTable('segment_contacts')
    .addColumn('segment_id', 'uuid', (c) => c.notNull().references('segments.id').onDelete('cascade'))
    .addColumn('contact_id', 'uuid', (c) => c.notNull().references('contacts.id').onDelete('cascade'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('segment_contacts_pkey', ['segment_id', 'contact_id'])
    .execute();
  await db.schema
    .createIndex('segment_contacts_by_contact')
    .on('segment_contacts')
    .columns(['contact_id', 'segment_id'])
    .execute();

  await sql`
    create function mailplane_audit_contacts() returns trigger language plpgsql as $$
    declare
      r record := case when tg_op = 'DELETE' then old else new end;
      tenant uuid;
      action text;
      target text;
      detail jsonb := '{}'::jsonb;
    begin
      if tg_table_name = 'contacts' then
        tenant := r.tenant_id; target := r.email;
        if tg_op = 'INSERT' then action := 'contact.created'; detail := jsonb_build_object('unsubscribed', r.unsubscribed);
        elsif tg_op = 'DELETE' then action := 'contact.deleted';
        elsif old.unsubscribed is distinct from new.unsubscribed then
          action := 'contact.updated'; detail := jsonb_build_object('unsubscribed', new.unsubscribed);
        elsif old.email is distinct from new.email or old.first_name is distinct from new.first_name
          or old.last_name is distinct from new.last_name or old.properties is distinct from new.properties then
          action := 'contact.updated';
        end if;
      elsif tg_table_name = 'segments' then
        tenant := r.tenant_id; target := r.name; detail := jsonb_build_object('id', r.id);
        if tg_op = 'INSERT' then action := 'segment.created';
        elsif tg_op = 'DELETE' then action := 'segment.deleted';
        elsif old.name is distinct from new.name then action := 'segment.updated';
        end if;
      elsif tg_table_name = 'segment_contacts' then
        -- Both ends are found only while both exist: a cascade from either is not noted again.
        select s.tenant_id, c.email, jsonb_build_object('segment_id', s.id, 'segment', s.name)
          into tenant, target, detail
          from segments s join contacts c on c.id = r.contact_id where s.id = r.segment_id;
        if tenant is not null then
          action := case when tg_op = 'INSERT' then 'contact.segment_added' else 'contact.segment_removed' end;
        end if;
      end if;
      if action is not null then
        insert into audit_log (tenant_id, actor, action, target, detail, request_id)
        values (
          tenant,
          coalesce(nullif(current_setting('mailplane.actor', true), ''), nullif(current_setting('application_name'), ''), 'unknown'),
          action, target, detail,
          nullif(current_setting('mailplane.request_id', true), '')
        );
      end if;
      return null;
    end $$`.execute(db);
  await sql`create trigger audit after insert or update or delete on contacts
    for each row execute function mailplane_audit_contacts()`.execute(db);
  await sql`create trigger audit after insert or update or delete on segments
    for each row execute function mailplane_audit_contacts()`.execute(db);
  await sql`create trigger audit after insert or delete on segment_contacts
    for each row execute function mailplane_audit_contacts()`.execute(db);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('segment_contacts').ifExists().execute();
  await db.schema.dropTable('segments').ifExists().execute();
  await db.schema.dropTable('contacts').ifExists().execute();
  await sql`drop function if exists mailplane_audit_contacts()`.execute(db);
}
