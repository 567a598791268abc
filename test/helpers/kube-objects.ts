// Reading and waiting on Mailplane's objects through bin/kubectl, as a user would, for the tests
// of the operator that need more than operator.test.ts's own few helpers.
//
//   const k = kubeObjects(cp);
//   await k.apply(tenantYaml('apps', 'acme', [{ name: 'backend', scopes: ['send'] }]));
//   const tenant = await k.waitCondition('apps', 'tenant', 'acme', 'Ready', 'True');

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import type { ControlPlane } from './control-plane.js';
import { eventually } from './eventually.js';

export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface KubeObject {
  kind?: string;
  metadata: {
    name: string;
    namespace: string;
    resourceVersion: string;
    uid: string;
    generation?: number;
    finalizers?: string[];
    deletionTimestamp?: string;
    labels?: Record<string, string>;
  };
  spec: Record<string, unknown>;
  status?: {
    observedGeneration?: number;
    conditions?: Condition[];
    dnsRecords?: { type: string; name: string; value: string; purpose: string }[];
    apiKeys?: { name: string; secretName: string }[];
    selector?: string;
    algorithm?: string;
    version?: number;
  };
  data?: Record<string, string>;
}

export interface KubeEvent {
  type: string;
  reason: string;
  message: string;
  involvedObject: { kind: string; name: string };
}

export function condition(o: KubeObject | undefined, type: string): Condition | undefined {
  return o?.status?.conditions?.find((c) => c.type === type);
}

export function secretData(secret: KubeObject | undefined, key: string): string | undefined {
  const value = secret?.data?.[key];
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

export function kubeObjects(cp: ControlPlane) {
  async function kubectl(args: string[], input?: string): Promise<string> {
    const result = await cp.kubectl(args, input);
    assert.equal(result.code, 0, `kubectl ${args.join(' ')} failed:\n${result.stderr}`);
    return result.stdout;
  }

  async function getObject(namespace: string, kind: string, name: string): Promise<KubeObject | undefined> {
    const result = await cp.kubectl(['-n', namespace, 'get', kind, name, '-o', 'json']);
    if (result.code !== 0) {
      if (/NotFound/.test(result.stderr)) return undefined;
      throw new Error(result.stderr);
    }
    return JSON.parse(result.stdout) as KubeObject;
  }

  /** The Events recorded on the object of this name, oldest first. */
  async function events(namespace: string, name: string): Promise<KubeEvent[]> {
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
    ) as { items: KubeEvent[] };
    return list.items;
  }

  /** Waits for a condition of the current generation (observedGeneration caught up). */
  async function waitCondition(
    namespace: string,
    kind: string,
    name: string,
    type: string,
    status: string,
    reason?: string,
    timeoutMs = 30_000,
  ): Promise<KubeObject> {
    let last: KubeObject | undefined;
    return eventually(
      `${kind} ${namespace}/${name} ${type}=${status}${reason ? ` (${reason})` : ''}`,
      async () => {
        const o = (last = await getObject(namespace, kind, name));
        const c = condition(o, type);
        return c?.status === status &&
          (!reason || c.reason === reason) &&
          o?.status?.observedGeneration === o?.metadata.generation
          ? o
          : undefined;
      },
      timeoutMs,
      () => `last seen: ${JSON.stringify(last?.status?.conditions ?? last?.status ?? null)}`,
    );
  }

  /** Waits for a Warning or Normal Event of `reason` on the object, and returns it. */
  async function waitEvent(namespace: string, name: string, reason: string, timeoutMs = 30_000) {
    return eventually(
      `a ${reason} Event on ${namespace}/${name}`,
      async () => (await events(namespace, name)).find((e) => e.reason === reason),
      timeoutMs,
      async () => `events: ${JSON.stringify((await events(namespace, name)).map((e) => e.reason))}`,
    );
  }

  return {
    kubectl,
    apply: (yaml: string) => kubectl(['apply', '-f', '-'], yaml),
    getObject,
    events,
    waitCondition,
    waitEvent,
    async waitGone(namespace: string, kind: string, name: string, timeoutMs = 30_000) {
      await eventually(
        `${kind} ${namespace}/${name} to be gone`,
        async () => (await getObject(namespace, kind, name)) === undefined,
        timeoutMs,
      );
    },
    /** Merges `spec` into an object's spec, as `kubectl patch --type=merge` does. */
    async patchSpec(namespace: string, kind: string, name: string, spec: Record<string, unknown>) {
      await kubectl(['-n', namespace, 'patch', kind, name, '--type=merge', '-p', JSON.stringify({ spec })]);
    },
  };
}

export const tenantYaml = (
  namespace: string,
  name: string,
  keys: { name: string; scopes: string[] }[],
  extra: Record<string, unknown> = {},
) => `
apiVersion: mailplane.io/v1alpha1
kind: Tenant
metadata: { name: ${name}, namespace: ${namespace} }
spec: ${JSON.stringify({ apiKeys: keys, ...extra })}
`;

export const domainYaml = (
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

export const templateYaml = (
  namespace: string,
  name: string,
  tenant: string,
  extra: Record<string, unknown> = {},
) => `
apiVersion: mailplane.io/v1alpha1
kind: Template
metadata: { name: ${name}, namespace: ${namespace} }
spec: ${JSON.stringify({ tenantRef: { name: tenant }, subject: 'Hi <%= name %>', text: 'Hello <%= name %>', sampleData: { name: 'Ada' }, ...extra })}
`;

/** Waits for the CRDs of crds/ to be served. */
export async function installCrds(cp: ControlPlane): Promise<void> {
  const k = kubeObjects(cp);
  await k.kubectl(['apply', '-f', 'crds/']);
  await k.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
}

/**
 * A kubeconfig file (mode 0600, at the path it resolves with; the caller removes it) that acts as
 * a ServiceAccount, by a token the API server issues: to run a process with only what RBAC
 * grants that account.
 */
export async function serviceAccountKubeconfig(
  cp: ControlPlane,
  namespace: string,
  name: string,
): Promise<string> {
  const admin = parseYaml(readFileSync(cp.kubeconfig, 'utf8')) as {
    clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
  };
  const { server, 'certificate-authority-data': ca } = admin.clusters[0]!.cluster;
  const token = (await kubeObjects(cp).kubectl(['-n', namespace, 'create', 'token', name])).trim();
  const path = join(tmpdir(), `mailplane-${namespace}-${name}-${process.pid}.kubeconfig`);
  writeFileSync(
    path,
    toYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server, 'certificate-authority-data': ca } }],
      users: [{ name: 'sa', user: { token } }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'sa' } }],
      'current-context': 'c',
    }),
    { mode: 0o600 },
  );
  return path;
}
