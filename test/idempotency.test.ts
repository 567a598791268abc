// Idempotency-Key on /v1/emails and /v1/emails/batch: a retry gets the first answer and sends
// nothing more; the key reused for another request, or while the first is in flight, is a 409.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { Resend } from 'resend';
import { purgeIdempotencyKeys } from '../lib/db/idempotency.js';
import { sendingDomain, startTestPlatform, tenant, type TestPlatform } from './helpers/platform.js';

let platform: TestPlatform;
let key: string;

const FROM = 'Acme <hello@example.com>';

async function post(path: string, body: unknown, idempotencyKey?: string, apiKey = key) {
  const res = await fetch(platform.url + path, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${apiKey}`,
      'content-type': 'application/json',
      ...(idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey }),
    },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

async function emailCount(): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from emails`.execute(
    platform.database.db,
  );
  return rows[0]!.n;
}

const email = (subject = 's') => ({ from: FROM, to: 'a@example.org', subject, text: 't' });

before(async () => {
  platform = await startTestPlatform();
  key = platform.keys.get('default/acme/backend')!;
});
after(async () => platform.close());

describe('Idempotency-Key', () => {
  test('a retried batch returns the first ids and sends nothing more', async () => {
    const batch = [email('one'), email('two')];
    const first = await post('/v1/emails/batch', batch, 'batch-1');
    assert.equal(first.status, 202);
    const emails = await emailCount();
    const again = await post('/v1/emails/batch', batch, 'batch-1');
    assert.equal(again.status, 202);
    assert.deepEqual(again.body, first.body);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await emailCount(), emails);
  });

  test('the same key with another payload is a 409 and sends nothing', async () => {
    const first = await post('/v1/emails', email('first'), 'reused');
    assert.equal(first.status, 202);
    const emails = await emailCount();
    const other = await post('/v1/emails', email('second'), 'reused');
    assert.equal(other.status, 409);
    assert.match(other.body.type, /invalid-idempotent-request$/);
    assert.equal(await emailCount(), emails);
    // And across endpoints: the key names one request, not one per route.
    const batch = await post('/v1/emails/batch', [email('first')], 'reused');
    assert.equal(batch.status, 409);
  });

  test('a request still in flight under the key makes a retry 409; a stale claim is taken over', async () => {
    const tenantId = (await platform.database.db.selectFrom('tenants').select('id').executeTakeFirstOrThrow())
      .id;
    const body = email('in flight');
    // The claim the first request would make, without its answer yet.
    const claim = await post('/v1/emails', body, 'probe');
    assert.equal(claim.status, 202);
    const { fingerprint } = await platform.database.db
      .selectFrom('idempotency_keys')
      .select('fingerprint')
      .where('key', '=', 'probe')
      .executeTakeFirstOrThrow();
    await platform.database.db
      .insertInto('idempotency_keys')
      .values({ tenant_id: tenantId, key: 'busy', fingerprint, expires_at: sql`now() + interval '1 day'` })
      .execute();
    const emails = await emailCount();
    const retry = await post('/v1/emails', body, 'busy');
    assert.equal(retry.status, 409);
    assert.match(retry.body.type, /concurrent-idempotent-requests$/);
    assert.equal(await emailCount(), emails);

    // A claim older than its lease belongs to a request that died before committing.
    await platform.database.db
      .updateTable('idempotency_keys')
      .set({ started_at: sql`now() - interval '5 minutes'` })
      .where('key', '=', 'busy')
      .execute();
    const taken = await post('/v1/emails', body, 'busy');
    assert.equal(taken.status, 202);
    assert.equal(await emailCount(), emails + 1);
  });

  test('a refused request leaves the key free for the corrected one', async () => {
    const bad = await post('/v1/emails', { ...email(), to: 'not an address' }, 'fix-me');
    assert.equal(bad.status, 422);
    const good = await post('/v1/emails', email(), 'fix-me');
    assert.equal(good.status, 202);
  });

  test('keys are per tenant', async () => {
    await platform.apply([
      tenant('globex', [{ name: 'app', scopes: ['send', 'read'] }]),
      sendingDomain('globex-com', 'globex', 'globex.com'),
    ]);
    const acme = await post('/v1/emails', email(), 'shared-key');
    const globex = await post(
      '/v1/emails',
      { ...email(), from: 'hi@globex.com' },
      'shared-key',
      platform.keys.get('default/globex/app')!,
    );
    assert.equal(acme.status, 202);
    assert.equal(globex.status, 202);
    assert.notEqual(globex.body.id, acme.body.id);
  });

  test('a key is kept 24 hours, then a new request may use it, and the purge removes it', async () => {
    const first = await post('/v1/emails', email(), 'old');
    await platform.database.db
      .updateTable('idempotency_keys')
      .set({ expires_at: sql`now() - interval '1 second'` })
      .where('key', '=', 'old')
      .execute();
    const later = await post('/v1/emails', email('another'), 'old');
    assert.equal(later.status, 202);
    assert.notEqual(later.body.id, first.body.id);

    await platform.database.db
      .updateTable('idempotency_keys')
      .set({ expires_at: sql`now() - interval '1 second'` })
      .execute();
    assert.ok((await purgeIdempotencyKeys(platform.database.db, 2)) >= 3);
    const left = await platform.database.db.selectFrom('idempotency_keys').select('key').execute();
    assert.deepEqual(left, []);
  });

  test('the resend SDK retries with idempotencyKey and gets the same email back', async () => {
    const resend = new Resend(key, { baseUrl: `${platform.url}/v1` });
    const payload = { from: FROM, to: ['ada@example.org'], subject: 'SDK', text: 'hi' };
    const first = await resend.emails.send(payload, { idempotencyKey: 'sdk-1' });
    const again = await resend.emails.send(payload, { idempotencyKey: 'sdk-1' });
    assert.equal(first.error, null);
    assert.equal(again.data?.id, first.data?.id);
    const reused = await resend.emails.send({ ...payload, subject: 'other' }, { idempotencyKey: 'sdk-1' });
    assert.equal(reused.data, null);
    assert.ok(reused.error);
  });

  test('an empty or over-long key is a 400', async () => {
    assert.equal((await post('/v1/emails', email(), '')).status, 400);
    assert.equal((await post('/v1/emails', email(), 'k'.repeat(257))).status, 400);
  });
});
