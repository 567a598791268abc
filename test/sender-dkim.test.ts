// The DKIM signer on its own: what it signs verifies with dkimpy, OpenDKIM and mailauth for both
// key types, whatever line endings and header lengths the content had; changes in transit break
// it, and a rotated key is used at once despite the key cache.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { dkimTxtValue, encrypt, generateDkimKey, type DkimAlgorithm } from '../lib/crypto.js';
import { createDkimSigner, type DkimDomainKey } from '../sender/dkim.js';
import { composeMessage } from '../sender/compose.js';
import { headerValue } from '../dev/inbox.js';
import { verifyDkimIndependently, verifyDkimWithMailauth, verifyDkimWithOpenDkim } from './helpers/dkim.js';

const SECRET = Buffer.alloc(32, 1);

function domainKey(algorithm: DkimAlgorithm, selector = 'mp1', domainId = 'domain-1') {
  const key = generateDkimKey(algorithm);
  const signing: DkimDomainKey = {
    domainId,
    domain: 'example.com',
    selector,
    privateKeyEnvelope: encrypt(SECRET, key.privateKeyPem),
  };
  const records = { [`${selector}._domainkey.example.com`]: dkimTxtValue(algorithm, key.publicKeyDns) };
  return { signing, records };
}

async function message(): Promise<Buffer> {
  return composeMessage({
    from: 'Acme <hello@example.com>',
    content: {
      to: ['Ada <ada@example.org>'],
      cc: ['grace@example.org'],
      bcc: [],
      reply_to: ['support@example.com'],
      subject: 'Grüße aus Zürich',
      html: '<p>Hallo   Ada,\n\tlange Zeilen   mit Leerzeichen  </p>',
      text: 'Hallo Ada',
      headers: { 'List-Unsubscribe': '<https://example.com/u/1>' },
      attachments: [],
      tags: [],
    },
    rendered: { subject: 'Grüße aus Zürich', html: '<p>Hallo</p>', text: 'Hallo Ada' },
    messageId: 'm-1@example.com',
    date: new Date('2026-01-02T03:04:05Z'),
  });
}

