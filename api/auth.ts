// Bearer API-key authentication and scopes. A key is looked up by its SHA-256; a revoked key
// stops working within KEY_CACHE_MS, the time a looked-up key is remembered.

import type { NextFunction, Request, Response } from 'express';
import { hashApiKey } from '../lib/crypto.js';
import type { Db } from '../lib/db/index.js';
import type { Scope, TenantLimits } from '../lib/db/schema.js';
import { Problem } from '../lib/problem.js';
import { TtlCache } from './ttl-cache.js';

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

/**
 * Remembering a key for a second spares a query on every request at thousands of requests a
 * second, and bounds how long a revoked key keeps working.
 */
const KEY_CACHE_MS = 1000;

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

/**
 * Middleware: sets `req.principal` from `Authorization: Bearer mp_live_…`, or answers 401.
 *
 *   app.use('/v1', authenticate(db));
 */
export function authenticate(db: Db) {
  const cache = new TtlCache<string, Principal>(KEY_CACHE_MS, 10_000);
  return async (req: Request, _res: Response, next: NextFunction): Promise<void> => {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) {
      return next(
        new Problem(401, 'missing-api-key', 'Send your API key as `Authorization: Bearer mp_live_…`.'),
      );
    }
    const hash = hashApiKey(match[1]!);
    const cacheKey = hash.toString('base64');
    let principal = cache.get(cacheKey);
    if (!principal) {
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
      if (!row)
        return next(new Problem(401, 'invalid-api-key', 'The API key is not valid or has been revoked.'));
      principal = {
        tenantId: row.tenant_id,
        tenant: `${row.namespace}/${row.name}`,
        keyId: row.id,
        keyName: row.key_name,
        scopes: row.scopes,
        limits: row.limits,
      };
      cache.set(cacheKey, principal);
    }
    req.principal = principal;
    next();
  };
}

/** Middleware: 403 unless the key carries `scope`. */
export function requireScope(scope: Scope) {
  return (req: Request, _res: Response, next: NextFunction): void => {
    if (!req.principal?.scopes.includes(scope)) {
      return next(new Problem(403, 'restricted-api-key', `This API key lacks the "${scope}" scope.`));
    }
    next();
  };
}

export function principalOf(req: Request): Principal {
  if (!req.principal) throw new Problem(401, 'missing-api-key', 'Not authenticated.');
  return req.principal;
}
