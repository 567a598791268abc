// Webhooks declared in a Tenant (spec.webhooks), on a real kube-apiserver and Postgres: one
// endpoint of source 'tenant' per entry, its signing secret generated once, kept encrypted in the
// row and written to the Secret <tenant>-webhook-<name>; edits follow the spec, a removed entry
// takes its row and Secret with it, a deleted or edited Secret comes back with the same secret, a
// URL the installation refuses is named in a condition, and the API may read but not change them.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { parse } from 'yaml';
import { startApi, type RunningApi } from '../api/main.js';
import { readConfig, type Config } from '../lib/config.js';
import { decrypt } from '../lib/crypto.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { MAX_ENDPOINTS_PER_TENANT } from '../lib/db/webhooks.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { DISABLED_IN_TENANT } from '../lib/reconcile/tenant-webhooks.js';
import { WEBHOOK_EVENT_TYPES } from '../lib/webhooks.js';
import { startControlPlane, type ControlPlane } from './helpers/control-plane.js';
import { eventually } from './helpers/eventually.js';
import {
  condition,
  installCrds,
  kubeObjects,
  secretData,
  tenantYaml,
  type KubeObject,
} from './helpers/kube-objects.js';
import { startOperatorProcess, type OperatorProcess } from './helpers/operator.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const SECRET = 'operator-webhooks-secret-key-of-32-characters';
const RUN = randomBytes(3).toString('hex');
const APPS = `hooks-${RUN}`;
/** What "within seconds" means here: the Secret watch, not the resync (600 s). */
const HEAL_MS = 10_000;
const KEYS = [{ name: 'backend', scopes: ['send', 'read'] }];

let cp: ControlPlane;
let k: ReturnType<typeof kubeObjects>;
let testDb: TestDatabase;
let database: DatabaseHandle;
let config: Readonly<Config>;
let api: RunningApi;
let operator: OperatorProcess | undefined;
let operatorEnv: Record<string, string>;

interface WebhookStatus {
  name: string;
  id: string;
  secretName: string;
  url: string;
  enabled: boolean;
  disabledReason?: string;
}

before(async () => {
  [cp, testDb] = await Promise.all([startControlPlane(), createTestDatabase()]);
  k = kubeObjects(cp);
  await installCrds(cp);
  await k.kubectl(['create', 'namespace', APPS]);
  config = readConfig({ DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: SECRET, PORT: '0' });
  database = openDatabase(testDb.url, { max: 5 });
  api = await startApi({ database, config, log: silentLogger, metrics: createMetrics() });
  // MAILPLANE_WEBHOOKS_ALLOW_PRIVATE unset: https and public addresses only, as in production.
  operatorEnv = {
    KUBECONFIG: cp.kubeconfig,
    DATABASE_URL: testDb.url,
    MAILPLANE_SECRET_KEY: SECRET,
    MAILPLANE_OPERATOR_NAMESPACE: APPS,
    MAILPLANE_LEASE_DURATION_SECONDS: '4',
    MAILPLANE_RESYNC_SECONDS: '600',
  };
  operator = await startOperatorProcess(operatorEnv);
});

after(async () => {
  await operator?.stop();
  await api?.close();
  await database?.close();
  await Promise.all([cp?.stop(), testDb?.drop()]);
});

const webhooksOf = (o: KubeObject | undefined) =>
  (o?.status as { webhooks?: WebhookStatus[] } | undefined)?.webhooks ?? [];

/** The tenant's declared endpoints, by name, with the signing secret decrypted. */
async function rows(tenant: string) {
  const found = await database.db
    .selectFrom('webhook_endpoints')
    .innerJoin('tenants', 'tenants.id', 'webhook_endpoints.tenant_id')
    .selectAll('webhook_endpoints')
    .where('tenants.namespace', '=', APPS)
    .where('tenants.name', '=', tenant)
    .orderBy('webhook_endpoints.name')
    .execute();
  return found.map((r) => ({ ...r, signing: decrypt(config.secretKey, r.secret) }));
}

const signingSecret = async (name: string) =>
  secretData(await k.getObject(APPS, 'secret', name), 'signing-secret');

/** Waits until the Tenant's status is of its generation and `check` holds of it. */
async function waitTenant(name: string, what: string, check: (o: KubeObject) => boolean) {
  return eventually(
    what,
    async () => {
      const o = await k.getObject(APPS, 'tenant', name);
      return o && o.status?.observedGeneration === o.metadata.generation && check(o) ? o : undefined;
    },
    30_000,
    async () => JSON.stringify((await k.getObject(APPS, 'tenant', name))?.status ?? null),
  );
}

