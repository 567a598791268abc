// `mailplane apply -f`: manifests straight into Postgres, keys generated and printed once, and the
// reconcile rules the operator will share (revocation, domain ownership, template checks).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { readConfig } from '../lib/config.js';
import { decrypt, dkimPublicKey } from '../lib/crypto.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const run = promisify(execFile);
const SECRET = 'apply-test-secret-key-of-32-characters!';
let testDb: TestDatabase;
let database: DatabaseHandle;

async function apply(path: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ['--import', 'tsx', 'cmd/mailplane.ts', 'apply', '-f', path],
      {
        env: { ...process.env, DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: SECRET },
      },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function manifest(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailplane-apply-'));
  const file = join(dir, 'manifest.yaml');
  writeFileSync(file, yaml);
  return file;
}

before(async () => {
  testDb = await createTestDatabase();
  database = openDatabase(testDb.url);
});
after(async () => {
  await database.close();
  await testDb.drop();
});

test('applying examples/ creates the rows, prints the new API key once, and a re-apply changes nothing', async () => {
  const first = await apply('examples');
  assert.equal(first.code, 0, first.stderr);
  const key = /API key default\/acme\/backend \(send,read\): (mp_live_\S+)/.exec(first.stdout)?.[1];
  assert.ok(key, first.stdout);
  assert.match(first.stdout, /sendingdomain\/example-com configured \(DKIM key generated\)/);
  assert.match(first.stdout, /template\/welcome configured \(version 1\)/);

  const keys = await database.db.selectFrom('api_keys').selectAll().execute();
  assert.equal(keys.length, 1);
  assert.ok(!JSON.stringify(keys).includes(key), 'the key itself is not stored');
  const domain = await database.db.selectFrom('domains').selectAll().executeTakeFirstOrThrow();
  assert.ok(!domain.dkim_private_key.includes('PRIVATE KEY'), 'the DKIM key is stored encrypted');
  const { secretKey } = readConfig({ DATABASE_URL: 'unused', MAILPLANE_SECRET_KEY: SECRET });
  const pem = decrypt(secretKey, domain.dkim_private_key);
  assert.equal(dkimPublicKey(pem).publicKeyDns, domain.dkim_public_key);
  assert.equal(domain.dkim_algorithm, 'rsa-2048');

  const again = await apply('examples');
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stdout, /mp_live_/);
  assert.match(
    again.stdout,
    /tenant\/acme unchanged\nsendingdomain\/example-com unchanged\ntemplate\/welcome unchanged/,
  );
  const domainAfter = await database.db.selectFrom('domains').selectAll().executeTakeFirstOrThrow();
  assert.equal(domainAfter.dkim_public_key, domain.dkim_public_key, 'the DKIM key is kept');
});

test('removing a key from spec.apiKeys revokes it; an Ed25519 domain gets an Ed25519 key', async () => {
  const out = await apply(
    manifest(`apiVersion: mailplane.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  apiKeys: [{name: ci, scopes: [send]}]
---
apiVersion: mailplane.io/v1alpha1
kind: SendingDomain
metadata: {name: news}
spec:
  tenantRef: {name: acme}
  domain: news.example.com
  dkim: {algorithm: ed25519}
`),
  );
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /key ci issued, key backend revoked/);
  const live = await database.db
    .selectFrom('api_keys')
    .select('name')
    .where('revoked_at', 'is', null)
    .execute();
  assert.deepEqual(
    live.map((k) => k.name),
    ['ci'],
  );
  const news = await database.db
    .selectFrom('domains')
    .selectAll()
    .where('name', '=', 'news.example.com')
    .executeTakeFirstOrThrow();
  assert.equal(news.dkim_algorithm, 'ed25519');
  assert.equal(Buffer.from(news.dkim_public_key, 'base64').length, 32);
});

test('an invalid manifest is refused with every field at fault, and nothing is written', async () => {
  const out = await apply(
    manifest(`apiVersion: mailplane.io/v1alpha1
kind: SendingDomain
metadata: {name: Bad_Name}
spec:
  domain: not a domain
  dkim: {algorithm: dsa}
`),
  );
  assert.equal(out.code, 1);
  for (const field of ['metadata.name', 'spec.tenantRef', 'spec.domain', 'spec.dkim.algorithm']) {
    assert.match(out.stderr, new RegExp(field.replace(/\./g, '\\.')), out.stderr);
  }
});

test('a domain another tenant holds is refused and stays with the first tenant', async () => {
  const out = await apply(
    manifest(`apiVersion: mailplane.io/v1alpha1
kind: Tenant
metadata: {name: rival}
spec: {}
---
apiVersion: mailplane.io/v1alpha1
kind: SendingDomain
metadata: {name: grab}
spec:
  tenantRef: {name: rival}
  domain: example.com
`),
  );
  assert.equal(out.code, 1);
  assert.match(out.stderr, /example\.com already belongs to another tenant/);
  const owner = await database.db
    .selectFrom('domains')
    .innerJoin('tenants', 'tenants.id', 'domains.tenant_id')
    .select('tenants.name')
    .where('domains.name', '=', 'example.com')
    .executeTakeFirstOrThrow();
  assert.equal(owner.name, 'acme');
});

test('a template that does not compile is refused with the line at fault; an edit makes a new version', async () => {
  const broken = await apply(
    manifest(`apiVersion: mailplane.io/v1alpha1
kind: Template
metadata: {name: welcome}
spec:
  tenantRef: {name: acme}
  subject: Hi
  html: |
    <p>one</p>
    <% if (x) { %>
    <p>never closed</p>
`),
  );
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, /Template default\/welcome \(html/);
  const edited = await apply(
    manifest(`apiVersion: mailplane.io/v1alpha1
kind: Template
metadata: {name: welcome}
spec:
  tenantRef: {name: acme}
  subject: 'Hello <%= name %>'
  text: 'Hi <%= name %>'
  sampleData: {name: Ada}
`),
  );
  assert.equal(edited.code, 0, edited.stderr);
  assert.match(edited.stdout, /template\/welcome configured \(version 2\)/);
});
