// Direct delivery through the real `mailplane sender` process, with no relay: it asks a DNS server
// on loopback for MX, A and MTA-STS records, fetches MTA-STS policies over HTTPS from a loopback
// server whose certificate a test CA signed (trusted through NODE_EXTRA_CA_CERTS), and delivers
// to MTAs on distinct loopback addresses at one MX port (MAILPLANE_MX_PORT): Debian's Postfix as
// the real peer, and smtp-server sinks that offer STARTTLS with a certificate nobody vouches for,
// fail every handshake, offer no STARTTLS, or present a certificate the CA signed.
//
// What a user of the API sees is checked: the MX used and the final status, the reason of a
// deferral, the messages each MTA received and whether over TLS, the TLS counters in the sender's
// /metrics, and that two MX names on one IP never get more sessions than the limit per IP.

import assert from 'node:assert/strict';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startCliProcess, type CliProcess } from './helpers/cli-process.js';
import { startDnsServer, type DnsAnswer, type DnsServer } from './helpers/dns-server.js';
import { eventually } from './helpers/eventually.js';
import { freePort } from './helpers/free-port.js';
import { startTestPlatform, type TestPlatform } from './helpers/platform.js';
import { startPostfix, type PostfixInstance } from './helpers/postfix.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';
import { createTestCa, type TestCa } from './helpers/test-ca.js';

const SECRET = 'test-secret-key-of-at-least-32-characters';

/** One loopback address per MTA: Linux routes all of 127/8 to the loopback interface. */
const IP = {
  postfix: '127.0.0.10',
  selfSigned: '127.0.0.11',
  failsHandshake: '127.0.0.12',
  noStarttls: '127.0.0.13',
  caSigned: '127.0.0.14',
  busy: '127.0.0.15',
  expired: '127.0.0.16',
  policies: '127.0.0.20',
  /** Nothing listens here: a connection is refused. */
  nothing: '127.0.0.30',
} as const;

/** The limit per destination IP the sender applies by default (sender/transport.ts). */
const CONNECTIONS_PER_IP = 5;

