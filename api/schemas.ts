// What the API answers, defined once: each route builds its body with a view function whose
// return type is one of these schemas' (api/emails.ts, api/domains.ts, api/stats.ts,
// api/webhooks.ts), api/openapi.ts generates the document's responses from them, and
// test/openapi.test.ts holds every real answer to the document, where an object allows no member
// it does not name. The request schemas are in api/schemas-send.ts, api/email-requests.ts and
// api/webhook-requests.ts.

import { z } from 'zod';
import type { BounceClass } from '../lib/bounce-class.js';
import { MESSAGE_STATUSES } from '../lib/db/schema.js';
import { STAT_RATES, STAT_TYPES, type StatRate, type StatType } from '../lib/db/stats.js';
import { MACHINE_REASONS } from './machine-fetch.js';
import { EVENT_TYPES } from '../lib/db/transitions.js';
import type { ProblemType } from '../lib/problem.js';
import { WEBHOOK_EVENT_TYPES } from '../lib/webhooks.js';

const id = z.guid();
const dateTime = z.string().meta({ format: 'date-time' });

/** POST /v1/emails: the id of the queued email. */
export const Accepted = z.object({ id }).describe('The email, queued; read it at /v1/emails/{id}.');

/** POST /v1/emails/batch. */
export const BatchAccepted = z
  .object({
    data: z.array(Accepted).describe('The emails queued, in the order sent (permissive: the valid ones).'),
    errors: z
      .array(
        z.object({
          index: z.int().min(0).describe('Its position in the batch, from 0.'),
          message: z.string(),
        }),
      )
      .optional()
      .describe('With x-batch-validation: permissive, the emails refused.'),
  })
  .describe('The batch, queued.');

export const EmailStatus = z
  .enum(MESSAGE_STATUSES)
  .describe(
    'queued and deferred wait for an attempt, sending is under way; delivered, bounced, failed, ' +
      'suppressed and canceled are final (a bounce can still follow a delivery).',
  );

export const EventType = z
  .enum(['queued', ...EVENT_TYPES])
  .describe(
    'queued is each message’s creation; scheduled, when it is due later (again, with ' +
      '`previous_scheduled_at`, when it is rescheduled); the sender writes sending to canceled, and ' +
      'the inbound listener adds bounced (with `async`), delayed and complained from the reports ' +
      'that come back.',
  );

/**
 * What an event's detail may hold, by who writes it: the sender (attempt to expired, retry_at,
 * job_id) and the inbound listener (async to original_recipient).
 */
export const EventDetail = z.object({
  attempt: z.int().min(1).optional().describe('Which attempt of the message this was, from 1.'),
  reply: z.string().optional().describe('The receiving server’s SMTP reply.'),
  host: z.string().optional().describe('The server that took the message.'),
  code: z.string().optional().describe('Why an attempt failed, as a code: ECONNECTION, ETEMPLATE_RUNTIME, …'),
  command: z.string().optional().describe('The SMTP command that failed.'),
  reason: z.string().optional(),
  class: z
    .enum(['hard', 'soft', 'message', 'policy'] as const satisfies readonly BounceClass[])
    .optional()
    .describe(
      'Whose fault a refusal was (RFC 3463): hard (the address), soft (for now), message (its ' +
        'content), policy (the sender); only hard suppresses the address.',
    ),
  part: z.enum(['subject', 'html', 'text']).optional().describe('The template part that failed.'),
  line: z.int().optional().describe('The line of the template part that failed.'),
  expired: z.boolean().optional().describe('The message’s lifetime ended before it was delivered.'),
  retry_at: dateTime.optional().describe('When a deferred message is tried again.'),
  job_id: z.union([z.string(), z.int()]).optional(),
  async: z.boolean().optional().describe('Reported after the fact, by a bounce message (a DSN).'),
  action: z.string().optional().describe('The DSN’s Action: failed, delayed.'),
  status: z.string().optional().describe('The DSN’s Status, such as 5.1.1.'),
  final_recipient: z.string().optional(),
  remote_mta: z.string().optional(),
  reporting_mta: z.string().optional(),
  feedback_type: z.string().optional().describe('The complaint’s Feedback-Type, such as abuse.'),
  user_agent: z.string().optional(),
  link: z.string().optional().describe('The URL a click went to: exactly the link as the message had it.'),
  machine: z
    .boolean()
    .optional()
    .describe(
      'An open or click made by a machine (a privacy proxy, an image proxy, a link scanner), not a person.',
    ),
  machine_reason: z
    .enum(MACHINE_REASONS)
    .optional()
    .describe('Which signal said it was a machine (README: Open and click tracking).'),
  network: z.string().optional().describe('For machine_reason scanner-network: whose network.'),
  ip: z.string().optional().describe('The address an open or click came from.'),
  original_recipient: z.string().optional(),
  scheduled_at: dateTime.optional().describe('When a scheduled message is due.'),
  previous_scheduled_at: dateTime
    .optional()
    .describe('When it was due before it was rescheduled (PATCH /v1/emails/{id}).'),
  method: z
    .enum(['one-click', 'page', 'mailto'])
    .optional()
    .describe(
      'How an unsubscribe came: one-click (a mail client’s RFC 8058 POST), page (the button of the ' +
        'link’s page), mailto (a mail to the List-Unsubscribe address).',
    ),
});

