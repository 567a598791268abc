// The send request in Resend's shape, defined once. api/openapi.ts generates the document's
// SendEmail from these schemas and api/validate.ts parses every field with them, so the names,
// types, required fields and bounds a caller reads are the ones a request is held to. Each schema
// carries the words a 422 uses for its faults; what JSON Schema cannot say (a string Postgres
// cannot store, a header that could be injected, an address the parser refuses) is a refinement
// from api/schemas-checks.ts on the field it guards, and is named in the field's description.

import { z } from 'zod';
import type { Mailbox } from '../lib/address.js';
import { MAX_TAG, MAX_TAGS, TAG_CHAR } from '../lib/send/tags.js';
import {
  addressStringFault,
  base64Bytes,
  filenameForbidden,
  headerNameFault,
  headerValueFault,
  MAX_VARIABLES_BYTES,
  MAX_VARIABLES_DEPTH,
  oneLineFault,
  parseDateTime,
  parseMailboxes,
  unstorable,
  variablesFaults,
} from './schemas-checks.js';

export { MAX_TAG, TAG_CHAR };

// RFC 5322 2.1.1: a line may not exceed 998 characters; a subject is one (folded) header.
export const MAX_SUBJECT = 998;
/**
 * A custom header's value, by the same line limit: nodemailer folds a longer one, but no custom
 * header needs more, and every header is sent to every recipient.
 */
const MAX_HEADER_VALUE = 998;
/** Custom headers of one email; real ones carry a handful (List-Unsubscribe, X-Entity-Ref-ID, …). */
const MAX_HEADERS = 100;
/** Attachments of one email: their bytes are bounded by maxMessageBytes, their count by this. */
const MAX_ATTACHMENTS = 100;
/** A file name, as most file systems allow it. */
const MAX_FILENAME = 255;
/** RFC 6838 4.2: 127 characters of type and of subtype, and the slash. */
const MAX_MEDIA_TYPE = 255;
/**
 * A Content-ID, which the html names as `cid:…`: as long as a file name, far below the header line
 * limit; Resend's own are short names like `logo-image`.
 */
const MAX_CONTENT_ID = 255;
/** Template names are Kubernetes object names (DNS subdomains, at most 253); ids are UUIDs. */
const MAX_TEMPLATE_REF = 253;
/**
 * One mailbox as written: an address of at most 254 octets (RFC 5321 4.5.3.1.3) and a display name,
 * with room to spare. An address field gets this much per recipient allowed, in all its entries
 * together, so that no field makes the address parser work on more than a full list needs.
 */
export const MAX_MAILBOX_CHARS = 1024;
/** Resend's batch limit: 100 emails in one request. */
export const MAX_BATCH = 100;
/** Resend's scheduling window: an email may be scheduled at most 30 days ahead. */
export const MAX_SCHEDULE_AHEAD_DAYS = 30;
/**
 * The recipients of one send unless the installation (MAILPLANE_MAX_RECIPIENTS) or the Tenant
 * says otherwise: lib/config.ts's default, which the served document states.
 */
export const DEFAULT_MAX_RECIPIENTS = 50;

const MEDIA_TYPE = /^[\w.+-]+\/[\w.+-]+$/;
const TAG_CHARS = new RegExp(`^${TAG_CHAR}+$`);
/** Visible ASCII but the angle brackets that enclose a Content-ID in its header. */
const CONTENT_ID = /^[!-;=?-~]+$/;

const REQUIRED_FROM = 'is required: "Name <you@your-domain>"';
const TAG_FAULT = 'must be letters, digits, _ or -';
const FILENAME_FAULT = 'is required: a file name without line breaks, control characters or slashes';
const MEDIA_TYPE_FAULT = 'must be a media type such as application/pdf';
const CONTENT_ID_FAULT = `must be 1 to ${MAX_CONTENT_ID} visible ASCII characters without < or >, such as logo-image`;
const CONTENT_FAULT = 'is required: the file as a base64 string';
const REQUIRED_TEMPLATE_ID = 'is required: the name or id of a Template';
const DATE_TIME_FAULT = 'must be an RFC 3339 date-time with a time zone, such as 2030-01-01T09:00:00Z';