async function call(method: string, path: string, key: string, body?: unknown) {
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as Record<string, unknown> };
}

test('the CRD takes the event types the sender knows, and no more endpoints than a tenant may have', () => {
  const crd = parse(readFileSync('crds/tenants.yaml', 'utf8')) as {
    spec: { versions: { schema: { openAPIV3Schema: Record<string, never> } }[] };
  };
  type Node = { properties: Record<string, Node>; items: Node; enum: string[]; maxItems: number };
  const spec = (crd.spec.versions[0]!.schema.openAPIV3Schema as unknown as Node).properties.spec!;
  const webhooks = spec.properties.webhooks!;
  assert.equal(webhooks.maxItems, MAX_ENDPOINTS_PER_TENANT);
  assert.deepEqual(webhooks.items.properties.events!.items.enum, [...WEBHOOK_EVENT_TYPES]);
  assert.equal(webhooks.items.properties.events!.maxItems, WEBHOOK_EVENT_TYPES.length);
});

test('the API server refuses a webhook URL without a scheme, an unknown event and a name listed twice, in words', async () => {
  const refused = async (webhooks: unknown[]) => {
    const result = await cp.kubectl(['apply', '-f', '-'], tenantYaml(APPS, 'bad', KEYS, { webhooks }));
    assert.notEqual(result.code, 0, JSON.stringify(webhooks));
    return result.stderr;
  };
  assert.match(
    await refused([{ name: 'a', url: 'hooks.example.com/mail' }]),
    /spec\.webhooks\[0\]\.url: Invalid value: "string": must be an https:\/\/ URL \(http:\/\/ is taken only where the installation sets MAILPLANE_WEBHOOKS_ALLOW_PRIVATE=true\)/,
  );
  assert.match(
    await refused([{ name: 'a', url: 'https://hooks.example.com/', events: ['email.forwarded'] }]),
    /spec\.webhooks\[0\]\.events\[0\]: Unsupported value: "email\.forwarded"/,
  );
  assert.match(
    await refused([
      { name: 'a', url: 'https://one.example.com/' },
      { name: 'a', url: 'https://two.example.com/' },
    ]),
    /spec\.webhooks\[1\]: Duplicate value/,
  );
  assert.match(
    await refused([{ name: 'Not_A_Label', url: 'https://hooks.example.com/' }]),
    /spec\.webhooks\[0\]\.name: Invalid value: "string": must be a DNS label/,
  );
});

test('a Tenant with two webhooks gets two endpoints of source tenant and two Secrets holding their signing secrets', async () => {
  const applied = Date.now();
  await k.apply(
    tenantYaml(APPS, 'acme', KEYS, {
      webhooks: [
        { name: 'events', url: 'https://hooks.acme.example/mail' },
        {
          name: 'audit',
          url: 'https://audit.acme.example/in',
          events: ['email.bounced', 'email.complained'],
        },
      ],
    }),
  );
  const tenant = await k.waitCondition(APPS, 'tenant', 'acme', 'Ready', 'True');
  process.stdout.write(`# two webhooks registered ${Date.now() - applied} ms after kubectl apply\n`);
  const registered = condition(tenant, 'WebhooksRegistered');
  assert.equal(registered?.status, 'True');
  assert.match(registered!.message, /2 webhooks registered/);

  const [audit, events] = await rows('acme');
  assert.equal(audit!.name, 'audit');
  assert.equal(events!.name, 'events');
  for (const row of [audit!, events!]) {
    assert.equal(row.source, 'tenant');
    assert.equal(row.enabled, true);
    assert.match(row.signing, /^whsec_[A-Za-z0-9+/]{32}$/);
    assert.ok(!row.secret.includes(row.signing.slice(6)), 'the secret is stored encrypted');
  }
  assert.deepEqual(audit!.events, ['email.bounced', 'email.complained']);
  assert.deepEqual(events!.events, [], 'every event');

  // Each Secret holds the row's secret and URL, labelled and owned as the API-key Secrets are.
  for (const row of [audit!, events!]) {
    const secret = await k.getObject(APPS, 'secret', `acme-webhook-${row.name}`);
    assert.equal(secretData(secret, 'signing-secret'), row.signing);
    assert.equal(secretData(secret, 'url'), row.url);
    assert.equal(secret!.metadata.labels?.['app.kubernetes.io/managed-by'], 'mailplane');
    assert.equal(secret!.metadata.labels?.['mailplane.io/tenant'], 'acme');
    const owners = (secret!.metadata as { ownerReferences?: { kind: string; uid: string }[] })
      .ownerReferences;
    assert.deepEqual(
      owners?.map((o) => `${o.kind}/${o.uid}`),
      [`Tenant/${tenant.metadata.uid}`],
    );
  }
  assert.deepEqual(webhooksOf(tenant), [
    {
      name: 'events',
      id: events!.id,
      secretName: 'acme-webhook-events',
      url: 'https://hooks.acme.example/mail',
      enabled: true,
    },
    {
      name: 'audit',
      id: audit!.id,
      secretName: 'acme-webhook-audit',
      url: 'https://audit.acme.example/in',
      enabled: true,
    },
  ]);
  const event = await k.waitEvent(APPS, 'acme', 'WebhookRegistered');
  assert.match(event.message, /its signing secret is in Secret acme-webhook-(events|audit)/);
  // A printer column shows the first of a list, as the Keys column does.
  const wide = await k.kubectl(['-n', APPS, 'get', 'tenant', 'acme', '-o', 'wide']);
  assert.match(wide, /acme-api-key-backend\s+acme-webhook-events\s/);
});

