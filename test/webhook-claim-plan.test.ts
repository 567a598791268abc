// The webhook claim against a real Postgres whose tables hold thousands of deliveries, events,
// emails and messages. The claim is a named statement, and after five runs Postgres may plan it
// once for any parameters (a generic plan). Such a plan cannot know the claim's `limit`, and
// guesses a tenth of the due rows. A claim whose plan then reads whole tables would cost more with
// every email ever sent, so each delivery, event, email and message it reads must be found by its
// index however it is planned. On the plain joins the claim once had, this test fails. And
// Postgres must keep that one plan when a claim takes a row at a time, rather than plan each claim.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { encrypt } from '../lib/crypto.js';
import { readConfig } from '../lib/config.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { claimDueDeliveries, type DeliveredAttempt } from '../lib/db/webhooks.js';
import { newWebhookSecret } from '../lib/webhooks.js';
import { applyExamples } from './helpers/platform.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const EMAILS = 5_000;
const SECRET = Buffer.alloc(32, 3).toString('base64');

let testDb: TestDatabase;
let database: DatabaseHandle;

before(async () => {
  testDb = await createTestDatabase();
  database = openDatabase(testDb.url, { max: 2 });
  await applyExamples(database.db, SECRET);
  const config = readConfig({ DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: SECRET });
  const domain = await database.db
    .selectFrom('domains')
    .select(['id', 'tenant_id'])
    .where('name', '=', 'example.com')
    .executeTakeFirstOrThrow();
  await database.db
    .insertInto('webhook_endpoints')
    .values({
      tenant_id: domain.tenant_id,
      url: 'https://hooks.example.org/mailplane',
      secret: encrypt(config.secretKey, newWebhookSecret()),
    })
    .execute();
  // Emails sent and delivered long ago, one recipient each, every event with a delivery due.
  await database.pool.query(
    `with e as (
       insert into emails (tenant_id, domain_id, from_address, subject, content, event_fields)
       select $1, $2, 'Acme <hello@example.com>', 'Welcome ' || i,
              jsonb_build_object('to', jsonb_build_array('user' || i || '@example.org'), 'tags', '[]'::jsonb),
              jsonb_build_object('to', jsonb_build_array('user' || i || '@example.org'), 'tags', '[]'::jsonb)
       from generate_series(1, $3::int) i
       returning id, tenant_id, event_fields->'to'->>0 as recipient
     ), m as (
       insert into messages (email_id, tenant_id, recipient, status)
       select id, tenant_id, recipient, 'delivered' from e
       returning id, email_id, tenant_id
     ), ev as (
       insert into events (tenant_id, email_id, message_id, type, detail)
       select m.tenant_id, m.email_id, m.id, t.type, t.detail from m
       cross join (values ('sending', '{"attempt": 1}'::jsonb), ('delivered', '{}'::jsonb)) t(type, detail)
       returning id, tenant_id, type
     )
     insert into webhook_deliveries (endpoint_id, tenant_id, event_id, type, next_attempt_at)
     select w.id, ev.tenant_id, ev.id, case ev.type when 'sending' then 'email.sent' else 'email.delivered' end, now()
     from ev join webhook_endpoints w on w.tenant_id = ev.tenant_id`,
    [domain.tenant_id, domain.id, EMAILS],
  );
  await database.pool.query('analyze');
});
after(async () => {
  await database?.close();
  await testDb?.drop();
});

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

/** Every node of a plan, depth first. */
function nodesOf(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodesOf)];
}

describe('the webhook claim', () => {
  test('finds each row it takes by an index, even when Postgres plans it once for any limit', async () => {
    const client = new pg.Client({ connectionString: testDb.url });
    await client.connect();
    try {
      // As Postgres may choose to after a few runs of the named statement, on any connection.
      await client.query('set plan_cache_mode = force_generic_plan');
      const claimed = await claimDueDeliveries(client, {
        limit: 40,
        leaseSeconds: 60,
        holder: 'plan-test',
        delivered: [],
      });
      assert.equal(claimed.length, 40);
      for (const delivery of claimed) {
        assert.equal(delivery.orphaned, false);
        assert.match(delivery.recipient ?? '', /^user\d+@example\.org$/);
        assert.deepEqual(delivery.to, [delivery.recipient]);
        assert.equal(delivery.type, delivery.eventType === 'sending' ? 'email.sent' : 'email.delivered');
      }

      const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
        `explain (format json) execute mailplane_claim_webhooks(40, 60, '{}', '{}', '{}', '{}', '{}', 'plan-test')`,
      );
      // The endpoints are configuration, a few rows a tenant: reading them whole is Postgres's
      // choice to make. Every other table here grows with each email sent.
      const scans = nodesOf(rows[0]!['QUERY PLAN'][0].Plan)
        .filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] !== 'webhook_endpoints')
        .map((n) => n['Relation Name']);
      assert.deepEqual(scans, [], `the claim reads whole tables: ${scans.join(', ')}`);
    } finally {
      await client.end();
    }
  });

  test('is planned once, not at every claim, even when it takes one row at a time', async () => {
    // A dispatcher with few slots claims a few rows at a time. Postgres plans a named statement
    // anew at every run while a plan for its parameters looks cheaper than the one for any;
    // planning this one costs more than running it.
    const client = new pg.Client({ connectionString: testDb.url });
    await client.connect();
    try {
      let delivered: DeliveredAttempt[] = [];
      for (let i = 0; i < 12; i++) {
        const claimed = await claimDueDeliveries(client, {
          limit: 1,
          leaseSeconds: 60,
          holder: 'plan-test',
          delivered,
        });
        assert.equal(claimed.length, 1);
        const sentAt = new Date();
        delivered = claimed.map((d) => ({
          id: d.id,
          result: { sentAt, status: 204, excerpt: '', latencyMs: 1 },
        }));
      }
      const { rows } = await client.query<{ generic_plans: string; custom_plans: string }>(
        `select generic_plans, custom_plans from pg_prepared_statements where name = 'mailplane_claim_webhooks'`,
      );
      // The first five runs are always planned for their parameters; after that, Postgres weighs.
      assert.deepEqual(
        { generic: Number(rows[0]!.generic_plans), custom: Number(rows[0]!.custom_plans) },
        { generic: 7, custom: 5 },
      );
    } finally {
      await client.end();
    }
  });
});
