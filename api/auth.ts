// Bearer API-key authentication and scopes, over the key lookup every way in shares
// (lib/send/api-keys.ts: a revoked key stops working within a second). The Postmark routes
// also take the key bare in Postmark's own header (X-Postmark-Server-Token), since that is where
// Postmark's clients put it; it is the same key, with the same scopes.

import type { NextFunction, Request, Response } from 'express';
import type { Db } from '../lib/db/index.js';
import type { Scope } from '../lib/db/schema.js';
import { Problem } from '../lib/problem.js';
import { createKeyLookup, type Principal } from '../lib/send/api-keys.js';

export type { Principal };

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
  const lookup = createKeyLookup(db);
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
    const principal = await lookup(key);
    if (!principal) {
      return next(new Problem(401, 'invalid-api-key', 'The API key is not valid or has been revoked.'));
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