export const EmailEvent = z
  .object({
    type: EventType,
    recipient: z.string().nullable().describe('The recipient whose message this is about.'),
    at: dateTime,
  })
  .extend(EventDetail.shape);

export const EmailRecipient = z.object({
  address: z.string(),
  status: EmailStatus,
  attempts: z.int().min(0),
  last_reply: z.string().nullable().describe('The last SMTP reply for this recipient.'),
  next_attempt_at: dateTime.nullable(),
});

export const EmailTemplate = z
  .object({
    id: id.describe('The Template, pinned at acceptance.'),
    name: z.string().nullable().describe('Its name, or null once the Template is deleted.'),
    version: z.int().min(1),
    variables: z.record(z.string(), z.unknown()),
  })
  .describe('The template an email is rendered from, as accepted.');

const addresses = z.array(z.string());

/** Resend's names for where an email is, as its SDK types `last_event`. */
export const LAST_EVENTS = [
  'scheduled',
  'queued',
  'sent',
  'delivery_delayed',
  'delivered',
  'bounced',
  'failed',
  'suppressed',
  'canceled',
  'opened',
  'clicked',
  'complained',
] as const;

const lastEvent = z
  .enum(LAST_EVENTS)
  .describe(
    'The status in Resend’s words: scheduled while queued for a later time, sent while under way, ' +
      'delivery_delayed when deferred; or what a recipient did with it: complained once one reported ' +
      'it as spam, else clicked once one clicked a tracked link, else opened once one opened it.',
  );

const messageId = z
  .string()
  .describe(
    'The Message-ID header its recipients see (one for all of them), with its angle brackets: the ' +
      'client’s own for a message submitted over SMTP with one.',
  );

/** GET /v1/emails/{id}. */
export const Email = z
  .object({
    object: z.literal('email'),
    id,
    from: z.string(),
    to: addresses,
    cc: addresses,
    bcc: addresses,
    reply_to: addresses,
    message_id: messageId,
    subject: z.string().nullable(),
    html: z.string().nullable(),
    text: z.string().nullable(),
    template: EmailTemplate.nullable(),
    tags: z.array(z.object({ name: z.string(), value: z.string() })),
    created_at: dateTime,
    scheduled_at: dateTime.nullable(),
    last_event: lastEvent,
    status: EmailStatus.describe(
      'The least advanced recipient’s while any is pending, else the worst outcome.',
    ),
    recipients: z.array(EmailRecipient),
    events: z
      .array(EmailEvent)
      .describe('Every recipient’s transitions, oldest first; each message starts at queued.'),
  })
  .describe(
    'An email with its status, its recipients and their event timeline. A template email is ' +
      'rendered for each recipient when it is sent, and the rendered message is not stored: its ' +
      '`subject`, `html` and `text` are null, and `template` names the pinned version and the ' +
      'variables it is rendered with. Otherwise `template` is null.',
  );

/** POST /v1/emails/{id}/cancel. */
export const CanceledEmail = z
  .object({ object: z.literal('email'), id })
  .describe('The recipients not sent to yet are canceled.');

/** PATCH /v1/emails/{id}: Resend's UpdateEmailResponseSuccess. */
export const UpdatedEmail = z
  .object({ object: z.literal('email'), id })
  .describe('The email is due at its new scheduled_at.');

/** One email of GET /v1/emails: Resend's ListEmail, with Mailplane's status and tags. */
export const EmailSummary = z
  .object({
    id,
    from: z.string(),
    to: addresses,
    cc: addresses,
    bcc: addresses,
    reply_to: addresses,
    message_id: messageId,
    subject: z.string().nullable().describe('Null for a template email, rendered as it is sent.'),
    tags: z.array(z.object({ name: z.string(), value: z.string() })),
    created_at: dateTime,
    scheduled_at: dateTime.nullable(),
    last_event: lastEvent,
    status: EmailStatus,
  })
  .describe('An email as the list shows it; GET /v1/emails/{id} has its recipients and timeline.');