test('the API lists a declared webhook with source tenant and refuses to change, rotate or delete it (403)', async () => {
  const key = secretData(await k.getObject(APPS, 'secret', 'acme-api-key-backend'), 'api-key')!;
  const listed = await call('GET', '/v1/webhooks', key);
  assert.equal(listed.status, 200);
  const data = listed.body.data as { id: string; name: string; source: string }[];
  assert.deepEqual(data.map((w) => `${w.name} ${w.source}`).sort(), ['audit tenant', 'events tenant']);
  const id = data.find((w) => w.name === 'events')!.id;
  const before = (await rows('acme')).find((r) => r.name === 'events')!;
  for (const [method, path, body] of [
    ['PATCH', `/v1/webhooks/${id}`, { endpoint: 'https://elsewhere.example/hooks' }],
    ['PATCH', `/v1/webhooks/${id}`, { status: 'disabled' }],
    ['POST', `/v1/webhooks/${id}/signing-secret/rotate`, undefined],
    ['DELETE', `/v1/webhooks/${id}`, undefined],
  ] as const) {
    const res = await call(method, path, key, body);
    assert.equal(res.status, 403, `${method} ${path}`);
    assert.equal(res.body.name, 'webhook_read_only');
    assert.match(String(res.body.detail), /declared in the Tenant resource .*acme \(spec\.webhooks\)/);
  }
  const after = (await rows('acme')).find((r) => r.name === 'events')!;
  assert.deepEqual(
    [after.url, after.enabled, after.signing],
    [before.url, before.enabled, before.signing],
    'the row is as it was',
  );
});

test('an edit of url and events updates the row and the Secret, and keeps the signing secret', async () => {
  const before = (await rows('acme')).find((r) => r.name === 'events')!;
  await k.patchSpec(APPS, 'tenant', 'acme', {
    webhooks: [
      { name: 'events', url: 'https://hooks.acme.example/v2', events: ['email.delivered'] },
      { name: 'audit', url: 'https://audit.acme.example/in', events: ['email.bounced', 'email.complained'] },
    ],
  });
  await waitTenant('acme', 'the new URL in status', (o) =>
    webhooksOf(o).some((w) => w.name === 'events' && w.url === 'https://hooks.acme.example/v2'),
  );
  const row = (await rows('acme')).find((r) => r.name === 'events')!;
  assert.equal(row.id, before.id, 'the same endpoint');
  assert.equal(row.url, 'https://hooks.acme.example/v2');
  assert.deepEqual(row.events, ['email.delivered']);
  assert.equal(row.signing, before.signing, 'the same secret');
  const secret = await k.getObject(APPS, 'secret', 'acme-webhook-events');
  assert.equal(secretData(secret, 'url'), 'https://hooks.acme.example/v2');
  assert.equal(secretData(secret, 'signing-secret'), before.signing);
  await k.waitEvent(APPS, 'acme', 'WebhookUpdated');
});

test('a deleted webhook Secret is written back within seconds with the same secret; so is an edited one', async () => {
  const { signing } = (await rows('acme')).find((r) => r.name === 'audit')!;
  const deleted = Date.now();
  await k.kubectl(['-n', APPS, 'delete', 'secret', 'acme-webhook-audit']);
  await eventually(
    'the webhook Secret to be written back',
    async () => (await signingSecret('acme-webhook-audit')) === signing,
    HEAL_MS,
  );
  process.stdout.write(`# webhook Secret restored after a delete: ${Date.now() - deleted} ms\n`);
  const event = await k.waitEvent(APPS, 'acme', 'WebhookSecretRestored');
  assert.match(event.message, /Secret acme-webhook-audit was deleted; .* the same secret/);

  await k.kubectl([
    '-n',
    APPS,
    'patch',
    'secret',
    'acme-webhook-audit',
    '--type=merge',
    '-p',
    JSON.stringify({
      data: { 'signing-secret': Buffer.from('whsec_bm90IHRoZSBzZWNyZXQ=').toString('base64') },
    }),
  ]);
  await eventually(
    'the edited webhook Secret to be written back',
    async () => (await signingSecret('acme-webhook-audit')) === signing,
    HEAL_MS,
  );
  assert.equal((await rows('acme')).find((r) => r.name === 'audit')!.signing, signing, 'the row kept it');
});

