// SendGrid's v3 mail/send body, translated into Mailplane's send requests: one per
// personalization, each then checked by api/validate.ts like any POST /v1/emails body. Only the
// shape is checked here (what is an object, a list, a string; a disposition; a send_at); the
// addresses, headers, sizes and limits are the send check's, whose faults come back named by the
// SendGrid field they came from (see FieldNames).
//
// What maps to what: personalizations[].to/cc/bcc/subject/headers/send_at/from override the
// message's; content text/plain and text/html are text and html; substitutions replace their keys
// in the subject and bodies of a send without a template; template_id names a Mailplane Template,
// with SendGrid's `d-` prefix (which @sendgrid/mail needs to send dynamic_template_data at all)
// left off, and dynamic_template_data are its variables; attachments with disposition inline are
// inline parts under their content_id; categories are tags named `category`, custom_args tags
// under their own names, and batch_id a tag `batch_id`, so that events and statistics carry them
// as SendGrid's carry categories and custom arguments; tracking_settings.open_tracking.enable and
// click_tracking.enable the email's tracking.

import type { FieldError } from '../lib/problem.js';
import { Problem } from '../lib/problem.js';
import { MAX_BATCH } from './schemas-send.js';
import { describeFaults } from './validate.js';
import { FieldNames, isObject, ownMap } from './vendor-fields.js';

/** One personalization as a Mailplane send, and where each of its members came from. */
export interface SendGridEmail {
  body: Record<string, unknown>;
  names: FieldNames;
}

export interface SendGridSend {
  emails: SendGridEmail[];
  /** mail_settings.sandbox_mode.enable: checked in full, answered, and nothing queued. */
  sandbox: boolean;
}

/** SendGrid's own bound on categories per message. */
const MAX_CATEGORIES = 10;
/** SendGrid's bound on the substitutions of one personalization, keys and values together. */
const MAX_SUBSTITUTION_BYTES = 10_000;
/**
 * Substitution keys of one personalization. SendGrid bounds only their bytes; a bound on their
 * count bounds the work of replacing them in a body of up to the size limit.
 */