/** An MTA-STS policy file (RFC 8461 §3.2). */
const policy = (mode: 'enforce' | 'testing', ...mx: string[]) =>
  ['version: STSv1', `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), 'max_age: 86400', ''].join('\r\n');

let ca: TestCa;
let dns: DnsServer;
let postfix: PostfixInstance;
let platform: TestPlatform;
let sender: CliProcess;
let policyServer: HttpsServer;
const sinks: Record<
  'selfSigned' | 'failsHandshake' | 'noStarttls' | 'caSigned' | 'busy' | 'expired',
  SmtpSink
> = {} as never;
/** Policy bodies by host (mta-sts.<domain>); a host absent here answers 404. */
const policies = new Map<string, string>();

const mx = (priority: number, exchange: string): DnsAnswer => ({ type: 'MX', priority, exchange });
const a = (address: string): DnsAnswer => ({ type: 'A', address });

/** A domain whose MX hosts are `hosts` (name → address), each at the same preference unless given. */
function publishDomain(domain: string, hosts: [number, string, string][]): void {
  dns.records.set(
    domain,
    hosts.map(([priority, name]) => mx(priority, name)),
  );
  for (const [, name, address] of hosts) dns.records.set(name, [a(address)]);
}

/** An MTA-STS policy for `domain`: the TXT record, the policy host's address and its policy file. */
function publishPolicy(domain: string, body: string | undefined, id = '20261202T0100'): void {
  dns.records.set(`_mta-sts.${domain}`, [{ type: 'TXT', value: `v=STSv1; id=${id};` }]);
  dns.records.set(`mta-sts.${domain}`, [a(IP.policies)]);
  if (body !== undefined) policies.set(`mta-sts.${domain}`, body);
}

before(async () => {
  ca = await createTestCa();
  dns = await startDnsServer();
  const mxPort = await freePort();
  const selfSigned = await ca.selfSigned(['mx.badcert.test', 'mx.enforce-bad.test', 'mx.testing.test']);
  const caSigned = await ca.issue(['mx.good.test', 'mx.enforce-good.test']);
  const postfixCert = await ca.issue(['mx.postfix-sts.test']);
  const expired = await ca.issue(['mx.enforce-expired.test'], { expired: true });
  [
    postfix,
    sinks.selfSigned,
    sinks.failsHandshake,
    sinks.noStarttls,
    sinks.caSigned,
    sinks.busy,
    sinks.expired,
  ] = await Promise.all([
    startPostfix({ host: IP.postfix, port: mxPort, tls: postfixCert }),
    startSmtpSink({ host: IP.selfSigned, port: mxPort, starttls: selfSigned }),
    startSmtpSink({ host: IP.failsHandshake, port: mxPort, starttls: 'fail-handshake' }),
    startSmtpSink({ host: IP.noStarttls, port: mxPort }),
    startSmtpSink({ host: IP.caSigned, port: mxPort, starttls: caSigned }),
    // Holding each DATA reply makes sessions overlap, so that their number at once is the limit's.
    startSmtpSink({ host: IP.busy, port: mxPort, dataDelayMs: 300 }),
    startSmtpSink({ host: IP.expired, port: mxPort, starttls: expired }),
  ]);

  // The policy host's certificate names every mta-sts.<domain> but one, whose fetch must fail on it.
  const policyHosts = [
    'enforce-bad',
    'enforce-mismatch',
    'enforce-expired',
    'enforce-good',
    'enforce-notls',
    'enforce-nomatch',
    'postfix-sts',
    'testing',
    'fetch-fails',
  ];
  const policyCert = await ca.issue(policyHosts.map((d) => `mta-sts.${d}.test`));
  policyServer = createHttpsServer({ key: policyCert.key, cert: policyCert.cert }, (req, res) => {
    const body = policies.get(String(req.headers.host ?? '').replace(/:\d+$/, ''));
    if (req.url !== '/.well-known/mta-sts.txt' || body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
  });
  await new Promise<void>((resolve) => policyServer.listen(0, IP.policies, resolve));
  const policyPort = (policyServer.address() as AddressInfo).port;

  // Priorities: the first MX refuses connections, the second is Postfix.
  publishDomain('prio.test', [
    [10, 'mx1.prio.test', IP.nothing],
    [20, 'mx2.prio.test', IP.postfix],
  ]);
  // The preferred MX is tried first, and answers: the other never sees the message.
  publishDomain('order.test', [
    [20, 'mx2.order.test', IP.noStarttls],
    [10, 'mx1.order.test', IP.postfix],
  ]);
  dns.records.set('nullmx.test', [mx(0, '.')]);
  // No MX: the domain's own address is its implicit MX.
  dns.records.set('implicit.test', [a(IP.postfix)]);
  // No MX and no address.
  dns.records.set('nomail.test', [{ type: 'TXT', value: 'v=spf1 -all' }]);
  publishDomain('failhs.test', [[10, 'mx.failhs.test', IP.failsHandshake]]);
  publishDomain('notls.test', [[10, 'mx.notls.test', IP.noStarttls]]);
  publishDomain('badcert.test', [[10, 'mx.badcert.test', IP.selfSigned]]);
  publishDomain('enforce-bad.test', [[10, 'mx.enforce-bad.test', IP.selfSigned]]);
  publishPolicy('enforce-bad.test', policy('enforce', 'mx.enforce-bad.test'));
  publishDomain('enforce-mismatch.test', [[10, 'mx.enforce-mismatch.test', IP.caSigned]]);
  publishPolicy('enforce-mismatch.test', policy('enforce', '*.enforce-mismatch.test'));
  publishDomain('enforce-expired.test', [[10, 'mx.enforce-expired.test', IP.expired]]);
  publishPolicy('enforce-expired.test', policy('enforce', 'mx.enforce-expired.test'));
  publishDomain('enforce-good.test', [[10, 'mx.enforce-good.test', IP.caSigned]]);
  publishPolicy('enforce-good.test', policy('enforce', '*.enforce-good.test'));
  publishDomain('enforce-notls.test', [[10, 'mx.enforce-notls.test', IP.noStarttls]]);
  publishPolicy('enforce-notls.test', policy('enforce', 'mx.enforce-notls.test'));
  publishDomain('enforce-nomatch.test', [[10, 'mx.enforce-nomatch.test', IP.postfix]]);
  publishPolicy('enforce-nomatch.test', policy('enforce', 'mx.elsewhere.test'));
  publishDomain('postfix-sts.test', [[10, 'mx.postfix-sts.test', IP.postfix]]);
  publishPolicy('postfix-sts.test', policy('enforce', 'mx.postfix-sts.test'));
  publishDomain('testing.test', [[10, 'mx.testing.test', IP.selfSigned]]);
  publishPolicy('testing.test', policy('testing', 'mx.testing.test'));
  // A published record whose policy cannot be fetched: 404 here, a certificate for other names there.
  publishDomain('fetch-fails.test', [[10, 'mx.fetch-fails.test', IP.noStarttls]]);
  publishPolicy('fetch-fails.test', undefined);
  publishDomain('webpki.test', [[10, 'mx.webpki.test', IP.noStarttls]]);
  publishPolicy('webpki.test', policy('enforce', 'mx.webpki.test'));
  // Two MX names, one address.
  publishDomain('busy.test', [
    [10, 'mxa.busy.test', IP.busy],
    [10, 'mxb.busy.test', IP.busy],
  ]);

  platform = await startTestPlatform();
  sender = await startCliProcess('sender', {
    DATABASE_URL: platform.config.databaseUrl,
    MAILPLANE_SECRET_KEY: SECRET,
    MAILPLANE_HELO_NAME: 'sender.mailplane.test',
    MAILPLANE_DNS_SERVERS: dns.address,
    MAILPLANE_MX_PORT: String(mxPort),
    // Every MTA of the test is on loopback, which a real recipient domain's MX may not name.
    MAILPLANE_DELIVERY_ALLOW_PRIVATE: 'true',
    MAILPLANE_MTA_STS_PORT: String(policyPort),
    NODE_EXTRA_CA_CERTS: ca.caFile,
  });
});

after(async () => {
  await sender?.stop();
  await platform?.close();
  await Promise.all([
    postfix?.stop(),
    ...Object.values(sinks).map((sink) => sink.close()),
    new Promise((resolve) => (policyServer ? policyServer.close(resolve) : resolve(undefined))),
    dns?.close(),
  ]);
  await ca?.close();
});

interface Outcome {
  status: string;
  lastReply: string | null;
  /** The detail of the event that settled (or deferred) the message. */
  detail: Record<string, unknown>;
}

/** Sends one email through the api and waits until each of its messages has left `queued`/`sending`. */
async function send(to: string[]): Promise<Outcome[]> {
  const res = await fetch(`${platform.url}/v1/emails`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${platform.keys.get('default/acme/backend')!}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({
      from: 'Acme <hello@example.com>',
      to,
      subject: 'Direct',
      text: 'Hello, directly.',
    }),
  });
  const body = await res.text();
  assert.equal(res.status, 202, body);
  const { id } = JSON.parse(body) as { id: string };
  const db = platform.database.db;
  return eventually(
    `the messages of ${to.join(', ')} to be attempted`,
    async () => {
      const messages = await db.selectFrom('messages').selectAll().where('email_id', '=', id).execute();
      if (
        messages.length !== to.length ||
        messages.some((m) => m.status === 'queued' || m.status === 'sending')
      ) {
        return undefined;
      }
      return Promise.all(
        to.map(async (recipient) => {
          const message = messages.find((m) => m.recipient === recipient)!;
          const event = await db
            .selectFrom('events')
            .select('detail')
            .where('message_id', '=', message.id)
            .where('type', '=', message.status)
            .orderBy('created_at', 'desc')
            .executeTakeFirstOrThrow();
          return { status: message.status, lastReply: message.last_reply, detail: event.detail };
        }),
      );
    },
    60_000,
    () => sender.tail(),
  );
}

async function sendOne(to: string): Promise<Outcome> {
  return (await send([to]))[0]!;
}

/** The value of one series of the sender's /metrics, 0 when absent. */
async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${sender.url}/metrics`)).text();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && wanted.every((w) => l.includes(w)));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

