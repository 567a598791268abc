// The DNS resolver of a process: the servers of MAILPLANE_DNS_SERVERS (config.dnsServers), or the
// system's. One factory, so that the operator's record checks and the sender's MX, address and
// MTA-STS lookups ask the same servers with the same patience, and a test points both at its own
// DNS server on loopback.

import { Resolver } from 'node:dns/promises';

/**
 * Per attempt; c-ares doubles it for each retry. A resolver that has not answered in seconds is
 * down, and both callers have a retry of their own (the next reconcile, the next attempt).
 */
const TIMEOUT_MS = 3_000;
const TRIES = 2;

/**
 * Creates a resolver asking `servers` (host[:port], as config.dnsServers holds them), or the
 * system's resolvers when unset.
 *
 *   const resolver = createResolver(config.dnsServers);
 *   await resolver.resolveMx('example.org');
 */
export function createResolver(servers: readonly string[] | undefined): Resolver {
  const resolver = new Resolver({ timeout: TIMEOUT_MS, tries: TRIES });
  if (servers && servers.length > 0) resolver.setServers([...servers]);
  return resolver;
}