/** GET /v1/emails. */
export const EmailList = z
  .object({
    object: z.literal('list'),
    has_more: z.boolean().describe('More emails lie beyond this page, in the direction it was read.'),
    data: z.array(EmailSummary).describe('Newest first.'),
  })
  .describe(
    'A page of the tenant’s emails, newest first. The next page is `after` the last email’s id, ' +
      'the one before `before` the first’s; a page stays where it is while new emails arrive.',
  );

export const DnsRecord = z.object({
  record: z.enum(['DKIM', 'SPF', 'DMARC', 'RETURN-PATH', 'TRACKING']),
  type: z.enum(['TXT', 'MX', 'CNAME']),
  name: z.string(),
  value: z.string(),
  purpose: z.enum(['dkim', 'spf', 'dmarc', 'return-path', 'tracking']),
  ttl: z.literal('Auto'),
  state: z
    .enum(['active', 'next', 'retiring'])
    .optional()
    .describe(
      'A DKIM key’s: `active` signs now; `next` signs once DNS shows it (a rotation, or an RSA key ' +
        'added beside an Ed25519 one); `retiring` signs nothing more and stays published until ' +
        'mail signed with it is delivered.',
    ),
});

/** Resend's status of a domain, from its records' in the last DNS check (api/schemas-domains.ts). */
export const DomainStatus = z
  .enum(['not_started', 'pending', 'verified', 'failed', 'partially_verified', 'partially_failed'])
  .describe('From the records’ in the last DNS check: `verified` when every one is.');

export const Domain = z.object({
  object: z.literal('domain'),
  id,
  name: z.string(),
  status: DomainStatus,
  created_at: dateTime,
  dkim: z.object({ selector: z.string(), algorithm: z.enum(['rsa-2048', 'ed25519']) }),
  records: z.array(DnsRecord).describe('The DNS records to publish for mail from Mailplane to be accepted.'),
});

/** GET /v1/domains. */
export const DomainList = z
  .object({ object: z.literal('list'), has_more: z.boolean(), data: z.array(Domain) })
  .describe('The tenant’s sending domains, by name, a page at a time.');

const count = z.int().min(0);
/** What each count of GET /v1/stats is. */
const COUNTED: Record<StatType, string> = {
  sent: 'Messages tried for the first time.',
  delivered: 'Messages the receiving server accepted.',
  deferred: 'Deferrals: a message tried again later counts once for each.',
  bounced: 'Messages bounced, at once or later.',
  complained: 'Messages a recipient reported as spam.',
  failed: 'Messages that failed for what they are (size, content, policy), the address left alone.',
  suppressed: 'Messages not sent because the tenant suppresses the address.',
  canceled: 'Messages canceled before they were sent.',
  unsubscribed: 'Messages whose recipient unsubscribed through them.',
  opened: 'Opens by a person: every one, a message opened twice counts twice.',
  clicked: 'Clicks by a person: every one.',
  machine_opened: 'Opens by a machine (a privacy proxy, an image proxy), apart from opened.',
  machine_clicked: 'Clicks by a machine (a link scanner), apart from clicked.',
  unique_opened:
    'Messages a person opened at least once, each counted once, in the interval of its first open ' +
    'by a person.',
  unique_clicked:
    'Messages a person clicked at least once, each counted once, in the interval of its first click ' +
    'by a person.',
  unique_opened_any:
    'Messages opened at least once by anything (a person or a machine), each counted once, in the ' +
    'interval of its first open.',
  unique_clicked_any:
    'Messages clicked at least once by anything (a person or a machine), each counted once, in the ' +
    'interval of its first click.',
};
const counts = Object.fromEntries(STAT_TYPES.map((t) => [t, count.describe(COUNTED[t])])) as Record<
  StatType,
  typeof count
