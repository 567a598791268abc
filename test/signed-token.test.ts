// The tokens of public links are unforgeable, bound to their purpose and their fields, and do not
// depend on anything but the installation's key (so a link keeps working across restarts).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { signToken, verifyToken } from '../lib/signed-token.js';

const key = randomBytes(32);
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** The last character of 16 bytes in base64url with other bits below the two that count. */
const respell = (c: string) => ALPHABET[ALPHABET.indexOf(c) ^ 0b0001]!;

test('a token gives back its fields, under the same key and purpose only', () => {
  const token = signToken(key, 'unsubscribe', ['tenant-1', 'ada@bücher.example']);
  assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  assert.deepEqual(verifyToken(key, 'unsubscribe', token), ['tenant-1', 'ada@bücher.example']);
  assert.deepEqual(verifyToken(Buffer.from(key), 'unsubscribe', token), ['tenant-1', 'ada@bücher.example']);
  assert.equal(verifyToken(key, 'click', token), undefined);
  assert.equal(verifyToken(randomBytes(32), 'unsubscribe', token), undefined);
});

test('an altered, truncated or re-spelled token is refused', () => {
  const token = signToken(key, 'click', ['message-1', 'https://example.com/a?b=c#d']);
  const [payload, mac] = token.split('.') as [string, string];
  const other = Buffer.from('message-2\nhttps://evil.example/').toString('base64url');
  for (const bad of [
    `${other}.${mac}`,
    `${payload}.${mac.slice(0, -1)}`,
    `${payload}.${mac}A`,
    `${payload}`,
    `.${mac}`,
    `${payload}=.${mac}`,
    // 16 bytes in 22 characters leave 4 bits over: the same MAC spelled another way.
    `${payload}.${mac.slice(0, -1)}${respell(mac.at(-1)!)}`,
    '',
    'a.b.c',
  ]) {
    assert.equal(verifyToken(key, 'click', bad), undefined, bad);
  }
});

test('a field cannot smuggle a separator', () => {
  assert.throws(() => signToken(key, 'open', ['a\nb']), /line break/);
});
