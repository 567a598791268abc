// MTA-STS (RFC 8461): a recipient domain's promise that its MX hosts speak TLS with a certificate
// a public CA vouches for, so that a sender can refuse the downgrade an attacker on the path makes
// by stripping STARTTLS or presenting a certificate of their own.
//
// Discovery: a TXT record `_mta-sts.<domain>` = `v=STSv1; id=…`, looked up through the configured
// DNS servers. Policy: fetched over HTTPS (a valid certificate for `mta-sts.<domain>`, no
// redirects, 200 text/plain only) from https://mta-sts.<domain>/.well-known/mta-sts.txt, cached for
// its max_age, and fetched again when the record's id changes. A cached policy outlives a missing
// record or a failed fetch until it expires: that is what makes the promise stick (§5.1).
//
// The cache is the process's memory: a restarted sender trusts on first use again, as RFC 8461
// allows. Fetch and policy errors are reported with their RFC 8460 result types.

import { request } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { isPublicAddress } from '../lib/net-policy.js';
import { addressesOf } from './mx.js';
import { isCertificateError, type TlsResultType } from './tls-report.js';

export type StsMode = 'enforce' | 'testing' | 'none';

export interface StsPolicy {
  /** The `id` of the TXT record the policy was fetched under. */
  id: string;
  mode: StsMode;
  /** MX patterns: `mx.example.com`, or `*.example.com` for one label more. Lower case. */
  mx: string[];
  maxAgeSeconds: number;
}

/** Why a policy could not be had (a cached one may still apply). */
export interface PolicyFailure {
  result: TlsResultType;
  reason: string;
}

/** The part of node:dns/promises' Resolver MTA-STS needs. */
export interface StsResolver {
  resolveTxt(name: string): Promise<string[][]>;
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

export interface MtaStsOptions {
  resolver: StsResolver;
  /** HTTPS port of the policy host. Default 443, which RFC 8461 fixes (other values are for tests). */
  port?: number;
  /** Policy hosts may be at private or loopback addresses (tests). Default false, as for MX hosts. */
  allowPrivate?: boolean;
  now?: () => number;
  /** Called once per failed lookup or fetch, for the TLS report and the log. */
  onFailure?: (domain: string, failure: PolicyFailure) => void;
}

export interface MtaSts {
  /**
   * The policy that applies to mail for `domain` (lower-case A-labels) now, fresh or cached;
   * undefined when the domain has none in force (none published, `mode: none`, or none could be had).
   */
  policyFor(domain: string): Promise<StsPolicy | undefined>;
}

/** RFC 8461 §3.2: max_age is at most a year. */
const MAX_AGE_LIMIT_SECONDS = 31_557_600;
/**
 * How long one TXT lookup answers for a domain before the next message asks again: a new policy
 * (or a new id) is seen within this, and a domain that receives a burst costs one lookup.
 */
const RECORD_RECHECK_MS = 5 * 60_000;
/** Domains whose policy (or its absence) is remembered; beyond this, the longest unchecked goes. */
const MAX_CACHED_DOMAINS = 10_000;
/** RFC 8461 §3.3 suggests a small limit on the policy body; 64 KiB is what it names. */
const MAX_POLICY_BYTES = 64 * 1024;
/** The whole fetch, DNS to last byte: a message waits for it, so it must stay short. */
const FETCH_TIMEOUT_MS = 10_000;

interface CacheEntry {
  policy?: StsPolicy;
  /** When `policy` stops applying (fetched at + max_age). */
  policyExpiresAt: number;
  /** When the TXT record was last looked up. */
  recordCheckedAt: number;
}

/**
 * Creates the policy lookup of one sender process.
 *
 *   const mtaSts = createMtaSts({ resolver: createResolver(config.dnsServers) });
 *   const policy = await mtaSts.policyFor('example.org');  // policy?.mode === 'enforce'
 */
export function createMtaSts(options: MtaStsOptions): MtaSts {
  const now = options.now ?? Date.now;
  const port = options.port ?? 443;
  // Insertion order is the order of lookups: beyond the bound, the domain looked up longest ago goes.
  const cache = new Map<string, CacheEntry>();
  const inFlight = new Map<string, Promise<CacheEntry>>();

  const remember = (domain: string, entry: CacheEntry) => {
    cache.delete(domain);
    cache.set(domain, entry);
    if (cache.size > MAX_CACHED_DOMAINS) cache.delete(cache.keys().next().value!);
  };

  async function refresh(domain: string, previous: CacheEntry | undefined): Promise<CacheEntry> {
    const at = now();
    const cached = previous?.policy && previous.policyExpiresAt > at ? previous : undefined;
    const keep = (failure?: PolicyFailure): CacheEntry => {
      if (failure) options.onFailure?.(domain, failure);
      return { policy: cached?.policy, policyExpiresAt: cached?.policyExpiresAt ?? 0, recordCheckedAt: at };
    };

    let record: { id: string } | { invalid: string } | undefined;
    try {
      record = parseStsRecord(await options.resolver.resolveTxt(`_mta-sts.${domain}`));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTFOUND' && code !== 'ENODATA') {
        // The resolver failed: no verdict either way. A cached policy goes on applying.
        return keep({
          result: 'sts-policy-fetch-error',
          reason: `TXT lookup of _mta-sts.${domain} failed: ${code}`,
        });
      }
    }
    if (!record) return keep();
    if ('invalid' in record) return keep({ result: 'sts-policy-invalid', reason: record.invalid });
    // The id says whether the policy changed: same id, nothing to fetch (§3.1).
    if (cached && cached.policy!.id === record.id) return keep();

    try {
      const text = await fetchPolicy(domain, port, options.resolver, options.allowPrivate === true);
      const parsed = parsePolicy(text);
      if ('invalid' in parsed) {
        return keep({ result: 'sts-policy-invalid', reason: `policy of ${domain}: ${parsed.invalid}` });
      }
      const policy: StsPolicy = { id: record.id, ...parsed };
      return { policy, policyExpiresAt: at + policy.maxAgeSeconds * 1000, recordCheckedAt: at };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const result: TlsResultType = isCertificateError(code)
        ? 'sts-webpki-invalid'
        : 'sts-policy-fetch-error';
      return keep({
        result,
        reason: `fetching the MTA-STS policy of ${domain} failed: ${(err as Error).message}`,
      });
    }
  }

