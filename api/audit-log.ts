// GET /v1/audit-log: who did what for the tenant — keys issued and revoked, domains and templates
// changed, webhooks changed, suppressions added and lifted — newest first, with the key, the
// controller or the process that did it and the request id (lib/db/audit.ts).

import { Router } from 'express';
import { listAudit } from '../lib/db/audit.js';
import type { Db } from '../lib/db/index.js';
import { Problem } from '../lib/problem.js';
import { principalOf, requireScope } from './auth.js';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 100;

export function auditLogRouter(db: Db): Router {
  const router = Router();
  router.get('/audit-log', requireScope('read'), async (req, res) => {
    const principal = principalOf(req);
    const { limit: rawLimit, before, action } = req.query as Record<string, unknown>;
    const limit = rawLimit === undefined ? DEFAULT_LIMIT : Number(rawLimit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      throw new Problem(422, 'validation-error', `limit: must be an integer from 1 to ${MAX_LIMIT}`, [
        { field: 'limit', message: `must be an integer from 1 to ${MAX_LIMIT}` },
      ]);
    }
    if (before !== undefined && (typeof before !== 'string' || !/^\d{1,19}$/.test(before))) {
      throw new Problem(422, 'validation-error', 'before: must be the id of an entry', [
        { field: 'before', message: 'must be the id of an entry' },
      ]);
    }
    if (action !== undefined && (typeof action !== 'string' || !/^[a-z_.]{1,64}$/.test(action))) {
      throw new Problem(
        422,
        'validation-error',
        'action: must be an action or its prefix, such as webhook.',
        [{ field: 'action', message: 'must be an action or its prefix, such as webhook.' }],
      );
    }
    const page = await listAudit(db, principal.tenantId, {
      limit,
      ...(typeof before === 'string' ? { before } : {}),
      ...(typeof action === 'string' ? { action } : {}),
    });
    res.json({
      object: 'list',
      has_more: page.hasMore,
      data: page.data.map((e) => ({
        object: 'audit_entry',
        id: String(e.id),
        at: e.at.toISOString(),
        actor: e.actor,
        action: e.action,
        target: e.target,
        detail: e.detail,
        request_id: e.request_id,
      })),
    });
  });
  return router;
}
