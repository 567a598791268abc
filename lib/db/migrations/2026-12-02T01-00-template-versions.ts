// Templates through the API, and domains' DNS findings kept where the api reads them.
//
// templates.source says who owns a template: 'resource' (a Template applied by the operator or
// `mailplane apply`, the source of truth, read-only through the API) or 'api'. Each version keeps
// the variables it declares (Resend's `variables`, with fallbacks) and the sample data it was
// checked with, so that a preview and a later check render what the first did. A rename is logged
// by a trigger of its own: the audit function of 2026-12-01T08-00 logs a template's versions.
//
// domains.dns_findings holds the last DNS check of each record (by the operator on its interval,
// or by the api when asked), and dns_checked_at when it ran: a status in the Kubernetes API alone
// is out of reach of the api, which talks to Postgres only.

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('templates')
    .addColumn('source', 'text', (c) =>
      c
        .notNull()
        .defaultTo('resource')
        .check(sql`source in ('resource', 'api')`),
    )
    .execute();
  // The api lists a tenant's templates newest first, a page at a time.
  await db.schema
    .createIndex('templates_tenant_created')
    .on('templates')
    .columns(['tenant_id', 'created_at', 'id'])
    .execute();
  await db.schema
    .alterTable('template_versions')
    .addColumn('variables', 'jsonb')
    .addColumn('sample_data', 'jsonb')
    .execute();
  await db.schema
    .alterTable('domains')
    .addColumn('dns_findings', 'jsonb')
    .addColumn('dns_checked_at', 'timestamptz')
    .execute();

  await sql`
    create function mailplane_audit_template_rename() returns trigger language plpgsql as $$
    begin
      insert into audit_log (tenant_id, actor, action, target, detail, request_id)
      values (
        new.tenant_id,
        coalesce(nullif(current_setting('mailplane.actor', true), ''), nullif(current_setting('application_name'), ''), 'unknown'),
        'template.renamed', new.name, jsonb_build_object('from', old.name),
        nullif(current_setting('mailplane.request_id', true), '')
      );
      return null;
    end $$`.execute(db);
  await sql`create trigger audit_rename after update of name on templates
    for each row when (old.name is distinct from new.name)
    execute function mailplane_audit_template_rename()`.execute(db);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger if exists audit_rename on templates`.execute(db);
  await sql`drop function if exists mailplane_audit_template_rename()`.execute(db);
  await db.schema.alterTable('domains').dropColumn('dns_findings').dropColumn('dns_checked_at').execute();
  await db.schema.alterTable('template_versions').dropColumn('variables').dropColumn('sample_data').execute();
  await db.schema.dropIndex('templates_tenant_created').ifExists().execute();
  await db.schema.alterTable('templates').dropColumn('source').execute();
}
