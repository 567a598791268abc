// A tenant's events by time, for POST /v1/webhooks/:id/replay with `from` and `to`: without it a
// replay reads every event of the installation, on a table that grows with every attempt, and
// runs into the api's statement timeout long before millions of rows. Events by email keep
// their own index (events_email).

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index events_tenant_created on events (tenant_id, created_at)`.execute(db);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists events_tenant_created`.execute(db);
}
