// The dev inbox: what it captures, how it answers chosen recipients, and its web view, which shows
// untrusted text and must escape it.

import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import nodemailer from 'nodemailer';
import { headerValue, startInbox, type Inbox } from '../dev/inbox.js';

let inbox: Inbox;
let web: ReturnType<express.Express['listen']>;
let base: string;
const replies = new Map<string, { code: number; message: string }>();

before(async () => {
  inbox = await startInbox({ limit: 5, reply: (rcpt) => replies.get(rcpt) });
  const app = express();
  app.use('/inbox', inbox.handler);
  web = await new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
  });
  base = `http://127.0.0.1:${(web.address() as AddressInfo).port}/inbox`;
});
after(async () => {
  await new Promise((resolve) => web.close(resolve));
  await inbox.close();
});

function send(to: string, subject = 'hello', html = '<p>hi</p>') {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: inbox.smtpPort, secure: false });
  return transport.sendMail({ from: 'sender@example.com', to, subject, html });
}

describe('capture', () => {
  test('keeps envelope, raw message and decoded subject, and waitFor resolves when they arrive', async () => {
    inbox.clear();
    const waiting = inbox.waitFor(2);
    await send('one@example.org', 'Grüße — 1');
    await send('two@example.org', 'second');
    const messages = await waiting;
    assert.deepEqual(
      messages.map((m) => [m.envelope.from, m.envelope.to, m.subject]),
      [
        ['sender@example.com', ['one@example.org'], 'Grüße — 1'],
        ['sender@example.com', ['two@example.org'], 'second'],
      ],
    );
    assert.match(messages[0]!.raw, /\r\n\r\n/);
  });

  test('keeps only the newest `limit` messages, and waitFor rejects after its timeout', async () => {
    inbox.clear();
    for (let i = 0; i < 7; i++) await send(`n${i}@example.org`);
    assert.deepEqual(
      inbox.messages().map((m) => m.envelope.to[0]),
      ['n2@example.org', 'n3@example.org', 'n4@example.org', 'n5@example.org', 'n6@example.org'],
    );
    await assert.rejects(inbox.waitFor(6, 50), /5 of 6 messages/);
  });
});

describe('answers', () => {
  test('bounce… and defer… recipients get 550 and 451; the reply hook decides first', async () => {
    await assert.rejects(send('bounce-1@example.org'), { responseCode: 550, command: 'RCPT TO' });
    await assert.rejects(send('Defer@example.org'), { responseCode: 451 });
    replies.set('full@example.org', { code: 452, message: '4.2.2 mailbox full' });
    replies.set('bounce-ok@example.org', { code: 250, message: 'ok' });
    await assert.rejects(send('full@example.org'), (err: Error & { response?: string }) =>
      /^452 4\.2\.2 mailbox full/.test(err.response ?? ''),
    );
    inbox.clear();
    await send('bounce-ok@example.org');
    assert.equal(inbox.messages().length, 1);
  });
});

describe('web view', () => {
  test('lists messages newest first with every untrusted field escaped, behind a strict CSP', async () => {
    inbox.clear();
    await send('first@example.org', 'older');
    await send('second@example.org', '<script>alert("x")</script> & "quotes"');
    const res = await fetch(`${base}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    const html = await res.text();
    assert.ok(!html.includes('<script>'), 'no raw markup from the message');
    assert.ok(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;'));
    assert.ok(html.indexOf('second@example.org') < html.indexOf('first@example.org'), 'newest first');
    const [newest] = inbox.messages().slice(-1);
    assert.ok(html.includes(`href="/inbox/messages/${newest!.id}/raw"`), 'links carry the mount path');
  });

  test('serves the list as JSON and each message as text/plain, and 404 for an unknown id', async () => {
    inbox.clear();
    await send('json@example.org', 'as json', '<b>bold</b>');
    const list = (await (await fetch(`${base}/messages`)).json()) as {
      id: string;
      subject: string;
      raw?: string;
    }[];
    assert.equal(list.length, 1);
    assert.equal(list[0]!.subject, 'as json');
    assert.equal(list[0]!.raw, undefined);

    const raw = await fetch(`${base}/messages/${list[0]!.id}/raw`);
    assert.match(raw.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal(raw.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(await raw.text(), inbox.messages()[0]!.raw);
    assert.equal((await fetch(`${base}/messages/nope/raw`)).status, 404);
  });
});

test('headerValue unfolds and decodes RFC 2047 words', () => {
  const raw =
    'X: 1\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n =?UTF-8?Q?_aus_Z=C3=BCrich?=\r\n\r\nSubject: body';
  assert.equal(headerValue(raw, 'subject'), 'Grüße aus Zürich');
  assert.equal(headerValue(raw, 'missing'), undefined);
});
