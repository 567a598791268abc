// The operator against a real kube-apiserver and etcd, and a real Postgres: what a user sees after
// `kubectl apply`, what lands in Secrets and rows, and how it behaves across restarts, deletions,
// DNS lookups and a leader killed with SIGKILL.

import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startApi, type RunningApi } from '../api/main.js';
import { readConfig, type Config } from '../lib/config.js';
import { hashApiKey, decrypt } from '../lib/crypto.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { freePort } from './helpers/free-port.js';
import { startControlPlane, type ControlPlane } from './helpers/control-plane.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { eventually } from './helpers/eventually.js';
import { startOperatorProcess, type OperatorProcess } from './helpers/operator.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const SECRET = 'operator-test-secret-key-of-32-characters-or-more';
const RUN = randomBytes(3).toString('hex');
const ns = (name: string) => `${name}-${RUN}`;
/** Short enough for a test to wait out; the leader test measures a takeover against it. */
const LEASE_SECONDS = 4;
const INBOUND_HOST = 'mx.mailplane.test';

let cp: ControlPlane;
let testDb: TestDatabase;
let database: DatabaseHandle;
let config: Readonly<Config>;
let api: RunningApi;
let dns: DnsServer;
let operator: OperatorProcess | undefined;
let operatorEnv: Record<string, string>;

interface K8sObject {
  metadata: { name: string; namespace: string; resourceVersion: string; uid: string; finalizers?: string[] };
  spec: Record<string, unknown>;
  status?: {
    observedGeneration?: number;
    conditions?: {
      type: string;
      status: string;
      reason: string;
      message: string;
      lastTransitionTime: string;
    }[];
    dnsRecords?: { type: string; name: string; value: string; purpose: string }[];
    apiKeys?: { name: string; secretName: string }[];
    version?: number;
  };
  data?: Record<string, string>;
}

