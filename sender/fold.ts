// Line hygiene of a composed message, before it is signed: every line ending CRLF, and every
// header line within RFC 5322's limits (78 characters recommended, 998 octets at most, §2.1.1).
//
// Both must hold before the DKIM signature is computed, not after: a receiver (or the SMTP
// client on the way) that repairs a bare CR or refolds an over-long line changes what was signed,
// and the signature fails while the API says `delivered`. MailComposer folds most fields at their
// whitespace, but leaves a value without whitespace (a long URL, an ASCII subject of one word)
// on one line of any length, and passes bare CRs in bodies through.

import { normalizeLineEndings, toCrlf } from '../lib/line-endings.js';

/** RFC 5322 §2.1.1: SHOULD be no more than 78 characters, excluding the CRLF. */
const RECOMMENDED_LINE = 78;
/** RFC 5322 §2.1.1: MUST be no more than 998 characters, excluding the CRLF. */
const MAX_LINE = 998;
/** Bytes of text per encoded-word: 60 base64 characters, a 72-character word with `=?UTF-8?B?…?=`. */
const ENCODED_WORD_BYTES = 45;
/** A piece of a URL inside `<…>`: after `List-Unsubscribe: <` the first line is still within 78. */
const URL_PIECE = 58;
/**
 * URLs at least this long are broken: shorter ones fit on a line of their own, with room for a
 * field name before them, and stay whole, since not every client ignores the whitespace.
 */
const LONG_URL = MAX_LINE - RECOMMENDED_LINE;

/**
 * Fields whose value has a syntax (addresses, ids, parameters): folded at their whitespace only,
 * never encoded. The rest are unstructured (RFC 5322 §3.6.8: any extension field is), and a
 * value that cannot be folded is written as RFC 2047 encoded-words, which can.
 */
const STRUCTURED = new Set([
  'from',
  'sender',
  'reply-to',
  'to',
  'cc',
  'bcc',
  'date',
  'message-id',
  'in-reply-to',
  'references',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'content-disposition',
  'content-id',
  'return-path',
  'received',
]);

/**
 * List header fields (RFC 2369): angle-bracketed URLs "with internal whitespace being ignored"
 * (§2), so a URL longer than a line may be broken inside its brackets.
 */
const LIST_FIELD = /^list-(?:unsubscribe|subscribe|help|post|owner|archive)$/i;

// Line endings are lib/line-endings.ts's, shared with SMTP submission, which reads a client's
// message before the sender sends it.
export { normalizeLineEndings, toCrlf };

/**
 * Refolds the header fields of `message` that have a line over 78 characters, so that none is
 * over 998 octets and as few as possible over 78. Throws (code EHEADERTOOLONG) for a structured
 * field that cannot be folded within 998 octets: no receiver would take it.
 *
 *   foldHeaders(Buffer.from('Subject: ' + 'x'.repeat(998) + '\r\n\r\nhi\r\n'))   // encoded-words, 72 a line
 */
export function foldHeaders(message: Buffer): Buffer {
  const text = message.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  const header = end < 0 ? text : text.slice(0, end + 2);
  const fields = header.split(/\r\n(?![ \t])/).filter((f) => f !== '');
  if (!fields.some((f) => f.split('\r\n').some((line) => line.length > RECOMMENDED_LINE))) return message;
  const folded = fields.map((f) =>
    f.split('\r\n').some((line) => line.length > RECOMMENDED_LINE) ? foldField(f) : f,
  );
  return Buffer.concat([
    Buffer.from(folded.join('\r\n') + '\r\n', 'latin1'),
    Buffer.from(end < 0 ? '' : text.slice(end + 2), 'latin1'),
  ]);
}

function foldField(field: string): string {
  const unfolded = field.replace(/\r\n(?=[ \t])/g, '');
  const colon = unfolded.indexOf(':');
  const name = unfolded.slice(0, colon);
  let value = unfolded.slice(colon + 1);
  let lines = foldAtWhitespace(`${name}:${value}`);
  if (lines.every((line) => line.length <= MAX_LINE)) return lines.join('\r\n');

  const lower = name.trim().toLowerCase();
  if (LIST_FIELD.test(lower)) {
    // A space after each comma between URLs, then the URLs themselves in pieces.
    value = value.replace(/>\s*,\s*</g, '>, <').replace(/<([^<>]*)>/g, (whole, url: string) => {
      if (url.length < LONG_URL) return whole;
      const pieces: string[] = [];
      for (let i = 0; i < url.length; i += URL_PIECE) pieces.push(url.slice(i, i + URL_PIECE));
      return `<${pieces.join(' ')}>`;
    });
    lines = foldAtWhitespace(`${name}:${value}`);
  } else if (!STRUCTURED.has(lower) && !/=\?[^?]+\?[bq]\?/i.test(value)) {
    lines = foldAtWhitespace(`${name}: ${encodedWords(Buffer.from(value.trim(), 'latin1'))}`);
  }
  if (lines.some((line) => line.length > MAX_LINE)) {
    throw Object.assign(
      new Error(
        `the ${name.trim()} header has a part longer than ${MAX_LINE} characters that cannot be folded`,
      ),
      { code: 'EHEADERTOOLONG' },
    );
  }
  return lines.join('\r\n');
}

/**
 * Greedy folding: a line is closed before the whitespace that would take it past 78 characters.
 * A token longer than a line stays whole on a line of its own (up to 998 it is still valid).
 */
function foldAtWhitespace(field: string): string[] {
  const pieces = field.split(/(?=[ \t])/);
  const lines: string[] = [];
  let line = pieces[0]!;
  for (const piece of pieces.slice(1)) {
    if (line.length + piece.length > RECOMMENDED_LINE && line.trim() !== '' && !/:$/.test(line)) {
      lines.push(line);
      line = piece;
    } else line += piece;
  }
  lines.push(line);
  return lines;
}

/** RFC 2047 B encoded-words for a UTF-8 value, split on character boundaries, one space apart. */
function encodedWords(latin1Bytes: Buffer): string {
  const text = latin1Bytes.toString('utf8');
  const words: string[] = [];
  let chunk = '';
  for (const ch of text) {
    if (Buffer.byteLength(chunk + ch) > ENCODED_WORD_BYTES) {
      words.push(chunk);
      chunk = '';
    }
    chunk += ch;
  }
  if (chunk) words.push(chunk);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w).toString('base64')}?=`).join(' ');
}