const MAX_SUBSTITUTIONS = 100;
/** Faults of the shape listed in one 400, as api/validate.ts bounds its own. */
const MAX_REPORTED_FAULTS = 100;
/** A send_at beyond this (year 2286) is no unix time in seconds but a mistake, e.g. milliseconds. */
const MAX_UNIX_SECONDS = 9_999_999_999;
/** SendGrid's dynamic template ids start so; Mailplane's templates are named without it. */
const DYNAMIC_TEMPLATE_PREFIX = 'd-';
/** What cannot be part of one bare address, and so would make `email` several, or a name. */
const NOT_ONE_ADDRESS = /[\s,;<>"]/;

/** SendGrid names a field by its path with indexes as segments: `personalizations.0.to.1`. */
const joinSendGrid = (field: string, rest: string) => field + rest.replace(/\[(\d+)\]/g, '.$1');

type Fault = (field: string, message: string) => void;

/**
 * Translates a mail/send body; throws a 422 Problem listing every fault of its shape, or a 413
 * when the emails it becomes would hold more than `maxTotalBytes` of bodies and attachments.
 *
 *   const { emails } = translateSendGrid(req.body, { maxTotalBytes: 14 << 20 });
 */
export function translateSendGrid(body: unknown, bounds: { maxTotalBytes: number }): SendGridSend {
  const errors: FieldError[] = [];
  let faults = 0;
  const fault: Fault = (field, message) => {
    if (++faults <= MAX_REPORTED_FAULTS) errors.push({ field, message });
  };
  const refuse = () => new Problem(422, 'validation-error', describeFaults(errors, faults), errors);
  if (!isObject(body)) {
    fault('(body)', 'must be a JSON object');
    throw refuse();
  }
  const personalizations = body.personalizations;
  if (!Array.isArray(personalizations) || personalizations.length === 0) {
    fault('personalizations', 'is required: a list of 1 or more personalizations, each with a `to`');
    throw refuse();
  }
  if (personalizations.length > MAX_BATCH) {
    fault('personalizations', `has ${personalizations.length}; the limit is ${MAX_BATCH} (one email each)`);
    throw refuse();
  }
  const shared = messageMembers(body, fault);
  const budget = { left: bounds.maxTotalBytes };
  const emails = personalizations.map((p, i) => personalization(p, i, shared, budget, fault));
  if (faults > 0) throw refuse();
  if (budget.left < 0 || totalBytes(emails) > bounds.maxTotalBytes) {
    throw new Problem(
      413,
      'message-too-large',
      `The ${emails.length} emails of this request hold more than ${bounds.maxTotalBytes} bytes of ` +
        'bodies and attachments together; send fewer personalizations per request.',
    );
  }
  const settings = isObject(body.mail_settings) ? body.mail_settings : {};
  const sandbox = isObject(settings.sandbox_mode) && settings.sandbox_mode.enable === true;
  return { emails, sandbox };
}

/** The members every personalization shares, each with its SendGrid field. */
interface Shared {
  from?: string;
  replyTo: { value: string[]; field: (i: number) => string } | undefined;
  subject: unknown;
  text?: { value: unknown; field: string };
  html?: { value: unknown; field: string };
  headers: unknown;
  /** The translated list, or what was sent in its place, for the send check to refuse. */
  attachments: unknown;
  template?: string;
  tags: { name: string; value: unknown; field: string }[];
  customArgs: Record<string, unknown>;
  sendAt?: string;
  /** tracking_settings' open and click tracking, as the email's `tracking`. */
  tracking?: { opens?: unknown; clicks?: unknown };
}

function messageMembers(body: Record<string, unknown>, fault: Fault): Shared {
  const shared: Shared = {
    from: optionalMailbox(body.from, 'from', fault),
    replyTo: undefined,
    subject: body.subject,
    headers: body.headers,
    attachments: body.attachments,
    tags: [],
    customArgs: ownMap(),
  };
  if (body.reply_to !== undefined && body.reply_to !== null) {
    const one = optionalMailbox(body.reply_to, 'reply_to', fault);
    if (one !== undefined) shared.replyTo = { value: [one], field: () => 'reply_to' };
  } else if (body.reply_to_list !== undefined && body.reply_to_list !== null) {
    const list = mailboxList(body.reply_to_list, 'reply_to_list', fault);
    if (list) shared.replyTo = { value: list, field: (i) => `reply_to_list.${i}` };
  }
  content(body.content, shared, fault);
  attachments(body.attachments, shared, fault);
  shared.tracking = trackingSettings(body.tracking_settings, fault);
  if (body.template_id !== undefined && body.template_id !== null) {
    if (typeof body.template_id !== 'string' || body.template_id === '') {
      fault('template_id', 'must be the name or id of a Mailplane Template');
    } else {
      const id = body.template_id;
      shared.template = id.startsWith(DYNAMIC_TEMPLATE_PREFIX)
        ? id.slice(DYNAMIC_TEMPLATE_PREFIX.length)
        : id;
    }
  }
  categories(body.categories, shared, fault);
  if (body.batch_id !== undefined && body.batch_id !== null) {
    shared.tags.push({ name: 'batch_id', value: body.batch_id, field: 'batch_id' });
  }
  stringMap(body.custom_args, 'custom_args', shared.customArgs, fault);
  shared.sendAt = sendAt(body.send_at, 'send_at', fault);
  return shared;
}

/** content: text/plain and text/html, once each. */
function content(value: unknown, shared: Shared, fault: Fault): void {
  if (value === undefined || value === null) return;
  if (!Array.isArray(value)) return fault('content', 'must be a list of {type, value}');
  value.forEach((part: unknown, j) => {
    const at = `content.${j}`;
    if (!isObject(part)) return fault(at, 'must be an object {type, value}');
    const which = part.type === 'text/plain' ? 'text' : part.type === 'text/html' ? 'html' : undefined;
    if (!which) return fault(`${at}.type`, 'must be text/plain or text/html');
    if (shared[which]) return fault(`${at}.type`, `${String(part.type)} is given twice`);
    shared[which] = { value: part.value, field: `${at}.value` };
  });
}

/** attachments: Mailplane's, with type as content_type and content_id only on inline ones. */
function attachments(value: unknown, shared: Shared, fault: Fault): void {
  if (!Array.isArray(value)) return; // absent, or the send check's to refuse as not a list
  const files: Record<string, unknown>[] = [];
  value.forEach((file: unknown, k) => {
    const at = `attachments.${k}`;
    if (!isObject(file)) {
      files.push({});
      return fault(at, 'must be an object {content, filename, type, disposition, content_id}');
    }
    const disposition = file.disposition ?? 'attachment';
    if (disposition !== 'attachment' && disposition !== 'inline') {
      fault(`${at}.disposition`, 'must be attachment or inline');
    }
    const inline = disposition === 'inline';
    // @sendgrid/mail sends an attachment as written, so its own typings' `contentId` arrives as is.
    const contentId = file.content_id ?? file.contentId;
    if (inline && (contentId === undefined || contentId === null)) {
      fault(`${at}.content_id`, 'is required when disposition is inline: the html shows it as cid:…');
    }
    files.push({
      filename: file.filename,
      content: file.content,
      ...(file.type !== undefined && file.type !== null ? { content_type: file.type } : {}),
      ...(inline ? { content_id: contentId } : {}),
    });
  });
  shared.attachments = files;
}

function categories(value: unknown, shared: Shared, fault: Fault): void {
  if (value === undefined || value === null) return;
  if (!Array.isArray(value)) return fault('categories', 'must be a list of strings');
  if (value.length > MAX_CATEGORIES) {
    return fault('categories', `has ${value.length}; the limit is ${MAX_CATEGORIES}`);
  }
  value.forEach((category: unknown, m) =>
    shared.tags.push({ name: 'category', value: category, field: `categories.${m}` }),
  );
}

/** One personalization as a Mailplane send. */
function personalization(
  value: unknown,
  i: number,
  shared: Shared,
  budget: { left: number },
  fault: Fault,
): SendGridEmail {
  const at = `personalizations.${i}`;
  const names = new FieldNames(joinSendGrid);
  const send: Record<string, unknown> = {};
  if (!isObject(value)) {
    fault(at, 'must be an object with a `to`');
    return { body: send, names };
  }
  const p = value;

  const own = optionalMailbox(p.from, `${at}.from`, fault);
  send.from = own ?? shared.from;
  names.set('from', own !== undefined ? `${at}.from` : 'from');

  if (p.to === undefined || p.to === null) fault(`${at}.to`, 'is required: a list of {email, name}');
  for (const field of ['to', 'cc', 'bcc'] as const) {
    const list =
      p[field] === undefined || p[field] === null
        ? undefined
        : mailboxList(p[field], `${at}.${field}`, fault);
    if (list) send[field] = list;
    names.set(field, `${at}.${field}`);
  }
  if (shared.replyTo) {
    send.reply_to = shared.replyTo.value;
    names.set('reply_to', shared.replyTo.field(0));
    shared.replyTo.value.forEach((_, k) => names.set(`reply_to[${k}]`, shared.replyTo!.field(k)));
  }

  const substitutions = ownMap<string>();
  const hasSubstitutions = stringMap(p.substitutions, `${at}.substitutions`, substitutions, fault, {
    maxBytes: MAX_SUBSTITUTION_BYTES,
    maxKeys: MAX_SUBSTITUTIONS,
  });
  const replace = (text: unknown) =>
    hasSubstitutions && typeof text === 'string' ? substitute(text, substitutions, budget) : text;

  if (shared.template !== undefined) {
    // The template gives the subject and bodies; its variables are this personalization's data.
    if (hasSubstitutions) {
      fault(`${at}.substitutions`, 'apply to content; a template takes dynamic_template_data');
    }
    const data = p.dynamic_template_data;
    if (data !== undefined && data !== null && !isObject(data)) {
      fault(`${at}.dynamic_template_data`, 'must be an object');
    }
    send.template = { id: shared.template, variables: data ?? {} };
    names.set('template.id', 'template_id').set('template.variables', `${at}.dynamic_template_data`);
  } else {
    const subject = p.subject ?? shared.subject;
    send.subject = replace(subject);
    names.set('subject', p.subject !== undefined && p.subject !== null ? `${at}.subject` : 'subject');
    if (shared.text) send.text = replace(shared.text.value);
    if (shared.html) send.html = replace(shared.html.value);
    names.set('text', shared.text?.field ?? 'content').set('html', shared.html?.field ?? 'content');
  }

  send.headers = headers(shared.headers, p.headers, at, names, fault);
  if (shared.attachments !== undefined) send.attachments = shared.attachments;
  names.set('attachments', 'attachments');
  if (Array.isArray(shared.attachments)) {
    shared.attachments.forEach((_, k) =>
      names.set(`attachments[${k}].content_type`, `attachments.${k}.type`),
    );
  }

  const tags = [...shared.tags];
  const args = ownMap<unknown>();
  for (const key of Object.keys(shared.customArgs)) args[key] = shared.customArgs[key];
  const ownArgs = ownMap<unknown>();
  stringMap(p.custom_args, `${at}.custom_args`, ownArgs, fault);
  for (const key of Object.keys(ownArgs)) args[key] = ownArgs[key];
  for (const key of Object.keys(args)) {
    const field = Object.hasOwn(ownArgs, key) ? `${at}.custom_args.${key}` : `custom_args.${key}`;
    tags.push({ name: key, value: args[key], field });
  }
  send.tags = tags.map(({ name, value }) => ({ name, value }));
  // Over the count of tags: custom_args are where a request has the most.
  names.set('tags', 'custom_args');
  tags.forEach(({ field }, k) => names.set(`tags[${k}].name`, field).set(`tags[${k}].value`, field));

  if (shared.tracking) {
    send.tracking = shared.tracking;
    names
      .set('tracking.opens', 'tracking_settings.open_tracking.enable')
      .set('tracking.clicks', 'tracking_settings.click_tracking.enable');
  }

  const ownSendAt = sendAt(p.send_at, `${at}.send_at`, fault);
  const when = ownSendAt ?? shared.sendAt;
  if (when !== undefined) send.scheduled_at = when;
  names.set('scheduled_at', ownSendAt !== undefined ? `${at}.send_at` : 'send_at');
  return { body: send, names };
}

/**
 * tracking_settings: open_tracking.enable and click_tracking.enable, the only members that say
 * whether to track (subscription_tracking and ganalytics add content Mailplane does not write).
 */
function trackingSettings(value: unknown, fault: Fault): Shared['tracking'] {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) {
    fault('tracking_settings', 'must be an object');
    return undefined;
  }
  const enable = (member: string): unknown => {
    const setting = value[member];
    if (setting === undefined || setting === null) return undefined;
    if (!isObject(setting)) {
      fault(`tracking_settings.${member}`, 'must be an object such as {"enable": false}');
      return undefined;
    }
    return setting.enable ?? undefined;
  };
  const opens = enable('open_tracking');
  const clicks = enable('click_tracking');
  if (opens === undefined && clicks === undefined) return undefined;
  return { ...(opens !== undefined ? { opens } : {}), ...(clicks !== undefined ? { clicks } : {}) };
}