async function kubectl(args: string[], input?: string): Promise<string> {
  const result = await cp.kubectl(args, input);
  assert.equal(result.code, 0, `kubectl ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

async function getObject(namespace: string, kind: string, name: string): Promise<K8sObject | undefined> {
  const result = await cp.kubectl(['-n', namespace, 'get', kind, name, '-o', 'json']);
  if (result.code !== 0) {
    if (/NotFound/.test(result.stderr)) return undefined;
    throw new Error(result.stderr);
  }
  return JSON.parse(result.stdout) as K8sObject;
}

/** Merges `spec` into an object's spec, as `kubectl patch --type=merge` does. */
async function patchSpec(namespace: string, kind: string, name: string, spec: Record<string, unknown>) {
  await kubectl(['-n', namespace, 'patch', kind, name, '--type=merge', '-p', JSON.stringify({ spec })]);
}

function condition(o: K8sObject | undefined, type: string) {
  return o?.status?.conditions?.find((c) => c.type === type);
}

async function waitCondition(
  namespace: string,
  kind: string,
  name: string,
  type: string,
  status: string,
  reason?: string,
) {
  return eventually(
    `${kind} ${namespace}/${name} ${type}=${status}${reason ? ` (${reason})` : ''}`,
    async () => {
      const o = await getObject(namespace, kind, name);
      const c = condition(o, type);
      return c?.status === status &&
        (!reason || c.reason === reason) &&
        o?.status?.observedGeneration === (o as { metadata: { generation?: number } }).metadata.generation
        ? o
        : undefined;
    },
  );
}

function secretData(secret: K8sObject | undefined, key: string): string | undefined {
  const value = secret?.data?.[key];
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

async function send(key: string, from = 'hello@example.com'): Promise<number> {
  const res = await fetch(`${api.url}/v1/emails`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ from, to: 'someone@example.org', subject: 'hi', text: 'hello' }),
  });
  return res.status;
}

async function events(
  namespace: string,
  name: string,
): Promise<{ type: string; reason: string; message: string }[]> {
  const list = JSON.parse(
    await kubectl([
      '-n',
      namespace,
      'get',
      'events',
      '--field-selector',
      `involvedObject.name=${name}`,
      '-o',
      'json',
    ]),
  ) as { items: { type: string; reason: string; message: string }[] };
  return list.items;
}

/** Writes to the Kubernetes API other than the leader Lease's renewals. */
async function objectWrites(op: OperatorProcess): Promise<number> {
  return op.metric('mailplane_operator_kube_writes_total', {}, { resource: 'leases' });
}

const tenantYaml = (namespace: string, name: string, keys: { name: string; scopes: string[] }[]) => `
apiVersion: mailplane.io/v1alpha1
kind: Tenant
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  apiKeys: ${JSON.stringify(keys)}
`;

const domainYaml = (
  namespace: string,
  name: string,
  tenant: string,
  domain: string,
  dkim: Record<string, unknown> = {},
) => `
apiVersion: mailplane.io/v1alpha1
kind: SendingDomain
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  tenantRef: { name: ${tenant} }
  domain: ${domain}
  dkim: ${JSON.stringify(dkim)}
`;

before(async () => {
  [cp, testDb, dns] = await Promise.all([startControlPlane(), createTestDatabase(), startDnsServer()]);
  await kubectl(['apply', '-f', 'crds/']);
  await kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd',
    '-l',
    '!nonexistent',
    '--all',
  ]);
  for (const name of ['apps', 'beta', 'dns', 'keys', 'ha', 'mailplane-system'])
    await kubectl(['create', 'namespace', ns(name)]);
  config = readConfig({ DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: SECRET, PORT: '0' });
  database = openDatabase(testDb.url, { max: 5 });
  api = await startApi({ database, config, log: silentLogger, metrics: createMetrics() });
  operatorEnv = {
    KUBECONFIG: cp.kubeconfig,
    DATABASE_URL: testDb.url,
    MAILPLANE_SECRET_KEY: SECRET,
    MAILPLANE_OPERATOR_NAMESPACE: ns('mailplane-system'),
    MAILPLANE_LEASE_DURATION_SECONDS: String(LEASE_SECONDS),
    MAILPLANE_RESYNC_SECONDS: '2',
    MAILPLANE_DNS_RECHECK_SECONDS: '1',
    MAILPLANE_DNS_SERVERS: dns.address,
    MAILPLANE_INBOUND_HOST: INBOUND_HOST,
  };
  operator = await startOperatorProcess(operatorEnv);
});

after(async () => {
  await operator?.stop();
  await api?.close();
  await database?.close();
  await Promise.all([cp?.stop(), testDb?.drop(), dns?.close()]);
});

test('kubectl apply -f examples/ makes all three Ready, with the API key and DKIM key in Secrets and only a hash in Postgres', async () => {
  const apps = ns('apps');
  const applied = Date.now();
  await kubectl(['-n', apps, 'apply', '-f', 'examples/']);
  const tenant = await waitCondition(apps, 'tenant', 'acme', 'Ready', 'True');
  const domain = await waitCondition(apps, 'sendingdomain', 'example-com', 'Ready', 'True');
  await waitCondition(apps, 'template', 'welcome', 'Ready', 'True');
  process.stdout.write(`# examples Ready ${Date.now() - applied} ms after kubectl apply\n`);
  assert.equal(condition(domain, 'KeyReady')?.status, 'True');
  for (const path of ['/healthz', '/readyz'])
    assert.equal((await fetch(operator!.url + path)).status, 200, path);
  const listed = await kubectl(['-n', apps, 'get', 'mailplane']);
  assert.match(listed, /tenant\.mailplane\.io\/acme\s+True/);

  // The API key: in its Secret with its scopes, in Postgres only as a hash.
  assert.deepEqual(tenant.status?.apiKeys, [{ name: 'backend', secretName: 'acme-api-key-backend' }]);
  const keySecret = await getObject(apps, 'secret', 'acme-api-key-backend');
  const key = secretData(keySecret, 'api-key')!;
  assert.match(key, /^mp_/);
  assert.equal(secretData(keySecret, 'scopes'), 'send,read');
  const rows = await database.db.selectFrom('api_keys').selectAll().where('name', '=', 'backend').execute();
  assert.equal(rows.length, 1);
  assert.deepEqual(rows[0]!.hash, hashApiKey(key));
  assert.ok(!JSON.stringify(rows).includes(key.slice(12)), 'the key itself must not be stored');
  assert.equal(await send(key), 202);

  // The DKIM key: generated RSA-2048 into a Secret, encrypted in Postgres, published in status.
  const pem = secretData(await getObject(apps, 'secret', 'example-com-dkim'), 'private.key')!;
  assert.equal(createPublicKey(pem).asymmetricKeyDetails?.modulusLength, 2048);
  const row = await database.db
    .selectFrom('domains')
    .selectAll()
    .where('name', '=', 'example.com')
    .executeTakeFirstOrThrow();
  assert.ok(!row.dkim_private_key.includes('PRIVATE KEY'));
  assert.equal(decrypt(config.secretKey, row.dkim_private_key), pem);
  const records = domain.status!.dnsRecords!;
  assert.deepEqual(
    records.map((r) => `${r.purpose} ${r.type} ${r.name}`),
    [
      'dkim TXT mailplane._domainkey.example.com',
      'spf TXT bounces.example.com',
      'dmarc TXT _dmarc.example.com',
      'return-path MX bounces.example.com',
    ],
  );
  assert.ok(records[0]!.value.includes(row.dkim_public_key));
  assert.equal(records[3]!.value, `10 ${INBOUND_HOST}`);
  // Nothing is published in the test's DNS for example.com: the check says what is missing.
  const dnsCondition = condition(
    await waitCondition(apps, 'sendingdomain', 'example-com', 'DNSVerified', 'False'),
    'DNSVerified',
  )!;
  assert.equal(dnsCondition.reason, 'RecordsMissing');
  assert.match(dnsCondition.message, /TXT mailplane\._domainkey\.example\.com \(no DKIM TXT record\)/);
  assert.ok(
    (await events(apps, 'example-com')).some((e) => e.type === 'Warning' && e.reason === 'RecordsMissing'),
  );
});

