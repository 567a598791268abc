// What a failed delivery means for the message, and when a deferred one is tried again. Decisions
// are taken on nodemailer's error codes, the SMTP reply code and the enhanced status code, by
// lib/bounce-class.ts (RFC 3463 classes: hard, soft, message, policy), never on message text but
// for the one exception documented there.

import { classifyRefusal, enhancedStatus, type BounceClass, type FailureKind } from '../lib/bounce-class.js';

export { classifyRefusal, enhancedStatus, type BounceClass, type FailureKind };

export interface DeliveryFailure {
  kind: FailureKind;
  /** Whose fault, when a server gave a verdict; absent when none answered (a timeout, DNS trouble). */
  class?: BounceClass;
  /** The enhanced status code (RFC 3463) of the reply, when it had one. */
  status?: string;
  /** The SMTP reply, when there was one. */
  reply?: string;
  /** nodemailer's error code (ECONNECTION, EENVELOPE, …). */
  code?: string;
  /** The SMTP command that was answered (RCPT TO, DATA, …). */
  command?: string;
  message: string;
}

/**
 * How long a persistent-transient refusal (5.2.2 mailbox full, 5.4.x routing, 5.3.x system) is
 * retried, counted from when the message became due, before the message fails. Shorter than the
 * message lifetime (5 days by default): a mailbox that is still full after a day is usually
 * abandoned, and every retry of it spends the sending IP's standing with that receiver. The
 * address is never suppressed for it.
 */
export const SOFT_RETRY_SECONDS = 24 * 3600;

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
 *   classifyDeliveryError(err).kind   // 'bounce' for a 550 5.1.1 to RCPT TO, 'defer' for a 451 or a timeout
 */
export function classifyDeliveryError(err: unknown): DeliveryFailure {
  const e = (typeof err === 'object' && err !== null ? err : {}) as SmtpErrorFields;
  const code = typeof e.code === 'string' ? e.code : undefined;
  const command = typeof e.command === 'string' ? e.command : undefined;
  const responseCode = typeof e.responseCode === 'number' ? e.responseCode : undefined;
  const reply = typeof e.response === 'string' ? e.response : undefined;
  const status = enhancedStatus(reply);
  const base = compactFailure({
    reply,
    code,
    command,
    status,
    message: typeof e.message === 'string' ? e.message : String(err),
  });

  // No reply (connection refused, timeout, TLS, DNS trouble): no verdict, try again later.
  if (responseCode === undefined) return { kind: 'defer', ...base };
  // 503 is a bad command sequence on that connection, not a verdict on the message.
  if (responseCode === 503) return { kind: 'defer', ...base };
  // A relay refusing our credentials is ours to fix; the recipients are not at fault.
  if (code === 'EAUTH' || code === 'ENOAUTH') return { kind: 'defer', ...base };
  const verdict = classifyRefusal({ replyCode: responseCode, status, command, reply });
  return { ...verdict, ...base };
}

function compactFailure<T extends Record<string, unknown>>(fields: T): T {
  for (const key of Object.keys(fields)) if (fields[key] === undefined) delete fields[key];
  return fields;
}

/**
 * How long a deferred failure may be retried, counted from when the message became due: the
 * message's lifetime, or SOFT_RETRY_SECONDS for a persistent-transient 5xx.
 *
 *   retryLifetimeSeconds({ kind: 'defer', class: 'soft', status: '5.2.2' }, 5 * 86400)  // 86400
 */
export function retryLifetimeSeconds(
  failure: Pick<DeliveryFailure, 'class' | 'status'>,
  lifetimeSeconds: number,
): number {
  const persistent = failure.class === 'soft' && failure.status?.startsWith('5.');
  return persistent ? Math.min(lifetimeSeconds, SOFT_RETRY_SECONDS) : lifetimeSeconds;
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
