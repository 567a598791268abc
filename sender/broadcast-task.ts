// The send_broadcast task: a broadcast's fan-out, from `scheduled` or `queued` to `sent`. It makes
// one email per contact of the broadcast's segment who has not unsubscribed, a chunk at a time,
// each through the accept path with one-click unsubscribe on (lib/db/broadcasts.ts fanOutChunk
// commits a chunk's emails with the cursor's advance); send_message then sends them as any other,
// a suppressed address coming out `suppressed`.
//
//   check (the from domain is still the tenant's; one-click unsubscribe can be offered)
//   → chunk after chunk until none is left (`sent`), or the broadcast is canceled (or fails: its
//     segment or tenant deleted, or its last attempt failed)
//
// A chunk is bounded by contacts and by prepared bytes; transient database errors are retried
// within it (lib/db/broadcasts.ts). A worker shutting down stops between chunks and re-adds the
// job, so that a rolling deploy costs no attempt; the cron task requeue_broadcasts gives a job
// again to any broadcast left without one.
//
// Each contact's subject, html, text and preview text are personalised here with Resend's
// placeholders: {{{FIRST_NAME|fallback}}}, {{{LAST_NAME}}}, {{{EMAIL}}} and {{{<property key>}}}
// for the contact's own properties, a value escaped in html. {{{RESEND_UNSUBSCRIBE_URL}}} is left
// for the sender to fill in with the message's own link (sender/unsubscribe-offer.ts).

import { randomUUID } from 'node:crypto';
import type { JobHelpers } from 'graphile-worker';
import type pg from 'pg';
import { domainOf, parseMailbox } from '../lib/address.js';
import type { Config } from '../lib/config.js';
import {
  addBroadcastJob,
  failBroadcast,
  fanOutChunk,
  type ChunkLimit,
  type FanOutContact,
} from '../lib/db/broadcasts.js';
import type { Db } from '../lib/db/index.js';
import type { Broadcast, EmailContent } from '../lib/db/schema.js';
import { isSendBroadcastPayload, SEND_BROADCAST } from '../lib/jobs.js';
import type { Logger } from '../lib/log.js';
import type { PreparedEmail } from '../lib/send/accept.js';
import { unsubscribeBase } from '../lib/unsubscribe.js';

export interface SendBroadcastDeps {
  db: Db;
  pool: pg.Pool;
  config: Pick<Config, 'publicUrl'>;
  log: Logger;
  /** Contacts per chunk; CHUNK by default. */
  chunkSize?: number;
  /** Prepared bytes per chunk; CHUNK_BYTES by default. */
  chunkBytes?: number;
  /** Called after each chunk commits, with the emails it created (for tests that interrupt). */
  afterChunk?: (created: number) => Promise<void> | void;
}

export type SendBroadcastTask = (payload: unknown, helpers: JobHelpers) => Promise<void>;

/**
 * Contacts per transaction: the accept statement's own largest group (lib/send/accept.ts), so a
 * chunk is one statement; a crash loses at most one chunk's work, which the next attempt redoes.
 */
const CHUNK = 500;
/**
 * Prepared subjects and bodies per chunk, besides: 500 copies of a large html would be a statement
 * past what V8 and Postgres take, failing every attempt alike. A chunk has one contact at least.
 */
const CHUNK_BYTES = 8 << 20;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Creates the task; the worker registers it as `send_broadcast`.
 *
 *   const taskList = { send_broadcast: createSendBroadcastTask({ db, pool, config, log }) };
 */
export function createSendBroadcastTask(deps: SendBroadcastDeps): SendBroadcastTask {
  const limit: ChunkLimit = { contacts: deps.chunkSize ?? CHUNK, bytes: deps.chunkBytes ?? CHUNK_BYTES };

  return async function send_broadcast(payload, helpers) {
    const jobId = helpers.job.id;
    if (!isSendBroadcastPayload(payload) || !UUID.test(payload.broadcastId)) {
      deps.log.error('dropping send_broadcast job with an invalid payload', {
        task: SEND_BROADCAST,
        jobId,
        payload,
      });
      return;
    }
    const { broadcastId } = payload;
    const log = deps.log.child({ task: SEND_BROADCAST, jobId, broadcastId });

    const broadcast = await deps.db
      .selectFrom('broadcasts')
      .selectAll()
      .where('id', '=', broadcastId)
      .executeTakeFirst();
    if (!broadcast || !['scheduled', 'queued', 'sending'].includes(broadcast.status)) {
      log.info('broadcast not to be sent; nothing to do', { status: broadcast?.status ?? 'not-found' });
      return;
    }
    const domain = await sendingDomain(deps.db, broadcast);
    const refusal = whyNot(deps, broadcast, domain);
    if (refusal || !domain) {
      if (refusal && (await failBroadcast(deps.db, broadcastId, refusal))) {
        log.warn('broadcast failed', { failure: refusal });
      }
      return;
    }
    const prepare = (b: Broadcast, contact: FanOutContact) => prepareEmail(b, domain.id, contact);

    try {
      for (;;) {
        // A worker shutting down (a rolling deploy) stops between chunks and hands the fan-out to a
        // job of its own, due now, with all its attempts: this one then ends as done, not failed.
        if (helpers.abortSignal?.aborted) {
          await addBroadcastJob(deps.db, broadcastId, null);
          log.info('fan-out handed on: the worker is shutting down');
          return;
        }
        const outcome = await fanOutChunk(deps.pool, broadcastId, limit, prepare);
        if (outcome.kind === 'created') {
          log.debug('chunk created', { emails: outcome.count });
          await deps.afterChunk?.(outcome.count);
          continue;
        }
        if (outcome.kind === 'finished') log.info('broadcast sent', { emails: outcome.count });
        else log.info('fan-out stopped', { status: outcome.status });
        return;
      }
    } catch (err) {
      // The last attempt: nothing will run it again, so the broadcast says why it stopped.
      const { attempts, max_attempts: maxAttempts } = helpers.job;
      if (attempts >= maxAttempts) {
        const failure = `the fan-out failed ${attempts} times, last: ${errorText(err)}`;
        if (await failBroadcast(deps.db, broadcastId, failure)) log.error('broadcast failed', { failure });
      }
      throw err;
    }
  };
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 500);
}

