// Whose fault a refused delivery is, by RFC 3463: the one classification of synchronous SMTP
// replies (sender/outcome.ts) and of the bounces that come back later (smtp/inbound-server.ts).
// Codes in, decision out; nothing here reads a clock, a database or (but for USER_UNKNOWN) text.
//
//   5.1.x  the address (no such user, no such domain, 5.1.10 null MX)  → `hard`: bounce, suppress
//   5.2.x  the mailbox (full, disabled); 5.3.x, 5.4.x the receiving system or the route: persistent
//          transient, "it may work later"                               → `soft`: retry for a
//          bounded time (sender/outcome.ts SOFT_RETRY_SECONDS), then fail; never suppress
//   5.2.3, 5.3.3, 5.3.4 (too big, unsupported), 5.5.x (syntax, line too long), 5.6.x (content)
//          the message                                                  → `message`: fail it
//   5.7.x  policy, reputation, spam, authentication                     → `policy`: fail it
//   4.x.x  transient                                                    → `soft`, deferred
//
// Only a `hard` failure says the address is wrong; every other class leaves it alone, since the
// next message (smaller, different content, later) may well be delivered.

/** What becomes of the message. */
export type FailureKind =
  /** The recipient's address is wrong for good: bounce, and suppress the address. */
  | 'bounce'
  /** Try again later: a 4xx, a persistent-transient 5xx, or the server could not be reached. */
  | 'defer'
  /** Refused for good, but not because of the address (the message, a policy, our MAIL FROM). */
  | 'fail';

/** Whose fault a refusal is, as the event's `class` says to statistics and webhooks. */
export type BounceClass = 'hard' | 'soft' | 'message' | 'policy';

/** `550 5.1.1 …`, `550-5.1.1 …`: the enhanced code right after the reply code (RFC 2034). */
const ENHANCED_IN_REPLY = /^[245]\d\d[ -]([245]\.\d{1,3}\.\d{1,3})(?!\d)/;
/** qmail writes the code at the end of its own lines: `Sorry, no mailbox here by that name. (#5.1.1)`. */
const QMAIL_CODE = /\(#([245]\.\d{1,3}\.\d{1,3})\)/;

/**
 * The one place text is read, as a last resort: a permanent reply to RCPT TO that has no enhanced
 * code (or an undefined one, X.0.0), as sendmail, Exim, qmail and Yahoo still send, is a `hard`
 * failure only when it says the user does not exist. Anything else without a code is `policy`
 * (failed, not suppressed): RFC 5321's 550 covers "no access" and policy refusals too, and
 * suppressing on a guess would lose a good address for good.
 */
const USER_UNKNOWN =
  /\b(?:user|mailbox|recipient|address|account)\s+(?:is\s+)?(?:unknown|not\s+found|does\s*n[o']t\s+exist|not\s+exist)|\bno\s+such\s+(?:user|mailbox|recipient|address|account)|\bunknown\s+(?:user|mailbox|recipient)|\bunrouteable\s+address|\bdoes\s*n[o']t\s+have\s+an?\s+[\w.-]+\s+account|\bno\s+mailbox\s+here\b/i;

/** The enhanced status code of a reply, or undefined. */
export function enhancedStatus(reply: string | undefined): string | undefined {
  if (!reply) return undefined;
  return ENHANCED_IN_REPLY.exec(reply.trimStart())?.[1] ?? QMAIL_CODE.exec(reply)?.[1];
}

export interface Verdict {
  kind: FailureKind;
  class: BounceClass;
}

/**
 * Classifies a refusal by its codes: the basic reply code (when there was a reply), the enhanced
 * status (from the reply or a DSN's Status field) and the command that was answered.
 *
 *   classifyRefusal({ replyCode: 552, status: '5.3.4', command: 'DATA' })  // { kind: 'fail', class: 'message' }
 *   classifyRefusal({ status: '5.2.2' })                                    // { kind: 'defer', class: 'soft' }
 */
export function classifyRefusal(r: {
  replyCode?: number;
  status?: string;
  command?: string;
  /** The reply text, read only for USER_UNKNOWN. */
  reply?: string;
}): Verdict {
  const status = r.status && /^[245]\.\d{1,3}\.\d{1,3}$/.test(r.status) ? r.status : undefined;
  const [klass, subject, detail] = status ? status.split('.').map(Number) : [];
  const permanent = klass === 5 || (klass === undefined && (r.replyCode ?? 0) >= 500);
  if (!permanent) return { kind: 'defer', class: 'soft' };

  // Our envelope sender (or the size we declared for it) was refused: the address is fine.
  if (r.command === 'MAIL FROM') return { kind: 'fail', class: subject === 7 ? 'policy' : 'message' };

  switch (subject) {
    case 1:
      // X.1.7 and X.1.8 are about the sender's address, not the recipient's.
      return detail === 7 || detail === 8
        ? { kind: 'fail', class: 'message' }
        : { kind: 'bounce', class: 'hard' };
    case 2:
      // X.2.3: message length exceeds an administrative limit (Gmail's size refusal).
      return detail === 3 ? { kind: 'fail', class: 'message' } : { kind: 'defer', class: 'soft' };
    case 3:
      // X.3.3: the system cannot take a feature the message uses; X.3.4: message too big.
      return detail === 3 || detail === 4
        ? { kind: 'fail', class: 'message' }
        : { kind: 'defer', class: 'soft' };
    case 4:
      return { kind: 'defer', class: 'soft' };
    case 5:
    case 6:
      return { kind: 'fail', class: 'message' };
    case 7:
      return { kind: 'fail', class: 'policy' };
  }

  // No enhanced code, or an undefined one (X.0.0): the basic reply code, then the last resort.
  const code = r.replyCode;
  const atRecipient = r.command === undefined || r.command === 'RCPT TO';
  if (
    atRecipient &&
    (code === undefined || [550, 551, 553, 554].includes(code)) &&
    USER_UNKNOWN.test(r.reply ?? '')
  )
    return { kind: 'bounce', class: 'hard' };
  // 500-502, 504: the server did not take our command or its syntax ("500 Line too long");
  // 552: exceeded storage allocation, at DATA the size of the message.
  if (code !== undefined && (code < 550 || code === 552)) return { kind: 'fail', class: 'message' };
  return { kind: 'fail', class: 'policy' };
}
