// The inbound listener (`mailplane smtp`) against real peers: a bounce that Debian's Postfix
// generates on its own after it accepted a message, and DSN and ARF reports sent to the listener
// over SMTP by nodemailer. Each is matched to its message by the signed return path.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { openDatabase } from '../lib/db/index.js';
import { startInbox, type Inbox } from '../dev/inbox.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { bounceAddress } from '../lib/verp.js';
import { startSender, type Sender } from '../sender/worker.js';
import { handleReport, startInboundServer, type InboundServer } from '../smtp/inbound-server.js';
import { parseReport } from '../smtp/report.js';
import { startPostfix, type PostfixInstance } from './helpers/postfix.js';
import { startTestPlatform, type TestPlatform } from './helpers/platform.js';

let platform: TestPlatform;
let sender: Sender;
let inbound: InboundServer;
let postfix: PostfixInstance;
let refusingMx: Inbox;
const metrics = createMetrics();

/** Where Postfix relays mail for example.net: a server that has no such user. */
const GONE_DOMAIN = 'example.net';

before(async () => {
  // Postfix and the platform need each other's ports, and the platform holds the secret key the
  // listener checks return paths with: start the platform first with the relay set afterwards.
  refusingMx = await startInbox({ reply: () => ({ code: 550, message: '5.1.1 <user>: no such user' }) });
  platform = await startTestPlatform({ MAILPLANE_INBOUND_HOST: 'mx.mailplane.test' });
  inbound = await startInboundServer(
    {
      db: platform.database.db,
      secretKey: platform.config.secretKey,
      log: silentLogger,
      registry: metrics.registry,
      hostname: 'inbound.test',
    },
    { port: 0, host: '127.0.0.1' },
  );
  postfix = await startPostfix({
    routes: { [GONE_DOMAIN]: refusingMx.smtpPort, 'bounces.example.com': inbound.port },
  });
  const { database, metrics: platformMetrics, renderer } = platform;
  sender = await startSender({
    pool: database.pool,
    db: database.db,
    config: { ...platform.config, relayUrl: `smtp://${postfix.host}:${postfix.port}` },
    log: silentLogger,
    metrics: platformMetrics,
    renderer,
  });
});

after(async () => {
  await sender?.stop();
  await postfix?.stop();
  await inbound?.close();
  await refusingMx?.close();
  await platform?.close();
});

async function send(to: string): Promise<{ emailId: string; messageId: string }> {
  const res = await fetch(`${platform.url}/v1/emails`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${platform.keys.get('default/acme/backend')!}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ from: 'Acme <hello@example.com>', to: [to], subject: 'Hello', text: 'Hi there.' }),
  });
  const body = await res.text();
  assert.equal(res.status, 202, body);
  const { id } = JSON.parse(body) as { id: string };
  const row = await platform.database.db
    .selectFrom('messages')
    .select('id')
    .where('email_id', '=', id)
    .executeTakeFirstOrThrow();
  return { emailId: id, messageId: row.id };
}

/** Sends to `to` through Postfix (which keeps it) and answers once it is delivered, with its return path. */
async function sendDelivered(
  to: string,
): Promise<{ emailId: string; messageId: string; returnPath: string }> {
  const { emailId, messageId } = await send(to);
  await waitForEmail(emailId, (e) => e.status === 'delivered', 'not delivered to Postfix');
  return {
    emailId,
    messageId,
    returnPath: bounceAddress(platform.config.secretKey, messageId, 'bounces.example.com'),
  };
}

interface EmailView {
  status: string;
  last_event: string;
  events: {
    type: string;
    async?: boolean;
    status?: string;
    reply?: string;
    feedback_type?: string;
  }[];
}

async function getEmail(id: string): Promise<EmailView> {
  const res = await fetch(`${platform.url}/v1/emails/${id}`, {
    headers: { authorization: `Bearer ${platform.keys.get('default/acme/backend')!}` },
  });
  assert.equal(res.status, 200);
  return (await res.json()) as EmailView;
}

