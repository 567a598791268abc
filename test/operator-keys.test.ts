// Keys that heal and never change behind the user's back, on a real kube-apiserver and Postgres:
// a DKIM Secret deleted or edited is written back from the stored key within seconds (the
// Secret watch, with the resync ten minutes away); an API-key Secret deleted or edited cannot
// come back from a hash, so its key is revoked and a new one issued with a Warning; a change of
// algorithm rotates to a new key under a new selector (dkim-rotation.test.ts follows one through),
// and a key of your own that would go under the published selector is refused.

import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { startApi, type RunningApi } from '../api/main.js';
import { readConfig, type Config } from '../lib/config.js';
import { decrypt } from '../lib/crypto.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { startControlPlane, type ControlPlane } from './helpers/control-plane.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { eventually } from './helpers/eventually.js';
import {
  condition,
  domainYaml,
  installCrds,
  kubeObjects,
  secretData,
  tenantYaml,
} from './helpers/kube-objects.js';
import { startOperatorProcess, type OperatorProcess } from './helpers/operator.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const SECRET = 'operator-keys-secret-key-of-32-characters-ok';
const RUN = randomBytes(3).toString('hex');
const APPS = `apps-${RUN}`;
/** What "within seconds" means here: the watch, not the resync (600 s). */
const HEAL_MS = 10_000;

let cp: ControlPlane;
let k: ReturnType<typeof kubeObjects>;
let testDb: TestDatabase;
let database: DatabaseHandle;
let config: Readonly<Config>;
let api: RunningApi;
let dns: DnsServer;
let operator: OperatorProcess | undefined;

before(async () => {
  [cp, testDb, dns] = await Promise.all([startControlPlane(), createTestDatabase(), startDnsServer()]);
  k = kubeObjects(cp);
  await installCrds(cp);
  await k.kubectl(['create', 'namespace', APPS]);
  config = readConfig({ DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: SECRET, PORT: '0' });
  database = openDatabase(testDb.url, { max: 5 });
  api = await startApi({ database, config, log: silentLogger, metrics: createMetrics() });
  operator = await startOperatorProcess({
    KUBECONFIG: cp.kubeconfig,
    DATABASE_URL: testDb.url,
    MAILPLANE_SECRET_KEY: SECRET,
    MAILPLANE_OPERATOR_NAMESPACE: APPS,
    MAILPLANE_LEASE_DURATION_SECONDS: '4',
    MAILPLANE_RESYNC_SECONDS: '600',
    MAILPLANE_DNS_SERVERS: dns.address,
  });
  await k.apply(tenantYaml(APPS, 'acme', [{ name: 'backend', scopes: ['send', 'read'] }]));
  await k.apply(domainYaml(APPS, 'example-com', 'acme', 'example.com'));
  await k.waitCondition(APPS, 'sendingdomain', 'example-com', 'Ready', 'True');
  await k.waitCondition(APPS, 'tenant', 'acme', 'Ready', 'True');
});

after(async () => {
  await operator?.stop();
  await api?.close();
  await database?.close();
  await Promise.all([cp?.stop(), testDb?.drop(), dns?.close()]);
});

async function send(key: string): Promise<number> {
  const res = await fetch(`${api.url}/v1/emails`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      from: 'hello@example.com',
      to: 'someone@example.org',
      subject: 'hi',
      text: 'hello',
    }),
  });
  return res.status;
}

const dkimPem = async () => secretData(await k.getObject(APPS, 'secret', 'example-com-dkim'), 'private.key');
const storedPem = async () =>
  decrypt(
    config.secretKey,
    (
      await database.db
        .selectFrom('domains')
        .select('dkim_private_key')
        .where('name', '=', 'example.com')
        .executeTakeFirstOrThrow()
    ).dkim_private_key,
  );
const apiKey = async () => secretData(await k.getObject(APPS, 'secret', 'acme-api-key-backend'), 'api-key');
const otherPem = () =>
  generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();

/** Seconds from `since` until `check` holds, printed for the report. */
async function healed(what: string, since: number, check: () => Promise<boolean>): Promise<number> {
  await eventually(what, async () => check(), HEAL_MS);
  const ms = Date.now() - since;
  process.stdout.write(`# ${what}: ${ms} ms\n`);
  return ms;
}

