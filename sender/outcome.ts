// What a failed delivery means for the message, and when a deferred one is tried again. Decisions
// are taken on nodemailer's error codes and the SMTP reply code, never on message text.

export type FailureKind =
  /** The recipient's server refused it for good: bounce, and suppress the address. */
  | 'bounce'
  /** Try again later: a 4xx, or the server could not be reached. */
  | 'defer'
  /** Refused for good, but not because of the recipient (e.g. our MAIL FROM): no suppression. */
  | 'fail';

export interface DeliveryFailure {
  kind: FailureKind;
  /** The SMTP reply, when there was one. */
  reply?: string;
  /** nodemailer's error code (ECONNECTION, EENVELOPE, …). */
  code?: string;
  /** The SMTP command that was answered (RCPT TO, DATA, …). */
  command?: string;
  message: string;
}

interface SmtpErrorFields {
  code?: unknown;
  responseCode?: unknown;
  response?: unknown;
  command?: unknown;
  message?: unknown;
}

/**
 * Classifies a transport error.
 *
 *   classifyDeliveryError(err).kind   // 'bounce' for a 550 to RCPT TO, 'defer' for a 451 or a timeout
 */
export function classifyDeliveryError(err: unknown): DeliveryFailure {
  const e = (typeof err === 'object' && err !== null ? err : {}) as SmtpErrorFields;
  const code = typeof e.code === 'string' ? e.code : undefined;
  const command = typeof e.command === 'string' ? e.command : undefined;
  const responseCode = typeof e.responseCode === 'number' ? e.responseCode : undefined;
  const reply = typeof e.response === 'string' ? e.response : undefined;
  const base = { reply, code, command, message: typeof e.message === 'string' ? e.message : String(err) };

  // No reply (connection refused, timeout, TLS, DNS trouble), or a transient one. 503 is a bad
  // command sequence on that connection, not a verdict on the message.
  if (responseCode === undefined || responseCode < 500 || responseCode === 503)
    return { kind: 'defer', ...base };
  // A relay refusing our credentials is ours to fix; the recipients are not at fault.
  if (code === 'EAUTH' || code === 'ENOAUTH') return { kind: 'defer', ...base };
  // Our envelope sender was refused: retrying gets the same answer, but the recipient is fine.
  if (command === 'MAIL FROM') return { kind: 'fail', ...base };
  return { kind: 'bounce', ...base };
}

/**
 * Seconds from an attempt to the next, by attempt number (1 = the first attempt); the last value
 * repeats until the message's lifetime runs out. Short at first, because most deferrals are
 * greylisting or a brief overload, then hours apart.
 */
export const RETRY_SCHEDULE_SECONDS = [60, 5 * 60, 15 * 60, 30 * 60, 3600, 2 * 3600, 4 * 3600];

/** Up to this fraction is added to each delay, so that a burst deferred together does not return together. */
const RETRY_JITTER = 0.1;

/**
 * When to try a deferred message again, or undefined when its lifetime has run out. The last
 * attempt is scheduled at the end of the lifetime rather than after it.
 *
 *   nextAttemptAt({ attempt: 1, dueAt, now, lifetimeSeconds: 5 * 86400 })  // about a minute from now
 */
export function nextAttemptAt(options: {
  attempt: number;
  dueAt: Date;
  now: Date;
  lifetimeSeconds: number;
  random?: () => number;
}): Date | undefined {
  const { attempt, dueAt, now, lifetimeSeconds, random = Math.random } = options;
  const expiresAt = dueAt.getTime() + lifetimeSeconds * 1000;
  if (now.getTime() >= expiresAt) return undefined;
  const base = RETRY_SCHEDULE_SECONDS[Math.min(Math.max(attempt, 1), RETRY_SCHEDULE_SECONDS.length) - 1]!;
  const delayMs = base * 1000 * (1 + RETRY_JITTER * random());
  return new Date(Math.min(now.getTime() + delayMs, expiresAt));
}