test('an invalid spec is refused by the API server with what to fix', async () => {
  const result = await cp.kubectl(
    ['apply', '-f', '-'],
    domainYaml(ns('apps'), 'bad', 'acme', 'Not A Domain'),
  );
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /spec\.domain/);
});

test('a template that does not compile shows the line at fault, an Event, and keeps its last good version', async () => {
  const apps = ns('apps');
  await waitCondition(apps, 'template', 'welcome', 'Ready', 'True');
  await patchSpec(apps, 'template', 'welcome', {
    html: '<p>ok</p>\n<p>still ok</p>\n<% if (x { %>broken<% } %>\n',
  });
  const template = await waitCondition(apps, 'template', 'welcome', 'Compiled', 'False', 'TemplateInvalid');
  assert.match(condition(template, 'Compiled')!.message, /html, line 3/);
  assert.equal(condition(template, 'Ready')?.status, 'False');
  assert.equal(template.status?.version, 1);
  const warning = (await events(apps, 'welcome')).find((e) => e.reason === 'TemplateInvalid');
  assert.equal(warning?.type, 'Warning');

  await patchSpec(apps, 'template', 'welcome', { html: '<p>Hi <%= name %></p>' });
  const fixed = await waitCondition(apps, 'template', 'welcome', 'Ready', 'True');
  assert.equal(fixed.status?.version, 2);
});

test('sample data over 64 KiB is refused by name, and the last good version stays in use', async () => {
  const apps = ns('apps');
  await patchSpec(apps, 'template', 'welcome', { sampleData: { name: 'x'.repeat(70_000) } });
  const refused = await waitCondition(apps, 'template', 'welcome', 'Compiled', 'False', 'SampleDataTooLarge');
  assert.match(condition(refused, 'Compiled')!.message, /spec\.sampleData is 700\d\d bytes as JSON/);
  assert.equal(refused.status?.version, 2);
  await patchSpec(apps, 'template', 'welcome', { sampleData: { name: 'Ada' } });
  await waitCondition(apps, 'template', 'welcome', 'Ready', 'True');
});

