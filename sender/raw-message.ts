// The message of an email that came in whole over SMTP submission (content.raw): sent as the client
// wrote it, MIME structure, encodings and headers untouched, but for what an MSA is to fix before
// it relays (RFC 6409 8): a Bcc field is removed, since every recipient gets this same message
// and none may see the blind copies; a Return-Path field is removed, since the receiving server
// writes it from the envelope; a missing Date is added; and a missing Message-ID, or one that is
// empty or not plain text, becomes the email's own. What comes out is what is signed and sent,
// with CRLF line endings throughout.

import { fieldValue, isField, joinHeader, splitHeader } from '../lib/message-header.js';
import { usableMessageId } from '../lib/message-id.js';
import { normalizeLineEndings } from '../lib/line-endings.js';

/** Fields the client may have written that must not reach a recipient. */
const REMOVED = ['bcc', 'return-path'];

export interface RawInput {
  /** The stored message, base64 (lib/db/schema.ts EmailContent.raw). */
  raw: string;
  /** Without the angle brackets; used when the client's message has no usable Message-ID. */
  messageId: string;
  /** Used only when the client's message has no Date. */
  date: Date;
}

/**
 * Returns the message ready to sign.
 *
 *   const message = prepareRawMessage({ raw: content.raw, messageId: `${id}@example.com`, date: new Date() });
 */
export function prepareRawMessage(input: RawInput): Buffer {
  const message = splitHeader(normalizeLineEndings(Buffer.from(input.raw, 'base64')));
  let fields = message.fields.filter((f) => !REMOVED.some((name) => isField(f, name)));
  const added = [];
  // One Message-ID (RFC 5322 3.6): the client's first when it is usable (lib/message-id.ts), else
  // the email's own, so that the one sent is the one the API and webhooks show.
  const theirs = fields.find((f) => isField(f, 'message-id'));
  const keep = theirs !== undefined && usableMessageId(fieldValue(theirs));
  fields = fields.filter((f) => !isField(f, 'message-id') || (keep && f === theirs));
  if (!keep) added.push({ name: 'Message-ID', text: `Message-ID: <${input.messageId}>\r\n` });
  if (!fields.some((f) => isField(f, 'date'))) {
    added.push({ name: 'Date', text: `Date: ${rfc5322Date(input.date)}\r\n` });
  }
  return joinHeader({ fields: [...added, ...fields], body: message.body });
}

/** `Wed, 02 Dec 2026 01:02:03 +0000`: RFC 5322 3.3, with a numeric zone rather than the obsolete GMT. */
function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}
