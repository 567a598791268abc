// /v1/emails in Resend's shapes: send one, send a batch, list them a page at a time with filters,
// read one with its per-recipient status and event timeline, reschedule one that is scheduled,
// cancel one that has not gone out. Each answer is built by a view function whose type is its
// schema's in api/schemas.ts, the one the OpenAPI document describes.

import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { ENGAGEMENTS, listEmails, type EmailSummaryRow, type Engagement } from '../lib/db/email-list.js';
import { cancelEmail, rescheduleEmail, type RescheduleRefusal } from '../lib/db/transitions.js';
import type { Db } from '../lib/db/index.js';
import type { PageOf } from '../lib/db/webhooks.js';
import {
  EMAIL_STATUS_ORDER,
  type Email as EmailRow,
  type Message,
  type MessageStatus,
} from '../lib/db/schema.js';
import { messageIdOf } from '../lib/message-id.js';
import type { Metrics } from '../lib/metrics.js';
import { Problem, type FieldError } from '../lib/problem.js';
import type { Acceptor, PreparedEmail } from '../lib/send/accept.js';
import { principalOf, requireScope } from './auth.js';
import { parseListQuery, parseUpdate } from './email-requests.js';
import { hasNoBody } from './json-body.js';
import {
  EventDetail,
  type Accepted,
  type BatchAccepted,
  type CanceledEmail,
  type Email,
  type EmailEvent,
  type EmailList,
  type EmailSummary,
  type EventType,
  type UpdatedEmail,
  type LAST_EVENTS,
} from './schemas.js';
import { BatchValidation, batchOf, MAX_BATCH } from './schemas-send.js';
import { describeFaults, type Limits } from './validate.js';
import { acceptAll, answerIdempotently, createPreparer } from './send-core.js';

export interface EmailsDeps {
  db: Db;
  acceptor: Acceptor;
  metrics: Metrics;
  limits: Limits;
}

/** A batch's envelope; each email in it is checked on its own, so its faults carry its index. */
const BATCH = batchOf(z.unknown());
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Why a reschedule was refused, in the words of its 409. */
const NOT_RESCHEDULABLE: Record<RescheduleRefusal, string> = {
  'not-scheduled': 'This email is not scheduled: it was queued to be sent as soon as it was accepted.',
  due: 'Its scheduled time has come: it is being sent.',
  'not-pending': 'Some of its recipients have already been sent to or canceled.',
  sending: 'It is being sent.',
};

