// The OpenAPI 3.1 document served at /v1/openapi.json, generated. Every request body and response
// is a zod schema from api/schemas-send.ts (what a caller sends, the ones api/validate.ts parses
// with) or api/schemas.ts (what each route answers, the types its view functions return),
// converted with z.toJSONSchema; what is written here is only what no schema says: the routes,
// their parameters and security, and which problems each can answer with and why.
// test/openapi.test.ts holds the real answers of every route to this document.

import { z } from 'zod';
import { MAX_ENDPOINTS_PER_TENANT, REPLAY_MAX_EVENTS } from '../lib/db/webhooks.js';
import type { ProblemType } from '../lib/problem.js';
import { CLICK_PATH, OPEN_PATH } from '../lib/tracking.js';
import { UNSUBSCRIBE_PATH } from '../lib/unsubscribe.js';
import { ListEmailsQuery, UpdateEmail } from './email-requests.js';
import {
  Accepted,
  AuditLog,
  BatchAccepted,
  CanceledEmail,
  DeletedWebhook,
  DnsRecord,
  Domain,
  DomainList,
  Email,
  EmailEvent,
  EmailList,
  EmailRecipient,
  EmailStatus,
  EmailSummary,
  EmailTemplate,
  FieldError,
  Health,
  OpenApiDocument,
  Problem,
  ReplayedDelivery,
  Stats,
  UpdatedEmail,
  Webhook,
  WebhookAttempt,
  WebhookAttemptList,
  WebhookDelivery,
  WebhookDeliveryList,
  WebhookDeliveryWithPayload,
  WebhookList,
  WebhookPayload,
  WebhookReplay,
  WebhookWithSecret,
} from './schemas.js';
import { BatchValidation, batchOf, sendEmailSchema } from './schemas-send.js';
import { StatsQuery } from './stats.js';
import { CheckedDnsRecord, DomainDetail, DomainStatus, VerifiedDomain } from './schemas-domains.js';
import {
  CreateTemplate,
  DeletedTemplate,
  RenderTemplate,
  RenderedTemplate,
  Template,
  TemplateList,
  TemplateListQuery,
  TemplateRef,
  TemplateSummary,
  TemplateVariable,
  TemplateVersionSummary,
  UpdateTemplate,
} from './schemas-templates.js';
import {
  AddedSuppressions,
  AddSuppressions,
  ExportSuppressionsQuery,
  LiftedSuppression,
  LiftSuppressionQuery,
  ListSuppressionsQuery,
  MAX_ADDED,
  Suppression,
  SuppressionImport,
  SuppressionList,
} from './schemas-suppressions.js';
import {
  CreateWebhook,
  DeliveryListQuery,
  REPLAY_MAX_RANGE_DAYS,
  ReplayWebhook,
  UpdateWebhook,
  WebhookListQuery,
} from './webhook-requests.js';
import {
  Broadcast,
  BroadcastId,
  BroadcastList,
  BroadcastSummary,
  CanceledBroadcast,
  CreateBroadcast,
  DeletedBroadcast,
  ListBroadcastsQuery,
  SendBroadcast,
  UpdateBroadcast,
} from './schemas-broadcasts.js';
import {
  Audience,
  Contact,
  ContactList,
  ContactListQuery,
  ContactRef,
  ContactSegmentAdded,
  ContactSegmentRemoved,
  ContactSummary,
  CreateAudienceContact,
  CreateContact,
  CreatedAudience,
  CreatedSegment,
  DeletedAudience,
  DeletedContact,
  DeletedSegment,
  Segment,
  SegmentInput,
  SegmentList,
  SegmentListQuery,
  SegmentSummary,
  UpdateContact,
  UpdatedSegment,
} from './schemas-contacts.js';

type Method = 'get' | 'post' | 'patch' | 'delete';
type Tag =
  | 'Emails'
  | 'Domains'
  | 'Templates'
  | 'Webhooks'
  | 'Statistics'
  | 'Audit log'
  | 'Suppressions'
  | 'Contacts'
  | 'Segments'
  | 'Broadcasts'
  | 'Recipients'
  | 'Service';

/** A problem an operation can answer with: its status and the types it takes there. */
interface ProblemAnswer {
  status: number;
  types: ProblemType[];
}

interface Operation {
  operationId: string;
  tag: Tag;
  summary: string;
  description: string;
  /** Answers without an API key. */
  public?: true;
  parameters?: Parameter[];
  /** Query parameters: each member of the schema, its description and whether it is optional. */
  query?: z.ZodObject;
  /** application/json unless `mediaType` says. */
  body?: {
    schema: z.ZodType;
    description: string;
    mediaType?: string;
    /** The request may come without one (a one-click unsubscribe outside RFC 8058). */
    optional?: true;
  };
  ok: {
    status: 200 | 201 | 202 | 302;
    description: string;
    schema: z.ZodType;
    /** application/json unless said. */
    mediaType?: string;
    /** Other media types the same answer may come in, with the same schema. */
    alsoAs?: string[];
    /** Beyond X-Request-Id, which every answer carries. */
    headers?: HeaderName[];
  };
  problems: ProblemAnswer[];
  /** Answers that are neither the success nor a problem of PROBLEM_WHY's: a public page's own. */
  answers?: OtherAnswer[];
}

/** An answer described where it is given: its status, why, and each media type it comes in. */
interface OtherAnswer {
  status: number;
  description: string;
  content: Record<string, z.ZodType>;
}

interface Parameter {
  name: string;
  in: 'path' | 'header' | 'query';
  required: boolean;
  description: string;
  schema: z.ZodType;
}

interface HeaderObject {
  description: string;
  schema: Record<string, unknown>;
}

/** The response headers, each described once and referred to by name. */
const HEADERS = {
  'X-Request-Id': {
    description: 'The request’s id: the caller’s X-Request-Id, or one made for it.',
    schema: { type: 'string' },
  },
  Location: {
    description: 'Where to read what was sent or made; on a redirect, where it leads.',
    schema: { type: 'string' },
  },
  'Idempotent-Replayed': {
    description: '`true` when this is the first answer to the same Idempotency-Key, again.',
    schema: { type: 'string', enum: ['true'] },
  },
  'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'string' } },
} satisfies Record<string, HeaderObject>;
type HeaderName = keyof typeof HEADERS;

const headerRefs = (names: HeaderName[]) =>
  Object.fromEntries(names.map((name) => [name, { $ref: `#/components/headers/${name}` }]));

/** Why each problem type is answered, for the responses' descriptions. */
const PROBLEM_WHY: Record<ProblemType, string> = {
  'validation-error': 'fields are at fault; `errors` lists every one',
  'missing-api-key': 'no `Authorization: Bearer` API key was sent',
  'invalid-api-key': 'the API key is not valid or has been revoked',
  'restricted-api-key': 'the API key lacks the scope the route needs',
  'not-found': 'no such email, webhook or event in this tenant (another tenant’s is as absent)',
  'method-not-allowed': 'the path is one the API has, but not for this method; `Allow` lists those it takes',
  'domain-not-owned': 'the from domain is not a SendingDomain of the tenant',
  'message-too-large': 'the body and attachments are over the size limit',
  'body-too-large': 'the request body is over the size limit',
  'malformed-json': 'the body is not valid JSON',
  'bad-request': 'the body could not be read (a Content-Encoding that does not decode)',
  'unsupported-media-type': 'the body is not application/json',
  'unsupported-encoding': 'the body is not UTF-8',
  'invalid-idempotency-key': 'the Idempotency-Key is empty or too long',
  'invalid-idempotent-request': 'the Idempotency-Key was used for another request',
  'concurrent-idempotent-requests': 'a request with the same Idempotency-Key is still in flight',
  'not-cancelable': 'every recipient has already been sent to or settled',
  'not-reschedulable':
    'the email is not scheduled, or no longer: its time has come, or a recipient has been sent to or canceled',
  'webhook-read-only': 'the webhook is declared in the Tenant resource; change it there',
  'webhook-disabled': 'the webhook is disabled; enable it before replaying events to it',
  'template-read-only':
    'the template is declared as a Template resource, its source of truth; change it there',
  'template-exists': 'the tenant has a template of that name already',
  'template-invalid':
    'the template does not compile, or does not render its sample data; `part` and `line` say where',
  'template-render-failed': 'the template does not render with these variables; `part` and `line` say where',
  'suppression-from-complaint':
    'the suppression came from a complaint; lifting it needs `lift_complaint=true`',
  'contact-exists': 'the tenant has a contact with that address already (or it is in the audience already)',
  'broadcast-not-changeable':
    'the broadcast is past the status the change needs (a draft to edit or send; scheduled, queued or sending to cancel; a draft or scheduled one to delete)',
  'segment-in-use': 'a broadcast is going out to the segment (scheduled, queued or sending); cancel it first',
  'unsubscribe-unavailable':
    'no one-click unsubscribe link can be offered from the from domain: it has no spec.tracking.domain and MAILPLANE_PUBLIC_URL is not set',
  'rate-limit-exceeded': 'too many requests; retry after Retry-After seconds',
  'service-unavailable': 'the database is unreachable; nothing was accepted, retry after Retry-After seconds',
  'internal-server-error': 'something went wrong on Mailplane’s side; nothing was accepted',
};

