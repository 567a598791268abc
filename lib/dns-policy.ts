// Whether a domain's published SPF and DMARC records do what Mailplane's mail needs, for the DNS
// check (lib/dns-check.ts). SPF is evaluated as a receiver would (mailauth's RFC 7208 evaluator,
// through the installation's resolver), for each relay include and egress address that the
// suggested record names: "a v=spf1 record exists" proves nothing, since `v=spf1 -all` exists too.
// A name that already has an SPF record is told what to add to it, never to publish a second one
// (two SPF records at one name are a permerror, which fails every message).

import ipaddr from 'ipaddr.js';
import { spf } from 'mailauth/lib/spf/index.js';
import type { DnsRecord } from './dns-records.js';

/** The lookups the evaluation makes; node:dns/promises' Resolver has them all. */
export interface PolicyResolver {
  resolveTxt(name: string): Promise<string[][]>;
  resolveMx(name: string): Promise<{ exchange: string; priority: number }[]>;
  /** For `a`, `mx` and `exists` mechanisms; without them such a mechanism matches nothing. */
  resolve4?(name: string): Promise<string[]>;
  resolve6?(name: string): Promise<string[]>;
  resolvePtr?(name: string): Promise<string[]>;
}

export interface PolicyCheck {
  found: boolean;
  problem?: string;
  /** Why it was not found: no such record at all, or one that does not do what is needed. */
  reason?: 'absent' | 'mismatch';
}

/**
 * A client address in TEST-NET-1 (RFC 5737), which no real sender has: with the relay's include
 * answered as `ip4:` this address alone, a `pass` for it means the published record reaches that
 * include with a `+` qualifier, through whatever nesting, redirects and ordering it has.
 */
const INCLUDE_PROBE = '192.0.2.1';
/** RFC 7208 §4.6.4's lookup limit, which receivers enforce: past it the record is a permerror. */
const MAX_LOOKUPS = 10;
const SPF_VERSION = /^v=spf1(?:\s|$)/i;

/**
 * Checks the SPF record published at `record.name` (its TXT strings, `texts`) against the
 * suggested one in `record.value`. A lookup that fails for a reason other than "no such record"
 * is thrown, so the caller says the lookup failed rather than that a record is wrong.
 *
 *   await checkSpf(resolver, { type: 'TXT', name: 'bounces.example.com', value: 'v=spf1 include:amazonses.com ~all', purpose: 'spf' }, texts)
 *   // { found: false, reason: 'mismatch', problem: 'does not authorise include:amazonses.com (softfail): ...' }
 */
export async function checkSpf(
  resolver: PolicyResolver,
  record: DnsRecord,
  texts: string[],
): Promise<PolicyCheck> {
  const published = texts.filter((t) => SPF_VERSION.test(t.trim()));
  if (published.length === 0) return { found: false, reason: 'absent', problem: 'no v=spf1 TXT record' };
  if (published.length > 1) {
    return {
      found: false,
      reason: 'mismatch',
      problem:
        `${published.length} SPF records, which receivers treat as an error (permerror, failing SPF ` +
        `for every message): merge them into one that also has ${wanted(record.value).join(' ') || 'your senders'}`,
    };
  }
  const current = published[0]!.trim().replace(/\s+/g, ' ');
  const terms = wanted(record.value);
  if (terms.length === 0) {
    // Nothing configured to look for: only a record that authorises nobody at all is wrong.
    return authorisesNobody(current)
      ? { found: false, reason: 'mismatch', problem: `"${current}" authorises no sender at all` }
      : { found: true };
  }

  const missing: { term: string; result: string }[] = [];
  for (const term of terms) {
    const results = await Promise.all(
      probesFor(resolver, term).map(({ ip, probe }) => evaluate(probe, record.name, ip)),
    );
    const failed = results.find((r) => r !== 'pass');
    if (failed) missing.push({ term, result: failed });
  }
  if (missing.length === 0) return { found: true };
  const broken = missing.find((m) => m.result.startsWith('permerror'));
  if (broken) {
    return {
      found: false,
      reason: 'mismatch',
      problem: `"${current}" cannot be evaluated (${broken.result})`,
    };
  }
  const add = missing.map((m) => m.term);
  return {
    found: false,
    reason: 'mismatch',
    problem:
      `does not authorise ${missing.map((m) => `${m.term} (${m.result})`).join(', ')}: add ` +
      `${add.length > 1 ? 'them' : 'it'} to the record there, not as a second one: "${merge(current, add)}"`,
  };
}

/** One evaluation per address to try: the include's probe, or a range's first and last address. */
function probesFor(resolver: PolicyResolver, term: string): { ip: string; probe: PolicyResolver }[] {
  const [mechanism, value = ''] = splitTerm(term);
  if (mechanism === 'include') return [{ ip: INCLUDE_PROBE, probe: answeringInclude(resolver, value) }];
  return rangeEnds(value).map((ip) => ({ ip, probe: resolver }));
}

/**
 * Checks the published DMARC record: any policy of the owner's is theirs to choose, but the
 * report addresses the installation names must be among its `rua=`, or no report comes back.
 */
