// The checks of a send that JSON Schema has no word for, used as refinements by the schemas in
// api/schemas-send.ts: a string Postgres cannot store (NUL, a lone surrogate), a header that could
// be injected or forged, an address the parser refuses or would stall on, base64 that does not
// decode, an RFC 3339 date that names no instant, template variables nested or sized past what the
// render sandbox can take. Each returns why the value is at fault, in words a caller can act on,
// or undefined.

import { AddressError, parseMailboxList, type Mailbox } from '../lib/address.js';
import { isHeaderName, reservedHeader, type ReservedHeaderGroup } from '../lib/headers.js';

/**
 * Runs of white space in an address field. parseMailbox's pattern takes time proportional to the
 * length of the string times the longest run; no address or display name needs more than a few
 * spaces in a row.
 */
export const MAX_WHITESPACE_RUN = 16;
/**
 * Levels of nesting in template.variables. Real variables are a record with lists of records
 * (an order and its lines); a bound well above that keeps the walk below and every JSON
 * round-trip after it (Postgres' jsonb, the render sandbox) far from a stack limit.
 */
export const MAX_VARIABLES_DEPTH = 32;
/**
 * Size of template.variables, about as JSON. They are parsed again in the render sandbox for every
 * recipient, inside a heap of as little as 8 MiB (config.renderMemoryMb's minimum), where parsed
 * JSON takes several times its text.
 */
export const MAX_VARIABLES_BYTES = 256 * 1024;
/** Faults listed from template.variables, which can hold many more values than the other fields. */
const MAX_VARIABLES_FAULTS = 10;

const ADDRESS_WHITESPACE_RUN = new RegExp(`\\s{${MAX_WHITESPACE_RUN + 1}}`);
const LINE_BREAK = /[\r\n]/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const CONTROL_IN_LINE = /[\u0000-\u0008\u000a-\u001f\u007f]/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const FILENAME_FORBIDDEN = /[\u0000-\u001f\u007f/\\]/;
/** MIME wraps base64 at 76 columns; a client may send it wrapped. */
const BASE64_WHITESPACE = /[\t\n\r ]/g;
const BASE64_CHARS = /^[A-Za-z0-9+/=]*$/;
/** RFC 3339 5.6 date-time: a full date, a full time and a time zone. */
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;
/** A variable name that reads as a path segment without quoting. */
const PLAIN_KEY = /^[A-Za-z_$][\w$]{0,63}$/;

const RESERVED_MESSAGES: Record<ReservedHeaderGroup, string> = {
  composed: 'is set by Mailplane; use the matching field instead',
  identity: 'is set by Mailplane; use the matching field instead',
  trace: 'is a trace field that only the servers a message passes through may add',
  authentication: 'is a signature or verdict that only the servers signing or verifying a message may add',
};

// String.prototype.isWellFormed is ES2024 (Node 20); tsconfig's lib stops at ES2023.
const isWellFormed = (s: string): boolean => (s as string & { isWellFormed(): boolean }).isWellFormed();

/**
 * Why Postgres would refuse this string, or undefined: neither text nor jsonb can hold U+0000,
 * and jsonb refuses the `\ud800` escape that JSON.stringify writes for a lone surrogate.
 */
export function unstorable(s: string): string | undefined {
  if (s.includes('\u0000')) return 'must not contain a NUL character (\\u0000)';
  if (!isWellFormed(s)) return 'must not contain a lone UTF-16 surrogate (\\ud800 to \\udfff unpaired)';
  return undefined;
}

/** Why an address string cannot be parsed safely, or undefined. */
export function addressStringFault(value: string): string | undefined {
  if (ADDRESS_WHITESPACE_RUN.test(value))
    return `must not contain more than ${MAX_WHITESPACE_RUN} spaces in a row`;
  return unstorable(value);
}

/** The mailboxes of "a@x.io, Name <b@y.io>", or the parser's words for what is wrong. */
export function parseMailboxes(value: string): Mailbox[] | string {
  try {
    return parseMailboxList(value);
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    return err.message;
  }
}

/** A one-line header field (the subject): neither a line break nor another control character. */
export function oneLineFault(value: string): string | undefined {
  if (LINE_BREAK.test(value)) return 'must not contain line breaks';
  if (CONTROL_IN_LINE.test(value)) return 'must not contain control characters';
  return undefined;
}

/** Why a custom header's name cannot be sent, or undefined. */
export function headerNameFault(name: string): string | undefined {
  if (!isHeaderName(name)) return 'is not a valid header name';
  const reserved = reservedHeader(name);
  return reserved ? RESERVED_MESSAGES[reserved] : undefined;
}

/** Why a custom header's value cannot be sent as given, or undefined. */
export function headerValueFault(value: string): string | undefined {
  if (LINE_BREAK.test(value)) return 'must not contain line breaks';
  // NUL is a control character too, but Postgres' refusal of it is the reason worth naming.
  const unstorableWhy = unstorable(value);
  if (unstorableWhy) return unstorableWhy;
  if (CONTROL_IN_LINE.test(value)) return 'must not contain control characters';
  return undefined;
}

/** Whether a file name has a path separator or a control character (a header it could break). */
export const filenameForbidden = (name: string): boolean => FILENAME_FORBIDDEN.test(name);