/** The tenant's sending domain of the broadcast's From address, with what its links need. */
async function sendingDomain(db: Db, broadcast: Broadcast) {
  const domain = domainOf(parseMailbox(broadcast.from_address).address);
  return db
    .selectFrom('domains')
    .select(['id', 'name', 'tracking_domain'])
    .where('tenant_id', '=', broadcast.tenant_id)
    .where('name', '=', domain)
    .executeTakeFirst();
}

/**
 * Why a broadcast cannot go out now, checked again when its time comes (the api checked when it was
 * sent, but a scheduled one waits): its segment must exist, its From domain must still be the
 * tenant's, and one-click unsubscribe must be possible, or none of it goes out.
 */
function whyNot(
  deps: SendBroadcastDeps,
  broadcast: Broadcast,
  domain: Awaited<ReturnType<typeof sendingDomain>>,
): string | undefined {
  if (!broadcast.segment_id) return 'its segment was deleted';
  if (!domain) {
    return `${domainOf(parseMailbox(broadcast.from_address).address)} is no longer a sending domain of the tenant`;
  }
  if (!unsubscribeBase(domain.tracking_domain, deps.config.publicUrl)) {
    return (
      'no one-click unsubscribe link can be offered: set spec.tracking.domain on the SendingDomain ' +
      `${domain.name}, or MAILPLANE_PUBLIC_URL`
    );
  }
  return undefined;
}

/** One contact's email of the broadcast: personalised, unsubscribe on, tagged with the broadcast. */
export function prepareEmail(broadcast: Broadcast, domainId: string, contact: FanOutContact): PreparedEmail {
  const values = contactValues(contact);
  const subject = personalize(broadcast.subject, values, false, { oneLine: true });
  const preview =
    broadcast.preview_text === null ? undefined : personalize(broadcast.preview_text, values, true);
  const html =
    broadcast.html === null ? undefined : withPreview(personalize(broadcast.html, values, true), preview);
  const text = broadcast.text === null ? undefined : personalize(broadcast.text, values, false);
  const content: EmailContent = {
    to: [contact.email],
    cc: [],
    bcc: [],
    reply_to: broadcast.reply_to,
    subject,
    ...(html === undefined ? {} : { html }),
    ...(text === undefined ? {} : { text }),
    headers: {},
    attachments: [],
    // GET /v1/emails?tag=broadcast_id:<id> and /v1/stats by tag find a broadcast's emails.
    tags: [{ name: 'broadcast_id', value: broadcast.id }],
    // A broadcast never goes out without one-click unsubscribe (RFC 8058), whatever the Tenant's default.
    unsubscribe: true,
  };
  return {
    id: randomUUID(),
    tenantId: broadcast.tenant_id,
    domainId,
    from: broadcast.from_address,
    subject,
    content,
    recipients: [contact.email],
    scheduledAt: null,
    bulk: true,
  };
}

/** Placeholders the sender fills in itself, left as they are here. */
const LEFT_FOR_THE_SENDER = new Set(['RESEND_UNSUBSCRIBE_URL']);
/**
 * What follows the `{{{` of {{{KEY}}} or {{{KEY|fallback}}} up to its `|` or `}}}`: the key, letters,
 * digits and _ (Resend's rule for property keys). Matched at one position (sticky), the fallback
 * found with indexOf: one regex for the whole placeholder would read from each `{{{` to the next
 * `}`, which in a template of `{{{a|` repeated and no `}` is the rest of it every time (quadratic:
 * seconds for 100 KB, every tenant's fan-out waiting).
 */