async function waitForEmail(
  id: string,
  until: (email: EmailView) => boolean,
  what: string,
): Promise<EmailView> {
  const deadline = Date.now() + 20_000;
  let email = await getEmail(id);
  while (!until(email)) {
    if (Date.now() > deadline) assert.fail(`${what}; the email is ${JSON.stringify(email, null, 1)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    email = await getEmail(id);
  }
  return email;
}

/**
 * The class (hard, soft, message, policy) of the message's bounced event, read from the database:
 * the api's event view does not show it yet.
 */
async function bounceClass(messageId: string): Promise<unknown> {
  const event = await platform.database.db
    .selectFrom('events')
    .select('detail')
    .where('message_id', '=', messageId)
    .where('type', '=', 'bounced')
    .executeTakeFirst();
  return event?.detail.class;
}

async function suppression(address: string): Promise<string | undefined> {
  const row = await platform.database.db
    .selectFrom('suppressions')
    .select('reason')
    .where('address', '=', address)
    .executeTakeFirst();
  return row?.reason;
}

/** Delivers a raw message to the listener as another MTA would; resolves with the reply or the error. */
async function deliverToListener(
  raw: string,
  to: string,
  port = inbound.port,
): Promise<{ ok: true; reply: string } | { ok: false; responseCode: number; command: string }> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    const info = await transport.sendMail({ envelope: { from: '', to: [to] }, raw });
    return { ok: true, reply: info.response };
  } catch (err) {
    const e = err as { responseCode?: number; command?: string };
    return { ok: false, responseCode: e.responseCode ?? 0, command: e.command ?? '' };
  } finally {
    transport.close();
  }
}

function dsn(options: {
  to: string;
  recipient: string;
  action: string;
  status: string;
  diagnostic: string;
}): string {
  return [
    'From: MAILER-DAEMON@mx.example.net',
    `To: ${options.to}`,
    'Subject: Delivery Status Notification',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status;',
    '\tboundary="dsn/boundary"',
    '',
    '--dsn/boundary',
    'Content-Type: text/plain',
    '',
    'Your message could not be delivered yet.',
    '',
    '--dsn/boundary',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.example.net',
    '',
    `Final-Recipient: rfc822; ${options.recipient}`,
    `Action: ${options.action}`,
    `Status: ${options.status}`,
    `Diagnostic-Code: smtp; ${options.diagnostic}`,
    '',
    '--dsn/boundary--',
    '',
  ].join('\r\n');
}

function arf(options: {
  returnPath: string;
  recipient: string;
  feedbackType?: string;
  /** Where the envelope sender is given: in the attached headers (the default), or only in the report. */
  returnPathIn?: 'original' | 'report';
}): string {
  const inReport = options.returnPathIn === 'report';
  return [
    'From: feedback@mailbox-provider.example',
    'To: fbl@bounces.example.com',
    'Subject: Complaint about a message from example.com',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=feedback-report; boundary="arf"',
    '',
    '--arf',
    'Content-Type: text/plain',
    '',
    'A recipient marked this message as spam.',
    '--arf',
    'Content-Type: message/feedback-report',
    '',
    `Feedback-Type: ${options.feedbackType ?? 'abuse'}`,
    'User-Agent: ProviderFBL/1.0',
    'Version: 1',
    `Original-Rcpt-To: ${options.recipient}`,
    ...(inReport ? [`Original-Mail-From: <${options.returnPath}>`] : []),
    '',
    '--arf',
    'Content-Type: text/rfc822-headers',
    '',
    ...(inReport ? [] : [`Return-Path: <${options.returnPath}>`]),
    'From: Acme <hello@example.com>',
    `To: ${options.recipient}`,
    'Subject: Hello',
    '--arf--',
    '',
  ].join('\r\n');
}

describe('asynchronous bounces', () => {
  test('a recipient Postfix accepted and then could not deliver to: bounced, suppressed, and the next send is not attempted', async () => {
    const to = `ada@${GONE_DOMAIN}`;
    const { emailId, messageId } = await send(to);
    const email = await waitForEmail(
      emailId,
      (e) => e.status === 'bounced',
      'Postfix’s bounce never came back',
    );

    const types = email.events.map((e) => e.type);
    assert.deepEqual(types.slice(0, 3), ['queued', 'sending', 'delivered'], 'Postfix first accepted it');
    const bounced = email.events.find((e) => e.type === 'bounced')!;
    assert.equal(bounced.async, true);
    assert.equal(bounced.status, '5.1.1');
    assert.equal(await bounceClass(messageId), 'hard');
    assert.match(
      bounced.reply ?? '',
      /550 5\.1\.1/,
      'the refusing server’s own reply, as Postfix reported it',
    );
    assert.equal(await suppression(to), 'bounce');

    const again = await send(to);
    await waitForEmail(
      again.emailId,
      (e) => e.status === 'suppressed',
      'a bounced address was sent to again',
    );
    assert.equal(refusingMx.messages().length, 0, 'the refusing server never took a message');
  });

  test('a delay notice is recorded on the timeline and changes nothing else', async () => {
    const to = 'slow@example.org';
    const { emailId, returnPath } = await sendDelivered(to);

    const reply = await deliverToListener(
      dsn({
        to: returnPath,
        recipient: to,
        action: 'delayed',
        status: '4.4.7',
        diagnostic: '421 4.4.7 try later',
      }),
      returnPath,
    );
    assert.equal(reply.ok, true, JSON.stringify(reply));
    const email = await getEmail(emailId);
    assert.equal(email.status, 'delivered');
    assert.deepEqual(
      email.events.filter((e) => e.type === 'delayed').map((e) => e.status),
      ['4.4.7'],
    );
    assert.equal(await suppression(to), undefined);
  });

  test('a bounce that arrives twice is recorded once', async () => {
    const to = 'twice@example.org';
    const { emailId, returnPath } = await sendDelivered(to);
    const report = dsn({
      to: returnPath,
      recipient: to,
      action: 'failed',
      status: '5.2.1',
      diagnostic: '550 5.2.1 disabled',
    });
    for (let i = 0; i < 2; i++) assert.equal((await deliverToListener(report, returnPath)).ok, true);
    const email = await getEmail(emailId);
    assert.equal(email.status, 'bounced');
    assert.equal(email.events.filter((e) => e.type === 'bounced').length, 1);
  });

  test('a transient failure given up on bounces the message but does not suppress the address', async () => {
    const to = 'full@example.org';
    const { emailId, returnPath } = await sendDelivered(to);
    const report = dsn({
      to: returnPath,
      recipient: to,
      action: 'failed',
      status: '4.2.2',
      diagnostic: '452 4.2.2 mailbox full',
    });
    assert.equal((await deliverToListener(report, returnPath)).ok, true);
    assert.equal((await getEmail(emailId)).status, 'bounced');
    assert.equal(await suppression(to), undefined);
  });
});

describe('bounce classes and formats', () => {
  test('a DSN saying 5.2.2 (mailbox full) bounces the message, class `soft`, and does not suppress', async () => {
    const to = 'quota@example.org';
    const { emailId, messageId, returnPath } = await sendDelivered(to);
    const report = dsn({
      to: returnPath,
      recipient: to,
      action: 'failed',
      status: '5.2.2',
      diagnostic: '552 5.2.2 mailbox full',
    });
    assert.equal((await deliverToListener(report, returnPath)).ok, true);
    const email = await getEmail(emailId);
    assert.equal(email.status, 'bounced');
    assert.equal(await bounceClass(messageId), 'soft');
    assert.equal(await suppression(to), undefined);
  });

  test('a DSN saying 5.7.1 (refused as spam down the line) is class `policy` and does not suppress', async () => {
    const to = 'filtered@example.org';
    const { emailId, messageId, returnPath } = await sendDelivered(to);
    const report = dsn({
      to: returnPath,
      recipient: to,
      action: 'failed',
      status: '5.7.1',
      diagnostic: '554 5.7.1 rejected as spam',
    });
    assert.equal((await deliverToListener(report, returnPath)).ok, true);
    assert.equal((await getEmail(emailId)).status, 'bounced');
    assert.equal(await bounceClass(messageId), 'policy');
    assert.equal(await suppression(to), undefined);
  });

  /** Plain-text bounces as the MTAs that send no DSN write them, `to` being the failed recipient. */
  const plainBounces: Record<string, (returnPath: string, to: string) => string> = {
    'sendmail ("550 user unknown")': (returnPath, to) =>
      [
        'From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>',
        `To: ${returnPath}`,
        'Subject: Returned mail: see transcript for details',
        '',
        'The original message was received at Mon, 2 Feb 2026 10:00:00 GMT',
        '',
        '   ----- The following addresses had permanent fatal errors -----',
        `<${to}>`,
        '',
        '   ----- Transcript of session follows -----',
        `... while talking to mx.example.net.:`,
        `>>> RCPT To:<${to}>`,
        '<<< 550 user unknown',
        `550 ${to}... User unknown`,
        '',
      ].join('\r\n'),
    'Exim (X-Failed-Recipients)': (returnPath, to) =>
      [
        'From: Mail Delivery System <Mailer-Daemon@mx.example.net>',
        `To: ${returnPath}`,
        'Subject: Mail delivery failed: returning message to sender',
        `X-Failed-Recipients: ${to}`,
        'Auto-Submitted: auto-replied',
        '',
        'This message was created automatically by mail delivery software.',
        '',
        'A message that you sent could not be delivered to one or more of its',
        'recipients. This is a permanent error. The following address(es) failed:',
        '',
        `  ${to}`,
        `    host mx.example.net [192.0.2.25]`,
        `    SMTP error from remote mail server after RCPT TO:<${to}>:`,
        `    host mx.example.net [192.0.2.25]: 550 5.1.1 <${to}>: Recipient address rejected: User unknown`,
        '',
      ].join('\r\n'),
    qmail: (returnPath, to) =>
      [
        'From: MAILER-DAEMON@mx.example.net',
        `To: ${returnPath}`,
        'Subject: failure notice',
        '',
        'Hi. This is the qmail-send program at mx.example.net.',
        "I'm afraid I wasn't able to deliver your message to the following addresses.",
        "This is a permanent error; I've given up. Sorry it didn't work out.",
        '',
        `<${to}>:`,
        'Sorry, no mailbox here by that name. (#5.1.1)',
        '',
      ].join('\r\n'),
  };
  for (const [format, bounce] of Object.entries(plainBounces)) {
    test(`a plain-text bounce from ${format} to a signed return path bounces the message and suppresses the address`, async () => {
      const to = `plain-${format.split(' ')[0]!.toLowerCase()}@example.org`;
      const { emailId, messageId, returnPath } = await sendDelivered(to);
      assert.equal((await deliverToListener(bounce(returnPath, to), returnPath)).ok, true);
      assert.equal((await getEmail(emailId)).status, 'bounced');
      assert.equal(await bounceClass(messageId), 'hard');
      assert.equal(await suppression(to), 'bounce');
    });
  }

  test('a DSN for a message that is gone, under a valid tag, is unmatched rather than a duplicate', async () => {
    const gone = randomUUID();
    const returnPath = bounceAddress(platform.config.secretKey, gone, 'bounces.example.com');
    const report = dsn({
      to: returnPath,
      recipient: 'gone@example.org',
      action: 'failed',
      status: '5.1.1',
      diagnostic: '550 5.1.1 gone',
    });
    const deps = { db: platform.database.db, secretKey: platform.config.secretKey };
    const outcomes = await handleReport(deps, Buffer.from(report), [
      { kind: 'return-path', messageId: gone },
    ]);
    assert.deepEqual(outcomes, ['unmatched']);
  });

  test('through the listener, DSNs under valid tags for messages it does not have are counted unmatched, and only a repeat is a duplicate', async () => {
    const counts = async () => {
      const metric = await metrics.registry.getSingleMetric('mailplane_inbound_reports_total')!.get();
      const of = (outcome: string) => metric.values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
      return { unmatched: of('unmatched'), duplicate: of('duplicate'), bounced: of('bounced') };
    };
    const before = await counts();
    for (const action of ['failed', 'delayed']) {
      const returnPath = bounceAddress(platform.config.secretKey, randomUUID(), 'bounces.example.com');
      const report = dsn({
        to: returnPath,
        recipient: 'unknown@example.org',
        action,
        status: action === 'failed' ? '5.1.1' : '4.4.1',
        diagnostic: action === 'failed' ? '550 5.1.1 no such user' : '451 4.4.1 no answer yet',
      });
      assert.equal((await deliverToListener(report, returnPath)).ok, true, action);
    }
    // A message that is here, bounced once and reported again: that second report is the duplicate.
    const to = 'twice@example.org';
    const { returnPath } = await sendDelivered(to);
    const report = dsn({
      to: returnPath,
      recipient: to,
      action: 'failed',
      status: '5.1.1',
      diagnostic: '550 5.1.1 gone',
    });
    for (let i = 0; i < 2; i++) assert.equal((await deliverToListener(report, returnPath)).ok, true);
    const after = await counts();
    assert.deepEqual(
      {
        unmatched: after.unmatched - before.unmatched,
        duplicate: after.duplicate - before.duplicate,
        bounced: after.bounced - before.bounced,
      },
      { unmatched: 2, duplicate: 1, bounced: 1 },
    );
  });
});

describe('complaints', () => {
  test('a feedback-loop report at fbl@ suppresses the address and shows as the last event, once', async () => {
    const to = 'grumpy@example.org';
    const { emailId, returnPath } = await sendDelivered(to);
    // The return path as the recipient's server recorded it, which is what an ARF report returns.
    const stored = (await postfix.messages()).find((m) => m.originalRecipient === to)!;
    assert.equal(stored.sender, returnPath);

    const report = arf({ returnPath: stored.sender, recipient: to });
    for (let i = 0; i < 2; i++) {
      const reply = await deliverToListener(report, 'fbl@bounces.example.com');
      assert.equal(reply.ok, true, JSON.stringify(reply));
    }
    const email = await getEmail(emailId);
    assert.equal(email.status, 'delivered');
    assert.equal(email.last_event, 'complained');
    assert.deepEqual(
      email.events.filter((e) => e.type === 'complained').map((e) => e.feedback_type),
      ['abuse'],
    );
    assert.equal(await suppression(to), 'complaint');
  });

  test('a feedback-loop report whose original has no Return-Path is matched by its Original-Mail-From', async () => {
    const to = 'grumpier@example.org';
    const { emailId, returnPath } = await sendDelivered(to);
    const report = arf({ returnPath, recipient: to, returnPathIn: 'report' });
    assert.doesNotMatch(report, /^Return-Path:/im);
    assert.equal((await deliverToListener(report, 'fbl@bounces.example.com')).ok, true);
    assert.equal((await getEmail(emailId)).last_event, 'complained');
    assert.equal(await suppression(to), 'complaint');
  });

  test('a complaint whose original return path is forged changes nothing', async () => {
    const to = 'victim@example.org';
    const { emailId, messageId } = await sendDelivered(to);
    const forged = bounceAddress(Buffer.alloc(32, 7), messageId, 'bounces.example.com');
    assert.equal(
      (await deliverToListener(arf({ returnPath: forged, recipient: to }), 'fbl@bounces.example.com')).ok,
      true,
    );
    assert.equal((await getEmail(emailId)).last_event, 'delivered');
    assert.equal(await suppression(to), undefined);
  });
});

describe('what the listener refuses', () => {
  test('a return path with a wrong tag, and any other address, are refused at RCPT TO with 550', async () => {
    const { messageId } = await send('someone@example.org');
    const forged = bounceAddress(Buffer.alloc(32, 7), messageId, 'bounces.example.com');
    for (const to of [forged, `bounces+${messageId}@bounces.example.com`, 'anyone@bounces.example.com']) {
      const reply = await deliverToListener('Subject: hi\r\n\r\nhi\r\n', to);
      assert.deepEqual(reply, { ok: false, responseCode: 550, command: 'RCPT TO' }, to);
    }
    assert.equal(
      (await deliverToListener('Subject: hi\r\n\r\nhi\r\n', 'postmaster@bounces.example.com')).ok,
      true,
    );
  });

  test('an auto-reply to a return path is taken and changes nothing', async () => {
    const to = 'away@example.org';
    const { emailId, returnPath } = await sendDelivered(to);
    const autoReply = 'Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nBack on Monday.\r\n';
    assert.equal((await deliverToListener(autoReply, returnPath)).ok, true);
    const email = await getEmail(emailId);
    assert.equal(email.status, 'delivered');
    assert.deepEqual(
      email.events.map((e) => e.type),
      ['queued', 'sending', 'delivered'],
    );
  });

  test('when Postgres cannot be reached, a report is answered 451 so the reporting MTA keeps it', async () => {
    const broken = openDatabase('postgres://127.0.0.1:5432/mailplane_no_such_database', { max: 1 });
    const listener = await startInboundServer(
      {
        db: broken.db,
        secretKey: platform.config.secretKey,
        log: silentLogger,
        registry: createMetrics().registry,
        hostname: 'inbound.test',
      },
      { port: 0, host: '127.0.0.1' },
    );
    try {
      const { messageId } = await send('later@example.org');
      const returnPath = bounceAddress(platform.config.secretKey, messageId, 'bounces.example.com');
      const report = dsn({
        to: returnPath,
        recipient: 'later@example.org',
        action: 'failed',
        status: '5.1.1',
        diagnostic: '550 5.1.1 gone',
      });
      const reply = await deliverToListener(report, returnPath, listener.port);
      assert.deepEqual(reply, { ok: false, responseCode: 451, command: 'DATA' });
    } finally {
      await listener.close();
      await broken.close();
    }
  });

  test('every report is counted by outcome', async () => {
    const text = await metrics.registry.getSingleMetricAsString('mailplane_inbound_reports_total');
    for (const outcome of ['bounced', 'delayed', 'complained', 'duplicate', 'ignored', 'unmatched'])
      assert.match(text, new RegExp(`outcome="${outcome}"`), text);
  });
});

describe('reading reports', () => {
  test('a DSN cut short keeps its machine-readable part; base64 parts are decoded', () => {
    const status = Buffer.from(
      'Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; a@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n',
    ).toString('base64');
    const raw = Buffer.from(
      [
        'Content-Type: multipart/report; report-type=delivery-status; boundary=b',
        '',
        '--b',
        'Content-Type: message/delivery-status',
        'Content-Transfer-Encoding: base64',
        '',
        status,
        '--b',
        'Content-Type: message/rfc822',
        '',
        'Return-Path: <bounces+x@bounces.example.com>',
        'Subject: a large original, cut off here',
      ].join('\r\n'),
    );
    assert.deepEqual(parseReport(raw), {
      kind: 'dsn',
      reportingMta: 'mx.example.net',
      recipients: [{ finalRecipient: 'a@example.net', action: 'failed', status: '5.1.1' }],
      originalReturnPath: 'bounces+x@bounces.example.com',
    });
  });

  test('a message that is no report is read as other', () => {
    assert.deepEqual(parseReport(Buffer.from('Subject: Re: Hello\r\n\r\nThanks!\r\n')), {
      kind: 'other',
      subject: 'Re: Hello',
    });
  });
});