const atMost = (n: number) => `must be at most ${n} characters`;
const lengthOf = (input: unknown) => (Array.isArray(input) ? input.length : 0);

/**
 * A refinement: `why` says what is wrong with the value, or returns undefined. An aborting one
 * stops the checks after it, so that a value is refused for its first fault, as a person would
 * fix it; a value that cannot be stored is never also too long.
 */
function fault<T>(why: (value: T) => string | undefined, { abort = true } = {}) {
  return (payload: z.core.ParsePayload<T>): void => {
    const message = why(payload.value);
    if (message) payload.issues.push({ code: 'custom', message, input: payload.value, continue: !abort });
  };
}

/** A member that is not there: Resend's clients send null for an option not set. */
export const absent = (value: unknown): value is undefined | null => value === undefined || value === null;

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Length bounds held only by the type they are written for: zod's own also measure a value of the
 * wrong type (a list sent for a string), which would report one fault twice.
 */
const onString = { when: (payload: z.core.ParsePayload) => typeof payload.value === 'string' };
const onList = { when: (payload: z.core.ParsePayload) => Array.isArray(payload.value) };

/** The storable text of an optional body or subject. */
const text = () => z.string({ error: 'must be a string' }).check(fault(unstorable));

/**
 * One entry of an address field: an address, or several joined by commas, each of which counts
 * against the recipient limit. Parsed here into mailboxes; a fault in one entry does not stop the
 * others from being checked.
 */
export const addressEntry = z
  .string({ error: 'must be a string' })
  .check(fault(addressStringFault))
  .transform((value, ctx): Mailbox[] => {
    const parsed = parseMailboxes(value);
    if (typeof parsed !== 'string') return parsed;
    ctx.addIssue({ code: 'custom', message: parsed, continue: true });
    return z.NEVER;
  });

/** from: exactly one mailbox, on a domain of the tenant's. */
const from = z
  .string({ error: REQUIRED_FROM })
  .check(fault((value) => (value.trim() === '' ? REQUIRED_FROM : undefined)))
  .max(MAX_MAILBOX_CHARS, { error: atMost(MAX_MAILBOX_CHARS), abort: true, ...onString })
  .check(fault(addressStringFault))
  .transform((value, ctx): Mailbox => {
    const parsed = parseMailboxes(value);
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
    else if (parsed.length !== 1) ctx.addIssue({ code: 'custom', message: 'must be a single address' });
    else return parsed[0]!;
    return z.NEVER;
  })
  .describe('"Name <you@your-domain>"; the domain must be a SendingDomain of the tenant.');

/**
 * to, cc, bcc or reply_to: an address, a comma-joined list of them, or a list of either. The
 * number of entries and their length together are bounded before any of them is parsed.
 */
function addressField(maxRecipients: number, required: boolean) {
  const maxChars = maxRecipients * MAX_MAILBOX_CHARS;
  const entries = z.array(addressEntry);
  const list = (required ? entries.min(1, { error: 'must name at least one address', ...onList }) : entries)
    .max(maxRecipients, {
      error: (issue) => `${lengthOf(issue.input)} entries is over the limit of ${maxRecipients} recipients`,
      ...onList,
    })
    .transform((lists) => lists.flat());
  const field = z.union([addressEntry, list]);
  return z
    .preprocess(
      (value, ctx) => {
        if (absent(value)) {
          if (!required) return undefined;
          ctx.addIssue({ code: 'custom', message: 'is required: an address or a list of addresses' });
          return z.NEVER;
        }
        // Over the count, the list's own bound answers; over the length, nothing is parsed.
        const items: unknown[] = Array.isArray(value) ? value : [value];
        if (items.length > maxRecipients) return value;
        const chars = items.reduce<number>((n, item) => n + (typeof item === 'string' ? item.length : 0), 0);
        if (chars <= maxChars) return value;
        ctx.addIssue({
          code: 'custom',
          message: `must be at most ${maxChars} characters in all (${MAX_MAILBOX_CHARS} per recipient allowed)`,
        });
        return z.NEVER;
      },
      required ? field : field.nullish(),
    )
    .describe(
      `An address ("Name <you@example.com>"), several joined by commas, or a list of either; each ` +
        'address counts against the recipient limit.',
    );
}

