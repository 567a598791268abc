// The send_message task: one recipient of one accepted email, from `queued` to a final status.
//
//   load and claim (one statement): final? done | suppressed? `suppressed` | `sending`
//   → render → compose → sign → deliver
//   → 2xx `delivered`
//   | 4xx, unreachable, or a persistent-transient 5xx (5.2.2 mailbox full) `deferred` + a new job later
//   | 5.1.x (the address is wrong) `bounced` + suppression
//   | any other 5xx (the message: size, content, policy) `failed`, the address left alone
//
// sender/outcome.ts decides which, and the event's detail says it as `class` (hard, soft, message,
// policy).
// Every outcome is settled here and the job completes; graphile-worker's own retries are left for
// what cannot be settled (the database going away), so a deferral is never retried twice.

import type { JobHelpers } from 'graphile-worker';
import { parseMailbox } from '../lib/address.js';
import type { Config } from '../lib/config.js';
import { composedMessageId } from '../lib/message-id.js';
import type { Db } from '../lib/db/index.js';
import { isSendMessagePayload, SEND_MESSAGE } from '../lib/jobs.js';
import type { Logger } from '../lib/log.js';
import type { Metrics } from '../lib/metrics.js';
import type { Rendered, Renderer } from '../lib/render/sandbox.js';
import { returnPathDomain } from '../lib/dns-records.js';
import { bounceAddress } from '../lib/verp.js';
import { composeMessage } from './compose.js';
import { trackMessageHtml } from './track-html.js';
import { trackingOf } from '../lib/tracking.js';
import { createUnsubscribeOffer, withOfferedHeaders, withUnsubscribeLink } from './unsubscribe-offer.js';
import { prepareRawMessage } from './raw-message.js';
import { createDkimSigner } from './dkim.js';
import {
  classifyDeliveryError,
  nextAttemptAt,
  retryLifetimeSeconds,
  type DeliveryFailure,
} from './outcome.js';
import { FINAL_STATUSES } from '../lib/db/schema.js';
import {
  bounceMessage,
  claimMessage,
  defer,
  settle,
  type MessageToSend,
  type Queryable,
} from '../lib/db/transitions.js';
import { createTemplateVersions } from './templates.js';
import type { Transport } from './transport.js';

export interface SendMessageDeps {
  db: Db;
  /** The same database as `db`, for the statements run once per message (prepared, by name). */
  pool: Queryable;
  config: Pick<Config, 'secretKey' | 'messageLifetimeSeconds' | 'inboundHost' | 'publicUrl'>;
  log: Logger;
  metrics: Metrics;
  renderer: Renderer;
  transport: Transport;
}

export type SendMessageTask = (payload: unknown, helpers: JobHelpers) => Promise<void>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Errors that say the template is at fault: RenderError's codes, and a version that is not there. */
const TEMPLATE_FAULTS = new Set([
  'ETEMPLATE_COMPILE',
  'ETEMPLATE_RUNTIME',
  'ETEMPLATE_TIMEOUT',
  'ETEMPLATE_MEMORY',
  'ETEMPLATE_OUTPUT',
  'ETEMPLATE_NOT_FOUND',
]);

/** Why an attempt did not deliver; `part` and `line` locate a template error. */
type Failure = DeliveryFailure & { part?: string; line?: number };
type Delivery = { ok: true; reply: string; host: string } | { ok: false; failure: Failure };

/**
 * Creates the task; the worker registers it as `send_message`.
 *
 *   const taskList = { send_message: createSendMessageTask({ db, config, log, metrics, renderer, transport }) };
 */
