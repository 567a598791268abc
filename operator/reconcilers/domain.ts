// SendingDomain → its row with the DKIM key encrypted, the key in a Secret (generated, or the
// user's own by spec.dkim.secretRef), status.dnsRecords, and a DNS check repeated on an interval.
// Ready means mail can be signed and sent; DNSVerified says whether receivers will find the key.
//
// RBAC:
//   mailplane.io   sendingdomains             get list watch patch
//   mailplane.io   sendingdomains/status      patch
//   ""             secrets                    get create patch delete
//   ""             events                     create

import type { Db } from '../../lib/db/index.js';
import { DEFAULT_SELECTOR, deleteDomain, reconcileDomain } from '../../lib/reconcile/domain.js';
import type { SendingDomainResource } from '../../lib/resources.js';
import type { ConditionInput } from '../conditions.js';
import { checkDnsRecords, type TxtMxResolver } from '../dns-check.js';
import type { CustomObject, Kube } from '../kube.js';
import type { ReconcileResult, Reconciler } from '../reconcile-types.js';
import { dkimSecretName, secretKeyStore } from '../secret-key-store.js';
import { DEPENDENCY_RETRY_MS, asResource, notReady } from './shared.js';

export interface DomainReconcilerDeps {
  db: Db;
  kube: Kube;
  secretKey: Buffer;
  resolver: TxtMxResolver;
  /** How often DNS is checked again once verified; a domain not yet verified is checked at most every minute. */
  dnsRecheckMs: number;
  inboundHost?: string;
}

const UNVERIFIED_RECHECK_MS = 60_000;

export function domainReconciler(deps: DomainReconcilerDeps): Reconciler {
  const { db, kube } = deps;
  return {
    kind: 'SendingDomain',
    plural: 'sendingdomains',

    async reconcile(object: CustomObject): Promise<ReconcileResult> {
      const { resource, invalid } = asResource<SendingDomainResource>(object);
      if (!resource) return { conditions: invalid };
      const { spec } = resource;
      let outcome: Awaited<ReturnType<typeof reconcileDomain>>;
      try {
        outcome = await reconcileDomain(
          {
            db,
            keys: secretKeyStore(kube, object),
            secretKey: deps.secretKey,
            inboundHost: deps.inboundHost,
          },
          resource,
        );
      } catch (err) {
        const ready = notReady(err);
        const keyProblem = ready.reason === 'KeySecretNotFound' || ready.reason === 'KeyInvalid';
        return {
          conditions: [
            keyProblem
              ? { ...ready, type: 'KeyReady' }
              : { type: 'KeyReady', status: 'Unknown', reason: ready.reason, message: ready.message },
            {
              type: 'DNSVerified',
              status: 'Unknown',
              reason: 'KeyNotReady',
              message: 'checked once the key is ready',
            },
            ready,
          ],
          // A tenant that appears is seen by its own watch; a claim or a missing Secret is not.
          requeueAfterMs: DEPENDENCY_RETRY_MS,
        };
      }

      const algorithm = spec.dkim?.algorithm ?? 'rsa-2048';
      const selector = spec.dkim?.selector ?? DEFAULT_SELECTOR;
      const where = spec.dkim?.secretRef
        ? `from Secret ${spec.dkim.secretRef.name}`
        : `in Secret ${dkimSecretName(resource.metadata.name)}`;
      const keyReady: ConditionInput = {
        type: 'KeyReady',
        status: 'True',
        reason: spec.dkim?.secretRef ? 'KeyFromSecret' : 'KeyGenerated',
        message: `${spec.dkim?.secretRef ? 'your' : algorithm} key ${where}, selector ${selector}`,
      };

      let dns: ConditionInput;
      try {
        const checks = await checkDnsRecords(deps.resolver, outcome.dnsRecords);
        const missing = checks.filter((c) => !c.found);
        dns =
          missing.length === 0
            ? {
                type: 'DNSVerified',
                status: 'True',
                reason: 'RecordsFound',
                message: `all ${checks.length} records found`,
              }
            : {
                type: 'DNSVerified',
                status: 'False',
                reason: 'RecordsMissing',
                message: `publish: ${missing.map((c) => `${c.record.type} ${c.record.name} (${c.problem})`).join('; ')}`,
              };
      } catch (err) {
        dns = {
          type: 'DNSVerified',
          status: 'Unknown',
          reason: 'LookupFailed',
          message: `DNS lookup failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        };
      }

      const ready: ConditionInput = {
        type: 'Ready',
        status: 'True',
        reason: 'DomainReady',
        message:
          dns.status === 'True'
            ? 'signing mail; DNS verified'
            : 'signing mail; receivers may reject it until the DNS records are published',
      };
      return {
        conditions: [keyReady, dns, ready],
        status: { selector, dnsRecords: outcome.dnsRecords },
        events: outcome.keyGenerated
          ? [{ type: 'Normal', reason: 'KeyGenerated', message: `${algorithm} DKIM key generated ${where}` }]
          : [],
        requeueAfterMs:
          dns.status === 'True' ? deps.dnsRecheckMs : Math.min(deps.dnsRecheckMs, UNVERIFIED_RECHECK_MS),
      };
    },

    async finalize(object: CustomObject): Promise<void> {
      const { namespace, name } = object.metadata;
      const spec = object.spec as SendingDomainResource['spec'];
      await deleteDomain(db, namespace, spec.tenantRef.name, spec.domain);
      // The key is kept by default: mail queued before the deletion is still signed with it, and
      // re-creating the domain picks the same key up, so published DNS stays valid.
      if (spec.dkim?.deletionPolicy === 'Delete' && !spec.dkim.secretRef) {
        await kube.deleteSecret(namespace, dkimSecretName(name));
      }
    },
  };
}
