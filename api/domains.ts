// /v1/domains: the tenant's sending domains with the DNS records to publish for each (the list, in
// the shape of api/schemas.ts's DomainList), one domain with what the last DNS check found for each
// record (Resend's domains.get), and a check now (domains.verify). The operator checks on its
// interval and keeps its findings on the domain's row; where none are recent (no operator runs, as
// under `mailplane apply`), a read checks too, so a status is never older than FINDINGS_FRESH_MS.
// The records are the SendingDomain status's (lib/dns-records.ts domainRecords): during a DKIM
// rotation, the next and the retiring key's too. A check now runs at most once per
// VERIFY_INTERVAL_MS for a domain, whoever asks; sooner is a 429 saying when.

import { Router, type Request } from 'express';
import { sql } from 'kysely';
import { checkDnsRecords, type TxtMxResolver } from '../lib/dns-check.js';
import {
  domainStatus,
  findingsOf,
  lookupFailedFindings,
  recordStatuses,
  saveDnsFindings,
} from '../lib/db/dns-findings.js';
import type { Db } from '../lib/db/index.js';
import { pageOf as pageOfRows } from '../lib/db/webhooks.js';
import type { Domain as DomainRow, DnsFinding } from '../lib/db/schema.js';
import {
  domainRecords,
  inUse,
  type DnsRecordOptions,
  type ListedRecord,
  type OtherDkimKey,
} from '../lib/dns-records.js';
import type { DnsSettings } from '../lib/dns-settings.js';
import { Problem } from '../lib/problem.js';
import { principalOf, requireScope } from './auth.js';
import type { Domain, DomainList } from './schemas.js';
import { parsePage } from './webhook-requests.js';
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
/** A domain's row with its other DKIM keys (dkim_keys), whose records are listed beside its own. */
type ListedDomain = DomainFacts & Pick<DomainRow, 'dns_findings'> & { others: OtherDkimKey[] };
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

/**
 * How soon after a check of a domain (the api's or the operator's) another may run on request:
 * one check is a handful of lookups, and a script that loops on verify would otherwise put them
 * on the resolvers as fast as it can ask. Ten seconds is less than a person takes to publish a
 * record and come back to check it.
 */
export const VERIFY_INTERVAL_MS = 10_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Resend names each record by what it is for, in capitals. */
const RECORD_NAMES: Record<ListedRecord['purpose'], Domain['records'][number]['record']> = {
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

  // Every record listed, a next key's too: what its owner has published so far is worth showing.
  const check = (domain: CheckedDomain): Promise<void> => {
    const running = checking.get(domain.id);
    if (running) return running;
    const records = domainRecords(domain, domain.others, options);
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
    return { ...row, others: (await otherKeys(db, [row.id])).get(row.id) ?? [] };
  };

  const reread = async (domain: CheckedDomain, req: Request): Promise<CheckedDomain> => {
    await check(domain);
    return domainOf(req);
  };

  // By name (unique), a page `after` or `before` a domain's id as Resend's SDK pages it.
  router.get('/domains', requireScope('read'), async (req, res) => {
    const principal = principalOf(req);
    const page = parsePage(req.query, 'uuid');
    const cursor = page.after ?? page.before;
    let query = db
      .selectFrom('domains')
      .select([...FACTS, 'dns_findings'])
      .where('tenant_id', '=', principal.tenantId)
      .orderBy('name', page.before === undefined ? 'asc' : 'desc')
      .limit(page.limit + 1);
    if (cursor !== undefined) {
      const at = await db
        .selectFrom('domains')
        .select('name')
        .where('id', '=', cursor)
        .where('tenant_id', '=', principal.tenantId)
        .executeTakeFirst();
      const field = page.after !== undefined ? 'after' : 'before';
      if (!at) {
        throw new Problem(422, 'validation-error', `${field}: names no domain of this tenant`, [
          { field, message: 'names no domain of this tenant' },
        ]);
      }
      query = query.where('name', field === 'after' ? '>' : '<', at.name);
    }
    const { rows, hasMore } = pageOfRows(await query.execute(), page);
    const others = await otherKeys(
      db,
      rows.map((r) => r.id),
    );
    res.json(
      domainListView(
        rows.map((row) => ({ ...row, others: others.get(row.id) ?? [] })),
        hasMore,
        options,
      ),
    );
  });

  router.get('/domains/:id', requireScope('read'), async (req, res) => {
    let domain = await domainOf(req);
    if (needsCheck(domain, options)) domain = await reread(domain, req);
    res.json(domainDetailView(domain, options));
  });

  router.post('/domains/:id/verify', requireScope('read'), async (req, res) => {
    let domain = await domainOf(req);
    // A check under way here is joined, not refused: it is the one the limit allows.
    const waitMs = checking.has(domain.id) ? 0 : await claimVerify(db, domain.id);
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      const last = domainDetailView(domain, options);
      res.set('Retry-After', String(seconds));
      throw new Problem(
        429,
        'rate-limit-exceeded',
        `${domain.name} was checked at ${last.dns_checked_at} and found ${last.status}; it may be ` +
          `checked again in ${seconds} s. GET /v1/domains/${domain.id} shows what each record was found to be.`,
      );
    }
    domain = await reread(domain, req);
    const view = domainDetailView(domain, options);
    res.json({ object: 'domain', id: view.id, status: view.status } satisfies VerifiedDomain);
  });
  return router;
}

