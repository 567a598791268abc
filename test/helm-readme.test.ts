// The README's Helm section run as written, word for word, by bash, on fresh kube-apiservers:
// once as the first thing done to the cluster (operator.secretNamespaces names `apps`, which does
// not exist yet), once after the README's own `kubectl apply -f crds/`. Then the operator, run
// with its Deployment's environment and its ServiceAccount's token, so that the chart's RBAC is
// all it has: the examples become Ready, the README's next commands read the key, a Tenant
// outside secretNamespaces gets no finalizer, and a cleanup RBAC forbids is said, not hung on.

import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify as toYaml } from 'yaml';
import { run, startControlPlane, type CommandResult, type ControlPlane } from './helpers/control-plane.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { eventually } from './helpers/eventually.js';
import {
  condition,
  domainYaml,
  kubeObjects,
  serviceAccountKubeconfig,
  tenantYaml,
} from './helpers/kube-objects.js';
import { startOperatorProcess, type OperatorProcess } from './helpers/operator.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The first ```sh block under a README heading. */
function shellBlock(heading: string): string {
  const section = README.slice(README.indexOf(`\n## ${heading}\n`));
  assert.ok(section.length < README.length, `README has no section "${heading}"`);
  const match = /```sh\n([\s\S]*?)```/.exec(section);
  assert.ok(match, `no sh block under "${heading}"`);
  return match[1]!;
}

const HELM_BLOCK = shellBlock('Install on a cluster with Helm');
/** Steps 1 and 2 of the Helm block: what needs no pod running. */
const INSTALL_STEPS = HELM_BLOCK.slice(0, HELM_BLOCK.indexOf('\n# 3.'));
/** Steps 3 and 4 up to the key: what needs the operator, not the cluster's network. */
const KEY_STEPS = HELM_BLOCK.slice(HELM_BLOCK.indexOf('\n# 3.'), HELM_BLOCK.indexOf('\ncurl '));
/** `kubectl apply -f crds/` as the operator section shows it (a transcript: `$ ` before each command). */
const APPLY_CRDS = shellBlock('Run the operator on Kubernetes')
  .split('\n')
  .find((l) => l.startsWith('$ ') && l.includes('apply -f crds/'))!
  .slice(2);

/** Runs README lines with bash -e, bin/ first on PATH, against the control plane. */
async function bash(cp: ControlPlane, script: string): Promise<CommandResult> {
  return run('bash', ['-euo', 'pipefail', '-c', script], {
    env: { ...process.env, PATH: `${ROOT}bin:${process.env.PATH}`, KUBECONFIG: cp.kubeconfig },
  });
}

let fresh: ControlPlane;
let preApplied: ControlPlane;
let testDb: TestDatabase;
let dns: DnsServer;
let operator: OperatorProcess | undefined;
let tokenConfig: string | undefined;

before(async () => {
  [fresh, preApplied, testDb, dns] = await Promise.all([
    startControlPlane(),
    startControlPlane(),
    createTestDatabase(),
    startDnsServer(),
  ]);
});

after(async () => {
  await operator?.stop();
  if (tokenConfig) rmSync(tokenConfig, { force: true });
  await Promise.all([fresh?.stop(), preApplied?.stop(), testDb?.drop(), dns?.close()]);
});

