// Where a tenant's webhook URL may point. A URL a tenant chooses is fetched from inside the
// cluster, so by default it must be https and reach only public addresses: never loopback, a
// private network, link-local (the cloud metadata service at 169.254.169.254) or other reserved
// ranges. The api refuses at registration what can be refused from the URL alone (webhookUrlFault);
// the sender checks again, at delivery time, every address a name resolves to (sender/webhook-http.ts),
// since a name can resolve elsewhere later. MAILPLANE_WEBHOOKS_ALLOW_PRIVATE lifts both, for tests
// and `make dev`.

import { BlockList, isIP } from 'node:net';

/** Addresses no webhook may reach by default: private, loopback, link-local (cloud metadata), … */
const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  // The unspecified address, loopback, and the deprecated IPv4-compatible ::a.b.c.d.
  ['::', 96],
  // NAT64 for local use (RFC 8215): translates to whatever IPv4 network the site chose.
  ['64:ff9b:1::', 48],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['2001:db8::', 32],
  ['100::', 64],
  // Teredo: tunnels to an IPv4 address hidden (XOR-ed) in the address; no receiver needs it.
  ['2001::', 32],
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv6');
}

/** Whether `address` is one a webhook may reach without MAILPLANE_WEBHOOKS_ALLOW_PRIVATE. */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 4) return !PRIVATE.check(address, 'ipv4');
  const canonical = canonicalIpv6(address);
  if (canonical === undefined) return false;
  const groups = groupsOf(canonical);
  // A NAT64 address (64:ff9b::/96) reaches the IPv4 address in its last 32 bits, a 6to4 address
  // (2002::/16) the one in its bits 16 to 48.
  if (groups[0] === 0x64 && groups[1] === 0xff9b && groups.slice(2, 6).every((g) => g === 0)) {
    return isPublicIpv4(groups[6]!, groups[7]!);
  }
  if (groups[0] === 0x2002) return isPublicIpv4(groups[1]!, groups[2]!);
  // IPv4-translated (::ffff:0:a.b.c.d, RFC 2765): the IPv4 address in its last 32 bits too.
  if (groups.slice(0, 4).every((g) => g === 0) && groups[4] === 0xffff && groups[5] === 0) {
    return isPublicIpv4(groups[6]!, groups[7]!);
  }
  // BlockList matches an IPv4-mapped address (::ffff:a.b.c.d, dotted or not) against the IPv4 subnets.
  return !PRIVATE.check(canonical, 'ipv6');
}

function isPublicIpv4(high: number, low: number): boolean {
  return isPublicAddress([high >>> 8, high & 0xff, low >>> 8, low & 0xff].join('.'));
}

/** The eight 16-bit groups of an address in canonical form (no dotted tail). */
function groupsOf(canonical: string): number[] {
  const [head, tail] = canonical.split('::') as [string, string | undefined];
  const parse = (part: string | undefined) => (part ? part.split(':').map((g) => parseInt(g, 16)) : []);
  const [left, right] = [parse(head), parse(tail)];
  return tail === undefined
    ? left
    : [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/**
 * RFC 5952's form (lower case, the longest run of zeros compressed, no dotted tail), as WHATWG URL
 * parsing writes it, so that one pattern sees every spelling; undefined for one with a zone (%eth0).
 */
function canonicalIpv6(address: string): string | undefined {
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

/**
 * The longest webhook URL taken: browsers' and CDNs' common limit, far above any real receiver's
 * URL, and small enough that a URL never bloats a row, a log line or a request line.
 */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

/**
 * What is wrong with `url` as a webhook URL, in words that follow its name, or undefined. It
 * must be absolute, https (or http when private addresses are allowed), carry no credentials,
 * and, by default, not name an address or a host that can only be inside a network. A host name
 * passes here and is checked again, on what it resolves to, at every delivery.
 *
 *   webhookUrlFault('https://10.0.0.7/hook', { allowPrivate: false })   // 'points at a private address (10.0.0.7)'
 */
export function webhookUrlFault(url: string, options: { allowPrivate: boolean }): string | undefined {
  if (url.length > MAX_WEBHOOK_URL_LENGTH) return `must be at most ${MAX_WEBHOOK_URL_LENGTH} characters`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'must be an absolute URL (https://…)';
  }
  if (parsed.protocol !== 'https:' && !(options.allowPrivate && parsed.protocol === 'http:')) {
    return options.allowPrivate ? 'must be an https or http URL' : 'must be an https URL';
  }
  // A password in a URL ends up in logs and proxies; a receiver authenticates us by the signature.
  if (parsed.username || parsed.password) {
    return 'must not carry credentials (user:password@): verify the webhook-signature header instead';
  }
  if (options.allowPrivate) return undefined;
  // WHATWG parsing has already turned 2130706433, 0x7f.1 and the like into 127.0.0.1.
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) return isPublicAddress(host) ? undefined : `points at a private address (${host})`;
  const name = host.replace(/\.$/, '').toLowerCase();
  // RFC 6761: localhost and its subdomains are this machine.
  if (name === 'localhost' || name.endsWith('.localhost')) return `points at this machine (${host})`;
  // A single label resolves only through a resolver's search list, inside a network (a Service name).
  if (!name.includes('.')) return `must name a public host, not ${host}`;
  return undefined;
}