export function checkDmarc(record: DnsRecord, texts: string[]): PolicyCheck {
  const published = texts.filter((t) => /^v=DMARC1(?:\s*;|\s*$)/i.test(t.trim()));
  if (published.length === 0) return { found: false, reason: 'absent', problem: 'no v=DMARC1 TXT record' };
  if (published.length > 1) {
    return {
      found: false,
      reason: 'mismatch',
      problem: `${published.length} DMARC records: receivers ignore them all`,
    };
  }
  const rua = (text: string) =>
    (tag(text, 'rua') ?? '')
      .split(',')
      .map((uri) => uri.trim().replace(/!.*$/, '').toLowerCase())
      .filter(Boolean);
  const have = new Set(rua(published[0]!));
  const lacking = rua(record.value).filter((uri) => !have.has(uri));
  if (lacking.length === 0) return { found: true };
  return {
    found: false,
    reason: 'mismatch',
    problem: `its rua= lacks ${lacking.join(', ')}, so aggregate reports do not reach the installation`,
  };
}

/** The terms of the suggested record to look for: its includes and address ranges. */
function wanted(value: string): string[] {
  return value
    .split(/\s+/)
    .slice(1)
    .filter((term) => /^(include|ip4|ip6):/i.test(term));
}

function splitTerm(term: string): [string, string | undefined] {
  const colon = term.indexOf(':');
  return colon < 0
    ? [term.toLowerCase(), undefined]
    : [term.slice(0, colon).toLowerCase(), term.slice(colon + 1)];
}

/** `v=spf1 -all` or `~all` with no mechanism before it: every sender fails. */
function authorisesNobody(text: string): boolean {
  const terms = text.split(' ').slice(1);
  const mechanisms = terms.filter((t) => !/^[a-z][a-z0-9_.-]*=/i.test(t));
  return (
    mechanisms.length === 1 && /^[-~]all$/i.test(mechanisms[0]!) && !terms.some((t) => /^redirect=/i.test(t))
  );
}

/** The published record with `add` put before its `all` (or `redirect=`), where they take effect. */
function merge(current: string, add: string[]): string {
  const terms = current.split(' ');
  const at = terms.findIndex((t) => /^[-~?+]?all$/i.test(t) || /^redirect=/i.test(t));
  if (at < 0) return [...terms, ...add].join(' ');
  return [...terms.slice(0, at), ...add, ...terms.slice(at)].join(' ');
}

/** The first and last address of a range (both must pass: a record may cover part of it). */
function rangeEnds(range: string): string[] {
  if (!range.includes('/')) return [range];
  const v6 = range.includes(':');
  const first = (v6 ? ipaddr.IPv6 : ipaddr.IPv4).networkAddressFromCIDR(range).toString();
  const last = (v6 ? ipaddr.IPv6 : ipaddr.IPv4).broadcastAddressFromCIDR(range).toString();
  return first === last ? [first] : [first, last];
}

/** The resolver with `domain`'s SPF answered as the probe address alone. */
function answeringInclude(resolver: PolicyResolver, domain: string): PolicyResolver {
  const target = domain.toLowerCase().replace(/\.$/, '');
  return {
    resolveTxt: async (name) =>
      name.toLowerCase().replace(/\.$/, '') === target
        ? [[`v=spf1 ip4:${INCLUDE_PROBE} -all`]]
        : resolver.resolveTxt(name),
    resolveMx: (name) => resolver.resolveMx(name),
    ...(resolver.resolve4 ? { resolve4: (name: string) => resolver.resolve4!(name) } : {}),
    ...(resolver.resolve6 ? { resolve6: (name: string) => resolver.resolve6!(name) } : {}),
    ...(resolver.resolvePtr ? { resolvePtr: (name: string) => resolver.resolvePtr!(name) } : {}),
  };
}

/** mailauth's verdict for mail from `ip` with `domain` as envelope domain: `pass`, `softfail`, … */
async function evaluate(resolver: PolicyResolver, domain: string, ip: string): Promise<string> {
  const result = await spf({
    sender: `postmaster@${domain}`,
    ip,
    helo: domain,
    mta: 'mailplane',
    maxResolveCount: MAX_LOOKUPS,
    // MX answers are objects, as dns.promises.resolve gives them, whatever mailauth's types say.
    resolver: (name: string, type: string) => resolve(resolver, name, type) as Promise<string[]>,
  });
  const verdict = result.status.result;
  if (verdict === 'temperror') {
    throw new Error(`SPF evaluation for ${domain} failed: ${result.status.comment ?? 'temperror'}`);
  }
  const comment = result.status.comment;
  return verdict === 'permerror' && comment ? `permerror: ${comment.replace(/^[^:]*:\s*/, '')}` : verdict;
}

/** mailauth's resolver contract (dns.promises.resolve's) over the lookups this resolver has. */
async function resolve(resolver: PolicyResolver, name: string, type: string): Promise<unknown[]> {
  switch (type) {
    case 'TXT':
      return resolver.resolveTxt(name);
    case 'MX':
      return resolver.resolveMx(name);
    case 'A':
      if (resolver.resolve4) return resolver.resolve4(name);
      break;
    case 'AAAA':
      if (resolver.resolve6) return resolver.resolve6(name);
      break;
    case 'PTR':
      if (resolver.resolvePtr) return resolver.resolvePtr(name);
      break;
  }
  throw Object.assign(new Error(`no ${type} lookup`), { code: 'ENODATA' });
}

/** The value of `name=` in a `k=v; k=v` record. */
function tag(text: string, name: string): string | undefined {
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim().toLowerCase() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
