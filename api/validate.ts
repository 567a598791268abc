// Turns a send request in Resend's shape into what the accept path stores, reporting every field
// at fault at once. Everything that ends up in a header is checked for CR/LF here: the MIME
// builder downstream must never see a value that could inject a header. Every string is checked
// for what Postgres refuses (NUL, lone surrogates), and every list and nesting is bounded, so that
// no request body can fail the insert or exhaust the stack: a body is either accepted or refused
// with the field at fault named.

import { AddressError, domainOf, formatMailbox, parseMailboxList, type Mailbox } from '../lib/address.js';
import type { Attachment, EmailContent } from '../lib/db/schema.js';
import { isHeaderName, reservedHeader, type ReservedHeaderGroup } from '../lib/headers.js';
import { Problem, type FieldError } from '../lib/problem.js';

/** A send, checked; `recipients` are the envelope addresses (to + cc + bcc), de-duplicated. */
export interface SendRequest {
  from: Mailbox;
  content: EmailContent;
  recipients: string[];
  /** Null when the request is to be sent now (no scheduled_at, or one in the past). */
  scheduledAt: Date | null;
  template?: { ref: string; variables: Record<string, unknown> };
}

export interface Limits {
  maxRecipients: number;
  maxMessageBytes: number;
}

type Fail = (field: string, message: string) => void;

// RFC 5322 2.1.1: a line may not exceed 998 characters; a subject is one (folded) header.
const MAX_SUBJECT = 998;
/**
 * A custom header's value, by the same line limit: nodemailer folds a longer one, but no custom
 * header needs more, and every header is sent to every recipient.
 */
const MAX_HEADER_VALUE = 998;
/** Custom headers of one email; real ones carry a handful (List-Unsubscribe, X-Entity-Ref-ID, …). */
const MAX_HEADERS = 100;
/**
 * Tags of one email, as many as Amazon SES allows (Resend documents no count); they are stored with
 * the email and copied into its events.
 */
const MAX_TAGS = 50;
/** Attachments of one email: their bytes are bounded by maxMessageBytes, their count by this. */
const MAX_ATTACHMENTS = 100;
/** A file name, as most file systems allow it. */
const MAX_FILENAME = 255;
/** RFC 6838 4.2: 127 characters of type and of subtype, and the slash. */
const MAX_MEDIA_TYPE = 255;
/** Template names are Kubernetes object names (DNS subdomains, at most 253); ids are UUIDs. */
const MAX_TEMPLATE_REF = 253;
/**
 * One mailbox as written: an address of at most 254 octets (RFC 5321 4.5.3.1.3) and a display name,
 * with room to spare. An address field gets this much per recipient allowed, in all its entries
 * together, so that no field makes the address parser work on more than a full list needs.
 */
const MAX_MAILBOX_CHARS = 1024;
/**
 * Runs of white space in an address field. parseMailbox's pattern takes time proportional to the
 * length of the string times the longest run; no address or display name needs more than a few
 * spaces in a row.
 */
const MAX_WHITESPACE_RUN = 16;
const ADDRESS_WHITESPACE_RUN = new RegExp(`\\s{${MAX_WHITESPACE_RUN + 1}}`);
/**
 * Levels of nesting in template.variables. Real variables are a record with lists of records
 * (an order and its lines); a bound well above that keeps the walk below and every JSON
 * round-trip after it (Postgres' jsonb, the render sandbox) far from a stack limit.
 */
const MAX_VARIABLES_DEPTH = 32;
/**
 * Size of template.variables, about as JSON. They are parsed again in the render sandbox for every
 * recipient, inside a heap of as little as 8 MiB (config.renderMemoryMb's minimum), where parsed
 * JSON takes several times its text.
 */
const MAX_VARIABLES_BYTES = 256 * 1024;
/** Faults listed in one 422: enough to fix a request, few enough to keep the answer small. */
const MAX_REPORTED_FAULTS = 100;
/** Faults listed from template.variables, which can hold many more values than the other fields. */
const MAX_VARIABLES_FAULTS = 10;
/** Resend's scheduling window: an email may be scheduled at most 30 days ahead. */
const MAX_SCHEDULE_AHEAD_MS = 30 * 24 * 60 * 60 * 1000;

