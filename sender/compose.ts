// Builds the RFC 5322 message of one email with nodemailer's MailComposer. Bcc recipients are never
// written into the headers: each of them gets its own envelope, and nothing in the message shows
// who else received it.

import MailComposer from 'nodemailer/lib/mail-composer';
import type { EmailContent } from '../lib/db/schema.js';

/**
 * Header fields the composer writes itself, or that must not come from a request: a custom
 * `Bcc` would disclose the blind copies, a custom `DKIM-Signature` or `Return-Path` would
 * impersonate what the sender or the receiving server adds.
 */
const RESERVED_HEADERS = new Set([
  'from',
  'to',
  'cc',
  'bcc',
  'reply-to',
  'subject',
  'date',
  'message-id',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'dkim-signature',
  'return-path',
]);

export interface ComposeInput {
  /** The From header, as accepted (`Name <a@b.c>` or `a@b.c`). */
  from: string;
  content: EmailContent;
  /** Subject and bodies after rendering. */
  rendered: { subject: string; html?: string; text?: string };
  /** Without the angle brackets: `<messageId>@<from domain>`. */
  messageId: string;
  date: Date;
}

/**
 * Returns the message, CRLF line endings, ready to sign.
 *
 *   const raw = await composeMessage({ from, content, rendered, messageId: `${id}@example.com`, date: new Date() });
 */
export async function composeMessage(input: ComposeInput): Promise<Buffer> {
  const { content, rendered } = input;
  const headers = Object.entries(content.headers ?? {})
    .filter(([key]) => !RESERVED_HEADERS.has(key.toLowerCase()))
    .map(([key, value]) => ({ key, value }));
  const composer = new MailComposer({
    from: input.from,
    to: content.to,
    cc: content.cc,
    replyTo: content.reply_to,
    subject: rendered.subject,
    text: rendered.text,
    html: rendered.html,
    headers,
    attachments: (content.attachments ?? []).map((a) => ({
      filename: a.filename,
      content: a.content,
      encoding: 'base64',
      contentType: a.content_type,
    })),
    messageId: `<${input.messageId}>`,
    date: input.date,
    // Bodies that need encoding go out as base64: quoted-printable encoding costs about a fifth of
    // the sender's CPU at full speed, and every receiver decodes both.
    textEncoding: 'base64',
    // Nothing in a request may make the sender read a file or fetch a URL.
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  return composer.compile().build();
}