test('a deleted DKIM Secret is written back from the stored key within seconds, the same key', async () => {
  const pem = await storedPem();
  assert.equal(await dkimPem(), pem);
  const deleted = Date.now();
  await k.kubectl(['-n', APPS, 'delete', 'secret', 'example-com-dkim']);
  await healed('DKIM Secret restored after a delete', deleted, async () => (await dkimPem()) === pem);
  const event = await k.waitEvent(APPS, 'example-com', 'KeyRestored');
  assert.match(event.message, /Secret example-com-dkim was deleted/);
  assert.equal(await storedPem(), pem, 'the key in use never changed');
});

test('an edited DKIM Secret is written back from the stored key within seconds', async () => {
  const pem = await storedPem();
  const edited = Date.now();
  await k.kubectl([
    '-n',
    APPS,
    'patch',
    'secret',
    'example-com-dkim',
    '--type=merge',
    '-p',
    JSON.stringify({ data: { 'private.key': Buffer.from(otherPem()).toString('base64') } }),
  ]);
  await healed('DKIM Secret restored after an edit', edited, async () => (await dkimPem()) === pem);
  assert.equal(await storedPem(), pem);
  const domain = await k.waitCondition(APPS, 'sendingdomain', 'example-com', 'Ready', 'True');
  assert.ok(domain.status!.dnsRecords![0]!.value.length > 100);
});

test('a deleted API-key Secret is seen within seconds: the old key is revoked and a new one issued, with a Warning', async () => {
  const old = (await apiKey())!;
  assert.equal(await send(old), 202);
  const deleted = Date.now();
  await k.kubectl(['-n', APPS, 'delete', 'secret', 'acme-api-key-backend']);
  await healed('API-key Secret re-issued after a delete', deleted, async () => {
    const key = await apiKey();
    return key !== undefined && key !== old;
  });
  const fresh = (await apiKey())!;
  await eventually('the old key to be refused', async () => (await send(old)) === 401);
  assert.equal(await send(fresh), 202);
  const event = await k.waitEvent(APPS, 'acme', 'KeyReissued');
  assert.equal(event.type, 'Warning');
  assert.match(event.message, /cannot be restored: the old key is revoked and a new one is in the Secret/);
  const live = await database.db
    .selectFrom('api_keys')
    .select('name')
    .where('name', '=', 'backend')
    .where('revoked_at', 'is', null)
    .execute();
  assert.equal(live.length, 1, 'one live key of the name');
});

test('edited scopes in an API-key Secret are written back, and the key keeps working', async () => {
  const key = (await apiKey())!;
  await k.kubectl([
    '-n',
    APPS,
    'patch',
    'secret',
    'acme-api-key-backend',
    '--type=merge',
    '-p',
    JSON.stringify({ data: { scopes: Buffer.from('send').toString('base64') } }),
  ]);
  await eventually(
    'the scopes to be written back',
    async () =>
      secretData(await k.getObject(APPS, 'secret', 'acme-api-key-backend'), 'scopes') === 'send,read',
    HEAL_MS,
  );
  assert.equal(await apiKey(), key);
  assert.equal(await send(key), 202);
  await k.waitEvent(APPS, 'acme', 'ScopesRestored');
});

test('an API-key Secret edited to hold another key is replaced by a new key, and the old one revoked', async () => {
  const old = (await apiKey())!;
  await k.kubectl([
    '-n',
    APPS,
    'patch',
    'secret',
    'acme-api-key-backend',
    '--type=merge',
    '-p',
    JSON.stringify({
      data: { 'api-key': Buffer.from('mp_live_not-a-key-anyone-issued').toString('base64') },
    }),
  ]);
  await eventually(
    'a new key in the Secret',
    async () => {
      const key = await apiKey();
      return key !== undefined && key !== old && key.startsWith('mp_live_') && key.length > 40;
    },
    HEAL_MS,
  );
  await eventually('the old key to be refused', async () => (await send(old)) === 401);
  assert.equal(await send((await apiKey())!), 202);
});