test('an update is reconciled, and an unchanged object costs no write on resync', async () => {
  const apps = ns('apps');
  await patchSpec(apps, 'tenant', 'acme', { apiKeys: [{ name: 'backend', scopes: ['send'] }] });
  await eventually(
    'the key Secret to carry the new scopes',
    async () => secretData(await getObject(apps, 'secret', 'acme-api-key-backend'), 'scopes') === 'send',
  );
  const row = await database.db
    .selectFrom('api_keys')
    .select('scopes')
    .where('name', '=', 'backend')
    .where('revoked_at', 'is', null)
    .executeTakeFirstOrThrow();
  assert.deepEqual(row.scopes, ['send']);
  await waitCondition(apps, 'tenant', 'acme', 'Ready', 'True');

  // Resync runs every 2 s here: wait for several, then compare.
  await sleep(1500);
  const versions = async () =>
    Promise.all([
      getObject(apps, 'tenant', 'acme'),
      getObject(apps, 'sendingdomain', 'example-com'),
      getObject(apps, 'template', 'welcome'),
      getObject(apps, 'secret', 'acme-api-key-backend'),
      getObject(apps, 'secret', 'example-com-dkim'),
    ]).then((objects) => objects.map((o) => o?.metadata.resourceVersion));
  const writesBefore = await objectWrites(operator!);
  const unchangedBefore = await operator!.metric('mailplane_operator_reconciles_total', {
    result: 'unchanged',
  });
  const before = await versions();
  await sleep(5000);
  assert.deepEqual(await versions(), before);
  assert.equal(await objectWrites(operator!), writesBefore);
  assert.ok(
    (await operator!.metric('mailplane_operator_reconciles_total', { result: 'unchanged' })) >=
      unchangedBefore + 6,
  );
});

test('removing a key from spec.apiKeys revokes it: its Secret goes and a send with it gets 401', async () => {
  const keys = ns('keys');
  await kubectl(
    ['apply', '-f', '-'],
    tenantYaml(keys, 'shop', [
      { name: 'web', scopes: ['send'] },
      { name: 'ci', scopes: ['send'] },
    ]),
  );
  await kubectl(['apply', '-f', '-'], domainYaml(keys, 'shop-example', 'shop', 'shop.example'));
  await waitCondition(keys, 'sendingdomain', 'shop-example', 'Ready', 'True');
  const ci = secretData(await getObject(keys, 'secret', 'shop-api-key-ci'), 'api-key')!;
  const web = secretData(await getObject(keys, 'secret', 'shop-api-key-web'), 'api-key')!;
  assert.equal(await send(ci, 'a@shop.example'), 202);

  await kubectl(['apply', '-f', '-'], tenantYaml(keys, 'shop', [{ name: 'web', scopes: ['send'] }]));
  await eventually(
    'the ci key Secret to be deleted',
    async () => (await getObject(keys, 'secret', 'shop-api-key-ci')) === undefined,
  );
  // The api caches a key for a second.
  await eventually('the revoked key to be refused', async () => (await send(ci, 'a@shop.example')) === 401);
  assert.equal(await send(web, 'a@shop.example'), 202);
  assert.ok((await events(keys, 'shop')).some((e) => e.reason === 'KeyRevoked'));
});

test('a domain another tenant already holds is refused to the second, with an Event saying why', async () => {
  const beta = ns('beta');
  await kubectl(['apply', '-f', '-'], tenantYaml(beta, 'beta', []));
  await kubectl(['apply', '-f', '-'], domainYaml(beta, 'example-com', 'beta', 'example.com'));
  const claimed = await waitCondition(
    beta,
    'sendingdomain',
    'example-com',
    'Ready',
    'False',
    'DomainClaimed',
  );
  assert.match(condition(claimed, 'Ready')!.message, /example\.com already belongs to another tenant/);
  const warning = await eventually('a DomainClaimed event', async () =>
    (await events(beta, 'example-com')).find((e) => e.reason === 'DomainClaimed'),
  );
  assert.equal(warning.type, 'Warning');
  // The first tenant keeps it.
  await waitCondition(ns('apps'), 'sendingdomain', 'example-com', 'Ready', 'True');
  // Deleting the refused claim leaves the holder's row alone.
  await kubectl(['-n', beta, 'delete', 'sendingdomain', 'example-com', '--wait=true', '--timeout=30s']);
  assert.ok(
    await database.db.selectFrom('domains').select('id').where('name', '=', 'example.com').executeTakeFirst(),
  );
});