const TAG = /^[A-Za-z0-9_-]{1,256}$/;
const LINE_BREAK = /[\r\n]/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const CONTROL_IN_LINE = /[\u0000-\u0008\u000a-\u001f\u007f]/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const FILENAME_FORBIDDEN = /[\u0000-\u001f\u007f/\\]/;
const MEDIA_TYPE = /^[\w.+-]+\/[\w.+-]+$/;
/** MIME wraps base64 at 76 columns; a client may send it wrapped. */
const BASE64_WHITESPACE = /[\t\n\r ]/g;
const BASE64_CHARS = /^[A-Za-z0-9+/=]*$/;
/** RFC 3339 5.6 date-time: a full date, a full time and a time zone. */
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;
/** A variable name that reads as a path segment without quoting. */
const PLAIN_KEY = /^[A-Za-z_$][\w$]{0,63}$/;

const RESERVED_MESSAGES: Record<ReservedHeaderGroup, string> = {
  composed: 'is set by Mailplane; use the matching field instead',
  identity: 'is set by Mailplane; use the matching field instead',
  trace: 'is a trace field that only the servers a message passes through may add',
  authentication: 'is a signature or verdict that only the servers signing or verifying a message may add',
};

// String.prototype.isWellFormed is ES2024 (Node 20); tsconfig's lib stops at ES2023.
const isWellFormed = (s: string): boolean => (s as string & { isWellFormed(): boolean }).isWellFormed();

/** A member that is not there: Resend's clients send null for an option not set. */
const absent = (value: unknown): value is undefined | null => value === undefined || value === null;

/**
 * Why Postgres would refuse this string, or undefined: neither text nor jsonb can hold U+0000,
 * and jsonb refuses the `\ud800` escape that JSON.stringify writes for a lone surrogate.
 */
function unstorable(s: string): string | undefined {
  if (s.includes('\u0000')) return 'must not contain a NUL character (\\u0000)';
  if (!isWellFormed(s)) return 'must not contain a lone UTF-16 surrogate (\\ud800 to \\udfff unpaired)';
  return undefined;
}

/**
 * Checks one send request; throws a 422 Problem listing every field at fault, or 413 when the
 * attachments are over the size limit. `now` is when a past scheduled_at is sent instead.
 *
 *   const send = checkSendRequest(req.body, { maxRecipients: 50, maxMessageBytes: 10 << 20 });
 */
export function checkSendRequest(
  body: unknown,
  limits: Limits,
  prefix = '',
  now: number = Date.now(),
): SendRequest {
  const errors: FieldError[] = [];
  let faults = 0;
  const fail: Fail = (field, message) => {
    if (++faults <= MAX_REPORTED_FAULTS) errors.push({ field: prefix + field, message });
  };
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new Problem(422, 'validation-error', 'The request body must be a JSON object.', [
      // In a batch the prefix is `[3].`; the email itself is `[3]`.
      { field: prefix ? prefix.slice(0, -1) : '(body)', message: 'must be an object' },
    ]);
  }
  const b = body as Record<string, unknown>;

  const from = checkFrom(b.from, fail);
  const listed = (field: string, required: boolean) =>
    checkMailboxes(b[field], field, required, limits, fail);
  const to = listed('to', true);
  const cc = listed('cc', false);
  const bcc = listed('bcc', false);
  const replyTo = listed('reply_to', false);
  const recipients = [...new Set([...to, ...cc, ...bcc].map((m) => m.address))];
  if (recipients.length > limits.maxRecipients) {
    fail(
      'to',
      `${recipients.length} recipients (to + cc + bcc) is over the limit of ${limits.maxRecipients}`,
    );
  }

  const template = checkTemplate(b.template, fail);
  // A template at fault was reported as such; the subject and body it stands for are not missing.
  const { subject, html, text } = checkBodies(b, !absent(b.template), fail);
  const headers = checkHeaders(b.headers, fail);
  const { attachments, attachmentBytes } = checkAttachments(b.attachments, fail);
  const tags = checkTags(b.tags, fail);
  const scheduledAt = checkScheduledAt(b.scheduled_at, now, fail);

  if (faults > 0) {
    throw new Problem(422, 'validation-error', describeFaults(errors, faults), errors);
  }
  const size = Buffer.byteLength(html ?? '') + Buffer.byteLength(text ?? '') + attachmentBytes;
  if (size > limits.maxMessageBytes) {
    throw new Problem(
      413,
      'message-too-large',
      `The message is ${size} bytes; the limit for body and attachments is ${limits.maxMessageBytes}.`,
    );
  }
  const format = (list: Mailbox[]) => list.map(formatMailbox);
  return {
    from: from!,
    recipients,
    scheduledAt,
    ...(template ? { template } : {}),
    content: {
      to: format(to),
      cc: format(cc),
      bcc: format(bcc),
      reply_to: format(replyTo),
      subject,
      ...(html !== undefined ? { html } : {}),
      ...(text !== undefined ? { text } : {}),
      headers,
      attachments,
      tags,
    },
  };
}

