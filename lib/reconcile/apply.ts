// Applies a set of resources in dependency order (tenants, then domains, then templates), the
// way `mailplane apply -f` and `mailplane dev` do without a cluster.

import type { Db } from '../db/index.js';
import type { Renderer } from '../render/sandbox.js';
import type { Resource } from '../resources.js';
import { reconcileDomain } from './domain.js';
import type { KeyStore } from './key-store.js';
import { reconcileTemplate } from './template.js';
import { reconcileTenant } from './tenant.js';

export interface ApplyDeps {
  db: Db;
  keys: KeyStore;
  secretKey: Buffer;
  renderer: Pick<Renderer, 'compile' | 'render'>;
}

const ORDER: Record<Resource['kind'], number> = { Tenant: 0, SendingDomain: 1, Template: 2 };

/**
 * Applies resources and returns one line per resource saying what happened.
 *
 *   for (const line of await applyResources(deps, resources)) console.log(line);
 */
export async function applyResources(deps: ApplyDeps, resources: Resource[]): Promise<string[]> {
  const lines: string[] = [];
  const sorted = [...resources].sort((a, b) => ORDER[a.kind] - ORDER[b.kind]);
  for (const resource of sorted) {
    const id = `${resource.kind.toLowerCase()}/${resource.metadata.name}`;
    switch (resource.kind) {
      case 'Tenant': {
        const out = await reconcileTenant(deps, resource);
        const notes = [
          ...out.keysIssued.map((k) => `key ${k} issued`),
          ...out.keysRevoked.map((k) => `key ${k} revoked`),
        ];
        lines.push(
          `${id} ${out.changed ? 'configured' : 'unchanged'}${notes.length ? ` (${notes.join(', ')})` : ''}`,
        );
        break;
      }
      case 'SendingDomain': {
        const out = await reconcileDomain(deps, resource);
        lines.push(
          `${id} ${out.changed ? 'configured' : 'unchanged'}${out.keyGenerated ? ' (DKIM key generated)' : ''}`,
        );
        break;
      }
      case 'Template': {
        const out = await reconcileTemplate(deps, resource);
        lines.push(`${id} ${out.changed ? `configured (version ${out.version})` : 'unchanged'}`);
        break;
      }
    }
  }
  return lines;
}