export function emailsRouter(deps: EmailsDeps): Router {
  const { db } = deps;
  const router = Router();

  /** Checks one request body and resolves the tenant's domain and template; throws a Problem. */
  const prepare = createPreparer(deps);

  /**
   * Answers a send under the request's Idempotency-Key, if any (send-core's answerIdempotently):
   * a replay gets the first answer; a refused request releases its key.
   */
  const idempotent = (req: Request, res: Response, handle: Parameters<typeof answerIdempotently>[3]) =>
    answerIdempotently(db, req, res, handle, (r, answer) => void r.status(answer.status).json(answer.body));

  router.post('/emails', requireScope('send'), (req, res) =>
    idempotent(req, res, async (receiptFor) => {
      const principal = principalOf(req);
      const email = await prepare(principal, req.body);
      const body = acceptedView(email);
      await acceptAll(deps, principal, [email], receiptFor?.({ status: 202, body }));
      res.location(`/v1/emails/${email.id}`);
      return { status: 202, body };
    }),
  );

  router.post('/emails/batch', requireScope('send'), (req, res) =>
    idempotent(req, res, async (receiptFor) => {
      const principal = principalOf(req);
      const batch = BATCH.safeParse(req.body);
      if (!batch.success) {
        throw new Problem(422, 'validation-error', `The body must be a list of 1 to ${MAX_BATCH} emails.`, [
          { field: '(body)', message: `must be a list of 1 to ${MAX_BATCH} emails` },
        ]);
      }
      // Strict (Resend's default): one invalid email refuses the batch, every fault listed.
      // Permissive: the valid ones are sent and the others reported by index.
      const permissive = req.get('x-batch-validation') === BatchValidation.enum.permissive;
      const prepared: PreparedEmail[] = [];
      const errors: FieldError[] = [];
      const refused: { index: number; message: string }[] = [];
      // The batch answers with the gravest of its emails' statuses (403, 413 or 422).
      let status = 0;
      for (const [index, item] of batch.data.entries()) {
        try {
          prepared.push(await prepare(principal, item, `[${index}].`));
        } catch (err) {
          if (!(err instanceof Problem)) throw err;
          status = Math.max(status, err.status);
          errors.push(...(err.errors ?? [{ field: `[${index}]`, message: err.detail }]));
          refused.push({ index, message: err.detail });
        }
      }
      if (errors.length > 0 && !permissive) {
        throw new Problem(
          status,
          'validation-error',
          `${refused.length} of ${batch.data.length} emails are invalid; ${describeFaults(errors)}`,
          errors,
        );
      }
      const answer = batchView(prepared, permissive ? refused : undefined);
      await acceptAll(deps, principal, prepared, receiptFor?.({ status: 202, body: answer }));
      return { status: 202, body: answer };
    }),
  );

  router.get('/emails', requireScope('read'), async (req, res) => {
    const principal = principalOf(req);
    const { page, filter } = parseListQuery(req.query);
    const listed = await listEmails(db, principal.tenantId, filter, page);
    if (!listed) {
      // Another tenant's email is as absent here as anywhere.
      const field = page.after !== undefined ? 'after' : 'before';
      throw new Problem(422, 'validation-error', `${field}: names no email of this tenant`, [
        { field, message: 'names no email of this tenant' },
      ]);
    }
    res.json(emailListView(listed));
  });

  router.get('/emails/:id', requireScope('read'), async (req, res) => {
    const principal = principalOf(req);
    const id = String(req.params.id);
    // Another tenant's email is as absent as one that never existed.
    const email = UUID.test(id) ? await readEmail(db, principal.tenantId, id) : undefined;
    if (!email) throw new Problem(404, 'not-found', `No email ${id}.`);
    res.json(emailView(email));
  });

  router.post('/emails/:id/cancel', requireScope('send'), async (req, res) => {
    const principal = principalOf(req);
    const id = String(req.params.id);
    if (!UUID.test(id)) throw new Problem(404, 'not-found', `No email ${id}.`);
    const canceled = await cancelEmail(db, { emailId: id, tenantId: principal.tenantId });
    if (canceled === 0) {
      const exists = await db
        .selectFrom('emails')
        .select('id')
        .where('id', '=', id)
        .where('tenant_id', '=', principal.tenantId)
        .executeTakeFirst();
      if (!exists) throw new Problem(404, 'not-found', `No email ${id}.`);
      throw new Problem(
        409,
        'not-cancelable',
        'Every recipient of this email has already been sent to or settled.',
      );
    }
    res.json(canceledView(id));
  });

  // Resend's emails.update: a scheduled email's new time.
  router.patch('/emails/:id', requireScope('send'), async (req, res) => {
    const principal = principalOf(req);
    const id = String(req.params.id);
    // PATCH is not among the verbs jsonBody reads as {} without a body; one that is not JSON is a 415.
    if (req.body === undefined && !hasNoBody(req)) {
      throw new Problem(415, 'unsupported-media-type', 'Send the body as application/json.');
    }
    if (!UUID.test(id)) throw new Problem(404, 'not-found', `No email ${id}.`);
    const at = parseUpdate(req.body, Date.now());
    const moved = await rescheduleEmail(db, { emailId: id, tenantId: principal.tenantId, at });
    if (moved.outcome === 'not-found') throw new Problem(404, 'not-found', `No email ${id}.`);
    if (moved.outcome !== 'rescheduled') {
      throw new Problem(409, 'not-reschedulable', NOT_RESCHEDULABLE[moved.outcome]);
    }
    res.json(updatedView(id));
  });

  return router;
}

/** An email with what its view shows: its messages, its events and the template it names. */
interface EmailRecord {
  email: EmailRow;
  messages: Message[];
  events: { type: string; detail: Record<string, unknown>; created_at: Date; recipient: string | null }[];
  templateName: string | null;
}

/** Reads an email of the tenant's, or undefined. */
async function readEmail(db: Db, tenantId: string, id: string): Promise<EmailRecord | undefined> {
  const email = await db
    .selectFrom('emails')
    .selectAll()
    .where('id', '=', id)
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  if (!email) return undefined;
  const templateId = email.content.template?.id;
  const [messages, events, template] = await Promise.all([
    db.selectFrom('messages').selectAll().where('email_id', '=', id).orderBy('created_at').execute(),
    db
      .selectFrom('events')
      .leftJoin('messages', 'messages.id', 'events.message_id')
      .select(['events.type', 'events.detail', 'events.created_at', 'messages.recipient'])
      .where('events.email_id', '=', id)
      .orderBy('events.id')
      .execute(),
    templateId
      ? db
          .selectFrom('templates')
          .select('name')
          .where('id', '=', templateId)
          .where('tenant_id', '=', tenantId)
          .executeTakeFirst()
      : undefined,
  ]);
  return { email, messages, events, templateName: template?.name ?? null };
}

/** POST /v1/emails answers with the id alone, as Resend does. */
export function acceptedView(email: PreparedEmail): Accepted {
  return { id: email.id };
}