test('DNS: published records verify the domain; a missing record is named in the condition', async () => {
  const space = ns('dns');
  await kubectl(['apply', '-f', '-'], tenantYaml(space, 'dns', []));
  await kubectl(
    ['apply', '-f', '-'],
    domainYaml(space, 'good', 'dns', 'good.example', { algorithm: 'ed25519' }),
  );
  await kubectl(['apply', '-f', '-'], domainYaml(space, 'partial', 'dns', 'partial.example'));
  const publish = (o: K8sObject, skip?: string) => {
    for (const r of o.status!.dnsRecords!) {
      if (r.purpose === skip) continue;
      dns.records.set(r.name, [...(dns.records.get(r.name) ?? []), { type: 'TXT', value: r.value }]);
    }
  };
  const good = await waitCondition(space, 'sendingdomain', 'good', 'Ready', 'True');
  assert.match(good.status!.dnsRecords![0]!.value, /k=ed25519/);
  const pem = secretData(await getObject(space, 'secret', 'good-dkim'), 'private.key')!;
  assert.equal(createPublicKey(pem).asymmetricKeyType, 'ed25519');
  publish(good);
  publish(await waitCondition(space, 'sendingdomain', 'partial', 'Ready', 'True'), 'dmarc');

  await waitCondition(space, 'sendingdomain', 'good', 'DNSVerified', 'True', 'RecordsFound');
  // The findings are on the domain's row too, where the api reads them (GET /v1/domains/:id).
  const findings = await database.db
    .selectFrom('domains')
    .select(['dns_findings', 'dns_checked_at'])
    .where('name', '=', 'good.example')
    .executeTakeFirstOrThrow();
  assert.ok(findings.dns_checked_at);
  assert.deepEqual(
    findings.dns_findings?.map((f) => [f.purpose, f.status]),
    [
      ['dkim', 'verified'],
      ['spf', 'verified'],
      ['dmarc', 'verified'],
    ],
  );
  // Only DMARC is left missing once the re-check has seen the published records.
  await eventually('the DNS condition to name only the missing DMARC record', async () => {
    const c = condition(await getObject(space, 'sendingdomain', 'partial'), 'DNSVerified');
    return (
      c?.reason === 'RecordsMissing' &&
      c.message === 'publish: TXT _dmarc.partial.example (no v=DMARC1 TXT record)'
    );
  });

  // The re-check on an interval sees the record once it is published.
  dns.records.set('_dmarc.partial.example', [{ type: 'TXT', value: 'v=DMARC1; p=quarantine' }]);
  await waitCondition(space, 'sendingdomain', 'partial', 'DNSVerified', 'True', 'RecordsFound');
});

test("a SendingDomain signs with the user's own key from spec.dkim.secretRef, and says when that Secret is missing", async () => {
  const space = ns('dns');
  await kubectl(
    ['apply', '-f', '-'],
    domainYaml(space, 'own', 'dns', 'own.example', { secretRef: { name: 'own-key' } }),
  );
  const missing = await waitCondition(
    space,
    'sendingdomain',
    'own',
    'KeyReady',
    'False',
    'KeySecretNotFound',
  );
  assert.equal(condition(missing, 'Ready')?.status, 'False');

  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  await kubectl(['-n', space, 'create', 'secret', 'generic', 'own-key', `--from-literal=private.key=${pem}`]);
  const ready = await waitCondition(space, 'sendingdomain', 'own', 'KeyReady', 'True', 'KeyFromSecret');
  const spki = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  assert.ok(ready.status!.dnsRecords![0]!.value.endsWith(`p=${spki}`));
  assert.equal(
    await getObject(space, 'secret', 'own-dkim'),
    undefined,
    "no key is generated beside the user's",
  );
});

