// The operator judges only from caches that have listed, on a real kube-apiserver. Run as a
// ServiceAccount that may read Templates one by one but not list them, its Template cache cannot
// sync, and the leader reconciles nothing (no status, no Secret) while /readyz says why. Granted
// the list, everything converges, with no resync to wait for. Its Secret cache (which only heals
// edited Secrets) may not list either: that does not stop reconciling, only readiness.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startControlPlane, type ControlPlane } from './helpers/control-plane.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { eventually } from './helpers/eventually.js';
import { installCrds, kubeObjects, serviceAccountKubeconfig, tenantYaml } from './helpers/kube-objects.js';
import { startOperatorProcess, type OperatorProcess } from './helpers/operator.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const RUN = randomBytes(3).toString('hex');
const APPS = `apps-${RUN}`;
const ACCOUNT = 'limited-operator';

let cp: ControlPlane;
let k: ReturnType<typeof kubeObjects>;
let testDb: TestDatabase;
let dns: DnsServer;
let kubeconfig: string | undefined;
let operator: OperatorProcess | undefined;

/** The chart's grants, but Templates and Secrets only as far as `templateVerbs` and `secretVerbs`. */
const rbac = (templateVerbs: string[], secretVerbs: string[]) => `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: ${APPS}-operator }
rules:
  - { apiGroups: [mailplane.io], resources: [tenants, sendingdomains], verbs: [get, list, watch, patch] }
  - { apiGroups: [mailplane.io], resources: [templates], verbs: ${JSON.stringify(templateVerbs)} }
  - { apiGroups: [mailplane.io], resources: [tenants/status, sendingdomains/status, templates/status], verbs: [patch] }
  - { apiGroups: [''], resources: [events], verbs: [create] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: ${APPS}-operator }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ${APPS}-operator }
subjects: [{ kind: ServiceAccount, name: ${ACCOUNT}, namespace: ${APPS} }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: operator, namespace: ${APPS} }
rules:
  - { apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update] }
  - { apiGroups: [''], resources: [secrets], verbs: ${JSON.stringify(secretVerbs)} }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: operator, namespace: ${APPS} }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: operator }
subjects: [{ kind: ServiceAccount, name: ${ACCOUNT}, namespace: ${APPS} }]
`;

before(async () => {
  [cp, testDb, dns] = await Promise.all([startControlPlane(), createTestDatabase(), startDnsServer()]);
  k = kubeObjects(cp);
  await installCrds(cp);
  await k.kubectl(['create', 'namespace', APPS]);
  await k.kubectl(['-n', APPS, 'create', 'serviceaccount', ACCOUNT]);
  await k.apply(rbac(['get', 'patch'], ['get', 'create', 'patch', 'delete']));
  kubeconfig = await serviceAccountKubeconfig(cp, APPS, ACCOUNT);
});

after(async () => {
  await operator?.stop();
  if (kubeconfig) rmSync(kubeconfig, { force: true });
  await Promise.all([cp?.stop(), testDb?.drop(), dns?.close()]);
});

test('a leader whose Template cache cannot list reconciles nothing and says so on /readyz; once it lists, everything converges, a refused Secret list notwithstanding', async () => {
  await k.apply(tenantYaml(APPS, 'acme', [{ name: 'backend', scopes: ['send'] }]));
  operator = await startOperatorProcess({
    KUBECONFIG: kubeconfig!,
    DATABASE_URL: testDb.url,
    MAILPLANE_SECRET_KEY: 'operator-cache-sync-secret-key-of-32-characters',
    MAILPLANE_OPERATOR_NAMESPACE: APPS,
    MAILPLANE_SECRET_NAMESPACES: APPS,
    MAILPLANE_LEASE_DURATION_SECONDS: '4',
    // Ten minutes: convergence must come from the cache syncing, not from a resync.
    MAILPLANE_RESYNC_SECONDS: '600',
    MAILPLANE_DNS_SERVERS: dns.address,
  });
  const logged = (what: (l: Record<string, unknown>) => boolean) => operator!.logs.some(what);
  const refused = (controller: string) =>
    logged((l) => l.msg === 'watch failed; restarting the informer' && l.controller === controller);
  const readyz = async () => {
    const res = await fetch(`${operator!.url}/readyz`);
    return { status: res.status, body: await res.text() };
  };
  await eventually(
    'the operator to lead with its Tenant cache synced and its Template list refused',
    async () =>
      logged((l) => l.msg === 'became leader') &&
      logged((l) => l.msg === 'cache synced' && l.controller === 'Tenant') &&
      refused('Template'),
  );
  const notReady = await readyz();
  assert.equal(notReady.status, 503);
  assert.match(notReady.body, /caches not synced/);
  // Leading, with the Tenant in its cache: a reconcile would have written the key Secret and a
  // status by now (it takes milliseconds once Postgres and the API server answer).
  await sleep(1_500);
  const waiting = await k.getObject(APPS, 'tenant', 'acme');
  assert.equal(
    waiting?.status,
    undefined,
    `reconciled from half a cache: ${JSON.stringify(waiting?.status)}`,
  );
  assert.equal(await k.getObject(APPS, 'secret', 'acme-api-key-backend'), undefined);

  // Templates listed, Secrets still not: every reconcile runs; only the healing of Secrets waits.
  await k.apply(rbac(['get', 'list', 'watch', 'patch'], ['get', 'create', 'patch', 'delete']));
  const tenant = await k.waitCondition(APPS, 'tenant', 'acme', 'Ready', 'True');
  assert.deepEqual(tenant.status!.apiKeys, [{ name: 'backend', secretName: 'acme-api-key-backend' }]);
  assert.ok(await k.getObject(APPS, 'secret', 'acme-api-key-backend'), 'the key Secret');
  assert.ok(refused('Secret'), 'the Secret list was refused');
  assert.match((await readyz()).body, /caches not synced/);

  await k.apply(
    rbac(['get', 'list', 'watch', 'patch'], ['get', 'list', 'watch', 'create', 'patch', 'delete']),
  );
  // The Secret informer's retry has backed off meanwhile, to 16 s or 30 s at most.
  await eventually('/readyz to succeed', async () => (await readyz()).status === 200, 45_000);
});