  return {
    async policyFor(domain) {
      if (isIP(domain)) return undefined;
      let entry = cache.get(domain);
      if (!entry || now() - entry.recordCheckedAt >= RECORD_RECHECK_MS) {
        // Messages to one domain at once share one lookup and one fetch.
        let pending = inFlight.get(domain);
        if (!pending) {
          pending = refresh(domain, entry).finally(() => inFlight.delete(domain));
          inFlight.set(domain, pending);
        }
        entry = await pending;
        remember(domain, entry);
      }
      const policy = entry.policy && entry.policyExpiresAt > now() ? entry.policy : undefined;
      return policy?.mode === 'none' ? undefined : policy;
    },
  };
}

/**
 * The id of a `_mta-sts` TXT answer (RFC 8461 §3.1), undefined when none of its records is one, or
 * `invalid` with the reason when the domain published more than one or a broken one.
 *
 *   parseStsRecord([['v=STSv1; id=20240101T000000;']])   // { id: '20240101T000000' }
 */
export function parseStsRecord(answer: string[][]): { id: string } | { invalid: string } | undefined {
  const records = answer.map((chunks) => chunks.join('')).filter((text) => /^v=STSv1\s*(;|$)/.test(text));
  if (records.length === 0) return undefined;
  if (records.length > 1) return { invalid: `more than one v=STSv1 TXT record` };
  const id = /(?:^|;)\s*id=([A-Za-z0-9]{1,32})\s*(?:;|$)/.exec(records[0]!)?.[1];
  return id ? { id } : { invalid: `the v=STSv1 TXT record has no valid id: "${records[0]}"` };
}

/**
 * Reads a policy file (RFC 8461 §3.2): `version: STSv1`, `mode`, `max_age`, and `mx` lines unless
 * the mode is none.
 *
 *   parsePolicy('version: STSv1\nmode: enforce\nmx: *.example.org\nmax_age: 86400\n')
 *   // { mode: 'enforce', mx: ['*.example.org'], maxAgeSeconds: 86400 }
 */