/** The decoded size of a base64 string; undefined when there is none, -1 when it is not base64. */
export function base64Bytes(content: string): number | undefined {
  if (content === '') return undefined;
  // Unwrapped, the common case, is one scan; wrapped is unwrapped first.
  const unwrapped = BASE64_CHARS.test(content);
  const compact = unwrapped ? content : content.replace(BASE64_WHITESPACE, '');
  if (compact === '') return undefined;
  if (!unwrapped && !BASE64_CHARS.test(compact)) return -1;
  // Padding: one or two `=`, only at the end, to a multiple of four.
  const pad = compact.indexOf('=');
  const padding = pad === -1 ? 0 : compact.length - pad;
  if (compact.length % 4 !== 0 || padding > 2 || (padding === 2 && !compact.endsWith('=='))) return -1;
  return (compact.length / 4) * 3 - padding;
}

/**
 * Milliseconds since the epoch of an RFC 3339 date-time that names a real instant (no 2030-02-30,
 * no 25:00), fractions of a second kept to the millisecond; a message saying what is out of range;
 * or undefined when it is not RFC 3339 at all.
 *
 *   parseDateTime('2030-01-01T09:00:00.5+02:00')  // 1893481200500
 */
export function parseDateTime(value: string): number | string | undefined {
  const m = RFC3339.exec(value);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (month < 1 || month > 12) return `has month ${m[2]}, which is not 01 to 12`;
  const days = daysInMonth(year, month);
  if (day < 1 || day > days) return `has day ${m[3]}, but ${m[1]}-${m[2]} has ${days} days`;
  // RFC 3339 allows :60 only for a leap second, which neither a Date nor Postgres can hold.
  if (hour > 23 || minute > 59 || second > 59) return 'has a time of day out of range (00:00:00 to 23:59:59)';
  const offsetHours = m[8] ? Number(m[9]) : 0;
  const offsetMinutes = m[8] ? Number(m[10]) : 0;
  if (offsetHours > 23 || offsetMinutes > 59) return 'has a time zone offset out of range (-23:59 to +23:59)';
  const millis = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  // setUTCFullYear, unlike Date.UTC, does not read the years 0 to 99 as 1900 to 1999.
  const local = new Date(0);
  local.setUTCFullYear(year, month - 1, day);
  local.setUTCHours(hour, minute, second, millis);
  const offset = (m[8] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000;
  return local.getTime() - offset;
}

/** Days in a month of the proleptic Gregorian calendar, leap years included. */
function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** One fault inside template.variables: the path below it (`.user.names[1]`, or '' for all of it). */
export interface VariablesFault {
  at: string;
  message: string;
}

/**
 * Walks template.variables once: every name and string storable, every number one that JSON keeps
 * exactly, the nesting and the size bounded. Returns the faults, at most MAX_VARIABLES_FAULTS of
 * them and the bound that stopped the walk.
 *
 *   variablesFaults({ name: 'a\u0000' })  // [{ at: '.name', message: 'must not contain a NUL …' }]
 */
export function variablesFaults(variables: Record<string, unknown>): VariablesFault[] {
  const faults: VariablesFault[] = [];
  let budget = MAX_VARIABLES_BYTES;
  let found = 0;
  // The keys and indexes down to the value in hand; spelt out as a path only for a fault.
  const trail: (string | number)[] = [];
  const fault = (message: string) => {
    if (++found > MAX_VARIABLES_FAULTS) return;
    faults.push({
      at: trail.map((k) => (typeof k === 'number' ? `[${k}]` : pathSegment(k))).join(''),
      message,
    });
  };
  // Each step charges about its JSON length; false stops the walk, over the size or depth bound.
  const walk = (value: unknown, depth: number): boolean => {
    if (typeof value === 'string') {
      budget -= value.length + 2;
      if (budget < 0) return false;
      const why = unstorable(value);
      if (why) fault(why);
    } else if (typeof value === 'number') {
      budget -= 8;
      // JSON.parse reads 1e400 as Infinity, which JSON.stringify would store as null.
      if (!Number.isFinite(value)) fault('must be a finite number');
      // Beyond 2^53 − 1 a number is an integer rounded to a multiple of 2 or more: an id sent as a
      // 64-bit number has already lost its last digits here. A string keeps every one.
      else if (Math.abs(value) > Number.MAX_SAFE_INTEGER)
        fault('is beyond ±(2^53 − 1), where JSON numbers are rounded; send it as a string');
    } else if (typeof value === 'object' && value !== null) {
      if (depth >= MAX_VARIABLES_DEPTH) {
        faults.push({ at: '', message: `must not nest more than ${MAX_VARIABLES_DEPTH} levels deep` });
        return false;
      }
      budget -= 2;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          budget -= 1;
          if (budget < 0 || !step(i, value[i], depth)) return false;
        }
      } else {
        for (const key of Object.keys(value)) {
          budget -= key.length + 4;
          if (budget < 0 || !step(key, (value as Record<string, unknown>)[key], depth)) return false;
        }
      }
    } else budget -= 5; // true, false, null
    return budget >= 0;
  };
  // One member or element: its name checked, then its value, with the trail kept for a fault.
  const step = (k: string | number, item: unknown, depth: number): boolean => {
    trail.push(k);
    const why = typeof k === 'string' ? unstorable(k) : undefined;
    if (why) fault(`the name ${why}`);
    const ok = walk(item, depth + 1);
    trail.pop();
    return ok;
  };
  if (!walk(variables, 0) && budget < 0) {
    faults.push({ at: '', message: `must be at most ${MAX_VARIABLES_BYTES} bytes as JSON` });
  }
  return faults;
}

/** `.name`, or `["a b"]` for a name that does not read as one, cut short when long. */
function pathSegment(key: string): string {
  if (PLAIN_KEY.test(key)) return `.${key}`;
  return `[${JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key)}]`;
}