/** The message's headers with the personalization's over them, each named by where it came from. */
function headers(message: unknown, own: unknown, at: string, names: FieldNames, fault: Fault): unknown {
  names.set('headers', 'headers');
  if (own !== undefined && own !== null && !isObject(own)) {
    fault(`${at}.headers`, 'must be an object of header names to values');
    return message;
  }
  if (!isObject(own)) return message; // absent, or the send check's to refuse
  if (message !== undefined && message !== null && !isObject(message)) return message;
  const merged = ownMap<unknown>();
  for (const source of [message, own]) {
    if (!isObject(source)) continue;
    for (const name of Object.keys(source)) {
      merged[name] = source[name];
      names.set(`headers.${name}`, source === own ? `${at}.headers.${name}` : `headers.${name}`);
    }
  }
  return merged;
}

/**
 * An address object `{email, name}` as a mailbox string, or undefined (absent, or a fault).
 * The send check parses the string as it parses any from or to.
 */
function optionalMailbox(value: unknown, at: string, fault: Fault): string | undefined {
  if (value === undefined || value === null) return undefined;
  return mailbox(value, at, fault);
}

function mailbox(value: unknown, at: string, fault: Fault): string | undefined {
  if (!isObject(value)) {
    fault(at, 'must be an object {email, name}');
    return undefined;
  }
  const { email, name } = value;
  if (typeof email !== 'string' || email.trim() === '') {
    fault(`${at}.email`, 'is required: an email address');
    return undefined;
  }
  if (NOT_ONE_ADDRESS.test(email.trim())) {
    fault(`${at}.email`, `"${email.slice(0, 254)}" is not one email address`);
    return undefined;
  }
  if (name === undefined || name === null || name === '') return email.trim();
  if (typeof name !== 'string') {
    fault(`${at}.name`, 'must be a string');
    return undefined;
  }
  // The send check reads `"Name" <email>`: a quote in the name would end it early.
  if (name.includes('"')) {
    fault(`${at}.name`, 'must not contain a double quote');
    return undefined;
  }
  return `"${name.replace(/\\/g, '\\\\')}" <${email.trim()}>`;
}