test('changing spec.dkim.algorithm rotates: the key under the published selector stays until DNS shows a new one under a new selector, and going back first keeps the original', async () => {
  const pem = await storedPem();
  const before = await k.getObject(APPS, 'sendingdomain', 'example-com');
  const published = before!.status!.dnsRecords![0]!.value;
  assert.equal(before!.status!.algorithm, 'rsa-2048');

  await k.patchSpec(APPS, 'sendingdomain', 'example-com', { dkim: { algorithm: 'ed25519' } });
  const rotating = await k.waitCondition(
    APPS,
    'sendingdomain',
    'example-com',
    'KeyCurrent',
    'False',
    'NextKeyNotPublished',
  );
  assert.equal(condition(rotating, 'Ready')?.status, 'True', 'still signing with the published key');
  assert.equal(condition(rotating, 'KeyReady')?.status, 'True');
  assert.equal(rotating.status!.algorithm, 'rsa-2048', 'status says what signs');
  assert.equal(rotating.status!.selector, 'mailplane');
  assert.equal(rotating.status!.dnsRecords![0]!.value, published, 'the published selector keeps its key');
  const next = (rotating.status!.dnsRecords as { name: string; value: string; state?: string }[]).find(
    (r) => r.state === 'next',
  )!;
  assert.match(next.name, /^mailplane-\d{8}\._domainkey\.example\.com$/);
  assert.match(next.value, /k=ed25519/);
  assert.equal(await storedPem(), pem);
  assert.equal(await dkimPem(), pem);
  const table = await k.kubectl(['-n', APPS, 'get', 'sendingdomain', 'example-com']);
  assert.match(table, /example-com\s+example\.com\s+acme\s+rsa-2048\s+True/);
  const event = await k.waitEvent(APPS, 'example-com', 'NextKeyGenerated');
  assert.match(event.message, /spec\.dkim\.algorithm asks for ed25519/);

  // A Secret deleted mid-rotation comes back whole: the key signing and the next one, unchanged.
  const selector = next.name.split('._domainkey.')[0]!;
  const nextPem = secretData(await k.getObject(APPS, 'secret', 'example-com-dkim'), `${selector}.key`);
  assert.match(nextPem ?? '', /BEGIN PRIVATE KEY/);
  const deleted = Date.now();
  await k.kubectl(['-n', APPS, 'delete', 'secret', 'example-com-dkim']);
  await healed('DKIM Secret restored mid-rotation', deleted, async () => {
    const secret = await k.getObject(APPS, 'secret', 'example-com-dkim');
    return secretData(secret, 'private.key') === pem && secretData(secret, `${selector}.key`) === nextPem;
  });

  await k.patchSpec(APPS, 'sendingdomain', 'example-com', { dkim: { algorithm: 'rsa-2048' } });
  const back = await k.waitCondition(APPS, 'sendingdomain', 'example-com', 'KeyCurrent', 'True', 'KeyInUse');
  assert.equal(back.status!.dnsRecords![0]!.value, published, 'the original key, not a third');
  assert.equal(
    back.status!.dnsRecords!.filter((r) => r.purpose === 'dkim').length,
    1,
    'the next key is gone',
  );
  await k.waitEvent(APPS, 'example-com', 'RotationCanceled');
  assert.equal(await storedPem(), pem);
});

test('pointing spec.dkim.secretRef at another key is refused the same way; removing it keeps the stored key', async () => {
  const pem = await storedPem();
  await k.kubectl([
    '-n',
    APPS,
    'create',
    'secret',
    'generic',
    'my-key',
    `--from-literal=private.key=${otherPem()}`,
  ]);
  await k.patchSpec(APPS, 'sendingdomain', 'example-com', { dkim: { secretRef: { name: 'my-key' } } });
  const refused = await k.waitCondition(
    APPS,
    'sendingdomain',
    'example-com',
    'KeyReady',
    'False',
    'KeyChangeRefused',
  );
  assert.match(
    condition(refused, 'KeyReady')!.message,
    /Secret my-key holds another key than the one in use/,
  );
  assert.equal(await storedPem(), pem);

  await k.kubectl([
    '-n',
    APPS,
    'patch',
    'sendingdomain',
    'example-com',
    '--type=json',
    '-p',
    JSON.stringify([{ op: 'remove', path: '/spec/dkim/secretRef' }]),
  ]);
  await k.waitCondition(APPS, 'sendingdomain', 'example-com', 'Ready', 'True');
  assert.equal(await storedPem(), pem);
  assert.equal(await dkimPem(), pem);
});