const PLACEHOLDER_HEAD = /\s*([A-Za-z0-9_]{1,50})\s*/y;
/** Runs of what would break a header line or show as nothing; in a subject's value, a space. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what this replaces
const CONTROL_RUN = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;

/** What a contact's placeholders stand for: its properties by their keys, the built-in ones by theirs. */
export interface ContactValues {
  builtIn: Record<'FIRST_NAME' | 'LAST_NAME' | 'EMAIL', string | null>;
  properties: Record<string, unknown>;
}

function contactValues(contact: FanOutContact): ContactValues {
  return {
    builtIn: { FIRST_NAME: contact.first_name, LAST_NAME: contact.last_name, EMAIL: contact.email },
    properties: contact.properties ?? {},
  };
}

/**
 * `template` with each placeholder replaced by the contact's value, or its fallback when the
 * contact has none (nothing without a fallback). Built-in keys are read in any case
 * ({{{first_name}}} too); a property's key as it was written. A value is escaped in html; with
 * `oneLine` (the subject) each run of control characters in it becomes a space. A fallback is the
 * author's own text, checked by the api, and is left as written. Time is linear in the template.
 *
 *   personalize('Hi {{{FIRST_NAME|there}}}', { builtIn: { FIRST_NAME: null, … }, properties: {} }, false)
 *   // 'Hi there'
 */
export function personalize(
  template: string,
  values: ContactValues,
  html: boolean,
  { oneLine = false }: { oneLine?: boolean } = {},
): string {
  const out: string[] = [];
  let copied = 0;
  const next = nextCloseIn(template);
  let at = template.indexOf('{{{');
  while (at !== -1) {
    const found = placeholderAt(template, at, next);
    if (!found) {
      at = template.indexOf('{{{', at + 1);
      continue;
    }
    out.push(template.slice(copied, at), fill(template.slice(at, found.end), found, values, html, oneLine));
    copied = found.end;
    at = template.indexOf('{{{', copied);
  }
  out.push(template.slice(copied));
  return out.join('');
}

interface Placeholder {
  key: string;
  fallback: string | undefined;
  /** Just past its `}}}`. */
  end: number;
}

/** The placeholder whose `{{{` is at `at`, or undefined; `next(i)` is the first `}` from i on. */
function placeholderAt(
  template: string,
  at: number,
  next: (from: number) => number,
): Placeholder | undefined {
  PLACEHOLDER_HEAD.lastIndex = at + 3;
  const head = PLACEHOLDER_HEAD.exec(template);
  if (!head) return undefined;
  let end = PLACEHOLDER_HEAD.lastIndex;
  let fallback: string | undefined;
  if (template[end] === '|') {
    const close = next(end + 1);
    if (close === -1) return undefined;
    fallback = template.slice(end + 1, close);
    end = close;
  }
  if (!template.startsWith('}}}', end)) return undefined;
  return { key: head[1]!, fallback, end: end + 3 };
}

/**
 * The first `}` of `template` at or after a position, or -1. The answer found is kept: for any
 * position up to it the answer is the same, so a template's positions asked in order are searched
 * once in all.
 */
function nextCloseIn(template: string): (from: number) => number {
  let searchedFrom = -1;
  let found = -1;
  return (from) => {
    if (searchedFrom !== -1 && searchedFrom <= from && (found === -1 || found >= from)) return found;
    searchedFrom = from;
    found = template.indexOf('}', from);
    return found;
  };
}

/** What a placeholder becomes for this contact; the unsubscribe link's is left `whole`. */
function fill(
  whole: string,
  { key, fallback }: Placeholder,
  values: ContactValues,
  html: boolean,
  oneLine: boolean,
): string {
  const upper = key.toUpperCase();
  if (LEFT_FOR_THE_SENDER.has(upper)) return whole;
  const value =
    upper in values.builtIn
      ? values.builtIn[upper as keyof ContactValues['builtIn']]
      : propertyValue(values.properties[key]);
  if (value === null || value === undefined || value === '') return fallback?.trim() ?? '';
  const shown = oneLine ? value.replace(CONTROL_RUN, ' ') : value;
  return html ? escapeHtml(shown) : shown;
}

/** A property as a string: stored as given, or as Resend's `{ value, type }`. */
function propertyValue(raw: unknown): string | undefined {
  const value =
    typeof raw === 'object' && raw !== null && 'value' in raw ? (raw as { value: unknown }).value : raw;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

function escapeHtml(value: string): string {
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/**
 * The preview text as the hidden first text of the html, where mail clients take the line they show
 * beside the subject: after <body> when there is one, else first.
 */
function withPreview(html: string, preview: string | undefined): string {
  if (!preview) return html;
  const block = `<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">${preview}</div>`;
  const body = /<body\b[^>]*>/i.exec(html);
  if (!body) return block + html;
  const at = body.index + body[0].length;
  return html.slice(0, at) + block + html.slice(at);
}
