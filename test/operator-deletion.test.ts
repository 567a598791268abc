// Deleting a Tenant on a real kube-apiserver and Postgres: it waits for what names it, revokes its
// keys at once when it goes, keeps or deletes its history and suppressions as its
// deletionPolicy says (rows counted before and after), never through a database cascade, and a
// Tenant created again under the name takes back what was kept. A Tenant where the operator may
// not keep Secrets gets no finalizer that could hang.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startApi, type RunningApi } from '../api/main.js';
import { readConfig } from '../lib/config.js';
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
  templateYaml,
  tenantYaml,
} from './helpers/kube-objects.js';
import { startOperatorProcess, type OperatorProcess } from './helpers/operator.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const SECRET = 'operator-deletion-secret-key-of-32-characters';
const RUN = randomBytes(3).toString('hex');
const ns = (name: string) => `${name}-${RUN}`;
const APPS = ns('apps');
const STRAY = ns('stray');

let cp: ControlPlane;
let k: ReturnType<typeof kubeObjects>;
let testDb: TestDatabase;
let database: DatabaseHandle;
let api: RunningApi;
let dns: DnsServer;
let operator: OperatorProcess | undefined;

before(async () => {
  [cp, testDb, dns] = await Promise.all([startControlPlane(), createTestDatabase(), startDnsServer()]);
  k = kubeObjects(cp);
  await installCrds(cp);
  for (const name of [APPS, STRAY, ns('mailplane-system')]) await k.kubectl(['create', 'namespace', name]);
  const config = readConfig({ DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: SECRET, PORT: '0' });
  database = openDatabase(testDb.url, { max: 5 });
  api = await startApi({ database, config, log: silentLogger, metrics: createMetrics() });
  operator = await startOperatorProcess({
    KUBECONFIG: cp.kubeconfig,
    DATABASE_URL: testDb.url,
    MAILPLANE_SECRET_KEY: SECRET,
    MAILPLANE_OPERATOR_NAMESPACE: ns('mailplane-system'),
    MAILPLANE_LEASE_DURATION_SECONDS: '4',
    // Long: everything here must follow from watch events, not from a resync.
    MAILPLANE_RESYNC_SECONDS: '600',
    MAILPLANE_DNS_SERVERS: dns.address,
    // As the chart sets it: the operator may keep Secrets in APPS, not in STRAY.
    MAILPLANE_SECRET_NAMESPACES: APPS,
  });
});

after(async () => {
  await operator?.stop();
  await api?.close();
  await database?.close();
  await Promise.all([cp?.stop(), testDb?.drop(), dns?.close()]);
});

async function send(key: string, to = 'someone@example.org', from = 'hello@acme.example'): Promise<Response> {
  return fetch(`${api.url}/v1/emails`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ from, to, subject: 'hi', text: 'hello' }),
  });
}

async function tenantRow(namespace: string, name: string) {
  return database.db
    .selectFrom('tenants')
    .select(['id', 'deleted_at'])
    .where('namespace', '=', namespace)
    .where('name', '=', name)
    .executeTakeFirst();
}

/** Rows a tenant holds, table by table. */
async function rowsOf(tenantId: string) {
  const count = async (table: 'emails' | 'messages' | 'events' | 'suppressions' | 'api_keys') =>
    Number(
      (
        await database.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .where('tenant_id', '=', tenantId)
          .executeTakeFirstOrThrow()
      ).n,
    );
  return {
    emails: await count('emails'),
    messages: await count('messages'),
    events: await count('events'),
    suppressions: await count('suppressions'),
    api_keys: await count('api_keys'),
  };
}

async function liveKeys(tenantId: string): Promise<number> {
  const rows = await database.db
    .selectFrom('api_keys')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('revoked_at', 'is', null)
    .execute();
  return rows.length;
}

async function suppress(tenantId: string, ...addresses: string[]): Promise<void> {
  await database.db
    .insertInto('suppressions')
    .values(addresses.map((address) => ({ tenant_id: tenantId, address, reason: 'complaint' as const })))
    .execute();
}

async function delivered(emailIds: string[]): Promise<void> {
  const messages = await database.db
    .selectFrom('messages')
    .select(['id', 'email_id', 'tenant_id'])
    .where('email_id', 'in', emailIds)
    .execute();
  await database.db
    .insertInto('events')
    .values(
      messages.map((m) => ({
        tenant_id: m.tenant_id,
        email_id: m.email_id,
        message_id: m.id,
        type: 'delivered',
        detail: JSON.stringify({ reply: '250 ok' }),
      })),
    )
    .execute();
}