test("deleting resources removes their rows through the finalizer, keeps the DKIM Secret, and retires the tenant's row", async () => {
  const apps = ns('apps');
  const tenantId = (
    await database.db
      .selectFrom('tenants')
      .select('id')
      .where('namespace', '=', apps)
      .where('name', '=', 'acme')
      .executeTakeFirstOrThrow()
  ).id;
  assert.deepEqual((await getObject(apps, 'tenant', 'acme'))?.metadata.finalizers, ['mailplane.io/cleanup']);
  await kubectl([
    '-n',
    apps,
    'delete',
    'template/welcome',
    'sendingdomain/example-com',
    '--wait=true',
    '--timeout=30s',
  ]);
  assert.equal(
    await database.db.selectFrom('domains').select('id').where('tenant_id', '=', tenantId).executeTakeFirst(),
    undefined,
  );
  assert.equal(
    await database.db
      .selectFrom('templates')
      .select('id')
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst(),
    undefined,
  );
  assert.ok(await getObject(apps, 'secret', 'example-com-dkim'), 'the DKIM key Secret is kept');

  await kubectl(['-n', apps, 'delete', 'tenant', 'acme', '--wait=true', '--timeout=30s']);
  // deletionPolicy Retain, the default: the row stays, marked deleted, with every key revoked.
  const retired = await database.db
    .selectFrom('tenants')
    .select('deleted_at')
    .where('id', '=', tenantId)
    .executeTakeFirstOrThrow();
  assert.ok(retired.deleted_at, 'the tenant row is marked deleted');
  assert.deepEqual(
    await database.db
      .selectFrom('api_keys')
      .select('name')
      .where('tenant_id', '=', tenantId)
      .where('revoked_at', 'is', null)
      .execute(),
    [],
    'no key of a deleted tenant is live',
  );
  assert.equal(
    await getObject(apps, 'secret', 'acme-api-key-backend'),
    undefined,
    "a deleted tenant's key Secrets go",
  );

  // Asked for, the generated key goes with its domain.
  const space = ns('dns');
  await kubectl(
    ['apply', '-f', '-'],
    domainYaml(space, 'short-lived', 'dns', 'short.example', { deletionPolicy: 'Delete' }),
  );
  await waitCondition(space, 'sendingdomain', 'short-lived', 'Ready', 'True');
  assert.ok(await getObject(space, 'secret', 'short-lived-dkim'));
  await kubectl(['-n', space, 'delete', 'sendingdomain', 'short-lived', '--wait=true', '--timeout=30s']);
  assert.equal(await getObject(space, 'secret', 'short-lived-dkim'), undefined);
});

test('an operator restart generates no new key and writes nothing for unchanged objects', async () => {
  const keys = ns('keys');
  const watched = async () =>
    Promise.all([
      getObject(keys, 'tenant', 'shop'),
      getObject(keys, 'sendingdomain', 'shop-example'),
      getObject(keys, 'secret', 'shop-api-key-web'),
      getObject(keys, 'secret', 'shop-example-dkim'),
    ]).then((objects) => objects.map((o) => o?.metadata.resourceVersion));
  const before = await watched();
  const keyRows = await database.db.selectFrom('api_keys').select(['id', 'hash']).orderBy('id').execute();
  await operator!.stop();
  operator = await startOperatorProcess(operatorEnv);
  // Every object reconciled at least once, then a resync more.
  await eventually(
    'the new operator to reconcile everything',
    async () =>
      (await operator!.metric('mailplane_operator_reconciles_total', { result: 'unchanged' })) >= 10,
  );
  assert.deepEqual(await watched(), before);
  assert.equal(await objectWrites(operator!), 0);
  assert.deepEqual(
    await database.db.selectFrom('api_keys').select(['id', 'hash']).orderBy('id').execute(),
    keyRows,
  );
});