const AUTHENTICATED: ProblemAnswer[] = [
  { status: 401, types: ['missing-api-key', 'invalid-api-key'] },
  { status: 403, types: ['restricted-api-key'] },
  { status: 500, types: ['internal-server-error'] },
  { status: 503, types: ['service-unavailable'] },
];
/** Refused by an API key that may only read or only send: changing webhooks needs both. */
const MANAGES: ProblemAnswer[] = [...AUTHENTICATED, { status: 403, types: ['restricted-api-key'] }];
/** What any POST or PATCH under /v1 can meet before its route runs: the body parser's refusals. */
const WITH_BODY: ProblemAnswer[] = [
  { status: 400, types: ['malformed-json', 'bad-request'] },
  { status: 413, types: ['body-too-large'] },
  { status: 415, types: ['unsupported-media-type', 'unsupported-encoding'] },
];
const SENDS: ProblemAnswer[] = [
  ...AUTHENTICATED,
  ...WITH_BODY,
  { status: 400, types: ['invalid-idempotency-key'] },
  { status: 403, types: ['domain-not-owned'] },
  { status: 409, types: ['invalid-idempotent-request', 'concurrent-idempotent-requests'] },
  { status: 413, types: ['message-too-large'] },
  { status: 422, types: ['validation-error'] },
];

const emailId: Parameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'The id the send answered with.',
  schema: z.guid(),
};
const webhookId: Parameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'The webhook’s id.',
  schema: z.guid(),
};
const eventId: Parameter = {
  name: 'eventId',
  in: 'path',
  required: true,
  description: 'The id of one delivery in the webhook’s log.',
  schema: z.string().regex(/^[0-9]{1,18}$/),
};
const idempotencyKey: Parameter = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description:
    'A retry with the same key and the same request within 24 hours gets the first answer again ' +
    '(with Idempotent-Replayed: true) and sends nothing more; the same key for another request is a 409.',
  // api/idempotency.ts's bound, Resend's.
  schema: z.string().min(1).max(256),
};
const batchValidation: Parameter = {
  name: 'x-batch-validation',
  in: 'header',
  required: false,
  description: BatchValidation.description ?? '',
  schema: z.enum(BatchValidation.options).default('strict'),
};
const requestId: Parameter = {
  name: 'X-Request-Id',
  in: 'header',
  required: false,
  description:
    'Echoed on the answer and in a problem body, and logged with every line of the request; ' +
    'one is made when none is sent, or when it is not 1 to 128 visible ASCII characters.',
  schema: z.string().min(1).max(128),
};

/** The request bodies, by their names as components. */
function requestBodies(maxRecipients: number) {
  const SendEmail = sendEmailSchema(maxRecipients);
  return {
    SendEmail,
    SendBatch: batchOf(SendEmail),
    UpdateEmail,
    CreateWebhook,
    UpdateWebhook,
    ReplayWebhook,
    CreateTemplate,
    UpdateTemplate,
    RenderTemplate,
    CreateBroadcast,
    UpdateBroadcast,
    SendBroadcast,
  };
}
type RequestBodies = ReturnType<typeof requestBodies>;

/**
 * The routes. Every answer has its schema; every problem type a route can answer with is listed
 * under its status.
 */
function operations(bodies: RequestBodies): Record<string, Partial<Record<Method, Operation>>> {
  return {
    '/v1/emails': {
      post: {
        operationId: 'sendEmail',
        tag: 'Emails',
        summary: 'Send an email',
        description:
          'Answers 202 once the email and one message per recipient are durably queued. Needs the ' +
          '`send` scope.',
        parameters: [idempotencyKey],
        body: { schema: bodies.SendEmail, description: 'The email.' },
        ok: {
          status: 202,
          description: 'Queued.',
          schema: Accepted,
          headers: ['Location', 'Idempotent-Replayed'],
        },
        problems: SENDS,
      },
      get: {
        operationId: 'listEmails',
        tag: 'Emails',
        summary: 'List emails, newest first, a page at a time, with filters',
        description:
          'Resend’s emails.list: `limit`, and `after` (or `before`) the id of an email of the previous ' +
          'page; the filters apply together. Every filter follows an index in the list’s order, so a ' +
          'deep page costs what the first does. Needs the `read` scope.',
        query: ListEmailsQuery,
        ok: { status: 200, description: 'A page of emails.', schema: EmailList },
        problems: [...AUTHENTICATED, { status: 422, types: ['validation-error'] }],
      },
    },
    '/v1/emails/batch': {
      post: {
        operationId: 'sendBatch',
        tag: 'Emails',
        summary: 'Send up to 100 emails in one request',
        description:
          'Each email is checked as /v1/emails checks one, its faults named by its index (`[3].to`). ' +
          'Strict, a batch with an invalid email answers with the gravest status of its emails ' +
          '(403, 413 or 422) and type `validation-error`, and sends nothing. Needs the `send` scope.',
        parameters: [idempotencyKey, batchValidation],
        body: { schema: bodies.SendBatch, description: 'The emails.' },
        ok: {
          status: 202,
          description: 'Queued.',
          schema: BatchAccepted,
          headers: ['Idempotent-Replayed'],
        },
        problems: [
          ...SENDS,
          { status: 403, types: ['validation-error'] },
          { status: 413, types: ['validation-error'] },
        ],
      },
    },
    '/v1/emails/{id}': {
      get: {
        operationId: 'getEmail',
        tag: 'Emails',
        summary: 'Read an email: its status, recipients and event timeline',
        description: 'Needs the `read` scope.',
        parameters: [emailId],
        ok: { status: 200, description: 'The email.', schema: Email },
        problems: [...AUTHENTICATED, { status: 404, types: ['not-found'] }],
      },
      patch: {
        operationId: 'updateEmail',
        tag: 'Emails',
        summary: 'Reschedule a scheduled email',
        description:
          'Resend’s emails.update: moves a scheduled email that is not yet due, none of whose ' +
          'recipients has been tried, to `scheduled_at` (checked as on a send; a time already past ' +
          'sends now), with its queued jobs, and records a `scheduled` event on each recipient’s ' +
          'timeline. Needs the `send` scope.',
        parameters: [emailId],
        body: { schema: UpdateEmail, description: 'The new time.' },
        ok: { status: 200, description: 'Rescheduled.', schema: UpdatedEmail },
        problems: [
          ...AUTHENTICATED,
          ...WITH_BODY,
          { status: 404, types: ['not-found'] },
          { status: 409, types: ['not-reschedulable'] },
          { status: 422, types: ['validation-error'] },
        ],
      },
    },
    '/v1/emails/{id}/cancel': {
      post: {
        operationId: 'cancelEmail',
        tag: 'Emails',
        summary: 'Cancel the recipients of an email that have not been sent to yet',
        description: 'Takes no body. Needs the `send` scope.',
        parameters: [emailId],
        ok: { status: 200, description: 'Canceled.', schema: CanceledEmail },
        problems: [
          ...AUTHENTICATED,
          ...WITH_BODY,
          { status: 404, types: ['not-found'] },
          { status: 409, types: ['not-cancelable'] },
        ],
      },
    },
    '/v1/domains': {
      get: {
        operationId: 'listDomains',
        tag: 'Domains',
        summary: "List the tenant's sending domains and the DNS records to publish",
        description: 'Resend’s domains.list: by name, a page at a time. Needs the `read` scope.',
        query: WebhookListQuery,
        ok: { status: 200, description: 'A page of domains.', schema: DomainList },
        problems: [...AUTHENTICATED, { status: 422, types: ['validation-error'] }],
      },
    },
    ...domainOperations(),
    ...templateOperations(bodies),
    ...webhookOperations(),
    ...suppressionOperations(),
    ...recipientOperations(),
    ...contactOperations(),
    ...broadcastOperations(bodies),
    '/v1/stats': {
      get: {
        operationId: 'getStats',
        tag: 'Statistics',
        summary: 'Counts and rates of the tenant’s mail, per hour or day, overall, per domain or per tag',
        description:
          'Read from rollups that each event updates, never by counting messages. Needs the `read` scope.',
        query: StatsQuery,
        ok: { status: 200, description: 'The statistics.', schema: Stats },
        problems: [...AUTHENTICATED, { status: 422, types: ['validation-error'] }],
      },
    },
    '/v1/audit-log': {
      get: {
        operationId: 'listAuditLog',
        tag: 'Audit log',
        summary: 'Who changed what for the tenant, newest first',
        description:
          'Keys issued and revoked, domains, templates and webhooks changed, suppressions added and ' +
          'lifted, with who did it. Needs the `read` scope.',
        query: AuditLogQuery,
        ok: { status: 200, description: 'A page of entries.', schema: AuditLog },
        problems: [...AUTHENTICATED, { status: 422, types: ['validation-error'] }],
      },
    },
    '/v1/openapi.json': {
      get: {
        operationId: 'getOpenApiDocument',
        tag: 'Service',
        summary: 'This document',
        description: 'Generated from the schemas the API validates with and answers in.',
        public: true,
        ok: { status: 200, description: 'The document.', schema: OpenApiDocument },
        problems: [],
      },
    },
    '/healthz': {
      get: {
        operationId: 'getLiveness',
        tag: 'Service',
        summary: 'Liveness',
        description: 'Answers while the process serves requests.',
        public: true,
        ok: { status: 200, description: 'Alive.', schema: Health },
        problems: [],
      },
    },
    '/readyz': {
      get: {
        operationId: 'getReadiness',
        tag: 'Service',
        summary: 'Readiness: Postgres answers',
        description: 'A 503 takes the api out of its Service until Postgres answers again.',
        public: true,
        ok: { status: 200, description: 'Ready.', schema: Health },
        problems: [{ status: 503, types: ['service-unavailable'] }],
      },
    },
    '/metrics': {
      get: {
        operationId: 'getMetrics',
        tag: 'Service',
        summary: 'Prometheus metrics',
        description: 'In the Prometheus text format; the names start with `mailplane_`.',
        public: true,
        ok: {
          status: 200,
          description: 'The metrics.',
          schema: z.string(),
          mediaType: 'text/plain',
        },
        problems: [],
      },
    },
  };
}

