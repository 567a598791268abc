// Email addresses as users write them: `a@b.c`, `Name <a@b.c>`, `"Last, First" <a@b.c>`, or
// several of those joined by commas. Parsing is strict where it matters for safety (no CR/LF,
// no control characters) and for deliverability (a domain with a dot, an address ≤ 254 octets).
//
// International addresses (RFC 6530): a domain written in Unicode (`bücher.example`) is kept in
// its A-label form (`xn--bcher-kva.example`, UTS #46 as Node's URL parser does it), which every
// server takes and DKIM, suppressions and the domain check compare; a UTF-8 local part
// (`用户@example.com`) is kept as written, in NFC, and can only be sent with SMTPUTF8
// (needsSmtpUtf8), which sender/transport.ts asks of the receiving server.

import { domainToASCII, domainToUnicode } from 'node:url';

export interface Mailbox {
  /** Display name without quotes; empty when none was given. */
  name: string;
  /** local@domain: the domain in lower-case A-labels, the local part as written (in NFC). */
  address: string;
}

export class AddressError extends Error {
  readonly code = 'EADDRESS';
}

// RFC 5321 limits: 64 octets of local part, 254 of path.
const MAX_LOCAL = 64;
const MAX_ADDRESS = 254;
/**
 * RFC 5321's atext, plus (RFC 6531) any non-ASCII character but spaces, controls, format
 * characters (bidi overrides, zero-width joiners: invisible, and a spoofing tool) and unassigned or
 * private-use code points.
 */
const LOCAL_PART = /^(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]|[^\p{ASCII}\p{C}\p{Z}])+$/u;
/** A-labels: LDH labels, a top-level one of letters or an IDN's `xn--…` (`example.xn--p1ai`). */
const DOMAIN =
  /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$/;
/**
 * What a domain may be written with before conversion: no `%`, `_` or other URL syntax, which the
 * URL parser would decode or keep.
 */
const DOMAIN_INPUT = /^(?:[A-Za-z0-9.-]|[^\p{ASCII}\p{C}\p{Z}])+$/u;
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Splits a header-style list into mailboxes; a comma inside quotes does not split.
 *
 *   parseMailboxList('"Doe, J" <j@x.io>, k@y.io')  // two mailboxes
 */
export function parseMailboxList(input: string): Mailbox[] {
  if (CONTROL.test(input)) throw new AddressError('contains a line break or control character');
  const parts: string[] = [];
  let current = '';
  let quoted = false;
  let angle = false;
  for (const ch of input) {
    if (ch === '"') quoted = !quoted;
    else if (ch === '<' && !quoted) angle = true;
    else if (ch === '>' && !quoted) angle = false;
    if (ch === ',' && !quoted && !angle) {
      parts.push(current);
      current = '';
    } else current += ch;
  }
  parts.push(current);
  const mailboxes = parts.map((p) => p.trim()).filter((p) => p.length > 0);
  if (mailboxes.length === 0) throw new AddressError('is empty');
  return mailboxes.map(parseMailbox);
}

/** Parses one mailbox: `a@b.c`, `Name <a@b.c>` or `"Name" <a@b.c>`. */
export function parseMailbox(input: string): Mailbox {
  const text = input.trim();
  if (CONTROL.test(text)) throw new AddressError('contains a line break or control character');
  const angled = /^(.*?)\s*<([^<>]*)>$/.exec(text);
  let name = '';
  let address = text;
  if (angled) {
    name = angled[1]!.trim();
    address = angled[2]!.trim();
    if (name.startsWith('"') && name.endsWith('"') && name.length >= 2) name = name.slice(1, -1);
    if (name.includes('"')) throw new AddressError(`has an unbalanced quote in its name: ${input}`);
  }
  return { name, address: normalizeAddress(address) };
}

/**
 * Validates a bare address: its domain in lower-case A-labels, its local part in NFC.
 *
 *   normalizeAddress('Ada@Bücher.Example')   // 'Ada@xn--bcher-kva.example'
 */
export function normalizeAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) throw new AddressError(`"${address}" is not an email address`);
  const local = address.slice(0, at).normalize('NFC');
  const domain = asciiDomain(address.slice(at + 1));
  if (
    Buffer.byteLength(local) > MAX_LOCAL ||
    !LOCAL_PART.test(local) ||
    local.startsWith('.') ||
    local.endsWith('.') ||
    local.includes('..')
  ) {
    throw new AddressError(`"${address}" has an invalid local part`);
  }
  if (!domain) throw new AddressError(`"${address}" has an invalid domain`);
  const normalized = `${local}@${domain}`;
  if (Buffer.byteLength(normalized) > MAX_ADDRESS)
    throw new AddressError(`"${address}" is longer than ${MAX_ADDRESS} octets`);
  return normalized;
}

/**
 * A domain in lower-case A-labels (UTS #46 processing, as `new URL()` does it), or undefined when
 * it is not a host name mail can go to: a label that is not LDH after conversion, a numeric or
 * single-label name, an `xn--` label that decodes to nothing.
 *
 *   asciiDomain('Bücher.example')   // 'xn--bcher-kva.example'
 *   asciiDomain('example.xn--p1ai') // 'example.xn--p1ai'
 */
export function asciiDomain(domain: string): string | undefined {
  if (!DOMAIN_INPUT.test(domain)) return undefined;
  const ascii = domainToASCII(domain);
  if (!ascii || !DOMAIN.test(ascii)) return undefined;
  // An A-label that does not decode comes back from domainToUnicode as it went in.
  const undecodable = domainToUnicode(ascii)
    .split('.')
    .some((label) => label.startsWith('xn--'));
  return undecodable ? undefined : ascii;
}

/**
 * Whether an address can only be sent with SMTPUTF8 (RFC 6531): a UTF-8 local part. (A normalized
 * address's domain is ASCII.)
 */
export function needsSmtpUtf8(address: string): boolean {
  return /[^\p{ASCII}]/u.test(address);
}

/** Formats a mailbox for a header, quoting the name when it has specials. */
export function formatMailbox({ name, address }: Mailbox): string {
  if (!name) return address;
  return /^[\w !#$%&'*+/=?^`{|}~-]*$/.test(name)
    ? `${name} <${address}>`
    : `"${name.replace(/\\/g, '\\\\')}" <${address}>`;
}

export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1);
}