>;
const rate = z.number().min(0).nullable();
/** What each rate is a share of; the numbers are lib/db/stats.ts STAT_RATES'. */
const RATE_OF: Record<StatRate, string> = {
  delivery_rate: 'delivered ÷ sent',
  bounce_rate: 'bounced ÷ sent',
  complaint_rate: 'complained ÷ delivered',
  unsubscribe_rate: 'unsubscribed ÷ delivered',
  open_rate: 'unique_opened ÷ delivered: the share of delivered messages a person opened',
  click_rate: 'unique_clicked ÷ delivered: the share of delivered messages a person clicked',
};
const rates = Object.fromEntries(
  (Object.keys(STAT_RATES) as StatRate[]).map((r) => [
    r,
    rate.describe(
      `${RATE_OF[r]}; to 4 decimal places, null when ${STAT_RATES[r].per} is 0. Of the same ` +
        'counts: an event counts in the interval it happens in, so an interval where the opens or ' +
        'bounces of mail delivered in an earlier one land may show a rate above 1.',
    ),
  ]),
) as Record<StatRate, typeof rate>;

export const StatsInterval = z.enum(['hour', 'day']);
export const StatsGroup = z.enum(['none', 'domain', 'tag']);

/** GET /v1/stats. */
export const Stats = z
  .object({
    object: z.literal('stats'),
    from: dateTime,
    to: dateTime,
    interval: StatsInterval,
    group_by: StatsGroup,
    totals: z.object({ ...counts, ...rates }).describe('The whole window.'),
    data: z
      .array(
        z.object({
          start: dateTime.describe('The hour or day, in UTC.'),
          domain: z.string().optional().describe('With group_by=domain: the sending domain.'),
          tag: z.string().optional().describe('With group_by=tag: the tag, as name:value.'),
          ...counts,
          ...rates,
        }),
      )
      .describe('One entry per interval (and domain or tag) with any event, oldest first.'),
  })
  .describe(
    'Counts of each message’s events in the window: sent is the first attempt, deferred each ' +
      'deferral, and the rest each outcome; opened and clicked each open and click, and the unique_ ' +
      'counts each message once, at its first. The rates are shares of these counts.',
  );

const webhookEventType = z.enum(WEBHOOK_EVENT_TYPES);

/** A webhook in Resend's shape (GetWebhookResponseSuccess), its secrets left out. */
export const Webhook = z.object({
  object: z.literal('webhook'),
  id,
  endpoint: z.string().describe('Where events are POSTed.'),
  events: z.array(webhookEventType).nullable().describe('The events it receives; null: every one.'),
  status: z.enum(['enabled', 'disabled']),
  disabled_reason: z
    .string()
    .nullable()
    .describe('Why it is disabled: by the API, a 410 Gone, or days of failed deliveries.'),
  source: z
    .enum(['api', 'tenant'])
    .describe('tenant: declared in the Tenant resource (spec.webhooks), and read-only here.'),
  name: z.string().nullable().describe('The Tenant’s name for it; null for one registered through the API.'),
  previous_secret_expires_at: dateTime
    .nullable()
    .describe('Until when the secret before the last rotation signs too.'),
  failing_since: dateTime
    .nullable()
    .describe('Since when every attempt has failed; null once one succeeds. Five days of it disable it.'),
  paused_until: dateTime
    .nullable()
    .describe('After a timeout: until when deliveries falling due are recorded as not sent, and retried.'),
  created_at: dateTime,
  updated_at: dateTime,
});

/** POST /v1/webhooks and .../signing-secret/rotate: the webhook with its new secret, shown once. */
export const WebhookWithSecret = Webhook.extend({
  signing_secret: z
    .string()
    .describe('whsec_…: the Standard Webhooks secret that signs every event. It is not shown again.'),
});

/** DELETE /v1/webhooks/{id}. */
export const DeletedWebhook = z.object({ object: z.literal('webhook'), id, deleted: z.literal(true) });

const listOf = <T extends z.ZodType>(item: T, what: string) =>
  z.object({
    object: z.literal('list'),
    has_more: z.boolean().describe('More items lie beyond this page, in the direction it was read.'),
    data: z.array(item).describe(`${what}, newest first.`),
  });

/** GET /v1/webhooks. */
export const WebhookList = listOf(Webhook, 'The tenant’s webhooks');

/**
 * One event sent (or being sent) to one webhook, as Resend's WebhookEventLog. `status` is in
 * Resend's words: pending (not tried yet), attempting (failed, to be retried), success, failed
 * (retries spent, or the webhook disabled).
 */
