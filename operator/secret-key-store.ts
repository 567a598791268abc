// The operator's KeyStore: API keys, webhook signing secrets and generated DKIM keys in Secrets
// beside their resource.
//
// An API key's Secret and a webhook's are owned by their Tenant (garbage-collected with it); a DKIM
// key's Secret has no owner, because deleting a SendingDomain must not take the key that signs mail
// still queued.
// Every Secret written here carries the managed-by label the controller watches, and the label
// of its owner, so that a Secret deleted or edited by someone else brings its owner back in.

import type { V1OwnerReference, V1Secret } from '@kubernetes/client-node';
import type { Scope } from '../lib/db/schema.js';
import { ReconcileError } from '../lib/reconcile/errors.js';
import { isIssuedKey } from '../lib/reconcile/tenant.js';
import type { KeyStore, ResourceRef } from '../lib/reconcile/key-store.js';
import type { CustomObject, Kube } from './kube.js';

export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_TENANT = 'mailplane.io/tenant';
export const LABEL_DOMAIN = 'mailplane.io/sending-domain';
/** Data keys of an API key's Secret. */
export const API_KEY_DATA = 'api-key';
export const SCOPES_DATA = 'scopes';
/** Data keys of a webhook's Secret: the whsec_… secret a receiver verifies with, and its URL. */
export const WEBHOOK_SECRET_DATA = 'signing-secret';
export const WEBHOOK_URL_DATA = 'url';
/**
 * Data keys of a DKIM key's Secret: `private.key` is the key mail is signed with (PKCS#8 PEM), and
 * `selector` its selector; every other key the domain holds (the RSA key of a dual-signing domain,
 * a rotation's next key, keys being retired) is `<selector>.key`, and `rsa-selector` names the
 * RSA one. Each key keeps its entry for its whole life, so the Secret written back after a delete
 * holds the very keys it held, and a re-created SendingDomain takes them up with their selectors.
 */
export const DKIM_KEY_DATA = 'private.key';
const DKIM_SELECTOR_DATA = 'selector';
const DKIM_RSA_SELECTOR_DATA = 'rsa-selector';
const OTHER_KEY = /^(.+)\.key$/;
/** Data keys accepted in a user's own DKIM Secret: a kubernetes.io/tls Secret, or an opaque one. */
const USER_KEY_DATA = ['tls.key', 'private.key'];

/** The Secret of a tenant's API key, e.g. acme-api-key-backend. */
export function apiKeySecretName(tenant: string, keyName: string): string {
  return `${tenant}-api-key-${keyName}`;
}

/** The Secret of a tenant's webhook, e.g. acme-webhook-events. */
export function webhookSecretName(tenant: string, webhookName: string): string {
  return `${tenant}-webhook-${webhookName}`;
}

/** The Secret of a domain's generated DKIM key, e.g. example-com-dkim. */
export function dkimSecretName(domainResource: string): string {
  return `${domainResource}-dkim`;
}

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
const unb64 = (data: string | undefined) =>
  data === undefined ? undefined : Buffer.from(data, 'base64').toString('utf8');

function ownerReference(owner: CustomObject): V1OwnerReference {
  return {
    apiVersion: owner.apiVersion!,
    kind: owner.kind!,
    name: owner.metadata.name,
    uid: owner.metadata.uid!,
    controller: true,
    blockOwnerDeletion: false,
  };
}

/**
 * A KeyStore over the Secrets of `owner`'s namespace.
 *
 *   await reconcileTenant({ db, keys: secretKeyStore(kube, tenantObject) }, tenant);
 */