const receivedBy = (sink: SmtpSink, recipient: string) =>
  sink.transactions().filter((t) => t.to.includes(recipient) && t.data);

describe('MX selection', () => {
  test('an MX that refuses connections is passed over for the next by preference, and Postfix receives the message', async () => {
    const outcome = await sendOne('ada@prio.test');
    assert.equal(outcome.status, 'delivered', JSON.stringify(outcome));
    assert.equal(outcome.detail.host, 'mx2.prio.test');
    const received = await postfix.waitForMessages(1);
    assert.ok(received.some((m) => m.originalRecipient === 'ada@prio.test'));
  });

  test('the most preferred MX that answers gets the message, not the next one', async () => {
    const outcome = await sendOne('bo@order.test');
    assert.equal(outcome.status, 'delivered', JSON.stringify(outcome));
    assert.equal(outcome.detail.host, 'mx1.order.test');
    assert.deepEqual(receivedBy(sinks.noStarttls, 'bo@order.test'), []);
  });

  test('a domain with no MX is delivered to its own address (the implicit MX)', async () => {
    const outcome = await sendOne('cy@implicit.test');
    assert.equal(outcome.status, 'delivered', JSON.stringify(outcome));
    await eventually('Postfix to store the message', async () =>
      (await postfix.messages()).some((m) => m.originalRecipient === 'cy@implicit.test'),
    );
  });

  test('a null MX bounces at once with 5.1.10, and a domain with neither MX nor address with 5.1.2', async () => {
    const [nullMx, noMail] = await send(['di@nullmx.test', 'ed@nomail.test']);
    assert.equal(nullMx!.status, 'bounced');
    assert.match(nullMx!.lastReply ?? '', /^556 5\.1\.10 /);
    assert.equal(noMail!.status, 'bounced');
    assert.match(noMail!.lastReply ?? '', /^550 5\.1\.2 .*no MX and no address/);
  });
});

