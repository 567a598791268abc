// Converges a SendingDomain into its row: the DKIM key (the user's own, one generated earlier, or
// a new one), encrypted under the installation's key so that senders sign without Kubernetes.
// A domain belongs to the first tenant that claims it.
//
// Once a domain has a row, its key is the one receivers find under its selector, and it never
// changes behind the user's back: a generated key's Secret that was deleted or edited is written
// back from the rows, and a spec asking for another generated key (another algorithm, another
// selector) goes through a rotation in the operator (lib/reconcile/dkim-keys.ts: a new selector,
// published and seen in DNS before the switch), never a swap under the published selector. What
// cannot rotate that way (another key of your own under the same selector, an algorithm change
// under `mailplane apply`, which checks no DNS) is refused.

import { sql } from 'kysely';
import { decrypt, dkimPublicKey, encrypt, generateDkimKey, type DkimAlgorithm } from '../crypto.js';
import type { Db } from '../db/index.js';
import { domainRecords } from '../dns-records.js';
import type { DnsSettings } from '../dns-settings.js';
import type { SendingDomainResource } from '../resources.js';
import { ReconcileError } from './errors.js';
import {
  DEFAULT_SELECTOR,
  convergeKeys,
  keySetOf,
  sameKeys,
  type KeysOutcome,
  type ListedRecord,
  type PrimaryKey,
  type RotationDeps,
} from './dkim-keys.js';
import type { KeyStore } from './key-store.js';
import { findTenantId } from './tenant.js';

export { DEFAULT_SELECTOR };

export interface DomainOutcome {
  domainId: string;
  /** Every record to publish; a DKIM one says whether its key signs now, waits to, or is being retired. */
  dnsRecords: ListedRecord[];
  /** The keys besides the row's and the rotation's progress. */
  keys: KeysOutcome;
  /** The algorithm and selector of the key in use, which a refused change leaves as they were. */
  algorithm: DkimAlgorithm;
  selector: string;
  keyGenerated: boolean;
  /** The store had lost the stored key (`deleted`) or held another (`altered`): it was written back. */
  keyRestored?: 'deleted' | 'altered';
  /** Why the key the spec asks for was not taken; the stored key stays in use, and says so. */
  keyChangeRefused?: string;
  changed: boolean;
}

/**
 * Creates or updates the domain row and makes sure it has a DKIM key.
 *
 *   const { dnsRecords } = await reconcileDomain({ db, keys, secretKey }, domain);
 */