export function secretKeyStore(kube: Kube, owner: CustomObject): KeyStore {
  const readData = async (namespace: string, name: string, key: string) =>
    unb64((await kube.readSecret(namespace, name))?.data?.[key]);

  return {
    keepsDkimKeys: true,
    async hasApiKey(tenant, keyName) {
      const key = await readData(tenant.namespace, apiKeySecretName(tenant.name, keyName), API_KEY_DATA);
      return Boolean(key);
    },
    async checkApiKey(tenant, keyName, hash, scopes) {
      const secret = await kube.readSecret(tenant.namespace, apiKeySecretName(tenant.name, keyName));
      const key = unb64(secret?.data?.[API_KEY_DATA]);
      // Another key than the one issued (an edited Secret) is as good as none: its hash is unknown.
      if (!key || !isIssuedKey(key, hash)) return 'lost';
      return unb64(secret?.data?.[SCOPES_DATA]) === scopes.join(',') ? 'held' : 'scopes';
    },
    async saveApiKey(tenant, keyName, key, scopes) {
      await kube.applySecret({
        metadata: {
          name: apiKeySecretName(tenant.name, keyName),
          namespace: tenant.namespace,
          labels: { [LABEL_MANAGED_BY]: 'mailplane', [LABEL_TENANT]: tenant.name },
          ownerReferences: [ownerReference(owner)],
        },
        type: 'Opaque',
        data: { [API_KEY_DATA]: b64(key), [SCOPES_DATA]: b64(scopes.join(',')) },
      });
    },
    async updateApiKeyScopes(tenant, keyName, scopes: Scope[]) {
      const name = apiKeySecretName(tenant.name, keyName);
      await kube.patchSecretData(tenant.namespace, name, { [SCOPES_DATA]: b64(scopes.join(',')) });
    },
    async deleteApiKey(tenant, keyName) {
      await kube.deleteSecret(tenant.namespace, apiKeySecretName(tenant.name, keyName));
    },
    async loadWebhookSecret(tenant, name) {
      const secret = await kube.readSecret(tenant.namespace, webhookSecretName(tenant.name, name));
      const signing = unb64(secret?.data?.[WEBHOOK_SECRET_DATA]);
      return signing === undefined
        ? undefined
        : { secret: signing, url: unb64(secret?.data?.[WEBHOOK_URL_DATA]) ?? '' };
    },
    async saveWebhookSecret(tenant, name, webhook) {
      await kube.applySecret({
        metadata: {
          name: webhookSecretName(tenant.name, name),
          namespace: tenant.namespace,
          labels: { [LABEL_MANAGED_BY]: 'mailplane', [LABEL_TENANT]: tenant.name },
          ownerReferences: [ownerReference(owner)],
        },
        type: 'Opaque',
        data: { [WEBHOOK_SECRET_DATA]: b64(webhook.secret), [WEBHOOK_URL_DATA]: b64(webhook.url) },
      });
    },
    async deleteWebhookSecret(tenant, name) {
      await kube.deleteSecret(tenant.namespace, webhookSecretName(tenant.name, name));
    },
    async loadUserDkimKey(domain: ResourceRef, secretName: string) {
      const secret = await kube.readSecret(domain.namespace, secretName);
      if (!secret) {
        throw new ReconcileError(
          'KeySecretNotFound',
          `Secret ${domain.namespace}/${secretName} named by spec.dkim.secretRef does not exist`,
        );
      }
      const pem = USER_KEY_DATA.map((k) => unb64(secret.data?.[k])).find(Boolean);
      if (!pem) {
        throw new ReconcileError(
          'KeyInvalid',
          `Secret ${domain.namespace}/${secretName} holds no ${USER_KEY_DATA.join(' or ')} entry`,
        );
      }
      return pem;
    },
    async loadGeneratedDkimKey(domain) {
      return readData(domain.namespace, dkimSecretName(domain.name), DKIM_KEY_DATA);
    },
    async loadDkimKeySet(domain) {
      const data = (await kube.readSecret(domain.namespace, dkimSecretName(domain.name)))?.data ?? {};
      const signing = unb64(data[DKIM_KEY_DATA]);
      if (signing === undefined) return undefined;
      const others: Record<string, string> = {};
      for (const [key, value] of Object.entries(data)) {
        const selector = OTHER_KEY.exec(key)?.[1];
        if (selector && key !== DKIM_KEY_DATA && !USER_KEY_DATA.includes(key)) {
          others[selector] = unb64(value)!;
        }
      }
      const rsaSelector = unb64(data[DKIM_RSA_SELECTOR_DATA]);
      return {
        signing,
        selector: unb64(data[DKIM_SELECTOR_DATA]) ?? '',
        others,
        ...(rsaSelector ? { rsaSelector } : {}),
      };
    },
    async saveDkimKeySet(domain, keys) {
      await kube.applySecret({
        metadata: {
          name: dkimSecretName(domain.name),
          namespace: domain.namespace,
          labels: { [LABEL_MANAGED_BY]: 'mailplane', [LABEL_DOMAIN]: domain.name },
        },
        type: 'Opaque',
        data: {
          [DKIM_KEY_DATA]: b64(keys.signing),
          [DKIM_SELECTOR_DATA]: b64(keys.selector),
          ...(keys.rsaSelector ? { [DKIM_RSA_SELECTOR_DATA]: b64(keys.rsaSelector) } : {}),
          ...Object.fromEntries(Object.entries(keys.others).map(([sel, pem]) => [`${sel}.key`, b64(pem)])),
        },
      });
    },
    async saveGeneratedDkimKey(domain, privateKeyPem) {
      const secret: V1Secret & { metadata: { name: string; namespace: string } } = {
        metadata: {
          name: dkimSecretName(domain.name),
          namespace: domain.namespace,
          labels: { [LABEL_MANAGED_BY]: 'mailplane', [LABEL_DOMAIN]: domain.name },
        },
        type: 'Opaque',
        data: { [DKIM_KEY_DATA]: b64(privateKeyPem) },
      };
      await kube.applySecret(secret);
    },
  };
}