export function fromDomain(send: SendRequest): string {
  return domainOf(send.from.address);
}

/** Why an address string cannot be parsed safely, or undefined. */
function addressStringFault(value: string): string | undefined {
  if (ADDRESS_WHITESPACE_RUN.test(value))
    return `must not contain more than ${MAX_WHITESPACE_RUN} spaces in a row`;
  return unstorable(value);
}

function checkFrom(value: unknown, fail: Fail): Mailbox | undefined {
  const fault =
    typeof value !== 'string' || value.trim() === ''
      ? 'is required: "Name <you@your-domain>"'
      : value.length > MAX_MAILBOX_CHARS
        ? `must be at most ${MAX_MAILBOX_CHARS} characters`
        : addressStringFault(value);
  if (fault) {
    fail('from', fault);
    return undefined;
  }
  let list: Mailbox[];
  try {
    list = parseMailboxList(value as string);
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    fail('from', err.message);
    return undefined;
  }
  if (list.length !== 1) fail('from', 'must be a single address');
  return list.length === 1 ? list[0] : undefined;
}

/** to, cc, bcc or reply_to: an address, a comma-joined list of them, or a list of either. */
function checkMailboxes(
  value: unknown,
  field: string,
  required: boolean,
  limits: Limits,
  fail: Fail,
): Mailbox[] {
  if (absent(value)) {
    if (required) fail(field, 'is required: an address or a list of addresses');
    return [];
  }
  const items = Array.isArray(value) ? (value as unknown[]) : [value];
  if (required && items.length === 0) fail(field, 'must name at least one address');
  // Each entry names at least one address, so a longer list is over the limit however it parses.
  if (items.length > limits.maxRecipients) {
    fail(field, `${items.length} entries is over the limit of ${limits.maxRecipients} recipients`);
    return [];
  }
  const maxChars = limits.maxRecipients * MAX_MAILBOX_CHARS;
  const chars = items.reduce<number>((n, item) => n + (typeof item === 'string' ? item.length : 0), 0);
  if (chars > maxChars) {
    fail(field, `must be at most ${maxChars} characters in all (${MAX_MAILBOX_CHARS} per recipient allowed)`);
    return [];
  }
  const out: Mailbox[] = [];
  items.forEach((item, i) => {
    const where = Array.isArray(value) ? `${field}[${i}]` : field;
    if (typeof item !== 'string') return fail(where, 'must be a string');
    const fault = addressStringFault(item);
    if (fault) return fail(where, fault);
    try {
      // "a@x.io, b@y.io" is two recipients, and counts as two against the limit.
      out.push(...parseMailboxList(item));
    } catch (err) {
      if (!(err instanceof AddressError)) throw err;
      fail(where, err.message);
    }
  });
  return out;
}

function checkTemplate(value: unknown, fail: Fail): SendRequest['template'] {
  if (absent(value)) return undefined;
  const t = value as Record<string, unknown> | null;
  if (typeof t !== 'object' || t === null || Array.isArray(t) || typeof t.id !== 'string' || t.id === '') {
    fail('template.id', 'is required: the name or id of a Template');
    return undefined;
  }
  const fault =
    t.id.length > MAX_TEMPLATE_REF ? `must be at most ${MAX_TEMPLATE_REF} characters` : unstorable(t.id);
  if (fault) {
    fail('template.id', fault);
    return undefined;
  }
  if (absent(t.variables)) return { ref: t.id, variables: {} };
  if (typeof t.variables !== 'object' || Array.isArray(t.variables)) {
    fail('template.variables', 'must be an object');
    return undefined;
  }
  const variables = t.variables as Record<string, unknown>;
  return checkVariables(variables, fail) ? { ref: t.id, variables } : undefined;
}

/**
 * Walks template.variables once: every name and string storable, every number one that JSON keeps
 * exactly, the nesting and the size bounded. Returns whether they passed.
 */
