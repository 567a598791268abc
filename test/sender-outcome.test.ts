// What a delivery error means for the message (RFC 3463 classes, against replies that Gmail,
// Exchange, Yahoo, Postfix, Exim and sendmail really send), and when a deferred message is tried again.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  classifyDeliveryError,
  classifyRefusal,
  enhancedStatus,
  nextAttemptAt,
  RETRY_SCHEDULE_SECONDS,
  retryLifetimeSeconds,
  SOFT_RETRY_SECONDS,
  type BounceClass,
} from '../sender/outcome.js';

const smtp = (code: string, responseCode: number | undefined, command?: string, response?: string) =>
  Object.assign(new Error('x'), {
    code,
    responseCode,
    command,
    response: response ?? (responseCode ? `${responseCode} x` : undefined),
  });

describe('classifying delivery errors', () => {
  const cases: [string, unknown, 'bounce' | 'defer' | 'fail'][] = [
    ['550 5.1.1 to RCPT TO bounces', smtp('EENVELOPE', 550, 'RCPT TO', '550 5.1.1 no such user'), 'bounce'],
    [
      'a null MX (556 5.1.10, no command) bounces',
      smtp('ENULLMX', 556, undefined, '556 5.1.10 null MX'),
      'bounce',
    ],
    ['554 5.7.1 after DATA fails (policy)', smtp('EMESSAGE', 554, 'DATA', '554 5.7.1 spam'), 'fail'],
    ['a bare 550 to RCPT TO saying nothing about the user fails', smtp('EENVELOPE', 550, 'RCPT TO'), 'fail'],
    ['451 to RCPT TO defers', smtp('EENVELOPE', 451, 'RCPT TO'), 'defer'],
    ['421 at the greeting defers', smtp('EPROTOCOL', 421, 'CONN'), 'defer'],
    ['503 (bad sequence) defers', smtp('EENVELOPE', 503, 'RCPT TO'), 'defer'],
    ['a refused connection defers', smtp('ESOCKET', undefined, 'CONN'), 'defer'],
    ['a timeout defers', smtp('ETIMEDOUT', undefined), 'defer'],
    ['535 from the relay (our credentials) defers', smtp('EAUTH', 535, 'AUTH PLAIN'), 'defer'],
    ['550 to MAIL FROM fails without blaming the recipient', smtp('EENVELOPE', 550, 'MAIL FROM'), 'fail'],
    ['something that is not an Error defers', 'boom', 'defer'],
  ];
  for (const [name, err, kind] of cases) {
    test(name, () => assert.equal(classifyDeliveryError(err).kind, kind));
  }

  test('the class, status, reply, code and command are kept for the event', () => {
    assert.deepEqual(classifyDeliveryError(smtp('EENVELOPE', 550, 'RCPT TO', '550 5.1.1 <a@b.c>: gone')), {
      kind: 'bounce',
      class: 'hard',
      status: '5.1.1',
      reply: '550 5.1.1 <a@b.c>: gone',
      code: 'EENVELOPE',
      command: 'RCPT TO',
      message: 'x',
    });
  });
});

