// What /v1/webhooks takes, in Resend's names (`endpoint`, `events`, `status`, `limit`, `after`,
// `before`), defined once as schemas that api/openapi.ts can describe, and parsed into what
// lib/db/webhooks.ts needs. Every fault of a request is reported at once, as a 422 naming its
// field. Whether a URL may point where it does depends on the installation
// (MAILPLANE_WEBHOOKS_ALLOW_PRIVATE), so that rule (lib/net-policy.ts) runs after the schema.

import { z } from 'zod';
import type { Page, ReplayFilter } from '../lib/db/webhooks.js';
import { MAX_WEBHOOK_URL_LENGTH, webhookUrlFault } from '../lib/net-policy.js';
import type { FieldError } from '../lib/problem.js';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from '../lib/webhooks.js';
import { pageFaults, pageOf, pageParams, parseRequest, refuse } from './requests.js';
import { parseDateTime } from './schemas-checks.js';
/**
 * The longest time range one replay covers: an application's outage over a long weekend, and a
 * bound on what one request writes (REPLAY_MAX_EVENTS bounds it by count).
 */
export const REPLAY_MAX_RANGE_DAYS = 7;
const REPLAY_MAX_RANGE_MS = REPLAY_MAX_RANGE_DAYS * 24 * 60 * 60 * 1000;
/** Entries an events list may have: each type at most twice over, so that no list is worked long. */
const MAX_EVENTS_LISTED = WEBHOOK_EVENT_TYPES.length * 2;
/** What of a wrong value a fault quotes. */
const QUOTED_CHARS = 64;

const quote = (value: unknown) => JSON.stringify(String(value).slice(0, QUOTED_CHARS));
/** A member's fault when it is missing, or when it is of the wrong type. */
const requiredAnd = (wrongType: string) => (issue: { input: unknown }) =>
  issue.input === undefined ? 'is required' : wrongType;

const eventType = z.enum(WEBHOOK_EVENT_TYPES, {
  error: (issue) =>
    typeof issue.input === 'string'
      ? `${quote(issue.input)} is not an event Mailplane sends (${WEBHOOK_EVENT_TYPES.join(', ')})`
      : 'must be an event type, a string',
});

const events = z
  .array(eventType, { error: requiredAnd('must be a list of event types') })
  .min(1, { error: 'must list at least one event type' })
  .max(MAX_EVENTS_LISTED, { error: `must list at most ${MAX_EVENTS_LISTED} event types` })
  .describe(`The events to receive: ${WEBHOOK_EVENT_TYPES.join(', ')}.`);

const endpoint = z
  .string({ error: requiredAnd('must be a URL, a string') })
  .min(1, { error: 'must be a URL' })
  .max(MAX_WEBHOOK_URL_LENGTH, { error: `must be at most ${MAX_WEBHOOK_URL_LENGTH} characters` })
  .describe(
    'Where events are POSTed: an https URL with no credentials, whose host is public (checked again ' +
      'on the addresses it resolves to at every delivery).',
  );

/** POST /v1/webhooks: Resend's CreateWebhookOptions. */
export const CreateWebhook = z.strictObject({ endpoint, events });

/** PATCH /v1/webhooks/{id}: Resend's UpdateWebhookOptions; each member changes only when given. */
export const UpdateWebhook = z.strictObject({
  endpoint: endpoint.optional(),
  events: events.optional(),
  status: z
    .enum(['enabled', 'disabled'], { error: 'must be "enabled" or "disabled"' })
    .optional()
    .describe('enabled also clears why it was disabled (a 410, days of failures).'),
});

const NOT_RFC_3339 = 'must be an RFC 3339 date-time with a time zone (2030-01-01T09:00:00Z)';
const dateTime = z.string({ error: NOT_RFC_3339 }).meta({ format: 'date-time' });

/** POST /v1/webhooks/{id}/replay: one email's events, or those of a time range. */
export const ReplayWebhook = z.strictObject({
  email_id: z.guid({ error: 'must be an email id (a UUID)' }).optional(),
  from: dateTime.optional().describe('The range’s start, included.'),
  to: dateTime
    .optional()
    .describe(`The range’s end, not included; at most ${REPLAY_MAX_RANGE_DAYS} days after from.`),
});

/** How a list's cursors are written: endpoint ids are UUIDs, delivery ids whole numbers. */
const CURSORS = {
  uuid: {
    pattern: /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/,
    what: 'a webhook id',
  },
  // Eighteen digits keep within Postgres' bigint, whose overflow would be an error, not a miss.
  serial: { pattern: /^[0-9]{1,18}$/, what: 'a delivery id' },
} as const;