function checkVariables(variables: Record<string, unknown>, fail: Fail): boolean {
  const root = 'template.variables';
  let budget = MAX_VARIABLES_BYTES;
  let faults = 0;
  // The keys and indexes down to the value in hand; spelt out as a path only for a fault.
  const trail: (string | number)[] = [];
  const fault = (message: string) => {
    if (++faults > MAX_VARIABLES_FAULTS) return;
    fail(root + trail.map((k) => (typeof k === 'number' ? `[${k}]` : pathSegment(k))).join(''), message);
  };
  // Each step charges about its JSON length; false stops the walk, over the size or depth bound.
  const walk = (value: unknown, depth: number): boolean => {
    if (typeof value === 'string') {
      budget -= value.length + 2;
      if (budget < 0) return false;
      const why = unstorable(value);
      if (why) fault(why);
    } else if (typeof value === 'number') {
      budget -= 8;
      // JSON.parse reads 1e400 as Infinity, which JSON.stringify would store as null.
      if (!Number.isFinite(value)) fault('must be a finite number');
      // Beyond 2^53 − 1 a number is an integer rounded to a multiple of 2 or more: an id sent as a
      // 64-bit number has already lost its last digits here. A string keeps every one.
      else if (Math.abs(value) > Number.MAX_SAFE_INTEGER)
        fault('is beyond ±(2^53 − 1), where JSON numbers are rounded; send it as a string');
    } else if (typeof value === 'object' && value !== null) {
      if (depth >= MAX_VARIABLES_DEPTH) {
        fail(root, `must not nest more than ${MAX_VARIABLES_DEPTH} levels deep`);
        return false;
      }
      budget -= 2;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          budget -= 1;
          if (budget < 0 || !step(i, value[i], depth)) return false;
        }
      } else {
        for (const key of Object.keys(value)) {
          budget -= key.length + 4;
          if (budget < 0 || !step(key, (value as Record<string, unknown>)[key], depth)) return false;
        }
      }
    } else budget -= 5; // true, false, null
    return budget >= 0;
  };
  // One member or element: its name checked, then its value, with the trail kept for a fault.
  const step = (k: string | number, item: unknown, depth: number): boolean => {
    trail.push(k);
    const why = typeof k === 'string' ? unstorable(k) : undefined;
    if (why) fault(`the name ${why}`);
    const ok = walk(item, depth + 1);
    trail.pop();
    return ok;
  };
  if (walk(variables, 0)) return faults === 0;
  if (budget < 0) fail(root, `must be at most ${MAX_VARIABLES_BYTES} bytes as JSON`);
  return false;
}

/** `.name`, or `["a b"]` for a name that does not read as one, cut short when long. */
function pathSegment(key: string): string {
  if (PLAIN_KEY.test(key)) return `.${key}`;
  return `[${JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key)}]`;
}

function checkBodies(
  b: Record<string, unknown>,
  hasTemplate: boolean,
  fail: Fail,
): { subject: string; html?: string; text?: string } {
  const optionalText = (field: string): string | undefined => {
    const value = b[field];
    if (absent(value)) return undefined;
    const fault = typeof value !== 'string' ? 'must be a string' : unstorable(value);
    if (fault) fail(field, fault);
    return fault ? undefined : (value as string);
  };
  const subject = optionalText('subject') ?? '';
  // A template brings its own subject; otherwise one is required (a non-string was reported above).
  if (!hasTemplate && absent(b.subject)) fail('subject', 'is required');
  else if (!hasTemplate && typeof b.subject === 'string' && b.subject.trim() === '')
    fail('subject', 'must not be empty');
  if (LINE_BREAK.test(subject)) fail('subject', 'must not contain line breaks');
  else if (CONTROL_IN_LINE.test(subject)) fail('subject', 'must not contain control characters');
  if (subject.length > MAX_SUBJECT) fail('subject', `must be at most ${MAX_SUBJECT} characters`);
  const html = optionalText('html');
  const text = optionalText('text');
  if (!hasTemplate && absent(b.html) && absent(b.text)) fail('html', 'html, text or template is required');
  return { subject, html, text };
}

