// Bearer API-key authentication and scopes. A key is looked up by its SHA-256; a revoked key
// stops working within KEY_CACHE_MS, the time a looked-up key is remembered. The Postmark routes
// also take the key bare in Postmark's own header (X-Postmark-Server-Token), since that is where
// Postmark's clients put it; it is the same key, with the same scopes.

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

export interface AuthOptions {
  /**
   * A header that carries the key bare (`X-Postmark-Server-Token: mp_live_…`), taken before
   * Authorization when both are sent.
   */
  tokenHeader?: string;
}

/**
 * Middleware: sets `req.principal` from `Authorization: Bearer mp_live_…` (or the key in
 * `options.tokenHeader`), or answers 401.
 *
 *   app.use('/v1', authenticate(db));
 *   postmark.use(authenticate(db, { tokenHeader: 'x-postmark-server-token' }));
 */
export function authenticate(db: Db, options: AuthOptions = {}) {
  const cache = new TtlCache<string, Principal>(KEY_CACHE_MS, 10_000);
  const { tokenHeader } = options;
  return async (req: Request, _res: Response, next: NextFunction): Promise<void> => {
    const token = tokenHeader ? req.get(tokenHeader)?.trim() : undefined;
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const key = token || bearer;
    if (!key) {
      const how = tokenHeader ? `\`${tokenHeader}: mp_live_…\` or ` : '';
      return next(
        new Problem(
          401,
          'missing-api-key',
          `Send your API key as ${how}\`Authorization: Bearer mp_live_…\`.`,
        ),
      );
    }
    const hash = hashApiKey(key);
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
