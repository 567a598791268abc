// Tells whether an open or a click was a person's or a machine's: a pure decision on the fetch
// (its address, user agent, method, how soon after sending it came and what else of the message
// was fetched around it) against the signals of api/machine-signals.json, with every tunable a
// setting (lib/tracking-config.ts). classifyFetch has the shape of sender/outcome.ts — no clock, no
// I/O; loadMachineSignals reads and checks the lists once, when the api starts.
//
// The signals, in the order they are asked (the first that holds is the reason):
//   apple-privacy-protection  Apple's proxy networks, or their bare `Mozilla/5.0` request
//   gmail-image-proxy         Gmail's image proxy user agent, or an open from Google's networks
//   scanner-user-agent        a gateway that names itself, an HTTP library, a headless browser,
//                             or no user agent at all
//   head-request              a HEAD: scanners check a link, browsers follow it
//   scanner-network           a link-scanning gateway's published network
//   soon-after-sending        a click within scanSeconds of sending: the gateway taking the mail in
//   all-links-at-once         burstLinks different links of one message within burstSeconds

import { readFileSync } from 'node:fs';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import type { TrackingConfig } from '../lib/tracking-config.js';
import { UserError } from '../lib/user-error.js';
import shipped from './machine-signals.json' with { type: 'json' };

export const MACHINE_REASONS = [
  'apple-privacy-protection',
  'gmail-image-proxy',
  'scanner-user-agent',
  'head-request',
  'scanner-network',
  'soon-after-sending',
  'all-links-at-once',
] as const;
export type MachineReason = (typeof MACHINE_REASONS)[number];

export interface FetchFacts {
  kind: 'open' | 'click';
  method: string;
  /** The client's address, as express's trust proxy setting makes it out. */
  ip: string | undefined;
  userAgent: string | undefined;
  /** Seconds from the message's sending to this fetch. */
  secondsSinceSent: number;
  /** Different links of the message clicked within burstSeconds of this click, this one included. */
  linksAround: number;
}

export interface Verdict {
  machine: boolean;
  reason?: MachineReason;
  /** For scanner-network: which gateway's. */
  network?: string;
}

const cidrs = z.array(z.string().refine((c) => ipaddr.isValidCIDR(c), 'must be a CIDR such as 17.0.0.0/8'));
const patterns = z.array(
  z.string().refine((p) => {
    try {
      new RegExp(p, 'i');
      return true;
    } catch {
      return false;
    }
  }, 'must be a regular expression'),
);

/** The shape of machine-signals.json, and of a file given in MAILPLANE_TRACKING_SIGNALS_FILE. */
const SignalsFile = z.object({
  apple: z.object({ note: z.string().optional(), cidrs, userAgents: patterns }),
  google: z.object({ note: z.string().optional(), cidrs, userAgents: patterns }),
  scanners: z.object({
    note: z.string().optional(),
    userAgents: patterns,
    networks: z.record(z.string(), cidrs),
  }),
});

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** The signals, compiled once per process. */
export interface MachineSignals {
  apple: { ranges: Range[]; userAgent: RegExp | undefined };
  google: { ranges: Range[]; userAgent: RegExp | undefined };
  scanners: { userAgent: RegExp | undefined; networks: { name: string; ranges: Range[] }[] };
}

/**
 * The shipped signals, or those of `file`; a file that is not valid is a UserError naming each
 * fault, so that the api refuses to start rather than classify by half a list.
 *
 *   const signals = loadMachineSignals(config.tracking.signalsFile);
 */
export function loadMachineSignals(file?: string): MachineSignals {
  let raw: unknown = shipped;
  if (file) {
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new UserError(`MAILPLANE_TRACKING_SIGNALS_FILE ${file}: ${(err as Error).message}`);
    }
  }
  const parsed = SignalsFile.safeParse(raw);
  if (!parsed.success) {
    const faults = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new UserError(
      `MAILPLANE_TRACKING_SIGNALS_FILE ${file ?? '(shipped)'}:\n  - ${faults.join('\n  - ')}`,
    );
  }
  const s = parsed.data;
  return {
    apple: { ranges: s.apple.cidrs.map(range), userAgent: anyOf(s.apple.userAgents) },
    google: { ranges: s.google.cidrs.map(range), userAgent: anyOf(s.google.userAgents) },
    scanners: {
      userAgent: anyOf(s.scanners.userAgents),
      networks: Object.entries(s.scanners.networks).map(([name, list]) => ({
        name,
        ranges: list.map(range),
      })),
    },
  };
}

function range(cidr: string): Range {
  return ipaddr.parseCIDR(cidr);
}

function anyOf(list: string[]): RegExp | undefined {
  return list.length === 0 ? undefined : new RegExp(list.map((p) => `(?:${p})`).join('|'), 'i');
}

function within(ip: ipaddr.IPv4 | ipaddr.IPv6 | undefined, ranges: Range[]): boolean {
  if (!ip) return false;
  return ranges.some(([net, bits]) => net.kind() === ip.kind() && ip.match(net, bits));
}

/** An address as express gives it (`::ffff:17.0.0.1` for IPv4 on a dual-stack socket), parsed. */
function parseIp(ip: string | undefined): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (!ip || !ipaddr.isValid(ip)) return undefined;
  return ipaddr.process(ip);
}

/**
 * A person's fetch, or a machine's and why.
 *
 *   classifyFetch({ kind: 'open', method: 'GET', ip: '17.58.1.2', userAgent: 'Mozilla/5.0',
 *     secondsSinceSent: 3, linksAround: 0 }, signals, tunables)
 *   // { machine: true, reason: 'apple-privacy-protection' }
 */
export function classifyFetch(
  f: FetchFacts,
  signals: MachineSignals,
  tunables: Pick<TrackingConfig, 'scanSeconds' | 'burstLinks'>,
): Verdict {
  const ip = parseIp(f.ip);
  const ua = (f.userAgent ?? '').trim();
  const machine = (reason: MachineReason, network?: string): Verdict =>
    network ? { machine: true, reason, network } : { machine: true, reason };

  if (within(ip, signals.apple.ranges) || signals.apple.userAgent?.test(ua)) {
    return machine('apple-privacy-protection');
  }
  if (signals.google.userAgent?.test(ua) || (f.kind === 'open' && within(ip, signals.google.ranges))) {
    return machine('gmail-image-proxy');
  }
  if (ua === '' || signals.scanners.userAgent?.test(ua)) return machine('scanner-user-agent');
  if (f.method === 'HEAD') return machine('head-request');
  const network = ip && signals.scanners.networks.find((n) => within(ip, n.ranges));
  if (network) return machine('scanner-network', network.name);
  if (f.kind === 'click') {
    if (tunables.scanSeconds > 0 && f.secondsSinceSent < tunables.scanSeconds) {
      return machine('soon-after-sending');
    }
    if (tunables.burstLinks > 0 && f.linksAround >= tunables.burstLinks) return machine('all-links-at-once');
  }
  return { machine: false };
}
