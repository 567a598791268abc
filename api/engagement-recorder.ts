// Records opens and clicks off the request path: the tracking routes hand each fetch here and
// answer at once, and the fetches are classified (api/machine-fetch.ts) and written in groups
// through the state machine (lib/db/transitions.ts recordEngagements), one statement for as many
// as arrived together (lib/group-commit.ts) — so that a scanner fetching every link of a thousand
// messages costs a few statements, not a transaction each, and the accept path keeps its
// connections.
//
// A click is held for the burst window before it is classified, so that every click of a burst
// is seen by the signal that spots it, the first ones included; an open needs no wait. The same
// fetch again from the same client within REPEAT_MS is the same event. What is held lives in
// memory: an api that is killed loses the last seconds of opens and clicks (close() writes them
// on a shutdown), and under a flood beyond MAX_HELD new fetches are counted as lost
// (mailplane_tracking_lost_total) rather than held, so that memory stays bounded.

import { hash } from 'node:crypto';
import type { Engagement, Queryable } from '../lib/db/transitions.js';
import { recordEngagements } from '../lib/db/transitions.js';
import { createGroupCommitter } from '../lib/group-commit.js';
import type { Logger } from '../lib/log.js';
import type { Metrics } from '../lib/metrics.js';
import type { TrackingConfig } from '../lib/tracking-config.js';
import { classifyFetch, type MachineSignals } from './machine-fetch.js';

/** One fetch of a pixel or a tracked link, as the route saw it. */
export interface Fetched {
  kind: 'open' | 'click';
  messageId: string;
  /** When the message was sent (from its token), ms. */
  sentAt: number;
  /** When the fetch came, ms. */
  at: number;
  /** A click's URL. */
  link?: string;
  method: string;
  ip: string | undefined;
  userAgent: string | undefined;
}

export interface EngagementRecorder {
  record(fetch: Fetched): void;
  /** Writes everything held and waits for it. */
  close(): Promise<void>;
}

/**
 * Fetches held or being written at most; a flood past this is dropped, not queued without end.
 * More than one api answers in a burst window at full speed (bench/tracking.ts: some 16,000 in
 * 2 s), and with links and user agents of a few hundred bytes, tens of megabytes at most.
 */
const MAX_HELD = 20_000;
/** Events in one statement: the size at which the accept path's statement stops gaining. */
const MAX_GROUP = 500;
/** A user agent is stored as far as anyone reads one. */
const MAX_USER_AGENT = 512;
/**
 * Held clicks are looked at no more often than this: each look walks what is held and remembered,
 * and under a burst a click comes due every millisecond.
 */
const FLUSH_EVERY_MS = 200;
/** Clicks of one message a burst is judged on: a scanner fetches tens of links, not thousands. */
const MAX_RECENT_PER_MESSAGE = 200;
/**
 * The same fetch again from the same client this soon (a double click, a proxy's retry, a token
 * replayed in a loop) is the same open or click: one event, not one per request.
 */
const REPEAT_MS = 2000;

/**
 * Creates the recorder; `now` may be injected as a test's clock.
 *
 *   const recorder = createEngagementRecorder({ pool, signals, tunables: config.tracking, log });
 *   recorder.record({ kind: 'open', messageId, sentAt, at: Date.now(), method: 'GET', ip, userAgent });
 */
