// The Message-ID of an email's messages: the email's id at its From domain, the same for every
// recipient (they see one message, and replies thread across them) and every attempt (a retry or a
// duplicate after a crash is recognisably the same message) — unless the email came over SMTP
// with a Message-ID of its own, which is kept (sender/raw-message.ts) and so is what it shows.

import { AddressError, domainOf, parseMailbox } from './address.js';

/** Visible ASCII and inner spaces, at most a line long. */
const USABLE = /^[\x21-\x7e](?:[\x20-\x7e]{0,996}[\x21-\x7e])?$/;

/**
 * Whether a client's Message-ID (a field's unfolded value) is sent as it is: plain text on one
 * line. Another (empty, 8-bit, with control characters) is replaced by the email's own, so that
 * what the API and webhooks show is always what the recipients got.
 *
 *   usableMessageId('<order-42@shop.example.com>')   // true
 */
export function usableMessageId(value: string): boolean {
  return USABLE.test(value);
}

/**
 * The Message-ID Mailplane gives an email, without the angle brackets (as composeMessage takes it).
 *
 *   composedMessageId('5f0c…', 'Acme <hello@example.com>')   // '5f0c…@example.com'
 */
export function composedMessageId(emailId: string, fromAddress: string): string {
  return `${emailId}@${domainOf(parseMailbox(fromAddress).address)}`;
}

/**
 * The Message-ID its recipients see, as Resend's `message_id` shows it: with the angle brackets.
 *
 *   messageIdOf({ id, fromAddress: 'hello@example.com' })   // '<5f0c…@example.com>'
 */
export function messageIdOf(email: { id: string; fromAddress: string; submitted?: string | null }): string {
  if (email.submitted) return email.submitted;
  try {
    return `<${composedMessageId(email.id, email.fromAddress)}>`;
  } catch (err) {
    // A From that no longer parses (stored before a stricter check) cannot be sent from either;
    // a view or a webhook still shows an answer rather than fail on it.
    if (!(err instanceof AddressError)) throw err;
    return `<${email.id}@${domainOf(email.fromAddress).replace(/>\s*$/, '').toLowerCase()}>`;
  }
}
