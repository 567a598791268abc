// SendingDomain → its row with the DKIM key encrypted, the key in a Secret (generated, or the
// user's own by spec.dkim.secretRef), status.dnsRecords, and a DNS check repeated on an interval.
// Ready means mail can be signed and sent; DNSVerified says whether receivers will find the key.
// The key under a published selector never changes silently: a generated key's Secret deleted or
// edited is written back from the rows (the Secret watch sees it within seconds). A generated
// key is rotated (spec.dkim.rotateEvery, or a spec asking for another algorithm or selector)
// through lib/reconcile/dkim-keys.ts, each step shown by KeyCurrent and an Event; a spec asking
// for another key of your own under the published selector is refused (KeyChangeRefused).
//
// RBAC:
//   mailplane.io   sendingdomains             get list watch patch
//   mailplane.io   sendingdomains/status      patch
//   ""             secrets                    get list watch create patch delete
//   ""             events                     create

import type { Db } from '../../lib/db/index.js';
import { deleteDomain, reconcileDomain } from '../../lib/reconcile/domain.js';
import type { SendingDomainResource } from '../../lib/resources.js';
import type { ConditionInput } from '../conditions.js';
import { checkDnsRecords, type TxtMxResolver } from '../dns-check.js';
import { findingsOf, lookupFailedFindings, saveDnsFindings } from '../../lib/db/dns-findings.js';
import type { DnsFinding } from '../../lib/db/schema.js';
import { inUse } from '../../lib/dns-records.js';
import type { DnsSettings } from '../../lib/dns-settings.js';
import { isStatus, type Kube } from '../kube.js';
import type { EventNote, FinalizeResult, ReconcileResult, Reconciler } from '../reconcile-types.js';
import { dkimSecretName, secretKeyStore } from '../secret-key-store.js';
import { DEPENDENCY_RETRY_MS, asResource, notReady, previousStatus, tenantDeleting } from './shared.js';

export interface DomainReconcilerDeps {
  db: Db;
  kube: Kube;
  secretKey: Buffer;
  resolver: TxtMxResolver;
  /** How often DNS is checked again once verified; a domain not yet verified is checked at most every minute. */
  dnsRecheckMs: number;
  inboundHost?: string;
  /** What the SPF record authorises and where DMARC reports go (config.dns). */
  dns?: DnsSettings;
  /** The host of MAILPLANE_PUBLIC_URL, which tracking domains are CNAMEs of. */
  trackingTarget?: string;
}

const UNVERIFIED_RECHECK_MS = 60_000;