/**
 * What a recipient's mail client and browser reach, without an API key, under the installation's
 * public URL or a domain's tracking host: the unsubscribe link (api/unsubscribe.ts) and the open
 * pixel and tracked links (api/tracking.ts). Each carries a signed token; one that does not verify
 * is a 404 that says nothing of what was wrong with it.
 */
function recipientOperations(): Record<string, Partial<Record<Method, Operation>>> {
  const token = (what: string): Parameter => ({
    name: 'token',
    in: 'path',
    required: true,
    description: `The signed token of ${what}, as the message carries it.`,
    schema: z.string().min(1),
  });
  const page = z.string().describe('An HTML page: no script, nothing fetched, not framed, not cached.');
  const invalidLink: OtherAnswer = {
    status: 404,
    description:
      'The token does not verify (forged, altered, cut short, or of another purpose): the same page ' +
      'whatever is wrong with it.',
    content: { 'text/html': page },
  };
  const noSuchLink: OtherAnswer = {
    status: 404,
    description:
      '`not-found`: the token does not verify (forged, altered, cut short, or of another purpose), ' +
      'or, for a link, it was signed for another host; never a redirect.',
    content: { 'application/problem+json': Problem },
  };
  const unsubscribeToken = token('the recipient, the tenant and the message');
  return {
    [`${UNSUBSCRIBE_PATH}{token}`]: {
      get: {
        operationId: 'showUnsubscribePage',
        tag: 'Recipients',
        summary: 'The unsubscribe link, followed: a page with a button',
        description:
          'Changes nothing: a link scanner fetches every link of a message, so a GET never ' +
          'unsubscribes. The page’s button POSTs to the same URL.',
        public: true,
        parameters: [unsubscribeToken],
        ok: { status: 200, description: 'The page asking to confirm.', schema: page, mediaType: 'text/html' },
        problems: [],
        answers: [invalidLink],
      },
      post: {
        operationId: 'unsubscribe',
        tag: 'Recipients',
        summary: 'Unsubscribe: RFC 8058 one-click, or the page’s button',
        description:
          'Suppresses the address for its tenant (reason `unsubscribe`; an address suppressed already ' +
          'keeps its reason) and records an `unsubscribed` event on the message while it exists, at ' +
          'once. A mail client’s one-click sends `List-Unsubscribe=One-Click` and gets text/plain; the ' +
          'page’s button sends `confirm=page` and gets a page saying it is done.',
        public: true,
        parameters: [unsubscribeToken],
        body: {
          schema: z.object({
            'List-Unsubscribe': z.literal('One-Click').optional(),
            confirm: z.literal('page').optional(),
          }),
          description: 'RFC 8058’s one field, or the page’s; the signed link is the consent either way.',
          mediaType: 'application/x-www-form-urlencoded',
          optional: true,
        },
        ok: {
          status: 200,
          description: 'Unsubscribed.',
          schema: z.string().describe('`Unsubscribed.` for a mail client; a page for the button.'),
          mediaType: 'text/html',
          alsoAs: ['text/plain'],
        },
        problems: [
          { status: 400, types: ['bad-request'] },
          { status: 413, types: ['body-too-large'] },
          { status: 415, types: ['unsupported-encoding'] },
          { status: 500, types: ['internal-server-error'] },
          { status: 503, types: ['service-unavailable'] },
        ],
        answers: [invalidLink],
      },
    },
    [`${OPEN_PATH}{token}`]: {
      get: {
        operationId: 'fetchOpenPixel',
        tag: 'Recipients',
        summary: 'The open pixel',
        description:
          'Answers at once and records an `opened` event off the request path, a machine’s (a privacy ' +
          'or image proxy) told apart from a person’s: the statistics count both, and a message once ' +
          'at its first open.',
        public: true,
        parameters: [token('the message and when it was sent')],
        ok: {
          status: 200,
          description: 'The pixel, never cached.',
          schema: z.string().describe('A 1×1 transparent GIF of 42 bytes.'),
          mediaType: 'image/gif',
        },
        problems: [],
        answers: [noSuchLink],
      },
    },
    [`${CLICK_PATH}{token}`]: {
      get: {
        operationId: 'followTrackedLink',
        tag: 'Recipients',
        summary: 'A tracked link',
        description:
          'Redirects to exactly the URL the message had, which the token signs, under the tracking ' +
          'host it was signed for, and records a `clicked` event off the request path, a link ' +
          'scanner’s told apart from a person’s.',
        public: true,
        parameters: [token('the message, when it was sent, the URL and the tracking host')],
        ok: {
          status: 302,
          description: 'To the link’s URL, never cached.',
          schema: z.string().describe('A line saying where it redirects.'),
          mediaType: 'text/plain',
          alsoAs: ['text/html'],
          headers: ['Location'],
        },
        problems: [],
        answers: [noSuchLink],
      },
    },
  };
}

/**
 * GET /v1/audit-log's query, as api/audit-log.ts reads it: `limit` (1 to 100, 50 when not given),
 * `before` an entry's id, `action` an action or its prefix.
 */
const AuditLogQuery = z.object({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(100)
    .optional()
    .describe('Entries on the page: 1 to 100, 50 when not given.'),
  before: z
    .string()
    .regex(/^\d{1,19}$/)
    .optional()
    .describe('The id of the last entry of the previous page: the older entries.'),
  action: z
    .string()
    .regex(/^[a-z_.]{1,64}$/)
    .optional()
    .describe('An action, or its prefix: `webhook.` for every change of a webhook.'),
});

/** /v1/domains/{id} and its check (api/domains.ts). */
function domainOperations(): Record<string, Partial<Record<Method, Operation>>> {
  const domainId: Parameter = {
    name: 'id',
    in: 'path',
    required: true,
    description: 'The domain’s id, as GET /v1/domains lists it.',
    schema: z.guid(),
  };
  const notFound: ProblemAnswer = { status: 404, types: ['not-found'] };
  return {
    '/v1/domains/{id}': {
      get: {
        operationId: 'getDomain',
        tag: 'Domains',
        summary: 'Read a domain, with what DNS says of each record to publish',
        description:
          'Resend’s domains.get. Each record’s status is the last check’s, the operator’s (on its ' +
          'interval) or the api’s; with none recent, the api checks before answering. Needs the `read` scope.',
        parameters: [domainId],
        ok: { status: 200, description: 'The domain.', schema: DomainDetail },
        problems: [...AUTHENTICATED, notFound],
      },
    },
    '/v1/domains/{id}/verify': {
      post: {
        operationId: 'verifyDomain',
        tag: 'Domains',
        summary: 'Check the domain’s DNS records now',
        description:
          'Resend’s domains.verify: looks each record up now and keeps what it found, which ' +
          'GET /v1/domains/{id} then shows. A domain is checked at most once every 10 seconds (by ' +
          'the api or the operator): sooner is a 429 whose Retry-After says when, and whose detail ' +
          'says what the last check found. Takes no body. Needs the `read` scope.',
        parameters: [domainId],
        ok: { status: 200, description: 'Checked.', schema: VerifiedDomain },
        problems: [...AUTHENTICATED, ...WITH_BODY, notFound, { status: 429, types: ['rate-limit-exceeded'] }],
      },
    },
  };
}

