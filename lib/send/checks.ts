// What every way in checks against the tenant's own rows before it queues a send, whatever shape
// the send came in (REST in Resend's, SendGrid's or Postmark's, or SMTP): that a From domain is
// one of the tenant's sending domains, and which recipients the tenant has suppressed.

import type { Db } from '../db/index.js';
import { TtlCache } from '../ttl-cache.js';

/** Ownership of a domain changes only with a reconcile; a second of staleness is harmless. */
const DOMAIN_CACHE_MS = 1000;
const DOMAIN_CACHE_ENTRIES = 10_000;

/** The id of the tenant's sending domain of that name, or null when the tenant has none. */
export type DomainResolver = (tenantId: string, domain: string) => Promise<string | null>;

/**
 * A resolver with its own cache (a miss is remembered too).
 *
 *   const domainOfTenant = createDomainResolver(db);
 *   const domainId = await domainOfTenant(principal.tenantId, 'example.com');   // null: not the tenant's
 */
export function createDomainResolver(db: Db): DomainResolver {
  const domains = new TtlCache<string, string | null>(DOMAIN_CACHE_MS, DOMAIN_CACHE_ENTRIES);
  return async (tenantId, domain) => {
    const cacheKey = `${tenantId}/${domain}`;
    let domainId = domains.get(cacheKey);
    if (domainId === undefined) {
      const row = await db
        .selectFrom('domains')
        .select('id')
        .where('tenant_id', '=', tenantId)
        .where('name', '=', domain)
        .executeTakeFirst();
      domainId = row?.id ?? null;
      domains.set(cacheKey, domainId);
    }
    return domainId;
  };
}

/**
 * Which of `addresses` the tenant has suppressed (a hard bounce, a complaint, by hand): the sender
 * skips them; Postmark's API refuses a message to none but them up front, and SMTP submission
 * refuses each at RCPT TO.
 *
 *   await suppressedAmong(db, tenantId, ['ada@example.org'])   // ['ada@example.org'] when suppressed
 */
export async function suppressedAmong(db: Db, tenantId: string, addresses: string[]): Promise<string[]> {
  if (addresses.length === 0) return [];
  const rows = await db
    .selectFrom('suppressions')
    .select('address')
    .where('tenant_id', '=', tenantId)
    .where(
      'address',
      'in',
      addresses.map((a) => a.toLowerCase()),
    )
    .execute();
  return rows.map((r) => r.address);
}
