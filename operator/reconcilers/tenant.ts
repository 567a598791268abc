// Tenant → its row and its API keys: one Secret per entry of spec.apiKeys (the key and its
// scopes), only hashes in Postgres, and a key whose entry is removed revoked.
//
// RBAC:
//   mailplane.io   tenants             get list watch patch
//   mailplane.io   tenants/status      patch
//   ""             secrets             get create patch delete
//   ""             events              create

import type { Db } from '../../lib/db/index.js';
import { deleteTenant, reconcileTenant } from '../../lib/reconcile/tenant.js';
import type { TenantResource } from '../../lib/resources.js';
import type { CustomObject, Kube } from '../kube.js';
import type { ReconcileResult, Reconciler } from '../reconcile-types.js';
import { apiKeySecretName, secretKeyStore } from '../secret-key-store.js';
import { asResource } from './shared.js';

export function tenantReconciler(deps: { db: Db; kube: Kube }): Reconciler {
  const { db, kube } = deps;
  return {
    kind: 'Tenant',
    plural: 'tenants',

    async reconcile(object: CustomObject): Promise<ReconcileResult> {
      const { resource, invalid } = asResource<TenantResource>(object);
      if (!resource) return { conditions: invalid };
      const outcome = await reconcileTenant({ db, keys: secretKeyStore(kube, object) }, resource);
      const keys = resource.spec.apiKeys ?? [];
      return {
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'KeysIssued',
            message: `${keys.length} API key${keys.length === 1 ? '' : 's'} in Secrets`,
          },
        ],
        status: {
          apiKeys: keys.map((k) => ({
            name: k.name,
            secretName: apiKeySecretName(resource.metadata.name, k.name),
          })),
        },
        events: [
          ...outcome.keysIssued.map((name) => ({
            type: 'Normal' as const,
            reason: 'KeyIssued',
            message: `API key ${name} issued into Secret ${apiKeySecretName(resource.metadata.name, name)}`,
          })),
          ...outcome.keysRevoked.map((name) => ({
            type: 'Normal' as const,
            reason: 'KeyRevoked',
            message: `API key ${name} revoked and its Secret deleted`,
          })),
        ],
      };
    },

    async finalize(object: CustomObject): Promise<void> {
      const { namespace, name } = object.metadata;
      // Keys, domains, templates and messages go with the row; the key Secrets are then useless.
      await deleteTenant(db, namespace, name);
      const spec = (object.spec ?? {}) as TenantResource['spec'];
      const status = (object.status ?? {}) as { apiKeys?: { secretName: string }[] };
      const secrets = new Set([
        ...(spec.apiKeys ?? []).map((k) => apiKeySecretName(name, k.name)),
        ...(status.apiKeys ?? []).map((k) => k.secretName),
      ]);
      for (const secret of secrets) await kube.deleteSecret(namespace, secret);
    },
  };
}