export async function reconcileDomain(
  deps: {
    db: Db;
    keys: KeyStore;
    secretKey: Buffer;
    inboundHost?: string;
    /** What the SPF record authorises and where DMARC reports go (config.dns). */
    dns?: DnsSettings;
    rotation?: RotationDeps;
    /** The host of MAILPLANE_PUBLIC_URL: a tracking domain is listed as a CNAME to it. */
    trackingTarget?: string;
  },
  domain: SendingDomainResource,
): Promise<DomainOutcome> {
  const { db, keys, secretKey } = deps;
  const ref = domain.metadata;
  const { spec } = domain;
  const tenantId = await findTenantId(db, ref.namespace, spec.tenantRef.name);
  if (!tenantId) throw tenantNotFound(ref.namespace, spec.tenantRef.name);
  const existing = await db
    .selectFrom('domains')
    .innerJoin('tenants', 'tenants.id', 'domains.tenant_id')
    .selectAll('domains')
    .select('tenants.deleted_at as owner_deleted_at')
    .where('domains.name', '=', spec.domain)
    .executeTakeFirst();
  // A retired tenant's domain is free for the taking: nobody sends from it any more.
  if (existing && existing.tenant_id !== tenantId && !existing.owner_deleted_at) {
    throw new ReconcileError('DomainClaimed', `${spec.domain} already belongs to another tenant`);
  }

  const key = await chooseKey(keys, secretKey, domain, existing, Boolean(deps.rotation));
  let facts: ReturnType<typeof dkimPublicKey>;
  try {
    facts = dkimPublicKey(key.pem);
  } catch (err) {
    throw new ReconcileError('KeyInvalid', `DKIM key of ${spec.domain}: ${(err as Error).message}`);
  }

  const desired = {
    // With rotation, the selector of a key in use changes only by a rotation; apply moves it.
    selector:
      existing && deps.rotation
        ? existing.selector
        : (key.selector ?? spec.dkim?.selector ?? DEFAULT_SELECTOR),
    dkim_algorithm: facts.algorithm,
    dkim_public_key: facts.publicKeyDns,
    return_path_domain: spec.returnPath ?? null,
    tracking_domain: spec.tracking?.domain ?? null,
    track_opens: spec.tracking?.opens ?? false,
    track_clicks: spec.tracking?.clicks ?? false,
  };
  const unchanged =
    existing &&
    existing.tenant_id === tenantId &&
    existing.selector === desired.selector &&
    existing.dkim_algorithm === desired.dkim_algorithm &&
    existing.dkim_public_key === desired.dkim_public_key &&
    existing.return_path_domain === desired.return_path_domain &&
    existing.tracking_domain === desired.tracking_domain &&
    existing.track_opens === desired.track_opens &&
    existing.track_clicks === desired.track_clicks;
  let domainId = existing?.id;
  if (!unchanged) {
    domainId = await db.transaction().execute(async (trx) => {
      // Shares the lock retireTenant takes: a tenant being deleted gets no new domain row.
      const live = await trx
        .selectFrom('tenants')
        .select('id')
        .where('id', '=', tenantId)
        .where('deleted_at', 'is', null)
        .forShare()
        .executeTakeFirst();
      if (!live) throw tenantNotFound(ref.namespace, spec.tenantRef.name);
      const row = await trx
        .insertInto('domains')
        .values({
          tenant_id: tenantId,
          name: spec.domain,
          ...desired,
          dkim_private_key: encrypt(secretKey, key.pem),
        })
        .onConflict((oc) =>
          oc.column('name').doUpdateSet((eb) => ({
            tenant_id: eb.ref('excluded.tenant_id'),
            selector: eb.ref('excluded.selector'),
            dkim_algorithm: eb.ref('excluded.dkim_algorithm'),
            dkim_public_key: eb.ref('excluded.dkim_public_key'),
            dkim_private_key: eb.ref('excluded.dkim_private_key'),
            return_path_domain: eb.ref('excluded.return_path_domain'),
            tracking_domain: eb.ref('excluded.tracking_domain'),
            track_opens: eb.ref('excluded.track_opens'),
            track_clicks: eb.ref('excluded.track_clicks'),
            updated_at: sql`now()`,
            dkim_activated_at: sql`case when domains.dkim_public_key is distinct from excluded.dkim_public_key then now() else domains.dkim_activated_at end`,
          })),
        )
        .returning('id')
        .executeTakeFirstOrThrow();
      return row.id;
    });
  }
  const primaryBefore = await db
    .selectFrom('domains')
    .select([
      'id',
      'name',
      'selector',
      'dkim_algorithm',
      'dkim_public_key',
      'dkim_private_key',
      'dkim_activated_at',
    ])
    .where('id', '=', domainId!)
    .executeTakeFirstOrThrow();
  // A key of your own stays in your Secret only; the store keeps the keys Mailplane generated.
  const stored = keys.loadDkimKeySet && keys.saveDkimKeySet && !spec.dkim?.secretRef;
  const before = stored && existing ? await keySetOf(db, secretKey, primaryBefore) : undefined;
  const converged = await convergeKeys({ db, secretKey, rotation: deps.rotation }, domain, primaryBefore, {
    fresh: !existing,
    ...(key.keptRsa ? { keptRsa: key.keptRsa } : {}),
  });
  const restored = stored ? await syncKeySet(deps, domain, converged.primary, before) : undefined;
  const primary: PrimaryKey = converged.primary;
  // The same list as GET /v1/domains shows.
  const records: ListedRecord[] = domainRecords(
    { ...primary, return_path_domain: desired.return_path_domain, tracking_domain: desired.tracking_domain },
    converged.others,
    { inboundHost: deps.inboundHost, dns: deps.dns, trackingTarget: deps.trackingTarget },
  );
  return {
    domainId: domainId!,
    dnsRecords: records,
    keys: converged,
    algorithm: primary.dkim_algorithm,
    selector: primary.selector,
    keyGenerated: key.generated,
    ...(key.restored || restored ? { keyRestored: (key.restored ?? restored)! } : {}),
    ...(key.refused ? { keyChangeRefused: key.refused } : {}),
    changed: !unchanged,
  };
}

function tenantNotFound(namespace: string, name: string): ReconcileError {
  return new ReconcileError('TenantNotFound', `Tenant ${namespace}/${name} does not exist yet`);
}

/**
 * Writes the rows' keys back into a store that keeps them all (the operator's Secret) when it
 * holds other ones; answers whether that restored keys it had lost or that were changed, as
 * opposed to keys this reconcile added or retired (`before`: the set as the rows held it before).
 */
async function syncKeySet(
  deps: { db: Db; keys: KeyStore; secretKey: Buffer },
  domain: SendingDomainResource,
  primary: PrimaryKey,
  before: Awaited<ReturnType<typeof keySetOf>> | undefined,
): Promise<'deleted' | 'altered' | undefined> {
  const want = await keySetOf(deps.db, deps.secretKey, primary);
  const have = await deps.keys.loadDkimKeySet!(domain.metadata);
  if (sameKeys(have, want) && have!.selector === want.selector && have!.rsaSelector === want.rsaSelector) {
    return undefined;
  }
  await deps.keys.saveDkimKeySet!(domain.metadata, want);
  if (!before || sameKeys(have, before)) return undefined;
  return have ? 'altered' : 'deleted';
}

