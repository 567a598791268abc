// The audit log: who changed what for a tenant. Written by triggers on the tables a change lands
// in (keys, domains, templates, webhooks, suppressions, the tenant itself), so that no code path —
// the api, the operator, `mailplane apply`, the sender suppressing a bounced address — can change
// them without a line here. Who did it comes from the transaction (`mailplane.actor` and
// `mailplane.request_id`, set by lib/db/audit.ts withAuditContext), else from the connection's
// application_name (each process names its connections), so a line always says which part of
// Mailplane wrote it. Key material never enters the log: a DKIM or webhook secret change is noted,
// not copied.

import { sql, type Kysely } from 'kysely';

const TABLES = ['api_keys', 'domains', 'templates', 'webhook_endpoints', 'suppressions', 'tenants'];

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('audit_log')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('tenant_id', 'uuid', (c) => c.notNull())
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('detail', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('request_id', 'text')
    .execute();
  await db.schema.createIndex('audit_log_tenant').on('audit_log').columns(['tenant_id', 'id']).execute();

  await sql`
    create function mailplane_audit() returns trigger language plpgsql as $$
    declare
      r record := case when tg_op = 'DELETE' then old else new end;
      tenant uuid;
      action text;
      target text;
      detail jsonb := '{}'::jsonb;
    begin
      if tg_table_name = 'tenants' then
        tenant := r.id; target := r.namespace || '/' || r.name;
        if tg_op = 'INSERT' then action := 'tenant.created';
        elsif tg_op = 'DELETE' then action := 'tenant.deleted';
        elsif old.deleted_at is null and new.deleted_at is not null then action := 'tenant.retired';
        elsif old.deleted_at is not null and new.deleted_at is null then action := 'tenant.restored';
        elsif old.limits is distinct from new.limits then action := 'tenant.updated'; detail := jsonb_build_object('limits', new.limits);
        end if;
      elsif tg_table_name = 'api_keys' then
        tenant := r.tenant_id; target := r.name;
        detail := jsonb_build_object('prefix', r.prefix, 'scopes', to_jsonb(r.scopes));
        if tg_op = 'INSERT' then action := 'api_key.issued';
        elsif tg_op = 'DELETE' then action := 'api_key.deleted';
        elsif old.revoked_at is null and new.revoked_at is not null then action := 'api_key.revoked';
        elsif old.scopes is distinct from new.scopes then action := 'api_key.updated';
        end if;
      elsif tg_table_name = 'domains' then
        tenant := r.tenant_id; target := r.name;
        if tg_op = 'INSERT' then action := 'domain.created'; detail := jsonb_build_object('selector', r.selector, 'algorithm', r.dkim_algorithm);
        elsif tg_op = 'DELETE' then action := 'domain.deleted';
        elsif old.dkim_public_key is distinct from new.dkim_public_key or old.selector is distinct from new.selector then
          action := 'domain.key_changed'; detail := jsonb_build_object('selector', new.selector, 'algorithm', new.dkim_algorithm);
        elsif old.return_path_domain is distinct from new.return_path_domain then
          action := 'domain.updated'; detail := jsonb_build_object('return_path_domain', new.return_path_domain);
        end if;
      elsif tg_table_name = 'templates' then
        tenant := r.tenant_id; target := r.name;
        if tg_op = 'INSERT' then action := 'template.created'; detail := jsonb_build_object('version', r.current_version);
        elsif tg_op = 'DELETE' then action := 'template.deleted';
        elsif old.current_version is distinct from new.current_version then
          action := 'template.updated'; detail := jsonb_build_object('version', new.current_version);
        end if;
      elsif tg_table_name = 'webhook_endpoints' then
        tenant := r.tenant_id; target := coalesce(r.name, r.id::text);
        detail := jsonb_build_object('url', r.url, 'events', to_jsonb(r.events), 'source', r.source);
        if tg_op = 'INSERT' then action := 'webhook.created';
        elsif tg_op = 'DELETE' then action := 'webhook.deleted';
        elsif old.secret is distinct from new.secret then action := 'webhook.secret_rotated';
        elsif old.enabled and not new.enabled then action := 'webhook.disabled'; detail := detail || jsonb_build_object('reason', new.disabled_reason);
        elsif not old.enabled and new.enabled then action := 'webhook.enabled';
        elsif old.url is distinct from new.url or old.events is distinct from new.events then action := 'webhook.updated';
        end if;
      elsif tg_table_name = 'suppressions' then
        tenant := r.tenant_id; target := r.address;
        detail := jsonb_build_object('reason', r.reason);
        if tg_op = 'INSERT' then action := 'suppression.added';
        elsif tg_op = 'DELETE' then action := 'suppression.removed';
        end if;
      end if;
      -- Changes nobody acts on (a timestamp, a failure counter) are not logged.
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
  for (const table of TABLES) {
    await sql`create trigger audit after insert or update or delete on ${sql.table(table)}
      for each row execute function mailplane_audit()`.execute(db);
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  for (const table of TABLES) await sql`drop trigger if exists audit on ${sql.table(table)}`.execute(db);
  await sql`drop function if exists mailplane_audit()`.execute(db);
  await db.schema.dropTable('audit_log').ifExists().execute();
}
