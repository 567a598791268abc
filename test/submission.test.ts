// SMTP submission as an application meets it: nodemailer, unchanged but for host, port and
// password, over STARTTLS (587) and implicit TLS (465), the message arriving at a loopback inbox
// with the client's Message-ID and headers, its tags on the email and a DKIM signature that
// dkimpy verifies; and Debian's swaks for every refusal, each at its step of the conversation with
// its reply code and enhanced status code, and nothing queued by any of them.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { headerValue, startInbox, type Inbox } from '../dev/inbox.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics, type Metrics } from '../lib/metrics.js';
import { startSubmission, type RunningSubmission } from '../submission/main.js';
import { submissionSizeLimit } from '../submission/server.js';
import type { Sender } from '../sender/worker.js';
import { verifyDkimIndependently } from './helpers/dkim.js';
import { eventually } from './helpers/eventually.js';
import {
  sendingDomain,
  startTestPlatform,
  startTestSender,
  tenant,
  type TestPlatform,
} from './helpers/platform.js';

const run = promisify(execFile);
const MAX_MESSAGE_BYTES = 50_000;
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

let inbox: Inbox;
let platform: TestPlatform;
let sender: Sender;
let submission: RunningSubmission;
let metrics: Metrics;
let dir: string;
let ca: Buffer;
/** acme's key (send, read) and globex's: `app` may send, `reader` may only read. */
let key: string;
let globexKey: string;
let readerKey: string;