/** /v1/templates, in Resend's shapes (api/templates.ts). */
function templateOperations(bodies: RequestBodies): Record<string, Partial<Record<Method, Operation>>> {
  const manage = 'Needs both the `send` and the `read` scope: a template is what every email naming it says.';
  const templateRef: Parameter = {
    name: 'id',
    in: 'path',
    required: true,
    description: 'The template’s id, or its name (as a send names it).',
    schema: z.string().min(1).max(253),
  };
  const notFound: ProblemAnswer = { status: 404, types: ['not-found'] };
  const readOnly: ProblemAnswer = { status: 403, types: ['template-read-only'] };
  const exists: ProblemAnswer = { status: 409, types: ['template-exists'] };
  const invalid: ProblemAnswer = { status: 422, types: ['validation-error', 'template-invalid'] };
  return {
    '/v1/templates': {
      get: {
        operationId: 'listTemplates',
        tag: 'Templates',
        summary: 'List the tenant’s templates, newest first',
        description:
          'Resend’s templates.list, those declared as Template resources included (`source: resource`). ' +
          'Needs the `read` scope.',
        query: TemplateListQuery,
        ok: { status: 200, description: 'A page of templates.', schema: TemplateList },
        problems: [...AUTHENTICATED, { status: 422, types: ['validation-error'] }],
      },
      post: {
        operationId: 'createTemplate',
        tag: 'Templates',
        summary: 'Create a template',
        description:
          'Resend’s templates.create, in ejs. Its parts must compile, and render the sample data and ' +
          `declared variables, in the sender’s sandbox before its first version is stored. ${manage}`,
        body: { schema: bodies.CreateTemplate, description: 'The template.' },
        ok: { status: 201, description: 'Created.', schema: TemplateRef, headers: ['Location'] },
        problems: [...MANAGES, ...WITH_BODY, exists, invalid],
      },
    },
    '/v1/templates/{id}': {
      get: {
        operationId: 'getTemplate',
        tag: 'Templates',
        summary: 'Read a template, its current version and its versions',
        description: 'Resend’s templates.get. Needs the `read` scope.',
        parameters: [templateRef],
        ok: { status: 200, description: 'The template.', schema: Template },
        problems: [...AUTHENTICATED, notFound],
      },
      patch: {
        operationId: 'updateTemplate',
        tag: 'Templates',
        summary: 'Change a template: a new version, checked as a new one is',
        description:
          'Resend’s templates.update. What is not given is kept; a part given as null is removed. ' +
          `Emails accepted before keep the version they pinned. One declared as a resource is changed there. ${manage}`,
        parameters: [templateRef],
        body: { schema: bodies.UpdateTemplate, description: 'What to change.' },
        ok: { status: 200, description: 'Changed.', schema: TemplateRef },
        problems: [...MANAGES, ...WITH_BODY, readOnly, notFound, exists, invalid],
      },
      delete: {
        operationId: 'deleteTemplate',
        tag: 'Templates',
        summary: 'Remove a template and its versions',
        description: `Resend’s templates.remove; emails still queued with it fail. ${manage}`,
        parameters: [templateRef],
        ok: { status: 200, description: 'Removed.', schema: DeletedTemplate },
        problems: [...MANAGES, readOnly, notFound],
      },
    },
    '/v1/templates/{id}/publish': {
      post: {
        operationId: 'publishTemplate',
        tag: 'Templates',
        summary: 'Publish a template (every version is in use once stored)',
        description: `Resend’s templates.publish, which has nothing left to do here. Takes no body. ${manage}`,
        parameters: [templateRef],
        ok: { status: 200, description: 'Published.', schema: TemplateRef },
        problems: [...MANAGES, ...WITH_BODY, notFound],
      },
    },
    '/v1/templates/{id}/duplicate': {
      post: {
        operationId: 'duplicateTemplate',
        tag: 'Templates',
        summary: 'Copy a template under the name “… (copy)”',
        description:
          'Resend’s templates.duplicate. The copy is the API’s to change, whoever owns the original. ' +
          `Takes no body. ${manage}`,
        parameters: [templateRef],
        ok: { status: 201, description: 'Copied.', schema: TemplateRef, headers: ['Location'] },
        problems: [...MANAGES, ...WITH_BODY, notFound, exists],
      },
    },
    '/v1/templates/{id}/render': {
      post: {
        operationId: 'renderTemplate',
        tag: 'Templates',
        summary: 'Preview: render a template with variables, as a send would',
        description:
          'Renders the current (or a stored) version in the sandbox the sender renders in. A template ' +
          'that fails answers `template-render-failed` with the `part` and `line` at fault. Needs the `read` scope.',
        parameters: [templateRef],
        body: { schema: bodies.RenderTemplate, description: 'The variables, and a version.' },
        ok: { status: 200, description: 'Rendered.', schema: RenderedTemplate },
        problems: [
          ...AUTHENTICATED,
          ...WITH_BODY,
          notFound,
          { status: 422, types: ['validation-error', 'template-render-failed'] },
        ],
      },
    },
  };
}

/** /v1/broadcasts (api/broadcasts.ts). */
function broadcastOperations(bodies: RequestBodies): Record<string, Partial<Record<Method, Operation>>> {
  const broadcastId: Parameter = {
    name: 'id',
    in: 'path',
    required: true,
    description: 'The broadcast’s id.',
    schema: z.guid(),
  };
  const notFound: ProblemAnswer = { status: 404, types: ['not-found'] };
  const invalid: ProblemAnswer = { status: 422, types: ['validation-error'] };
  const notChangeable: ProblemAnswer = { status: 409, types: ['broadcast-not-changeable'] };
  const domainNotOwned: ProblemAnswer = { status: 403, types: ['domain-not-owned'] };
  const noUnsubscribe: ProblemAnswer = { status: 422, types: ['unsubscribe-unavailable'] };
  const sending =
    'Refused with `unsubscribe-unavailable` when the from domain cannot offer a one-click unsubscribe ' +
    'link (neither its spec.tracking.domain nor MAILPLANE_PUBLIC_URL): a broadcast never goes out ' +
    'without one.';
  return {
    '/v1/broadcasts': {
      post: {
        operationId: 'createBroadcast',
        tag: 'Broadcasts',
        summary: 'Write a broadcast, and send it now or at a time',
        description:
          'Resend’s broadcasts.create: a draft, or with `send: true` sent at once (or at ' +
          '`scheduled_at`). The from domain must be a SendingDomain of the tenant and the segment the ' +
          `tenant’s. ${sending} Needs the \`send\` scope.`,
        body: { schema: bodies.CreateBroadcast, description: 'The broadcast.' },
        ok: { status: 201, description: 'Written (and sent).', schema: BroadcastId, headers: ['Location'] },
        problems: [...AUTHENTICATED, ...WITH_BODY, domainNotOwned, invalid, noUnsubscribe],
      },
      get: {
        operationId: 'listBroadcasts',
        tag: 'Broadcasts',
        summary: 'List the tenant’s broadcasts, newest first, a page at a time',
        description: 'Resend’s broadcasts.list. Needs the `read` scope.',
        query: ListBroadcastsQuery,
        ok: { status: 200, description: 'A page of broadcasts.', schema: BroadcastList },
        problems: [...AUTHENTICATED, invalid],
      },
    },
    '/v1/broadcasts/{id}': {
      get: {
        operationId: 'getBroadcast',
        tag: 'Broadcasts',
        summary: 'Read a broadcast and the progress of its fan-out',
        description:
          'Resend’s broadcasts.get, with `progress`: the emails created so far and how many of their ' +
          'messages are in each status. Needs the `read` scope.',
        parameters: [broadcastId],
        ok: { status: 200, description: 'The broadcast.', schema: Broadcast },
        problems: [...AUTHENTICATED, notFound],
      },
      patch: {
        operationId: 'updateBroadcast',
        tag: 'Broadcasts',
        summary: 'Change a draft',
        description: 'Resend’s broadcasts.update; only a draft changes. Needs the `send` scope.',
        parameters: [broadcastId],
        body: { schema: bodies.UpdateBroadcast, description: 'What to change.' },
        ok: { status: 200, description: 'Changed.', schema: BroadcastId },
        problems: [...AUTHENTICATED, ...WITH_BODY, domainNotOwned, notFound, notChangeable, invalid],
      },
      delete: {
        operationId: 'deleteBroadcast',
        tag: 'Broadcasts',
        summary: 'Delete a draft or a scheduled broadcast',
        description:
          'Resend’s broadcasts.remove; a scheduled one’s job goes with it. One that has begun to go out ' +
          'is canceled instead. Needs the `send` scope.',
        parameters: [broadcastId],
        ok: { status: 200, description: 'Deleted.', schema: DeletedBroadcast },
        problems: [...AUTHENTICATED, notFound, notChangeable],
      },
    },
    '/v1/broadcasts/{id}/send': {
      post: {
        operationId: 'sendBroadcast',
        tag: 'Broadcasts',
        summary: 'Send a draft now or at a time',
        description:
          'Resend’s broadcasts.send: the fan-out creates one email per contact of the segment who has ' +
          'not unsubscribed, with one-click unsubscribe on, each sent as any other (a suppressed ' +
          `address is \`suppressed\`). ${sending} Needs the \`send\` scope.`,
        parameters: [broadcastId],
        body: { schema: bodies.SendBroadcast, description: 'When to send.' },
        ok: { status: 202, description: 'Queued, or scheduled.', schema: BroadcastId },
        problems: [
          ...AUTHENTICATED,
          ...WITH_BODY,
          domainNotOwned,
          notFound,
          notChangeable,
          invalid,
          noUnsubscribe,
        ],
      },
    },
    '/v1/broadcasts/{id}/cancel': {
      post: {
        operationId: 'cancelBroadcast',
        tag: 'Broadcasts',
        summary: 'Cancel a scheduled broadcast, or the rest of a fan-out',
        description:
          'Resend’s broadcasts.cancel. Emails created before the cancel are sent (each can be canceled ' +
          'through /v1/emails/{id}/cancel). Takes no body. Needs the `send` scope.',
        parameters: [broadcastId],
        ok: { status: 200, description: 'Canceled.', schema: CanceledBroadcast },
        problems: [...AUTHENTICATED, ...WITH_BODY, notFound, notChangeable],
      },
    },
  };
}

