// An endpoint that stops answering is paused: after an attempt times out, the attempts that fall
// due before `paused_until` are recorded as not sent (and retried on their schedule) instead of
// each holding a webhook slot for the whole timeout, so that one hanging endpoint cannot hold up
// the webhooks of every other. A 2xx ends the pause, as it ends `failing_since`.

import { type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('webhook_endpoints').addColumn('paused_until', 'timestamptz').execute();
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('webhook_endpoints').dropColumn('paused_until').execute();
}