/** POST /v1/emails/batch: the ids queued and, when permissive, the emails refused. */
export function batchView(
  prepared: PreparedEmail[],
  refused?: { index: number; message: string }[],
): BatchAccepted {
  return { data: prepared.map(acceptedView), ...(refused ? { errors: refused } : {}) };
}

export function canceledView(id: string): CanceledEmail {
  return { object: 'email', id };
}

export function updatedView(id: string): UpdatedEmail {
  return { object: 'email', id };
}

/**
 * `last_event` in Resend's words for the email's status, or for what a recipient did with it:
 * Resend reports a complaint, a click or an open as the email's last event, and its status stays
 * what it was.
 */
function lastEventOf(
  status: MessageStatus,
  engagement: Engagement | null,
  scheduledAt: Date | null,
): (typeof LAST_EVENTS)[number] {
  if (engagement) return engagement;
  switch (status) {
    case 'queued':
      return scheduledAt && scheduledAt.getTime() > Date.now() ? 'scheduled' : 'queued';
    case 'sending':
      return 'sent';
    case 'deferred':
      return 'delivery_delayed';
    default:
      return status;
  }
}

/** GET /v1/emails: Resend's list envelope around each email's summary. */
export function emailListView(page: PageOf<EmailSummaryRow>): EmailList {
  return { object: 'list', has_more: page.hasMore, data: page.rows.map(emailSummaryView) };
}

/** One email of the list: what Resend's ListEmail shows, with the status as GET shows it. */
export function emailSummaryView(row: EmailSummaryRow): EmailSummary {
  const status = overallStatus(row.statuses);
  const c = row.summary;
  return {
    id: row.id,
    from: row.from_address,
    to: c.to,
    cc: c.cc,
    bcc: c.bcc,
    reply_to: c.reply_to,
    message_id: messageIdOf({ id: row.id, fromAddress: row.from_address, submitted: c.message_id }),
    subject: c.template ? null : row.subject,
    tags: c.tags,
    created_at: row.created_at.toISOString(),
    scheduled_at: row.scheduled_at?.toISOString() ?? null,
    last_event: lastEventOf(status, row.engagement, row.scheduled_at),
    status,
  };
}

/** GET /v1/emails/:id in Resend's shape, with the recipients and their timeline. */
export function emailView({ email, messages, events, templateName }: EmailRecord): Email {
  const status = overallStatus(messages.map((m) => m.status));
  const c = email.content;
  // Rendered for each message as it is sent, not stored: shown as the template and its variables.
  const template = c.template
    ? { id: c.template.id, name: templateName, version: c.template.version, variables: c.template.variables }
    : null;
  return {
    object: 'email',
    id: email.id,
    from: email.from_address,
    to: c.to,
    cc: c.cc,
    bcc: c.bcc,
    reply_to: c.reply_to,
    message_id: messageIdOf({ id: email.id, fromAddress: email.from_address, submitted: c.message_id }),
    subject: template ? null : email.subject,
    html: template ? null : (c.html ?? null),
    text: template ? null : (c.text ?? null),
    template,
    tags: c.tags,
    created_at: email.created_at.toISOString(),
    scheduled_at: email.scheduled_at?.toISOString() ?? null,
    last_event: lastEventOf(
      status,
      ENGAGEMENTS.find((type) => events.some((e) => e.type === type)) ?? null,
      email.scheduled_at,
    ),
    status,
    recipients: messages.map((m) => ({
      address: m.recipient,
      status: m.status,
      attempts: m.attempts,
      last_reply: m.last_reply,
      next_attempt_at: m.next_attempt_at?.toISOString() ?? null,
    })),
    // Each message's creation is its `queued` transition (lib/send/accept.ts writes no events row).
    events: [
      ...messages.map((m): EmailEvent => ({
        type: 'queued',
        recipient: m.recipient,
        at: m.created_at.toISOString(),
      })),
      ...events.map((e): EmailEvent => ({
        // Written only through lib/db/transitions.ts, whose EVENT_TYPES the schema lists.
        type: e.type as EventType,
        recipient: e.recipient,
        at: e.created_at.toISOString(),
        ...documentedDetail(e.detail),
      })),
    ],
  };
}

/**
 * The members of an event's detail that the schema documents: a member a writer adds without
 * documenting it stays out of the answer rather than surprise a client.
 */
function documentedDetail(detail: Record<string, unknown>): EventDetail {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(EventDetail.shape)) if (detail[key] !== undefined) out[key] = detail[key];
  return out as EventDetail;
}

/**
 * One status for the whole email: the least advanced recipient while any is pending, else the
 * worst outcome (EMAIL_STATUS_ORDER, which GET /v1/emails?status= filters by too).
 */
export function overallStatus(statuses: MessageStatus[]): MessageStatus {
  return EMAIL_STATUS_ORDER.find((status) => statuses.includes(status)) ?? 'delivered';
}
