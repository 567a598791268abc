// What GET /v1/emails and PATCH /v1/emails/:id take, as schemas api/openapi.ts describes: Resend's
// page parameters and Mailplane's filters for the list, Resend's `scheduled_at` for a reschedule,
// checked as a send checks it (api/schemas-send.ts). A parameter or member not named here is a
// 422, not ignored: a filter mistyped would otherwise list every email.

import { z } from 'zod';
import type { EmailFilter } from '../lib/db/email-list.js';
import type { Page } from '../lib/db/webhooks.js';
import { MESSAGE_STATUSES } from '../lib/db/schema.js';
import type { FieldError } from '../lib/problem.js';
import { pageFaults, pageOf, pageParams, parseRequest } from './requests.js';
import { parseDateTime } from './schemas-checks.js';
import { MAX_TAG, scheduledAtInstant, scheduleWindowFault, TAG_CHAR } from './schemas-send.js';

/** Both cases written out: a JSON Schema pattern (the document's) cannot carry the i flag. */
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/** RFC 5321 4.5.3.1.3: a path is at most 256 octets, an address in it 254. */
const MAX_ADDRESS = 254;
/** RFC 1035: a domain name is at most 253 characters written out. */
const MAX_DOMAIN = 253;
const ADDRESS = /^[^\s@]+@[^\s@]+$/;
const DOMAIN = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
/** A tag as a send takes it, `name:value`. */
const TAG = new RegExp(`^${TAG_CHAR}{1,${MAX_TAG}}:${TAG_CHAR}{1,${MAX_TAG}}$`);
const NOT_RFC_3339 = 'must be an RFC 3339 date-time with a time zone (2030-01-01T09:00:00Z)';

const instant = z
  .string({ error: NOT_RFC_3339 })
  .meta({ format: 'date-time' })
  .transform((value, ctx) => {
    const at = parseDateTime(value);
    if (typeof at === 'number') return new Date(at);
    ctx.addIssue({ code: 'custom', message: at ?? NOT_RFC_3339 });
    return z.NEVER;
  });

/** GET /v1/emails: Resend's page parameters, then the filters, which all apply together. */
export const ListEmailsQuery = z.strictObject({
  ...pageParams('an email id', UUID),
  status: z
    .enum(MESSAGE_STATUSES, { error: `must be one of ${MESSAGE_STATUSES.join(', ')}` })
    .optional()
    .describe('The email’s status, as GET /v1/emails/{id} shows it.'),
  recipient: z
    .string({ error: 'must be an email address' })
    .max(MAX_ADDRESS, { error: `must be at most ${MAX_ADDRESS} characters` })
    .regex(ADDRESS, { error: 'must be an email address, such as ada@example.org' })
    .optional()
    .describe('An address the email was sent to (to, cc or bcc), in any case.'),
  tag: z
    .string({ error: 'must be a tag as name:value' })
    .regex(TAG, { error: 'must be a tag as name:value, each letters, digits, _ or -' })
    .optional()
    .describe('A tag of the email, as `name:value`.'),
  domain: z
    .string({ error: 'must be a domain name' })
    .max(MAX_DOMAIN, { error: `must be at most ${MAX_DOMAIN} characters` })
    .regex(DOMAIN, { error: 'must be a domain name, such as example.com' })
    .optional()
    .describe('The sending domain the email is from.'),
  from: instant.optional().describe('Created at or after this RFC 3339 date-time.'),
  to: instant.optional().describe('Created before this RFC 3339 date-time.'),
});

/** PATCH /v1/emails/{id}: Resend's UpdateEmailOptions. */
export const UpdateEmail = z
  .strictObject({ scheduled_at: scheduledAtInstant })
  .describe('The time to send a scheduled email at instead; nothing else of an email can be changed.');

const onlyScheduledAt = (key: string) =>
  key === 'scheduledAt'
    ? 'is not a member: the time goes in `scheduled_at`'
    : 'is not a member: only `scheduled_at` can be changed';

/**
 * GET /v1/emails's query: the page and the filters.
 *
 *   parseListQuery({ status: 'bounced', limit: '50' })  // { page: { limit: 50 }, filter: { status: 'bounced' } }
 */
export function parseListQuery(query: unknown): { page: Page; filter: EmailFilter } {
  const q = parseRequest(ListEmailsQuery, query, {
    more: (q) => [
      ...pageFaults(q),
      ...(q.from && q.to && q.from >= q.to ? [{ field: 'to', message: 'must be after from' }] : []),
    ],
  });
  const filter: EmailFilter = {
    ...(q.status === undefined ? {} : { status: q.status }),
    ...(q.recipient === undefined ? {} : { recipient: q.recipient }),
    ...(q.tag === undefined ? {} : { tag: q.tag }),
    // Domain names are stored as the Resource names them, in lower case.
    ...(q.domain === undefined ? {} : { domain: q.domain.toLowerCase() }),
    ...(q.from === undefined ? {} : { from: q.from }),
    ...(q.to === undefined ? {} : { to: q.to }),
  };
  return { page: pageOf(q), filter };
}

/**
 * PATCH /v1/emails/{id}'s body: the new time, or null for now (a time already past sends now, as
 * on a send); more than 30 days ahead is a 422.
 *
 *   parseUpdate({ scheduled_at: '2030-01-01T09:00:00Z' }, Date.now())  // Date
 */
export function parseUpdate(body: unknown, now: number): Date | null {
  const { scheduled_at: at } = parseRequest(UpdateEmail, body, {
    hint: onlyScheduledAt,
    more: (u): FieldError[] => {
      const fault = scheduleWindowFault(u.scheduled_at, now);
      return fault ? [{ field: 'scheduled_at', message: fault }] : [];
    },
  });
  return at > now ? new Date(at) : null;
}
