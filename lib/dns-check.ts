// Looks up the records a SendingDomain asks its owner to publish and says, per record, whether it
// is there. DKIM must carry the same public key; SPF must authorise what Mailplane sends from and
// DMARC send reports where the installation asks, whatever else an owner's own policy says
// (lib/dns-policy.ts); the return-path MX must name the host we gave. The operator
// checks on an interval; the api checks when asked (POST /v1/domains/:id/verify) or when no
// operator has checked lately.

import type { DnsRecord } from './dns-records.js';
import { checkDmarc, checkSpf } from './dns-policy.js';

/** The part of node:dns/promises' Resolver this needs; a test points one at its own server. */
export interface TxtMxResolver {
  resolveTxt(name: string): Promise<string[][]>;
  resolveMx(name: string): Promise<{ exchange: string; priority: number }[]>;
  /** For a tracking domain's CNAME; a resolver without it cannot verify one. */
  resolveCname?(name: string): Promise<string[]>;
}

export interface RecordCheck {
  record: DnsRecord;
  found: boolean;
  /** What was wrong, for the condition message: "no TXT record", "another key", ... */
  problem?: string;
  /** Why it was not found: no such record at all, or one that says something else. */
  reason?: 'absent' | 'mismatch';
}

/** Error codes of a lookup that found nothing, as opposed to a resolver that failed. */
const ABSENT = new Set(['ENODATA', 'ENOTFOUND', 'ENONAME']);

/**
 * Checks every record; a resolver failure other than "no such record" is thrown, so the
 * caller retries rather than reporting a record missing that may well be there.
 *
 *   const checks = await checkDnsRecords(resolver, outcome.dnsRecords);
 */
export async function checkDnsRecords(resolver: TxtMxResolver, records: DnsRecord[]): Promise<RecordCheck[]> {
  return Promise.all(records.map((record) => checkRecord(resolver, record)));
}

async function lookup<T>(fn: () => Promise<T[]>): Promise<T[]> {
  try {
    return await fn();
  } catch (err) {
    if (ABSENT.has((err as NodeJS.ErrnoException).code ?? '')) return [];
    throw err;
  }
}

async function checkRecord(resolver: TxtMxResolver, record: DnsRecord): Promise<RecordCheck> {
  if (record.type === 'MX') {
    const wanted = record.value.split(/\s+/).pop()!.replace(/\.$/, '').toLowerCase();
    const found = await lookup(() => resolver.resolveMx(record.name));
    const ok = found.some((mx) => mx.exchange.replace(/\.$/, '').toLowerCase() === wanted);
    return {
      record,
      found: ok,
      ...(ok ? {} : found.length ? mismatch(`MX is not ${wanted}`) : absent('no MX record')),
    };
  }
  if (record.type === 'CNAME') {
    const wanted = record.value.replace(/\.$/, '').toLowerCase();
    const found = resolver.resolveCname ? await lookup(() => resolver.resolveCname!(record.name)) : [];
    const ok = found.some((target) => target.replace(/\.$/, '').toLowerCase() === wanted);
    return {
      record,
      found: ok,
      ...(ok ? {} : found.length ? mismatch(`CNAME is not ${wanted}`) : absent('no CNAME record')),
    };
  }
  // A TXT record may be split into 255-byte strings; they are one value joined.
  const texts = (await lookup(() => resolver.resolveTxt(record.name))).map((chunks) => chunks.join(''));
  if (record.purpose === 'dkim') {
    const key = tagValue(record.value, 'p');
    const keys = texts
      .filter((t) => /(^|;)\s*v=DKIM1/i.test(t) || tagValue(t, 'p'))
      .map((t) => tagValue(t, 'p'));
    if (keys.includes(key)) return { record, found: true };
    return {
      record,
      found: false,
      ...(keys.length ? mismatch('publishes another key') : absent('no DKIM TXT record')),
    };
  }
  // SPF is evaluated for what Mailplane sends from, DMARC for its report address (lib/dns-policy.ts).
  if (record.purpose === 'spf') return { record, ...(await checkSpf(resolver, record, texts)) };
  return { record, ...checkDmarc(record, texts) };
}

const absent = (problem: string) => ({ problem, reason: 'absent' as const });
const mismatch = (problem: string) => ({ problem, reason: 'mismatch' as const });

/** The value of tag `tag` in a `k=v; k=v` record, whitespace removed (keys may be folded). */
function tagValue(text: string, tag: string): string | undefined {
  for (const part of text.split(';')) {
    const [k, ...rest] = part.split('=');
    if (k?.trim() === tag) return rest.join('=').replace(/\s+/g, '');
  }
  return undefined;
}
