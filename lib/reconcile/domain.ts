// Converges a SendingDomain into its row: the DKIM key (the user's own, one generated earlier, or
// a new one), encrypted under the installation's key so that senders sign without Kubernetes.
// A domain belongs to the first tenant that claims it.

import { sql } from 'kysely';
import { decrypt, dkimPublicKey, encrypt, generateDkimKey, type DkimAlgorithm } from '../crypto.js';
import type { Db } from '../db/index.js';
import { dnsRecords, type DnsRecord } from '../dns-records.js';
import type { SendingDomainResource } from '../resources.js';
import { ReconcileError } from './errors.js';
import type { KeyStore } from './key-store.js';
import { findTenantId } from './tenant.js';

/** The selector when the spec names none; a rotation publishes a second selector beside it. */
export const DEFAULT_SELECTOR = 'mailplane';

export interface DomainOutcome {
  domainId: string;
  dnsRecords: DnsRecord[];
  keyGenerated: boolean;
  changed: boolean;
}

/**
 * Creates or updates the domain row and makes sure it has a DKIM key.
 *
 *   const { dnsRecords } = await reconcileDomain({ db, keys, secretKey }, domain);
 */
export async function reconcileDomain(
  deps: { db: Db; keys: KeyStore; secretKey: Buffer; inboundHost?: string },
  domain: SendingDomainResource,
): Promise<DomainOutcome> {
  const { db, keys, secretKey } = deps;
  const ref = domain.metadata;
  const { spec } = domain;
  const tenantId = await findTenantId(db, ref.namespace, spec.tenantRef.name);
  if (!tenantId) {
    throw new ReconcileError(
      'TenantNotFound',
      `Tenant ${ref.namespace}/${spec.tenantRef.name} does not exist yet`,
    );
  }
  const existing = await db
    .selectFrom('domains')
    .selectAll()
    .where('name', '=', spec.domain)
    .executeTakeFirst();
  if (existing && existing.tenant_id !== tenantId) {
    throw new ReconcileError('DomainClaimed', `${spec.domain} already belongs to another tenant`);
  }

  const wantedAlgorithm: DkimAlgorithm = spec.dkim?.algorithm ?? 'rsa-2048';
  let pem: string | undefined;
  let keyGenerated = false;
  if (spec.dkim?.secretRef) {
    pem = await keys.loadUserDkimKey(ref, spec.dkim.secretRef.name);
  } else {
    const candidates = [
      await keys.loadGeneratedDkimKey(ref),
      existing ? decrypt(secretKey, existing.dkim_private_key) : undefined,
    ];
    pem = candidates.find((k) => k !== undefined && keyAlgorithm(k) === wantedAlgorithm);
    if (!pem) {
      pem = generateDkimKey(wantedAlgorithm).privateKeyPem;
      await keys.saveGeneratedDkimKey(ref, pem);
      keyGenerated = true;
    }
  }
  let facts: ReturnType<typeof dkimPublicKey>;
  try {
    facts = dkimPublicKey(pem);
  } catch (err) {
    throw new ReconcileError('KeyInvalid', `DKIM key of ${spec.domain}: ${(err as Error).message}`);
  }

  const desired = {
    selector: spec.dkim?.selector ?? DEFAULT_SELECTOR,
    dkim_algorithm: facts.algorithm,
    dkim_public_key: facts.publicKeyDns,
    return_path_domain: spec.returnPath ?? null,
  };
  const unchanged =
    existing &&
    existing.selector === desired.selector &&
    existing.dkim_algorithm === desired.dkim_algorithm &&
    existing.dkim_public_key === desired.dkim_public_key &&
    existing.return_path_domain === desired.return_path_domain;
  let domainId = existing?.id;
  if (!unchanged) {
    const row = await db
      .insertInto('domains')
      .values({
        tenant_id: tenantId,
        name: spec.domain,
        ...desired,
        dkim_private_key: encrypt(secretKey, pem),
      })
      .onConflict((oc) =>
        oc.column('name').doUpdateSet((eb) => ({
          selector: eb.ref('excluded.selector'),
          dkim_algorithm: eb.ref('excluded.dkim_algorithm'),
          dkim_public_key: eb.ref('excluded.dkim_public_key'),
          dkim_private_key: eb.ref('excluded.dkim_private_key'),
          return_path_domain: eb.ref('excluded.return_path_domain'),
          updated_at: sql`now()`,
        })),
      )
      .returning('id')
      .executeTakeFirstOrThrow();
    domainId = row.id;
  }
  return {
    domainId: domainId!,
    dnsRecords: dnsRecords({ name: spec.domain, ...desired }, { inboundHost: deps.inboundHost }),
    keyGenerated,
    changed: !unchanged,
  };
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
