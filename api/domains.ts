// /v1/domains: the tenant's sending domains with the DNS records to publish for each.

import { Router } from 'express';
import type { Db } from '../lib/db/index.js';
import { dnsRecords } from '../lib/dns-records.js';
import { principalOf, requireScope } from './auth.js';

export function domainsRouter(db: Db, inboundHost?: string): Router {
  const router = Router();
  router.get('/domains', requireScope('read'), async (req, res) => {
    const principal = principalOf(req);
    const rows = await db
      .selectFrom('domains')
      .select([
        'id',
        'name',
        'selector',
        'dkim_algorithm',
        'dkim_public_key',
        'return_path_domain',
        'created_at',
      ])
      .where('tenant_id', '=', principal.tenantId)
      .orderBy('name')
      .execute();
    res.json({
      object: 'list',
      data: rows.map((row) => ({
        object: 'domain',
        id: row.id,
        name: row.name,
        created_at: row.created_at.toISOString(),
        dkim: { selector: row.selector, algorithm: row.dkim_algorithm },
        records: dnsRecords(row, { inboundHost }).map((r) => ({
          record: r.purpose.toUpperCase(),
          ...r,
          ttl: 'Auto',
        })),
      })),
    });
  });
  return router;
}
