// Where generated secrets live besides Postgres. The operator keeps them in Kubernetes Secrets;
// `mailplane apply` keeps API keys and webhook signing secrets nowhere (it prints them once) and
// DKIM keys only in Postgres, encrypted. The reconcile functions see only this interface, never
// Kubernetes.

import type { Scope } from '../db/schema.js';
import type { DkimKeySet } from './dkim-keys.js';

export interface ResourceRef {
  namespace: string;
  name: string;
}

/**
 * What the store holds of an issued API key: the key as issued (`held`), the key with other scopes
 * beside it than it was given (`scopes`), or no key or another one than was issued (`lost`: its
 * Secret was deleted or edited).
 */
export type ApiKeyCheck = 'held' | 'scopes' | 'lost';

/** A webhook endpoint's signing secret (`whsec_…`) and the URL it signs for, as a store holds them. */
export interface WebhookSecret {
  secret: string;
  url: string;
}

export interface KeyStore {
  /**
   * Whether the store keeps generated DKIM keys (the operator's Secrets do): a domain's stored key
   * is then written back into it when it lost or changed it. Others keep them only in Postgres.
   */
  readonly keepsDkimKeys?: boolean;
  /**
   * Whether the store still holds API key `keyName` of the tenant. A store that keeps nothing
   * answers true: the hash in Postgres is then the only record, and the key is never re-issued.
   */
  hasApiKey(tenant: ResourceRef, keyName: string): Promise<boolean>;
  /**
   * Finer than hasApiKey, for a store that can tell: whether it holds the very key whose hash is
   * `hash`, with `scopes` beside it. Without it, a key the store has is taken as held.
   */
  checkApiKey?(tenant: ResourceRef, keyName: string, hash: Buffer, scopes: Scope[]): Promise<ApiKeyCheck>;
  saveApiKey(tenant: ResourceRef, keyName: string, key: string, scopes: Scope[]): Promise<void>;
  /** Records scopes beside a key the store holds; called before Postgres is updated. */
  updateApiKeyScopes(tenant: ResourceRef, keyName: string, scopes: Scope[]): Promise<void>;
  deleteApiKey(tenant: ResourceRef, keyName: string): Promise<void>;
  /** The user's own DKIM key named by `spec.dkim.secretRef`, as PEM; throws when it is absent. */
  loadUserDkimKey(domain: ResourceRef, secretName: string): Promise<string>;
  /** The key generated earlier for this domain, if the store keeps one. */
  loadGeneratedDkimKey(domain: ResourceRef): Promise<string | undefined>;
  saveGeneratedDkimKey(domain: ResourceRef, privateKeyPem: string): Promise<void>;
  /**
   * Every key of the domain as the store holds it (the one signing, the RSA key of a dual-signing
   * domain, a rotation's next key and keys being retired), for a store that keeps them all: the
   * rows are written back into it whenever it lost or changed one.
   */
  loadDkimKeySet?(domain: ResourceRef): Promise<DkimKeySet | undefined>;
  saveDkimKeySet?(domain: ResourceRef, keys: DkimKeySet): Promise<void>;
  /**
   * What the store holds for webhook `name` of the tenant, for a store that keeps them (the
   * operator's Secrets): a secret it lost or that was edited is written back from the row, where
   * it is kept encrypted. Without it, saveWebhookSecret is the only call.
   */
  loadWebhookSecret?(tenant: ResourceRef, name: string): Promise<WebhookSecret | undefined>;
  /**
   * Takes a webhook's signing secret: a new one (shown once), or one written back. Optional so that
   * a store that takes none (a dry run's) need not say so; the secret is then in the row only.
   */
  saveWebhookSecret?(tenant: ResourceRef, name: string, webhook: WebhookSecret): Promise<void>;
  deleteWebhookSecret?(tenant: ResourceRef, name: string): Promise<void>;
}

/** The line that shows a new webhook signing secret once, as `mailplane apply` prints it. */
export function webhookSecretLine(tenant: ResourceRef, name: string, webhook: WebhookSecret): string {
  return `Webhook signing secret ${tenant.namespace}/${tenant.name}/${name} (${webhook.url}): ${webhook.secret}`;
}

/**
 * `store` with each new webhook signing secret also handed to `report`, for a store that keeps
 * none itself (the CLI's, dev's file of API keys); a store that keeps them is returned as it is.
 *
 *   const store = reportingWebhookSecrets(printingKeyStore(report), (t, name, w) => print(webhookSecretLine(t, name, w)));
 */
export function reportingWebhookSecrets(
  store: KeyStore,
  report: (tenant: ResourceRef, name: string, webhook: WebhookSecret) => void,
): KeyStore {
  if (store.saveWebhookSecret) return store;
  return { ...store, saveWebhookSecret: async (tenant, name, webhook) => report(tenant, name, webhook) };
}

/**
 * A store that prints each new API key and webhook signing secret once, and keeps DKIM keys and
 * webhook secrets only in Postgres.
 */
export function printOnceKeyStore(print: (line: string) => void): KeyStore {
  return {
    hasApiKey: async () => true,
    saveApiKey: async (tenant, keyName, key, scopes) =>
      print(`API key ${tenant.namespace}/${tenant.name}/${keyName} (${scopes.join(',')}): ${key}`),
    updateApiKeyScopes: async () => {},
    deleteApiKey: async () => {},
    loadUserDkimKey: async (domain, secretName) => {
      throw new Error(
        `SendingDomain ${domain.namespace}/${domain.name}: spec.dkim.secretRef (${secretName}) names a Kubernetes ` +
          'Secret, which only the operator can read; leave it out to have a key generated',
      );
    },
    loadGeneratedDkimKey: async () => undefined,
    saveGeneratedDkimKey: async () => {},
    saveWebhookSecret: async (tenant, name, webhook) => print(webhookSecretLine(tenant, name, webhook)),
  };
}