/** The name of a custom header: a valid field name, and none that Mailplane writes itself. */
export const headerName = z.string().check(fault(headerNameFault));
/** A custom header's value: one line of storable text. */
export const headerValue = z
  .string({ error: 'must be a string' })
  .check(fault(headerValueFault))
  .max(MAX_HEADER_VALUE, { error: atMost(MAX_HEADER_VALUE), abort: true, ...onString });

/**
 * headers: names to values. The count is bounded before any name is looked at. (zod's records skip
 * a member named `__proto__`, a guard against prototype pollution; api/validate.ts checks that one
 * with the same two schemas, since here it is a header name like any other.)
 */
const headers = z
  .preprocess(
    (value, ctx) => {
      const names = isObject(value) ? Object.keys(value).length : 0;
      if (names <= MAX_HEADERS) return value;
      ctx.addIssue({ code: 'custom', message: `has ${names} fields; the limit is ${MAX_HEADERS}` });
      return z.NEVER;
    },
    z.record(headerName, headerValue, { error: 'must be an object of header names to values' }),
  )
  .meta({ maxProperties: MAX_HEADERS })
  .describe(
    'Custom header fields, sent as given: one line each, without the fields Mailplane writes (From, ' +
      'To, Subject, Message-ID, MIME and Content-* fields, …), trace fields (Received, Return-Path) ' +
      'or signatures and verdicts (DKIM-Signature, ARC-*, Authentication-Results).',
  )
  .nullish();

/** An attachment's base64 content, with the size it decodes to. */
const attachmentContent = z
  .string({ error: CONTENT_FAULT })
  .min(1, { error: CONTENT_FAULT, abort: true, ...onString })
  .meta({ contentEncoding: 'base64' })
  .transform((content, ctx) => {
    const bytes = base64Bytes(content);
    if (bytes !== undefined && bytes >= 0) return { content, bytes };
    ctx.addIssue({
      code: 'custom',
      message:
        bytes === undefined
          ? CONTENT_FAULT
          : 'is not base64: A-Z, a-z, 0-9, + and /, padded with = to a multiple of 4',
    });
    return z.NEVER;
  });

const attachment = z.preprocess(
  (value, ctx) => {
    // Resend fetches a `path` URL; Mailplane reads no file and fetches no URL for a caller.
    if (!isObject(value) || value.path === undefined) return value;
    ctx.addIssue({
      code: 'custom',
      path: ['path'],
      message: 'is not supported: send the file as base64 `content`',
    });
    return z.NEVER;
  },
  z
    .object(
      {
        filename: z
          .string({ error: FILENAME_FAULT })
          .min(1, { error: FILENAME_FAULT, abort: true, ...onString })
          .max(MAX_FILENAME, { error: FILENAME_FAULT, abort: true, ...onString })
          .check(fault((name) => (filenameForbidden(name) ? FILENAME_FAULT : undefined)))
          .check(fault(unstorable)),
        content_type: z
          .string({ error: MEDIA_TYPE_FAULT })
          .max(MAX_MEDIA_TYPE, { error: MEDIA_TYPE_FAULT, abort: true, ...onString })
          .regex(MEDIA_TYPE, { error: MEDIA_TYPE_FAULT })
          .optional()
          .describe('Guessed from the file name when not given.'),
        content: attachmentContent.describe('The file, base64; it may be wrapped at 76 columns.'),
        content_id: z
          .string({ error: CONTENT_ID_FAULT })
          .min(1, { error: CONTENT_ID_FAULT, abort: true, ...onString })
          .max(MAX_CONTENT_ID, { error: CONTENT_ID_FAULT, abort: true, ...onString })
          .regex(CONTENT_ID, { error: CONTENT_ID_FAULT })
          .nullish()
          .describe(
            'Makes the file an inline part (Content-Disposition: inline) with this Content-ID, which ' +
              'the html shows as `<img src="cid:logo-image">`.',
          ),
      },
      { error: 'must be an object' },
    )
    .describe('A file, sent with the email. A `path` (a URL to fetch) is not supported.'),
);

const attachments = z
  .array(attachment, { error: 'must be a list' })
  .max(MAX_ATTACHMENTS, {
    error: (issue) => `has ${lengthOf(issue.input)} files; the limit is ${MAX_ATTACHMENTS}`,
    ...onList,
  })
  .nullish();

