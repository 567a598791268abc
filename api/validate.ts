// Turns a send request in Resend's shape into what the accept path stores, reporting every field
// at fault at once. Each member is parsed by its schema in api/schemas-send.ts, the one definition
// the OpenAPI document is generated from, in the schema's order; what joins members or depends on
// the request (the recipient limit across to, cc and bcc; a subject unless a template gives one;
// the scheduling window from now; the size of the message) is checked here, between them, where a
// 422 lists it. Everything that ends up in a header has been checked for CR/LF, every string for
// what Postgres refuses, every list and nesting bounded, so a body is either accepted or refused
// with the field at fault named.

import { z } from 'zod';
import { domainOf, formatMailbox, type Mailbox } from '../lib/address.js';
import type { Attachment, EmailContent } from '../lib/db/schema.js';
import { clipped, MAX_FIELD, MAX_FIELD_MESSAGE, Problem, type FieldError } from '../lib/problem.js';
import {
  absent,
  addressEntry,
  headerName,
  headerValue,
  scheduleWindowFault,
  sendEmailSchema,
  type SendEmailFields,
  type SendEmailSchema,
} from './schemas-send.js';

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

/** An attachment as stored; `content_id` makes it inline (sender/compose.ts). */
export type StoredAttachment = Attachment & { content_id?: string };

/** Faults listed in one 422: enough to fix a request, few enough to keep the answer small. */
const MAX_REPORTED_FAULTS = 100;
/** A header name in a field path, cut short: it may be as long as the body allows. */
const MAX_KEY_IN_PATH = 80;

type Field = keyof SendEmailSchema['shape'];
type Fail = (field: string, message: string) => void;

/** What the rules between members read: the request, the members parsed so far, and the limits. */
interface Checked {
  body: Record<string, unknown>;
  fields: Partial<SendEmailFields>;
  /** The faults of each member that had any. */
  issues: Partial<Record<Field, Issues>>;
  limits: Limits;
  now: number;
  fail: Fail;
  /** Set by the recipient rule. */
  recipients: string[];
  /** Set by the schedule rule. */
  scheduledAt: Date | null;
}

type Rule = (c: Checked) => void;
type Issues = readonly z.core.$ZodIssue[];
const NO_ISSUES: Issues = Object.freeze([]);

/**
 * The rules that need more than one member, or the request's moment, keyed by the member they
 * follow or precede: each runs once the members it reads are parsed, where a 422 lists its fault.
 */
const RULES: { [K in Field]?: { before?: Rule; after?: Rule } } = {
  reply_to: { after: recipientLimit },
  subject: { before: subjectRequired },
  text: { after: bodyRequired },
  scheduled_at: { after: scheduleWindow },
};

/**
 * What a member's faults are beyond its schema's issues: a tag whose name is wrong is not reported
 * again for its value, nor a template without an id for its variables; and a header named
 * `__proto__`, which zod's records skip, is checked like any other.
 */
const MEMBER_FAULTS: { [K in Field]?: (value: unknown, issues: Issues) => Issues } = {
  template: (_value, issues) => firstMemberOnly(issues, 0),
  tags: (_value, issues) => firstMemberOnly(issues, 1),
  headers: withProtoHeader,
};

/**
 * Checks one send request; throws a 422 Problem listing every field at fault, or 413 when the
 * body and attachments are over the size limit. `now` is when a past scheduled_at is sent instead.
 *
 *   const send = checkSendRequest(req.body, { maxRecipients: 50, maxMessageBytes: 10 << 20 });
 */
export function checkSendRequest(
  body: unknown,
  limits: Limits,
  prefix = '',
  now: number = Date.now(),
): SendRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new Problem(422, 'validation-error', 'The request body must be a JSON object.', [
      // In a batch the prefix is `[3].`; the email itself is `[3]`.
      { field: prefix ? prefix.slice(0, -1) : '(body)', message: 'must be an object' },
    ]);
  }
  const errors: FieldError[] = [];
  let faults = 0;
  const fail: Fail = (field, message) => {
    if (++faults <= MAX_REPORTED_FAULTS) errors.push({ field: prefix + field, message });
  };
  const checked = parseMembers(body as Record<string, unknown>, limits, now, fail);
  if (faults > 0) {
    throw new Problem(422, 'validation-error', describeFaults(errors, faults), errors);
  }
  return accepted(checked, limits);
}

export function fromDomain(send: SendRequest): string {
  return domainOf(send.from.address);
}

/** One member's turn in a parse: its compiled schema and what runs around it. */
interface Step {
  field: Field;
  member: z.ZodType;
  before?: Rule;
  after?: Rule;
  faults?: (value: unknown, issues: Issues) => Issues;
}

const stepsBySchema = new WeakMap<SendEmailSchema, Step[]>();

/**
 * The members in the schema's order, each schema compiled: zod's generated fast path takes a valid
 * member in a fraction of the runtime parser's time, and hands anything else to that parser, whose
 * issues are the 422's.
 */
