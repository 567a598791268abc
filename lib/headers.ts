// The header fields a caller may not set, in one place: the API refuses them (api/validate.ts) and
// the composer drops them (sender/compose.ts), as a second line of defence for jobs queued by a
// version that let them through. A field is reserved when Mailplane writes it itself, when it would
// disclose the blind copies, or when a receiver trusts it as evidence of where a message has been
// and who vouched for it, which no sender may forge.

/** Written by the composer from the request's own fields; a second copy would contradict them. */
const COMPOSED = [
  'from',
  'to',
  'cc',
  'reply-to',
  'subject',
  'date',
  'message-id',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'content-disposition',
];

/**
 * Who a message is from or for, beyond the composed fields: a `Bcc` header would show every
 * recipient the blind copies, and `Sender` names an agent other than From (clients show
 * "on behalf of").
 */
const IDENTITY = ['bcc', 'sender'];

/**
 * Trace fields (RFC 5321 4.4, RFC 5322 3.6.7): added by each server on the way, and read by the
 * receiver to judge the path. `Return-Path` is written by the final server from the envelope;
 * `Delivered-To` drives loop detection, so a forged one gets a message bounced as a loop.
 */
const TRACE = ['return-path', 'received', 'received-spf', 'delivered-to'];

/**
 * Signatures and the verdicts on them: Mailplane's own DKIM signature is added after composing,
 * and `Authentication-Results` and the ARC set (RFC 8617) are what a receiver or a forwarder
 * records having verified; a forged verdict is trusted by whatever reads it next.
 */
const AUTHENTICATION = ['dkim-signature', 'domainkey-signature', 'authentication-results'];
/** Every ARC field (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results, and any later). */
const AUTHENTICATION_PREFIX = 'arc-';

/** Why a field is reserved: the group above it belongs to. */
export type ReservedHeaderGroup = 'composed' | 'identity' | 'trace' | 'authentication';

const RESERVED = new Map<string, ReservedHeaderGroup>([
  ...COMPOSED.map((name) => [name, 'composed'] as const),
  ...IDENTITY.map((name) => [name, 'identity'] as const),
  ...TRACE.map((name) => [name, 'trace'] as const),
  ...AUTHENTICATION.map((name) => [name, 'authentication'] as const),
]);

/**
 * A header field name as RFC 5322 2.2 allows it (printable ASCII but the colon), at most 76
 * characters so that the name and its colon fit the first line of a folded field.
 */
const FIELD_NAME = /^[!-9;-~]{1,76}$/;

/**
 * Why a caller may not set this header field, whatever its case; undefined when it may.
 *
 *   reservedHeader('ARC-Seal')  // 'authentication'
 *   reservedHeader('X-Entity-Ref-ID')  // undefined
 */
export function reservedHeader(name: string): ReservedHeaderGroup | undefined {
  const lower = name.toLowerCase();
  return RESERVED.get(lower) ?? (lower.startsWith(AUTHENTICATION_PREFIX) ? 'authentication' : undefined);
}

/**
 * True when `name` is a well-formed header field name.
 *
 *   isHeaderName('X-Campaign')  // true
 *   isHeaderName('Bad Name:')  // false
 */
export function isHeaderName(name: string): boolean {
  return FIELD_NAME.test(name);
}
