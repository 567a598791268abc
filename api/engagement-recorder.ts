// Records opens and clicks off the request path: the tracking routes hand each fetch here and
// answer at once, and the fetches are classified (api/machine-fetch.ts) and written in groups
// through the state machine (lib/db/transitions.ts recordEngagements), one statement for as many
// as arrived together (lib/group-commit.ts) — so that a scanner fetching every link of a thousand
// messages costs a few statements, not a transaction each, and the accept path keeps its
// connections.
//
// A click is held for the burst window (and SHARE_GRACE_MS) before it is classified, so that every
// click of a burst is seen by the signal that spots it, the first ones included; an open needs no
// wait. The api runs as several replicas behind one Service, which spreads a scanner's fetches of
// one message over all of them, so the burst is judged on what every replica saw: each click is
// also written, on arrival and in groups, to recent_clicks (lib/db/recent-clicks.ts), and the
// clicks that come due together are judged with one grouped read of it. If Postgres does not
// answer that read within LOOKUP_TIMEOUT_MS, or refuses it, the clicks are judged on this
// replica's own view, as they were before there was a shared one, and counted
// (mailplane_tracking_burst_local_total); the tracking routes never wait on any of it.
//
// Each message stores at most eventsPerHour opens and as many clicks in a clock hour, counted over
// all replicas (engagement_counts); what is past the cap is counted (mailplane_tracking_capped_total)
// and not stored. The same fetch again from the same client within REPEAT_MS is the same event.
//
// What is lost, and when: the held clicks and the fetches not yet written live in memory, so an
// api that is killed loses the last seconds of its opens and clicks (close() writes them on a
// shutdown); the clicks it had already shared still count in the other replicas' bursts. Under a
// flood beyond MAX_HELD new fetches are counted as lost (mailplane_tracking_lost_total) rather than
// held, so that memory stays bounded. recent_clicks and engagement_counts are UNLOGGED: a Postgres
// crash or failover empties them, which judges the bursts of those seconds per replica and starts
// the hour's cap afresh. A fetch counted against the cap whose event then fails to be written is
// still counted, so the cap errs toward storing fewer.

import { hash } from 'node:crypto';
import type { Engagement, Queryable } from '../lib/db/transitions.js';
import { recordEngagements } from '../lib/db/transitions.js';
import {
  countEngagements,
  linkHash,
  linksAround,
  pruneEngagementCounts,
  pruneRecentClicks,
  rememberClicks,
  type EngagementTally,
  type SharedClick,
} from '../lib/db/recent-clicks.js';
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

/** A click as it is held: with the digest its link is compared by, here and in recent_clicks. */
type Click = Fetched & { linkHash: string };

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
 * A click is held this much past its window, for another replica's record of a click at the
 * window's very end to reach recent_clicks: a grouped insert takes milliseconds, not this.
 */
const SHARE_GRACE_MS = 250;
/**
 * The longest clicks that came due wait for the other replicas' view. A Postgres that cannot
 * answer a small indexed read in a second is one not to wait on: the clicks are judged on this
 * replica's view rather than held on.
 */
const LOOKUP_TIMEOUT_MS = 1000;
/**
 * Reads of recent_clicks waiting on Postgres at most, those given up on after LOOKUP_TIMEOUT_MS
 * included until they end: past it, clicks are judged on this replica's view at once, rather than
 * pile statements on a database that is not keeping up.
 */
const MAX_LOOKUPS = 2;
/** Clicks in one read of recent_clicks; a burst's due clicks beyond it go in the next. */
const MAX_LOOKUP = 1000;
/** Clicks in one insert into recent_clicks. */
const MAX_SHARE_GROUP = 1000;
/**
 * How often each replica deletes from recent_clicks what no burst reaches back to any more. Every
 * replica does, so that the table stays a few windows' worth whichever replicas run; a delete
 * that finds nothing costs a scan of a small table.
 */
const PRUNE_EVERY_MS = 10_000;
/** The cap's default when the caller names none (config.tracking.eventsPerHour). */
const DEFAULT_EVENTS_PER_HOUR = 200;

/**
 * Creates the recorder; `now` may be injected as a test's clock.
 *
 *   const recorder = createEngagementRecorder({ pool, signals, tunables: config.tracking, log });
 *   recorder.record({ kind: 'open', messageId, sentAt, at: Date.now(), method: 'GET', ip, userAgent });
 */