/** /v1/suppressions (api/suppressions.ts). */
function suppressionOperations(): Record<string, Partial<Record<Method, Operation>>> {
  const invalid: ProblemAnswer = { status: 422, types: ['validation-error'] };
  const notFound: ProblemAnswer = { status: 404, types: ['not-found'] };
  const address: Parameter = {
    name: 'address',
    in: 'path',
    required: true,
    description: 'The suppressed address, URL-encoded, in any case.',
    schema: z.string().min(3).max(254),
  };
  return {
    '/v1/suppressions': {
      get: {
        operationId: 'listSuppressions',
        tag: 'Suppressions',
        summary: 'List the tenant’s suppressions, in address order, a page at a time',
        description:
          '`limit`, and `after` (or `before`) an address of the previous page; filtered by reason and ' +
          'by address. A cursor stays valid when its own suppression is lifted. Needs the `read` scope.',
        query: ListSuppressionsQuery,
        ok: { status: 200, description: 'A page of suppressions.', schema: SuppressionList },
        problems: [...AUTHENTICATED, invalid],
      },
      post: {
        operationId: 'addSuppressions',
        tag: 'Suppressions',
        summary: `Suppress one address, or up to ${MAX_ADDED}`,
        description:
          'Each address is checked as a send checks one; an address suppressed already keeps its ' +
          'reason (`added: false`). In the audit log under the key. Needs the `send` scope.',
        body: { schema: AddSuppressions, description: 'The suppressions.' },
        ok: { status: 200, description: 'Each address, as it is now suppressed.', schema: AddedSuppressions },
        problems: [...AUTHENTICATED, ...WITH_BODY, invalid],
      },
    },
    '/v1/suppressions/import': {
      post: {
        operationId: 'importSuppressions',
        tag: 'Suppressions',
        summary: 'Suppress the addresses of a CSV file, streamed',
        description:
          'A header row naming the columns (`address`, then optional `reason` and `detail`; without ' +
          'one, the columns are address, reason, detail), then one address a row; a reason left ' +
          'empty is manual. Read and written in batches as it arrives, of any size: good rows are ' +
          'kept, bad ones reported by line. GET /v1/suppressions/export writes what this reads. ' +
          'Needs the `send` scope.',
        body: {
          schema: z.string().describe('CSV, UTF-8, with or without a byte order mark.'),
          description: 'The list.',
          mediaType: 'text/csv',
        },
        ok: { status: 200, description: 'What became of the rows.', schema: SuppressionImport },
        problems: [...AUTHENTICATED, { status: 415, types: ['unsupported-media-type'] }],
      },
    },
    '/v1/suppressions/export': {
      get: {
        operationId: 'exportSuppressions',
        tag: 'Suppressions',
        summary: 'The whole suppression list as CSV, streamed',
        description:
          '`address,reason,detail,created_at`, in address order, written as it is read. Needs the ' +
          '`read` scope.',
        query: ExportSuppressionsQuery,
        ok: {
          status: 200,
          description: 'The list.',
          schema: z.string(),
          mediaType: 'text/csv',
        },
        problems: [...AUTHENTICATED, invalid],
      },
    },
    '/v1/suppressions/{address}': {
      get: {
        operationId: 'getSuppression',
        tag: 'Suppressions',
        summary: 'Whether an address is suppressed, and why',
        description: 'Needs the `read` scope.',
        parameters: [address],
        ok: { status: 200, description: 'The suppression.', schema: Suppression },
        problems: [...AUTHENTICATED, notFound],
      },
      delete: {
        operationId: 'liftSuppression',
        tag: 'Suppressions',
        summary: 'Lift a suppression: the address may be mailed again',
        description:
          'One that came from a complaint needs `lift_complaint=true`. In the audit log under the ' +
          'key. Needs the `send` scope.',
        parameters: [address],
        query: LiftSuppressionQuery,
        ok: { status: 200, description: 'Lifted.', schema: LiftedSuppression },
        problems: [
          ...AUTHENTICATED,
          notFound,
          { status: 409, types: ['suppression-from-complaint'] },
          invalid,
        ],
      },
    },
  };
}