export function createSendMessageTask(deps: SendMessageDeps): SendMessageTask {
  const { db, metrics } = deps;
  const signer = createDkimSigner(deps.config.secretKey);
  const templates = createTemplateVersions(db);
  const unsubscribeOffer = createUnsubscribeOffer({ db, config: deps.config });

  /** Subject and bodies: the template's, rendered in the sandbox, or the request's own. */
  async function render(message: MessageToSend): Promise<Rendered> {
    const { content } = message;
    if (!content.template) return { subject: content.subject, html: content.html, text: content.text };
    const { id, version, variables } = content.template;
    const body = await templates.get(message.tenantId, id, version);
    if (!body) {
      throw Object.assign(new Error(`template ${id} version ${version} not found`), {
        code: 'ETEMPLATE_NOT_FOUND',
      });
    }
    const { fallbacks, ...parts } = body;
    // A variable the email leaves out renders with the version's declared fallback.
    const values = { ...fallbacks, ...variables };
    return deps.renderer.render({ key: `${id}@${version}`, ...parts }, values, {
      tenant: message.tenantId,
    });
  }

  /** Everything from rendering to the SMTP reply; expected failures come back as values. */
  async function deliver(message: MessageToSend): Promise<Delivery> {
    const domain = message.domain;
    if (!domain) return failed('fail', 'EDOMAIN', 'the sending domain no longer exists');
    const from = parseMailbox(message.fromAddress).address;

    let rendered: Rendered;
    try {
      rendered = await render(message);
    } catch (err) {
      return { ok: false, failure: renderFailure(err) };
    }

    // The message's own one-click link where its body asks for it ({{{RESEND_UNSUBSCRIBE_URL}}}),
    // before tracking, which leaves that link alone.
    const offered = await unsubscribeOffer(message);
    if (message.content.raw === undefined) rendered = withUnsubscribeLink(rendered, offered);

    // Open and click tracking, before signing, so that the tracked links are what DKIM covers.
    const tracking = trackingOf(domain, message.content.tracking, deps.config.publicUrl);
    if (tracking && rendered.html !== undefined && message.content.raw === undefined) {
      rendered = {
        ...rendered,
        html: trackMessageHtml(rendered.html, {
          secretKey: deps.config.secretKey,
          tracking,
          messageId: message.id,
          sentAt: Date.now(),
          ...(deps.config.publicUrl ? { publicUrl: deps.config.publicUrl } : {}),
        }),
      };
    }

    let raw: Buffer;
    try {
      // The email's, not this recipient's, and the same on every attempt (lib/message-id.ts).
      const messageId = composedMessageId(message.emailId, message.fromAddress);
      // Submitted over SMTP: the client's own message, not one composed from fields.
      raw =
        message.content.raw !== undefined
          ? withOfferedHeaders(
              prepareRawMessage({ raw: message.content.raw, messageId, date: new Date() }),
              offered,
            )
          : await composeMessage({
              from: message.fromAddress,
              content: message.content,
              rendered,
              messageId,
              date: new Date(),
              addedHeaders: offered,
            });
    } catch (err) {
      // The same content fails the same way every time: give up at once.
      return failed('fail', errorCode(err, 'ECOMPOSE'), (err as Error).message);
    }

    let signed: Buffer;
    try {
      signed = await signer.sign(raw, {
        domainId: domain.id,
        domain: domain.name,
        selector: domain.selector,
        privateKeyEnvelope: domain.dkim_private_key,
        ...(domain.also_signing
          ? {
              also: domain.also_signing.map((k) => ({
                selector: k.selector,
                privateKeyEnvelope: k.private_key,
              })),
            }
          : {}),
      });
    } catch (err) {
      // The key does not decrypt or parse: a wrong MAILPLANE_SECRET_KEY or a damaged row, which an
      // operator can fix. Deferring keeps the message until then (or until its lifetime ends).
      return failed('defer', 'EDKIM', `cannot sign: ${(err as Error).message}`);
    }

    // A signed VERP address brings a later bounce back to this message (smtp/inbound-server.ts).
    // Only once the installation has an inbound host, the MX the return-path domain is told to
    // publish: before that the domain has no MX, bounces to it would be lost, and receivers that
    // check the envelope sender's domain may refuse the mail. The From address stands in. The SPF
    // record each domain lists is at the same domain (lib/dns-records.ts).
    const bounces = returnPathDomain(domain, deps.config.inboundHost);
    const envelopeFrom = bounces ? bounceAddress(deps.config.secretKey, message.id, bounces) : from;
    try {
      const receipt = await deps.transport.send({ from: envelopeFrom, to: message.recipient }, signed);
      return { ok: true, ...receipt };
    } catch (err) {
      return { ok: false, failure: classifyDeliveryError(err) };
    }
  }

  /** Writes the outcome of an attempt; returns the outcome counted, if the write applied. */
  async function record(
    message: MessageToSend,
    attempt: number,
    delivery: Delivery,
  ): Promise<string | undefined> {
    const messageId = message.id;
    if (delivery.ok) {
      const { reply, host } = delivery;
      return (await settle(deps.pool, {
        messageId,
        status: 'delivered',
        reply,
        detail: { attempt, reply, host },
      }))
        ? 'delivered'
        : undefined;
    }
    const { failure } = delivery;
    const detail = eventDetail(attempt, failure);
    if (failure.kind === 'bounce') {
      const reply = failure.reply ?? failure.message;
      return (await bounceMessage(db, { messageId, reply, detail, suppress: true })) ? 'bounced' : undefined;
    }
    if (failure.kind === 'defer') {
      const lifetimeSeconds = retryLifetimeSeconds(failure, deps.config.messageLifetimeSeconds);
      const retryAt = nextAttemptAt({ attempt, dueAt: message.dueAt, now: new Date(), lifetimeSeconds });
      if (retryAt) {
        return (await defer(db, { messageId, reply: failure.reply, retryAt, detail }))
          ? 'deferred'
          : undefined;
      }
      detail.expired = true;
      detail.reason =
        lifetimeSeconds < deps.config.messageLifetimeSeconds
          ? `still refused after ${lifetimeSeconds / 3600} h of retries (persistent transient): ${failure.message}`
          : `still undelivered when its lifetime ended: ${failure.message}`;
    }
    return (await settle(deps.pool, { messageId, status: 'failed', reply: failure.reply, detail }))
      ? 'failed'
      : undefined;
  }

  return async function send_message(payload, helpers) {
    const jobId = helpers.job.id;
    if (!isSendMessagePayload(payload) || !UUID.test(payload.messageId)) {
      // Retrying cannot fix a payload; keep it in the log and let the job complete.
      deps.log.error('dropping send_message job with an invalid payload', {
        task: SEND_MESSAGE,
        jobId,
        payload,
      });
      return;
    }
    const log = deps.log.child({ task: SEND_MESSAGE, jobId, messageId: payload.messageId });

    const claim = await claimMessage(deps.pool, payload.messageId);
    if (!claim) {
      log.warn('message not found; dropping the job');
      return;
    }
    const { message, attempt } = claim;
    if (attempt === undefined) {
      // Jobs can run twice (a crash between sending and completing the job): a final message stays so.
      if (FINAL_STATUSES.includes(message.status)) {
        log.debug('message already final', { status: message.status });
      } else if (message.suppressed) {
        const applied = await settle(deps.pool, {
          messageId: message.id,
          status: 'suppressed',
          detail: { reason: 'the recipient is on the suppression list' },
        });
        if (applied) metrics.outcomes.inc({ outcome: 'suppressed' });
        log.info('recipient suppressed; not sent');
      } else {
        // Owned by a newer job (this one ran twice), or settled since it was read.
        log.debug('message final or owned by a newer job; nothing to do');
      }
      return;
    }

    const delivery = await deliver(message).catch((err: unknown): Delivery => {
      // A bug, not a verdict on the message: keep it deferred (on our schedule) rather than leave
      // it `sending` behind a job that graphile-worker retries and then gives up on.
      log.error('unexpected error while sending', { err });
      return failed('defer', errorCode(err, 'EINTERNAL'), String((err as Error)?.message ?? err));
    });
    const outcome = await record(message, attempt, delivery);
    if (!outcome) {
      // Canceled (or settled by a twin job) while this attempt was under way.
      log.warn('message changed during the attempt; outcome not recorded', { attempt });
      return;
    }
    metrics.outcomes.inc({ outcome });
    if (delivery.ok) {
      metrics.sendLatency.observe((Date.now() - message.dueAt.getTime()) / 1000);
      log.debug('delivered', { attempt, reply: delivery.reply, host: delivery.host });
    } else {
      const { kind, class: bounceClass, code, reply, message: reason } = delivery.failure;
      log.info(outcome, { attempt, kind, class: bounceClass, code, reply, reason });
    }
  };
}