describe('opportunistic TLS', () => {
  test('a server whose TLS handshake fails gets the message in plaintext on a second session', async () => {
    const outcome = await sendOne('fay@failhs.test');
    assert.equal(outcome.status, 'delivered', JSON.stringify(outcome));
    const [transaction] = receivedBy(sinks.failsHandshake, 'fay@failhs.test');
    assert.equal(transaction?.secure, false);
    assert.ok(sinks.failsHandshake.sessions().total >= 2, 'a session that tried TLS, then one that did not');
    assert.ok(
      (await metric('mailplane_tls_failures_total', {
        domain: 'failhs.test',
        policy_type: 'no-policy-found',
        result_type: 'validation-failure',
      })) >= 1,
    );
  });

  test('a certificate no CA vouches for still encrypts the session when the domain has no policy', async () => {
    const outcome = await sendOne('gus@badcert.test');
    assert.equal(outcome.status, 'delivered', JSON.stringify(outcome));
    assert.equal(receivedBy(sinks.selfSigned, 'gus@badcert.test')[0]?.secure, true);
    assert.ok(
      (await metric('mailplane_tls_sessions_total', {
        domain: 'badcert.test',
        policy_type: 'no-policy-found',
      })) >= 1,
    );
  });

  test('a server without STARTTLS gets the message in plaintext, counted as starttls-not-supported', async () => {
    const outcome = await sendOne('hal@notls.test');
    assert.equal(outcome.status, 'delivered', JSON.stringify(outcome));
    assert.equal(receivedBy(sinks.noStarttls, 'hal@notls.test')[0]?.secure, false);
    assert.ok(
      (await metric('mailplane_tls_failures_total', {
        domain: 'notls.test',
        policy_type: 'no-policy-found',
        result_type: 'starttls-not-supported',
      })) >= 1,
    );
  });
});

