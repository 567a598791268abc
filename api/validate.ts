// Turns a send request in Resend's shape into what the accept path stores, reporting every field
// at fault at once. Everything that ends up in a header is checked for CR/LF here: the MIME
// builder downstream must never see a value that could inject a header.

import { AddressError, domainOf, formatMailbox, parseMailboxList, type Mailbox } from '../lib/address.js';
import type { Attachment, EmailContent } from '../lib/db/schema.js';
import { Problem, type FieldError } from '../lib/problem.js';

/** A send, checked; `recipients` are the envelope addresses (to + cc + bcc), de-duplicated. */
export interface SendRequest {
  from: Mailbox;
  content: EmailContent;
  recipients: string[];
  scheduledAt: Date | null;
  template?: { ref: string; variables: Record<string, unknown> };
}

export interface Limits {
  maxRecipients: number;
  maxMessageBytes: number;
}

// RFC 5322 2.1.1: a line may not exceed 998 characters; a subject is one (folded) header.
const MAX_SUBJECT = 998;
const HEADER_NAME = /^[!-9;-~]{1,76}$/;
const TAG = /^[A-Za-z0-9_-]{1,256}$/;
const LINE_BREAK = /[\r\n]/;
/** Headers Mailplane writes itself; letting a caller set them would forge or break the message. */
const RESERVED_HEADERS = new Set([
  'from',
  'to',
  'cc',
  'bcc',
  'subject',
  'date',
  'message-id',
  'sender',
  'reply-to',
  'return-path',
  'received',
  'dkim-signature',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
]);

/**
 * Checks one send request; throws a 422 Problem listing every field at fault, or 413 when the
 * attachments are over the size limit.
 *
 *   const send = checkSendRequest(req.body, { maxRecipients: 50, maxMessageBytes: 10 << 20 });
 */
