// Waiting for something a test cannot be told about (a condition on an object, a log line, a
// Lease renewal): poll until it holds, then fail with what was last seen.
//
//   const secret = await eventually('the key Secret', () => getObject(ns, 'secret', name));

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `check` until it returns a value other than undefined or false, retrying on thrown errors
 * (a transient kubectl or fetch failure) except assertion failures, which end the wait at once. On
 * timeout, fails with what the last attempt threw and with `diagnose()` (process output, state).
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
  diagnose?: () => Promise<string> | string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      const lastError = last ? `\nlast error: ${(last as Error).message ?? String(last)}` : '';
      const details = diagnose
        ? await Promise.resolve()
            .then(diagnose)
            .catch((err: Error) => `(could not gather details: ${err.message})`)
        : '';
      assert.fail(`timed out after ${timeoutMs / 1000} s waiting for ${what}${lastError}\n${details}`);
    }
    await sleep(200);
  }
}