/** /v1/webhooks, in Resend's shapes (api/webhooks.ts). */
function webhookOperations(): Record<string, Partial<Record<Method, Operation>>> {
  const manage =
    'Needs both the `send` and the `read` scope: a key that decides where events go can read every ' +
    'recipient and subject of the tenant’s.';
  const readOnly: ProblemAnswer = { status: 403, types: ['webhook-read-only'] };
  const notFound: ProblemAnswer = { status: 404, types: ['not-found'] };
  const invalid: ProblemAnswer = { status: 422, types: ['validation-error'] };
  const disabled: ProblemAnswer = { status: 409, types: ['webhook-disabled'] };
  return {
    '/v1/webhooks': {
      post: {
        operationId: 'createWebhook',
        tag: 'Webhooks',
        summary: 'Register a webhook endpoint',
        description:
          `Resend’s webhooks.create. Answers with the signing secret, shown only here. A tenant has at ` +
          `most ${MAX_ENDPOINTS_PER_TENANT} webhooks. ${manage}`,
        body: { schema: CreateWebhook, description: 'The endpoint and the events it receives.' },
        ok: { status: 201, description: 'Registered.', schema: WebhookWithSecret, headers: ['Location'] },
        problems: [...MANAGES, ...WITH_BODY, invalid],
      },
      get: {
        operationId: 'listWebhooks',
        tag: 'Webhooks',
        summary: 'List the tenant’s webhooks, newest first',
        description: 'Resend’s webhooks.list, those declared in the Tenant included. Needs the `read` scope.',
        query: WebhookListQuery,
        ok: { status: 200, description: 'A page of webhooks.', schema: WebhookList },
        problems: [...AUTHENTICATED, invalid],
      },
    },
    '/v1/webhooks/{id}': {
      get: {
        operationId: 'getWebhook',
        tag: 'Webhooks',
        summary: 'Read a webhook',
        description: 'Resend’s webhooks.get; never the secret. Needs the `read` scope.',
        parameters: [webhookId],
        ok: { status: 200, description: 'The webhook.', schema: Webhook },
        problems: [...AUTHENTICATED, notFound],
      },
      patch: {
        operationId: 'updateWebhook',
        tag: 'Webhooks',
        summary: 'Change a webhook’s endpoint, events or status',
        description:
          `Resend’s webhooks.update; enabling one clears why it was disabled. One declared in the ` +
          `Tenant is changed there. ${manage}`,
        parameters: [webhookId],
        body: { schema: UpdateWebhook, description: 'What to change.' },
        ok: { status: 200, description: 'The webhook, changed.', schema: Webhook },
        problems: [...MANAGES, ...WITH_BODY, readOnly, notFound, invalid],
      },
      delete: {
        operationId: 'deleteWebhook',
        tag: 'Webhooks',
        summary: 'Remove a webhook and its log of deliveries',
        description: `Resend’s webhooks.remove. ${manage}`,
        parameters: [webhookId],
        ok: { status: 200, description: 'Removed.', schema: DeletedWebhook },
        problems: [...MANAGES, readOnly, notFound],
      },
    },
    '/v1/webhooks/{id}/signing-secret/rotate': {
      post: {
        operationId: 'rotateWebhookSecret',
        tag: 'Webhooks',
        summary: 'Give a webhook a new signing secret',
        description:
          'Resend’s webhooks.rotateSigningSecret. The new secret is shown only here; the previous one ' +
          `keeps signing too for 24 hours, so that a receiver can switch without a gap. Takes no body. ${manage}`,
        parameters: [webhookId],
        ok: { status: 200, description: 'The webhook and its new secret.', schema: WebhookWithSecret },
        problems: [...MANAGES, ...WITH_BODY, readOnly, notFound],
      },
    },
    ...Object.fromEntries(
      (['deliveries', 'events'] as const).map((path) => [
        `/v1/webhooks/{id}/${path}`,
        {
          get: {
            operationId: path === 'deliveries' ? 'listWebhookDeliveries' : 'listWebhookEvents',
            tag: 'Webhooks',
            summary: 'The webhook’s log: each event sent, newest first',
            description:
              (path === 'events' ? 'Resend’s webhooks.events.list; the same as …/deliveries. ' : '') +
              'Each delivery with its attempts and the receiver’s last answer. Needs the `read` scope.',
            parameters: [webhookId],
            query: DeliveryListQuery,
            ok: { status: 200, description: 'A page of deliveries.', schema: WebhookDeliveryList },
            problems: [...AUTHENTICATED, notFound, invalid],
          } satisfies Operation,
        },
      ]),
    ),
    '/v1/webhooks/{id}/events/{eventId}': {
      get: {
        operationId: 'getWebhookEvent',
        tag: 'Webhooks',
        summary: 'One delivery, with the body it sends',
        description: 'Resend’s webhooks.events.get. Needs the `read` scope.',
        parameters: [webhookId, eventId],
        ok: { status: 200, description: 'The delivery.', schema: WebhookDeliveryWithPayload },
        problems: [...AUTHENTICATED, notFound],
      },
    },
    '/v1/webhooks/{id}/events/{eventId}/attempts': {
      get: {
        operationId: 'listWebhookEventAttempts',
        tag: 'Webhooks',
        summary: 'Every attempt of one delivery, newest first',
        description:
          'Resend’s webhooks.events.attempts.list: each failed attempt with the receiver’s answer or ' +
          'why there was none, and the one that succeeded. Needs the `read` scope.',
        parameters: [webhookId, eventId],
        query: DeliveryListQuery,
        ok: { status: 200, description: 'A page of attempts.', schema: WebhookAttemptList },
        problems: [...AUTHENTICATED, notFound, invalid],
      },
    },
    '/v1/webhooks/{id}/events/{eventId}/replay': {
      post: {
        operationId: 'replayWebhookEvent',
        tag: 'Webhooks',
        summary: 'Send one event again',
        description:
          'Resend’s webhooks.events.replay: the event, as a new delivery (a new webhook-id). A webhook ' +
          `declared in the Tenant takes it too. Takes no body. ${manage}`,
        parameters: [webhookId, eventId],
        ok: { status: 202, description: 'Queued again.', schema: ReplayedDelivery },
        problems: [...MANAGES, ...WITH_BODY, notFound, disabled, invalid],
      },
    },
    '/v1/webhooks/{id}/replay': {
      post: {
        operationId: 'replayWebhook',
        tag: 'Webhooks',
        summary: 'Send the events of one email or of a time range again',
        description:
          'The recovery after the receiver’s own outage: each matching event of a type the webhook ' +
          'receives, oldest first, as a new delivery. A range is at most ' +
          `${REPLAY_MAX_RANGE_DAYS} days and ${REPLAY_MAX_EVENTS} events. ${manage}`,
        parameters: [webhookId],
        body: { schema: ReplayWebhook, description: '`{email_id}`, or `{from, to}`.' },
        ok: { status: 202, description: 'Queued again.', schema: WebhookReplay },
        problems: [...MANAGES, ...WITH_BODY, notFound, disabled, invalid],
      },
    },
  };
}

