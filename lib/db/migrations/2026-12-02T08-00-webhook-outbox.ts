// Webhook deliveries are the dispatcher's queue, and each row is updated twice after its insert:
// the claim (its lease, `locked_until`) and the outcome. The claim changes no indexed column, so
// with room left on the row's page Postgres writes it as a heap-only tuple, without an entry in
// each of the table's three indexes; at the default fillfactor of 100 the page is full and every
// claim writes all three. Half of each page is kept free for it; vacuum returns the rest.
// Only pages written from now on are filled to the new factor.

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table webhook_deliveries set (fillfactor = 50)`.execute(db);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table webhook_deliveries reset (fillfactor)`.execute(db);
}
