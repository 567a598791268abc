// What a receiving server sees of the sender, and what becomes of each of its answers: the real
// api and sender against an SMTP sink on loopback (test/helpers/smtp-sink.ts) that answers the
// codes of each test at RCPT TO or after DATA and announces SIZE. A refusal of the message (its
// size, its content, a policy) fails that message and leaves the address alone; only a wrong
// address suppresses; a full mailbox is retried, for a bounded time; and whatever line endings
// and header lengths the content had, the signature verifies under dkimpy and OpenDKIM.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { SOFT_RETRY_SECONDS } from '../sender/outcome.js';
import type { Sender } from '../sender/worker.js';
import { verifyDkimIndependently, verifyDkimWithOpenDkim, dkimRecordsOf } from './helpers/dkim.js';
import { startTestPlatform, startTestSender, type TestPlatform } from './helpers/platform.js';
import { startSmtpSink, type SinkReply, type SmtpSink } from './helpers/smtp-sink.js';

/** What the sink announces: a 1.1 MB message is over it. */
const SINK_SIZE = 1_000_000;

let platform: TestPlatform;
let sink: SmtpSink;
let sender: Sender;
const atRcpt = new Map<string, SinkReply>();
const atData = new Map<string, SinkReply>();

before(async () => {
  sink = await startSmtpSink({
    size: SINK_SIZE,
    rcpt: (rcpt) => atRcpt.get(rcpt),
    data: (to) => atData.get(to[0] ?? ''),
  });
  platform = await startTestPlatform({
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${sink.port}`,
    // A pod name, as the default (the host name) is in Kubernetes.
    MAILPLANE_HELO_NAME: 'mailplane-sender-7d9f5',
  });
  sender = await startTestSender(platform);
});

after(async () => {
  await sender?.stop();
  await platform?.close();
  await sink?.close();
});

async function send(body: Record<string, unknown>): Promise<{ emailId: string; messageId: string }> {
  const res = await fetch(`${platform.url}/v1/emails`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${platform.keys.get('default/acme/backend')!}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ from: 'Acme <hello@example.com>', subject: 'Hello', text: 'Hi.', ...body }),
  });
  const text = await res.text();
  assert.equal(res.status, 202, text);
  const { id } = JSON.parse(text) as { id: string };
  const row = await platform.database.db
    .selectFrom('messages')
    .select('id')
    .where('email_id', '=', id)
    .executeTakeFirstOrThrow();
  return { emailId: id, messageId: row.id };
}

async function waitForStatus(messageId: string, statuses: string[]) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const message = await platform.database.db
      .selectFrom('messages')
      .selectAll()
      .where('id', '=', messageId)
      .executeTakeFirstOrThrow();
    if (statuses.includes(message.status)) return message;
    if (Date.now() > deadline) assert.fail(`message is ${message.status}, expected ${statuses.join(' or ')}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function lastEvent(messageId: string) {
  const events = await platform.database.db
    .selectFrom('events')
    .select(['type', 'detail'])
    .where('message_id', '=', messageId)
    .orderBy('id')
    .execute();
  return events.at(-1)!;
}

async function suppressed(address: string): Promise<boolean> {
  const row = await platform.database.db
    .selectFrom('suppressions')
    .select('reason')
    .where('address', '=', address)
    .executeTakeFirst();
  return row !== undefined;
}

const dkimRecords = () => dkimRecordsOf(platform.database.db);

function received(rcpt: string) {
  return sink.messages().filter((m) => m.envelope.to.includes(rcpt));
}

describe('a refusal of the message is not a verdict on the address', () => {
  test('552 5.3.4 after DATA fails the message with the reason, class `message`, and does not suppress the address', async () => {
    const to = 'too-big@example.org';
    atData.set(to, { code: 552, message: '5.3.4 Message size exceeds fixed maximum message size' });
    const { messageId } = await send({ to: [to] });
    const message = await waitForStatus(messageId, ['failed', 'bounced']);
    assert.equal(message.status, 'failed');
    const event = await lastEvent(messageId);
    assert.equal(event.detail.class, 'message');
    assert.equal(event.detail.status, '5.3.4');
    assert.match(String(event.detail.reason), /552 5\.3\.4 Message size exceeds/);
    assert.equal(await suppressed(to), false);

    atData.delete(to);
    const again = await send({ to: [to] });
    await waitForStatus(again.messageId, ['delivered']);
  });

  test('554 5.7.1 (spam) after DATA fails the message, class `policy`, and does not suppress', async () => {
    const to = 'spam-filtered@example.org';
    atData.set(to, { code: 554, message: '5.7.1 Message rejected as spam' });
    const { messageId } = await send({ to: [to] });
    assert.equal((await waitForStatus(messageId, ['failed', 'bounced'])).status, 'failed');
    assert.equal((await lastEvent(messageId)).detail.class, 'policy');
    assert.equal(await suppressed(to), false);
  });

  test('a message over the SIZE the server announced is refused before DATA: failed, with the reason, the address kept', async () => {
    const to = 'size-limit@example.org';
    const attachment = Buffer.alloc(800_000, 'a').toString('base64'); // about 1.1 MB once encoded
    const { messageId } = await send({
      to: [to],
      attachments: [{ filename: 'big.txt', content: attachment }],
    });
    const message = await waitForStatus(messageId, ['failed', 'bounced', 'delivered']);
    assert.equal(message.status, 'failed');
    const event = await lastEvent(messageId);
    assert.equal(event.detail.class, 'message');
    assert.match(String(event.detail.reason), /bytes not sent: larger than the server accepts/);
    assert.equal(await suppressed(to), false);
    assert.equal(received(to).length, 0);
    assert.ok(!sink.transactions().some((t) => t.to.includes(to) && t.data), 'DATA was never sent');
    // A message under the limit declares its size on MAIL FROM.
    const small = await send({ to: ['size-ok@example.org'] });
    await waitForStatus(small.messageId, ['delivered']);
    const transaction = sink.transactions().find((t) => t.to.includes('size-ok@example.org'))!;
    assert.match(transaction.mailFromArgs.SIZE ?? '', /^\d+$/);
    assert.equal(
      Number(transaction.mailFromArgs.SIZE),
      Buffer.byteLength(received('size-ok@example.org')[0]!.raw),
    );
  });
});

describe('a wrong address, and a full mailbox', () => {
  test('550 5.1.1 at RCPT TO bounces, class `hard`, and suppresses the address', async () => {
    const to = 'no-such-user@example.org';
    atRcpt.set(to, { code: 550, message: '5.1.1 <no-such-user@example.org>: Recipient address rejected' });
    const { messageId } = await send({ to: [to] });
    assert.equal((await waitForStatus(messageId, ['bounced', 'failed'])).status, 'bounced');
    assert.equal((await lastEvent(messageId)).detail.class, 'hard');
    assert.equal(await suppressed(to), true);
  });

  test(`552 5.2.2 (mailbox full) is deferred, class \`soft\`, and after SOFT_RETRY_SECONDS fails without suppressing`, async () => {
    const to = 'full-mailbox@example.org';
    atRcpt.set(to, { code: 552, message: '5.2.2 mailbox full' });
    const { emailId, messageId } = await send({ to: [to] });
    await waitForStatus(messageId, ['deferred']);
    const deferred = await lastEvent(messageId);
    assert.equal(deferred.type, 'deferred');
    assert.equal(deferred.detail.class, 'soft');
    assert.equal(await suppressed(to), false);

    // The mailbox is still full a day later: the retry is the last.
    const dayAgo = new Date(Date.now() - (SOFT_RETRY_SECONDS + 60) * 1000);
    await sql`update emails set created_at = ${dayAgo} where id = ${emailId}`.execute(platform.database.db);
    await sql`update messages set next_attempt_at = now() where id = ${messageId}`.execute(
      platform.database.db,
    );
    await sql`select graphile_worker.reschedule_jobs(array(
      select j.id from graphile_worker._private_jobs j where j.payload->>'messageId' = ${messageId}
    ), run_at => now())`.execute(platform.database.db);
    assert.equal((await waitForStatus(messageId, ['failed', 'bounced'])).status, 'failed');
    const failed = await lastEvent(messageId);
    assert.equal(failed.detail.class, 'soft');
    assert.equal(failed.detail.expired, true);
    assert.match(String(failed.detail.reason), /persistent transient/);
    assert.equal(await suppressed(to), false);
  });
});

describe('what goes out verifies, whatever the content held', () => {
  test('a "\\r" in text, html and a template variable: delivered, and dkimpy and OpenDKIM both verify it', async () => {
    const records = await dkimRecords();
    const plain = await send({ to: ['bare-cr@example.org'], text: 'a\rb', html: '<p>a\rb</p>' });
    const templated = await send({
      to: ['bare-cr-template@example.org'],
      subject: undefined,
      text: undefined,
      template: { id: 'welcome', variables: { name: 'Ada\rLovelace', email: 'ada@example.org\r' } },
    });
    for (const [rcpt, { messageId }] of [
      ['bare-cr@example.org', plain],
      ['bare-cr-template@example.org', templated],
    ] as const) {
      await waitForStatus(messageId, ['delivered']);
      const [message] = received(rcpt);
      assert.ok(message, rcpt);
      assert.doesNotMatch(message.raw, /\r(?!\n)|(?<!\r)\n/, 'no bare CR or LF on the wire');
      for (const verify of [verifyDkimIndependently, verifyDkimWithOpenDkim]) {
        const result = await verify(message.raw, records);
        assert.ok(result.ok, `${rcpt}: ${result.output}`);
      }
    }
  });

  test('a 998-character subject and a 998-character List-Unsubscribe come out in lines within 998 octets that still verify', async () => {
    const records = await dkimRecords();
    const to = 'long-headers@example.org';
    const subject = 'S'.repeat(998);
    const unsubscribe = `<https://example.com/u/${'x'.repeat(998 - 25)}>`;
    const { messageId } = await send({ to: [to], subject, headers: { 'List-Unsubscribe': unsubscribe } });
    await waitForStatus(messageId, ['delivered']);
    const [message] = received(to);
    const longest = Math.max(...message!.raw.split('\r\n').map((line) => Buffer.byteLength(line)));
    assert.ok(longest <= 998, `the longest line has ${longest} octets`);
    for (const verify of [verifyDkimIndependently, verifyDkimWithOpenDkim]) {
      const result = await verify(message!.raw, records);
      assert.ok(result.ok, result.output);
    }
  });

  test('EHLO names the sending domain when MAILPLANE_HELO_NAME is not a fully qualified name', async () => {
    const { messageId } = await send({ to: ['ehlo@example.org'] });
    await waitForStatus(messageId, ['delivered']);
    const transaction = sink.transactions().find((t) => t.to.includes('ehlo@example.org'))!;
    assert.equal(transaction.ehlo, 'example.com');
  });
});
