// The SMTP transport against the dev inbox and SMTP sinks on loopback: relay delivery (with
// credentials in the URL, never in clear unless the URL says so), direct MX delivery in preference
// order, the DNS answers that end a delivery for good, SIZE, and the name given in EHLO.

import assert from 'node:assert/strict';
import type { MxRecord } from 'node:dns';
import { after, before, describe, test } from 'node:test';
import { startInbox, type Inbox } from '../dev/inbox.js';
import { classifyDeliveryError } from '../sender/outcome.js';
import { createTransport, heloNameFor, INSECURE_AUTH_PARAM, mxHosts } from '../sender/transport.js';
import { startSmtpSink } from './helpers/smtp-sink.js';

const RAW = Buffer.from('From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n');

let inbox: Inbox;
before(async () => {
  inbox = await startInbox();
});
after(async () => inbox.close());

const dnsError = (code: string) => Object.assign(new Error(code), { code });

describe('relay delivery', () => {
  test('delivers through the relay with the credentials of its URL, and returns the reply', async () => {
    const transport = createTransport({
      // The inbox offers no STARTTLS: credentials go in clear only because the URL says so.
      relayUrl: `smtp://user%40example.com:p%3Ass@127.0.0.1:${inbox.smtpPort}?${INSECURE_AUTH_PARAM}=true`,
      heloName: 'sender.test',
    });
    try {
      const receipt = await transport.send({ from: 'a@example.com', to: 'relay@example.org' }, RAW);
      assert.match(receipt.reply, /^250 /);
      assert.equal(receipt.host, '127.0.0.1');
      const [received] = (await inbox.waitFor(1)).filter((m) => m.envelope.to[0] === 'relay@example.org');
      assert.deepEqual(received?.envelope, { from: 'a@example.com', to: ['relay@example.org'] });
      assert.equal(received?.raw, RAW.toString());
    } finally {
      await transport.close();
    }
  });

  test('a recipient refused at RCPT TO rejects with the SMTP reply code', async () => {
    const transport = createTransport({
      relayUrl: `smtp://127.0.0.1:${inbox.smtpPort}`,
      heloName: 'sender.test',
    });
    try {
      await assert.rejects(transport.send({ from: 'a@example.com', to: 'bounce-me@example.org' }, RAW), {
        code: 'EENVELOPE',
        responseCode: 550,
        command: 'RCPT TO',
      });
      await assert.rejects(transport.send({ from: 'a@example.com', to: 'defer-me@example.org' }, RAW), {
        responseCode: 451,
      });
    } finally {
      await transport.close();
    }
  });
});

describe('direct MX delivery', () => {
  test('tries MX hosts in preference order and moves on from one that cannot be reached', async () => {
    const asked: string[] = [];
    const transport = createTransport({
      heloName: 'sender.test',
      port: inbox.smtpPort,
      // No MTA-STS lookups: the test's MX table is all the DNS there is.
      mtaSts: false,
      allowPrivate: true,
      resolveMx: async (domain) => {
        asked.push(domain);
        // 127.0.0.2 is loopback too, but nothing listens there.
        return [
          { exchange: '127.0.0.1', priority: 20 },
          { exchange: '127.0.0.2', priority: 10 },
        ];
      },
    });
    try {
      const receipt = await transport.send({ from: 'a@example.com', to: 'mx@Direct.example' }, RAW);
      assert.equal(receipt.host, '127.0.0.1');
      assert.deepEqual(asked, ['direct.example']);
      assert.ok(inbox.messages().some((m) => m.envelope.to[0] === 'mx@direct.example'));
    } finally {
      await transport.close();
    }
  });

  test("by default an MX at a private or loopback address is not delivered to: nobody's DNS points the sender inside", async () => {
    const before = inbox.messages().length;
    const transport = createTransport({
      heloName: 'sender.test',
      port: inbox.smtpPort,
      mtaSts: false,
      resolveMx: async () => [
        { exchange: '127.0.0.1', priority: 10 },
        { exchange: '10.0.0.5', priority: 20 },
      ],
    });
    try {
      await assert.rejects(transport.send({ from: 'a@example.com', to: 'inside@direct.example' }, RAW), {
        code: 'EPRIVATE',
        message: /10\.0\.0\.5 has only private addresses/,
      });
      assert.equal(inbox.messages().length, before, 'nothing reached the loopback server');
    } finally {
      await transport.close();
    }
  });

  test('a server that answers is final: a 5xx from the first MX is not retried at the next', async () => {
    const transport = createTransport({
      heloName: 'sender.test',
      port: inbox.smtpPort,
      // No MTA-STS lookups: the test's MX table is all the DNS there is.
      mtaSts: false,
      allowPrivate: true,
      resolveMx: async () => [
        { exchange: '127.0.0.1', priority: 10 },
        { exchange: '127.0.0.3', priority: 20 },
      ],
    });
    try {
      await assert.rejects(transport.send({ from: 'a@example.com', to: 'bounce@direct.example' }, RAW), {
        responseCode: 550,
      });
    } finally {
      await transport.close();
    }
  });

  test('MX answers: none means the domain itself, a null MX and a missing domain are permanent', async () => {
    const resolveWith = (answer: MxRecord[] | Error) => async () => {
      if (answer instanceof Error) throw answer;
      return answer;
    };
    assert.deepEqual(await mxHosts(resolveWith(dnsError('ENODATA')), 'example.org'), ['example.org']);
    await assert.rejects(mxHosts(resolveWith([{ exchange: '', priority: 0 }]), 'example.org'), {
      code: 'ENULLMX',
      responseCode: 556,
    });
    await assert.rejects(mxHosts(resolveWith(dnsError('ENOTFOUND')), 'nowhere.example'), {
      code: 'ENOTFOUND',
      responseCode: 550,
    });
    await assert.rejects(mxHosts(resolveWith(dnsError('ESERVFAIL')), 'example.org'), (err: Error) => {
      const e = err as Error & { code?: string; responseCode?: number; originalCode?: string };
      return e.code === 'EDNS' && e.responseCode === undefined && e.originalCode === 'ESERVFAIL';
    });
    const ordered = await mxHosts(
      resolveWith([
        { exchange: 'c.example', priority: 30 },
        { exchange: 'a.example', priority: 10 },
        { exchange: 'b.example', priority: 20 },
      ]),
      'example.org',
    );
    assert.deepEqual(ordered, ['a.example', 'b.example', 'c.example']);
  });
});

