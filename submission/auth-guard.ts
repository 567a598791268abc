// Bounds on guessing keys over AUTH. A key is 32 random bytes, so guessing one is hopeless; what
// these bound is the work a client that keeps trying makes the listener and Postgres do, and the
// noise it makes in their logs. A connection gets a few failures, then is closed; an address that
// keeps failing, over however many connections, has every AUTH it sends wait first, for as long
// as its failures keep coming.

import { TtlCache } from '../lib/ttl-cache.js';

/** Failed AUTH attempts on one connection: the last of them is answered 421 and the connection closed. */
export const MAX_AUTH_FAILURES_PER_CONNECTION = 3;
/**
 * Failed AUTH attempts from one address before each AUTH from it waits AUTH_DELAY_MS: enough for
 * an application restarted with a wrong key a few times, on every pod of a node, to go unslowed.
 */
export const MAX_AUTH_FAILURES_PER_ADDRESS = 10;
/** An address's failures are forgotten after this long without one. */
export const AUTH_FAILURE_WINDOW_MS = 15 * 60_000;
/** How long each AUTH of an address over its failures waits: a few attempts a second at most per connection. */
export const AUTH_DELAY_MS = 3_000;
/** Addresses remembered at once; the oldest go first. */
const MAX_ADDRESSES = 10_000;

export interface AuthGuard {
  /** Milliseconds the next AUTH from `address` waits before it is looked at; 0 for most. */
  delayFor(address: string): number;
  /** Records a failure; true when the connection has had its last one and is to be closed. */
  failed(connectionId: string, address: string): boolean;
  /** Forgets a closed connection. */
  forget(connectionId: string): void;
}

/**
 * One guard per process, shared by its listeners.
 *
 *   const guard = createAuthGuard();
 *   await sleep(guard.delayFor(session.remoteAddress));
 */
export function createAuthGuard(options: { delayMs?: number } = {}): AuthGuard {
  const delayMs = options.delayMs ?? AUTH_DELAY_MS;
  const byAddress = new TtlCache<string, number>(AUTH_FAILURE_WINDOW_MS, MAX_ADDRESSES);
  const byConnection = new Map<string, number>();
  return {
    delayFor: (address) => ((byAddress.get(address) ?? 0) >= MAX_AUTH_FAILURES_PER_ADDRESS ? delayMs : 0),
    failed(connectionId, address) {
      byAddress.set(address, (byAddress.get(address) ?? 0) + 1);
      const count = (byConnection.get(connectionId) ?? 0) + 1;
      byConnection.set(connectionId, count);
      return count >= MAX_AUTH_FAILURES_PER_CONNECTION;
    },
    forget: (connectionId) => void byConnection.delete(connectionId),
  };
}