/** /v1/contacts, /v1/segments and the older /v1/audiences (api/contacts.ts, api/segments.ts). */
function contactOperations(): Record<string, Partial<Record<Method, Operation>>> {
  const invalid: ProblemAnswer = { status: 422, types: ['validation-error'] };
  const notFound: ProblemAnswer = { status: 404, types: ['not-found'] };
  const exists: ProblemAnswer = { status: 409, types: ['contact-exists'] };
  const inUse: ProblemAnswer = { status: 409, types: ['segment-in-use'] };
  const reads = 'Needs the `read` scope.';
  const changes = 'Needs the `send` scope; the audit log names the key.';
  const contact: Parameter = {
    name: 'idOrEmail',
    in: 'path',
    required: true,
    description: 'The contact’s id, or its address (URL-encoded, in any case).',
    schema: z.string().min(1).max(254),
  };
  const segment = (name: 'id' | 'segmentId' | 'audienceId', what = 'segment'): Parameter => ({
    name,
    in: 'path',
    required: true,
    description: `The ${what}’s id.`,
    schema: z.guid(),
  });
  const contactBody = (schema: z.ZodType) => ({ schema, description: 'The contact.' });
  const segmentBody = { schema: SegmentInput, description: 'Its name.' };
  const created = (schema: z.ZodType, what: string) => ({
    status: 201 as const,
    description: `${what} created.`,
    schema,
    headers: ['Location' as const],
  });
  return {
    '/v1/contacts': {
      post: {
        operationId: 'createContact',
        tag: 'Contacts',
        summary: 'Add a contact, and put it in segments',
        description:
          'Resend’s contacts.create. The address is unique in the tenant: one it has a contact for ' +
          `already is a 409 that names that contact (change it with PATCH). ${changes}`,
        body: contactBody(CreateContact),
        ok: created(ContactRef, 'The contact'),
        problems: [...AUTHENTICATED, ...WITH_BODY, exists, invalid],
      },
      get: {
        operationId: 'listContacts',
        tag: 'Contacts',
        summary: 'List the tenant’s contacts, in id order, a page at a time',
        description:
          'Resend’s contacts.list: `limit`, and `after` (or `before`) the id of a contact of the ' +
          `previous page. A cursor stays valid when its own contact is deleted. ${reads}`,
        query: ContactListQuery,
        ok: { status: 200, description: 'A page of contacts.', schema: ContactList },
        problems: [...AUTHENTICATED, invalid],
      },
    },
    '/v1/contacts/{idOrEmail}': {
      get: {
        operationId: 'getContact',
        tag: 'Contacts',
        summary: 'Read a contact, with its properties',
        description: `Resend’s contacts.get. ${reads}`,
        parameters: [contact],
        ok: { status: 200, description: 'The contact.', schema: Contact },
        problems: [...AUTHENTICATED, notFound],
      },
      patch: {
        operationId: 'updateContact',
        tag: 'Contacts',
        summary: 'Change a contact’s names, consent or properties',
        description:
          'Resend’s contacts.update: members not given stay as they are; properties given are merged ' +
          `into the contact’s. Its address does not change. ${changes}`,
        parameters: [contact],
        body: contactBody(UpdateContact),
        ok: { status: 200, description: 'Changed.', schema: ContactRef },
        problems: [...AUTHENTICATED, ...WITH_BODY, notFound, invalid],
      },
      delete: {
        operationId: 'deleteContact',
        tag: 'Contacts',
        summary: 'Delete a contact, and its memberships',
        description:
          'Resend’s contacts.remove. A suppression of its address stays: the suppression list is the ' +
          `tenant’s. ${changes}`,
        parameters: [contact],
        ok: { status: 200, description: 'Deleted.', schema: DeletedContact },
        problems: [...AUTHENTICATED, notFound],
      },
    },
    '/v1/contacts/{idOrEmail}/segments': {
      get: {
        operationId: 'listContactSegments',
        tag: 'Contacts',
        summary: 'List the segments a contact is in',
        description: `Resend’s contacts.segments.list, in id order, a page at a time. ${reads}`,
        parameters: [contact],
        query: SegmentListQuery,
        ok: { status: 200, description: 'A page of segments.', schema: SegmentList },
        problems: [...AUTHENTICATED, notFound, invalid],
      },
    },
    '/v1/contacts/{idOrEmail}/segments/{segmentId}': {
      post: {
        operationId: 'addContactToSegment',
        tag: 'Contacts',
        summary: 'Put a contact in a segment',
        description:
          'Resend’s contacts.segments.add; a contact in the segment already stays there, and the ' +
          `answer is the same. Takes no body. ${changes}`,
        parameters: [contact, segment('segmentId')],
        ok: { status: 200, description: 'In the segment.', schema: ContactSegmentAdded },
        problems: [...AUTHENTICATED, ...WITH_BODY, notFound],
      },
      delete: {
        operationId: 'removeContactFromSegment',
        tag: 'Contacts',
        summary: 'Take a contact out of a segment',
        description: `Resend’s contacts.segments.remove; the contact stays. ${changes}`,
        parameters: [contact, segment('segmentId')],
        ok: { status: 200, description: 'Out of the segment.', schema: ContactSegmentRemoved },
        problems: [...AUTHENTICATED, notFound],
      },
    },
    '/v1/segments': {
      post: {
        operationId: 'createSegment',
        tag: 'Segments',
        summary: 'Add a segment',
        description: `Resend’s segments.create. ${changes}`,
        body: segmentBody,
        ok: created(CreatedSegment, 'The segment'),
        problems: [...AUTHENTICATED, ...WITH_BODY, invalid],
      },
      get: {
        operationId: 'listSegments',
        tag: 'Segments',
        summary: 'List the tenant’s segments, in id order, a page at a time',
        description: `Resend’s segments.list. ${reads}`,
        query: SegmentListQuery,
        ok: { status: 200, description: 'A page of segments.', schema: SegmentList },
        problems: [...AUTHENTICATED, invalid],
      },
    },
    '/v1/segments/{id}': {
      get: {
        operationId: 'getSegment',
        tag: 'Segments',
        summary: 'Read a segment',
        description: `Resend’s segments.get. ${reads}`,
        parameters: [segment('id')],
        ok: { status: 200, description: 'The segment.', schema: Segment },
        problems: [...AUTHENTICATED, notFound],
      },
      patch: {
        operationId: 'updateSegment',
        tag: 'Segments',
        summary: 'Rename a segment',
        description: `Resend’s segments.update. ${changes}`,
        parameters: [segment('id')],
        body: segmentBody,
        ok: { status: 200, description: 'Renamed.', schema: UpdatedSegment },
        problems: [...AUTHENTICATED, ...WITH_BODY, notFound, invalid],
      },
      delete: {
        operationId: 'deleteSegment',
        tag: 'Segments',
        summary: 'Delete a segment and its memberships, never its contacts',
        description: `Resend’s segments.remove. ${changes}`,
        parameters: [segment('id')],
        ok: { status: 200, description: 'Deleted.', schema: DeletedSegment },
        problems: [...AUTHENTICATED, notFound, inUse],
      },
    },
    '/v1/segments/{id}/contacts': {
      get: {
        operationId: 'listSegmentContacts',
        tag: 'Segments',
        summary: 'List a segment’s contacts, in id order, a page at a time',
        description: `Resend’s contacts.list({ segmentId }). ${reads}`,
        parameters: [segment('id')],
        query: ContactListQuery,
        ok: { status: 200, description: 'A page of contacts.', schema: ContactList },
        problems: [...AUTHENTICATED, notFound, invalid],
      },
    },
    '/v1/audiences': {
      post: {
        operationId: 'createAudience',
        tag: 'Segments',
        summary: 'Add an audience (the older name of a segment)',
        description: `As POST /v1/segments, answered as an audience. ${changes}`,
        body: segmentBody,
        ok: created(CreatedAudience, 'The audience'),
        problems: [...AUTHENTICATED, ...WITH_BODY, invalid],
      },
      get: {
        operationId: 'listAudiences',
        tag: 'Segments',
        summary: 'List the tenant’s audiences (its segments)',
        description: `As GET /v1/segments. ${reads}`,
        query: SegmentListQuery,
        ok: { status: 200, description: 'A page of audiences.', schema: SegmentList },
        problems: [...AUTHENTICATED, invalid],
      },
    },
    '/v1/audiences/{id}': {
      get: {
        operationId: 'getAudience',
        tag: 'Segments',
        summary: 'Read an audience (a segment)',
        description: `As GET /v1/segments/{id}, answered as an audience. ${reads}`,
        parameters: [segment('id', 'audience')],
        ok: { status: 200, description: 'The audience.', schema: Audience },
        problems: [...AUTHENTICATED, notFound],
      },
      delete: {
        operationId: 'deleteAudience',
        tag: 'Segments',
        summary: 'Delete an audience (a segment) and its memberships',
        description: `As DELETE /v1/segments/{id}. ${changes}`,
        parameters: [segment('id', 'audience')],
        ok: { status: 200, description: 'Deleted.', schema: DeletedAudience },
        problems: [...AUTHENTICATED, notFound, inUse],
      },
    },
    '/v1/audiences/{audienceId}/contacts': {
      post: {
        operationId: 'createAudienceContact',
        tag: 'Contacts',
        summary: 'Add a contact to an audience',
        description:
          'Resend’s contacts.create with an audienceId. A contact is one per address in the tenant: ' +
          'the tenant’s contact of an address the audience does not hold yet joins it (its fields ' +
          `unchanged); one the audience holds already is a 409. ${changes}`,
        parameters: [segment('audienceId', 'audience')],
        body: contactBody(CreateAudienceContact),
        ok: created(ContactRef, 'The contact, in the audience,'),
        problems: [...AUTHENTICATED, ...WITH_BODY, notFound, exists, invalid],
      },
      get: {
        operationId: 'listAudienceContacts',
        tag: 'Contacts',
        summary: 'List an audience’s contacts',
        description: `As GET /v1/segments/{id}/contacts. ${reads}`,
        parameters: [segment('audienceId', 'audience')],
        query: ContactListQuery,
        ok: { status: 200, description: 'A page of contacts.', schema: ContactList },
        problems: [...AUTHENTICATED, notFound, invalid],
      },
    },
    '/v1/audiences/{audienceId}/contacts/{idOrEmail}': {
      get: {
        operationId: 'getAudienceContact',
        tag: 'Contacts',
        summary: 'Read a contact the audience holds',
        description: `As GET /v1/contacts/{idOrEmail}; a contact the audience does not hold is a 404. ${reads}`,
        parameters: [segment('audienceId', 'audience'), contact],
        ok: { status: 200, description: 'The contact.', schema: Contact },
        problems: [...AUTHENTICATED, notFound],
      },
      patch: {
        operationId: 'updateAudienceContact',
        tag: 'Contacts',
        summary: 'Change a contact the audience holds',
        description: `As PATCH /v1/contacts/{idOrEmail}. ${changes}`,
        parameters: [segment('audienceId', 'audience'), contact],
        body: contactBody(UpdateContact),
        ok: { status: 200, description: 'Changed.', schema: ContactRef },
        problems: [...AUTHENTICATED, ...WITH_BODY, notFound, invalid],
      },
      delete: {
        operationId: 'removeAudienceContact',
        tag: 'Contacts',
        summary: 'Take a contact out of an audience',
        description:
          'Resend’s contacts.remove with an audienceId: the contact leaves the audience and stays the ' +
          `tenant’s (DELETE /v1/contacts/{idOrEmail} deletes it). ${changes}`,
        parameters: [segment('audienceId', 'audience'), contact],
        ok: { status: 200, description: 'Out of the audience.', schema: DeletedContact },
        problems: [...AUTHENTICATED, notFound],
      },
    },
  };
}