export function createEngagementRecorder(deps: {
  pool: Queryable;
  signals: MachineSignals;
  tunables: Pick<TrackingConfig, 'scanSeconds' | 'burstLinks' | 'burstSeconds'>;
  log: Logger;
  metrics?: Pick<Metrics, 'trackingEvents' | 'trackingLost'>;
  now?: () => number;
}): EngagementRecorder {
  const { signals, tunables, log } = deps;
  const now = deps.now ?? Date.now;
  const holdMs = tunables.burstLinks > 0 ? tunables.burstSeconds * 1000 : 0;
  const writer = createGroupCommitter<Engagement>(
    async (items) => void (await recordEngagements(deps.pool, items)),
    { maxInFlight: 2, maxGroup: MAX_GROUP },
  );
  /** Clicks waiting for their burst window to pass, oldest first. */
  const held: Fetched[] = [];
  /** Clicks of each message within the last burst window, for the clicks that follow them. */
  const recent = new Map<string, Fetched[]>();
  /** When each fetch was last seen, by message, kind, link and client; pruned as `recent` is. */
  const seen = new Map<string, number>();
  let writing = 0;
  let dropped = 0;
  let timer: NodeJS.Timeout | undefined;

  const write = (fetches: Fetched[]) => {
    const events = fetches.map((f) => engagement(f, linksAround(f)));
    for (const e of events) {
      deps.metrics?.trackingEvents.inc({ type: e.type, machine: String(e.detail.machine) });
    }
    // A burst's clicks come due together: in groups the committer can pace, not one statement.
    for (let i = 0; i < events.length; i += MAX_GROUP) {
      const group = events.slice(i, i + MAX_GROUP);
      writing += group.length;
      void writer
        .write(group)
        .catch((err: unknown) => {
          deps.metrics?.trackingLost.inc({ reason: 'write' }, group.length);
          log.error('could not record opens and clicks; they are lost', {
            err: err as Error,
            count: group.length,
          });
        })
        .finally(() => (writing -= group.length));
    }
  };

  /** Different links of the message clicked within the window either side of `f`. */
  const linksAround = (f: Fetched): number => {
    if (f.kind !== 'click') return 0;
    const windowMs = tunables.burstSeconds * 1000;
    const links = new Set<string>();
    for (const other of recent.get(f.messageId) ?? []) {
      if (Math.abs(other.at - f.at) <= windowMs && other.link !== undefined) links.add(other.link);
      // Past the threshold the count says nothing more.
      if (links.size >= tunables.burstLinks) break;
    }
    return links.size;
  };

  const engagement = (f: Fetched, around: number): Engagement => {
    const verdict = classifyFetch(
      {
        kind: f.kind,
        method: f.method,
        ip: f.ip,
        userAgent: f.userAgent,
        secondsSinceSent: (f.at - f.sentAt) / 1000,
        linksAround: around,
      },
      signals,
      tunables,
    );
    return {
      type: f.kind === 'open' ? 'opened' : 'clicked',
      messageId: f.messageId,
      detail: {
        machine: verdict.machine,
        ...(verdict.reason ? { machine_reason: verdict.reason } : {}),
        ...(verdict.network ? { network: verdict.network } : {}),
        ...(f.link !== undefined ? { link: f.link } : {}),
        ...(f.ip ? { ip: f.ip } : {}),
        ...(f.userAgent ? { user_agent: f.userAgent } : {}),
      },
    };
  };

  /** Classifies and writes the clicks whose window has passed (all of them when `all`). */
  const flush = (all = false) => {
    timer = undefined;
    const due = all ? Infinity : now() - holdMs;
    // Held in the order they came, so the ready ones lead.
    let ready = 0;
    while (ready < held.length && held[ready]!.at <= due) ready++;
    write(held.splice(0, ready));
    // What no later click can be in a burst with any more is forgotten.
    const forget = now() - 2 * holdMs;
    for (const [id, clicks] of recent) {
      const kept = clicks.filter((c) => c.at > forget);
      if (kept.length === 0) recent.delete(id);
      else if (kept.length !== clicks.length) recent.set(id, kept);
    }
    for (const [key, at] of seen) if (at <= now() - REPEAT_MS) seen.delete(key);
    if (held.length > 0 && !all) schedule();
  };

  const schedule = () => {
    if (timer) return;
    const wait = Math.max(FLUSH_EVERY_MS, held[0]!.at + holdMs - now());
    timer = setTimeout(() => flush(), wait);
  };

  return {
    record(given) {
      // A user agent may be kilobytes long; what is kept of it is what an event stores.
      const fetch = given.userAgent
        ? { ...given, userAgent: given.userAgent.slice(0, MAX_USER_AGENT) }
        : given;
      // The repeat check remembers a digest, not the link and user agent themselves.
      const key = hash(
        'sha256',
        `${fetch.kind}\n${fetch.messageId}\n${fetch.link ?? ''}\n${fetch.ip ?? ''}\n${fetch.userAgent ?? ''}`,
        'base64',
      );
      const last = seen.get(key);
      if (last !== undefined && fetch.at - last < REPEAT_MS) return;
      if (held.length + writing >= MAX_HELD) {
        deps.metrics?.trackingLost.inc({ reason: 'overflow' });
        // Logged once per thousand: a flood must not also flood the log.
        if (dropped++ % 1000 === 0) log.warn('opens and clicks dropped: too many waiting', { dropped });
        return;
      }
      seen.set(key, fetch.at);
      if (seen.size > MAX_HELD) seen.delete(seen.keys().next().value!);
      if (fetch.kind === 'open' || holdMs === 0) {
        // With the burst signal off (holdMs 0), a click needs nothing remembered either.
        write([fetch]);
        return;
      }
      remember(recent, fetch);
      held.push(fetch);
      schedule();
    },
    async close() {
      if (timer) clearTimeout(timer);
      flush(true);
      await writer.drain();
    },
  };
}

function remember(recent: Map<string, Fetched[]>, fetch: Fetched): void {
  const clicks = recent.get(fetch.messageId);
  if (!clicks) recent.set(fetch.messageId, [fetch]);
  else if (clicks.length < MAX_RECENT_PER_MESSAGE) clicks.push(fetch);
}