describe('DKIM signatures', () => {
  for (const algorithm of ['rsa-2048', 'ed25519'] as const) {
    test(`an ${algorithm} signature (relaxed/relaxed) verifies with dkimpy and with mailauth`, async () => {
      const { signing, records } = domainKey(algorithm);
      const signed = await createDkimSigner(SECRET).sign(await message(), signing);
      const independent = await verifyDkimIndependently(signed, records);
      assert.ok(independent.ok, independent.output);
      assert.deepEqual(await verifyDkimWithMailauth(signed, records), ['pass']);

      const field = signed
        .toString()
        .split(/\r\n(?=\S)/)[0]!
        .replace(/\r\n\s+/g, ' ');
      assert.match(
        field,
        new RegExp(`a=${algorithm === 'ed25519' ? 'ed25519' : 'rsa'}-sha256; c=relaxed/relaxed;`),
      );
      const h = /h=([^;]+);/
        .exec(field)![1]!
        .split(':')
        .map((name) => name.trim().toLowerCase());
      for (const name of ['from', 'to', 'cc', 'subject', 'date', 'message-id', 'reply-to', 'mime-version']) {
        assert.ok(h.includes(name), `h= signs ${name}: ${h.join(':')}`);
      }
      assert.ok(h.includes('content-type') && h.includes('list-unsubscribe'));
      assert.equal(h.filter((name) => name === 'from').length, 2, 'From is oversigned');
    });
  }

  for (const algorithm of ['rsa-2048', 'ed25519'] as const) {
    test(`${algorithm}: bare CRs and LFs in bodies, a 998-character subject and a 1,500-character List-Unsubscribe go out as CRLF lines within 998 octets that dkimpy, OpenDKIM and mailauth verify`, async () => {
      const { signing, records } = domainKey(algorithm);
      const subject = 'S'.repeat(998);
      const unsubscribe = `<https://example.com/unsubscribe/${'x'.repeat(1460)}>, <mailto:u@example.com>`;
      const raw = await composeMessage({
        from: 'Acme <hello@example.com>',
        content: {
          to: ['ada@example.org'],
          cc: [],
          bcc: [],
          reply_to: [],
          subject,
          headers: { 'List-Unsubscribe': unsubscribe, 'X-Note': 'a\rBcc: injected@example.net' },
          attachments: [],
          tags: [],
        },
        rendered: { subject, text: 'line one\rline two\nline three\r\n', html: '<p>a\rb</p>\n' },
        messageId: 'm-2@example.com',
        date: new Date('2026-01-02T03:04:05Z'),
      });
      const signed = await createDkimSigner(SECRET).sign(raw, signing);
      const text = signed.toString('latin1');
      assert.doesNotMatch(text, /\r(?!\n)|(?<!\r)\n/, 'no bare CR or LF');
      const longest = Math.max(...text.split('\r\n').map((line) => line.length));
      assert.ok(longest <= 998, `the longest line has ${longest} octets`);
      const header = text.slice(0, text.indexOf('\r\n\r\n'));
      assert.doesNotMatch(header, /^bcc:/im, 'a CR in a header value does not start a field');
      assert.equal(headerValue(text, 'subject'), subject, 'the subject reads the same once decoded');
      const listUnsubscribe = headerValue(text, 'list-unsubscribe')!.replace(/\s+(?=[^<>]*>)/g, '');
      assert.equal(
        listUnsubscribe,
        unsubscribe,
        'the URL is whole once its whitespace is ignored (RFC 2369)',
      );

      for (const [name, verify] of [
        ['dkimpy', verifyDkimIndependently],
        ['OpenDKIM', verifyDkimWithOpenDkim],
      ] as const) {
        const result = await verify(signed, records);
        assert.ok(result.ok, `${name}: ${result.output}`);
      }
      assert.deepEqual(await verifyDkimWithMailauth(signed, records), ['pass']);
    });
  }

  test('OpenDKIM, like dkimpy, fails a changed body and a missing key', async () => {
    const { signing, records } = domainKey('rsa-2048');
    const signed = (await createDkimSigner(SECRET).sign(await message(), signing)).toString();
    assert.ok((await verifyDkimWithOpenDkim(signed, records)).ok);
    const changed = await verifyDkimWithOpenDkim(signed.replace(/\r\n\r\n/, '\r\n\r\nP.S. '), records);
    assert.equal(changed.ok, false, changed.output);
    const noKey = await verifyDkimWithOpenDkim(signed, { 'other._domainkey.example.com': 'v=DKIM1; p=' });
    assert.equal(noKey.ok, false, noKey.output);
  });

  test('a changed body, a changed subject and an added From header each break the signature', async () => {
    const { signing, records } = domainKey('rsa-2048');
    const signed = (await createDkimSigner(SECRET).sign(await message(), signing)).toString();
    const tampered = {
      body: signed.replace(/\r\n\r\n([\s\S]*)$/, (_m, body: string) => `\r\n\r\n${body}\r\nP.S. pay here`),
      subject: signed.replace(/^Subject: .*$/m, 'Subject: =?UTF-8?Q?Urgent?='),
      'added From': signed.replace(/^From: .*$/m, (line) => `${line}\r\nFrom: ceo@attacker.example`),
    };
    for (const [what, raw] of Object.entries(tampered)) {
      assert.notEqual(raw, signed, what);
      const result = await verifyDkimIndependently(raw, records);
      assert.equal(result.ok, false, `${what}: ${result.output}`);
    }
  });

  test('a rotated key (same domain, new envelope) signs at once, and the old one no longer does', async () => {
    const signer = createDkimSigner(SECRET);
    const before = domainKey('ed25519', 'mp1', 'domain-rot');
    await signer.sign(await message(), before.signing);
    const after = domainKey('ed25519', 'mp2', 'domain-rot');
    const signed = await signer.sign(await message(), after.signing);
    const result = await verifyDkimIndependently(signed, after.records);
    assert.ok(result.ok, result.output);
    assert.match(signed.toString(), /s=mp2;/);
  });

  test('a key that does not decrypt is an error (the sender defers such messages)', async () => {
    const { signing } = domainKey('ed25519');
    await assert.rejects(createDkimSigner(Buffer.alloc(32, 2)).sign(await message(), signing));
  });
});