function stepsOf(schema: SendEmailSchema): Step[] {
  let steps = stepsBySchema.get(schema);
  if (!steps) {
    steps = (Object.keys(schema.shape) as Field[]).map((field) => ({
      field,
      member: z.compile(schema.shape[field] as z.ZodType),
      ...RULES[field],
      faults: MEMBER_FAULTS[field],
    }));
    stepsBySchema.set(schema, steps);
  }
  return steps;
}

/** Parses every member with its schema, in the schema's order, running the rules between them. */
function parseMembers(body: Record<string, unknown>, limits: Limits, now: number, fail: Fail): Checked {
  const checked: Checked = {
    body,
    fields: {},
    issues: {},
    limits,
    now,
    fail,
    recipients: [],
    scheduledAt: null,
  };
  for (const { field, member, before, after, faults } of stepsOf(sendEmailSchema(limits.maxRecipients))) {
    before?.(checked);
    const value = body[field];
    const result = member.safeParse(value);
    const zodIssues = result.success ? NO_ISSUES : result.error.issues;
    const issues = faults ? faults(value, zodIssues) : zodIssues;
    if (issues.length === 0) (checked.fields as Record<string, unknown>)[field] = result.data;
    else {
      checked.issues[field] = issues;
      reportIssues(field, issues, value, fail);
    }
    after?.(checked);
  }
  return checked;
}

/** The issues of the first member at fault of each object at `depth` in the path. */
function firstMemberOnly(issues: Issues, depth: number): Issues {
  if (issues.length === 0) return issues;
  const first = new Map<string, PropertyKey>();
  return issues.filter((issue) => {
    if (issue.path.length <= depth) return true;
    const object = JSON.stringify(issue.path.slice(0, depth));
    const member = issue.path[depth]!;
    if (!first.has(object)) first.set(object, member);
    return first.get(object) === member;
  });
}

/**
 * Names each of zod's issues by its field path: `to[2]`, `headers.X-Campaign`,
 * `template.variables.user.names[1]`.
 */
function reportIssues(at: string, issues: Issues, value: unknown, fail: Fail): void {
  for (const issue of issues) {
    const field = at + pathOf(issue.path);
    if (issue.code === 'invalid_union') {
      // An address field takes a string or a list of them: the faults are those of the form sent.
      const sent = valueAt(value, issue.path);
      reportIssues(field, issue.errors[Array.isArray(sent) ? 1 : 0] ?? [], sent, fail);
    } else if (issue.code === 'invalid_key') {
      fail(field, issue.issues[0]?.message ?? issue.message);
    } else {
      // template.variables names the path below it itself (schemas-checks.ts, variablesFaults).
      const below: unknown = issue.code === 'custom' ? issue.params?.at : undefined;
      fail(typeof below === 'string' ? field + below : field, issue.message);
    }
  }
}

/** `[2].name`, `.X-Campaign`: a path below a field, a long key cut short. */
function pathOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else {
      const name = String(key);
      out += `.${name.length > MAX_KEY_IN_PATH ? `${name.slice(0, MAX_KEY_IN_PATH)}…` : name}`;
    }
  }
  return out;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const key of path) v = (v as Record<PropertyKey, unknown> | null | undefined)?.[key];
  return v;
}

/**
 * to + cc + bcc, de-duplicated, within the tenant's limit. A field with faults still counts the
 * entries that parsed, so that the limit is named alongside them.
 */
function recipientLimit(c: Checked): void {
  const addresses = new Set<string>();
  for (const field of ['to', 'cc', 'bcc'] as const) {
    const mailboxes = c.issues[field]
      ? entriesThatParse(c.body[field], c.limits.maxRecipients)
      : (c.fields[field] ?? []);
    for (const m of mailboxes) addresses.add(m.address);
  }
  c.recipients = [...addresses];
  if (c.recipients.length > c.limits.maxRecipients) {
    c.fail(
      'to',
      `${c.recipients.length} recipients (to + cc + bcc) is over the limit of ${c.limits.maxRecipients}`,
    );
  }
}

/** The mailboxes of the entries of a faulty address list that parse on their own. */
function entriesThatParse(value: unknown, maxRecipients: number): Mailbox[] {
  // A list over its count or length was refused whole, without a look at its entries.
  if (!Array.isArray(value) || value.length > maxRecipients) return [];
  return value.flatMap((entry) => {
    const parsed = addressEntry.safeParse(entry);
    return parsed.success ? parsed.data : [];
  });
}

/** A template brings its own subject; otherwise one is required (a non-string is the schema's). */
function subjectRequired(c: Checked): void {
  if (!absent(c.body.template)) return;
  const value = c.body.subject;
  if (absent(value)) c.fail('subject', 'is required');
  else if (typeof value === 'string' && value.trim() === '') c.fail('subject', 'must not be empty');
}

function bodyRequired(c: Checked): void {
  if (absent(c.body.template) && absent(c.body.html) && absent(c.body.text)) {
    c.fail('html', 'html, text or template is required');
  }
}

