// The operator while Postgres is away, on a real kube-apiserver, with Postgres behind a TCP proxy
// the test cuts and restores: status says Ready=False ReconcileFailed in words for the generation
// tried (never the old truth, never raw JSON), /readyz fails, and once Postgres is back every
// object converges within seconds, with the resync ten minutes away.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { startControlPlane, type ControlPlane } from './helpers/control-plane.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { eventually } from './helpers/eventually.js';
import { condition, installCrds, kubeObjects, templateYaml, tenantYaml } from './helpers/kube-objects.js';
import { startOperatorProcess, type OperatorProcess } from './helpers/operator.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const RUN = randomBytes(3).toString('hex');
const APPS = `apps-${RUN}`;

let cp: ControlPlane;
let k: ReturnType<typeof kubeObjects>;
let testDb: TestDatabase;
let proxy: TcpProxy;
let dns: DnsServer;
let operator: OperatorProcess | undefined;

before(async () => {
  [cp, testDb, dns] = await Promise.all([startControlPlane(), createTestDatabase(), startDnsServer()]);
  k = kubeObjects(cp);
  await installCrds(cp);
  await k.kubectl(['create', 'namespace', APPS]);
  const url = new URL(testDb.url);
  proxy = await startTcpProxy(Number(url.port), url.hostname);
  url.port = String(proxy.port);
  url.hostname = '127.0.0.1';
  operator = await startOperatorProcess({
    KUBECONFIG: cp.kubeconfig,
    DATABASE_URL: url.href,
    MAILPLANE_SECRET_KEY: 'operator-outage-secret-key-of-32-characters',
    MAILPLANE_OPERATOR_NAMESPACE: APPS,
    MAILPLANE_LEASE_DURATION_SECONDS: '4',
    // Ten minutes: convergence after the outage must not wait for it.
    MAILPLANE_RESYNC_SECONDS: '600',
    MAILPLANE_DNS_SERVERS: dns.address,
  });
});

after(async () => {
  await operator?.stop();
  await proxy?.close();
  await Promise.all([cp?.stop(), testDb?.drop(), dns?.close()]);
});

const readyz = async () => {
  const res = await fetch(`${operator!.url}/readyz`);
  return { status: res.status, body: await res.text() };
};

test('with Postgres cut, a new Tenant and an edited Template say Ready=False ReconcileFailed in words for the generation tried, and /readyz fails', async () => {
  await k.apply(tenantYaml(APPS, 'acme', [{ name: 'backend', scopes: ['send'] }]));
  await k.apply(templateYaml(APPS, 'welcome', 'acme'));
  await k.waitCondition(APPS, 'template', 'welcome', 'Ready', 'True');
  // Readiness also waits for the Secret cache and the operator's own check of Postgres, each on
  // its own clock: a Ready Template does not mean either has caught up yet.
  await eventually('/readyz to succeed', async () => (await readyz()).status === 200);

  await proxy.cut();
  const notReady = await eventually('/readyz to fail', async () => {
    const r = await readyz();
    return r.status === 503 ? r : undefined;
  });
  assert.match(notReady.body, /Postgres is unreachable/);
  assert.equal((await fetch(`${operator!.url}/healthz`)).status, 200, 'alive: a restart would not help');

  // Created during the outage: it gets a status all the same.
  await k.apply(tenantYaml(APPS, 'newcomer', [{ name: 'web', scopes: ['send'] }]));
  const newcomer = await k.waitCondition(APPS, 'tenant', 'newcomer', 'Ready', 'False', 'ReconcileFailed');
  const message = condition(newcomer, 'Ready')!.message;
  assert.match(message, /^Postgres is unreachable: /);
  assert.doesNotMatch(message, /[{}]/, 'words, not JSON');
  assert.equal(condition(newcomer, 'Ready')!.observedGeneration, 1);

  // Edited during the outage: Ready no longer claims the old generation is what runs.
  await k.patchSpec(APPS, 'template', 'welcome', { text: 'Hello again, <%= name %>' });
  const template = await k.waitCondition(APPS, 'template', 'welcome', 'Ready', 'False', 'ReconcileFailed');
  assert.equal(template.metadata.generation, 2);
  assert.equal(template.status!.observedGeneration, 2);
  assert.equal(condition(template, 'Ready')!.observedGeneration, 2);
  // What was last found stays, with the generation it was found for.
  assert.equal(condition(template, 'Compiled')!.observedGeneration, 1);
  assert.equal(template.status!.version, 1);

  const event = await k.waitEvent(APPS, 'welcome', 'ReconcileFailed');
  assert.equal(event.type, 'Warning');
  assert.match(event.message, /^Postgres is unreachable: /);
  const listed = await k.kubectl(['-n', APPS, 'get', 'tenants']);
  assert.match(listed, /newcomer\s+False\s+ReconcileFailed/);
});

test('when Postgres comes back, /readyz recovers and every object converges within seconds, not at the resync', async () => {
  const restored = Date.now();
  await proxy.restore();
  await eventually('/readyz to recover', async () => (await readyz()).status === 200);
  const tenant = await k.waitCondition(APPS, 'tenant', 'newcomer', 'Ready', 'True', undefined, 15_000);
  const template = await k.waitCondition(APPS, 'template', 'welcome', 'Ready', 'True', undefined, 15_000);
  const tookMs = Date.now() - restored;
  process.stdout.write(`# converged ${tookMs} ms after Postgres came back (resync 600 s)\n`);
  assert.ok(tookMs < 15_000);
  assert.equal(template.status!.version, 2);
  assert.equal(condition(template, 'Compiled')!.observedGeneration, 2);
  assert.deepEqual(tenant.status!.apiKeys, [{ name: 'web', secretName: 'newcomer-api-key-web' }]);
  const recovered = await k.waitEvent(APPS, 'welcome', 'VersionStored');
  assert.equal(recovered.type, 'Normal');
});