export function createEngagementRecorder(deps: {
  pool: Queryable;
  signals: MachineSignals;
  tunables: Pick<TrackingConfig, 'scanSeconds' | 'burstLinks' | 'burstSeconds'> &
    Partial<Pick<TrackingConfig, 'eventsPerHour'>>;
  log: Logger;
  metrics?: Pick<Metrics, 'trackingEvents' | 'trackingLost' | 'trackingCapped' | 'trackingBurstLocal'>;
  now?: () => number;
}): EngagementRecorder {
  const { pool, signals, tunables, log } = deps;
  const now = deps.now ?? Date.now;
  const windowMs = tunables.burstSeconds * 1000;
  const holdMs = tunables.burstLinks > 0 ? windowMs + SHARE_GRACE_MS : 0;
  const cap = tunables.eventsPerHour ?? DEFAULT_EVENTS_PER_HOUR;
  /** What of recent_clicks is kept: past the window of every click still held or being judged. */
  const keepMs = Math.max(PRUNE_EVERY_MS, 2 * holdMs + LOOKUP_TIMEOUT_MS + FLUSH_EVERY_MS);

  const writer = createGroupCommitter<Engagement>(
    async (items) => void (await recordEngagements(pool, await underCap(items))),
    { maxInFlight: 2, maxGroup: MAX_GROUP },
  );
  const sharer = createGroupCommitter<SharedClick>((clicks) => rememberClicks(pool, clicks), {
    maxInFlight: 1,
    maxGroup: MAX_SHARE_GROUP,
  });
  /** Clicks waiting for their burst window to pass, oldest first. */
  const held: Click[] = [];
  /** Clicks of each message within the last burst windows, for the clicks around them. */
  const recent = new Map<string, Click[]>();
  /** When each fetch was last seen, by message, kind, link and client; pruned as `recent` is. */
  const seen = new Map<string, number>();
  /** Judgements waiting on the shared view, for close() to wait on. */
  const judging = new Set<Promise<void>>();
  let judgingCount = 0;
  let writing = 0;
  let sharing = 0;
  let lookups = 0;
  let dropped = 0;
  let unshared = 0;
  let unread = 0;
  let timer: NodeJS.Timeout | undefined;
  let nextPrune = 0;
  let prunedHour = -1;
  let pruning: Promise<void> | undefined;

  /** The cap, over every replica: of each message and kind, what fits in the hour's count. */
  const underCap = async (items: Engagement[]): Promise<Engagement[]> => {
    if (cap === 0) return items;
    const tallies = new Map<string, EngagementTally>();
    for (const e of items) {
      const key = `${e.messageId} ${e.type}`;
      const tally = tallies.get(key);
      if (tally) tally.fetches++;
      else tallies.set(key, { messageId: e.messageId, type: e.type, fetches: 1 });
    }
    const fits = await countEngagements(pool, [...tallies.values()], cap);
    const room = new Map([...tallies.keys()].map((key, i) => [key, fits[i]!]));
    const kept: Engagement[] = [];
    for (const e of items) {
      const key = `${e.messageId} ${e.type}`;
      const left = room.get(key)!;
      if (left > 0) {
        room.set(key, left - 1);
        kept.push(e);
      } else {
        deps.metrics?.trackingCapped.inc({ type: e.type });
      }
    }
    return kept;
  };

  const write = (events: Engagement[]) => {
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

  /** Writes a click where the other replicas see it; this replica's own view has it anyway. */
  const share = (c: Click) => {
    // Postgres is not keeping up: the burst of this click is judged on less, not on unbounded memory.
    if (sharing >= MAX_HELD) return;
    sharing++;
    void sharer
      .write([{ messageId: c.messageId, linkHash: c.linkHash, at: c.at }])
      .catch((err: unknown) => {
        if (unshared++ % 1000 === 0) {
          log.warn('could not share clicks with the other api replicas; bursts are judged on fewer', {
            err: err as Error,
            unshared,
          });
        }
      })
      .finally(() => sharing--);
  };

  /** Digests of the links of `c`'s message this replica saw clicked within the window around it. */
  const localLinks = (c: Click): Set<string> => {
    const links = new Set<string>();
    for (const other of recent.get(c.messageId) ?? []) {
      if (Math.abs(other.at - c.at) <= windowMs) links.add(other.linkHash);
      // Past the threshold the count says nothing more.
      if (links.size >= tunables.burstLinks) break;
    }
    return links;
  };

  /**
   * What every replica saw around each click, from recent_clicks; undefined (and counted) when
   * Postgres cannot say in time, and the clicks go on this replica's view.
   */
  const sharedLinks = async (clicks: Click[]): Promise<string[][] | undefined> => {
    const local = (reason: 'timeout' | 'error' | 'busy') => {
      deps.metrics?.trackingBurstLocal.inc({ reason }, clicks.length);
      return undefined;
    };
    if (lookups >= MAX_LOOKUPS) return local('busy');
    lookups++;
    const read = (async () => {
      const found: string[][] = [];
      for (let i = 0; i < clicks.length; i += MAX_LOOKUP) {
        const chunk = clicks.slice(i, i + MAX_LOOKUP);
        found.push(...(await linksAround(pool, chunk, { windowMs, enough: tunables.burstLinks })));
      }
      return found;
    })();
    // Counted until it ends, answered or not: a read given up on still holds a connection.
    void read.then(
      () => lookups--,
      () => lookups--,
    );
    let expire: NodeJS.Timeout | undefined;
    const answer = await Promise.race([
      read.then(
        (found) => ({ found }),
        (err: unknown) => ({ err }),
      ),
      new Promise<'timeout'>((resolve) => (expire = setTimeout(() => resolve('timeout'), LOOKUP_TIMEOUT_MS))),
    ]);
    clearTimeout(expire);
    if (answer === 'timeout') return local('timeout');
    if ('err' in answer) {
      // Once per hundred: a Postgres that is down fails every flush.
      if (unread++ % 100 === 0) {
        log.warn('could not read the other api replicas’ clicks; bursts judged on this one’s', {
          err: answer.err as Error,
          unread,
        });
      }
      return local('error');
    }
    return answer.found;
  };

  /** Classifies clicks whose window has passed, on every replica's view, and writes them. */
  const judge = (clicks: Click[]) => {
    // This replica's view now, while `recent` still holds all of the window.
    const local = clicks.map(localLinks);
    judgingCount += clicks.length;
    const done = sharedLinks(clicks)
      .then((shared) => {
        write(
          clicks.map((c, i) => {
            const links = local[i]!;
            for (const l of shared?.[i] ?? []) links.add(l);
            return engagement(c, links.size);
          }),
        );
      })
      .finally(() => {
        judgingCount -= clicks.length;
        judging.delete(done);
      });
    judging.add(done);
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

  /**
   * Keeps the shared tables small: recent_clicks to a few windows, engagement_counts to the
   * current hour (once an hour per replica: its rows are many and live an hour). One at a time;
   * a failure is tried again at the next turn.
   */
  const prune = () => {
    const at = now();
    if (pruning || at < nextPrune) return;
    nextPrune = at + PRUNE_EVERY_MS;
    const hour = Math.floor(at / 3_600_000);
    pruning = (async () => {
      if (holdMs > 0) await pruneRecentClicks(pool, at - keepMs);
      if (cap > 0 && hour !== prunedHour) {
        await pruneEngagementCounts(pool);
        prunedHour = hour;
      }
    })()
      .catch((err: unknown) => log.warn('could not prune recent clicks and counts', { err: err as Error }))
      .finally(() => (pruning = undefined));
  };

  /** Judges the clicks whose window has passed (all of them when `all`). */
  const flush = (all = false) => {
    timer = undefined;
    const due = all ? Infinity : now() - holdMs;
    // Held in the order they came, so the ready ones lead.
    let ready = 0;
    while (ready < held.length && held[ready]!.at <= due) ready++;
    if (ready > 0) judge(held.splice(0, ready));
    // What no later click can be in a burst with any more is forgotten.
    const forget = now() - 2 * holdMs;
    for (const [id, clicks] of recent) {
      const kept = clicks.filter((c) => c.at > forget);
      if (kept.length === 0) recent.delete(id);
      else if (kept.length !== clicks.length) recent.set(id, kept);
    }
    for (const [key, at] of seen) if (at <= now() - REPEAT_MS) seen.delete(key);
    prune();
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
      if (held.length + judgingCount + writing >= MAX_HELD) {
        deps.metrics?.trackingLost.inc({ reason: 'overflow' });
        // Logged once per thousand: a flood must not also flood the log.
        if (dropped++ % 1000 === 0) log.warn('opens and clicks dropped: too many waiting', { dropped });
        return;
      }
      seen.set(key, fetch.at);
      if (seen.size > MAX_HELD) seen.delete(seen.keys().next().value!);
      if (fetch.kind === 'open' || holdMs === 0) {
        // With the burst signal off (holdMs 0), a click needs nothing remembered either.
        write([engagement(fetch, 0)]);
      } else {
        const click: Click = { ...fetch, linkHash: linkHash(fetch.link ?? '') };
        // A click past the per-message bound is judged but not remembered, here or for the others.
        if (remember(recent, click)) share(click);
        held.push(click);
        schedule();
      }
      // After the fetch's own statements, which come first on a pool's connections.
      prune();
    },
    async close() {
      if (timer) clearTimeout(timer);
      flush(true);
      await Promise.all(judging);
      await writer.drain();
      await sharer.drain();
      await pruning;
    },
  };
}

/** Adds a click to its message's recent ones, unless the message has its fill; says whether. */
function remember(recent: Map<string, Click[]>, click: Click): boolean {
  const clicks = recent.get(click.messageId);
  if (!clicks) recent.set(click.messageId, [click]);
  else if (clicks.length < MAX_RECENT_PER_MESSAGE) clicks.push(click);
  else return false;
  return true;
}
