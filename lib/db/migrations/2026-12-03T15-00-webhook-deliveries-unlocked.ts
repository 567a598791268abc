// Every event that a tenant's endpoint is subscribed to writes a delivery row inside the sender's
// own statement. Its foreign key to webhook_endpoints made each of those inserts lock the endpoint
// row (FOR KEY SHARE): one row that every sender connection locked and wrote the lock into,
// several thousand times a second under load, and a multixact whenever two held it at once. The
// key goes; deleting an endpoint still deletes its deliveries (and their attempts), through the
// trigger below. A delivery that an event statement wrote while its endpoint was being deleted can
// outlive it: the dispatcher deletes such a delivery when it takes it (lib/db/webhooks.ts).

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table webhook_deliveries drop constraint webhook_deliveries_endpoint_id_fkey`.execute(db);
  await sql`
    create function mailplane_webhook_endpoints_deleted() returns trigger language plpgsql as $$
    begin
      delete from webhook_deliveries d using gone where d.endpoint_id = gone.id;
      return null;
    end $$`.execute(db);
  await sql`
    create trigger webhook_endpoints_deleted after delete on webhook_endpoints
    referencing old table as gone for each statement execute function mailplane_webhook_endpoints_deleted()`.execute(
    db,
  );
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger webhook_endpoints_deleted on webhook_endpoints`.execute(db);
  await sql`drop function mailplane_webhook_endpoints_deleted()`.execute(db);
  await sql`delete from webhook_deliveries d where not exists (select from webhook_endpoints w where w.id = d.endpoint_id)`.execute(
    db,
  );
  await sql`
    alter table webhook_deliveries add constraint webhook_deliveries_endpoint_id_fkey
    foreign key (endpoint_id) references webhook_endpoints (id) on delete cascade`.execute(db);
}