export const WebhookDelivery = z.object({
  object: z.literal('webhook_event'),
  id: z.string().describe('The delivery’s id, a whole number.'),
  type: webhookEventType,
  status: z.enum(['pending', 'attempting', 'success', 'failed']),
  email_id: id,
  attempts: z.int().min(0),
  next_attempt_at: dateTime.nullable(),
  response_status: z.int().nullable().describe('The receiver’s last HTTP status.'),
  response_excerpt: z.string().nullable().describe('The start of the receiver’s last answer.'),
  latency_ms: z.int().min(0).nullable(),
  error: z.string().nullable().describe('Why the last attempt failed without an answer.'),
  replay: z.boolean().describe('Queued by a replay.'),
  created_at: dateTime,
  delivered_at: dateTime.nullable(),
});

/** GET /v1/webhooks/{id}/deliveries and /events. */
export const WebhookDeliveryList = listOf(WebhookDelivery, 'The events sent to the webhook');

/** One attempt of a delivery, as Resend's WebhookEventAttempt, with why one got no answer. */
export const WebhookAttempt = z.object({
  id: z.string().describe('The attempt’s number, 1 for the first.'),
  http_status_code: z.int().nullable().describe('The receiver’s status; null when none answered.'),
  response: z.string().describe('The start of the receiver’s answer, or why there was none.'),
  error: z.string().nullable().describe('Why no answer came (a timeout, a refused connection).'),
  latency_ms: z.int().min(0).nullable(),
  sent_at: dateTime.nullable().describe('When it was sent; null for an attempt made before this was kept.'),
});

/** GET /v1/webhooks/{id}/events/{eventId}/attempts. */
export const WebhookAttemptList = listOf(WebhookAttempt, 'The delivery’s attempts, newest first');

/** The body POSTed for an event, in Resend's shape (lib/webhooks.ts webhookPayload). */
export const WebhookPayload = z
  .object({
    type: webhookEventType,
    created_at: dateTime,
    data: z.object({
      created_at: dateTime,
      email_id: id,
      message_id: messageId,
      from: z.string(),
      to: addresses,
      subject: z.string(),
      recipient: z.string().optional().describe('The recipient whose message this is about.'),
      tags: z.record(z.string(), z.string()).describe('The email’s tags, name to value.'),
      bounce: z
        .object({
          type: z.enum(['Permanent', 'Transient']),
          subType: z.string(),
          message: z.string(),
        })
        .optional()
        .describe('email.bounced: Permanent only for an address that will never take mail.'),
      failed: z
        .object({ reason: z.string() })
        .optional()
        .describe('email.failed and email.delivery_delayed.'),
      complaint: z.object({ type: z.string() }).optional().describe('email.complained: its Feedback-Type.'),
      unsubscribe: z
        .object({ method: z.enum(['one-click', 'page', 'mailto']) })
        .optional()
        .describe('email.unsubscribed: how the recipient asked (see EmailEvent.method).'),
      reply: z.string().optional().describe('email.delivered: the receiving server’s reply.'),
    }),
  })
  .describe('The body of the event, as the webhook receives it.');

/** GET /v1/webhooks/{id}/events/{eventId}: one delivery with the body it sends. */
export const WebhookDeliveryWithPayload = WebhookDelivery.extend({ payload: WebhookPayload });

/** POST /v1/webhooks/{id}/events/{eventId}/replay: the new delivery of the event. */
export const ReplayedDelivery = z
  .object({ object: z.literal('webhook_event'), id: z.string() })
  .describe('The event, queued again as a new delivery (a new webhook-id).');

/** POST /v1/webhooks/{id}/replay. */
export const WebhookReplay = z
  .object({
    object: z.literal('webhook_replay'),
    webhook_id: id,
    queued: z.int().min(0).describe('The events queued again, oldest first.'),
  })
  .describe('The events queued again, each as a new delivery.');

/** GET /v1/audit-log: one change, by whom (lib/db/audit.ts). */
export const AuditEntry = z.object({
  object: z.literal('audit_entry'),
  id: z.string().describe('A whole number; later entries have larger ones.'),
  at: dateTime,
  actor: z.string().describe('`api_key:<prefix>`, the controller, or the process that made the change.'),
  action: z.string().describe('What was done, as `<kind>.<verb>`: api_key.issued, webhook.updated, …'),
  target: z.string().describe('What it was done to.'),
  detail: z.record(z.string(), z.unknown()),
  request_id: z.string().nullable().describe('The X-Request-Id of the request that made it, if one did.'),
});

/** GET /v1/audit-log. */
export const AuditLog = listOf(AuditEntry, 'The entries');

/** /healthz and /readyz. */
export const Health = z.object({ status: z.literal('ok') });

