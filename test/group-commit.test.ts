// Group commit: concurrent writers share a write, and one writer's bad item fails only that writer.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createGroupCommitter } from '../lib/group-commit.js';

test('writes arriving while one is in flight go together in the next write', async () => {
  const writes: number[][] = [];
  const committer = createGroupCommitter<number>(
    async (items) => {
      writes.push(items);
      await new Promise((r) => setTimeout(r, 10));
    },
    { maxInFlight: 1, maxGroup: 100 },
  );
  await Promise.all(Array.from({ length: 10 }, (_, i) => committer.write([i])));
  assert.deepEqual(writes, [[0], [1, 2, 3, 4, 5, 6, 7, 8, 9]]);
});

test('a group never exceeds maxGroup items', async () => {
  const sizes: number[] = [];
  const committer = createGroupCommitter<number>(
    async (items) => {
      sizes.push(items.length);
      await new Promise((r) => setImmediate(r));
    },
    { maxInFlight: 1, maxGroup: 3 },
  );
  await Promise.all(Array.from({ length: 10 }, (_, i) => committer.write([i])));
  assert.ok(sizes.every((n) => n <= 3));
  assert.equal(
    sizes.reduce((a, b) => a + b),
    10,
  );
});

test("one writer's failing item fails that writer alone; the others are written", async () => {
  const written: number[] = [];
  const committer = createGroupCommitter<number>(
    async (items) => {
      await new Promise((r) => setTimeout(r, 5));
      if (items.includes(13)) throw Object.assign(new Error('duplicate'), { code: '23505' });
      written.push(...items);
    },
    { maxInFlight: 1, maxGroup: 100 },
  );
  const results = await Promise.allSettled([1, 2, 13, 4].map((n) => committer.write([n])));
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'fulfilled', 'rejected', 'fulfilled'],
  );
  assert.deepEqual(written.sort(), [1, 2, 4]);
  await committer.drain();
});
