// Statistics as rollups, written by the statement that writes each event (lib/db/transitions.ts)
// rather than counted from messages: GET /v1/stats reads a few rows per hour whatever the volume.
//
// A counter row that every sender bumps at once would serialise their commits on its row lock,
// so each row is split into shards (the writing connection's backend pid modulo SHARDS): concurrent
// writers land on different rows, and a read sums the shards.

import { type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('email_stats')
    .addColumn('tenant_id', 'uuid', (c) => c.notNull())
    .addColumn('bucket', 'timestamptz', (c) => c.notNull())
    .addColumn('domain_id', 'uuid', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('shard', 'smallint', (c) => c.notNull())
    .addColumn('count', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('email_stats_pk', ['tenant_id', 'bucket', 'domain_id', 'type', 'shard'])
    .execute();
  await db.schema
    .createTable('email_tag_stats')
    .addColumn('tenant_id', 'uuid', (c) => c.notNull())
    .addColumn('bucket', 'timestamptz', (c) => c.notNull())
    .addColumn('tag', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('shard', 'smallint', (c) => c.notNull())
    .addColumn('count', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('email_tag_stats_pk', ['tenant_id', 'bucket', 'tag', 'type', 'shard'])
    .execute();
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('email_tag_stats').ifExists().execute();
  await db.schema.dropTable('email_stats').ifExists().execute();
}
