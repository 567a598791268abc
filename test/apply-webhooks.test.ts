// `mailplane apply` with a Tenant's spec.webhooks, without a cluster: the same reconcile functions
// as the operator, each new signing secret printed once (and kept in the row, encrypted), nothing
// printed for a dry run or a re-apply, and a URL the installation refuses named in the error.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { readConfig } from '../lib/config.js';
import { decrypt } from '../lib/crypto.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const run = promisify(execFile);
const SECRET = 'apply-webhooks-secret-key-of-32-characters';
const { secretKey } = readConfig({ DATABASE_URL: 'unused', MAILPLANE_SECRET_KEY: SECRET });
let testDb: TestDatabase;
let database: DatabaseHandle;

async function apply(manifest: string, args: string[] = [], env: Record<string, string> = {}) {
  const child = run(process.execPath, ['--import', 'tsx', 'cmd/mailplane.ts', 'apply', '-f', '-', ...args], {
    env: { ...process.env, DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: SECRET, ...env },
  });
  child.child.stdin!.end(manifest);
  try {
    const { stdout, stderr } = await child;
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const tenant = (webhooks: unknown[]) => `apiVersion: mailplane.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  apiKeys: [{name: backend, scopes: [send, read]}]
  webhooks: ${JSON.stringify(webhooks)}
`;

const endpoints = async () =>
  (
    await database.db
      .selectFrom('webhook_endpoints')
      .selectAll()
      .where('source', '=', 'tenant')
      .orderBy('name')
      .execute()
  ).map((r) => ({ ...r, signing: decrypt(secretKey, r.secret) }));

const EVENTS = { name: 'events', url: 'https://hooks.acme.example/mail' };
const AUDIT = { name: 'audit', url: 'https://audit.acme.example/in', events: ['email.bounced'] };

before(async () => {
  testDb = await createTestDatabase();
  database = openDatabase(testDb.url);
});
after(async () => {
  await database.close();
  await testDb.drop();
});

test('a dry run says which webhooks would be registered, and prints no secret and writes no row', async () => {
  const out = await apply(tenant([EVENTS, AUDIT]), ['--dry-run']);
  assert.equal(out.code, 0, out.stderr);
  assert.match(
    out.stdout,
    /tenant\/acme configured \(.*webhook events registered, webhook audit registered\) \(dry run\)/,
  );
  assert.doesNotMatch(out.stdout, /whsec_/);
  assert.deepEqual(await endpoints(), []);
});

test('applying webhooks prints each signing secret once, the one the row keeps encrypted; a re-apply prints none', async () => {
  const first = await apply(tenant([EVENTS, AUDIT]));
  assert.equal(first.code, 0, first.stderr);
  const printed = Object.fromEntries(
    [...first.stdout.matchAll(/^Webhook signing secret default\/acme\/(\w+) \((\S+)\): (whsec_\S+)$/gm)].map(
      (m) => [m[1]!, { url: m[2]!, secret: m[3]! }],
    ),
  );
  assert.match(
    first.stdout,
    /tenant\/acme configured \(key backend issued, webhook events registered, webhook audit registered\)/,
  );
  const rows = await endpoints();
  assert.deepEqual(
    rows.map((r) => [r.name, r.source, r.url, r.events, r.enabled]),
    [
      ['audit', 'tenant', AUDIT.url, ['email.bounced'], true],
      ['events', 'tenant', EVENTS.url, [], true],
    ],
  );
  for (const row of rows) {
    assert.deepEqual(printed[row.name!], { url: row.url, secret: row.signing });
    assert.ok(!row.secret.includes(row.signing.slice(6)), 'stored encrypted');
  }

  const again = await apply(tenant([EVENTS, AUDIT]));
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stdout, /whsec_/);
  assert.match(again.stdout, /^tenant\/acme unchanged$/m);
  assert.deepEqual(
    (await endpoints()).map((r) => r.signing),
    rows.map((r) => r.signing),
    'the same secrets',
  );
});

test('an edit updates the endpoint, a removed entry is removed, and -o json carries a new secret', async () => {
  const before = (await endpoints()).find((r) => r.name === 'events')!;
  const out = await apply(
    tenant([
      { ...EVENTS, url: 'https://hooks.acme.example/v2', events: ['email.delivered'] },
      { name: 'ops', url: 'https://ops.acme.example/hooks' },
    ]),
    ['-o', 'json'],
  );
  assert.equal(out.code, 0, out.stderr);
  const [result] = JSON.parse(out.stdout) as {
    details: string[];
    webhooks?: { name: string; url: string; signingSecret: string }[];
  }[];
  assert.deepEqual(result!.details, [
    'webhook ops registered',
    'webhook events updated',
    'webhook audit removed',
  ]);
  const rows = await endpoints();
  assert.deepEqual(
    rows.map((r) => r.name),
    ['events', 'ops'],
  );
  const ops = rows.find((r) => r.name === 'ops')!;
  assert.deepEqual(result!.webhooks, [{ name: 'ops', url: ops.url, signingSecret: ops.signing }]);
  const events = rows.find((r) => r.name === 'events')!;
  assert.deepEqual(
    [events.id, events.url, events.events],
    [before.id, 'https://hooks.acme.example/v2', ['email.delivered']],
  );
  assert.equal(events.signing, before.signing, 'an edit keeps the secret');
});

test('a URL the installation refuses is named in the error, and taken where MAILPLANE_WEBHOOKS_ALLOW_PRIVATE is set', async () => {
  const internal = { name: 'internal', url: 'http://10.0.0.1/hooks' };
  const refused = await apply(tenant([EVENTS, internal]));
  assert.notEqual(refused.code, 0);
  assert.match(
    refused.stderr,
    /tenant\/acme: spec\.webhooks\[1\] \(internal\): url http:\/\/10\.0\.0\.1\/hooks must be an https URL; not registered/,
  );
  assert.equal(
    (await endpoints()).some((r) => r.name === 'internal'),
    false,
  );

  const taken = await apply(tenant([EVENTS, internal]), [], { MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: 'true' });
  assert.equal(taken.code, 0, taken.stderr);
  assert.match(
    taken.stdout,
    /^Webhook signing secret default\/acme\/internal \(http:\/\/10\.0\.0\.1\/hooks\): whsec_/m,
  );
});
