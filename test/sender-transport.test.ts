// The SMTP transport against the dev inbox on loopback: relay delivery (with credentials in the
// URL), direct MX delivery in preference order, and the DNS answers that end a delivery for good.

import assert from 'node:assert/strict';
import type { MxRecord } from 'node:dns';
import { after, before, describe, test } from 'node:test';
import { startInbox, type Inbox } from '../dev/inbox.js';
import { createTransport, mxHosts } from '../sender/transport.js';

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
      relayUrl: `smtp://user%40example.com:p%3Ass@127.0.0.1:${inbox.smtpPort}`,
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

  test('a server that answers is final: a 5xx from the first MX is not retried at the next', async () => {
    const transport = createTransport({
      heloName: 'sender.test',
      port: inbox.smtpPort,
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