/** A throwaway certificate for localhost and 127.0.0.1, as cert-manager would write one. */
async function makeCertificate(name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    `/CN=localhost/O=${name}`,
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout',
    keyFile,
    '-out',
    cert,
  ]);
  return { cert, key: keyFile };
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailplane-submission-'));
  const first = await makeCertificate('first');
  ca = await readFile(first.cert);
  // What the chart mounts: one path for the certificate and one for the key, renewed in place.
  await writeFile(join(dir, 'tls.crt'), ca);
  await writeFile(join(dir, 'tls.key'), await readFile(first.key));
  inbox = await startInbox();
  platform = await startTestPlatform({
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${inbox.smtpPort}`,
    MAILPLANE_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
  });
  await platform.apply([
    tenant(
      'globex',
      [
        { name: 'app', scopes: ['send'] },
        { name: 'reader', scopes: ['read'] },
      ],
      2,
    ),
    sendingDomain('globex-com', 'globex', 'globex.example'),
  ]);
  key = platform.keys.get('default/acme/backend')!;
  globexKey = platform.keys.get('default/globex/app')!;
  readerKey = platform.keys.get('default/globex/reader')!;
  metrics = createMetrics();
  submission = await startSubmission({
    database: platform.database,
    config: {
      ...platform.config,
      submissionPort: 0,
      submissionsPort: 0,
      tlsCertFile: join(dir, 'tls.crt'),
      tlsKeyFile: join(dir, 'tls.key'),
    },
    log: silentLogger,
    metrics,
    tlsReloadMs: 100,
    authDelayMs: 20,
  });
  sender = await startTestSender(platform);
});

after(async () => {
  await sender?.stop();
  await submission?.close();
  await platform?.close();
  await inbox?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const api = async (path: string) => {
  const res = await fetch(platform.url + path, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200, path);
  return (await res.json()) as Record<string, unknown>;
};

/** The DKIM record of example.com, as GET /v1/domains lists it to publish. */
async function dkimRecords(): Promise<Record<string, string>> {
  const { data } = (await api('/v1/domains')) as {
    data: { records: { purpose: string; name: string; value: string }[] }[];
  };
  const dkim = data[0]!.records.find((r) => r.purpose === 'dkim')!;
  return { [dkim.name]: dkim.value };
}

async function emailCount(): Promise<number> {
  const row = await platform.database.db
    .selectFrom('emails')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

const delivered = (to: string, count = 1) =>
  eventually(`${count} message(s) to ${to} in the inbox`, async () => {
    const found = inbox.messages().filter((m) => m.envelope.to.includes(to));
    return found.length >= count ? found : undefined;
  });

describe('nodemailer, unchanged but for host, port and key', () => {
  test('over 587 with STARTTLS: each recipient gets the message as written, with its Message-ID and headers, DKIM-signed; the tags are the email’s', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: submission.server.port,
      secure: false,
      requireTLS: true,
      auth: { user: 'any-name-at-all', pass: key },
      tls: { ca, servername: 'localhost' },
    });
    const info = await transport.sendMail({
      from: 'Acme <hello@example.com>',
      to: 'ada@example.org',
      cc: 'grace@example.org',
      bcc: 'alan@example.org',
      subject: 'Ihre Bestellung ist unterwegs ✓',
      text: 'Hallo Ada, sie ist unterwegs.',
      html: '<p>Hallo Ada, <b>sie ist unterwegs</b>.</p>',
      messageId: '<order-42@shop.example.com>',
      headers: {
        'X-Mailplane-Tags': 'category=shipping, order=order-42',
        'X-Entity-Ref-ID': 'order-42',
        'In-Reply-To': '<question-7@shop.example.com>',
      },
      attachments: [{ filename: 'receipt.txt', content: 'Total: 42 EUR\n' }],
    });
    transport.close();
    assert.deepEqual(info.accepted.sort(), ['ada@example.org', 'alan@example.org', 'grace@example.org']);
    assert.match(info.response, /^250 2\.0\.0 queued as /);
    const emailId = UUID.exec(info.response)![0];

    const records = await dkimRecords();
    for (const to of ['ada@example.org', 'grace@example.org', 'alan@example.org']) {
      const [message] = await delivered(to);
      const raw = message!.raw;
      assert.equal(headerValue(raw, 'Message-ID'), '<order-42@shop.example.com>', to);
      assert.equal(headerValue(raw, 'X-Entity-Ref-ID'), 'order-42', to);
      assert.equal(headerValue(raw, 'In-Reply-To'), '<question-7@shop.example.com>', to);
      assert.equal(headerValue(raw, 'Subject'), 'Ihre Bestellung ist unterwegs ✓', to);
      assert.equal(headerValue(raw, 'Cc'), 'grace@example.org', to);
      assert.equal(headerValue(raw, 'Bcc'), undefined, `${to}: nobody sees the blind copy`);
      assert.equal(headerValue(raw, 'X-Mailplane-Tags'), undefined, `${to}: the tags header is taken off`);
      assert.match(raw, /filename=receipt\.txt/);
      assert.match(headerValue(raw, 'DKIM-Signature') ?? '', /d=example\.com/);
      const verdict = await verifyDkimIndependently(raw, records);
      assert.ok(verdict.ok, `${to}: ${verdict.output}`);
    }

    const email = await eventually('the email delivered', async () => {
      const e = await api(`/v1/emails/${emailId}`);
      return e.status === 'delivered' ? e : undefined;
    });
    assert.equal(email.from, 'Acme <hello@example.com>');
    assert.equal(email.message_id, '<order-42@shop.example.com>', 'the client’s own Message-ID');
    assert.equal(email.subject, 'Ihre Bestellung ist unterwegs ✓');
    assert.deepEqual(email.to, ['ada@example.org']);
    assert.deepEqual(email.cc, ['grace@example.org']);
    assert.deepEqual(email.bcc, ['alan@example.org']);
    assert.deepEqual(email.tags, [
      { name: 'category', value: 'shipping' },
      { name: 'order', value: 'order-42' },
    ]);
    assert.equal((email.recipients as unknown[]).length, 3);
    const tagged = (await api('/v1/emails?tag=category:shipping')) as { data: { id: string }[] };
    assert.deepEqual(
      tagged.data.map((e) => e.id),
      [emailId],
    );
  });

  test('over 465 with implicit TLS, pooled: every message is queued before its 250 and delivered; a message without Message-ID or Date gets both', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: submission.server.securePort,
      secure: true,
      pool: true,
      maxConnections: 3,
      auth: { user: 'app', pass: globexKey },
      tls: { ca, servername: 'localhost' },
    });
    const sent = await Promise.all(
      [1, 2, 3, 4, 5].map((n) =>
        transport.sendMail({
          from: `Globex <billing@globex.example>`,
          to: `customer-${n}@example.org`,
          subject: `Invoice ${n}`,
          text: `Invoice ${n} is attached in spirit.`,
        }),
      ),
    );
    transport.close();
    for (const info of sent) {
      // Queued means committed: the row is there when the 250 is.
      const id = UUID.exec(info.response)![0];
      const row = await platform.database.db
        .selectFrom('emails')
        .select('id')
        .where('id', '=', id)
        .executeTakeFirst();
      assert.ok(row, `email ${id} is in Postgres`);
    }
    for (const n of [1, 2, 3, 4, 5]) {
      const [message] = await delivered(`customer-${n}@example.org`);
      assert.match(headerValue(message!.raw, 'DKIM-Signature') ?? '', /d=globex\.example/);
    }

    // swaks writes neither Message-ID nor Date when told not to: the sender adds both.
    const result = await swaks(
      [
        '--tls-on-connect',
        '--auth',
        'LOGIN',
        '--auth-user',
        'someone',
        '--auth-password',
        key,
        '--from',
        'hello@example.com',
        '--to',
        'bare@example.org',
        '--data',
        'From: hello@example.com\r\nTo: bare@example.org\r\nSubject: bare\r\n\r\nno Message-ID, no Date\r\n',
      ],
      { port: submission.server.securePort, exit: 0 },
    );
    assert.match(lastReply(result).text, /^2\.0\.0 queued as /);
    const [bare] = await delivered('bare@example.org');
    const bareId = UUID.exec(lastReply(result).text)![0];
    assert.equal(headerValue(bare!.raw, 'Message-ID'), `<${bareId}@example.com>`);
    assert.equal((await api(`/v1/emails/${bareId}`)).message_id, `<${bareId}@example.com>`, 'as sent');
    assert.ok(!Number.isNaN(Date.parse(headerValue(bare!.raw, 'Date') ?? '')));
    const verdict = await verifyDkimIndependently(bare!.raw, await dkimRecords());
    assert.ok(verdict.ok, verdict.output);
  });
});

interface Reply {
  code: number;
  text: string;
}

/** The server's replies in a swaks transcript (`<-  250 …`, `<** 535 …`, `<~  …` over TLS). */
function replies(transcript: string): Reply[] {
  return [...transcript.matchAll(/^<[-~*]{1,2}\s+(\d{3})[ -](.*)$/gm)].map((m) => ({
    code: Number(m[1]),
    text: m[2]!.trim(),
  }));
}

function lastReply(transcript: string): Reply {
  return replies(transcript)
    .filter((r) => r.code !== 221)
    .at(-1)!;
}

/** Runs swaks against the submission listener, the STARTTLS port unless told otherwise; the transcript. */
async function swaks(args: string[], options: { port?: number; exit?: number } = {}): Promise<string> {
  const port = String(options.port ?? submission.server.port);
  const full = ['--server', '127.0.0.1', '--port', port, '--hide-informational', ...args];
  const result = await run('swaks', full, { maxBuffer: 10 << 20 }).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({
      code: typeof err.code === 'number' ? err.code : -1,
      out: (err.stdout ?? '') + (err.stderr ?? ''),
    }),
  );
  if (options.exit !== undefined) assert.equal(result.code, options.exit, result.out);
  return result.out;
}

const auth = (password: string) => [
  '-tls',
  '--auth',
  'PLAIN',
  '--auth-user',
  'app',
  '--auth-password',
  password,
];

describe('refusals, each at its step and with its code (swaks)', () => {
  test('AUTH before STARTTLS is refused (538) and the key is not looked at', async () => {
    const before = await emailCount();
    const out = await swaks([
      '--auth',
      'PLAIN',
      '--auth-user',
      'app',
      '--auth-password',
      key,
      '--from',
      'hello@example.com',
      '--to',
      'ada@example.org',
    ]);
    const refused = replies(out).find((r) => r.code === 538);
    assert.ok(refused, out);
    assert.match(refused.text, /STARTTLS/);
    assert.ok(!replies(out).some((r) => r.code === 235), 'never authenticated');
    assert.equal(await emailCount(), before);
  });

  test('no relaying without AUTH: MAIL FROM is refused (530 5.7.0), over TLS too', async () => {
    const out = await swaks(['-tls', '--from', 'hello@example.com', '--to', 'ada@example.org']);
    const refused = lastReply(out);
    assert.equal(refused.code, 530, out);
    assert.match(refused.text, /^5\.7\.0 authentication required/);
  });

  test('a key that is not one (535 5.7.8), and a key without the send scope (535 5.7.8)', async () => {
    const unknown = lastReply(
      await swaks([...auth('mp_live_not-a-key'), '--from', 'hello@example.com', '--to', 'a@example.org']),
    );
    assert.equal(unknown.code, 535);
    assert.match(unknown.text, /^5\.7\.8 the password is not a valid API key/);
    const reader = lastReply(
      await swaks([...auth(readerKey), '--from', 'billing@globex.example', '--to', 'a@example.org']),
    );
    assert.equal(reader.code, 535);
    assert.match(reader.text, /^5\.7\.8 this API key lacks the "send" scope/);
  });

  test("a sender domain that is not the tenant's is refused at MAIL FROM (553 5.7.1), another tenant's too", async () => {
    for (const from of ['someone@foreign.example', 'billing@globex.example']) {
      const out = await swaks([...auth(key), '--from', from, '--to', 'ada@example.org']);
      const refused = lastReply(out);
      assert.equal(refused.code, 553, out);
      assert.match(refused.text, /^5\.7\.1 <.+>: .+ is not a sending domain of this tenant/);
      assert.ok(!/^ -> RCPT/m.test(out), 'refused before any recipient');
    }
  });

  test('a suppressed recipient is refused at RCPT TO (550 5.7.1); the others of the message are sent', async () => {
    const acme = await platform.database.db
      .selectFrom('tenants')
      .select('id')
      .where('name', '=', 'acme')
      .executeTakeFirstOrThrow();
    await platform.database.db
      .insertInto('suppressions')
      .values({ tenant_id: acme.id, address: 'bounced@example.org', reason: 'bounce', detail: null })
      .execute();
    const out = await swaks([
      ...auth(key),
      '--from',
      'hello@example.com',
      '--to',
      'Bounced@example.org,kept@example.org',
    ]);
    const refused = replies(out).find((r) => r.code === 550);
    assert.ok(refused, out);
    assert.match(refused.text, /^5\.7\.1 <Bounced@example\.org>: .*suppression list/);
    assert.match(lastReply(out).text, /^2\.0\.0 queued as /, out);
    await delivered('kept@example.org');
    assert.ok(!inbox.messages().some((m) => m.envelope.to.includes('bounced@example.org')));
  });

  test("recipients beyond the tenant's limit are refused at RCPT TO (452 4.5.3)", async () => {
    const out = await swaks([
      ...auth(globexKey),
      '--from',
      'billing@globex.example',
      '--to',
      'one@example.org,two@example.org,three@example.org',
    ]);
    const refused = replies(out).find((r) => r.code === 452);
    assert.ok(refused, out);
    assert.match(refused.text, /^4\.5\.3 too many recipients: this tenant sends to at most 2 per message/);
  });

  test('a message over SIZE is refused after DATA (552 5.3.4) and nothing is queued', async () => {
    const before = await emailCount();
    const size = submissionSizeLimit(MAX_MESSAGE_BYTES);
    const ehlo = await swaks([...auth(key), '--to', 'ada@example.org', '--quit-after', 'AUTH']);
    assert.ok(
      replies(ehlo).some((r) => r.code === 250 && r.text === `SIZE ${size}`),
      ehlo,
    );
    const file = join(dir, 'big.eml');
    const line = 'x'.repeat(76);
    await writeFile(
      file,
      `From: hello@example.com\r\nTo: ada@example.org\r\nSubject: big\r\n\r\n${`${line}\r\n`.repeat(Math.ceil(size / 78) + 10)}`,
    );
    const out = await swaks([
      ...auth(key),
      '--from',
      'hello@example.com',
      '--to',
      'ada@example.org',
      '--data',
      file,
    ]);
    const refused = lastReply(out);
    assert.equal(refused.code, 552, out.slice(-2000));
    assert.match(refused.text, /^5\.3\.4 the message is over the limit/);
    assert.equal(await emailCount(), before);
  });

  test("after DATA: a From or Sender of a domain not the tenant's (554 5.7.1), bad tags and over-long lines (554 5.6.0)", async () => {
    const before = await emailCount();
    const cases: [string, RegExp][] = [
      [
        'From: Mallory <ceo@foreign.example>\r\nSubject: hi\r\n\r\nhi\r\n',
        /^5\.7\.1 From: foreign\.example is not a sending domain/,
      ],
      [
        'From: hello@example.com\r\nSender: Mallory <m@foreign.example>\r\n\r\nhi\r\n',
        /^5\.7\.1 Sender: foreign\.example is not a sending domain/,
      ],
      [
        'From: hello@example.com\r\nX-Mailplane-Tags: spaces are=not allowed\r\n\r\nhi\r\n',
        /^5\.6\.0 X-Mailplane-Tags: /,
      ],
      ['Subject: no sender\r\n\r\nhi\r\n', /^5\.6\.0 the message has no From header/],
      [
        `From: hello@example.com\r\n\r\n${'y'.repeat(1200)}\r\n`,
        /^5\.6\.0 line 3 is longer than 998 characters/,
      ],
    ];
    for (const [data, text] of cases) {
      const out = await swaks([
        ...auth(key),
        '--from',
        'hello@example.com',
        '--to',
        'ada@example.org',
        '--data',
        data,
      ]);
      const refused = lastReply(out);
      assert.equal(refused.code, 554, out);
      assert.match(refused.text, text);
    }
    assert.equal(await emailCount(), before);
  });
});

/**
 * One implicit-TLS session that sends `lines` one by one, each after the previous reply (a function
 * is run instead, between two commands); the replies.
 */
async function dialog(lines: (string | (() => Promise<void>))[]): Promise<string[]> {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port: submission.server.securePort,
    ca,
    servername: 'localhost',
  });
  const received: string[] = [];
  let buffer = '';
  let waiting: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    for (let end = buffer.indexOf('\r\n'); end >= 0; end = buffer.indexOf('\r\n')) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (/^\d{3} /.test(line)) {
        received.push(line);
        waiting?.();
      }
    }
  });
  const reply = () =>
    new Promise<void>((resolve) => {
      waiting = resolve;
      socket.once('close', resolve);
    });
  await reply();
  for (const line of lines) {
    if (socket.destroyed) break;
    if (typeof line === 'function') {
      await line();
      continue;
    }
    const next = reply();
    socket.write(`${line}\r\n`);
    await next;
  }
  socket.destroy();
  return received;
}

describe('bounds', () => {
  test('a connection gets three failed AUTH attempts, the third closing it (421 4.7.0); an address that keeps failing is made to wait', async () => {
    const plain = (password: string) => `AUTH PLAIN ${Buffer.from(`\0app\0${password}`).toString('base64')}`;
    const bad = plain('mp_live_wrong');
    const lines = await dialog(['EHLO client.example', bad, bad, bad, 'NOOP']);
    // The greeting and EHLO, then one reply per AUTH.
    assert.match(lines[2]!, /^535 5\.7\.8 /);
    assert.match(lines[3]!, /^535 5\.7\.8 /);
    assert.match(lines[4]!, /^421 4\.7\.0 .*too many failed AUTH attempts/);
    assert.equal(lines.length, 5, 'nothing answered after the 421: the connection is closed');

    const delayed = async () =>
      (await metrics.registry.getSingleMetricAsString('mailplane_submission_auth_delayed_total'))
        .split('\n')
        .find((l) => l.startsWith('mailplane_submission_auth_delayed_total '));
    for (let i = 0; i < 4; i++) await dialog(['EHLO client.example', bad, bad]);
    const waited = await delayed();
    assert.ok(waited && Number(waited.split(' ')[1]) > 0, `AUTH attempts delayed: ${waited}`);
    // The right key still works, after its wait.
    const ok = await dialog(['EHLO client.example', plain(key)]);
    assert.match(ok[2]!, /^235 /);
  });

  test('a key revoked while its connection stays open stops sending at the next MAIL FROM (421 4.7.0)', async () => {
    await platform.apply([tenant('initech', [{ name: 'temp', scopes: ['send'] }])]);
    const temp = platform.keys.get('default/initech/temp')!;
    const plain = `AUTH PLAIN ${Buffer.from(`\0app\0${temp}`).toString('base64')}`;
    const lines = await dialog([
      'EHLO client.example',
      plain,
      async () => {
        await platform.apply([tenant('initech', [])]);
        // A looked-up key is remembered for up to a second.
        await new Promise((r) => setTimeout(r, 1100));
      },
      'MAIL FROM:<hello@initech.example>',
      'NOOP',
    ]);
    assert.match(lines[2]!, /^235 /);
    assert.match(lines[3]!, /^421 4\.7\.0 the API key of this session has been revoked/);
    assert.equal(lines.length, 4, 'the connection is closed');
  });

  test('a renewed certificate is served to new connections without a restart', async () => {
    const fingerprint = () =>
      new Promise<string>((resolve, reject) => {
        const socket = tlsConnect({
          host: '127.0.0.1',
          port: submission.server.securePort,
          rejectUnauthorized: false,
        });
        socket.once('secureConnect', () => {
          resolve(socket.getPeerX509Certificate()!.fingerprint256);
          socket.destroy();
        });
        socket.once('error', reject);
      });
    const before = await fingerprint();
    assert.equal(before, new X509Certificate(ca).fingerprint256);
    const renewed = await makeCertificate('renewed');
    await writeFile(join(dir, 'tls.key'), await readFile(renewed.key));
    await writeFile(join(dir, 'tls.crt'), await readFile(renewed.cert));
    const expected = new X509Certificate(await readFile(renewed.cert)).fingerprint256;
    await eventually('the renewed certificate served', async () => (await fingerprint()) === expected);
    // A half-written pair (a key that is not the certificate's) is not taken: the renewed one stays.
    await writeFile(join(dir, 'tls.key'), await readFile(join(dir, 'first.key')));
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(await fingerprint(), expected);
  });

  test('without a certificate, or with a pair that does not load, the listener does not start and says which settings to set', async () => {
    const start = (tlsCertFile: string | undefined, tlsKeyFile: string | undefined) =>
      startSubmission({
        database: platform.database,
        config: { ...platform.config, submissionPort: 0, submissionsPort: 0, tlsCertFile, tlsKeyFile },
        log: silentLogger,
        metrics: createMetrics(),
      });
    await assert.rejects(
      start(undefined, undefined),
      /set MAILPLANE_TLS_CERT_FILE and MAILPLANE_TLS_KEY_FILE/,
    );
    await assert.rejects(
      start(join(dir, 'missing.crt'), join(dir, 'tls.key')),
      /cannot read MAILPLANE_TLS_CERT_FILE/,
    );
    await assert.rejects(
      start(join(dir, 'first.crt'), join(dir, 'renewed.key')),
      /MAILPLANE_TLS_CERT_FILE and MAILPLANE_TLS_KEY_FILE do not load/,
    );
  });
});