interface ChosenKey {
  pem: string;
  generated: boolean;
  /** The selector the store kept the key under, for a domain re-created with its old key. */
  selector?: string;
  /** The RSA key of a dual-signing domain, kept likewise. */
  keptRsa?: { selector: string; pem: string };
  restored?: 'deleted' | 'altered';
  refused?: string;
}

/**
 * The key to sign with: the stored one once there is a row (written back into the store if it
 * lost it), else the user's, else one kept in the store from before, else a new one.
 */
async function chooseKey(
  keys: KeyStore,
  secretKey: Buffer,
  domain: SendingDomainResource,
  existing:
    | { selector: string; dkim_algorithm: DkimAlgorithm; dkim_public_key: string; dkim_private_key: string }
    | undefined,
  rotates: boolean,
): Promise<ChosenKey> {
  const ref = domain.metadata;
  const { spec } = domain;
  const stored = existing ? decrypt(secretKey, existing.dkim_private_key) : undefined;
  const published = existing
    ? `selector ${existing.selector} publishes the stored ${existing.dkim_algorithm} key`
    : '';
  const noRotation =
    'a new key under a published selector fails DKIM for every message until DNS changes, and ' +
    (spec.dkim?.secretRef
      ? 'the operator rotates only the keys it generates'
      : 'mailplane apply checks no DNS, so it cannot rotate keys (a new selector, published and ' +
        'verified before the switch): the operator does');

  if (spec.dkim?.secretRef) {
    const pem = await keys.loadUserDkimKey(ref, spec.dkim.secretRef.name);
    const offered = publicKeyOf(pem);
    // An unusable key is refused as KeyInvalid further on, whatever was stored.
    if (!existing || !stored || offered === undefined || offered === existing.dkim_public_key) {
      return { pem, generated: false };
    }
    return {
      pem: stored,
      generated: false,
      refused:
        `Secret ${spec.dkim.secretRef.name} holds another key than the one in use, and ${published}: ` +
        `${noRotation}. Still signing with the stored key. Put the stored key back in the Secret, ` +
        'remove spec.dkim.secretRef to keep it, or delete and re-create the SendingDomain to start over.',
    };
  }

  const wanted: DkimAlgorithm = spec.dkim?.algorithm ?? 'rsa-2048';
  if (existing && stored) {
    const refused =
      existing.dkim_algorithm === wanted || rotates
        ? undefined
        : `spec.dkim.algorithm asks for ${wanted}${spec.dkim?.algorithm ? '' : ' (the default)'}, but ` +
          `${published}: ${noRotation}. Still signing with the ${existing.dkim_algorithm} key. Set ` +
          `spec.dkim.algorithm to ${existing.dkim_algorithm}, or delete and re-create the SendingDomain ` +
          'to start over with a new key.';
    // A store that keeps every key is written back once, after the rotation (syncKeySet).
    if (!keys.keepsDkimKeys || keys.loadDkimKeySet) {
      return { pem: stored, generated: false, ...(refused ? { refused } : {}) };
    }
    const inStore = await keys.loadGeneratedDkimKey(ref);
    if (inStore === stored) return { pem: stored, generated: false, ...(refused ? { refused } : {}) };
    await keys.saveGeneratedDkimKey(ref, stored);
    return {
      pem: stored,
      generated: false,
      restored: inStore === undefined ? 'deleted' : 'altered',
      ...(refused ? { refused } : {}),
    };
  }

  // No row yet: a key kept from an earlier SendingDomain of this name keeps its DNS record valid.
  const kept = await keys.loadGeneratedDkimKey(ref);
  if (kept !== undefined && keyAlgorithm(kept) === wanted) {
    const set = await keys.loadDkimKeySet?.(ref);
    const rsaPem = set?.rsaSelector ? set.others[set.rsaSelector] : undefined;
    return {
      pem: kept,
      generated: false,
      ...(set?.selector ? { selector: set.selector } : {}),
      ...(rsaPem && spec.dkim?.alsoRsa ? { keptRsa: { selector: set!.rsaSelector!, pem: rsaPem } } : {}),
    };
  }
  const pem = generateDkimKey(wanted).privateKeyPem;
  await keys.saveGeneratedDkimKey(ref, pem);
  return { pem, generated: true };
}

function publicKeyOf(pem: string): string | undefined {
  try {
    return dkimPublicKey(pem).publicKeyDns;
  } catch {
    return undefined;
  }
}

function keyAlgorithm(pem: string): DkimAlgorithm | undefined {
  try {
    return dkimPublicKey(pem).algorithm;
  } catch {
    return undefined;
  }
}

/** Removes the domain's row, only if it belongs to the tenant of this resource. */
export async function deleteDomain(
  db: Db,
  namespace: string,
  tenantName: string,
  domain: string,
): Promise<boolean> {
  const tenantId = await findTenantId(db, namespace, tenantName);
  if (!tenantId) return false;
  const result = await db
    .deleteFrom('domains')
    .where('name', '=', domain)
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  return result.numDeletedRows > 0n;
}
