// A tenant's rows outlive its Tenant resource unless its deletionPolicy says otherwise.
//
// Until now every table that names a tenant cascaded from it, so deleting the tenant row took its
// domains (and DKIM keys), templates, keys, emails, their messages and events, and its
// suppression list: after which Mailplane would mail people who had complained or unsubscribed.
// Now a deleted tenant keeps its row with `deleted_at` set (its keys revoked), and a Tenant
// re-created under the same name takes the same row back, with its history and suppressions. The
// foreign keys restrict instead of cascading, so that no statement can remove a tenant's data by
// accident: what goes, goes row by row, because the Tenant asked for it (deletionPolicy Delete,
// lib/reconcile/tenant.ts).

import { sql, type Kysely } from 'kysely';

/** The tables whose tenant_id references tenants(id). */
const CHILDREN = ['api_keys', 'domains', 'templates', 'emails', 'suppressions'];

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
async function setOnDelete(db: Kysely<any>, action: 'restrict' | 'cascade'): Promise<void> {
  for (const table of CHILDREN) {
    // The first migration let Postgres name the constraints: find them rather than guess.
    const { rows } = await sql<{ conname: string }>`
      select conname from pg_constraint
      where contype = 'f' and conrelid = ${table}::regclass and confrelid = 'tenants'::regclass
    `.execute(db);
    for (const { conname } of rows) {
      await sql`alter table ${sql.table(table)} drop constraint ${sql.ref(conname)}`.execute(db);
    }
    await sql`
      alter table ${sql.table(table)} add constraint ${sql.ref(`${table}_tenant_id_fkey`)}
      foreign key (tenant_id) references tenants (id) on delete ${sql.raw(action)}
    `.execute(db);
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('tenants').addColumn('deleted_at', 'timestamptz').execute();
  await setOnDelete(db, 'restrict');
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await setOnDelete(db, 'cascade');
  await db.schema.alterTable('tenants').dropColumn('deleted_at').execute();
}