/** A list of address objects; each entry keeps its index, so that its faults name it. */
function mailboxList(value: unknown, at: string, fault: Fault): string[] | undefined {
  if (!Array.isArray(value)) {
    fault(at, 'must be a list of {email, name}');
    return undefined;
  }
  // The entries over the count are the send check's to refuse, by count, not one by one.
  return value.map((entry: unknown, k) => mailbox(entry, `${at}.${k}`, fault) ?? '');
}

/**
 * An object of strings (custom_args, substitutions) copied into `into`; false when absent.
 * Bounds, when given, are SendGrid's on its bytes and ours on its keys.
 */
function stringMap(
  value: unknown,
  at: string,
  into: Record<string, unknown>,
  fault: Fault,
  bounds?: { maxBytes: number; maxKeys: number },
): boolean {
  if (value === undefined || value === null) return false;
  if (!isObject(value)) {
    fault(at, 'must be an object of names to strings');
    return false;
  }
  const keys = Object.keys(value);
  if (bounds && keys.length > bounds.maxKeys) {
    fault(at, `has ${keys.length} keys; the limit is ${bounds.maxKeys}`);
    return false;
  }
  let bytes = 0;
  for (const key of keys) {
    const v = value[key];
    if (typeof v !== 'string') {
      fault(`${at}.${key}`, 'must be a string');
      continue;
    }
    bytes += Buffer.byteLength(key) + Buffer.byteLength(v);
    into[key] = v;
  }
  if (bounds && bytes > bounds.maxBytes) {
    fault(at, `holds ${bytes} bytes; the limit is ${bounds.maxBytes}`);
    return false;
  }
  return keys.length > 0;
}