export function parsePolicy(text: string): Omit<StsPolicy, 'id'> | { invalid: string } {
  const fields = new Map<string, string[]>();
  for (const line of text.split(/\r?\n/)) {
    const match = /^([A-Za-z0-9_.-]+)[ \t]*:[ \t]*(.*?)[ \t]*$/.exec(line);
    if (!match) continue;
    const key = match[1]!.toLowerCase();
    fields.set(key, [...(fields.get(key) ?? []), match[2]!]);
  }
  const one = (key: string) => fields.get(key)?.[0];
  if (one('version') !== 'STSv1') return { invalid: 'version is not STSv1' };
  const mode = one('mode');
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') {
    return { invalid: `mode must be enforce, testing or none, got "${mode ?? ''}"` };
  }
  const maxAge = one('max_age');
  if (!maxAge || !/^\d{1,10}$/.test(maxAge) || Number(maxAge) > MAX_AGE_LIMIT_SECONDS) {
    return { invalid: `max_age must be 0 to ${MAX_AGE_LIMIT_SECONDS} seconds, got "${maxAge ?? ''}"` };
  }
  const mx = (fields.get('mx') ?? []).map((p) => p.toLowerCase().replace(/\.$/, ''));
  const pattern = /^(\*\.)?(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+[a-z0-9-]{2,63}$/;
  const bad = mx.find((p) => !pattern.test(p));
  if (bad !== undefined) return { invalid: `mx "${bad}" is not a host name or *.wildcard` };
  if (mode !== 'none' && mx.length === 0) return { invalid: `mode ${mode} lists no mx` };
  return { mode, mx, maxAgeSeconds: Number(maxAge) };
}

/**
 * Whether an MX host is one the policy names (RFC 8461 §4.1): exactly, or by a wildcard standing
 * for exactly one leftmost label.
 *
 *   mxMatches(['*.example.org'], 'mx1.example.org')       // true
 *   mxMatches(['*.example.org'], 'a.mx1.example.org')     // false
 */
export function mxMatches(patterns: readonly string[], host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return patterns.some((pattern) =>
    pattern.startsWith('*.')
      ? name.slice(name.indexOf('.') + 1) === pattern.slice(2) && name.indexOf('.') > 0
      : name === pattern,
  );
}

/** GETs the policy file: a valid certificate for mta-sts.<domain>, status 200, text/plain, no redirects. */
async function fetchPolicy(
  domain: string,
  port: number,
  resolver: StsResolver,
  allowPrivate: boolean,
): Promise<string> {
  const host = `mta-sts.${domain}`;
  // The policy host is resolved by the configured DNS servers, as the MX hosts are, and like them
  // is not fetched from a private address unless the installation allows it.
  const lookup: LookupFunction = (hostname, lookupOptions, callback) => {
    addressesOf(resolver, hostname).then(
      (found) => {
        const addresses = allowPrivate ? found : found.filter(isPublicAddress);
        if (addresses.length === 0) {
          return callback(
            Object.assign(new Error(`${hostname} has only private addresses (${found.join(', ')})`), {
              code: 'EPRIVATE',
            }),
            '',
            0,
          );
        }
        if (lookupOptions.all) {
          callback(
            null,
            addresses.map((address) => ({ address, family: isIP(address) })),
          );
        } else callback(null, addresses[0]!, isIP(addresses[0]!));
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };
  return new Promise<string>((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        path: '/.well-known/mta-sts.txt',
        method: 'GET',
        lookup,
        agent: false,
        // Certificates are checked against the system's CAs and NODE_EXTRA_CA_CERTS, for this name.
        servername: host,
        headers: { accept: 'text/plain', 'user-agent': 'mailplane' },
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      },
      (res) => {
        const type = String(res.headers['content-type'] ?? '');
        if (res.statusCode !== 200) {
          res.resume();
          // 3xx included: a policy host must not redirect (§3.3).
          return reject(new Error(`https://${host}/.well-known/mta-sts.txt answered ${res.statusCode}`));
        }
        if (!/^text\/plain\s*(;|$)/i.test(type)) {
          res.resume();
          return reject(
            new Error(`https://${host}/.well-known/mta-sts.txt is ${type || 'untyped'}, not text/plain`),
          );
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_POLICY_BYTES) {
            req.destroy(new Error(`the policy of ${domain} is larger than ${MAX_POLICY_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}
