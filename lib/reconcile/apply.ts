// Applies a set of resources in dependency order (tenants, then domains, then templates), the
// way `mailplane apply -f` and `mailplane dev` do without a cluster.

import type { Db } from '../db/index.js';
import type { Renderer } from '../render/sandbox.js';
import type { Resource } from '../resources.js';
import { reconcileDomain } from './domain.js';
import { ReconcileError } from './errors.js';
import type { KeyStore } from './key-store.js';
import { reconcileTemplate } from './template.js';
import { reconcileTenant } from './tenant.js';
import { describeRefusedWebhook } from './tenant-webhooks.js';

export interface ApplyDeps {
  db: Db;
  keys: KeyStore;
  secretKey: Buffer;
  renderer: Pick<Renderer, 'compile' | 'render'>;
  /** MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: a Tenant's webhooks may be plain http and private addresses. */
  webhooksAllowPrivate?: boolean;
}

const ORDER: Record<Resource['kind'], number> = { Tenant: 0, SendingDomain: 1, Template: 2 };

/** What applying one resource did, as `mailplane apply -o json` prints it. */
export interface ApplyResult {
  kind: Resource['kind'];
  namespace: string;
  name: string;
  outcome: 'configured' | 'unchanged';
  /** What else happened, in words: "key backend issued", "DKIM key generated", "version 2". */
  details: string[];
}

/**
 * Applies resources in dependency order and yields what became of each as it is done; a resource
 * that cannot be applied throws, after those before it were applied.
 *
 *   for await (const result of applyEach(deps, resources)) console.log(describeResult(result));
 */
export async function* applyEach(deps: ApplyDeps, resources: Resource[]): AsyncGenerator<ApplyResult> {
  const sorted = [...resources].sort((a, b) => ORDER[a.kind] - ORDER[b.kind]);
  for (const resource of sorted) {
    const { kind, metadata } = resource;
    const result = (changed: boolean, details: string[]): ApplyResult => ({
      kind,
      namespace: metadata.namespace,
      name: metadata.name,
      outcome: changed ? 'configured' : 'unchanged',
      details,
    });
    switch (resource.kind) {
      case 'Tenant': {
        const out = await reconcileTenant(deps, resource);
        // Like a refused DKIM key: what could be applied is, and the command says what was not.
        if (out.webhooks.refused.length > 0) {
          throw new ReconcileError(
            'WebhookURLRefused',
            `tenant/${metadata.name}: ${out.webhooks.refused.map(describeRefusedWebhook).join('; ')}`,
          );
        }
        const hooks = out.webhooks;
        yield result(out.changed, [
          ...(out.restored ? ['deleted earlier: its history and suppressions taken back'] : []),
          ...out.keysIssued.map((k) => `key ${k} issued`),
          ...out.keysReissued.map((k) => `key ${k} issued again`),
          ...out.keysRevoked.map((k) => `key ${k} revoked`),
          ...hooks.registered.map((w) => `webhook ${w} registered`),
          ...hooks.updated.map((w) => `webhook ${w} updated`),
          ...hooks.enabled.map((w) => `webhook ${w} enabled`),
          ...hooks.disabled.map((w) => `webhook ${w} disabled`),
          ...hooks.removed.map((w) => `webhook ${w} removed`),
        ]);
        break;
      }
      case 'SendingDomain': {
        const out = await reconcileDomain(deps, resource);
        if (out.keyChangeRefused) {
          throw new ReconcileError(
            'KeyChangeRefused',
            `sendingdomain/${metadata.name}: ${out.keyChangeRefused}`,
          );
        }
        yield result(out.changed, out.keyGenerated ? ['DKIM key generated'] : []);
        break;
      }
      case 'Template': {
        const out = await reconcileTemplate(deps, resource);
        yield result(out.changed, out.changed ? [`version ${out.version}`] : []);
        break;
      }
    }
  }
}

/**
 * The line kubectl would print: `tenant/acme configured (key backend issued)`.
 *
 *   describeResult(result); // "template/welcome configured (version 2)"
 */
export function describeResult(result: ApplyResult): string {
  const details = result.details.length ? ` (${result.details.join(', ')})` : '';
  return `${result.kind.toLowerCase()}/${result.name} ${result.outcome}${details}`;
}

/**
 * Applies resources and returns one line per resource saying what happened.
 *
 *   for (const line of await applyResources(deps, resources)) console.log(line);
 */
export async function applyResources(deps: ApplyDeps, resources: Resource[]): Promise<string[]> {
  const lines: string[] = [];
  for await (const result of applyEach(deps, resources)) lines.push(describeResult(result));
  return lines;
}
