// Converges a Tenant into its row and its API keys: a key is issued for each `spec.apiKeys`
// entry that has none, its scopes follow the spec, and a key whose entry is gone is revoked.
// Only hashes reach Postgres; the key itself goes to the key store once.

import { sql } from 'kysely';
import { newApiKey } from '../crypto.js';
import type { Db } from '../db/index.js';
import type { TenantResource } from '../resources.js';
import type { KeyStore } from './key-store.js';

export interface TenantOutcome {
  tenantId: string;
  keysIssued: string[];
  keysRevoked: string[];
  /** Whether anything in Postgres changed. */
  changed: boolean;
}

/**
 * Creates or updates the tenant and its keys.
 *
 *   const { keysIssued } = await reconcileTenant({ db, keys }, tenant);
 */
export async function reconcileTenant(
  deps: { db: Db; keys: KeyStore },
  tenant: TenantResource,
): Promise<TenantOutcome> {
  const { db, keys } = deps;
  const ref = tenant.metadata;
  const limits = JSON.stringify(tenant.spec.limits ?? {});
  const row = await db
    .insertInto('tenants')
    .values({ namespace: ref.namespace, name: ref.name, limits })
    .onConflict((oc) =>
      oc
        .columns(['namespace', 'name'])
        .doUpdateSet({ limits, updated_at: sql`now()` })
        .where(sql<boolean>`tenants.limits is distinct from excluded.limits`),
    )
    .returning('id')
    .executeTakeFirst();
  // No row back means the conflict update was skipped: the tenant exists and is unchanged.
  const tenantId =
    row?.id ??
    (
      await db
        .selectFrom('tenants')
        .select('id')
        .where('namespace', '=', ref.namespace)
        .where('name', '=', ref.name)
        .executeTakeFirstOrThrow()
    ).id;
  let changed = row !== undefined;

  const live = await db
    .selectFrom('api_keys')
    .select(['id', 'name', 'scopes'])
    .where('tenant_id', '=', tenantId)
    .where('revoked_at', 'is', null)
    .execute();
  const liveByName = new Map(live.map((k) => [k.name, k]));
  const wanted = tenant.spec.apiKeys ?? [];
  const keysIssued: string[] = [];
  const keysRevoked: string[] = [];

  for (const { name, scopes } of wanted) {
    const current = liveByName.get(name);
    if (current && (await keys.hasApiKey(ref, name))) {
      if ([...current.scopes].sort().join() !== [...scopes].sort().join()) {
        // The store first: should Postgres then fail, the next pass still sees the difference.
        await keys.updateApiKeyScopes(ref, name, scopes);
        await db.updateTable('api_keys').set({ scopes }).where('id', '=', current.id).execute();
        changed = true;
      }
      continue;
    }
    // The store lost the key (or there never was one): retire the old hash and issue anew.
    if (current) await revoke(db, current.id);
    const issued = newApiKey();
    await keys.saveApiKey(ref, name, issued.key, scopes);
    await db
      .insertInto('api_keys')
      .values({ tenant_id: tenantId, name, prefix: issued.prefix, hash: issued.hash, scopes })
      .execute();
    keysIssued.push(name);
    changed = true;
  }

  const wantedNames = new Set(wanted.map((k) => k.name));
  for (const key of live) {
    if (wantedNames.has(key.name)) continue;
    await revoke(db, key.id);
    await keys.deleteApiKey(ref, key.name);
    keysRevoked.push(key.name);
    changed = true;
  }
  return { tenantId, keysIssued, keysRevoked, changed };
}

async function revoke(db: Db, keyId: string): Promise<void> {
  await db
    .updateTable('api_keys')
    .set({ revoked_at: sql`now()` })
    .where('id', '=', keyId)
    .execute();
}

/** Removes the tenant; its keys, domains, templates and messages go with it (on delete cascade). */
export async function deleteTenant(db: Db, namespace: string, name: string): Promise<boolean> {
  const result = await db
    .deleteFrom('tenants')
    .where('namespace', '=', namespace)
    .where('name', '=', name)
    .executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/** Finds a tenant's id by its resource name; undefined when it has not been applied yet. */
export async function findTenantId(db: Db, namespace: string, name: string): Promise<string | undefined> {
  const row = await db
    .selectFrom('tenants')
    .select('id')
    .where('namespace', '=', namespace)
    .where('name', '=', name)
    .executeTakeFirst();
  return row?.id;
}
