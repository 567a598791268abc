// /v1/domains: the tenant's sending domains with the DNS records to publish for each (the list, in
// the shape of api/schemas.ts's DomainList), one domain with what the last DNS check found for each
// record (Resend's domains.get), and a check now (domains.verify). The operator checks on its
// interval and keeps its findings on the domain's row; where none are recent (no operator runs, as
// under `mailplane apply`), a read checks too, so a status is never older than FINDINGS_FRESH_MS.

import { Router, type Request } from 'express';
import { checkDnsRecords, type TxtMxResolver } from '../lib/dns-check.js';
import {
  domainStatus,
  findingsOf,
  lookupFailedFindings,
  recordStatuses,
  saveDnsFindings,
} from '../lib/db/dns-findings.js';
import type { Db } from '../lib/db/index.js';
import type { Domain as DomainRow, DnsFinding } from '../lib/db/schema.js';
import { dnsRecords, type DnsRecord, type DnsRecordOptions } from '../lib/dns-records.js';
import type { DnsSettings } from '../lib/dns-settings.js';
import { Problem } from '../lib/problem.js';
import { principalOf, requireScope } from './auth.js';
import type { Domain, DomainList } from './schemas.js';
import type { DomainDetail, VerifiedDomain } from './schemas-domains.js';

type DomainFacts = Pick<
  DomainRow,
  | 'id'
  | 'name'
  | 'selector'
  | 'dkim_algorithm'
  | 'dkim_public_key'
  | 'return_path_domain'
  | 'tracking_domain'
  | 'created_at'
>;
type ListedDomain = DomainFacts & Pick<DomainRow, 'dns_findings'>;
type CheckedDomain = ListedDomain & Pick<DomainRow, 'dns_checked_at'>;

export interface DomainsDeps {
  db: Db;
  /** Public name of the inbound SMTP service, the MX of return-path domains. */
  inboundHost?: string;
  /** Where the api's own checks look (config.dnsServers). */
  resolver: TxtMxResolver;
  /** What the SPF record authorises and where DMARC reports go (config.dns). */
  dns?: DnsSettings;
  /** The host of MAILPLANE_PUBLIC_URL, which a tracking domain is a CNAME of. */
  trackingTarget?: string;
}

/**
 * How old findings may be before a read checks again: twice the operator's default interval
 * between checks of a verified domain (MAILPLANE_DNS_RECHECK_SECONDS, 300), so that with an
 * operator running a read never waits on DNS.
 */
export const FINDINGS_FRESH_MS = 10 * 60 * 1000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Resend names each record by what it is for, in capitals. */
const RECORD_NAMES: Record<DnsRecord['purpose'], Domain['records'][number]['record']> = {
  dkim: 'DKIM',
  spf: 'SPF',
  dmarc: 'DMARC',
  'return-path': 'RETURN-PATH',
  tracking: 'TRACKING',
};

const FACTS = [
  'id',
  'name',
  'selector',
  'dkim_algorithm',
  'dkim_public_key',
  'return_path_domain',
  'tracking_domain',
  'created_at',
] as const;

export function domainsRouter(deps: DomainsDeps): Router {
  const { db } = deps;
  const options: DnsRecordOptions = {
    inboundHost: deps.inboundHost,
    dns: deps.dns,
    trackingTarget: deps.trackingTarget,
  };
  const router = Router();
  // Checks of one domain under way, by id: requests that come together share one set of lookups.
  const checking = new Map<string, Promise<void>>();

  const check = (domain: CheckedDomain): Promise<void> => {
    const running = checking.get(domain.id);
    if (running) return running;
    const records = dnsRecords(domain, options);
    const done = checkDnsRecords(deps.resolver, records)
      .then(findingsOf, (err: unknown) => lookupFailedFindings(records, err))
      .then((findings) => saveDnsFindings(db, domain.id, findings))
      .finally(() => checking.delete(domain.id));
    checking.set(domain.id, done);
    return done;
  };

  /** The tenant's domain `:id` names, or a 404; another tenant's is as absent. */
  const domainOf = async (req: Request): Promise<CheckedDomain> => {
    const id = String(req.params.id);
    const row = UUID.test(id)
      ? await db
          .selectFrom('domains')
          .select([...FACTS, 'dns_findings', 'dns_checked_at'])
          .where('tenant_id', '=', principalOf(req).tenantId)
          .where('id', '=', id)
          .executeTakeFirst()
      : undefined;
    if (!row) throw new Problem(404, 'not-found', `No domain ${id}.`);
    return row;
  };

  const reread = async (domain: CheckedDomain, req: Request): Promise<CheckedDomain> => {
    await check(domain);
    return domainOf(req);
  };

  router.get('/domains', requireScope('read'), async (req, res) => {
    const principal = principalOf(req);
    const rows = await db
      .selectFrom('domains')
      .select([...FACTS, 'dns_findings'])
      .where('tenant_id', '=', principal.tenantId)
      .orderBy('name')
      .execute();
    res.json(domainListView(rows, options));
  });

  router.get('/domains/:id', requireScope('read'), async (req, res) => {
    let domain = await domainOf(req);
    if (needsCheck(domain, options)) domain = await reread(domain, req);
    res.json(domainDetailView(domain, options));
  });

  router.post('/domains/:id/verify', requireScope('read'), async (req, res) => {
    const domain = await reread(await domainOf(req), req);
    const view = domainDetailView(domain, options);
    res.json({ object: 'domain', id: view.id, status: view.status } satisfies VerifiedDomain);
  });
  return router;
}

/** No check covers every record as it is now, or the last one is older than FINDINGS_FRESH_MS. */
function needsCheck(domain: CheckedDomain, options: DnsRecordOptions = {}): boolean {
  if (!domain.dns_checked_at || Date.now() - domain.dns_checked_at.getTime() > FINDINGS_FRESH_MS) return true;
  return recordStatuses(dnsRecords(domain, options), domain.dns_findings).some(
    (r) => r.status === 'not_started',
  );
}

/** GET /v1/domains: Resend's list envelope around each domain's view. */
export function domainListView(rows: ListedDomain[], options: DnsRecordOptions = {}): DomainList {
  return { object: 'list', data: rows.map((row) => domainView(row, options)) };
}

function recordView(r: DnsRecord): Domain['records'][number] {
  return {
    record: RECORD_NAMES[r.purpose],
    type: r.type,
    name: r.name,
    value: r.value,
    purpose: r.purpose,
    ttl: 'Auto',
  };
}

/** The list's view: each record as it is to publish, the domain's status as the last check found it. */
function domainView(row: ListedDomain, options: DnsRecordOptions = {}): Domain {
  const records = dnsRecords(row, options);
  return {
    object: 'domain',
    id: row.id,
    name: row.name,
    status: domainStatus(recordStatuses(records, row.dns_findings).map((r) => r.status)),
    created_at: row.created_at.toISOString(),
    dkim: { selector: row.selector, algorithm: row.dkim_algorithm },
    records: records.map(recordView),
  };
}

/** GET /v1/domains/:id: the domain, its status and each record's. */
export function domainDetailView(row: CheckedDomain, options: DnsRecordOptions = {}): DomainDetail {
  const findings: DnsFinding[] | null = row.dns_findings;
  const records = recordStatuses(dnsRecords(row, options), findings);
  return {
    ...domainView(row, options),
    dns_checked_at: row.dns_checked_at?.toISOString() ?? null,
    records: records.map(({ record, status, problem }) => ({
      ...recordView(record),
      status,
      ...(problem ? { problem } : {}),
    })),
  };
}