function checkHeaders(value: unknown, fail: Fail): Record<string, string> {
  // No prototype: a header named __proto__ is a header like any other, not a prototype to set.
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  if (absent(value)) return headers;
  if (typeof value !== 'object' || Array.isArray(value)) {
    fail('headers', 'must be an object of header names to values');
    return headers;
  }
  const names = Object.keys(value);
  if (names.length > MAX_HEADERS) {
    fail('headers', `has ${names.length} fields; the limit is ${MAX_HEADERS}`);
    return headers;
  }
  for (const name of names) {
    const v = (value as Record<string, unknown>)[name];
    const where = `headers.${name.length > 80 ? `${name.slice(0, 80)}…` : name}`;
    const fault = headerFault(name, v);
    if (fault) fail(where, fault);
    else headers[name] = v as string;
  }
  return headers;
}

/** Why a custom header cannot be sent as given, or undefined. */
function headerFault(name: string, value: unknown): string | undefined {
  if (!isHeaderName(name)) return 'is not a valid header name';
  const reserved = reservedHeader(name);
  if (reserved) return RESERVED_MESSAGES[reserved];
  if (typeof value !== 'string') return 'must be a string';
  if (LINE_BREAK.test(value)) return 'must not contain line breaks';
  // NUL is a control character too, but Postgres' refusal of it is the reason worth naming.
  const unstorableWhy = unstorable(value);
  if (unstorableWhy) return unstorableWhy;
  if (CONTROL_IN_LINE.test(value)) return 'must not contain control characters';
  if (value.length > MAX_HEADER_VALUE) return `must be at most ${MAX_HEADER_VALUE} characters`;
  return undefined;
}