test('a refused URL is named in the condition: a new entry is not registered, an edited one keeps its last URL', async () => {
  await k.patchSpec(APPS, 'tenant', 'acme', {
    webhooks: [
      { name: 'events', url: 'https://10.0.0.7/hooks', events: ['email.delivered'] },
      { name: 'audit', url: 'https://audit.acme.example/in', events: ['email.bounced', 'email.complained'] },
      { name: 'internal', url: 'http://10.0.0.1/hooks' },
    ],
  });
  const tenant = await k.waitCondition(
    APPS,
    'tenant',
    'acme',
    'WebhooksRegistered',
    'False',
    'WebhookURLRefused',
  );
  const message = condition(tenant, 'WebhooksRegistered')!.message;
  assert.match(
    message,
    /spec\.webhooks\[0\] \(events\): url https:\/\/10\.0\.0\.7\/hooks points at a private address \(10\.0\.0\.7\); events still go to https:\/\/hooks\.acme\.example\/v2, the URL it last took/,
  );
  assert.match(
    message,
    /spec\.webhooks\[2\] \(internal\): url http:\/\/10\.0\.0\.1\/hooks must be an https URL; not registered/,
  );
  assert.equal(condition(tenant, 'Ready')?.status, 'False');
  assert.equal(condition(tenant, 'Ready')?.reason, 'WebhookURLRefused');
  assert.match(
    condition(tenant, 'Ready')!.message,
    /1 API key in Secrets, and they work; spec\.webhooks\[0\]/,
  );
  const warning = await k.waitEvent(APPS, 'acme', 'WebhookURLRefused');
  assert.equal(warning.type, 'Warning');

  const byName = new Map((await rows('acme')).map((r) => [r.name, r]));
  assert.equal(byName.has('internal'), false, 'no endpoint for a refused URL');
  assert.equal(byName.get('events')!.url, 'https://hooks.acme.example/v2', 'still the last URL taken');
  assert.equal(await k.getObject(APPS, 'secret', 'acme-webhook-internal'), undefined);
  assert.deepEqual(
    webhooksOf(tenant).map((w) => `${w.name} ${w.url}`),
    ['events https://hooks.acme.example/v2', 'audit https://audit.acme.example/in'],
  );

  // Put right, it is Ready again.
  await k.patchSpec(APPS, 'tenant', 'acme', {
    webhooks: [
      { name: 'events', url: 'https://hooks.acme.example/v2', events: ['email.delivered'] },
      { name: 'audit', url: 'https://audit.acme.example/in', events: ['email.bounced', 'email.complained'] },
    ],
  });
  await k.waitCondition(APPS, 'tenant', 'acme', 'WebhooksRegistered', 'True');
  await k.waitCondition(APPS, 'tenant', 'acme', 'Ready', 'True');
});