export function checkSendRequest(body: unknown, limits: Limits, prefix = ''): SendRequest {
  const errors: FieldError[] = [];
  const fail = (field: string, message: string) => errors.push({ field: prefix + field, message });
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new Problem(422, 'validation-failed', 'The request body must be a JSON object.', [
      { field: prefix || '(body)', message: 'must be an object' },
    ]);
  }
  const b = body as Record<string, unknown>;

  let from: Mailbox | undefined;
  if (typeof b.from !== 'string' || b.from.trim() === '')
    fail('from', 'is required: "Name <you@your-domain>"');
  else {
    try {
      const list = parseMailboxList(b.from);
      if (list.length !== 1) fail('from', 'must be a single address');
      else from = list[0];
    } catch (err) {
      fail('from', (err as Error).message);
    }
  }

  const mailboxes = (field: string, required: boolean): Mailbox[] => {
    const value = b[field];
    if (value === undefined || value === null) {
      if (required) fail(field, 'is required: an address or a list of addresses');
      return [];
    }
    const items = Array.isArray(value) ? value : [value];
    if (required && items.length === 0) fail(field, 'must name at least one address');
    const out: Mailbox[] = [];
    items.forEach((item, i) => {
      const where = Array.isArray(value) ? `${field}[${i}]` : field;
      if (typeof item !== 'string') return fail(where, 'must be a string');
      try {
        // "a@x.io, b@y.io" is two recipients, and counts as two against the limit.
        out.push(...parseMailboxList(item));
      } catch (err) {
        if (!(err instanceof AddressError)) throw err;
        fail(where, err.message);
      }
    });
    return out;
  };
  const to = mailboxes('to', true);
  const cc = mailboxes('cc', false);
  const bcc = mailboxes('bcc', false);
  const replyTo = mailboxes('reply_to', false);
  const recipients = [...new Set([...to, ...cc, ...bcc].map((m) => m.address))];
  if (recipients.length > limits.maxRecipients) {
    fail(
      'to',
      `${recipients.length} recipients (to + cc + bcc) is over the limit of ${limits.maxRecipients}`,
    );
  }

  let template: SendRequest['template'];
  if (b.template !== undefined) {
    const t = b.template as Record<string, unknown> | null;
    if (typeof t !== 'object' || t === null || typeof t.id !== 'string' || t.id === '') {
      fail('template.id', 'is required: the name or id of a Template');
    } else if (
      t.variables !== undefined &&
      (typeof t.variables !== 'object' || t.variables === null || Array.isArray(t.variables))
    ) {
      fail('template.variables', 'must be an object');
    } else template = { ref: t.id, variables: (t.variables as Record<string, unknown>) ?? {} };
  }

  const optionalText = (field: string): string | undefined => {
    const value = b[field];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') {
      fail(field, 'must be a string');
      return undefined;
    }
    return value;
  };
  const subject = optionalText('subject') ?? '';
  // A template brings its own subject; otherwise one is required (a non-string was reported above).
  if (!template && (b.subject === undefined || b.subject === null)) fail('subject', 'is required');
  else if (!template && typeof b.subject === 'string' && subject.trim() === '')
    fail('subject', 'must not be empty');
  if (LINE_BREAK.test(subject)) fail('subject', 'must not contain line breaks');
  if (subject.length > MAX_SUBJECT) fail('subject', `must be at most ${MAX_SUBJECT} characters`);
  const html = optionalText('html');
  const text = optionalText('text');
  if (!template && html === undefined && text === undefined)
    fail('html', 'html, text or template is required');

  const headers: Record<string, string> = {};
  if (b.headers !== undefined) {
    if (typeof b.headers !== 'object' || b.headers === null || Array.isArray(b.headers)) {
      fail('headers', 'must be an object of header names to values');
    } else {
      for (const [name, value] of Object.entries(b.headers)) {
        if (!HEADER_NAME.test(name)) fail(`headers.${name}`, 'is not a valid header name');
        else if (RESERVED_HEADERS.has(name.toLowerCase())) {
          fail(`headers.${name}`, 'is set by Mailplane; use the matching field instead');
        } else if (typeof value !== 'string') fail(`headers.${name}`, 'must be a string');
        else if (LINE_BREAK.test(value)) fail(`headers.${name}`, 'must not contain line breaks');
        else headers[name] = value;
      }
    }
  }

  const attachments: Attachment[] = [];
  let attachmentBytes = 0;
  if (b.attachments !== undefined) {
    if (!Array.isArray(b.attachments)) fail('attachments', 'must be a list');
    else {
      b.attachments.forEach((a: Record<string, unknown> | null, i) => {
        const where = `attachments[${i}]`;
        if (typeof a !== 'object' || a === null) return fail(where, 'must be an object');
        if (a.path !== undefined)
          return fail(`${where}.path`, 'is not supported: send the file as base64 `content`');
        const filename = a.filename;
        if (
          typeof filename !== 'string' ||
          filename === '' ||
          /[\r\n/\\]/.test(filename) ||
          filename.length > 255
        ) {
          fail(`${where}.filename`, 'is required: a file name without line breaks or slashes');
        }
        const contentType = a.content_type;
        if (
          contentType !== undefined &&
          (typeof contentType !== 'string' || !/^[\w.+-]+\/[\w.+-]+$/.test(contentType))
        ) {
          fail(`${where}.content_type`, 'must be a media type such as application/pdf');
        }
        if (typeof a.content !== 'string' || !/^[A-Za-z0-9+/=\s]*$/.test(a.content) || a.content === '') {
          return fail(`${where}.content`, 'is required: the file as a base64 string');
        }
        attachmentBytes += Math.floor((a.content.replace(/\s/g, '').length * 3) / 4);
        attachments.push({
          filename: String(filename),
          content: a.content,
          ...(typeof contentType === 'string' ? { content_type: contentType } : {}),
        });
      });
    }
  }

  const tags: EmailContent['tags'] = [];
  if (b.tags !== undefined) {
    if (!Array.isArray(b.tags)) fail('tags', 'must be a list of {name, value}');
    else {
      b.tags.forEach((tag: { name?: unknown; value?: unknown } | null, i) => {
        if (typeof tag?.name !== 'string' || !TAG.test(tag.name))
          fail(`tags[${i}].name`, 'must be letters, digits, _ or -');
        else if (typeof tag.value !== 'string' || !TAG.test(tag.value))
          fail(`tags[${i}].value`, 'must be letters, digits, _ or -');
        else tags.push({ name: tag.name, value: tag.value });
      });
    }
  }

  let scheduledAt: Date | null = null;
  if (b.scheduled_at !== undefined && b.scheduled_at !== null) {
    const when = typeof b.scheduled_at === 'string' ? new Date(b.scheduled_at) : new Date(NaN);
    if (Number.isNaN(when.getTime()))
      fail('scheduled_at', 'must be an ISO 8601 date-time such as 2030-01-01T09:00:00Z');
    else scheduledAt = when;
  }

  if (errors.length > 0) {
    throw new Problem(422, 'validation-failed', `${errors.length} field(s) are invalid.`, errors);
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
