// The independent DKIM verifier (test/helpers/dkim.ts) is only worth something if it can fail:
// these tests sign with mailauth, as the sender does, and show that dkimpy passes what is intact
// and rejects a changed body, a wrong key, a missing key and a missing signature.

import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { verifyDkimIndependently } from './helpers/dkim.js';

interface SignatureData {
  signingDomain: string;
  selector: string;
  privateKey: string;
  algorithm: 'rsa-sha256' | 'ed25519-sha256';
}

// mailauth ships no type declarations; this is the part of lib/dkim/sign.js used here.
const { dkimSign } = createRequire(import.meta.url)('mailauth/lib/dkim/sign.js') as {
  dkimSign(
    message: Buffer,
    options: { signatureData: SignatureData[] },
  ): Promise<{ signatures: string; errors: unknown[] }>;
};

const DOMAIN = 'example.com';

interface Key {
  selector: string;
  algorithm: SignatureData['algorithm'];
  privateKey: string;
  /** The TXT value a user publishes at <selector>._domainkey.<domain>. */
  record: string;
}

function rsaKey(selector: string): Key {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const p = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  return { selector, algorithm: 'rsa-sha256', privateKey: pem(privateKey), record: `v=DKIM1; k=rsa; p=${p}` };
}

function ed25519Key(selector: string): Key {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  // RFC 8463: p= is the bare 32-byte key, not the SubjectPublicKeyInfo that wraps it.
  const p = publicKey.export({ type: 'spki', format: 'der' }).subarray(-32).toString('base64');
  return {
    selector,
    algorithm: 'ed25519-sha256',
    privateKey: pem(privateKey),
    record: `v=DKIM1; k=ed25519; p=${p}`,
  };
}

function pem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

const MESSAGE = Buffer.from(
  [
    'From: Mailplane <hello@example.com>',
    'To: someone@example.org',
    'Subject: Your receipt',
    'Date: Mon, 23 Nov 2026 09:00:00 +0000',
    'Message-ID: <receipt-1@example.com>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Thank you for your order.',
    'It ships tomorrow.',
    '',
  ].join('\r\n'),
);

async function sign(message: Buffer, ...keys: Key[]): Promise<Buffer> {
  const { signatures, errors } = await dkimSign(message, {
    signatureData: keys.map((key) => ({
      signingDomain: DOMAIN,
      selector: key.selector,
      privateKey: key.privateKey,
      algorithm: key.algorithm,
    })),
  });
  assert.deepEqual(errors, []);
  return Buffer.concat([Buffer.from(signatures), message]);
}

function records(...keys: Key[]): Record<string, string> {
  return Object.fromEntries(keys.map((key) => [`${key.selector}._domainkey.${DOMAIN}`, key.record]));
}

/** The same message with one byte of its body changed. */
function tamper(signed: Buffer): Buffer {
  const copy = Buffer.from(signed);
  const at = copy.indexOf('ships');
  assert.ok(at > 0);
  copy[at] = 'S'.charCodeAt(0);
  return copy;
}

const rsa = rsaKey('rsa1');
const ed = ed25519Key('ed1');

for (const key of [rsa, ed]) {
  test(`an intact message signed ${key.algorithm} by mailauth passes dkimpy`, async () => {
    const { ok, output } = await verifyDkimIndependently(await sign(MESSAGE, key), records(key));
    assert.ok(ok, output);
    assert.match(output, new RegExp(`a=${key.algorithm}.*: pass`));
  });

  test(`a message signed ${key.algorithm} with one body byte changed fails dkimpy`, async () => {
    const { ok, output } = await verifyDkimIndependently(tamper(await sign(MESSAGE, key)), records(key));
    assert.equal(ok, false, output);
    assert.match(output, /body hash mismatch/);
  });

  test(`a ${key.algorithm} signature checked against another key fails dkimpy`, async () => {
    const other = key.algorithm === 'rsa-sha256' ? rsaKey(key.selector) : ed25519Key(key.selector);
    const { ok, output } = await verifyDkimIndependently(await sign(MESSAGE, key), records(other));
    assert.equal(ok, false, output);
  });
}

test('both signatures of a doubly signed message are checked, and one bad key fails the message', async () => {
  const signed = await sign(MESSAGE, rsa, ed);
  const good = await verifyDkimIndependently(signed, records(rsa, ed));
  assert.ok(good.ok, good.output);
  assert.equal(good.output.match(/: pass/g)?.length, 2, good.output);

  const bad = await verifyDkimIndependently(signed, records(rsa, ed25519Key(ed.selector)));
  assert.equal(bad.ok, false, bad.output);
  assert.match(bad.output, /a=rsa-sha256.*: pass/);
  assert.match(bad.output, /a=ed25519-sha256.*: FAIL/);
});

test('a signature whose key is not in DNS fails dkimpy', async () => {
  const { ok, output } = await verifyDkimIndependently(await sign(MESSAGE, rsa), {});
  assert.equal(ok, false, output);
  assert.match(output, /NXDOMAIN/);
});

test('an unsigned message fails dkimpy', async () => {
  const { ok, output } = await verifyDkimIndependently(MESSAGE, records(rsa));
  assert.equal(ok, false, output);
  assert.match(output, /no DKIM-Signature/);
});