/** GET /v1/openapi.json: this document. */
export const OpenApiDocument = z
  .looseObject({ openapi: z.literal('3.1.0') })
  .describe('The OpenAPI 3.1 document.');

/** Every problem type the API answers with (lib/problem.ts), and the name Resend's SDK reads. */
export const PROBLEM_TYPES = [
  'validation-error',
  'missing-api-key',
  'invalid-api-key',
  'restricted-api-key',
  'not-found',
  'method-not-allowed',
  'domain-not-owned',
  'message-too-large',
  'body-too-large',
  'malformed-json',
  'bad-request',
  'unsupported-media-type',
  'unsupported-encoding',
  'invalid-idempotency-key',
  'invalid-idempotent-request',
  'concurrent-idempotent-requests',
  'not-cancelable',
  'not-reschedulable',
  'webhook-read-only',
  'webhook-disabled',
  'template-read-only',
  'template-exists',
  'template-invalid',
  'template-render-failed',
  'suppression-from-complaint',
  'contact-exists',
  'broadcast-not-changeable',
  'segment-in-use',
  'unsubscribe-unavailable',
  'rate-limit-exceeded',
  'service-unavailable',
  'internal-server-error',
] as const satisfies readonly ProblemType[];

// A type added to lib/problem.ts and not here fails to compile: the document lists every one.
type Unlisted = Exclude<ProblemType, (typeof PROBLEM_TYPES)[number]>;
const everyProblemTypeListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyProblemTypeListed;

export const FieldError = z.object({
  field: z.string().describe('The path of the field: `to[2]`, `headers.X-Campaign`, `[3].from` in a batch.'),
  message: z.string(),
});

/** lib/problem.ts's Problem.toJSON(), with the request's id that api/problems.ts adds. */
export const Problem = z
  .object({
    type: z.enum(PROBLEM_TYPES.map((t) => `https://mailplane.io/problems/${t}` as const)),
    title: z.string(),
    status: z.int().min(400).max(599),
    detail: z.string().describe('What went wrong, for a person.'),
    errors: z.array(FieldError).optional().describe('Every field at fault (up to 100).'),
    statusCode: z.int().min(400).max(599).describe('The status again, where Resend’s SDK reads it.'),
    name: z
      .enum(PROBLEM_TYPES.map((t) => t.replace(/-/g, '_') as Underscored<typeof t>))
      .describe('The type with underscores, Resend’s error name where it has the same error.'),
    message: z.string().describe('The detail again, where Resend’s SDK reads it.'),
    request_id: z.string().describe('The request’s X-Request-Id, to quote when asking about it.'),
    part: z
      .enum(['subject', 'html', 'text'])
      .optional()
      .describe('template-invalid and template-render-failed: the part of the template at fault.'),
    line: z.int().min(1).optional().describe('With part: the line of that part at fault, when known.'),
  })
  .describe('An RFC 9457 problem: `type` is stable, clients branch on it.');

type Underscored<S extends string> = S extends `${infer A}-${infer B}` ? `${A}_${Underscored<B>}` : S;

export type Accepted = z.infer<typeof Accepted>;
export type BatchAccepted = z.infer<typeof BatchAccepted>;
export type Email = z.infer<typeof Email>;
export type EmailEvent = z.infer<typeof EmailEvent>;
export type EmailRecipient = z.infer<typeof EmailRecipient>;
export type EventDetail = z.infer<typeof EventDetail>;
export type EventType = z.infer<typeof EventType>;
export type CanceledEmail = z.infer<typeof CanceledEmail>;
export type Domain = z.infer<typeof Domain>;
export type DomainList = z.infer<typeof DomainList>;
export type UpdatedEmail = z.infer<typeof UpdatedEmail>;
export type EmailSummary = z.infer<typeof EmailSummary>;
export type EmailList = z.infer<typeof EmailList>;
export type Stats = z.infer<typeof Stats>;
export type Webhook = z.infer<typeof Webhook>;
export type WebhookWithSecret = z.infer<typeof WebhookWithSecret>;
export type DeletedWebhook = z.infer<typeof DeletedWebhook>;
export type WebhookDelivery = z.infer<typeof WebhookDelivery>;
export type WebhookAttempt = z.infer<typeof WebhookAttempt>;
export type WebhookDeliveryWithPayload = z.infer<typeof WebhookDeliveryWithPayload>;
export type WebhookPayload = z.infer<typeof WebhookPayload>;
export type WebhookReplay = z.infer<typeof WebhookReplay>;
export type ReplayedDelivery = z.infer<typeof ReplayedDelivery>;
