// Broadcasts: one email written once and sent to every contact of a segment who has not
// unsubscribed, each contact getting an email of their own through the accept path.
//
// - broadcasts: the draft (from, subject, bodies, segment), where it is in its life (status), and
//   the fan-out's progress: `cursor` is the last contact (in id order) that has its email, and
//   `created_count` how many emails were created. Each chunk's emails and the cursor's advance
//   commit together (sender/broadcast-task.ts), so a fan-out that dies resumes where it stopped.
// - broadcast_recipients: one row per address a broadcast has mailed, written in the chunk's
//   transaction. Its key (broadcast, lower-cased address) is what keeps an address from getting a
//   broadcast twice, whatever runs twice and even when its contact is deleted and added again
//   mid-fan-out. A table of its own rather than columns on emails: emails is the largest table,
//   and a column and unique index there would rewrite-lock it here and cost every other accept.
//   The emails keep their `broadcast_id:<id>` tag for listing and stats.
// - Every change a tenant makes to a broadcast is in the audit log, by a trigger as for the other
//   tables (2026-12-01T08-00-audit-log); progress of the fan-out is not a change anyone made.
//
// A broadcast outlives a deleted Tenant as the tenant's other rows do (2026-12-01T06-00-tenant-
// retention): the foreign key restricts, and only a Tenant deleted with deletionPolicy Delete takes
// them (lib/reconcile/tenant.ts), their recipients with them.

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('broadcasts')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('tenant_id', 'uuid', (c) => c.notNull())
    .addColumn('name', 'text')
    .addColumn('segment_id', 'uuid', (c) => c.references('segments.id').onDelete('set null'))
    .addColumn('from_address', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('reply_to', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('html', 'text')
    .addColumn('text', 'text')
    .addColumn('preview_text', 'text')
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('draft'))
    .addColumn('scheduled_at', 'timestamptz')
    .addColumn('started_at', 'timestamptz')
    .addColumn('sent_at', 'timestamptz')
    .addColumn('canceled_at', 'timestamptz')
    .addColumn('failure', 'text')
    .addColumn('cursor', 'uuid')
    .addColumn('created_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint(
      'broadcasts_status_check',
      sql`status in ('draft', 'scheduled', 'queued', 'sending', 'sent', 'canceled', 'failed')`,
    )
    .execute();
  // Named as 2026-12-01T06-00-tenant-retention names the others, and restricting like them.
  await sql`alter table broadcasts add constraint broadcasts_tenant_id_fkey
    foreign key (tenant_id) references tenants (id) on delete restrict`.execute(db);
  // GET /v1/broadcasts, newest first, a page at a time.
  await db.schema
    .createIndex('broadcasts_tenant_created')
    .on('broadcasts')
    .columns(['tenant_id', 'created_at', 'id'])
    .execute();

  // No foreign keys to contacts or emails: a contact or email deleted later leaves the record of
  // what was mailed, and neither delete has to look here.
  await db.schema
    .createTable('broadcast_recipients')
    .addColumn('broadcast_id', 'uuid', (c) => c.notNull().references('broadcasts.id').onDelete('cascade'))
    .addColumn('address', 'text', (c) => c.notNull())
    .addColumn('contact_id', 'uuid')
    .addColumn('email_id', 'uuid', (c) => c.notNull())
    .addPrimaryKeyConstraint('broadcast_recipients_pkey', ['broadcast_id', 'address'])
    .addCheckConstraint('broadcast_recipients_address_lower', sql`address = lower(address)`)
    .execute();

  await sql`
    create function mailplane_audit_broadcast() returns trigger language plpgsql as $$
    declare
      r record := case when tg_op = 'DELETE' then old else new end;
      action text;
      detail jsonb := jsonb_build_object('status', r.status, 'segment_id', r.segment_id);
    begin
      if tg_op = 'INSERT' then action := 'broadcast.created';
      elsif tg_op = 'DELETE' then action := 'broadcast.deleted';
      elsif old.status is distinct from new.status and new.status in ('scheduled', 'queued') then
        action := 'broadcast.sent'; detail := detail || jsonb_build_object('scheduled_at', new.scheduled_at);
      elsif old.status is distinct from new.status and new.status = 'canceled' then action := 'broadcast.canceled';
      elsif old.status = 'draft' and new.status = 'draft' then action := 'broadcast.updated';
      end if;
      if action is not null then
        insert into audit_log (tenant_id, actor, action, target, detail, request_id)
        values (
          r.tenant_id,
          coalesce(nullif(current_setting('mailplane.actor', true), ''), nullif(current_setting('application_name'), ''), 'unknown'),
          action, coalesce(r.name, r.id::text), detail,
          nullif(current_setting('mailplane.request_id', true), '')
        );
      end if;
      return null;
    end $$`.execute(db);
  await sql`create trigger audit after insert or update or delete on broadcasts
    for each row execute function mailplane_audit_broadcast()`.execute(db);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('broadcast_recipients').ifExists().execute();
  await sql`drop trigger if exists audit on broadcasts`.execute(db);
  await sql`drop function if exists mailplane_audit_broadcast()`.execute(db);
  await db.schema.dropTable('broadcasts').ifExists().execute();
}
