// International mail, end to end through the real api and sender: addresses under IDN top-level
// domains and Unicode domains are accepted and sent in their A-label form; an address with a UTF-8
// local part goes out with SMTPUTF8 to a server that offers it (smtp-server sinks, a direct MX,
// Postfix, whose copies dkimpy and OpenDKIM verify), and to one that does not it is not sent at
// all and fails with the reason, its address left alone. The same for the other recipients of
// such an email, whose header carries the UTF-8 address. And one Message-ID for all the
// recipients of one email.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { createTransport } from '../sender/transport.js';
import { startSender, type Sender } from '../sender/worker.js';
import { verifyDkimIndependently, verifyDkimWithOpenDkim, dkimRecordsOf } from './helpers/dkim.js';
import { startPostfix } from './helpers/postfix.js';
import { startTestPlatform, type TestPlatform } from './helpers/platform.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';

let platform: TestPlatform;
/** The relay that offers SMTPUTF8, as smtp-server does, and the one that withholds it. */
let offering: SmtpSink;
let withholding: SmtpSink;
let sender: Sender | undefined;

before(async () => {
  offering = await startSmtpSink();
  withholding = await startSmtpSink({ smtpUtf8: false });
  platform = await startTestPlatform();
});

after(async () => {
  await sender?.stop();
  await platform?.close();
  await offering?.close();
  await withholding?.close();
});

/** Runs the sender against `relay` (one sender at a time, so that each test knows where mail went). */
async function sendThrough(relay: { port: number }): Promise<void> {
  await sender?.stop();
  sender = await startSender({
    pool: platform.database.pool,
    db: platform.database.db,
    config: { ...platform.config, relayUrl: `smtp://127.0.0.1:${relay.port}` },
    log: silentLogger,
    metrics: createMetrics(),
    renderer: platform.renderer,
  });
}

interface Answer {
  id: string;
  errors: { field: string; message: string }[];
}

async function post(body: Record<string, unknown>): Promise<{ status: number; body: Answer }> {
  const res = await fetch(`${platform.url}/v1/emails`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${platform.keys.get('default/acme/backend')!}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ from: 'Acme <hello@example.com>', subject: 'Hello', text: 'Hi.', ...body }),
  });
  return { status: res.status, body: (await res.json()) as Answer };
}

/** Sends and answers the email's id and its messages by recipient, as stored. */
async function send(
  body: Record<string, unknown>,
): Promise<{ emailId: string; messages: Map<string, string> }> {
  const res = await post(body);
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const rows = await platform.database.db
    .selectFrom('messages')
    .select(['id', 'recipient'])
    .where('email_id', '=', res.body.id)
    .execute();
  return { emailId: res.body.id, messages: new Map(rows.map((r) => [r.recipient, r.id])) };
}

