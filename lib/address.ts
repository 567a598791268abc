// Email addresses as users write them: `a@b.c`, `Name <a@b.c>`, `"Last, First" <a@b.c>`, or
// several of those joined by commas. Parsing is strict where it matters for safety (no CR/LF,
// no control characters) and for deliverability (a domain with a dot, an address ≤ 254 octets).

export interface Mailbox {
  /** Display name without quotes; empty when none was given. */
  name: string;
  /** local@domain, domain lower-cased. */
  address: string;
}

export class AddressError extends Error {
  readonly code = 'EADDRESS';
}

// RFC 5321 limits: 64 octets of local part, 254 of path.
const MAX_LOCAL = 64;
const MAX_ADDRESS = 254;
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$/;
const DOMAIN = /^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;
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

/** Validates a bare address and lower-cases its domain. */
export function normalizeAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) throw new AddressError(`"${address}" is not an email address`);
  const local = address.slice(0, at);
  const domain = address.slice(at + 1).toLowerCase();
  if (
    local.length > MAX_LOCAL ||
    !LOCAL_PART.test(local) ||
    local.startsWith('.') ||
    local.endsWith('.') ||
    local.includes('..')
  ) {
    throw new AddressError(`"${address}" has an invalid local part`);
  }
  if (!DOMAIN.test(domain)) throw new AddressError(`"${address}" has an invalid domain`);
  const normalized = `${local}@${domain}`;
  if (normalized.length > MAX_ADDRESS)
    throw new AddressError(`"${address}" is longer than ${MAX_ADDRESS} characters`);
  return normalized;
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
