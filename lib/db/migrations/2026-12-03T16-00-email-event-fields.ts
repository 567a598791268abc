// Every event of an email reads its recipients, tags and submitted Message-ID: the statistics
// rollups per tag in the sender's own statement, the webhook payload in the dispatcher's claim.
// Read from `content`, each of those fetched and decompressed the whole of it from TOAST, HTML and
// attachments included: a millisecond per event for a 1 MB email, in a broadcast once per event of
// every recipient. The accept statement now copies them into `event_fields` (a few hundred bytes,
// kept in the row); emails accepted before it have none, and readers fall back to `content`.

import { type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('emails').addColumn('event_fields', 'jsonb').execute();
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('emails').dropColumn('event_fields').execute();
}