const tagText = z
  .string({ error: TAG_FAULT })
  .min(1, { error: TAG_FAULT, abort: true, ...onString })
  .max(MAX_TAG, { error: TAG_FAULT, abort: true, ...onString })
  .regex(TAG_CHARS, { error: TAG_FAULT });

/** A tag is reported at its name when it is not an object at all, as a tag without one. */
const tag = z.preprocess(
  (value) => (isObject(value) ? value : {}),
  z.object({ name: tagText, value: tagText }),
);

const tags = z
  .array(tag, { error: 'must be a list of {name, value}' })
  .max(MAX_TAGS, {
    error: (issue) => `has ${lengthOf(issue.input)} tags; the limit is ${MAX_TAGS}`,
    ...onList,
  })
  .describe('Stored with the email and copied into its events.')
  .nullish();

/** template.variables: walked once, with its own path for each fault (see variablesFaults). */
const variables = z
  .preprocess(
    (value, ctx) => {
      if (!isObject(value)) return value;
      const faults = variablesFaults(value);
      if (faults.length === 0) return value;
      for (const { at, message } of faults) ctx.addIssue({ code: 'custom', message, params: { at } });
      return z.NEVER;
    },
    z.record(z.string(), z.unknown(), { error: 'must be an object' }),
  )
  .describe(
    `Values for the template, as JSON: at most ${MAX_VARIABLES_DEPTH} levels deep and ` +
      `${MAX_VARIABLES_BYTES} bytes, numbers within ±(2^53 − 1).`,
  )
  .nullish();

/** A template is reported at its id when it is not an object at all, as a template without one. */
const template = z
  .preprocess(
    (value) => (absent(value) || isObject(value) ? value : {}),
    z
      .object({
        id: z
          .string({ error: REQUIRED_TEMPLATE_ID })
          .min(1, { error: REQUIRED_TEMPLATE_ID, abort: true, ...onString })
          .max(MAX_TEMPLATE_REF, { error: atMost(MAX_TEMPLATE_REF), abort: true, ...onString })
          .check(fault(unstorable))
          .describe('The name or the id of a Template of the tenant.'),
        variables,
      })
      .nullish(),
  )
  .describe(
    'Renders a Template instead of subject, html and text. Its current version is pinned when the ' +
      'email is accepted; each message is rendered when it is sent.',
  );

const subject = text()
  .check(fault(oneLineFault, { abort: false }))
  .max(MAX_SUBJECT, { error: atMost(MAX_SUBJECT), ...onString })
  .describe('Required unless a template gives one.')
  .nullish();

const html = text().describe('html, text or template is required.').nullish();
const plainText = text().nullish();

/**
 * scheduled_at, on a send and on PATCH /v1/emails/{id}: read here as the instant it names, in
 * milliseconds; whether it is within the window, or already past (sent now), depends on when the
 * request arrives (scheduleWindowFault).
 */
export const scheduledAtInstant = z
  .string({ error: DATE_TIME_FAULT })
  .meta({ format: 'date-time' })
  .transform((value, ctx) => {
    const at = parseDateTime(value);
    if (typeof at === 'number') return at;
    ctx.addIssue({ code: 'custom', message: at ?? DATE_TIME_FAULT });
    return z.NEVER;
  })
  .describe(
    `When to send: an RFC 3339 date-time with a time zone, at most ${MAX_SCHEDULE_AHEAD_DAYS} days ` +
      'ahead; a time already past sends now.',
  );

const scheduledAt = scheduledAtInstant.nullish();

/** unsubscribe: the one-click unsubscribe headers, or none; the Tenant's default when absent. */
const unsubscribe = z
  .boolean({ error: 'must be true or false' })
  .nullish()
  .describe(
    'Whether each message carries List-Unsubscribe (an https link and a mailto address) and ' +
      'List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058), both DKIM-signed; a recipient ' +
      'who uses either is suppressed for the tenant (reason unsubscribe). When not given, the ' +
      'Tenant’s spec.unsubscribe (false unless set).',
  );

/**
 * tracking: opens and clicks on or off for this email, over its sending domain's spec.tracking; a
 * member not given keeps the domain's.
 */