/** A Tenant with a key, Ready, and two emails sent through the api; returns its key and id. */
async function tenantWithHistory(namespace: string, name: string, extra: Record<string, unknown> = {}) {
  await k.apply(tenantYaml(namespace, name, [{ name: 'backend', scopes: ['send', 'read'] }], extra));
  await k.apply(domainYaml(namespace, `${name}-domain`, name, `${name}.example`));
  await k.waitCondition(namespace, 'tenant', name, 'Ready', 'True');
  await k.waitCondition(namespace, 'sendingdomain', `${name}-domain`, 'Ready', 'True');
  const key = secretData(await k.getObject(namespace, 'secret', `${name}-api-key-backend`), 'api-key')!;
  const ids: string[] = [];
  for (const to of ['ada@example.org', 'bob@example.org']) {
    const res = await send(key, to, `hello@${name}.example`);
    assert.equal(res.status, 202, await res.clone().text());
    ids.push(((await res.json()) as { id: string }).id);
  }
  const { id } = (await tenantRow(namespace, name))!;
  // What a sender would append once delivered: the timeline a deletion must keep or delete.
  await delivered(ids);
  await suppress(id, 'complained@example.org', 'unsubscribed@example.org');
  return { key, tenantId: id, emailIds: ids };
}

let acme: Awaited<ReturnType<typeof tenantWithHistory>>;
let acmeRowsBefore: Awaited<ReturnType<typeof rowsOf>>;

test('deleting a Tenant that a SendingDomain and a Template name waits for them, says which, and writes nothing for them meanwhile', async () => {
  acme = await tenantWithHistory(APPS, 'acme');
  await k.apply(templateYaml(APPS, 'welcome', 'acme'));
  await k.waitCondition(APPS, 'template', 'welcome', 'Ready', 'True');
  acmeRowsBefore = await rowsOf(acme.tenantId);
  assert.deepEqual(acmeRowsBefore, { emails: 2, messages: 2, events: 2, suppressions: 2, api_keys: 1 });
  const dkimBefore = await k.getObject(APPS, 'secret', 'acme-domain-dkim');

  await k.kubectl(['-n', APPS, 'delete', 'tenant', 'acme', '--wait=false']);
  const blocked = await k.waitCondition(APPS, 'tenant', 'acme', 'Ready', 'False', 'DeletionBlocked');
  const message = condition(blocked, 'Ready')!.message;
  assert.match(message, /SendingDomain acme-domain/);
  assert.match(message, /Template welcome/);
  assert.deepEqual(blocked.metadata.finalizers, ['mailplane.io/cleanup']);
  const event = await k.waitEvent(APPS, 'acme', 'DeletionBlocked');
  assert.equal(event.type, 'Warning');
  assert.match(
    event.message,
    /SendingDomain acme-domain.*Template welcome|Template welcome.*SendingDomain acme-domain/,
  );

  // Until its dependents go, the tenant is whole: its key still sends.
  const third = await send(acme.key, 'carol@example.org', 'hello@acme.example');
  assert.equal(third.status, 202);
  await delivered([((await third.json()) as { id: string }).id]);
  acmeRowsBefore = await rowsOf(acme.tenantId);

  // Its dependents say why they are not reconciled, and nothing is written for them.
  await k.waitCondition(APPS, 'sendingdomain', 'acme-domain', 'Ready', 'False', 'TenantDeleting');
  await k.waitCondition(APPS, 'template', 'welcome', 'Ready', 'False', 'TenantDeleting');
  await k.apply(domainYaml(APPS, 'late', 'acme', 'late.acme.example'));
  await k.waitCondition(APPS, 'sendingdomain', 'late', 'Ready', 'False', 'TenantDeleting');
  // A deleted key Secret of a tenant being deleted is not written again either.
  await k.kubectl(['-n', APPS, 'delete', 'secret', 'acme-domain-dkim']);
  await sleep(2_000);
  assert.equal(
    await k.getObject(APPS, 'secret', 'late-dkim'),
    undefined,
    'no key for a tenant being deleted',
  );
  assert.equal(await k.getObject(APPS, 'secret', 'acme-domain-dkim'), undefined);
  assert.equal(
    await database.db
      .selectFrom('domains')
      .select('id')
      .where('name', '=', 'late.acme.example')
      .executeTakeFirst(),
    undefined,
  );
  // Put back as it was, for whoever re-creates the domain: the same key, the same DNS record.
  await k.kubectl(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'acme-domain-dkim', namespace: APPS, labels: dkimBefore!.metadata.labels },
      data: dkimBefore!.data,
    }),
  );
});

test('once its dependents are deleted the Tenant goes: its keys are revoked at once, and with Retain its history and suppressions stay, row for row', async () => {
  const started = Date.now();
  await k.kubectl([
    '-n',
    APPS,
    'delete',
    'sendingdomain/acme-domain',
    'sendingdomain/late',
    'template/welcome',
  ]);
  await k.waitGone(APPS, 'tenant', 'acme');
  process.stdout.write(`# tenant gone ${Date.now() - started} ms after its dependents were deleted\n`);

  const row = (await tenantRow(APPS, 'acme'))!;
  assert.equal(row.id, acme.tenantId);
  assert.ok(row.deleted_at, 'the row is retired, not deleted');
  assert.equal(await liveKeys(acme.tenantId), 0);
  assert.deepEqual(await rowsOf(acme.tenantId), acmeRowsBefore, 'history and suppressions kept');
  await eventually('the revoked key to be refused', async () => (await send(acme.key)).status === 401);
  assert.equal(await k.getObject(APPS, 'secret', 'acme-api-key-backend'), undefined);
  const retained = await k.waitEvent(APPS, 'acme', 'TenantRetained');
  assert.match(retained.message, /1 API key revoked; kept 3 emails .* and 2 suppressions/);
});

