// The settings of open and click tracking, read with the rest of the configuration (lib/config.ts)
// and reported with its other problems: whose X-Forwarded-For the api believes, the tunables of
// telling people from machines (api/machine-fetch.ts; the README's "Open and click tracking"), and
// how many opens and clicks one message stores (api/engagement-recorder.ts).

import ipaddr from 'ipaddr.js';

/**
 * Express's `trust proxy`: how many proxies in front of the api, or which addresses they have.
 * Never `true` (every hop trusted): then any client could name its own address.
 */
export type TrustProxy = false | number | string[];

export interface TrackingConfig {
  /**
   * MAILPLANE_TRUST_PROXY: the proxies whose X-Forwarded-For gives a tracking fetch's client
   * address — a hop count (`1`: the Ingress controller), or addresses and CIDRs, comma-separated
   * (`loopback`, `linklocal` and `uniquelocal` name those ranges). Default none: the connection's
   * own address, which behind an Ingress is the controller's.
   */
  trustProxy: TrustProxy;
  /**
   * MAILPLANE_TRACKING_SIGNALS_FILE: a JSON file of the networks and user agents that mark a
   * fetch as a machine's, in the shape of api/machine-signals.json, used instead of it. Default
   * the shipped file.
   */
  signalsFile: string | undefined;
  /**
   * MAILPLANE_TRACKING_SCAN_SECONDS: a click this soon after the message was sent is a link
   * scanner's (the receiving gateway fetches links as it takes the message). Default 5; 0 turns
   * the signal off.
   */
  scanSeconds: number;
  /**
   * MAILPLANE_TRACKING_BURST_LINKS: this many different links of one message clicked within
   * MAILPLANE_TRACKING_BURST_SECONDS of each other are a scanner's (a person clicks one). Default
   * 3; 0 turns the signal off.
   */
  burstLinks: number;
  /** MAILPLANE_TRACKING_BURST_SECONDS: the window of the burst signal. Default 2. */
  burstSeconds: number;
  /**
   * MAILPLANE_TRACKING_EVENTS_PER_HOUR: opens, and apart from them clicks, of one message stored
   * in one clock hour at most, over all api replicas; past it a fetch is answered as ever but not
   * stored (mailplane_tracking_capped_total), so that a token replayed from many clients cannot
   * grow a timeline, its webhooks and statistics without bound. Default 200: far above what a
   * person makes, and above a link scanner following every link of a long newsletter twice. 0:
   * no cap.
   */
  eventsPerHour: number;
}

type Env = Record<string, string | undefined>;

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * Reads the tracking settings, adding what is wrong to `problems`.
 *
 *   const tracking = readTrackingConfig(process.env, problems);
 */
export function readTrackingConfig(env: Env, problems: string[]): TrackingConfig {
  const int = (key: string, fallback: number): number => {
    const raw = env[key];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 0) {
      problems.push(`${key} must be an integer ≥ 0, got "${raw}"`);
      return fallback;
    }
    return value;
  };
  return {
    trustProxy: readTrustProxy(env.MAILPLANE_TRUST_PROXY, problems),
    signalsFile: env.MAILPLANE_TRACKING_SIGNALS_FILE || undefined,
    scanSeconds: int('MAILPLANE_TRACKING_SCAN_SECONDS', 5),
    burstLinks: int('MAILPLANE_TRACKING_BURST_LINKS', 3),
    burstSeconds: int('MAILPLANE_TRACKING_BURST_SECONDS', 2),
    eventsPerHour: int('MAILPLANE_TRACKING_EVENTS_PER_HOUR', 200),
  };
}

function readTrustProxy(raw: string | undefined, problems: string[]): TrustProxy {
  const value = (raw ?? '').trim();
  if (value === '' || value === 'false' || value === '0') return false;
  if (/^\d+$/.test(value)) return Number(value);
  const entries = value.split(',').map((entry) => entry.trim());
  const bad = entries.filter(
    (entry) => !PROXY_NAMES.has(entry) && !ipaddr.isValid(entry) && !ipaddr.isValidCIDR(entry),
  );
  if (value === 'true' || bad.length > 0) {
    problems.push(
      `MAILPLANE_TRUST_PROXY must be a number of proxies or their addresses and CIDRs (loopback, ` +
        `linklocal and uniquelocal name those ranges), not ${value === 'true' ? '"true", which would believe any client' : bad.map((b) => `"${b}"`).join(', ')}`,
    );
    return false;
  }
  return entries;
}