describe('real replies, by RFC 3463 class: only a wrong address suppresses', () => {
  type Case = [
    who: string,
    command: string,
    reply: string,
    kind: 'bounce' | 'defer' | 'fail',
    cls: BounceClass,
  ];
  const cases: Case[] = [
    // Gmail
    [
      'Gmail',
      'RCPT TO',
      "550-5.1.1 The email account that you tried to reach does not exist. Please try\n550 5.1.1 double-checking the recipient's email address for typos",
      'bounce',
      'hard',
    ],
    [
      'Gmail',
      'RCPT TO',
      '552-5.2.2 The email account that you tried to reach is over quota.',
      'defer',
      'soft',
    ],
    ['Gmail', 'RCPT TO', "452-4.2.2 The recipient's inbox is out of storage space.", 'defer', 'soft'],
    ['Gmail', 'RCPT TO', '550-5.2.1 The email account that you tried to reach is disabled.', 'defer', 'soft'],
    ['Gmail', 'DATA', "552-5.2.3 Your message exceeded Google's message size limits.", 'fail', 'message'],
    [
      'Gmail',
      'DATA',
      '552-5.7.0 This message was blocked because its content presents a potential security issue.',
      'fail',
      'policy',
    ],
    [
      'Gmail',
      'DATA',
      '550-5.7.26 This mail has been blocked because the sender is unauthenticated.',
      'fail',
      'policy',
    ],
    [
      'Gmail',
      'DATA',
      '550-5.7.1 Our system has detected an unusual rate of unsolicited mail originating from your IP address.',
      'fail',
      'policy',
    ],
    ['Gmail', 'DATA', '554 5.6.0 Mail message is malformed. Not accepted.', 'fail', 'message'],
    ['Gmail', 'RCPT TO', '421-4.7.0 Try again later, closing connection.', 'defer', 'soft'],
    // Outlook / Exchange Online
    [
      'Exchange',
      'RCPT TO',
      '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
      'bounce',
      'hard',
    ],
    ['Exchange', 'RCPT TO', '550 5.1.1 RESOLVER.ADR.ExRecipNotFound; not found', 'bounce', 'hard'],
    [
      'Exchange',
      'DATA',
      '554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException',
      'defer',
      'soft',
    ],
    ['Exchange', 'DATA', '550 5.3.4 Message size exceeds fixed maximum message size', 'fail', 'message'],
    [
      'Exchange',
      'DATA',
      '554 5.6.211 Invalid MIME Content: Single text value size (32768) limit is exceeded',
      'fail',
      'message',
    ],
    [
      'Outlook',
      'RCPT TO',
      '550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus.',
      'fail',
      'policy',
    ],
    ['Outlook', 'MAIL FROM', '550 5.7.606 Access denied, banned sending IP [192.0.2.1].', 'fail', 'policy'],
    ['Exchange', 'RCPT TO', '452 4.3.1 Insufficient system resources', 'defer', 'soft'],
    // Yahoo
    [
      'Yahoo',
      'RCPT TO',
      "554 delivery error: dd This user doesn't have a yahoo.com account (ada@yahoo.com) [0] - mta1007.mail.gq1.yahoo.com",
      'bounce',
      'hard',
    ],
    [
      'Yahoo',
      'MAIL FROM',
      "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list",
      'fail',
      'policy',
    ],
    ['Yahoo', 'DATA', '554 5.7.9 Message not accepted for policy reasons.', 'fail', 'policy'],
    [
      'Yahoo',
      'RCPT TO',
      '421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints',
      'defer',
      'soft',
    ],
    // Postfix
    [
      'Postfix',
      'RCPT TO',
      '550 5.1.1 <ada@example.org>: Recipient address rejected: User unknown in local recipient table',
      'bounce',
      'hard',
    ],
    [
      'Postfix',
      'RCPT TO',
      '552 5.2.2 <ada@example.org>: Recipient address rejected: Mailbox full',
      'defer',
      'soft',
    ],
    ['Postfix', 'DATA', '552 5.3.4 Message size exceeds fixed limit', 'fail', 'message'],
    ['Postfix', 'RCPT TO', '554 5.7.1 <ada@example.org>: Relay access denied', 'fail', 'policy'],
    [
      'Postfix',
      'RCPT TO',
      '450 4.1.1 <ada@example.org>: Recipient address rejected: unverified address',
      'defer',
      'soft',
    ],
    ['Postfix', 'DATA', '500 5.5.0 Line too long', 'fail', 'message'],
    // Exim
    ['Exim', 'RCPT TO', '550 Unrouteable address', 'bounce', 'hard'],
    ['Exim', 'RCPT TO', '550 No Such User Here', 'bounce', 'hard'],
    ['Exim', 'DATA', '552 Message size exceeds maximum permitted', 'fail', 'message'],
    ['Exim', 'RCPT TO', '550 Administrative prohibition', 'fail', 'policy'],
    [
      'Exim',
      'RCPT TO',
      '550-Verification failed for <hello@example.com>\n550 Sender verify failed',
      'fail',
      'policy',
    ],
    ['Exim', 'DATA', '500 Line too long', 'fail', 'message'],
    // sendmail, and other servers without enhanced codes
    ['sendmail', 'RCPT TO', '550 5.1.1 <ada@example.org>... User unknown', 'bounce', 'hard'],
    ['sendmail', 'RCPT TO', '550 User unknown', 'bounce', 'hard'],
    ['sendmail', 'RCPT TO', '550 5.0.0 <ada@example.org>... User unknown', 'bounce', 'hard'],
    ['sendmail', 'RCPT TO', '550 5.7.1 <ada@example.org>... Relaying denied', 'fail', 'policy'],
    ['generic', 'RCPT TO', '550 Requested action not taken: mailbox unavailable', 'fail', 'policy'],
    ['generic', 'DATA', '550 User unknown', 'fail', 'policy'],
  ];
  for (const [who, command, reply, kind, cls] of cases) {
    test(`${who}, ${command}: ${reply.split('\n')[0]!.slice(0, 70)} → ${cls}`, () => {
      const err = smtp('EENVELOPE', Number(reply.slice(0, 3)), command, reply);
      const failure = classifyDeliveryError(err);
      assert.deepEqual([failure.kind, failure.class], [kind, cls]);
    });
  }

  test('the same decision from a DSN status alone, and a 4.x.x given up on is soft', () => {
    assert.deepEqual(classifyRefusal({ status: '5.1.1' }), { kind: 'bounce', class: 'hard' });
    assert.deepEqual(classifyRefusal({ status: '5.2.2' }), { kind: 'defer', class: 'soft' });
    assert.deepEqual(classifyRefusal({ status: '4.2.2' }), { kind: 'defer', class: 'soft' });
    assert.deepEqual(classifyRefusal({ status: '5.3.4' }), { kind: 'fail', class: 'message' });
    assert.deepEqual(classifyRefusal({ status: '5.7.1' }), { kind: 'fail', class: 'policy' });
    assert.deepEqual(classifyRefusal({ status: '5.0.0', replyCode: 550, reply: '550 user unknown' }), {
      kind: 'bounce',
      class: 'hard',
    });
  });

  test('qmail writes its enhanced code at the end of the line', () => {
    assert.equal(enhancedStatus('Sorry, no mailbox here by that name. (#5.1.1)'), '5.1.1');
  });
});

