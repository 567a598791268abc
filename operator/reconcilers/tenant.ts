// Tenant → its row, its API keys and its webhooks: one Secret per entry of spec.apiKeys (the key
// and its scopes), only hashes in Postgres, and a key whose entry is removed revoked. A key Secret
// that is deleted or edited is seen by the Secret watch within seconds: Postgres holds only the old
// key's hash, so it cannot come back; it is revoked and a new key issued, with a Warning Event.
//
// One endpoint (source 'tenant', read-only through the API) per entry of spec.webhooks, and one
// Secret <tenant>-webhook-<name> with its signing secret and URL. The secret is kept encrypted in
// the row, so a webhook Secret deleted or edited is written back with the same secret. A URL the
// installation refuses is named in the WebhooksRegistered condition (and Ready) and not taken.
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
import {
  DISABLED_IN_TENANT,
  describeRefusedWebhook,
  type WebhooksOutcome,
} from '../../lib/reconcile/tenant-webhooks.js';
import type { ConditionInput } from '../conditions.js';
import { isStatus, type CustomObject, type Kube } from '../kube.js';
import type { EventNote, FinalizeResult, ReconcileResult, Reconciler } from '../reconcile-types.js';
import { apiKeySecretName, secretKeyStore, webhookSecretName } from '../secret-key-store.js';
import { DEPENDENCY_RETRY_MS, asResource } from './shared.js';

/** Dependents named in a DeletionBlocked message; the rest are counted. */
const NAMED_DEPENDENTS = 5;

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** What a status says beside the reason of an endpoint the sender disabled. */
const ENABLE_AGAIN =
  're-applying the same spec does not enable it again: change its url, or set enabled: false and then true';

export function tenantReconciler(deps: {
  db: Db;
  kube: Kube;
  /** Encrypts webhook signing secrets in Postgres. */
  secretKey: Buffer;
  /** MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: webhook URLs may be plain http and private addresses. */
  webhooksAllowPrivate: boolean;
}): Reconciler {
  const { db, kube, secretKey, webhooksAllowPrivate } = deps;
  return {
    kind: 'Tenant',
    plural: 'tenants',
    keepsSecrets: true,

    async reconcile(object: CustomObject): Promise<ReconcileResult> {
      const { resource, invalid } = asResource<TenantResource>(object);
      if (!resource) return { conditions: invalid };
      const outcome = await reconcileTenant(
        { db, keys: secretKeyStore(kube, object), secretKey, webhooksAllowPrivate },
        resource,
      );
      const keys = resource.spec.apiKeys ?? [];
      const secretOf = (name: string) => apiKeySecretName(resource.metadata.name, name);
      const hookSecretOf = (name: string) => webhookSecretName(resource.metadata.name, name);
      const hooks = outcome.webhooks;
      const declared = (resource.spec.webhooks ?? []).length;
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
        ...webhookEvents(hooks, hookSecretOf),
      ];
      const keysReady = `${plural(keys.length, 'API key')} in Secrets`;
      const refused = hooks.refused.map(describeRefusedWebhook).join('; ');
      const conditions: ConditionInput[] = [
        hooks.refused.length > 0
          ? {
              type: 'Ready',
              status: 'False',
              reason: 'WebhookURLRefused',
              message: `${keysReady}, and they work; ${refused}`,
            }
          : { type: 'Ready', status: 'True', reason: 'KeysIssued', message: keysReady },
      ];
      if (declared > 0) conditions.push(webhooksCondition(hooks, refused));
      return {
        conditions,
        status: {
          apiKeys: keys.map((k) => ({ name: k.name, secretName: secretOf(k.name) })),
          // None for a Tenant without webhooks: its status stays as it was before there were any.
          ...(hooks.endpoints.length > 0 ? { webhooks: webhooksStatus(hooks, hookSecretOf) } : {}),
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

      // The keys are revoked: their Secrets are useless now, and a webhook's secret stays in its
      // row for as long as the row (a Tenant created again writes it back). Each is owned by the
      // Tenant, so the garbage collector takes one the operator may not delete; no reason to hold
      // the deletion.
      const status = (object.status ?? {}) as {
        apiKeys?: { secretName: string }[];
        webhooks?: { secretName?: string }[];
      };
      const secrets = new Set([
        ...(spec.apiKeys ?? []).map((k) => apiKeySecretName(name, k.name)),
        ...(status.apiKeys ?? []).map((k) => k.secretName),
        ...(spec.webhooks ?? []).map((w) => webhookSecretName(name, w.name)),
        ...(status.webhooks ?? []).flatMap((w) => (w.secretName ? [w.secretName] : [])),
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
              message: `${(err as Error).message}; what it holds is revoked (an API key) or kept only in Postgres while its row is (a webhook's secret), and the garbage collector deletes it with this Tenant`,
            });
          }
        }
      }
      return { done: true, events };
    },
  };
}

