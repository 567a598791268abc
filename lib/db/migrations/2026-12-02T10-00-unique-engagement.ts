// Unique opens and clicks: when each message was first opened and first clicked, by anything and
// by a person (a fetch api/machine-fetch.ts did not take for a proxy's or a scanner's). The
// statement that records opens and clicks (lib/db/transitions.ts recordEngagements) sets each one
// where it is still null, and counts the message in the statistics rollups (unique_opened,
// unique_clicked and their `_any` kin) only when it set it: once per message, however many times
// it is opened and however many api replicas record its first opens at once.
//
// Nullable, with no default: adding them rewrites nothing, and messages sent before keep null,
// so their first open after this counts, as it should.

import type { Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('messages')
    .addColumn('first_open_at', 'timestamptz')
    .addColumn('first_human_open_at', 'timestamptz')
    .addColumn('first_click_at', 'timestamptz')
    .addColumn('first_human_click_at', 'timestamptz')
    .execute();
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('messages')
    .dropColumn('first_open_at')
    .dropColumn('first_human_open_at')
    .dropColumn('first_click_at')
    .dropColumn('first_human_click_at')
    .execute();
}
