// Tenant → its row and its API keys: one Secret per entry of spec.apiKeys (the key and its
// scopes), only hashes in Postgres, and a key whose entry is removed revoked. A key Secret that
// is deleted or edited is seen by the Secret watch within seconds: Postgres holds only the old
// key's hash, so it cannot come back; it is revoked and a new key issued, with a Warning Event.
//
// Deleting a Tenant waits, as a namespace waits for its contents, while SendingDomains or
// Templates name it. Then its keys are revoked at once and its history (emails, messages,
// events) and suppressions kept (spec.deletionPolicy Retain, the default: a Tenant created
// again under the name takes them back) or deleted (Delete).
//
// RBAC:
//   mailplane.io   tenants             get list watch patch
//   mailplane.io   tenants/status      patch
//   ""             secrets             get list watch create patch delete
//   ""             events              create

import type { Db } from '../../lib/db/index.js';
import {
  reconcileTenant,
  retireTenant,
  type DeletionPolicy,
  type RetainedCounts,
} from '../../lib/reconcile/tenant.js';
import type { TenantResource } from '../../lib/resources.js';
import { isStatus, type CustomObject, type Kube } from '../kube.js';
import type { EventNote, FinalizeResult, ReconcileResult, Reconciler } from '../reconcile-types.js';
import { apiKeySecretName, secretKeyStore } from '../secret-key-store.js';
import { DEPENDENCY_RETRY_MS, asResource } from './shared.js';

/** Dependents named in a DeletionBlocked message; the rest are counted. */
const NAMED_DEPENDENTS = 5;

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

export function tenantReconciler(deps: { db: Db; kube: Kube }): Reconciler {
  const { db, kube } = deps;
  return {
    kind: 'Tenant',
    plural: 'tenants',
    keepsSecrets: true,

    async reconcile(object: CustomObject): Promise<ReconcileResult> {
      const { resource, invalid } = asResource<TenantResource>(object);
      if (!resource) return { conditions: invalid };
      const outcome = await reconcileTenant({ db, keys: secretKeyStore(kube, object) }, resource);
      const keys = resource.spec.apiKeys ?? [];
      const secretOf = (name: string) => apiKeySecretName(resource.metadata.name, name);
      const events: EventNote[] = [
        ...(outcome.restored
          ? [
              {
                type: 'Normal' as const,
                reason: 'TenantRestored',
                message: `took back what the Tenant of this name kept when it was deleted: ${retained(outcome.restored)}`,
              },
            ]
          : []),
        ...outcome.keysIssued.map((name) => ({
          type: 'Normal' as const,
          reason: 'KeyIssued',
          message: `API key ${name} issued into Secret ${secretOf(name)}`,
        })),
        ...outcome.keysReissued.map((name) => ({
          type: 'Warning' as const,
          reason: 'KeyReissued',
          message:
            `Secret ${secretOf(name)} was deleted or no longer held API key ${name}; Postgres keeps only ` +
            'the hash of a key, so it cannot be restored: the old key is revoked and a new one is in ' +
            'the Secret. Give it to whatever used the old one.',
        })),
        ...outcome.scopesRestored.map((name) => ({
          type: 'Normal' as const,
          reason: 'ScopesRestored',
          message: `the scopes of API key ${name} in Secret ${secretOf(name)} were edited; written back from spec.apiKeys`,
        })),
        ...outcome.keysRevoked.map((name) => ({
          type: 'Normal' as const,
          reason: 'KeyRevoked',
          message: `API key ${name} revoked and its Secret deleted`,
        })),
      ];
      return {
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'KeysIssued',
            message: `${plural(keys.length, 'API key')} in Secrets`,
          },
        ],
        status: {
          apiKeys: keys.map((k) => ({ name: k.name, secretName: secretOf(k.name) })),
        },
        events,
      };
    },

    async finalize(object, context): Promise<FinalizeResult> {
      const { namespace, name } = object.metadata;
      const dependents = context.dependents(namespace, name);
      if (dependents.length > 0) {
        const named = dependents.slice(0, NAMED_DEPENDENTS).map((o) => `${o.kind} ${o.metadata.name}`);
        const more = dependents.length - named.length;
        return {
          done: false,
          conditions: [
            {
              type: 'Ready',
              status: 'False',
              reason: 'DeletionBlocked',
              message:
                `deletion waits for ${named.join(', ')}${more > 0 ? ` and ${more} more` : ''}, which ` +
                'name this Tenant: delete them first (its API keys work until then)',
            },
          ],
          // Their deletion enqueues this Tenant; the retry is for a missed event.
          requeueAfterMs: DEPENDENCY_RETRY_MS,
        };
      }

      const spec = (object.spec ?? {}) as TenantResource['spec'] & { deletionPolicy?: DeletionPolicy };
      const policy = spec.deletionPolicy ?? 'Retain';
      const retired = await retireTenant(db, namespace, name, policy);
      const events: EventNote[] = [];
      if (retired.found) {
        events.push({
          type: 'Normal',
          reason: policy === 'Retain' ? 'TenantRetained' : 'TenantDeleted',
          message:
            `${plural(retired.keysRevoked, 'API key')} revoked; ` +
            (policy === 'Retain'
              ? `kept ${retained(retired.rows)} (deletionPolicy Retain): a Tenant created again as ${name} takes them back`
              : `deleted ${retained(retired.rows)} (deletionPolicy Delete)`),
        });
      }

      // The keys are revoked: their Secrets are useless now. Each is owned by the Tenant, so the
      // garbage collector takes one the operator may not delete; no reason to hold the deletion.
      const status = (object.status ?? {}) as { apiKeys?: { secretName: string }[] };
      const secrets = new Set([
        ...(spec.apiKeys ?? []).map((k) => apiKeySecretName(name, k.name)),
        ...(status.apiKeys ?? []).map((k) => k.secretName),
      ]);
      if (context.maySecrets(namespace)) {
        for (const secret of secrets) {
          try {
            await kube.deleteSecret(namespace, secret);
          } catch (err) {
            if (!isStatus(err, 403)) throw err;
            events.push({
              type: 'Warning',
              reason: 'CleanupForbidden',
              message: `${(err as Error).message}; the key in it is revoked, and the garbage collector deletes it with this Tenant`,
            });
          }
        }
      }
      return { done: true, events };
    },
  };
}

function retained(rows: RetainedCounts): string {
  return (
    `${plural(rows.emails, 'email')} (${plural(rows.messages, 'message')}, ` +
    `${plural(rows.events, 'event')}) and ${plural(rows.suppressions, 'suppression')}`
  );
}
