// The database helper every integration test stands on: each call gives a database of its own,
// already migrated (Mailplane's tables and graphile-worker's schema), and drop() removes it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { createTestDatabase } from './helpers/postgres.js';

async function query<R extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

test('two test databases are separate, both migrated, and drop() removes each', async () => {
  const [first, second] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  try {
    assert.notEqual(first.url, second.url);

    for (const { url } of [first, second]) {
      const [schema] = await query<{ messages: string | null; worker: string | null }>(
        url,
        `select to_regclass('public.messages')::text as messages,
                (select nspname from pg_namespace where nspname = 'graphile_worker') as worker`,
      );
      assert.deepEqual(schema, { messages: 'messages', worker: 'graphile_worker' });
    }

    // A row written in one is not in the other.
    await query(first.url, `insert into tenants (namespace, name) values ('default', 'acme')`);
    assert.equal((await query(first.url, 'select * from tenants')).length, 1);
    assert.equal((await query(second.url, 'select * from tenants')).length, 0);
  } finally {
    await first.drop();
    await second.drop();
  }

  for (const { url } of [first, second]) {
    await assert.rejects(query(url, 'select 1'), /does not exist/);
  }
});

test('drop() closes connections that are still open and may be called twice', async () => {
  const database = await createTestDatabase();
  const client = new pg.Client({ connectionString: database.url });
  client.on('error', () => {}); // the forced drop terminates it
  await client.connect();
  await database.drop();
  await database.drop();
  await assert.rejects(client.query('select 1'));
  await client.end().catch(() => {});
});