const TAGS: { name: Tag; description: string }[] = [
  { name: 'Emails', description: "Send, list, read, reschedule and cancel emails, in Resend's shapes." },
  { name: 'Domains', description: 'The sending domains of the tenant and their DNS records.' },
  {
    name: 'Templates',
    description:
      'Templates in ejs, in Resend’s shapes: versions, the check every version passes, and a preview.',
  },
  {
    name: 'Webhooks',
    description:
      'Endpoints that receive every event, signed by the Standard Webhooks scheme, in Resend’s shapes; ' +
      'their log of deliveries, and replay.',
  },
  { name: 'Statistics', description: 'How the tenant’s mail fared.' },
  { name: 'Audit log', description: 'Who changed what for the tenant.' },
  {
    name: 'Suppressions',
    description:
      'The addresses the tenant no longer mails (bounced, complained, unsubscribed, or added by hand): ' +
      'list, add, lift, and import and export as CSV.',
  },
  {
    name: 'Broadcasts',
    description:
      'One email to every contact of a segment who has not unsubscribed, in Resend’s shapes: drafts, ' +
      'sending now or at a time, canceling, and the progress of the fan-out. One-click unsubscribe is ' +
      'always on.',
  },
  {
    name: 'Contacts',
    description:
      'The people the tenant mails in bulk, in Resend’s shapes: their names, consent (`unsubscribed`, ' +
      'also set by an unsubscribe from the tenant’s mail) and custom properties, and the segments they are in.',
  },
  {
    name: 'Segments',
    description: 'Named groups of contacts that broadcasts go to; an audience is the older name of one.',
  },
  {
    name: 'Recipients',
    description:
      'What recipients’ mail clients and browsers reach, without an API key: the unsubscribe link, ' +
      'the open pixel and tracked links.',
  },
  { name: 'Service', description: 'Probes, metrics and this document; no API key needed.' },
];

/** Responses other than requests' bodies: each the type of a view function. */
const RESPONSE_SCHEMAS = {
  DomainDetail,
  DomainStatus,
  CheckedDnsRecord,
  VerifiedDomain,
  Template,
  TemplateSummary,
  TemplateList,
  TemplateRef,
  DeletedTemplate,
  RenderedTemplate,
  TemplateVariable,
  TemplateVersionSummary,
  Accepted,
  BatchAccepted,
  Email,
  EmailStatus,
  EmailRecipient,
  EmailEvent,
  EmailTemplate,
  CanceledEmail,
  UpdatedEmail,
  EmailList,
  EmailSummary,
  DomainList,
  Domain,
  DnsRecord,
  Stats,
  Webhook,
  WebhookWithSecret,
  DeletedWebhook,
  WebhookList,
  WebhookDelivery,
  WebhookDeliveryWithPayload,
  WebhookDeliveryList,
  WebhookAttempt,
  WebhookAttemptList,
  WebhookPayload,
  ReplayedDelivery,
  WebhookReplay,
  AuditLog,
  Suppression,
  SuppressionList,
  AddedSuppressions,
  LiftedSuppression,
  SuppressionImport,
  Contact,
  ContactSummary,
  ContactList,
  ContactRef,
  DeletedContact,
  Segment,
  SegmentSummary,
  SegmentList,
  CreatedSegment,
  UpdatedSegment,
  DeletedSegment,
  Audience,
  CreatedAudience,
  DeletedAudience,
  ContactSegmentAdded,
  ContactSegmentRemoved,
  Broadcast,
  BroadcastSummary,
  BroadcastList,
  BroadcastId,
  CanceledBroadcast,
  DeletedBroadcast,
  Health,
  OpenApiDocument,
  Problem,
  FieldError,
};

/**
 * Builds the document for an installation whose recipient limit is `maxRecipients` (createApp
 * builds it once, with the installation's limits).
 *
 *   const document = buildOpenApiDocument({ maxRecipients: config.maxRecipients });
 */
export function buildOpenApiDocument(limits: { maxRecipients: number }) {
  const bodies = requestBodies(limits.maxRecipients);
  const requests = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(bodies)) requests.add(schema, { id });
  const responses = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(RESPONSE_SCHEMAS)) responses.add(schema, { id });

  const refOf = (schema: z.ZodType) => {
    const id = requests.get(schema)?.id ?? responses.get(schema)?.id;
    return id ? { $ref: `#/components/schemas/${id}` } : undefined;
  };
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [path, methods] of Object.entries(operations(bodies))) {
    paths[path] = {};
    for (const [method, op] of Object.entries(methods)) paths[path]![method] = operationObject(op, refOf);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Mailplane API',
      version: 'v1',
      description:
        'Send email from applications in the cluster. The email endpoints take and return the shapes ' +
        "of Resend's API, so the `resend` SDK works with its base URL pointed here. Errors are " +
        'application/problem+json (RFC 9457) with a stable `type`.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: '/', description: 'The api, where this document is served.' }],
    security: [{ apiKey: [] }],
    tags: TAGS,
    paths,
    components: {
      securitySchemes: {
        apiKey: {
          type: 'http',
          scheme: 'bearer',
          description: 'An API key of the tenant, `mp_live_…`, from the Secret its Tenant names.',
        },
      },
      headers: HEADERS,
      schemas: {
        ...componentSchemas(requests, 'input'),
        ...componentSchemas(responses, 'output'),
      },
    },
  } as const;
}

/**
 * The JSON Schemas of a registry's members, with references between them as components. Requests
 * are converted as their input (what a caller may send; members not named are ignored), responses
 * as their output, where an object allows no member it does not name.
 */
function componentSchemas(registry: z.core.$ZodRegistry<{ id: string }>, io: 'input' | 'output') {
  const { schemas } = z.toJSONSchema(registry, { io, uri: (id) => `#/components/schemas/${id}` });
  return Object.fromEntries(
    Object.entries(schemas).map(([id, schema]) => {
      const { $schema: _schema, $id: _id, ...rest } = schema;
      return [id, rest];
    }),
  );
}

/** An inline JSON Schema (a parameter's, a request body's that is not a component). */
function inlineSchema(schema: z.ZodType, io: 'input' | 'output', refOf: RefOf) {
  const ref = refOf(schema);
  if (ref) return ref;
  const { $schema: _schema, ...rest } = z.toJSONSchema(schema, { io });
  return rest;
}

type RefOf = (schema: z.ZodType) => { $ref: string } | undefined;

/** A query schema's members as query parameters, each with its own description. */
function queryParameters(query: z.ZodObject): Parameter[] {
  return Object.entries(query.shape).map(([name, member]) => {
    const schema = member as z.ZodType;
    return {
      name,
      in: 'query',
      required: !schema.safeParse(undefined).success,
      description: schema.description ?? '',
      schema,
    };
  });
}

function operationObject(op: Operation, refOf: RefOf) {
  const parameters = [
    ...(op.parameters ?? []),
    ...(op.query ? queryParameters(op.query) : []),
    requestId,
  ].map((p) => ({
    name: p.name,
    in: p.in,
    required: p.required,
    description: p.description,
    schema: inlineSchema(p.schema, 'input', refOf),
  }));
  return {
    operationId: op.operationId,
    tags: [op.tag],
    summary: op.summary,
    description: op.description,
    ...(op.public ? { security: [] } : {}),
    parameters,
    ...(op.body ? { requestBody: requestBody(op.body, refOf) } : {}),
    responses: {
      [String(op.ok.status)]: {
        description: op.ok.description,
        headers: headerRefs(['X-Request-Id', ...(op.ok.headers ?? [])]),
        content: Object.fromEntries(
          [op.ok.mediaType ?? 'application/json', ...(op.ok.alsoAs ?? [])].map((type) => [
            type,
            { schema: inlineSchema(op.ok.schema, 'output', refOf) },
          ]),
        ),
      },
      ...problemResponses(op.problems),
      ...otherResponses(op.answers ?? [], refOf),
    },
  };
}

function requestBody(body: NonNullable<Operation['body']>, refOf: RefOf) {
  const schema = inlineSchema(body.schema, 'input', refOf);
  return {
    required: !body.optional,
    description: body.description,
    content: { [body.mediaType ?? 'application/json']: { schema } },
  };
}

/** The answers an operation describes itself, each with X-Request-Id as every answer has. */
function otherResponses(answers: OtherAnswer[], refOf: RefOf) {
  return Object.fromEntries(
    answers.map((a) => [
      String(a.status),
      {
        description: a.description,
        headers: headerRefs(['X-Request-Id']),
        content: Object.fromEntries(
          Object.entries(a.content).map(([type, schema]) => [
            type,
            { schema: inlineSchema(schema, 'output', refOf) },
          ]),
        ),
      },
    ]),
  );
}

/** One response per status, naming every problem type answered there and why. */
function problemResponses(problems: ProblemAnswer[]) {
  const byStatus = new Map<number, ProblemType[]>();
  for (const { status, types } of problems) byStatus.set(status, [...(byStatus.get(status) ?? []), ...types]);
  const responses: Record<string, unknown> = {};
  for (const [status, types] of [...byStatus].sort(([a], [b]) => a - b)) {
    responses[String(status)] = {
      description: types.map((t) => `\`${t}\`: ${PROBLEM_WHY[t]}.`).join(' '),
      headers: headerRefs(
        status === 503 || status === 429 ? ['X-Request-Id', 'Retry-After'] : ['X-Request-Id'],
      ),
      content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
    };
  }
  return responses;
}
