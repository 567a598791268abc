// The envelope sender (Return-Path) of every message with a return-path domain names the message
// it belongs to, so that a bounce arriving days later at the inbound listener finds its message
// without parsing the bounce's text: `bounces+<message id>.<tag>@<return-path domain>` (VERP).
// The tag is an HMAC of the message id under the installation's key, so that nobody who can send
// mail to the listener can bounce or suppress a message they did not receive.

import { createHmac, timingSafeEqual } from 'node:crypto';

const LOCAL_PART_PREFIX = 'bounces+';
/**
 * 16 hex digits (64 bits): a forger needs ~2^63 tries per message, each one an SMTP transaction.
 * Hex, not base64, because MTAs may change the case of a local part. With the 36-character UUID
 * the local part is 61 characters, under the 64 that RFC 5321 allows.
 */
const TAG_LENGTH = 16;
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const VERP_LOCAL_PART = new RegExp(`^bounces\\+(${UUID})\\.([0-9a-f]{${TAG_LENGTH}})$`, 'i');

function tag(secretKey: Buffer, messageId: string): string {
  // A label of its own keeps these tags unrelated to anything else derived from the same key.
  return createHmac('sha256', secretKey)
    .update('mailplane/v1/verp\0')
    .update(messageId.toLowerCase())
    .digest('hex')
    .slice(0, TAG_LENGTH);
}

/**
 * The return path of one message.
 *
 *   bounceAddress(config.secretKey, message.id, 'bounces.example.com')
 *   // 'bounces+0b6c…-…c3.5f0e9a1c2b7d8e4f@bounces.example.com'
 */
export function bounceAddress(secretKey: Buffer, messageId: string, returnPathDomain: string): string {
  return `${LOCAL_PART_PREFIX}${messageId}.${tag(secretKey, messageId)}@${returnPathDomain}`;
}

/**
 * The message id a return path names, or undefined when the address is not one, or its tag is
 * wrong (forged, or signed under another installation's key). Any domain is accepted: the tag
 * alone proves the address came from here.
 *
 *   messageIdOfBounceAddress(config.secretKey, 'bounces+…@bounces.example.com')   // '0b6c…' | undefined
 */
export function messageIdOfBounceAddress(secretKey: Buffer, address: string): string | undefined {
  const at = address.lastIndexOf('@');
  if (at < 0) return undefined;
  const match = VERP_LOCAL_PART.exec(address.slice(0, at));
  if (!match) return undefined;
  const messageId = match[1]!.toLowerCase();
  const expected = Buffer.from(tag(secretKey, messageId));
  const given = Buffer.from(match[2]!.toLowerCase());
  return timingSafeEqual(expected, given) ? messageId : undefined;
}
