// What the last DNS check of a domain found, kept on its row: the operator writes it after each of
// its checks, the api after a check of its own (POST /v1/domains/:id/verify, or a read when nobody
// has checked lately), and GET /v1/domains/:id shows each record's status from it in Resend's
// words. A finding names the value it was checked for, so a key or host that changed since is
// shown as not checked yet rather than as verified.

import { sql } from 'kysely';
import type { RecordCheck } from '../dns-check.js';
import type { DnsRecord } from '../dns-records.js';
import type { Db } from './index.js';
import type { DnsFinding } from './schema.js';

/** Resend's status of one record: a finding's, or not_started when nothing checked this value. */
export type RecordStatus = DnsFinding['status'] | 'not_started';
/** Resend's status of a domain, from its records'. */
export type DomainStatus =
  'not_started' | 'pending' | 'verified' | 'failed' | 'partially_verified' | 'partially_failed';

/**
 * A check's results as findings: a record present but wrong (another DKIM key, another MX host)
 * failed, one absent is pending, as Resend says of a record it has not seen yet.
 *
 *   await saveDnsFindings(db, domainId, findingsOf(await checkDnsRecords(resolver, records)));
 */
export function findingsOf(checks: RecordCheck[]): DnsFinding[] {
  return checks.map(({ record, found, problem, reason }) => ({
    ...recordKey(record),
    status: found ? 'verified' : reason === 'mismatch' ? 'failed' : 'pending',
    ...(problem ? { problem } : {}),
  }));
}

/** A check whose lookups failed (the resolver, not the records): every record temporary_failure. */
export function lookupFailedFindings(records: DnsRecord[], err: unknown): DnsFinding[] {
  const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  return records.map((record) => ({
    ...recordKey(record),
    status: 'temporary_failure',
    problem: `DNS lookup failed: ${why}`,
  }));
}

function recordKey(record: DnsRecord): Pick<DnsFinding, 'purpose' | 'type' | 'name' | 'value'> {
  return { purpose: record.purpose, type: record.type, name: record.name, value: record.value };
}

/**
 * Keeps a check's findings on the domain's row. The findings are written only when they changed;
 * the time of the check always, so a reader knows how fresh they are.
 *
 *   await saveDnsFindings(db, outcome.domainId, findingsOf(checks));
 */
export async function saveDnsFindings(db: Db, domainId: string, findings: DnsFinding[]): Promise<void> {
  const json = JSON.stringify(findings);
  await db
    .updateTable('domains')
    .set({
      dns_findings: sql<string>`case when dns_findings = ${json}::jsonb then dns_findings else ${json}::jsonb end`,
      dns_checked_at: sql<Date>`now()`,
    })
    .where('id', '=', domainId)
    .execute();
}

/**
 * Each record to publish with its status in the last check (not_started for one it did not cover).
 *
 *   recordStatuses(dnsRecords(row), row.dns_findings)   // [{ record, status: 'verified' }, …]
 */
export function recordStatuses(
  records: DnsRecord[],
  findings: DnsFinding[] | null,
): { record: DnsRecord; status: RecordStatus; problem?: string }[] {
  return records.map((record) => {
    const finding = findings?.find(
      (f) =>
        f.purpose === record.purpose &&
        f.type === record.type &&
        f.name === record.name &&
        f.value === record.value,
    );
    if (!finding) return { record, status: 'not_started' };
    return { record, status: finding.status, ...(finding.problem ? { problem: finding.problem } : {}) };
  });
}

/**
 * The domain's status from its records': verified when every one is, partially when some are,
 * failed when one is wrong and none right, not_started before any check, else pending.
 */
export function domainStatus(statuses: RecordStatus[]): DomainStatus {
  const verified = statuses.filter((s) => s === 'verified').length;
  const failed = statuses.includes('failed');
  if (statuses.length > 0 && verified === statuses.length) return 'verified';
  if (verified > 0) return failed ? 'partially_failed' : 'partially_verified';
  if (failed) return 'failed';
  if (statuses.every((s) => s === 'not_started')) return 'not_started';
  return 'pending';
}