/** send_at: unix seconds, as the RFC 3339 time the send check reads. */
function sendAt(value: unknown, at: string, fault: Fault): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_UNIX_SECONDS) {
    fault(at, 'must be a unix timestamp in seconds');
    return undefined;
  }
  return new Date(value * 1000).toISOString();
}

/**
 * `text` with every key of `substitutions` replaced by its value, in one pass (a value is not
 * searched again for keys), the longest key first where keys overlap. What it writes is taken
 * from `budget`, so that no request makes more text than its emails may hold; past it the text is
 * left as it is and the caller answers 413.
 */
function substitute(text: string, substitutions: Record<string, string>, budget: { left: number }): string {
  const keys = Object.keys(substitutions)
    .filter((k) => k.length > 0)
    .sort((a, b) => b.length - a.length);
  if (keys.length === 0) return text;
  const pattern = new RegExp(keys.map((k) => k.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  let out = '';
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    const value = substitutions[match[0]]!;
    budget.left -= match.index - last + value.length;
    if (budget.left < 0) return text;
    out += text.slice(last, match.index) + value;
    last = match.index + match[0].length;
  }
  budget.left -= text.length - last;
  return out + text.slice(last);
}

/** The bytes of bodies and attachments the emails would store, attachments as they decode. */
function totalBytes(emails: SendGridEmail[]): number {
  let total = 0;
  for (const { body } of emails) {
    for (const member of [body.subject, body.html, body.text]) {
      if (typeof member === 'string') total += Buffer.byteLength(member);
    }
    if (Array.isArray(body.attachments)) {
      for (const file of body.attachments as unknown[]) {
        const content = isObject(file) ? file.content : undefined;
        if (typeof content === 'string') total += Math.floor((content.length * 3) / 4);
      }
    }
  }
  return total;
}