/**
 * headers' faults with the one of a header named `__proto__`, which zod's records skip (a guard
 * against prototype pollution; here it is a header name like any other), checked with the same
 * name and value schemas and listed in the request's order.
 */
function withProtoHeader(value: unknown, issues: Issues): Issues {
  if (typeof value !== 'object' || value === null || !Object.hasOwn(value, '__proto__')) return issues;
  // Refused whole (not an object, too many names): no member was looked at.
  if (issues.some((issue) => issue.path.length === 0)) return issues;
  const name = headerName.safeParse('__proto__');
  const fault = (
    name.error ?? headerValue.safeParse(Object.getOwnPropertyDescriptor(value, '__proto__')?.value).error
  )?.issues[0];
  if (!fault) return issues;
  const keys = Object.keys(value);
  const at = keys.indexOf('__proto__');
  const next = issues.findIndex((issue) => keys.indexOf(String(issue.path[0])) > at);
  const protoIssue = { ...fault, path: ['__proto__', ...fault.path] };
  return next === -1
    ? [...issues, protoIssue]
    : [...issues.slice(0, next), protoIssue, ...issues.slice(next)];
}

/**
 * scheduled_at: at most MAX_SCHEDULE_AHEAD_DAYS ahead of now; a time already past means now (null).
 */
function scheduleWindow(c: Checked): void {
  const at = c.fields.scheduled_at;
  if (typeof at !== 'number') return;
  const fault = scheduleWindowFault(at, c.now);
  if (fault) c.fail('scheduled_at', fault);
  else if (at > c.now) c.scheduledAt = new Date(at);
}

/** The accepted send, once every member passed; 413 when the message is over the size limit. */
function accepted(c: Checked, limits: Limits): SendRequest {
  const { fields, body } = c;
  const attachments = fields.attachments ?? [];
  const html = fields.html ?? undefined;
  const text = fields.text ?? undefined;
  const size =
    Buffer.byteLength(html ?? '') +
    Buffer.byteLength(text ?? '') +
    attachments.reduce((n, a) => n + a.content.bytes, 0);
  if (size > limits.maxMessageBytes) {
    throw new Problem(
      413,
      'message-too-large',
      `The message is ${size} bytes; the limit for body and attachments is ${limits.maxMessageBytes}.`,
    );
  }
  const format = (list: Mailbox[] | null | undefined) => (list ?? []).map(formatMailbox);
  // The request's own variables, all of them walked: zod's copy leaves out one named __proto__.
  const variables = (body.template as { variables?: Record<string, unknown> | null } | undefined)?.variables;
  const template = fields.template ? { ref: fields.template.id, variables: variables ?? {} } : undefined;
  return {
    from: fields.from!,
    recipients: c.recipients,
    scheduledAt: c.scheduledAt,
    ...(template ? { template } : {}),
    content: {
      to: format(fields.to),
      cc: format(fields.cc),
      bcc: format(fields.bcc),
      reply_to: format(fields.reply_to),
      subject: fields.subject ?? '',
      ...(html !== undefined ? { html } : {}),
      ...(text !== undefined ? { text } : {}),
      headers: ownHeaders(body.headers),
      attachments: attachments.map((a): StoredAttachment => ({
        filename: a.filename,
        content: a.content.content,
        ...(a.content_type !== undefined ? { content_type: a.content_type } : {}),
        ...(absent(a.content_id) ? {} : { content_id: a.content_id }),
      })),
      tags: (fields.tags ?? []).map(({ name, value }) => ({ name, value })),
      // Absent: the tenant's default, read when each message is sent (sender/unsubscribe-offer.ts).
      ...(typeof fields.unsubscribe === 'boolean' ? { unsubscribe: fields.unsubscribe } : {}),
      ...(fields.tracking ? { tracking: trackingOverride(fields.tracking) } : {}),
    },
  };
}

/** The members of `tracking` the request gave: one left out keeps the domain's setting. */
function trackingOverride(t: { opens?: boolean | null; clicks?: boolean | null }) {
  return {
    ...(typeof t.opens === 'boolean' ? { opens: t.opens } : {}),
    ...(typeof t.clicks === 'boolean' ? { clicks: t.clicks } : {}),
  };
}

/**
 * The request's headers, every one checked, in a map without a prototype: a header named
 * __proto__ is a header like any other, not a prototype to set.
 */
function ownHeaders(value: unknown): Record<string, string> {
  const headers = Object.create(null) as Record<string, string>;
  if (absent(value)) return headers;
  for (const name of Object.keys(value as object)) headers[name] = (value as Record<string, string>)[name]!;
  return headers;
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
  // Bounded as a problem's members are: a field's name may be a client's 100 KB key.
  const fault = `${clipped(first.field, MAX_FIELD)}: ${clipped(first.message, MAX_FIELD_MESSAGE)}`;
  return `${fault}${more > 0 ? ` (and ${more} more ${more === 1 ? 'fault' : 'faults'})` : ''}`;
}
