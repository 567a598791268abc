// Every attempt of a webhook delivery, for webhooks.events.attempts.list. A delivery's row keeps
// its last attempt; the attempts that failed before it are rows here, written with the failure (a
// cold path: most deliveries succeed at once, and a success is the delivery row's own). When each
// attempt was sent is the delivery's `last_attempt_at` and each failure's `sent_at`.

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  // Nullable without a default: Postgres adds it without rewriting the table.
  await db.schema.alterTable('webhook_deliveries').addColumn('last_attempt_at', 'timestamptz').execute();
  await db.schema
    .createTable('webhook_attempts')
    .addColumn('delivery_id', 'bigint', (c) =>
      c.notNull().references('webhook_deliveries.id').onDelete('cascade'),
    )
    .addColumn('attempt', 'integer', (c) => c.notNull())
    .addColumn('response_status', 'integer')
    .addColumn('response_excerpt', 'text')
    .addColumn('error', 'text')
    .addColumn('latency_ms', 'integer')
    .addColumn('sent_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('webhook_attempts_pkey', ['delivery_id', 'attempt'])
    .execute();
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('webhook_attempts').ifExists().execute();
  await db.schema.alterTable('webhook_deliveries').dropColumn('last_attempt_at').execute();
}