export function domainReconciler(deps: DomainReconcilerDeps): Reconciler {
  const { db, kube } = deps;
  return {
    kind: 'SendingDomain',
    plural: 'sendingdomains',
    keepsSecrets: true,

    async reconcile(object, context): Promise<ReconcileResult> {
      const { resource, invalid } = asResource<SendingDomainResource>(object);
      if (!resource) return { conditions: invalid };
      const { spec } = resource;
      const deleting = tenantDeleting(object, context);
      if (deleting) {
        return {
          conditions: [
            { type: 'KeyReady', status: 'Unknown', reason: deleting.reason, message: deleting.message },
            { type: 'KeyCurrent', status: 'Unknown', reason: deleting.reason, message: deleting.message },
            { type: 'DNSVerified', status: 'Unknown', reason: deleting.reason, message: deleting.message },
            deleting,
          ],
          status: previousStatus(object),
        };
      }
      let outcome: Awaited<ReturnType<typeof reconcileDomain>>;
      try {
        outcome = await reconcileDomain(
          {
            db,
            keys: secretKeyStore(kube, object),
            secretKey: deps.secretKey,
            inboundHost: deps.inboundHost,
            dns: deps.dns,
            rotation: { resolver: deps.resolver },
            trackingTarget: deps.trackingTarget,
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
              type: 'KeyCurrent',
              status: 'Unknown',
              reason: 'KeyNotReady',
              message: 'checked once the key is ready',
            },
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

      const { algorithm, selector } = outcome;
      const secretName = dkimSecretName(resource.metadata.name);
      const own = spec.dkim?.secretRef && !outcome.keyChangeRefused;
      const where = own ? `from Secret ${spec.dkim!.secretRef!.name}` : `in Secret ${secretName}`;
      const keyReady: ConditionInput = outcome.keyChangeRefused
        ? { type: 'KeyReady', status: 'False', reason: 'KeyChangeRefused', message: outcome.keyChangeRefused }
        : {
            type: 'KeyReady',
            status: 'True',
            reason: own ? 'KeyFromSecret' : 'KeyGenerated',
            message:
              `${own ? 'your' : algorithm} key ${where}, selector ${selector}` +
              (outcome.keys.rsa ? `; and an rsa-2048 key, selector ${outcome.keys.rsa.selector}` : ''),
          };
      const keyCurrent: ConditionInput = { type: 'KeyCurrent', ...outcome.keys.current };
      const events: EventNote[] = [...outcome.keys.notes];
      if (outcome.keyGenerated) {
        events.push({
          type: 'Normal',
          reason: 'KeyGenerated',
          message: `${algorithm} DKIM key generated ${where}`,
        });
      }
      if (outcome.keyRestored) {
        events.push({
          type: 'Warning',
          reason: 'KeyRestored',
          message:
            `Secret ${secretName} was ${outcome.keyRestored === 'deleted' ? 'deleted' : 'edited'}; the ` +
            `${algorithm} key in use under selector ${selector} was written back into it`,
        });
      }

      let dns: ConditionInput;
      let findings: DnsFinding[];
      try {
        // What receivers need now: a next key's record is the rotation's to wait for (KeyCurrent),
        // and a retiring key's may already be gone without harm to new mail.
        const checks = await checkDnsRecords(deps.resolver, outcome.dnsRecords.filter(inUse));
        findings = findingsOf(checks);
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
        findings = lookupFailedFindings(outcome.dnsRecords.filter(inUse), err);
        dns = {
          type: 'DNSVerified',
          status: 'Unknown',
          reason: 'LookupFailed',
          message: `DNS lookup failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        };
      }
      // Also where the api reads them (GET /v1/domains/:id): it talks to Postgres, not Kubernetes.
      await saveDnsFindings(db, outcome.domainId, findings);

      const ready: ConditionInput = outcome.keyChangeRefused
        ? {
            type: 'Ready',
            status: 'False',
            reason: 'KeyChangeRefused',
            message: `the spec asks for another DKIM key; still signing with the ${algorithm} key under selector ${selector} (see KeyReady)`,
          }
        : {
            type: 'Ready',
            status: 'True',
            reason: 'DomainReady',
            message:
              dns.status === 'True'
                ? 'signing mail; DNS verified'
                : 'signing mail; receivers may reject it until the DNS records are published',
          };
      const recheckMs =
        dns.status === 'True' && keyCurrent.status === 'True'
          ? deps.dnsRecheckMs
          : Math.min(deps.dnsRecheckMs, UNVERIFIED_RECHECK_MS);
      // A key due to retire or a rotation due is looked at on time, not at the next DNS check.
      const dueInMs = outcome.keys.nextCheckAt
        ? outcome.keys.nextCheckAt.getTime() - Date.now() + 1_000
        : Infinity;
      return {
        conditions: [keyReady, keyCurrent, dns, ready],
        status: { selector, algorithm, dnsRecords: outcome.dnsRecords },
        events,
        requeueAfterMs: Math.max(1_000, Math.min(recheckMs, dueInMs)),
      };
    },

    async finalize(object, context): Promise<FinalizeResult> {
      const { namespace, name } = object.metadata;
      const spec = object.spec as SendingDomainResource['spec'];
      await deleteDomain(db, namespace, spec.tenantRef.name, spec.domain);
      // The key is kept by default: mail queued before the deletion is still signed with it, and
      // re-creating the domain picks the same key up, so published DNS stays valid.
      if (spec.dkim?.deletionPolicy !== 'Delete' || spec.dkim.secretRef) return { done: true };
      const secret = dkimSecretName(name);
      if (!context.maySecrets(namespace)) {
        // Refused before any key was written there: there is no Secret of ours to wait for.
        return { done: true };
      }
      try {
        await kube.deleteSecret(namespace, secret);
      } catch (err) {
        if (!isStatus(err, 403)) throw err;
        return {
          done: false,
          conditions: [
            {
              type: 'Ready',
              status: 'False',
              reason: 'CleanupForbidden',
              message:
                `${(err as Error).message}. spec.dkim.deletionPolicy is Delete, so the deletion waits ` +
                `for it: grant the operator delete on Secrets in ${namespace}, delete the Secret yourself, ` +
                'or set spec.dkim.deletionPolicy to Retain',
            },
          ],
          requeueAfterMs: DEPENDENCY_RETRY_MS,
        };
      }
      return { done: true };
    },
  };
}
