// Builds the RFC 5322 message of one email with nodemailer's MailComposer. Bcc recipients are never
// written into the headers: each of them gets its own envelope, and nothing in the message shows
// who else received it. An attachment with a `content_id` (Resend's inline image) is an inline
// part with that Content-ID, which the html shows as `cid:…`; with html, MailComposer puts such
// parts in a multipart/related next to it.

//
// What comes out is what is signed and sent, byte for byte: CRLF line endings throughout, whatever
// the request or a template variable held, and header lines folded within RFC 5322's limits
// (sender/fold.ts).

import MailComposer from 'nodemailer/lib/mail-composer';
import type { Attachment, EmailContent } from '../lib/db/schema.js';
import { isHeaderName, reservedHeader } from '../lib/headers.js';
import { foldHeaders, normalizeLineEndings, toCrlf } from './fold.js';

export interface ComposeInput {
  /** The From header, as accepted (`Name <a@b.c>` or `a@b.c`). */
  from: string;
  content: EmailContent;
  /** Subject and bodies after rendering. */
  rendered: { subject: string; html?: string; text?: string };
  /** Without the angle brackets: `<messageId>@<from domain>`. */
  messageId: string;
  date: Date;
  /**
   * Fields Mailplane adds itself (List-Unsubscribe and List-Unsubscribe-Post): a caller's field of
   * the same name is dropped, and with a List-Unsubscribe its List-Unsubscribe-Post too, so that a
   * receiver sees one offer, the one Mailplane answers.
   */
  addedHeaders?: { key: string; value: string }[];
}

/** An attachment as the api stores it since inline images: `content_id` is Resend's field. */
type StoredAttachment = Attachment & { content_id?: unknown };

/**
 * A Content-ID the api accepted: visible ASCII without the angle brackets that enclose it. The
 * check is repeated here because the value goes into a header, and a job may predate the api's.
 */
const CONTENT_ID = /^[!-;=?-~]{1,255}$/;

/** MailComposer's attachment: inline with its Content-ID when it has one. */
function mimeAttachment(a: StoredAttachment) {
  const cid = typeof a.content_id === 'string' && CONTENT_ID.test(a.content_id) ? a.content_id : undefined;
  return {
    filename: a.filename,
    content: a.content,
    encoding: 'base64',
    contentType: a.content_type,
    // MailComposer makes only an image with a cid inline; Resend makes any file with one inline.
    ...(cid ? { cid, contentDisposition: 'inline' as const } : {}),
  };
}

/**
 * Returns the message, CRLF line endings, ready to sign.
 *
 *   const raw = await composeMessage({ from, content, rendered, messageId: `${id}@example.com`, date: new Date() });
 */
export async function composeMessage(input: ComposeInput): Promise<Buffer> {
  const { content, rendered } = input;
  // The API refuses these; a job queued by an older version that let one through still must not
  // forge a trace field or contradict what the composer writes.
  const added = input.addedHeaders ?? [];
  const replaced = new Set(added.map((h) => h.key.toLowerCase()));
  // A caller's List-Unsubscribe-Post would make one-click POST to a link it no longer names.
  if (replaced.has('list-unsubscribe')) replaced.add('list-unsubscribe-post');
  const headers = Object.entries(content.headers ?? {})
    .filter(([key, value]) => isHeaderName(key) && !reservedHeader(key) && typeof value === 'string')
    .filter(([key]) => !replaced.has(key.toLowerCase()))
    .map(([key, value]) => ({ key, value: oneLine(value) }))
    .concat(added.map(({ key, value }) => ({ key, value: oneLine(value) })));
  const composer = new MailComposer({
    from: input.from,
    to: content.to,
    cc: content.cc,
    replyTo: content.reply_to,
    subject: oneLine(rendered.subject),
    text: rendered.text === undefined ? undefined : toCrlf(rendered.text),
    html: rendered.html === undefined ? undefined : toCrlf(rendered.html),
    headers,
    attachments: (content.attachments ?? []).map(mimeAttachment),
    messageId: `<${input.messageId}>`,
    date: input.date,
    // Bodies that need encoding go out as base64: quoted-printable encoding costs about a fifth of
    // the sender's CPU at full speed, and every receiver decodes both.
    textEncoding: 'base64',
    // Nothing in a request may make the sender read a file or fetch a URL.
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  // The bodies are CRLF already; the pass over the whole catches whatever else might not be.
  return foldHeaders(normalizeLineEndings(await composer.compile().build()));
}

/**
 * A header value on one line: a CR or LF in it (a rendered subject, a job that predates the api's
 * checks) would end the field and start another, so each run of them becomes a space.
 */
function oneLine(value: string): string {
  return value.replace(/[\r\n]+/g, ' ');
}
