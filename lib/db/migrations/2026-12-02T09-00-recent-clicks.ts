// What every api replica must see of opens and clicks that no one replica holds
// (api/engagement-recorder.ts, lib/db/recent-clicks.ts):
//
// - recent_clicks: each click of the last few seconds, by message, a digest of its link and when it
//   came, so that a link scanner whose fetches the Service spread over several replicas is still
//   seen following every link at once. Pruned to a few burst windows by the api.
// - engagement_counts: opens and clicks of each message in the current clock hour, the count a cap
//   on stored events is held to across replicas. Pruned hourly by the api.
//
// Both UNLOGGED: they are written with every click and read seconds later, so they skip the WAL
// (no cost on the write path nor to standbys). What that trades away is said where they are read:
// a Postgres crash or a failover empties them, which costs a few seconds of bursts judged on each
// replica's own view and an hour's cap counted afresh — nothing on a timeline.

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create unlogged table recent_clicks (
    message_id uuid not null,
    link_hash bigint not null,
    at timestamptz not null
  )`.execute(db);
  await sql`create index recent_clicks_message on recent_clicks (message_id, at)`.execute(db);
  await sql`create unlogged table engagement_counts (
    message_id uuid not null,
    type text not null check (type in ('opened', 'clicked')),
    hour timestamptz not null,
    fetches bigint not null,
    primary key (message_id, type, hour)
  )`.execute(db);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('engagement_counts').ifExists().execute();
  await db.schema.dropTable('recent_clicks').ifExists().execute();
}