/** The query of a list whose ids are written as `ids` are: Resend's PaginationOptions. */
function listQuery(ids: keyof typeof CURSORS) {
  return z.object(pageParams(CURSORS[ids].what, CURSORS[ids].pattern));
}

/** GET /v1/webhooks. */
export const WebhookListQuery = listQuery('uuid');
/** GET /v1/webhooks/{id}/deliveries and /events. */
export const DeliveryListQuery = listQuery('serial');
const LIST_QUERIES = { uuid: WebhookListQuery, serial: DeliveryListQuery };

// Resend calls the URL `endpoint`; a caller who guesses `url` is told so.
const hint = (key: string) => (key === 'url' ? 'is not a member: the URL goes in `endpoint`' : undefined);

/** A body parsed by `schema`, or a 422 listing its faults and those `more` finds in what parsed. */
function parseBody<T extends z.ZodType>(
  schema: T,
  body: unknown,
  more: (value: z.output<T>) => FieldError[] = () => [],
): z.output<T> {
  return parseRequest(schema, body, { more, hint });
}

function urlFaults(url: string | undefined, allowPrivate: boolean): FieldError[] {
  const fault = url === undefined ? undefined : webhookUrlFault(url, { allowPrivate });
  return fault ? [{ field: 'endpoint', message: fault }] : [];
}

/** Each type once, in the order first given. */
const unique = (types: WebhookEventType[]) => [...new Set(types)];

/**
 * POST /v1/webhooks.
 *
 *   parseCreate({ endpoint: 'https://app.example/hooks', events: ['email.bounced'] }, { allowPrivate: false })
 */
export function parseCreate(
  body: unknown,
  options: { allowPrivate: boolean },
): { url: string; events: WebhookEventType[] } {
  const request = parseBody(CreateWebhook, body, (r) => urlFaults(r.endpoint, options.allowPrivate));
  return { url: request.endpoint, events: unique(request.events) };
}

/** PATCH /v1/webhooks/{id}: what to change. */
export function parseUpdate(
  body: unknown,
  options: { allowPrivate: boolean },
): { url?: string; events?: WebhookEventType[]; enabled?: boolean } {
  const request = parseBody(UpdateWebhook, body, (r) => urlFaults(r.endpoint, options.allowPrivate));
  return {
    ...(request.endpoint === undefined ? {} : { url: request.endpoint }),
    ...(request.events === undefined ? {} : { events: unique(request.events) }),
    ...(request.status === undefined ? {} : { enabled: request.status === 'enabled' }),
  };
}

/**
 * POST /v1/webhooks/{id}/replay: `{email_id}`, or `{from, to}` at most REPLAY_MAX_RANGE_DAYS apart.
 *
 *   parseReplay({ from: '2030-01-01T00:00:00Z', to: '2030-01-01T06:00:00Z' })   // { from, to }
 */
export function parseReplay(body: unknown): ReplayFilter {
  const filter = replayFilterOf(parseBody(ReplayWebhook, body));
  if (Array.isArray(filter)) refuse(filter);
  return filter;
}

function replayFilterOf(r: z.output<typeof ReplayWebhook>): ReplayFilter | FieldError[] {
  const range = r.from !== undefined || r.to !== undefined;
  if (r.email_id !== undefined && range) {
    return [{ field: '(body)', message: 'give email_id, or from and to, not both' }];
  }
  if (r.email_id !== undefined) return { emailId: r.email_id };
  if (!range) return [{ field: '(body)', message: 'give email_id, or from and to' }];
  if (r.from === undefined) return [{ field: 'from', message: 'is required with to' }];
  if (r.to === undefined) return [{ field: 'to', message: 'is required with from' }];
  const from = parseDateTime(r.from);
  const to = parseDateTime(r.to);
  if (typeof from !== 'number' || typeof to !== 'number') {
    return (
      [
        ['from', from],
        ['to', to],
      ] as const
    ).flatMap(([field, parsed]) =>
      typeof parsed === 'number' ? [] : [{ field, message: parsed ?? NOT_RFC_3339 }],
    );
  }
  if (to <= from) return [{ field: 'to', message: 'must be after from' }];
  if (to - from > REPLAY_MAX_RANGE_MS) {
    return [
      {
        field: 'to',
        message: `must be at most ${REPLAY_MAX_RANGE_DAYS} days after from: replay a longer time in several ranges`,
      },
    ];
  }
  return { from: new Date(from), to: new Date(to) };
}

/**
 * A list's query: `limit` (1 to 100, 20 by default) and at most one cursor, written as the list's
 * ids are.
 *
 *   parsePage({ limit: '10', after: '42' }, 'serial')   // { limit: 10, after: '42' }
 */
export function parsePage(query: unknown, ids: keyof typeof CURSORS): Page {
  return pageOf(parseBody(LIST_QUERIES[ids], query, pageFaults));
}
