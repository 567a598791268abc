// Where mail for a domain goes: its MX hosts by preference (RFC 5321 §5.1, RFC 7505 null MX) and
// each host's addresses, looked up through the configured DNS servers. The transport connects to
// the addresses itself, so that its connection limits count destination IPs, not names.

import type { MxRecord } from 'node:dns';
import { isIP } from 'node:net';

export type MxResolver = (domain: string) => Promise<MxRecord[]>;

/** The part of node:dns/promises' Resolver that addresses need. */
export interface AddressResolver {
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

/** MX hosts tried for one message; later ones are rarely better than a retry later. */
const MAX_MX_HOSTS = 5;

/** Lookup errors that are an answer (no such name, no such record), not a resolver in trouble. */
const NOT_FOUND = 'ENOTFOUND';
const NO_DATA = 'ENODATA';

/**
 * MX hosts by preference, equal preferences shuffled (RFC 5321 §5.1); the domain itself if no MX.
 *
 *   await mxHosts((d) => resolver.resolveMx(d), 'example.org')   // ['mx1.example.org', 'mx2.example.org']
 */
export async function mxHosts(resolveMx: MxResolver, domain: string): Promise<string[]> {
  let records: MxRecord[];
  try {
    records = await resolveMx(domain);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === NOT_FOUND) {
      throw smtpError('ENOTFOUND', `550 5.1.2 Recipient domain ${domain} does not exist`);
    }
    // No MX records: the implicit MX is the domain's own address (RFC 5321 §5.1).
    if (code === NO_DATA) return [domain];
    throw Object.assign(new Error(`MX lookup of ${domain} failed: ${code}`), {
      code: 'EDNS',
      originalCode: code,
    });
  }
  if (records.length === 0) return [domain];
  // RFC 7505: a single "." MX says the domain accepts no mail at all.
  if (records.some((r) => r.exchange === '' || r.exchange === '.')) {
    throw smtpError('ENULLMX', `556 5.1.10 Recipient domain ${domain} does not accept mail (null MX)`);
  }
  return records
    .map((r) => ({ ...r, tieBreak: Math.random() }))
    .sort((a, b) => a.priority - b.priority || a.tieBreak - b.tieBreak)
    .slice(0, MAX_MX_HOSTS)
    .map((r) => r.exchange.toLowerCase().replace(/\.$/, ''));
}

/**
 * A host's IPv4 and IPv6 addresses, IPv4 first (most clusters have no IPv6 egress, and an address
 * that cannot be reached costs a connection timeout); an IP literal is its own address. Fails
 * with ENOTFOUND when the host has neither, EDNS when the resolver failed.
 *
 *   await addressesOf(resolver, 'mx1.example.org')   // ['192.0.2.25', '2001:db8::25']
 */
export async function addressesOf(resolver: AddressResolver, host: string): Promise<string[]> {
  if (isIP(host)) return [host];
  const absent = (err: NodeJS.ErrnoException): string[] => {
    if (err.code === NO_DATA || err.code === NOT_FOUND) return [];
    throw Object.assign(new Error(`address lookup of ${host} failed: ${err.code}`), {
      code: 'EDNS',
      originalCode: err.code,
    });
  };
  const [v4, v6] = await Promise.all([
    resolver.resolve4(host).catch(absent),
    resolver.resolve6(host).catch(absent),
  ]);
  const addresses = [...v4, ...v6];
  if (addresses.length === 0) {
    throw Object.assign(new Error(`${host} has no A or AAAA record`), { code: NOT_FOUND, hostname: host });
  }
  return addresses;
}

/** An error shaped like nodemailer's when a server rejects: callers branch on responseCode. */
export function smtpError(code: string, response: string): Error {
  const responseCode = Number(response.slice(0, 3));
  return Object.assign(new Error(response), { code, response, responseCode, permanent: responseCode >= 500 });
}