test('an endpoint the sender disabled stays disabled on an unchanged spec, and status says how to enable it again', async () => {
  const { id } = (await rows('acme')).find((r) => r.name === 'audit')!;
  // As the sender does on a 410 (lib/db/webhooks.ts deliveryFailed with `disable`).
  const gone = 'the endpoint answered 410 Gone';
  await database.db
    .updateTable('webhook_endpoints')
    .set({ enabled: false, disabled_reason: gone })
    .where('id', '=', id)
    .execute();
  // Another change of the spec brings the Tenant back; its webhooks are as they were.
  await k.patchSpec(APPS, 'tenant', 'acme', { limits: { maxRecipients: 40 } });
  const tenant = await waitTenant('acme', 'the disabled endpoint in status', (o) =>
    webhooksOf(o).some((w) => w.name === 'audit' && !w.enabled),
  );
  const audit = webhooksOf(tenant).find((w) => w.name === 'audit')!;
  assert.match(
    audit.disabledReason!,
    new RegExp(`^${gone}; re-applying the same spec does not enable it again`),
  );
  assert.match(
    condition(tenant, 'WebhooksRegistered')!.message,
    /disabled: audit \(the endpoint answered 410 Gone\)/,
  );
  assert.equal((await rows('acme')).find((r) => r.name === 'audit')!.enabled, false);

  // enabled: false, then true (omitted), enables it again.
  const entries = (enabled?: boolean) => [
    { name: 'events', url: 'https://hooks.acme.example/v2', events: ['email.delivered'] },
    {
      name: 'audit',
      url: 'https://audit.acme.example/in',
      events: ['email.bounced', 'email.complained'],
      ...(enabled === undefined ? {} : { enabled }),
    },
  ];
  await k.patchSpec(APPS, 'tenant', 'acme', { webhooks: entries(false) });
  await waitTenant('acme', 'disabled by the spec', (o) =>
    webhooksOf(o).some((w) => w.name === 'audit' && w.disabledReason === DISABLED_IN_TENANT),
  );
  await k.patchSpec(APPS, 'tenant', 'acme', { webhooks: entries() });
  await waitTenant('acme', 'enabled again', (o) =>
    webhooksOf(o).some((w) => w.name === 'audit' && w.enabled),
  );
  const row = (await rows('acme')).find((r) => r.name === 'audit')!;
  assert.deepEqual([row.enabled, row.disabled_reason, row.failing_since], [true, null, null]);
});

test('removing an entry deletes its endpoint and its Secret', async () => {
  await k.patchSpec(APPS, 'tenant', 'acme', {
    webhooks: [{ name: 'audit', url: 'https://audit.acme.example/in', events: ['email.bounced'] }],
  });
  await waitTenant('acme', 'one webhook left', (o) => webhooksOf(o).length === 1);
  assert.deepEqual(
    (await rows('acme')).map((r) => r.name),
    ['audit'],
  );
  await k.waitGone(APPS, 'secret', 'acme-webhook-events');
  const event = await k.waitEvent(APPS, 'acme', 'WebhookRemoved');
  assert.match(event.message, /webhook events removed with its log of deliveries, and its Secret deleted/);
});

test('an operator restart writes nothing for a Tenant whose webhooks are as the spec says', async () => {
  const versions = async () =>
    Promise.all([
      k.getObject(APPS, 'tenant', 'acme'),
      k.getObject(APPS, 'secret', 'acme-webhook-audit'),
    ]).then((objects) => objects.map((o) => o?.metadata.resourceVersion));
  const before = await versions();
  const rowsBefore = await rows('acme');
  await operator!.stop();
  operator = await startOperatorProcess(operatorEnv);
  await eventually(
    'the new operator to reconcile the Tenant',
    async () => (await operator!.metric('mailplane_operator_reconciles_total', { kind: 'Tenant' })) >= 1,
  );
  assert.deepEqual(await versions(), before);
  assert.equal(
    await operator!.metric('mailplane_operator_kube_writes_total', {}, { resource: 'leases' }),
    0,
    'no write but the Lease',
  );
  assert.deepEqual(await rows('acme'), rowsBefore);
});

test('a Tenant deleted with Retain keeps its endpoints, and created again writes back the same secret', async () => {
  await k.apply(
    tenantYaml(APPS, 'kept', KEYS, { webhooks: [{ name: 'events', url: 'https://kept.example/hooks' }] }),
  );
  await k.waitCondition(APPS, 'tenant', 'kept', 'Ready', 'True');
  const { signing, id } = (await rows('kept'))[0]!;
  await k.kubectl(['-n', APPS, 'delete', 'tenant', 'kept', '--wait=true']);
  await k.waitGone(APPS, 'tenant', 'kept');
  await k.waitGone(APPS, 'secret', 'kept-webhook-events');
  assert.equal((await rows('kept'))[0]?.id, id, 'the endpoint is kept with the retired tenant');

  await k.apply(
    tenantYaml(APPS, 'kept', KEYS, { webhooks: [{ name: 'events', url: 'https://kept.example/hooks' }] }),
  );
  await k.waitCondition(APPS, 'tenant', 'kept', 'Ready', 'True');
  await eventually(
    'the Secret of the kept endpoint',
    async () => (await signingSecret('kept-webhook-events')) === signing,
  );
  assert.equal((await rows('kept'))[0]!.id, id);

  // With Delete, the endpoint goes with the tenant.
  await k.patchSpec(APPS, 'tenant', 'kept', { deletionPolicy: 'Delete' });
  await k.kubectl(['-n', APPS, 'delete', 'tenant', 'kept', '--wait=true']);
  await k.waitGone(APPS, 'tenant', 'kept');
  assert.equal(
    (await database.db.selectFrom('webhook_endpoints').select('id').where('id', '=', id).execute()).length,
    0,
  );
});
