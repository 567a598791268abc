// SMTP sessions of direct delivery, limited per destination IP address. Receivers throttle by the
// address a sender connects to, whatever MX name led there: two MX names on one IP are one
// receiver, and share one limit. Sessions carry many messages each; one that is idle is reused for
// the same parameters (`key`: EHLO name, MX name, TLS requirement), closed after IDLE_MS, or closed
// at once when another key waits for a slot at its IP.

/** A session the pool can keep: it says when it has ended, whoever ended it. */
export interface Poolable {
  /** False once it has ended or must not carry another message. */
  readonly reusable: boolean;
  /** Ends it (QUIT); onEnd's callback follows. */
  close(): void;
  /** Registers the callback called once when it has ended, by close() or by the server. */
  onEnd(callback: () => void): void;
}

export interface IpPool<S extends Poolable> {
  /**
   * Runs `use` on a session to `ip` for `key`: an idle one, a new one from `open` while the IP is
   * under its limit, or the first one freed. A session `use` leaves reusable goes back to the pool.
   */
  withSession<T>(
    ip: string,
    key: string,
    open: () => Promise<S>,
    use: (session: S) => Promise<T>,
  ): Promise<T>;
  /** Sessions open to `ip` now, busy or idle (for tests and the log). */
  openTo(ip: string): number;
  /** Closes every idle session and every busy one once it is done; call once nothing sends. */
  close(): void;
}

/**
 * A session idle this long is closed. Long enough to catch the next message of a burst, short
 * enough not to hold a receiver's connection slots (and our file descriptors) for nothing.
 */
const IDLE_MS = 15_000;

interface IpState<S> {
  /** Sessions open or being opened. */
  open: number;
  idle: { session: S; key: string; timer: NodeJS.Timeout }[];
  /** Callers waiting for a session or a slot, first come first served. */
  waiting: (() => void)[];
}

/**
 * Creates a pool allowing `limit` sessions per IP.
 *
 *   const pool = createIpPool<Session>(5);
 *   await pool.withSession('192.0.2.25', 'mta.example|mx1.example.org|tls', open, (s) => s.send(m));
 */
export function createIpPool<S extends Poolable>(limit: number): IpPool<S> {
  const ips = new Map<string, IpState<S>>();
  let closed = false;

  const stateOf = (ip: string) => {
    let state = ips.get(ip);
    if (!state) ips.set(ip, (state = { open: 0, idle: [], waiting: [] }));
    return state;
  };
  const forget = (ip: string, state: IpState<S>) => {
    if (state.open === 0 && state.waiting.length === 0) ips.delete(ip);
  };
  const wakeOne = (state: IpState<S>) => state.waiting.shift()?.();

  /** Takes a session, or the slot to open one; undefined when the caller has to wait. */
  const take = (state: IpState<S>, key: string): { session: S } | { slot: true } | undefined => {
    const index = state.idle.findIndex((entry) => entry.key === key && entry.session.reusable);
    if (index >= 0) {
      const [entry] = state.idle.splice(index, 1);
      clearTimeout(entry!.timer);
      return { session: entry!.session };
    }
    if (state.open < limit) {
      state.open++;
      return { slot: true };
    }
    // At the limit with sessions idle for other keys (another MX name at this IP): close one, so
    // that its slot comes free for this caller (its onEnd wakes the first waiter).
    const other = state.idle.shift();
    if (other) {
      clearTimeout(other.timer);
      other.session.close();
      // Its end may have been reported at once.
      if (state.open < limit) {
        state.open++;
        return { slot: true };
      }
    }
    return undefined;
  };

  const release = (state: IpState<S>, key: string, session: S) => {
    if (closed || !session.reusable) {
      session.close();
      return;
    }
    const timer = setTimeout(() => {
      const index = state.idle.findIndex((entry) => entry.session === session);
      if (index >= 0) state.idle.splice(index, 1);
      session.close();
    }, IDLE_MS);
    timer.unref();
    state.idle.push({ session, key, timer });
    wakeOne(state);
  };

  return {
    async withSession(ip, key, open, use) {
      if (closed) throw Object.assign(new Error('the transport is closed'), { code: 'ECONNECTION' });
      const state = stateOf(ip);
      let taken = take(state, key);
      // Each session released or ended wakes one waiter; one beaten to it by a newcomer waits again.
      while (!taken) {
        await new Promise<void>((resolve) => state.waiting.push(resolve));
        taken = take(state, key);
      }
      let session: S;
      if ('session' in taken) session = taken.session;
      else {
        try {
          session = await open();
        } catch (err) {
          state.open--;
          wakeOne(state);
          forget(ip, state);
          throw err;
        }
        session.onEnd(() => {
          state.open--;
          const index = state.idle.findIndex((entry) => entry.session === session);
          if (index >= 0) {
            clearTimeout(state.idle[index]!.timer);
            state.idle.splice(index, 1);
          }
          wakeOne(state);
          forget(ip, state);
        });
      }
      try {
        return await use(session);
      } finally {
        release(state, key, session);
      }
    },
    openTo: (ip) => ips.get(ip)?.open ?? 0,
    close() {
      closed = true;
      for (const state of ips.values()) {
        for (const { session, timer } of state.idle.splice(0)) {
          clearTimeout(timer);
          session.close();
        }
      }
    },
  };
}
