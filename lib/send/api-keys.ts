// API keys as every way in checks them: the REST routes (api/auth.ts, as a Bearer token or
// Postmark's header) and SMTP submission (submission/, as the AUTH password). A key is looked up by
// its SHA-256; a revoked key stops working within KEY_CACHE_MS, the time a looked-up key is
// remembered.

import { hashApiKey } from '../crypto.js';
import type { Db } from '../db/index.js';
import type { Scope, TenantLimits } from '../db/schema.js';
import { TtlCache } from '../ttl-cache.js';

/** Who a key speaks for: its tenant, its scopes and the tenant's limits. */
export interface Principal {
  tenantId: string;
  /** `namespace/name` of the Tenant, for logs and metrics. */
  tenant: string;
  keyId: string;
  /** The key's name in its Tenant's spec.apiKeys, for the audit log. */
  keyName: string;
  scopes: Scope[];
  limits: TenantLimits;
}

/** Finds the principal of a key; undefined for a key that is unknown or revoked. */
export type KeyLookup = (key: string) => Promise<Principal | undefined>;

/**
 * Remembering a key for a second spares a query on every request at thousands of requests a
 * second, and bounds how long a revoked key keeps working.
 */
const KEY_CACHE_MS = 1000;
/** Keys remembered at once; far more than the keys that send in any one second. */
const KEY_CACHE_ENTRIES = 10_000;

/**
 * A lookup with its own cache: each way in creates one.
 *
 *   const lookup = createKeyLookup(db);
 *   const principal = await lookup('mp_live_…');   // undefined: unknown or revoked
 */
export function createKeyLookup(db: Db): KeyLookup {
  const cache = new TtlCache<string, Principal>(KEY_CACHE_MS, KEY_CACHE_ENTRIES);
  return async (key) => {
    const hash = hashApiKey(key);
    const cacheKey = hash.toString('base64');
    const cached = cache.get(cacheKey);
    if (cached) return cached;
    const row = await db
      .selectFrom('api_keys')
      .innerJoin('tenants', 'tenants.id', 'api_keys.tenant_id')
      .select([
        'api_keys.id',
        'api_keys.name as key_name',
        'api_keys.scopes',
        'tenants.id as tenant_id',
        'tenants.namespace',
        'tenants.name',
        'tenants.limits',
      ])
      .where('api_keys.hash', '=', hash)
      .where('api_keys.revoked_at', 'is', null)
      .executeTakeFirst();
    if (!row) return undefined;
    const principal: Principal = {
      tenantId: row.tenant_id,
      tenant: `${row.namespace}/${row.name}`,
      keyId: row.id,
      keyName: row.key_name,
      scopes: row.scopes,
      limits: row.limits,
    };
    cache.set(cacheKey, principal);
    return principal;
  };
}
