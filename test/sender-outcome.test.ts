// What a delivery error means for the message, and when a deferred message is tried again.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { classifyDeliveryError, nextAttemptAt, RETRY_SCHEDULE_SECONDS } from '../sender/outcome.js';

const smtp = (code: string, responseCode: number | undefined, command?: string) =>
  Object.assign(new Error('x'), {
    code,
    responseCode,
    command,
    response: responseCode ? `${responseCode} x` : undefined,
  });

describe('classifying delivery errors', () => {
  const cases: [string, unknown, 'bounce' | 'defer' | 'fail'][] = [
    ['550 to RCPT TO bounces', smtp('EENVELOPE', 550, 'RCPT TO'), 'bounce'],
    ['554 after DATA bounces', smtp('EMESSAGE', 554, 'DATA'), 'bounce'],
    ['a null MX (556, no command) bounces', smtp('ENULLMX', 556), 'bounce'],
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

  test('the reply, code and command are kept for the event', () => {
    assert.deepEqual(classifyDeliveryError(smtp('EENVELOPE', 550, 'RCPT TO')), {
      kind: 'bounce',
      reply: '550 x',
      code: 'EENVELOPE',
      command: 'RCPT TO',
      message: 'x',
    });
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