const tracking = z
  .object(
    {
      opens: z
        .boolean({ error: 'must be true or false' })
        .nullish()
        .describe('A 1×1 pixel in the html, fetched when the message is shown.'),
      clicks: z
        .boolean({ error: 'must be true or false' })
        .nullish()
        .describe('Each http(s) link of the html through a signed redirect on the tracking domain.'),
    },
    { error: 'must be an object such as {"opens": true, "clicks": false}' },
  )
  .nullish()
  .describe(
    'Open and click tracking for this email, over its SendingDomain’s spec.tracking. Each open and ' +
      'click is an event (email.opened, email.clicked) that says whether a machine made it.',
  );

const MAX_SCHEDULE_AHEAD_MS = MAX_SCHEDULE_AHEAD_DAYS * 24 * 60 * 60 * 1000;

/**
 * Why an instant cannot be a scheduled_at at `now`, or undefined: more than
 * MAX_SCHEDULE_AHEAD_DAYS ahead. (A time already past is taken: it sends now.)
 *
 *   scheduleWindowFault(Date.parse('2099-01-01T00:00:00Z'), Date.now())  // 'must be at most 30 days ahead (…)'
 */
export function scheduleWindowFault(at: number, now: number): string | undefined {
  if (at <= now + MAX_SCHEDULE_AHEAD_MS) return undefined;
  const limit = new Date(now + MAX_SCHEDULE_AHEAD_MS).toISOString();
  return `must be at most ${MAX_SCHEDULE_AHEAD_DAYS} days ahead (before ${limit})`;
}

/**
 * The schema of one send for a tenant whose recipient limit is `maxRecipients`. The members are in
 * the order a 422 lists their faults.
 */
function buildSendEmail(maxRecipients: number) {
  return z
    .object({
      from,
      to: addressField(maxRecipients, true),
      cc: addressField(maxRecipients, false),
      bcc: addressField(maxRecipients, false),
      reply_to: addressField(maxRecipients, false),
      template,
      subject,
      html,
      text: plainText,
      headers,
      attachments,
      tags,
      scheduled_at: scheduledAt,
      unsubscribe,
      tracking,
    })
    .describe(
      `An email in Resend's shape. to, cc and bcc together name at most ${maxRecipients} ` +
        'recipients (a Tenant may set its own limit); each address field takes an address, ' +
        `several joined by commas or a list of either, of at most ${MAX_MAILBOX_CHARS} characters ` +
        'per recipient allowed. Members not named here are ignored.',
    );
}

export type SendEmailSchema = ReturnType<typeof buildSendEmail>;
/** A send as a caller writes it. */
export type SendEmailInput = z.input<SendEmailSchema>;
/** A send's members once each has passed its schema. */
export type SendEmailFields = z.output<SendEmailSchema>;

/** Schemas by recipient limit: a handful of distinct limits, each built once. */
const byLimit = new Map<number, SendEmailSchema>();
/** Tenants set limits of 1 to 1000; few installations have more than a few distinct ones. */
const MAX_SCHEMAS = 32;

/**
 * The schema of one send under a recipient limit.
 *
 *   sendEmailSchema(50).shape.subject.safeParse('Hello')
 */
export function sendEmailSchema(maxRecipients: number): SendEmailSchema {
  let schema = byLimit.get(maxRecipients);
  if (!schema) {
    if (byLimit.size >= MAX_SCHEMAS) byLimit.delete(byLimit.keys().next().value as number);
    schema = buildSendEmail(maxRecipients);
    byLimit.set(maxRecipients, schema);
  }
  return schema;
}

/**
 * A batch: 1 to MAX_BATCH of `item`. api/emails.ts checks the envelope with `batchOf(z.unknown())`
 * and each email on its own, so that every fault is named by its index.
 */
export const batchOf = <T extends z.ZodType>(item: T) =>
  z.array(item).min(1).max(MAX_BATCH).describe(`1 to ${MAX_BATCH} emails, sent together.`);

/** x-batch-validation: how a batch with an invalid email is answered. */
export const BatchValidation = z
  .enum(['strict', 'permissive'])
  .describe(
    'strict (the default): any invalid email refuses the whole batch, every fault listed; ' +
      'permissive: the valid emails are sent and the others reported by index.',
  );
