// One SMTP session of direct delivery against servers that misbehave at the worst moment: a send
// always settles, and a failure after the whole message went out is told apart from a refusal.

import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { openSession } from '../sender/smtp-session.js';

const servers: Server[] = [];
after(() => servers.forEach((s) => s.close()));

/** A line-at-a-time SMTP server whose answers the test writes; `answer` may end the socket. */
async function scriptedServer(answer: (line: string, socket: Socket) => string | undefined): Promise<number> {
  const server = createServer((socket) => {
    let inData = false;
    let buffered = '';
    socket.write('220 mx.example.org ESMTP\r\n');
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      let at: number;
      while ((at = buffered.indexOf('\r\n')) >= 0) {
        const line = buffered.slice(0, at);
        buffered = buffered.slice(at + 2);
        if (inData && line === '.') inData = false;
        else if (!inData && line.toUpperCase() === 'DATA') inData = true;
        // The DATA command is answered; the message's lines are not, but for its final dot.
        if (inData && line.toUpperCase() !== 'DATA') continue;
        const reply = answer(line, socket);
        if (reply !== undefined && !socket.destroyed) socket.write(reply + '\r\n');
      }
    });
    socket.on('error', () => {});
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

const session = (port: number) =>
  openSession({
    ip: '127.0.0.1',
    port,
    mxHost: 'mx.example.org',
    heloName: 'mail.example.com',
    tls: 'none',
    connectionTimeoutMs: 5_000,
    socketTimeoutMs: 5_000,
  });

const mail = {
  envelope: { from: 'a@example.com', to: ['b@example.org'], size: 40 },
  raw: Buffer.from('From: a@example.com\r\nTo: b@example.org\r\n\r\nhello\r\n'),
};

test('a 550 to RCPT from a server that then hangs up on RSET settles as that refusal', async () => {
  const port = await scriptedServer((line, socket) => {
    if (/^EHLO/i.test(line)) return '250 mx.example.org';
    if (/^MAIL/i.test(line)) return '250 ok';
    if (/^RCPT/i.test(line)) return '550 5.1.1 no such user';
    if (/^RSET/i.test(line)) socket.destroy();
    return undefined;
  });
  const s = await session(port);
  await assert.rejects(s.sendMail(mail), (err: { responseCode?: number; afterData?: boolean }) => {
    assert.equal(err.responseCode, 550);
    assert.equal(err.afterData, undefined);
    return true;
  });
  assert.equal(s.reusable, false);
});

test('a server that takes the whole message and hangs up before its reply: afterData, not a refusal', async () => {
  const port = await scriptedServer((line, socket) => {
    if (/^EHLO/i.test(line)) return '250 mx.example.org';
    if (/^(MAIL|RCPT)/i.test(line)) return '250 ok';
    if (line === 'DATA') return '354 go ahead';
    // The final dot: the message is all there, and no answer comes.
    if (line === '.') socket.destroy();
    return undefined;
  });
  const s = await session(port);
  await assert.rejects(s.sendMail(mail), (err: { responseCode?: number; afterData?: boolean }) => {
    assert.equal(err.responseCode, undefined);
    assert.equal(err.afterData, true);
    return true;
  });
});