/**
 * Takes the domain's turn for a check on request, or says how long until the next one: 0 when
 * this request may check (its last check, or a claim, is older than VERIFY_INTERVAL_MS), else the
 * milliseconds to wait. The claim stamps dns_checked_at in one conditional update, on the
 * database's clock, so that api replicas behind one Service share the limit and two of them
 * asking at once run one check between them.
 *
 *   await claimVerify(db, domain.id)   // 0, then 9,9xx for a second request at once
 */
async function claimVerify(db: Db, domainId: string): Promise<number> {
  const { rows } = await sql<{ claimed: boolean; wait_ms: number }>`
    with claim as (
      update domains set dns_checked_at = now()
      where id = ${domainId}
        and (dns_checked_at is null or dns_checked_at <= now() - make_interval(secs => ${VERIFY_INTERVAL_MS / 1000}))
      returning id
    )
    select exists (select 1 from claim) as claimed,
      ceil(greatest(0, extract(epoch from
        d.dns_checked_at + make_interval(secs => ${VERIFY_INTERVAL_MS / 1000}) - now()) * 1000))::int as wait_ms
    from domains d where d.id = ${domainId}`.execute(db);
  const row = rows[0];
  if (!row || row.claimed) return 0;
  // A claim that lost by a hair may find no time left: wait a moment rather than check twice.
  return Math.max(1, row.wait_ms);
}

/**
 * The domains' DKIM keys besides the rows' own, by domain id, in the order the operator lists
 * them (lib/reconcile/dkim-keys.ts loadKeys): oldest first.
 */
async function otherKeys(db: Db, domainIds: string[]): Promise<Map<string, OtherDkimKey[]>> {
  const byDomain = new Map<string, OtherDkimKey[]>();
  if (domainIds.length === 0) return byDomain;
  const rows = await db
    .selectFrom('dkim_keys')
    .select(['domain_id', 'selector', 'algorithm', 'public_key', 'state'])
    .where('domain_id', 'in', domainIds)
    .orderBy('created_at')
    .orderBy('selector')
    .execute();
  for (const { domain_id, ...key } of rows)
    byDomain.set(domain_id, [...(byDomain.get(domain_id) ?? []), key]);
  return byDomain;
}

/**
 * No check covers every record in use as it is now, or the last one is older than
 * FINDINGS_FRESH_MS. A next or retiring key's record is left to the operator's checks, which look
 * at the records in use only (operator/reconcilers/domain.ts), so that a read does not check again
 * on every call for a record they never cover.
 */
function needsCheck(domain: CheckedDomain, options: DnsRecordOptions = {}): boolean {
  if (!domain.dns_checked_at || Date.now() - domain.dns_checked_at.getTime() > FINDINGS_FRESH_MS) return true;
  return recordStatuses(
    domainRecords(domain, domain.others, options).filter(inUse),
    domain.dns_findings,
  ).some((r) => r.status === 'not_started');
}

/** GET /v1/domains: Resend's list envelope around each domain's view. */
export function domainListView(
  rows: ListedDomain[],
  hasMore: boolean,
  options: DnsRecordOptions = {},
): DomainList {
  return { object: 'list', has_more: hasMore, data: rows.map((row) => domainView(row, options)) };
}

function recordView(r: ListedRecord): Domain['records'][number] {
  return {
    record: RECORD_NAMES[r.purpose],
    type: r.type,
    name: r.name,
    value: r.value,
    purpose: r.purpose,
    ttl: 'Auto',
    ...(r.state ? { state: r.state } : {}),
  };
}

/**
 * The list's view: each record as it is to publish, the domain's status as the last check found
 * the records in use (a next key's record missing does not make the domain unverified: its mail
 * is signed with the published key).
 */
function domainView(row: ListedDomain, options: DnsRecordOptions = {}): Domain {
  const records = domainRecords(row, row.others, options);
  return {
    object: 'domain',
    id: row.id,
    name: row.name,
    status: domainStatus(recordStatuses(records.filter(inUse), row.dns_findings).map((r) => r.status)),
    created_at: row.created_at.toISOString(),
    dkim: { selector: row.selector, algorithm: row.dkim_algorithm },
    records: records.map(recordView),
  };
}

/** GET /v1/domains/:id: the domain, its status and each record's. */
export function domainDetailView(row: CheckedDomain, options: DnsRecordOptions = {}): DomainDetail {
  const findings: DnsFinding[] | null = row.dns_findings;
  const records = recordStatuses(domainRecords(row, row.others, options), findings);
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