describe('persistent-transient refusals are retried for a bounded time', () => {
  const lifetime = 5 * 86400;
  test(`a 5.2.2 is retried for SOFT_RETRY_SECONDS (${SOFT_RETRY_SECONDS / 3600} h), a 4xx for the whole lifetime`, () => {
    const full = classifyDeliveryError(smtp('EENVELOPE', 552, 'RCPT TO', '552 5.2.2 mailbox full'));
    assert.equal(retryLifetimeSeconds(full, lifetime), SOFT_RETRY_SECONDS);
    const greylisted = classifyDeliveryError(smtp('EENVELOPE', 451, 'RCPT TO', '451 4.7.1 greylisted'));
    assert.equal(retryLifetimeSeconds(greylisted, lifetime), lifetime);
    const dueAt = new Date('2026-01-01T00:00:00Z');
    const dayLater = new Date(dueAt.getTime() + SOFT_RETRY_SECONDS * 1000);
    assert.equal(
      nextAttemptAt({
        attempt: 9,
        dueAt,
        now: dayLater,
        lifetimeSeconds: retryLifetimeSeconds(full, lifetime),
      }),
      undefined,
      'then the message fails',
    );
  });
});

describe('the retry schedule', () => {
  const dueAt = new Date('2026-01-01T00:00:00Z');
  const noJitter = () => 0;

  test('retries follow 1m, 5m, 15m, 30m, 1h, 2h, 4h, then every 4h', () => {
    const now = new Date(dueAt.getTime() + 1000);
    const delays = [1, 2, 3, 4, 5, 6, 7, 8, 20].map(
      (attempt) =>
        (nextAttemptAt({ attempt, dueAt, now, lifetimeSeconds: 5 * 86400, random: noJitter })!.getTime() -
          now.getTime()) /
        1000,
    );
    assert.deepEqual(delays, [...RETRY_SCHEDULE_SECONDS, 4 * 3600, 4 * 3600]);
  });

  test('jitter adds at most a tenth', () => {
    const now = new Date(dueAt.getTime() + 1000);
    const at = nextAttemptAt({ attempt: 1, dueAt, now, lifetimeSeconds: 86400, random: () => 0.999 })!;
    assert.ok(at.getTime() - now.getTime() < 66_000 && at.getTime() - now.getTime() > 65_000);
  });

  test('the last retry is at the end of the lifetime, and none after it', () => {
    const lifetimeSeconds = 3600;
    const nearEnd = new Date(dueAt.getTime() + 3590_000);
    assert.equal(
      nextAttemptAt({ attempt: 6, dueAt, now: nearEnd, lifetimeSeconds, random: noJitter })!.getTime(),
      dueAt.getTime() + 3600_000,
    );
    const atEnd = new Date(dueAt.getTime() + 3600_000);
    assert.equal(nextAttemptAt({ attempt: 7, dueAt, now: atEnd, lifetimeSeconds }), undefined);
  });
});
