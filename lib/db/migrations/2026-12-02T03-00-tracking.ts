// Open and click tracking, per sending domain (a SendingDomain's spec.tracking): the host its
// tracked links and pixel are served under, and whether opens and clicks are tracked by default
// (an email may say otherwise). Both off for every domain that exists: tracking changes the mail a
// tenant sends, so it is never turned on behind its back.

import type { Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('domains')
    .addColumn('tracking_domain', 'text')
    .addColumn('track_opens', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('track_clicks', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('domains')
    .dropColumn('tracking_domain')
    .dropColumn('track_opens')
    .dropColumn('track_clicks')
    .execute();
}