describe('MTA-STS', () => {
  test('enforce: a certificate no CA vouches for is refused before MAIL FROM, and the message deferred with the reason', async () => {
    const outcome = await sendOne('ivy@enforce-bad.test');
    assert.equal(outcome.status, 'deferred', JSON.stringify(outcome));
    assert.match(
      String(outcome.detail.reason),
      /MTA-STS policy of enforce-bad\.test \(enforce\).*certificate-not-trusted/,
    );
    assert.deepEqual(
      sinks.selfSigned.transactions().filter((t) => t.to.includes('ivy@enforce-bad.test')),
      [],
      'no MAIL FROM for it',
    );
    assert.ok(
      (await metric('mailplane_tls_failures_total', {
        domain: 'enforce-bad.test',
        policy_type: 'sts',
        result_type: 'certificate-not-trusted',
      })) >= 1,
    );
  });

  test('enforce: a valid certificate for another name is refused as certificate-host-mismatch', async () => {
    const outcome = await sendOne('jo@enforce-mismatch.test');
    assert.equal(outcome.status, 'deferred', JSON.stringify(outcome));
    assert.match(
      String(outcome.detail.reason),
      /mx\.enforce-mismatch\.test \[127\.0\.0\.14\]: certificate-host-mismatch/,
    );
    assert.deepEqual(receivedBy(sinks.caSigned, 'jo@enforce-mismatch.test'), []);
  });

  test('enforce: a certificate the CA signed that has expired is refused as certificate-expired', async () => {
    const outcome = await sendOne('kim@enforce-expired.test');
    assert.equal(outcome.status, 'deferred', JSON.stringify(outcome));
    assert.match(String(outcome.detail.reason), /certificate-expired \(CERT_HAS_EXPIRED\)/);
    assert.deepEqual(receivedBy(sinks.expired, 'kim@enforce-expired.test'), []);
    assert.ok(
      (await metric('mailplane_tls_failures_total', {
        domain: 'enforce-expired.test',
        policy_type: 'sts',
        result_type: 'certificate-expired',
      })) >= 1,
    );
  });

  test('enforce: an MX without STARTTLS, or one the policy does not name, is no way in', async () => {
    const [noTls, noMatch] = await send(['kai@enforce-notls.test', 'lu@enforce-nomatch.test']);
    assert.equal(noTls!.status, 'deferred');
    assert.match(String(noTls!.detail.reason), /starttls-not-supported/);
    assert.equal(noMatch!.status, 'deferred');
    assert.match(
      String(noMatch!.detail.reason),
      /no MX host \(mx\.enforce-nomatch\.test\) matches the policy's mx \(mx\.elsewhere\.test\)/,
    );
    assert.deepEqual(receivedBy(sinks.noStarttls, 'kai@enforce-notls.test'), []);
    assert.ok(!(await postfix.messages()).some((m) => m.originalRecipient === 'lu@enforce-nomatch.test'));
  });

  test('enforce: a certificate the CA signed for the MX name is accepted, over TLS', async () => {
    const outcome = await sendOne('max@enforce-good.test');
    assert.equal(outcome.status, 'delivered', JSON.stringify(outcome));
    assert.equal(receivedBy(sinks.caSigned, 'max@enforce-good.test')[0]?.secure, true);
    assert.ok(
      (await metric('mailplane_tls_sessions_total', { domain: 'enforce-good.test', policy_type: 'sts' })) >=
        1,
    );
  });

  test('enforce: Postfix with a certificate the CA signed for its name receives the message over TLS', async () => {
    const outcome = await sendOne('otto@postfix-sts.test');
    assert.equal(outcome.status, 'delivered', JSON.stringify(outcome));
    const received = await eventually('Postfix to store the message', async () =>
      (await postfix.messages()).find((m) => m.originalRecipient === 'otto@postfix-sts.test'),
    );
    // smtpd_tls_received_header: Postfix says in its Received header that the session was TLS.
    assert.match(
      received.raw.toString('latin1'),
      /^Received: from [^\r]*\r\n(?:\s[^\r]*\r\n)*?\s+\(using TLSv1\.[23] /m,
    );
  });

  test('testing: the certificate failure is counted, and the message delivered', async () => {
    const outcome = await sendOne('ned@testing.test');
    assert.equal(outcome.status, 'delivered', JSON.stringify(outcome));
    assert.equal(receivedBy(sinks.selfSigned, 'ned@testing.test').length, 1);
    assert.ok(
      (await metric('mailplane_tls_failures_total', {
        domain: 'testing.test',
        policy_type: 'sts',
        result_type: 'certificate-not-trusted',
      })) >= 1,
    );
  });

  test('a policy that cannot be fetched (404, or a certificate for other names) counts as such and is no policy', async () => {
    const [fetchFails, webpki] = await send(['ola@fetch-fails.test', 'pia@webpki.test']);
    assert.equal(fetchFails!.status, 'delivered', JSON.stringify(fetchFails));
    assert.equal(webpki!.status, 'delivered', JSON.stringify(webpki));
    assert.ok(
      (await metric('mailplane_tls_failures_total', {
        domain: 'fetch-fails.test',
        policy_type: 'sts',
        result_type: 'sts-policy-fetch-error',
      })) >= 1,
    );
    assert.ok(
      (await metric('mailplane_tls_failures_total', {
        domain: 'webpki.test',
        policy_type: 'sts',
        result_type: 'sts-webpki-invalid',
      })) >= 1,
    );
  });
});

test('two MX names on one IP share its connection limit: the server never sees more sessions at once', async () => {
  const recipients = Array.from({ length: 30 }, (_, i) => `r${i}@busy.test`);
  const outcomes = await send(recipients);
  assert.deepEqual(
    outcomes.map((o) => o.status),
    recipients.map(() => 'delivered'),
  );
  const hosts = new Set(outcomes.map((o) => o.detail.host));
  assert.deepEqual([...hosts].sort(), ['mxa.busy.test', 'mxb.busy.test'], 'both names were used');
  const { peak } = sinks.busy.sessions();
  assert.ok(peak <= CONNECTIONS_PER_IP, `${peak} sessions at once to one IP`);
  assert.ok(peak > 1, 'sessions overlapped, so the limit was what held them');
});