describe('wire manners', () => {
  test('a relay without TLS is never sent credentials: the attempt fails with a reason that names the opt-in', async () => {
    const sink = await startSmtpSink();
    const transport = createTransport({
      relayUrl: `smtp://user:secret@127.0.0.1:${sink.port}`,
      heloName: 'sender.test',
    });
    try {
      const err = await transport.send({ from: 'a@example.com', to: 'clear@example.org' }, RAW).then(
        () => assert.fail('sent through a relay that offers no STARTTLS'),
        (e: unknown) => e as Error & { code?: string },
      );
      assert.equal(err.code, 'EINSECUREAUTH');
      assert.match(err.message, /never sent over an unencrypted connection.*insecure_auth=true/);
      assert.deepEqual(sink.authAttempts(), [], 'no AUTH was sent');
      assert.equal(sink.messages().length, 0);
      // Deferred, as a relay refusing our credentials is: the operator fixes the URL, the mail waits.
      assert.equal(classifyDeliveryError(err).kind, 'defer');
    } finally {
      await transport.close();
      await sink.close();
    }
  });

  test('SIZE= is declared on MAIL FROM, and a message over the announced SIZE is refused before DATA as the message’s fault', async () => {
    const sink = await startSmtpSink({ size: 1000 });
    const transport = createTransport({ relayUrl: `smtp://127.0.0.1:${sink.port}`, heloName: 'sender.test' });
    try {
      await transport.send({ from: 'a@example.com', to: 'small@example.org' }, RAW);
      assert.equal(sink.transactions()[0]?.mailFromArgs.SIZE, String(RAW.length));

      const big = Buffer.concat([RAW, Buffer.alloc(2000, 'x'), Buffer.from('\r\n')]);
      const err = await transport.send({ from: 'a@example.com', to: 'big@example.org' }, big).then(
        () => assert.fail('a message over SIZE was sent'),
        (e: unknown) => e,
      );
      const failure = classifyDeliveryError(err);
      assert.deepEqual([failure.kind, failure.class, failure.status], ['fail', 'message', '5.3.4']);
      assert.match(failure.message, /2\d{3} bytes not sent: larger than the server accepts/);
      assert.ok(!sink.transactions().some((t) => t.to.includes('big@example.org') && t.data), 'no DATA');
      assert.equal(sink.messages().length, 1);
    } finally {
      await transport.close();
      await sink.close();
    }
  });

  test('EHLO gives the configured name when it is an FQDN, otherwise the envelope sender’s domain', async () => {
    assert.equal(heloNameFor('mta1.mailplane.example', 'a@example.com'), 'mta1.mailplane.example');
    assert.equal(heloNameFor('mailplane-sender-7d9f5', 'a@example.com'), 'example.com');
    assert.equal(heloNameFor('localhost', 'bounces+x.y@bounces.example.com'), 'bounces.example.com');
    assert.equal(heloNameFor('host.local', 'a@example.com'), 'example.com');

    const sink = await startSmtpSink();
    const transport = createTransport({
      heloName: 'pod-name',
      port: sink.port,
      resolveMx: async () => [],
      mtaSts: false,
      allowPrivate: true,
    });
    try {
      await transport.send({ from: 'a@sending.example', to: 'x@127.0.0.1' }, RAW);
      assert.equal(sink.transactions()[0]?.ehlo, 'sending.example');
    } finally {
      await transport.close();
      await sink.close();
    }
  });
});
