// The pure parts of SMTP submission: how a client's message is split into header fields and put
// back byte for byte, what the sender removes and adds before signing a submitted message, and
// how X-Mailplane-Tags is read.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fieldValue, joinHeader, splitHeader } from '../lib/message-header.js';
import { prepareRawMessage } from '../sender/raw-message.js';
import { readSubmittedMessage } from '../submission/message.js';
import { parseTags } from '../submission/tags.js';

const b64 = (text: string) => Buffer.from(text, 'latin1').toString('base64');

test('a message split into its fields and joined again is the same bytes, folding and 8-bit text included', () => {
  const cases = [
    'Subject: caf\xc3\xa9\r\nTo: a@example.org,\r\n  b@example.org\r\n\r\nbody\r\n\r\nmore\r\n',
    'Subject: no body\r\n',
    '\r\nno header at all\r\n',
  ];
  for (const text of cases) {
    const message = Buffer.from(text, 'latin1');
    const split = splitHeader(message);
    const joined = joinHeader(split).toString('latin1');
    // A message without an empty line gets the one that ends its header.
    assert.equal(joined, text.includes('\r\n\r\n') || text.startsWith('\r\n') ? text : `${text}\r\n`);
  }
  const { fields } = splitHeader(Buffer.from(cases[0]!, 'latin1'));
  assert.deepEqual(
    fields.map((f) => f.name),
    ['Subject', 'To'],
  );
  assert.equal(fieldValue(fields[1]!), 'a@example.org,  b@example.org');
});

test('the sender removes Bcc (folded too) and Return-Path, adds a missing Message-ID and Date, keeps the rest as it was', () => {
  const date = new Date('2030-01-05T09:00:00Z');
  const out = prepareRawMessage({
    raw: b64(
      'From: a@example.com\nBcc: hidden@example.org,\n  other@example.org\nReturn-Path: <x@y.z>\nX-Keep: 1\n\nbody\n',
    ),
    messageId: 'id-1@example.com',
    date,
  }).toString('latin1');
  assert.equal(
    out,
    'Message-ID: <id-1@example.com>\r\nDate: Sat, 05 Jan 2030 09:00:00 +0000\r\nFrom: a@example.com\r\nX-Keep: 1\r\n\r\nbody\r\n',
  );
  const kept = prepareRawMessage({
    raw: b64('Message-ID: <mine@app.example>\r\nDate: Fri, 04 Jan 2030 08:00:00 +0100\r\n\r\nx\r\n'),
    messageId: 'unused@example.com',
    date,
  }).toString('latin1');
  assert.equal(kept, 'Message-ID: <mine@app.example>\r\nDate: Fri, 04 Jan 2030 08:00:00 +0100\r\n\r\nx\r\n');

  // One that is empty, 8-bit or not one line of text becomes the email's own, and so does a second.
  for (const field of ['Message-ID:', 'Message-ID: <\xc3\xbc@x>', 'Message-ID: <a\tb@x>']) {
    const replaced = prepareRawMessage({
      raw: b64(`${field}\r\nDate: Fri, 04 Jan 2030 08:00:00 +0100\r\n\r\nx\r\n`),
      messageId: 'own@example.com',
      date,
    }).toString('latin1');
    assert.equal(
      replaced,
      'Message-ID: <own@example.com>\r\nDate: Fri, 04 Jan 2030 08:00:00 +0100\r\n\r\nx\r\n',
      field,
    );
  }
  const twice = prepareRawMessage({
    raw: b64('Message-ID: <first@app.example>\r\nMessage-ID: <second@app.example>\r\n\r\nx\r\n'),
    messageId: 'own@example.com',
    date,
  }).toString('latin1');
  assert.match(twice, /^Date: .*\r\nMessage-ID: <first@app\.example>\r\n\r\nx\r\n$/);
});

test('X-Mailplane-Tags: name=value pairs, commas between, several fields; anything else is refused with the reason', () => {
  assert.deepEqual(parseTags(['category=welcome, campaign = spring', 'order=A-1']), {
    tags: [
      { name: 'category', value: 'welcome' },
      { name: 'campaign', value: 'spring' },
      { name: 'order', value: 'A-1' },
    ],
  });
  assert.deepEqual(parseTags([' , ']), { tags: [] });
  for (const bad of ['welcome', 'a=b=c', 'näme=x', `x=${'y'.repeat(257)}`]) {
    assert.ok('fault' in parseTags([bad]), bad);
  }
  assert.match(
    (parseTags([Array.from({ length: 51 }, (_, i) => `t${i}=v`).join(',')]) as { fault: string }).fault,
    /51 tags; the limit is 50/,
  );
});

test('a message written with bare LFs is read as if written with CRLF', async () => {
  const message = await readSubmittedMessage(
    Buffer.from('From: hello@example.com\nX-Mailplane-Tags: a=b\nSubject: lf\n\nline one\nline two\n'),
  );
  assert.deepEqual(message.tags, [{ name: 'a', value: 'b' }]);
  assert.equal(message.subject, 'lf');
  assert.equal(
    message.raw.toString(),
    'From: hello@example.com\r\nSubject: lf\r\n\r\nline one\r\nline two\r\n',
  );
});

test('a submitted message is read for its From, addresses, decoded subject and tags, and kept without X-Mailplane-Tags', async () => {
  const message = await readSubmittedMessage(
    Buffer.from(
      'From: =?UTF-8?Q?Caf=C3=A9?= <Hello@Example.COM>\r\nTo: Team: a@example.org, "B, C" <b@example.org>;\r\n' +
        'Subject: =?UTF-8?B?w5xiZXI=?= SMTP\r\nX-Mailplane-Tags: kind=test\r\n\r\nhi\r\n',
    ),
  );
  assert.deepEqual(message.from, [{ name: 'Café', address: 'Hello@example.com' }]);
  assert.deepEqual(
    message.to.map((m) => m.address),
    ['a@example.org', 'b@example.org'],
  );
  assert.equal(message.subject, 'Über SMTP');
  assert.deepEqual(message.tags, [{ name: 'kind', value: 'test' }]);
  assert.doesNotMatch(message.raw.toString(), /X-Mailplane-Tags/);
  assert.match(message.raw.toString(), /^From: =\?UTF-8\?Q\?Caf=C3=A9\?= <Hello@Example\.COM>\r\n/);
});
