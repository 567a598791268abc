// One-click unsubscribe (RFC 8058, RFC 2369): the two ways a message offers to stop mail to its
// recipient, and how each is read back.
//
// - The https link `/u/<token>`: a signed token (lib/signed-token.ts, purpose `unsubscribe`) that
//   carries the tenant, the address and the message in clear under an HMAC of the installation's
//   key. The tenant and the address are what is suppressed, so the link works for as long as the
//   installation keeps its key, long after retention has trimmed the message; the message id names
//   the timeline the `unsubscribed` event goes on, while it exists.
// - The mailto address `unsub+<message id>.<tag>@<return-path domain>`, taken by the inbound
//   listener: a mail address cannot hold the token (RFC 5321 allows 64 octets of local part, and
//   MTAs may fold its case), so it names the message, whose tenant and recipient are looked up, and
//   a hex HMAC tag like the VERP return path's (lib/verp.ts), under a label of its own, so that
//   neither can stand for the other. `unsub+` (6) + UUID (36) + `.` + 16 hex digits = 59 octets.
//
//   unsubscribeUrl(key, 'https://mail.example.com', { tenantId, messageId, address })
//   // 'https://mail.example.com/u/<token>'
//   unsubscribeMailbox(key, messageId, 'bounces.example.com')   // 'unsub+0b6c….5f0e9a1c2b7d8e4f@bounces.example.com'

import { createHmac, timingSafeEqual } from 'node:crypto';
import { signToken, verifyToken } from './signed-token.js';

export interface UnsubscribeTarget {
  tenantId: string;
  messageId: string;
  /** Lower-cased, as suppressions store it. */
  address: string;
}

/** The path the api serves the link under (api/unsubscribe.ts). */
export const UNSUBSCRIBE_PATH = '/u/';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The token of a link, for one recipient of one message. */
export function unsubscribeToken(secretKey: Buffer, t: UnsubscribeTarget): string {
  return signToken(secretKey, 'unsubscribe', [t.tenantId, t.messageId, t.address.toLowerCase()]);
}

/**
 * What a link's token names, or undefined for anything not signed here for an unsubscribe.
 *
 *   readUnsubscribeToken(config.secretKey, req.params.token)   // { tenantId, messageId, address } | undefined
 */
export function readUnsubscribeToken(secretKey: Buffer, token: string): UnsubscribeTarget | undefined {
  const fields = verifyToken(secretKey, 'unsubscribe', token);
  if (!fields || fields.length !== 3) return undefined;
  const [tenantId, messageId, address] = fields as [string, string, string];
  if (!UUID.test(tenantId) || !UUID.test(messageId) || !address.includes('@')) return undefined;
  return { tenantId, messageId, address };
}

/**
 * Where a sending domain's unsubscribe links are served: its tracking domain (spec.tracking.domain,
 * which the chart's Ingress serves over https), else the installation's public URL; none without
 * either, and then a message offers no link and no one-click unsubscribe.
 *
 *   unsubscribeBase('track.example.com', undefined)   // 'https://track.example.com'
 *   unsubscribeBase(null, 'https://mail.example.com')  // 'https://mail.example.com'
 */
export function unsubscribeBase(
  trackingDomain: string | null,
  publicUrl: string | undefined,
): string | undefined {
  return trackingDomain ? `https://${trackingDomain}` : publicUrl;
}

/** The https (or, in development, http) link under `base`, a URL without a trailing slash. */
export function unsubscribeUrl(secretKey: Buffer, base: string, t: UnsubscribeTarget): string {
  return `${base}${UNSUBSCRIBE_PATH}${unsubscribeToken(secretKey, t)}`;
}

const LOCAL_PART_PREFIX = 'unsub+';
/** 64 bits in hex, as the VERP tag: case-proof, and a forger needs ~2^63 SMTP transactions. */
const TAG_LENGTH = 16;
const UNSUBSCRIBE_LOCAL_PART = new RegExp(
  `^unsub\\+([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\\.([0-9a-f]{${TAG_LENGTH}})$`,
  'i',
);

function tag(secretKey: Buffer, messageId: string): string {
  return createHmac('sha256', secretKey)
    .update('mailplane/v1/unsubscribe-mailto\0')
    .update(messageId.toLowerCase())
    .digest('hex')
    .slice(0, TAG_LENGTH);
}

/** The mailto address of one message, on its return-path domain (whose MX is the inbound listener). */
export function unsubscribeMailbox(secretKey: Buffer, messageId: string, domain: string): string {
  return `${LOCAL_PART_PREFIX}${messageId}.${tag(secretKey, messageId)}@${domain}`;
}

/**
 * The message an unsubscribe address names, or undefined when it is not one or its tag is wrong.
 *
 *   messageIdOfUnsubscribeAddress(config.secretKey, 'UNSUB+0B6C….5F0E…@bounces.example.com')   // '0b6c…'
 */
export function messageIdOfUnsubscribeAddress(secretKey: Buffer, address: string): string | undefined {
  const at = address.lastIndexOf('@');
  if (at < 0) return undefined;
  const match = UNSUBSCRIBE_LOCAL_PART.exec(address.slice(0, at));
  if (!match) return undefined;
  const messageId = match[1]!.toLowerCase();
  const expected = Buffer.from(tag(secretKey, messageId));
  const given = Buffer.from(match[2]!.toLowerCase());
  return timingSafeEqual(expected, given) ? messageId : undefined;
}

/**
 * The header fields that offer the unsubscribe: `List-Unsubscribe` with whichever of the link and
 * the mailto address there are, and `List-Unsubscribe-Post` only with an https link, which RFC 8058
 * requires for one-click (a receiver POSTs to the first https URI). None when there is neither.
 *
 *   listUnsubscribeHeaders({ url: 'https://m.example.com/u/…', mailto: 'unsub+…@bounces.example.com' })
 *   // [{ key: 'List-Unsubscribe', value: '<https://…>, <mailto:unsub+…>' },
 *   //  { key: 'List-Unsubscribe-Post', value: 'List-Unsubscribe=One-Click' }]
 */
export function listUnsubscribeHeaders(offer: {
  url?: string;
  mailto?: string;
}): { key: string; value: string }[] {
  const uris = [
    ...(offer.url ? [`<${offer.url}>`] : []),
    ...(offer.mailto ? [`<mailto:${offer.mailto}?subject=unsubscribe>`] : []),
  ];
  if (uris.length === 0) return [];
  return [
    { key: 'List-Unsubscribe', value: uris.join(', ') },
    ...(offer.url?.startsWith('https://')
      ? [{ key: 'List-Unsubscribe-Post', value: 'List-Unsubscribe=One-Click' }]
      : []),
  ];
}