function checkAttachments(
  value: unknown,
  fail: Fail,
): { attachments: Attachment[]; attachmentBytes: number } {
  const attachments: Attachment[] = [];
  let attachmentBytes = 0;
  if (absent(value)) return { attachments, attachmentBytes };
  if (!Array.isArray(value)) {
    fail('attachments', 'must be a list');
    return { attachments, attachmentBytes };
  }
  if (value.length > MAX_ATTACHMENTS) {
    fail('attachments', `has ${value.length} files; the limit is ${MAX_ATTACHMENTS}`);
    return { attachments, attachmentBytes };
  }
  (value as unknown[]).forEach((item, i) => {
    const where = `attachments[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item))
      return fail(where, 'must be an object');
    const a = item as Record<string, unknown>;
    if (a.path !== undefined)
      return fail(`${where}.path`, 'is not supported: send the file as base64 `content`');
    let ok = true;
    const filename = a.filename;
    if (
      typeof filename !== 'string' ||
      filename === '' ||
      filename.length > MAX_FILENAME ||
      FILENAME_FORBIDDEN.test(filename)
    ) {
      ok = false;
      fail(
        `${where}.filename`,
        'is required: a file name without line breaks, control characters or slashes',
      );
    } else if (unstorable(filename)) {
      ok = false;
      fail(`${where}.filename`, unstorable(filename)!);
    }
    const contentType = a.content_type;
    if (
      contentType !== undefined &&
      (typeof contentType !== 'string' ||
        contentType.length > MAX_MEDIA_TYPE ||
        !MEDIA_TYPE.test(contentType))
    ) {
      ok = false;
      fail(`${where}.content_type`, 'must be a media type such as application/pdf');
    }
    const bytes = base64Bytes(a.content);
    if (bytes === undefined) {
      return fail(`${where}.content`, 'is required: the file as a base64 string');
    }
    if (bytes < 0) {
      return fail(
        `${where}.content`,
        'is not base64: A-Z, a-z, 0-9, + and /, padded with = to a multiple of 4',
      );
    }
    attachmentBytes += bytes;
    if (!ok) return;
    attachments.push({
      filename: filename as string,
      content: a.content as string,
      ...(typeof contentType === 'string' ? { content_type: contentType } : {}),
    });
  });
  return { attachments, attachmentBytes };
}

/** The decoded size of a base64 string; undefined when there is none, -1 when it is not base64. */
function base64Bytes(content: unknown): number | undefined {
  if (typeof content !== 'string' || content === '') return undefined;
  // Unwrapped, the common case, is one scan; wrapped is unwrapped first.
  const unwrapped = BASE64_CHARS.test(content);
  const compact = unwrapped ? content : content.replace(BASE64_WHITESPACE, '');
  if (compact === '') return undefined;
  if (!unwrapped && !BASE64_CHARS.test(compact)) return -1;
  // Padding: one or two `=`, only at the end, to a multiple of four.
  const pad = compact.indexOf('=');
  const padding = pad === -1 ? 0 : compact.length - pad;
  if (compact.length % 4 !== 0 || padding > 2 || (padding === 2 && !compact.endsWith('=='))) return -1;
  return (compact.length / 4) * 3 - padding;
}

function checkTags(value: unknown, fail: Fail): EmailContent['tags'] {
  const tags: EmailContent['tags'] = [];
  if (absent(value)) return tags;
  if (!Array.isArray(value)) {
    fail('tags', 'must be a list of {name, value}');
    return tags;
  }
  if (value.length > MAX_TAGS) {
    fail('tags', `has ${value.length} tags; the limit is ${MAX_TAGS}`);
    return tags;
  }
  (value as unknown[]).forEach((item, i) => {
    const tag = (typeof item === 'object' && item !== null ? item : {}) as {
      name?: unknown;
      value?: unknown;
    };
    if (typeof tag.name !== 'string' || !TAG.test(tag.name))
      fail(`tags[${i}].name`, 'must be letters, digits, _ or -');
    else if (typeof tag.value !== 'string' || !TAG.test(tag.value))
      fail(`tags[${i}].value`, 'must be letters, digits, _ or -');
    else tags.push({ name: tag.name, value: tag.value });
  });
  return tags;
}

/**
 * scheduled_at: an RFC 3339 date-time with a time zone, at most MAX_SCHEDULE_AHEAD_MS ahead. A time
 * already past means now (null).
 */
function checkScheduledAt(value: unknown, now: number, fail: Fail): Date | null {
  if (absent(value)) return null;
  const at = typeof value === 'string' ? parseDateTime(value) : undefined;
  if (typeof at !== 'number') {
    fail(
      'scheduled_at',
      at ?? 'must be an RFC 3339 date-time with a time zone, such as 2030-01-01T09:00:00Z',
    );
    return null;
  }
  if (at > now + MAX_SCHEDULE_AHEAD_MS) {
    const limit = new Date(now + MAX_SCHEDULE_AHEAD_MS).toISOString();
    fail(
      'scheduled_at',
      `must be at most ${MAX_SCHEDULE_AHEAD_MS / 86_400_000} days ahead (before ${limit})`,
    );
    return null;
  }
  return at <= now ? null : new Date(at);
}

/**
 * Milliseconds since the epoch of an RFC 3339 date-time that names a real instant (no 2030-02-30,
 * no 25:00), fractions of a second kept to the millisecond; a message saying what is out of range;
 * or undefined when it is not RFC 3339 at all.
 *
 *   parseDateTime('2030-01-01T09:00:00.5+02:00')  // 1893481200500
 */
function parseDateTime(value: string): number | string | undefined {
  const m = RFC3339.exec(value);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (month < 1 || month > 12) return `has month ${m[2]}, which is not 01 to 12`;
  const days = daysInMonth(year, month);
  if (day < 1 || day > days) return `has day ${m[3]}, but ${m[1]}-${m[2]} has ${days} days`;
  // RFC 3339 allows :60 only for a leap second, which neither a Date nor Postgres can hold.
  if (hour > 23 || minute > 59 || second > 59) return 'has a time of day out of range (00:00:00 to 23:59:59)';
  const offsetHours = m[8] ? Number(m[9]) : 0;
  const offsetMinutes = m[8] ? Number(m[10]) : 0;
  if (offsetHours > 23 || offsetMinutes > 59) return 'has a time zone offset out of range (-23:59 to +23:59)';
  const millis = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  // setUTCFullYear, unlike Date.UTC, does not read the years 0 to 99 as 1900 to 1999.
  const local = new Date(0);
  local.setUTCFullYear(year, month - 1, day);
  local.setUTCHours(hour, minute, second, millis);
  const offset = (m[8] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000;
  return local.getTime() - offset;
}

/** Days in a month of the proleptic Gregorian calendar, leap years included. */
function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * The detail of a validation problem: the first fault in words, as Resend's SDK shows `message`
 * to its caller, and how many more there are (all listed in `errors`, up to the bound).
 *
 *   describeFaults([{ field: 'to[0]', message: '"nope" is not an email address' }], 1)
 *   // 'to[0]: "nope" is not an email address'
 */
export function describeFaults(errors: FieldError[], faults = errors.length): string {
  const first = errors[0];
  if (!first) return 'The request is invalid.';
  const more = faults - 1;
  return `${first.field}: ${first.message}${more > 0 ? ` (and ${more} more ${more === 1 ? 'fault' : 'faults'})` : ''}`;
}
