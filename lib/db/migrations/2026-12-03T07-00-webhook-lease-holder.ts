// Who holds a webhook delivery's lease: the send pool of the sender whose dispatcher took it
// (graphile-worker's pool id, the one its heartbeat beats for). A sender found dead by its peers'
// sweep (sender/heartbeat.ts) has its leases ended at once, so that its webhooks go out again
// within about half a minute, as its mail does, rather than when each lease runs out.

import { type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  // Nullable without a default: added without rewriting the table. Not indexed, so that a claim,
  // which sets it with the lease, stays a heap-only update.
  await db.schema.alterTable('webhook_deliveries').addColumn('locked_by', 'text').execute();
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('webhook_deliveries').dropColumn('locked_by').execute();
}
