// The installation's side of the DNS records each sending domain lists (lib/dns-records.ts): what
// SPF must authorise, which is where Mailplane's mail leaves from (a relay's published SPF, or the
// cluster's egress addresses), and where DMARC aggregate reports go. Only the platform team knows
// these; read once by every process, so that the api's list and the operator's check agree.

import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { AddressError, normalizeAddress } from './address.js';

export interface DnsSettings {
  /**
   * Domains whose SPF record authorises the relay (MAILPLANE_SPF_INCLUDE, comma-separated), each
   * one `include:` in the SPF record, e.g. `amazonses.com`. Default none.
   */
  spfInclude: string[];
  /**
   * Addresses or CIDR ranges mail leaves the cluster from in direct delivery (MAILPLANE_EGRESS_IPS,
   * comma-separated; its NAT gateway's), each one `ip4:`/`ip6:` in the SPF record. Default none.
   */
  egressIps: string[];
  /**
   * Addresses DMARC aggregate reports are sent to (MAILPLANE_DMARC_RUA, comma-separated), the
   * `rua=mailto:` of each domain's suggested DMARC record. Default none: no reports come back.
   */
  dmarcRua: string[];
}

/** A host name as SPF's include takes it: labels may start with `_` (`_spf.google.com`). */
const SPF_DOMAIN =
  /^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

function list(raw: string | undefined): string[] {
  return (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * Reads the three settings, adding what is wrong with them to `problems` (readConfig's list).
 *
 *   readDnsSettings({ MAILPLANE_SPF_INCLUDE: 'amazonses.com' }, problems).spfInclude  // ['amazonses.com']
 */
export function readDnsSettings(env: Record<string, string | undefined>, problems: string[]): DnsSettings {
  const spfInclude = list(env.MAILPLANE_SPF_INCLUDE).map((entry) =>
    entry.replace(/^include:/i, '').toLowerCase(),
  );
  for (const domain of spfInclude) {
    if (!SPF_DOMAIN.test(domain)) {
      problems.push(`MAILPLANE_SPF_INCLUDE must list domain names such as amazonses.com, got "${domain}"`);
    }
  }

  const egressIps: string[] = [];
  for (const entry of list(env.MAILPLANE_EGRESS_IPS)) {
    const range = cidr(entry);
    if (range) egressIps.push(range);
    else problems.push(`MAILPLANE_EGRESS_IPS must list IP addresses or CIDR ranges, got "${entry}"`);
  }

  const dmarcRua: string[] = [];
  for (const entry of list(env.MAILPLANE_DMARC_RUA)) {
    const address = entry.replace(/^mailto:/i, '');
    try {
      const normalized = normalizeAddress(address);
      // A DMARC URI list is ASCII, and `!` and `,` separate its parts (RFC 7489 §6.4).
      if (/[^\x21-\x7e]|[!,;]/.test(normalized)) throw new AddressError('not usable in a DMARC record');
      dmarcRua.push(normalized);
    } catch {
      problems.push(
        `MAILPLANE_DMARC_RUA must list email addresses such as dmarc@example.com, got "${entry}"`,
      );
    }
  }
  return { spfInclude, egressIps, dmarcRua };
}

/** `203.0.113.5`, `203.0.113.0/24` or `2001:db8::/48`, normalised; undefined when it is none. */
function cidr(entry: string): string | undefined {
  const [address = '', prefix, ...rest] = entry.split('/');
  // isIP, not ipaddr.parse alone, which also takes `127.1` and hex forms that SPF does not.
  const family = isIP(address);
  if (!family || rest.length > 0) return undefined;
  const canonical = ipaddr.parse(address).toString();
  if (prefix === undefined) return canonical;
  const bits = Number(prefix);
  if (!/^\d{1,3}$/.test(prefix) || bits > (family === 4 ? 32 : 128)) return undefined;
  return `${canonical}/${bits}`;
}