async function settled(messageId: string) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const message = await platform.database.db
      .selectFrom('messages')
      .selectAll()
      .where('id', '=', messageId)
      .executeTakeFirstOrThrow();
    if (['delivered', 'failed', 'bounced'].includes(message.status)) return message;
    if (Date.now() > deadline) assert.fail(`message ${messageId} is still ${message.status}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function lastEventDetail(messageId: string): Promise<Record<string, unknown>> {
  const events = await platform.database.db
    .selectFrom('events')
    .select('detail')
    .where('message_id', '=', messageId)
    .orderBy('id')
    .execute();
  return events.at(-1)!.detail as Record<string, unknown>;
}

async function suppressed(address: string): Promise<boolean> {
  const row = await platform.database.db
    .selectFrom('suppressions')
    .select('reason')
    .where('address', '=', address.toLowerCase())
    .executeTakeFirst();
  return row !== undefined;
}

const dkimRecords = () => dkimRecordsOf(platform.database.db);

function headerOf(raw: string, name: string): string | undefined {
  const header = raw.slice(0, raw.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ');
  return new RegExp(`^${name}: (.*)$`, 'im').exec(header)?.[1];
}

describe('addresses the api takes', () => {
  test('an IDN top-level domain is accepted as written, a Unicode domain is stored as its A-label', async () => {
    const { messages } = await send({
      to: ['user@example.xn--p1ai', 'Ada <ada@Bücher.example>', 'ivan@пример.рф'],
    });
    assert.deepEqual([...messages.keys()].sort(), [
      'ada@xn--bcher-kva.example',
      'ivan@xn--e1afmkfd.xn--p1ai',
      'user@example.xn--p1ai',
    ]);
  });

  test('a UTF-8 local part is accepted, in NFC', async () => {
    // "josé" with a combining acute accent (U+0301), as some keyboards write it.
    const { messages } = await send({ to: ['用户@example.org', 'jose\u0301@example.org'] });
    assert.deepEqual([...messages.keys()].sort(), ['josé@example.org', '用户@example.org'].sort());
  });

  test('an A-label that decodes to nothing, invisible characters and URL escapes are refused, each named', async () => {
    const res = await post({ to: ['a@xn--zz.example', 'zero\u200bwidth@example.org', 'a@ex%61mple.org'] });
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.deepEqual(
      res.body.errors.map((e) => [e.field, e.message]),
      [
        ['to[0]', '"a@xn--zz.example" has an invalid domain'],
        ['to[1]', '"zero\u200bwidth@example.org" has an invalid local part'],
        ['to[2]', '"a@ex%61mple.org" has an invalid domain'],
      ],
    );
  });
});

describe('a server that offers SMTPUTF8', () => {
  before(() => sendThrough(offering));

  test('gets a UTF-8 address with SMTPUTF8 on MAIL FROM, and so does the other recipient whose copy shows it', async () => {
    const { messages } = await send({ to: ['用户@example.org'], cc: ['kim@bücher.example'] });
    for (const id of messages.values()) assert.equal((await settled(id)).status, 'delivered');
    const utf8 = offering.transactions().find((t) => t.to.includes('用户@example.org'))!;
    assert.ok('SMTPUTF8' in utf8.mailFromArgs, JSON.stringify(utf8.mailFromArgs));
    // Kim's address is ASCII, but the header of Kim's copy shows 用户's: SMTPUTF8 as well. (The
    // sink, smtp-server, shows every domain decoded, whatever form came over the wire.)
    const kim = offering.transactions().find((t) => t.to.includes('kim@bücher.example'))!;
    assert.ok('SMTPUTF8' in kim.mailFromArgs, JSON.stringify(kim.mailFromArgs));
    const copy = offering.messages().find((m) => m.envelope.to.includes('用户@example.org'))!;
    assert.match(headerOf(copy.raw, 'To') ?? '', /用户@example\.org/);
  });

  test('an ASCII email goes out as before, without SMTPUTF8', async () => {
    const { messages } = await send({ to: ['plain@example.org'] });
    assert.equal((await settled(messages.get('plain@example.org')!)).status, 'delivered');
    const plain = offering.transactions().find((t) => t.to.includes('plain@example.org'))!;
    assert.ok(!('SMTPUTF8' in plain.mailFromArgs), JSON.stringify(plain.mailFromArgs));
  });

  test('the To and Cc recipients of one email get one Message-ID, the email id', async () => {
    const { emailId, messages } = await send({
      to: ['first@example.org', 'second@example.org'],
      cc: ['third@example.org'],
    });
    for (const id of messages.values()) assert.equal((await settled(id)).status, 'delivered');
    const ids = ['first@example.org', 'second@example.org', 'third@example.org'].map((rcpt) => {
      const copy = offering.messages().find((m) => m.envelope.to.includes(rcpt));
      assert.ok(copy, `${rcpt} got no copy`);
      return headerOf(copy.raw, 'Message-ID');
    });
    assert.deepEqual(ids, [
      `<${emailId}@example.com>`,
      `<${emailId}@example.com>`,
      `<${emailId}@example.com>`,
    ]);
  });
});

describe('a server that does not offer SMTPUTF8', () => {
  before(() => sendThrough(withholding));

  test('gets nothing of a UTF-8 address: the message fails with 5.6.7, class message, and the address is not suppressed', async () => {
    const { messages } = await send({ to: ['用户@example.net'], cc: ['lee@example.net'] });
    const utf8 = await settled(messages.get('用户@example.net')!);
    assert.equal(utf8.status, 'failed');
    const detail = await lastEventDetail(utf8.id);
    assert.equal(detail.class, 'message');
    assert.match(String(detail.reply), /^553 5\.6\.7 .*用户@example\.net .*SMTPUTF8/);
    assert.equal(await suppressed('用户@example.net'), false);
    // Lee's copy has 用户's address in its To: not sent either, 5.6.9.
    const lee = await settled(messages.get('lee@example.net')!);
    assert.equal(lee.status, 'failed');
    assert.match(String((await lastEventDetail(lee.id)).reply), /^550 5\.6\.9 .*header/);
    assert.equal(await suppressed('lee@example.net'), false);
    // Not a MAIL FROM, let alone a byte of UTF-8, reached the server.
    assert.deepEqual(
      withholding.transactions().filter((t) => t.to.some((r) => r.endsWith('@example.net'))),
      [],
    );
  });

  test('still gets the A-label of a Unicode domain, which needs no SMTPUTF8', async () => {
    const { messages } = await send({ to: ['max@bücher.example'] });
    assert.equal((await settled(messages.get('max@xn--bcher-kva.example')!)).status, 'delivered');
    const copy = withholding.messages().find((m) => m.envelope.to.includes('max@bücher.example'))!;
    assert.match(headerOf(copy.raw, 'To') ?? '', /^max@xn--bcher-kva\.example$/);
    // eslint-disable-next-line no-control-regex -- a byte above 0x7f is what must not be there
    assert.doesNotMatch(copy.raw.slice(0, copy.raw.indexOf('\r\n\r\n')), /[^\x00-\x7f]/);
  });
});

describe('direct delivery to an MX', () => {
  const raw = Buffer.from('From: a@example.com\r\nTo: 用户@direct.example\r\nSubject: hi\r\n\r\nhello\r\n');
  const direct = (mx: SmtpSink) =>
    createTransport({
      heloName: 'sender.test',
      port: mx.port,
      // The test's MX table is all the DNS there is.
      mtaSts: false,
      allowPrivate: true,
      resolveMx: async () => [{ exchange: '127.0.0.1', priority: 10 }],
    });

  test('an MX that offers SMTPUTF8 gets the UTF-8 address with it, over its pooled session', async () => {
    const transport = direct(offering);
    try {
      const receipt = await transport.send({ from: 'a@example.com', to: '用户@direct.example' }, raw);
      assert.match(receipt.reply, /^250 /);
      const seen = offering.transactions().find((t) => t.to.includes('用户@direct.example'))!;
      assert.ok('SMTPUTF8' in seen.mailFromArgs, JSON.stringify(seen.mailFromArgs));
    } finally {
      await transport.close();
    }
  });

  test("an MX that does not is sent nothing, and the refusal is the message's fault", async () => {
    const transport = direct(withholding);
    try {
      await assert.rejects(transport.send({ from: 'a@example.com', to: '用户@direct.example' }, raw), {
        code: 'ESMTPUTF8',
        responseCode: 553,
      });
      assert.deepEqual(
        withholding.transactions().filter((t) => t.to.includes('用户@direct.example')),
        [],
      );
    } finally {
      await transport.close();
    }
  });
});

describe('Postfix, which offers SMTPUTF8', () => {
  test('takes the UTF-8 address and the copy that shows it in its header, each as an SMTPUTF8 transaction', async () => {
    const postfix = await startPostfix();
    try {
      await sendThrough(postfix);
      const { messages } = await send({ to: ['дмитрий@example.org'], cc: ['ann@example.org'] });
      for (const id of messages.values()) assert.equal((await settled(id)).status, 'delivered');
      const stored = await postfix.waitForMessages(2);
      for (const rcpt of ['дмитрий@example.org', 'ann@example.org']) {
        const copy = stored.find((m) => m.originalRecipient === rcpt);
        assert.ok(
          copy,
          `Postfix has no copy for ${rcpt}: ${stored.map((m) => m.originalRecipient).join(', ')}`,
        );
        // Postfix's Received field says how the message came: UTF8SMTP (RFC 6531 §4.3) when SMTPUTF8 was asked for.
        assert.match(headerOf(copy.raw.toString('utf8'), 'Received') ?? '', /with UTF8SMTP\b/);
        assert.match(headerOf(copy.raw.toString('utf8'), 'To') ?? '', /дмитрий@example\.org/);
        // Signed as sent, UTF-8 header and all: both verifiers agree.
        const dkimpy = await verifyDkimIndependently(copy.raw, await dkimRecords());
        assert.ok(dkimpy.ok, dkimpy.output);
        const opendkim = await verifyDkimWithOpenDkim(copy.raw, await dkimRecords());
        assert.ok(opendkim.ok, opendkim.output);
      }
    } finally {
      await sender?.stop();
      sender = undefined;
      await postfix.stop();
    }
  });
});
