// What the API answers, defined once: each route builds its body with a view function whose
// return type is one of these schemas' (api/emails.ts, api/domains.ts), api/openapi.ts generates
// the document's responses from them, and test/openapi.test.ts holds every real answer to the
// document, where an object allows no member it does not name. The request schemas are in
// api/schemas-send.ts.

import { z } from 'zod';
import { MESSAGE_STATUSES } from '../lib/db/schema.js';
import { EVENT_TYPES } from '../lib/db/transitions.js';
import type { ProblemType } from '../lib/problem.js';

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
    'queued is each message’s creation; the sender writes sending to canceled, and the inbound ' +
      'listener adds bounced (with `async`), delayed and complained from the reports that come back.',
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
  original_recipient: z.string().optional(),
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
    subject: z.string().nullable(),
    html: z.string().nullable(),
    text: z.string().nullable(),
    template: EmailTemplate.nullable(),
    tags: z.array(z.object({ name: z.string(), value: z.string() })),
    created_at: dateTime,
    scheduled_at: dateTime.nullable(),
    last_event: z
      .union([EmailStatus, z.literal('complained')])
      .describe('The status, or complained once a recipient has reported the email as spam.'),
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

export const DnsRecord = z.object({
  record: z.enum(['DKIM', 'SPF', 'DMARC', 'RETURN-PATH']),
  type: z.enum(['TXT', 'MX']),
  name: z.string(),
  value: z.string(),
  purpose: z.enum(['dkim', 'spf', 'dmarc', 'return-path']),
  ttl: z.literal('Auto'),
});

export const Domain = z.object({
  object: z.literal('domain'),
  id,
  name: z.string(),
  created_at: dateTime,
  dkim: z.object({ selector: z.string(), algorithm: z.enum(['rsa-2048', 'ed25519']) }),
  records: z.array(DnsRecord).describe('The DNS records to publish for mail from Mailplane to be accepted.'),
});

/** GET /v1/domains. */
export const DomainList = z
  .object({ object: z.literal('list'), data: z.array(Domain) })
  .describe('The tenant’s sending domains, by name.');

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
  'webhook-read-only',
  'webhook-disabled',
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
