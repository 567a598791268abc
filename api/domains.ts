// /v1/domains: the tenant's sending domains with the DNS records to publish for each, in the
// shape of api/schemas.ts's DomainList.

import { Router } from 'express';
import type { Db } from '../lib/db/index.js';
import type { Domain as DomainRow } from '../lib/db/schema.js';
import { dnsRecords, type DnsRecord } from '../lib/dns-records.js';
import { principalOf, requireScope } from './auth.js';
import type { Domain, DomainList } from './schemas.js';

type DomainFacts = Pick<
  DomainRow,
  'id' | 'name' | 'selector' | 'dkim_algorithm' | 'dkim_public_key' | 'return_path_domain' | 'created_at'
>;

/** Resend names each record by what it is for, in capitals. */
const RECORD_NAMES: Record<DnsRecord['purpose'], Domain['records'][number]['record']> = {
  dkim: 'DKIM',
  spf: 'SPF',
  dmarc: 'DMARC',
  'return-path': 'RETURN-PATH',
};

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
    res.json(domainListView(rows, inboundHost));
  });
  return router;
}

/** GET /v1/domains: Resend's list envelope around each domain's view. */
export function domainListView(rows: DomainFacts[], inboundHost?: string): DomainList {
  return { object: 'list', data: rows.map((row) => domainView(row, inboundHost)) };
}

function domainView(row: DomainFacts, inboundHost?: string): Domain {
  return {
    object: 'domain',
    id: row.id,
    name: row.name,
    created_at: row.created_at.toISOString(),
    dkim: { selector: row.selector, algorithm: row.dkim_algorithm },
    records: dnsRecords(row, { inboundHost }).map((r) => ({
      record: RECORD_NAMES[r.purpose],
      type: r.type,
      name: r.name,
      value: r.value,
      purpose: r.purpose,
      ttl: 'Auto',
    })),
  };
}
