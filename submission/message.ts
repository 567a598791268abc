// Reads a message submitted over SMTP for what the accept path needs, without re-parsing its MIME:
// the From mailboxes (checked against the tenant's domains), the addresses and subject the API's
// views show, and the tags of X-Mailplane-Tags, which is taken off the message. The message
// itself is kept byte for byte otherwise. Header values are read by mailparser: encoded words,
// groups and quoted names are its business, not a hand-written parser's.

import { parseAddressHeader, simpleParser } from 'mailparser';
import { AddressError, normalizeAddress, type Mailbox } from '../lib/address.js';
import { normalizeLineEndings } from '../lib/line-endings.js';
import { fieldValue, isField, joinHeader, splitHeader, type HeaderField } from '../lib/message-header.js';
import { usableMessageId } from '../lib/message-id.js';
import { refusal } from './refusal.js';
import { parseTags, TAGS_HEADER } from './tags.js';

/** RFC 5322 2.1.1: a line MUST be no more than 998 characters, excluding the CRLF. */
const MAX_LINE = 998;

export interface SubmittedMessage {
  /** The message as it is stored and sent: the client's, without X-Mailplane-Tags. */
  raw: Buffer;
  /** The From mailboxes, addresses normalized (lib/address.ts); at least one. */
  from: Mailbox[];
  /** The Sender mailbox, when there is one (RFC 5322 3.6.2: who sent it for From), normalized. */
  sender: Mailbox[];
  /** As written: display names decoded, addresses not checked (they are the client's to show). */
  to: Mailbox[];
  cc: Mailbox[];
  replyTo: Mailbox[];
  subject: string;
  tags: { name: string; value: string }[];
  /** The client's Message-ID field, unfolded and trimmed, when it wrote one. */
  messageId?: string;
}

/**
 * Reads a submitted message (dot-stuffing removed); throws a Refusal (554) for one that cannot be
 * sent as it is. Bare LFs, which some clients write, become CRLF.
 *
 *   const message = await readSubmittedMessage(data);
 *   message.from[0].address   // 'hello@example.com'
 */
export async function readSubmittedMessage(input: Buffer): Promise<SubmittedMessage> {
  const data = normalizeLineEndings(input);
  const long = longLine(data);
  if (long !== undefined) {
    throw refusal(
      554,
      '5.6.0',
      `line ${long} is longer than ${MAX_LINE} characters (RFC 5322 2.1.1); encode the body as quoted-printable or base64`,
    );
  }
  const split = splitHeader(data);
  const tagFields = split.fields.filter((f) => isField(f, TAGS_HEADER));
  const fields = split.fields.filter((f) => !isField(f, TAGS_HEADER));
  const tags = parseTags(tagFields.map(fieldValue));
  if ('fault' in tags) throw refusal(554, '5.6.0', tags.fault);

  const fromFields = fields.filter((f) => isField(f, 'from'));
  if (fromFields.length !== 1) {
    throw refusal(
      554,
      '5.6.0',
      fromFields.length === 0
        ? 'the message has no From header'
        : 'the message has more than one From header (RFC 5322 3.6)',
    );
  }
  const checked = (name: string) =>
    addresses(fields.filter((f) => isField(f, name))).map((m) => {
      try {
        return { name: m.name, address: normalizeAddress(m.address) };
      } catch (err) {
        if (!(err instanceof AddressError)) throw err;
        throw refusal(554, '5.6.0', `${name}: ${err.message}`);
      }
    });
  const from = checked('From');
  if (from.length === 0) throw refusal(554, '5.6.0', 'the From header names no address');

  const list = (name: string) => addresses(fields.filter((f) => isField(f, name)));
  const messageIdField = fields.find((f) => isField(f, 'message-id'));
  // The client's, when it is plain text (sender/raw-message.ts sends it then, and the email's own
  // otherwise).
  const messageId = messageIdField && fieldValue(messageIdField);
  const shownMessageId = messageId && usableMessageId(messageId) ? messageId : undefined;
  return {
    raw: joinHeader({ fields, body: split.body }),
    from,
    sender: checked('Sender'),
    to: list('to'),
    cc: list('cc'),
    replyTo: list('reply-to'),
    subject: await subjectOf(fields),
    tags: tags.tags,
    ...(shownMessageId ? { messageId: shownMessageId } : {}),
  };
}

/** The mailboxes of address fields, groups flattened, domains left as written (not punycode-decoded). */
function addresses(fields: HeaderField[]): Mailbox[] {
  if (fields.length === 0) return [];
  const values = fields.map((f) => Buffer.from(fieldValue(f), 'latin1').toString('utf8'));
  return parseAddressHeader(values, { flatten: true, decodePunycode: false }).value.flatMap((a) =>
    a.address ? [{ name: a.name, address: a.address }] : [],
  );
}

/**
 * The decoded Subject. Encoded words (RFC 2047) and their charsets are mailparser's to decode, from
 * the header alone; a subject without any, the common case, is its text as UTF-8 (RFC 6532), which
 * spares the parser's half a millisecond a message.
 */
async function subjectOf(fields: HeaderField[]): Promise<string> {
  const subject = fields.find((f) => isField(f, 'subject'));
  if (!subject) return '';
  if (!subject.text.includes('=?')) return Buffer.from(fieldValue(subject), 'latin1').toString('utf8');
  const parsed = await simpleParser(Buffer.from(`${subject.text}\r\n`, 'latin1'), {
    skipHtmlToText: true,
    skipTextToHtml: true,
    skipImageLinks: true,
    skipTextLinks: true,
  });
  return parsed.subject ?? '';
}

/** The number of the first line over MAX_LINE octets, if any. */
function longLine(data: Buffer): number | undefined {
  let start = 0;
  let line = 1;
  while (start < data.length) {
    let end = data.indexOf(10, start);
    if (end < 0) end = data.length;
    const length = end - start - (end > start && data[end - 1] === 13 ? 1 : 0);
    if (length > MAX_LINE) return line;
    start = end + 1;
    line++;
  }
  return undefined;
}