/** The Events of what became of spec.webhooks; a refused URL makes its own, from its condition. */
function webhookEvents(hooks: WebhooksOutcome, secretOf: (name: string) => string): EventNote[] {
  const note = (reason: string, message: string, type: EventNote['type'] = 'Normal'): EventNote => ({
    type,
    reason,
    message,
  });
  const urlOf = (name: string) => hooks.endpoints.find((e) => e.name === name)?.url ?? '';
  return [
    ...hooks.registered.map((name) =>
      note(
        'WebhookRegistered',
        `webhook ${name} registered for ${urlOf(name)}; its signing secret is in Secret ${secretOf(name)}`,
      ),
    ),
    ...hooks.updated.map((name) =>
      note('WebhookUpdated', `webhook ${name} now takes the url and events of spec.webhooks`),
    ),
    ...hooks.enabled.map((name) => note('WebhookEnabled', `webhook ${name} enabled, as spec.webhooks says`)),
    ...hooks.disabled.map((name) =>
      note('WebhookDisabled', `webhook ${name} disabled, as spec.webhooks says (enabled: false)`),
    ),
    ...hooks.restored.map(({ name, how }) =>
      note(
        'WebhookSecretRestored',
        `Secret ${secretOf(name)} was ${how === 'deleted' ? 'deleted' : 'edited'}; the signing secret of ` +
          `webhook ${name}, kept encrypted in Postgres, was written back into it: the same secret, nothing to redeploy`,
        'Warning',
      ),
    ),
    ...hooks.removed.map((name) =>
      note('WebhookRemoved', `webhook ${name} removed with its log of deliveries, and its Secret deleted`),
    ),
  ];
}

/** status.webhooks: each endpoint, its Secret, and why it is disabled and how to enable it again. */
function webhooksStatus(hooks: WebhooksOutcome, secretOf: (name: string) => string) {
  return hooks.endpoints.map((e) => ({
    name: e.name,
    id: e.id,
    secretName: secretOf(e.name),
    url: e.url,
    enabled: e.enabled,
    ...(e.disabledReason
      ? {
          disabledReason:
            e.disabledReason === DISABLED_IN_TENANT
              ? e.disabledReason
              : `${e.disabledReason}; ${ENABLE_AGAIN}`,
        }
      : {}),
  }));
}

/** WebhooksRegistered: every entry of spec.webhooks has its endpoint, or which URLs were refused. */
function webhooksCondition(hooks: WebhooksOutcome, refused: string): ConditionInput {
  if (hooks.refused.length > 0) {
    return { type: 'WebhooksRegistered', status: 'False', reason: 'WebhookURLRefused', message: refused };
  }
  const disabled = hooks.endpoints.filter((e) => !e.enabled);
  return {
    type: 'WebhooksRegistered',
    status: 'True',
    reason: 'WebhooksRegistered',
    message:
      `${plural(hooks.endpoints.length, 'webhook')} registered, their signing secrets in Secrets` +
      (disabled.length > 0
        ? `; disabled: ${disabled.map((e) => `${e.name} (${e.disabledReason ?? 'disabled'})`).join(', ')} (status.webhooks says how to enable each again)`
        : ''),
  };
}

function retained(rows: RetainedCounts): string {
  return (
    `${plural(rows.emails, 'email')} (${plural(rows.messages, 'message')}, ` +
    `${plural(rows.events, 'event')}) and ${plural(rows.suppressions, 'suppression')}`
  );
}