/**
 * A template's fault (RenderError, a missing version) fails the message: it would fail again. Any
 * other error is the sandbox's own trouble and worth another attempt later.
 */
function renderFailure(err: unknown): Failure {
  const e = (err ?? {}) as { message?: unknown; part?: unknown; line?: unknown };
  const code = errorCode(err, 'ERENDER');
  const message = typeof e.message === 'string' ? e.message : String(err);
  if (!TEMPLATE_FAULTS.has(code)) return { kind: 'defer', code, message };
  const failure: Failure = { kind: 'fail', code, message };
  if (typeof e.part === 'string') failure.part = e.part;
  if (typeof e.line === 'number') failure.line = e.line;
  return failure;
}

function errorCode(err: unknown, fallback: string): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : fallback;
}

function failed(kind: Failure['kind'], code: string, message: string): Delivery {
  return { ok: false, failure: { kind, code, message } };
}

/** The event's detail: the attempt, the SMTP reply and what went wrong, without empty fields. */
function eventDetail(attempt: number, f: Failure): Record<string, unknown> {
  const { reply, code, command, status, message: reason, part, line } = f;
  const detail: Record<string, unknown> = {
    attempt,
    class: f.class,
    status,
    reply,
    code,
    command,
    reason,
    part,
    line,
  };
  for (const key of Object.keys(detail)) if (detail[key] === undefined) delete detail[key];
  return detail;
}
