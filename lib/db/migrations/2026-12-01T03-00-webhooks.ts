// Webhooks: the endpoints a tenant registers (through the API, or declared in its Tenant), and one
// delivery row per event and endpoint, written by the statement that writes the event
// (lib/db/transitions.ts), so that no event can be missed. The rows are the queue: the senders'
// webhook dispatcher takes due ones under a lease (`locked_until`), so a dispatcher that dies
// leaves them to another once the lease ends. A delivery keeps its attempts and the last answer
// for GET /v1/webhooks/:id/deliveries; the payload is built from the event when sent.

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('webhook_endpoints')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('tenant_id', 'uuid', (c) => c.notNull())
    .addColumn('name', 'text')
    .addColumn('url', 'text', (c) => c.notNull())
    // Webhook event types (email.delivered, …); empty means every one.
    .addColumn('events', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('disabled_reason', 'text')
    // Encrypted envelopes (lib/crypto encrypt) of whsec_… secrets; the previous one signs too
    // until it expires, so that a receiver can roll over without losing an event.
    .addColumn('secret', 'text', (c) => c.notNull())
    .addColumn('previous_secret', 'text')
    .addColumn('previous_secret_expires_at', 'timestamptz')
    // 'api' or 'tenant' (declared in a Tenant resource: read-only through the API).
    .addColumn('source', 'text', (c) =>
      c
        .notNull()
        .defaultTo('api')
        .check(sql`source in ('api', 'tenant')`),
    )
    .addColumn('failing_since', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index webhook_endpoints_tenant on webhook_endpoints (tenant_id) where enabled`.execute(db);
  await sql`create unique index webhook_endpoints_tenant_name on webhook_endpoints (tenant_id, name) where source = 'tenant'`.execute(
    db,
  );

  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('endpoint_id', 'uuid', (c) =>
      c.notNull().references('webhook_endpoints.id').onDelete('cascade'),
    )
    .addColumn('tenant_id', 'uuid', (c) => c.notNull())
    .addColumn('event_id', 'bigint', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    // pending → delivered | failed (retries exhausted, or the endpoint disabled)
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('pending'))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'timestamptz')
    .addColumn('locked_until', 'timestamptz')
    .addColumn('response_status', 'integer')
    .addColumn('response_excerpt', 'text')
    .addColumn('error', 'text')
    .addColumn('latency_ms', 'integer')
    .addColumn('replay', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('delivered_at', 'timestamptz')
    .execute();
  // What the dispatcher looks for: pending deliveries by due time.
  await sql`create index webhook_deliveries_due on webhook_deliveries (next_attempt_at) where status = 'pending'`.execute(
    db,
  );
  await db.schema
    .createIndex('webhook_deliveries_endpoint')
    .on('webhook_deliveries')
    .columns(['endpoint_id', 'id'])
    .execute();
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('webhook_deliveries').ifExists().execute();
  await db.schema.dropTable('webhook_endpoints').ifExists().execute();
}