test("the README's helm install and first kubectl apply work as written on a fresh API server, where namespace apps does not exist yet", async () => {
  assert.match(INSTALL_STEPS, /--set operator\.secretNamespaces='\{apps\}'/);
  const k = kubeObjects(fresh);
  assert.notEqual((await fresh.kubectl(['get', 'namespace', 'apps'])).code, 0, 'apps does not exist yet');
  const result = await bash(fresh, INSTALL_STEPS);
  assert.equal(result.code, 0, `the README's commands failed:\n${result.stderr}\n${result.stdout}`);
  assert.match(result.stdout, /mailplane-smtp\s+LoadBalancer/);
  assert.match(result.stdout, /tenant\.mailplane\.io\/acme/);
  assert.match(result.stdout, /sendingdomain\.mailplane\.io\/example-com/);
  // The Ingress host is all it takes for one-click unsubscribe links: no second setting, no warning.
  assert.match(result.stdout, /served at https:\/\/mail\.example\.com\/u\//);
  assert.doesNotMatch(result.stdout, /WARNING: no public URL/);
  // The namespace the chart made is kept on uninstall: it holds the applications' objects.
  const apps = JSON.parse(await k.kubectl(['get', 'namespace', 'apps', '-o', 'json'])) as {
    metadata: { annotations?: Record<string, string> };
  };
  assert.equal(apps.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
  // An upgrade leaves it in place.
  const upgrade = await bash(
    fresh,
    INSTALL_STEPS.replace('helm install', 'helm upgrade').split('\n# 2.')[0]!,
  );
  assert.equal(upgrade.code, 0, upgrade.stderr);
  await k.kubectl(['get', 'namespace', 'apps']);
});

test("after the README's `kubectl apply -f crds/`, the same helm install works and leaves those CRDs to kubectl", async () => {
  assert.equal(APPLY_CRDS.replace(/\s+#.*$/, ''), 'kubectl apply -f crds/');
  const applied = await bash(preApplied, APPLY_CRDS);
  assert.equal(applied.code, 0, applied.stderr);
  const result = await bash(preApplied, INSTALL_STEPS);
  assert.equal(
    result.code,
    0,
    `the README's commands failed after kubectl apply -f crds/:\n${result.stderr}`,
  );
  assert.match(result.stdout, /tenant\.mailplane\.io\/acme/);
  // The release notes say which CRDs it left alone, and how to update them.
  assert.match(result.stdout, /CRD tenants\.mailplane\.io was there before this release/);
  const crd = JSON.parse(
    await kubeObjects(preApplied).kubectl(['get', 'crd', 'tenants.mailplane.io', '-o', 'json']),
  ) as { metadata: { labels?: Record<string, string>; annotations?: Record<string, string> } };
  assert.equal(crd.metadata.annotations?.['meta.helm.sh/release-name'], undefined, 'not taken over');
  const manifest = await run(`${ROOT}bin/helm`, ['get', 'manifest', 'mailplane', '-n', 'mailplane'], {
    env: { ...process.env, KUBECONFIG: preApplied.kubeconfig },
  });
  assert.doesNotMatch(manifest.stdout, /kind: CustomResourceDefinition/);
});

/** The environment the kubelet would give the operator's container, from the release's manifest. */
async function operatorEnvironment(cp: ControlPlane): Promise<Record<string, string>> {
  const k = kubeObjects(cp);
  const manifest = await run(`${ROOT}bin/helm`, ['get', 'manifest', 'mailplane', '-n', 'mailplane'], {
    env: { ...process.env, KUBECONFIG: cp.kubeconfig },
  });
  const deployment = parseAllDocuments(manifest.stdout)
    .map((d) => d.toJS() as { kind?: string; metadata?: { name: string }; spec?: Record<string, never> })
    .find((o) => o?.kind === 'Deployment' && o.metadata?.name === 'mailplane-operator')!;
  const container = (
    deployment.spec as unknown as {
      template: { spec: { containers: { env: { name: string; value?: string; valueFrom?: never }[] }[] } };
    }
  ).template.spec.containers[0]!;
  const env: Record<string, string> = {};
  for (const v of container.env) {
    const from = v.valueFrom as
      { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } } | undefined;
    if (v.value !== undefined) env[v.name] = String(v.value);
    else if (from?.secretKeyRef) {
      const secret = await k.getObject('mailplane', 'secret', from.secretKeyRef.name);
      env[v.name] = Buffer.from(secret!.data![from.secretKeyRef.key]!, 'base64').toString('utf8');
    } else if (from?.fieldRef?.fieldPath === 'metadata.namespace') env[v.name] = 'mailplane';
    else if (from?.fieldRef?.fieldPath === 'metadata.name') env[v.name] = 'mailplane-operator-readme';
  }
  return env;
}

test("the operator, with its Deployment's environment and its ServiceAccount's token, makes the examples Ready and the README's next commands read the key", async () => {
  const k = kubeObjects(fresh);
  tokenConfig = await serviceAccountKubeconfig(fresh, 'mailplane', 'mailplane-operator');
  const env = await operatorEnvironment(fresh);
  assert.equal(env.MAILPLANE_SECRET_NAMESPACES, 'apps');
  assert.equal(env.MAILPLANE_LEASE_NAME, 'mailplane-operator');
  // A namespace the chart's RBAC does not cover, but the operator is told it may use: a
  // misconfiguration the operator must survive without hanging a deletion.
  await k.kubectl(['create', 'namespace', 'locked']);
  await k.kubectl(
    ['apply', '-f', '-'],
    toYaml({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'secrets-but-no-delete', namespace: 'locked' },
      rules: [
        { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch', 'create', 'patch'] },
      ],
    }) +
      '---\n' +
      toYaml({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'secrets-but-no-delete', namespace: 'locked' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'secrets-but-no-delete' },
        subjects: [{ kind: 'ServiceAccount', name: 'mailplane-operator', namespace: 'mailplane' }],
      }),
  );
  operator = await startOperatorProcess({
    ...env,
    // The Deployment's probe port is the pod's own; on a shared machine, any free one.
    PORT: '0',
    // The README's URL is a placeholder; the test's Postgres stands in for it.
    DATABASE_URL: testDb.url,
    KUBECONFIG: tokenConfig,
    MAILPLANE_DNS_SERVERS: dns.address,
    MAILPLANE_SECRET_NAMESPACES: 'apps,locked',
    MAILPLANE_RESYNC_SECONDS: '2',
  });
  for (const [kind, name] of [
    ['tenant', 'acme'],
    ['sendingdomain', 'example-com'],
    ['template', 'welcome'],
  ] as const) {
    await k.waitCondition('apps', kind, name, 'Ready', 'True');
  }
  const steps = await bash(fresh, `${KEY_STEPS}\necho "key: $KEY"`);
  assert.equal(steps.code, 0, steps.stderr);
  assert.match(steps.stdout, /^TXT\tmailplane\._domainkey\.example\.com\tv=DKIM1; k=rsa; p=/m);
  assert.match(steps.stdout, /^key: mp_live_\S{40,}$/m);
  const refusals = operator.logs.filter((l) => /forbidden/i.test(JSON.stringify(l)));
  assert.deepEqual(refusals, [], 'the chart grants what the operator does');
});

test("with the chart's RBAC, a Tenant outside secretNamespaces gets no finalizer, says why, and deletes at once", async () => {
  const k = kubeObjects(fresh);
  await k.kubectl(['create', 'namespace', 'stray']);
  await k.apply(tenantYaml('stray', 'stray', [{ name: 'backend', scopes: ['send'] }]));
  const refused = await k.waitCondition('stray', 'tenant', 'stray', 'Ready', 'False', 'NamespaceNotAllowed');
  assert.match(condition(refused, 'Ready')!.message, /operator\.secretNamespaces lists apps, locked/);
  assert.equal(refused.metadata.finalizers, undefined);
  const event = await k.waitEvent('stray', 'stray', 'NamespaceNotAllowed');
  assert.equal(event.type, 'Warning');
  await k.kubectl(['-n', 'stray', 'delete', 'tenant', 'stray', '--wait=true', '--timeout=10s']);
});

test('a cleanup RBAC forbids is said in a condition and an Event, and the deletion finishes once it is allowed', async () => {
  const k = kubeObjects(fresh);
  await k.apply(tenantYaml('locked', 'locked', [{ name: 'backend', scopes: ['send'] }]));
  await k.apply(
    domainYaml('locked', 'locked-domain', 'locked', 'locked.example', { deletionPolicy: 'Delete' }),
  );
  await k.waitCondition('locked', 'sendingdomain', 'locked-domain', 'Ready', 'True');

  await k.kubectl(['-n', 'locked', 'delete', 'sendingdomain', 'locked-domain', '--wait=false']);
  const stuck = await k.waitCondition(
    'locked',
    'sendingdomain',
    'locked-domain',
    'Ready',
    'False',
    'CleanupForbidden',
  );
  const message = condition(stuck, 'Ready')!.message;
  assert.match(message, /could not delete Secret locked\/locked-domain-dkim: .*forbidden/);
  assert.match(message, /grant the operator delete on Secrets in locked/);
  assert.doesNotMatch(message, /[{}]/, 'words, not JSON');
  const event = await k.waitEvent('locked', 'locked-domain', 'CleanupForbidden');
  assert.equal(event.type, 'Warning');

  await k.kubectl([
    '-n',
    'locked',
    'patch',
    'role',
    'secrets-but-no-delete',
    '--type=json',
    '-p',
    JSON.stringify([{ op: 'add', path: '/rules/0/verbs/-', value: 'delete' }]),
  ]);
  await k.waitGone('locked', 'sendingdomain', 'locked-domain');
  assert.equal(await k.getObject('locked', 'secret', 'locked-domain-dkim'), undefined);

  // A Tenant's key Secrets are owned by it: one RBAC will not let go is left to the garbage
  // collector, after its key is revoked, and the deletion does not wait.
  await k.kubectl([
    '-n',
    'locked',
    'patch',
    'role',
    'secrets-but-no-delete',
    '--type=json',
    '-p',
    JSON.stringify([{ op: 'remove', path: '/rules/0/verbs/5' }]),
  ]);
  await eventually('RBAC to forbid delete again', async () => {
    const can = await fresh.kubectl([
      'auth',
      'can-i',
      'delete',
      'secrets',
      '-n',
      'locked',
      '--as=system:serviceaccount:mailplane:mailplane-operator',
    ]);
    return can.stdout.trim() === 'no';
  });
  await k.kubectl(['-n', 'locked', 'delete', 'tenant', 'locked', '--wait=true', '--timeout=30s']);
  const cleanup = await k.waitEvent('locked', 'locked', 'CleanupForbidden');
  assert.match(cleanup.message, /what it holds is revoked .* and the garbage collector deletes it/);
});