test('two operators: one leads; kill -9 the leader and the other takes over within a lease period, writing nothing twice', async () => {
  const ha = ns('ha');
  const second = await startOperatorProcess(operatorEnv);
  try {
    await sleep(LEASE_SECONDS * 1000);
    const leaders = [await operator!.isLeader(), await second.isLeader()];
    assert.deepEqual(leaders, [true, false], 'the running operator keeps the lease; the new one stands by');
    assert.equal(
      await second.metric('mailplane_operator_reconciles_total'),
      0,
      'a standby reconciles nothing',
    );

    await kubectl(['apply', '-f', '-'], tenantYaml(ha, 'ha', [{ name: 'one', scopes: ['send'] }]));
    await waitCondition(ha, 'tenant', 'ha', 'Ready', 'True');
    const secretBefore = (await getObject(ha, 'secret', 'ha-api-key-one'))!.metadata.resourceVersion;

    const killed = Date.now();
    await operator!.kill();
    await eventually('the standby to take over', () => second.isLeader(), 30_000);
    const takeoverMs = Date.now() - killed;
    process.stdout.write(`# leader takeover after kill -9: ${takeoverMs} ms (lease ${LEASE_SECONDS} s)\n`);
    // The bound the README states: a lease duration plus a retry period (a fifth of so short a
    // lease) after the last renewal, plus what the kill and this poll of /metrics take.
    const boundMs = LEASE_SECONDS * 1000 * 1.2;
    assert.ok(takeoverMs <= boundMs + 1000, `takeover took ${takeoverMs} ms, bound ${boundMs} ms`);

    await kubectl(
      ['apply', '-f', '-'],
      tenantYaml(ha, 'ha', [
        { name: 'one', scopes: ['send'] },
        { name: 'two', scopes: ['read'] },
      ]),
    );
    await eventually(
      'the new leader to issue the second key',
      async () => (await getObject(ha, 'secret', 'ha-api-key-two')) !== undefined,
    );
    assert.equal((await getObject(ha, 'secret', 'ha-api-key-one'))!.metadata.resourceVersion, secretBefore);
    const rows = await database.db
      .selectFrom('api_keys')
      .innerJoin('tenants', 'tenants.id', 'api_keys.tenant_id')
      .select(['api_keys.name'])
      .where('tenants.namespace', '=', ha)
      .orderBy('api_keys.name')
      .execute();
    assert.deepEqual(
      rows.map((r) => r.name),
      ['one', 'two'],
      'each key issued exactly once',
    );
    const issued = (await events(ha, 'ha')).filter((e) => e.reason === 'KeyIssued');
    assert.equal(issued.length, 2);
  } finally {
    operator = second;
  }
});

test('with the API server out of reach, the operator is not ready and retries its lists, backing off', async () => {
  // A port nothing listens on: every list fails at once with ECONNREFUSED.
  const unreachable = join(tmpdir(), `mailplane-unreachable-${RUN}.kubeconfig`);
  const port = await freePort();
  writeFileSync(
    unreachable,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [{ name: gone, cluster: { server: "https://127.0.0.1:' +
        port +
        '", insecure-skip-tls-verify: true } }]',
      'users: [{ name: gone, user: { token: nothing } }]',
      'contexts: [{ name: gone, context: { cluster: gone, user: gone } }]',
      'current-context: gone',
    ].join('\n'),
  );
  const lonely = await startOperatorProcess({ ...operatorEnv, KUBECONFIG: unreachable });
  try {
    const failures = () =>
      lonely.logs
        .filter((l) => l.msg === 'watch failed; restarting the informer' && l.controller === 'Tenant')
        .map((l) => Number(l.retryMs));
    const delays = await eventually('three failed lists of Tenants', async () =>
      failures().length >= 3 ? failures() : undefined,
    );
    assert.ok(delays[1]! > delays[0]! && delays[2]! > delays[1]!, `backing off: ${delays.join(', ')} ms`);
    const ready = await fetch(`${lonely.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(await ready.text(), /caches not synced/);
    assert.equal((await fetch(`${lonely.url}/healthz`)).status, 200, 'alive: restarting would not help');
  } finally {
    await lonely.stop();
    rmSync(unreachable, { force: true });
  }
});