test('a Tenant created again under the same name takes back its history and suppressions, with new keys', async () => {
  await k.apply(tenantYaml(APPS, 'acme', [{ name: 'backend', scopes: ['send', 'read'] }]));
  await k.waitCondition(APPS, 'tenant', 'acme', 'Ready', 'True');
  const row = (await tenantRow(APPS, 'acme'))!;
  assert.equal(row.id, acme.tenantId, 'the same tenant row');
  assert.equal(row.deleted_at, null);
  const key = secretData(await k.getObject(APPS, 'secret', 'acme-api-key-backend'), 'api-key')!;
  assert.notEqual(key, acme.key);
  assert.equal((await send(acme.key)).status, 401, 'the old key stays revoked');
  // Its old emails are its own again.
  const res = await fetch(`${api.url}/v1/emails/${acme.emailIds[0]}`, {
    headers: { authorization: `Bearer ${key}` },
  });
  assert.equal(res.status, 200);
  const suppressed = await database.db
    .selectFrom('suppressions')
    .select('address')
    .where('tenant_id', '=', row.id)
    .orderBy('address')
    .execute();
  assert.deepEqual(
    suppressed.map((s) => s.address),
    ['complained@example.org', 'unsubscribed@example.org'],
  );
  const { suppressions, emails } = await rowsOf(row.id);
  assert.deepEqual({ suppressions, emails }, { suppressions: 2, emails: 3 });
  const restored = await k.waitEvent(APPS, 'acme', 'TenantRestored');
  assert.match(restored.message, /3 emails .* and 2 suppressions/);
});

test('with deletionPolicy Delete the Tenant takes its history and suppressions with it, table by table', async () => {
  const temp = await tenantWithHistory(APPS, 'temp', { deletionPolicy: 'Delete' });
  assert.deepEqual(await rowsOf(temp.tenantId), {
    emails: 2,
    messages: 2,
    events: 2,
    suppressions: 2,
    api_keys: 1,
  });
  await k.kubectl(['-n', APPS, 'delete', 'sendingdomain', 'temp-domain', '--wait=true', '--timeout=30s']);
  await k.kubectl(['-n', APPS, 'delete', 'tenant', 'temp', '--wait=true', '--timeout=30s']);
  assert.equal(await tenantRow(APPS, 'temp'), undefined);
  assert.deepEqual(await rowsOf(temp.tenantId), {
    emails: 0,
    messages: 0,
    events: 0,
    suppressions: 0,
    api_keys: 0,
  });
  const deleted = await k.waitEvent(APPS, 'temp', 'TenantDeleted');
  assert.match(deleted.message, /deleted 2 emails \(2 messages, 2 events\) and 2 suppressions/);
});

test('Postgres refuses to delete a tenant row that still holds data: nothing cascades', async () => {
  await assert.rejects(
    database.db.deleteFrom('tenants').where('id', '=', acme.tenantId).execute(),
    (err: { code?: string }) => err.code === '23503',
  );
  assert.equal((await rowsOf(acme.tenantId)).suppressions, 2);
});

test('a Tenant where the operator may not keep Secrets gets no finalizer, says why, and is deleted at once', async () => {
  await k.apply(tenantYaml(STRAY, 'stray', [{ name: 'backend', scopes: ['send'] }]));
  await k.apply(domainYaml(STRAY, 'stray-domain', 'stray', 'stray.example'));
  const refused = await k.waitCondition(STRAY, 'tenant', 'stray', 'Ready', 'False', 'NamespaceNotAllowed');
  assert.match(
    condition(refused, 'Ready')!.message,
    new RegExp(`may not keep Secrets in namespace ${STRAY}`),
  );
  assert.match(condition(refused, 'Ready')!.message, new RegExp(`operator.secretNamespaces lists ${APPS}`));
  assert.equal(refused.metadata.finalizers, undefined);
  const domain = await k.waitCondition(
    STRAY,
    'sendingdomain',
    'stray-domain',
    'Ready',
    'False',
    'NamespaceNotAllowed',
  );
  assert.equal(domain.metadata.finalizers, undefined);
  const event = await k.waitEvent(STRAY, 'stray', 'NamespaceNotAllowed');
  assert.equal(event.type, 'Warning');
  assert.equal(await tenantRow(STRAY, 'stray'), undefined, 'nothing stored for it');

  const started = Date.now();
  await k.kubectl([
    '-n',
    STRAY,
    'delete',
    'tenant/stray',
    'sendingdomain/stray-domain',
    '--wait=true',
    '--timeout=10s',
  ]);
  assert.ok(Date.now() - started < 10_000);
});
