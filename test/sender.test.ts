// The sender against real parts: a fresh Postgres with graphile-worker, the template sandbox, and
// the dev inbox on loopback as the relay. Rows are seeded as the api writes them; each test queues
// its messages and waits for their outcome.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { readConfig, type Config } from '../lib/config.js';
import { messageIdOfBounceAddress } from '../lib/verp.js';
import { dkimTxtValue, encrypt, generateDkimKey, type DkimAlgorithm } from '../lib/crypto.js';
import { openDatabase, type DatabaseHandle, type Db } from '../lib/db/index.js';
import type { EmailContent, MessageStatus } from '../lib/db/schema.js';
import { startInbox, type CapturedMessage, type Inbox, type InboxReply } from '../dev/inbox.js';
import { SEND_MESSAGE, SEND_MESSAGE_MAX_ATTEMPTS } from '../lib/jobs.js';
import { createLogger } from '../lib/log.js';
import { createMetrics, type Metrics } from '../lib/metrics.js';
import { createRenderer, type Renderer } from '../lib/render/sandbox.js';
import { startSender, type Sender } from '../sender/worker.js';
import { verifyDkimIndependently, verifyDkimWithMailauth } from './helpers/dkim.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';

const SECRET = 'test-secret-key-of-at-least-32-characters';

// -- seeding, as the api and the operator write rows ---------------------------------------------

interface SeededDomain {
  id: string;
  tenantId: string;
  name: string;
  /** DNS for the verifiers: `<selector>._domainkey.<name>` → TXT value. */
  records: Record<string, string>;
}

async function seedTenant(db: Db, name: string): Promise<string> {
  const row = await db
    .insertInto('tenants')
    .values({ namespace: 'default', name, limits: '{}' })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

async function seedDomain(
  db: Db,
  config: Config,
  tenantId: string,
  name: string,
  algorithm: DkimAlgorithm,
  returnPathDomain: string | null = null,
): Promise<SeededDomain> {
  const key = generateDkimKey(algorithm);
  const selector = algorithm === 'ed25519' ? 'mped' : 'mp1';
  const row = await db
    .insertInto('domains')
    .values({
      tenant_id: tenantId,
      name,
      selector,
      dkim_algorithm: algorithm,
      dkim_private_key: encrypt(config.secretKey, key.privateKeyPem),
      dkim_public_key: key.publicKeyDns,
      return_path_domain: returnPathDomain,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return {
    id: row.id,
    tenantId,
    name,
    records: { [`${selector}._domainkey.${name}`]: dkimTxtValue(algorithm, key.publicKeyDns) },
  };
}

async function seedTemplate(
  db: Db,
  tenantId: string,
  name: string,
  body: { subject: string; html?: string; text?: string },
): Promise<{ id: string; version: number }> {
  const template = await db
    .insertInto('templates')
    .values({ tenant_id: tenantId, name, current_version: 1 })
    .returning('id')
    .executeTakeFirstOrThrow();
  await db
    .insertInto('template_versions')
    .values({
      template_id: template.id,
      version: 1,
      subject: body.subject,
      html: body.html ?? null,
      text: body.text ?? null,
      digest: name,
    })
    .execute();
  return { id: template.id, version: 1 };
}

interface QueuedEmail {
  emailId: string;
  /** Message ids by recipient. */
  messages: Record<string, string>;
}

/** Inserts an email, one message per envelope recipient and their jobs, in one transaction. */
async function queueEmail(
  db: Db,
  domain: SeededDomain,
  content: Partial<EmailContent>,
  options: { createdAt?: Date } = {},
): Promise<QueuedEmail> {
  const full: EmailContent = {
    to: [],
    cc: [],
    bcc: [],
    reply_to: [],
    subject: 'Hello',
    headers: {},
    attachments: [],
    tags: [],
    ...content,
  };
  const recipients = [...full.to, ...full.cc, ...full.bcc].map((m) => /<([^>]+)>/.exec(m)?.[1] ?? m);
  return db.transaction().execute(async (trx) => {
    const email = await trx
      .insertInto('emails')
      .values({
        tenant_id: domain.tenantId,
        domain_id: domain.id,
        from_address: `Acme <hello@${domain.name}>`,
        subject: full.subject,
        content: JSON.stringify(full),
        created_at: options.createdAt,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const messages: Record<string, string> = {};
    for (const recipient of recipients) {
      const message = await trx
        .insertInto('messages')
        .values({
          email_id: email.id,
          tenant_id: domain.tenantId,
          recipient,
          status: 'queued',
          created_at: options.createdAt,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      await sql`select graphile_worker.add_job(
        ${SEND_MESSAGE}, json_build_object('messageId', ${message.id}::text),
        max_attempts => ${SEND_MESSAGE_MAX_ATTEMPTS}
      )`.execute(trx);
      messages[recipient] = message.id;
    }
    return { emailId: email.id, messages };
  });
}

// -- reading outcomes ----------------------------------------------------------------------------

const FINAL: MessageStatus[] = ['delivered', 'bounced', 'failed', 'suppressed', 'canceled'];

/** Polls until the message reaches one of `statuses` (by default any final one). */
async function waitForStatus(db: Db, messageId: string, statuses = FINAL, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const message = await db
      .selectFrom('messages')
      .selectAll()
      .where('id', '=', messageId)
      .executeTakeFirstOrThrow();
    if (statuses.includes(message.status)) return message;
    if (Date.now() > deadline) {
      assert.fail(`message ${messageId} is ${message.status}, expected ${statuses.join(' or ')}`);
    }
    await sleep(25);
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail('condition not met in time');
    await sleep(25);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventsOf(db: Db, messageId: string) {
  return db
    .selectFrom('events')
    .select(['type', 'detail'])
    .where('message_id', '=', messageId)
    .orderBy('id')
    .execute();
}

/** The message's jobs; the public jobs view has no payload, so this reads graphile-worker's table. */
async function jobsFor(db: Db, messageId: string) {
  const { rows } = await sql<{
    id: string;
    run_at: Date;
    max_attempts: number;
    attempts: number;
    locked_at: Date | null;
  }>`
    select j.id, j.run_at, j.max_attempts, j.attempts, j.locked_at
    from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
    where t.identifier = ${SEND_MESSAGE} and j.payload->>'messageId' = ${messageId}
  `.execute(db);
  return rows;
}

function receivedBy(inbox: Inbox, rcpt: string): CapturedMessage[] {
  return inbox.messages().filter((m) => m.envelope.to.includes(rcpt));
}

function headerBlock(raw: string): string {
  return raw.slice(0, raw.indexOf('\r\n\r\n'));
}

async function counted(metrics: Metrics, outcome: string): Promise<number> {
  return (await metrics.outcomes.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

function envOf(databaseUrl: string, more: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    MAILPLANE_SECRET_KEY: SECRET,
    MAILPLANE_HELO_NAME: 'sender.test',
    ...more,
  };
}

const quiet = createLogger({ write: () => {} });

// -- the running sender --------------------------------------------------------------------------

let database: TestDatabase;
let handle: DatabaseHandle;
let db: Db;
let config: Config;
let inbox: Inbox;
let renderer: Renderer;
let metrics: Metrics;
let sender: Sender;
let tenantId: string;
let rsaDomain: SeededDomain;
let edDomain: SeededDomain;
const logs: string[] = [];
/** Answers of the inbox by recipient, set by the tests that need a 4xx or 5xx. */
const replies = new Map<string, InboxReply>();

before(async () => {
  database = await createTestDatabase();
  inbox = await startInbox({ reply: (rcpt) => replies.get(rcpt) });
  config = readConfig(
    envOf(database.url, {
      MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${inbox.smtpPort}`,
      MAILPLANE_SENDER_CONCURRENCY: '4',
      // Return paths are used only once bounces have somewhere to go.
      MAILPLANE_INBOUND_HOST: 'mx.mailplane.test',
    }),
  );
  handle = openDatabase(config.databaseUrl, { max: 10 });
  db = handle.db;
  renderer = createRenderer({ timeoutMs: config.renderTimeoutMs, memoryMb: config.renderMemoryMb });
  metrics = createMetrics();
  tenantId = await seedTenant(db, 'acme');
  rsaDomain = await seedDomain(db, config, tenantId, 'example.com', 'rsa-2048');
  edDomain = await seedDomain(db, config, tenantId, 'ed.example.com', 'ed25519', 'bounces.example.com');
  const log = createLogger({ level: 'debug', write: (line) => logs.push(line) });
  sender = await startSender({ pool: handle.pool, db, config, log, metrics, renderer });
});

after(async () => {
  await sender?.stop();
  if (process.env.MAILPLANE_TEST_VERBOSE) process.stderr.write(logs.join('\n') + '\n');
  renderer?.dispose();
  await handle?.close();
  await inbox?.close();
  await database?.drop();
});

describe('delivery', () => {
  const signers = [
    { label: 'RSA-2048 (rsa-sha256)', a: 'rsa-sha256', domain: () => rsaDomain },
    { label: 'Ed25519 (ed25519-sha256)', a: 'ed25519-sha256', domain: () => edDomain },
  ];
  for (const { label, a, domain } of signers) {
    test(`a delivered message carries a ${label} DKIM signature that dkimpy and mailauth both verify`, async () => {
      const rcpt = `dkim-${a}@example.org`;
      const { emailId, messages } = await queueEmail(db, domain(), {
        to: [`Ada <${rcpt}>`],
        cc: ['Grace Hopper <grace@example.net>'],
        reply_to: ['support@example.com'],
        subject: 'Your receipt — №42',
        html: '<p>Thanks for your order. Prices in €.</p>',
        text: 'Thanks for your order. Prices in €.',
        headers: { 'X-Campaign': 'spring' },
        attachments: [{ filename: 'receipt.txt', content: Buffer.from('total: 42').toString('base64') }],
      });
      const id = messages[rcpt]!;
      await waitForStatus(db, id, ['delivered']);
      const [received] = receivedBy(inbox, rcpt);
      assert.ok(received, 'the sink received it');

      const independent = await verifyDkimIndependently(received.raw, domain().records);
      assert.ok(independent.ok, independent.output);
      assert.deepEqual(await verifyDkimWithMailauth(received.raw, domain().records), ['pass']);

      const header = headerBlock(received.raw);
      const d = domain().name;
      assert.ok(header.startsWith(`DKIM-Signature: v=1; a=${a}; c=relaxed/relaxed; d=${d};`), header);
      assert.ok(header.includes(`\r\nMessage-ID: <${emailId}@${d}>`), header);
      assert.match(header, /\r\nReply-To: support@example\.com/);
      assert.match(header, /\r\nX-Campaign: spring/);
      assert.equal(received.subject, 'Your receipt — №42');
      assert.match(received.raw, /Content-Transfer-Encoding: base64/, 'bodies that need encoding are base64');
      assert.doesNotMatch(received.raw, /quoted-printable/);
    });
  }

  test('the envelope sender is the From address, or a VERP address at the return-path domain', async () => {
    const plain = await queueEmail(db, rsaDomain, { to: ['envelope-1@example.org'], text: 'hi' });
    const verp = await queueEmail(db, edDomain, { to: ['envelope-2@example.org'], text: 'hi' });
    await waitForStatus(db, plain.messages['envelope-1@example.org']!, ['delivered']);
    await waitForStatus(db, verp.messages['envelope-2@example.org']!, ['delivered']);
    assert.equal(receivedBy(inbox, 'envelope-1@example.org')[0]?.envelope.from, 'hello@example.com');
    const returnPath = receivedBy(inbox, 'envelope-2@example.org')[0]?.envelope.from ?? '';
    assert.match(returnPath, /^bounces\+[0-9a-f-]{36}\.[0-9a-f]{16}@bounces\.example\.com$/);
    // Signed: it leads back to its message under this installation's key, and under no other.
    assert.equal(
      messageIdOfBounceAddress(config.secretKey, returnPath),
      verp.messages['envelope-2@example.org'],
    );
    assert.equal(messageIdOfBounceAddress(Buffer.alloc(32, 1), returnPath), undefined);
  });

  test('each recipient gets its own envelope, and Bcc recipients never appear in any header', async () => {
    const { messages } = await queueEmail(db, rsaDomain, {
      to: ['Ada <bcc-to@example.org>'],
      cc: ['bcc-cc@example.org'],
      bcc: ['Secret Auditor <bcc-hidden@example.org>'],
      headers: { Bcc: 'bcc-injected@example.org' },
      text: 'quarterly numbers',
    });
    for (const id of Object.values(messages)) await waitForStatus(db, id, ['delivered']);
    for (const rcpt of ['bcc-to@example.org', 'bcc-cc@example.org', 'bcc-hidden@example.org']) {
      const received = receivedBy(inbox, rcpt);
      assert.equal(received.length, 1, rcpt);
      assert.deepEqual(received[0]!.envelope.to, [rcpt]);
      const header = headerBlock(received[0]!.raw);
      assert.doesNotMatch(header, /^bcc:/im);
      assert.doesNotMatch(header, /bcc-hidden|bcc-injected|Secret Auditor/i);
      assert.match(header, /\r\nTo: Ada <bcc-to@example\.org>/);
      assert.match(header, /\r\nCc: bcc-cc@example\.org/);
    }
  });

  test('the timeline records sending then delivered, with the attempt and the SMTP reply', async () => {
    const rcpt = 'timeline@example.org';
    const deliveredBefore = await counted(metrics, 'delivered');
    const { messages } = await queueEmail(db, rsaDomain, { to: [rcpt], text: 'hi' });
    const message = await waitForStatus(db, messages[rcpt]!, ['delivered']);
    assert.equal(message.attempts, 1);
    assert.match(message.last_reply ?? '', /^250 /);
    const events = await eventsOf(db, message.id);
    assert.deepEqual(
      events.map((e) => e.type),
      ['sending', 'delivered'],
    );
    assert.deepEqual(events[0]!.detail, { attempt: 1 });
    assert.deepEqual(events[1]!.detail, { attempt: 1, reply: message.last_reply, host: '127.0.0.1' });

    assert.ok((await counted(metrics, 'delivered')) > deliveredBefore, 'the delivered outcome was counted');
    const latency = (await metrics.sendLatency.get()).values.find((v) => v.metricName?.endsWith('_count'));
    assert.ok((latency?.value ?? 0) >= 1, 'the send latency was observed');
    await waitUntil(async () => (await jobsFor(db, message.id)).length === 0);
  });

  test('a job that runs again for a delivered message sends nothing and records nothing', async () => {
    const rcpt = 'twice@example.org';
    const { messages } = await queueEmail(db, rsaDomain, { to: [rcpt], text: 'hi' });
    const id = messages[rcpt]!;
    await waitForStatus(db, id, ['delivered']);
    await sql`select graphile_worker.add_job(${SEND_MESSAGE}, json_build_object('messageId', ${id}::text))`.execute(
      db,
    );
    await waitUntil(async () => (await jobsFor(db, id)).length === 0);
    assert.equal(receivedBy(inbox, rcpt).length, 1);
    assert.equal((await eventsOf(db, id)).length, 2);
  });

  test('a job with an invalid payload is dropped, not retried', async () => {
    const { rows } = await sql<{ id: string }>`
      select (graphile_worker.add_job(${SEND_MESSAGE}, '{"messageId": "not-a-uuid"}'::json)).id
    `.execute(db);
    await waitUntil(async () => {
      const left = await sql`select 1 from graphile_worker.jobs where id = ${rows[0]!.id}`.execute(db);
      return left.rows.length === 0;
    });
    assert.ok(logs.some((line) => line.includes('invalid payload')));
  });
});

describe('deferral', () => {
  test('a 4xx defers the message: the attempt is counted, the reply kept, and a job is queued a minute later', async () => {
    const rcpt = 'greylisted@example.org';
    replies.set(rcpt, { code: 451, message: '4.7.1 greylisted, come back later' });
    const { messages } = await queueEmail(db, rsaDomain, { to: [rcpt], text: 'hi' });
    const id = messages[rcpt]!;
    const deferred = await waitForStatus(db, id, ['deferred']);
    assert.equal(deferred.attempts, 1);
    assert.match(deferred.last_reply ?? '', /^451 4\.7\.1 greylisted/);

    // The first job completes; the one left is the retry.
    await waitUntil(async () => (await jobsFor(db, id)).every((job) => job.attempts === 0));
    const jobs = await jobsFor(db, id);
    assert.equal(jobs.length, 1);
    const job = jobs[0]!;
    const delay = (job.run_at.getTime() - Date.now()) / 1000;
    assert.ok(delay > 50 && delay <= 67, `retry in ${delay} s`);
    assert.equal(job.max_attempts, SEND_MESSAGE_MAX_ATTEMPTS);
    assert.equal(deferred.next_attempt_at?.getTime(), job.run_at.getTime());

    const events = await eventsOf(db, id);
    assert.deepEqual(
      events.map((e) => e.type),
      ['sending', 'deferred'],
    );
    assert.equal(events[1]!.detail.attempt, 1);
    assert.equal(events[1]!.detail.code, 'EENVELOPE');
    assert.equal(events[1]!.detail.command, 'RCPT TO');
    assert.match(String(events[1]!.detail.reply), /^451 /);
    assert.equal(String(events[1]!.detail.job_id), String(job.id));
    assert.equal(receivedBy(inbox, rcpt).length, 0);

    // The retry falls due (as if a minute had passed), and the server now accepts.
    replies.delete(rcpt);
    await sql`update messages set next_attempt_at = now() where id = ${id}`.execute(db);
    await sql`select graphile_worker.reschedule_jobs(array[${job.id}::bigint], run_at => now())`.execute(db);
    const delivered = await waitForStatus(db, id, ['delivered']);
    assert.equal(delivered.attempts, 2);
    assert.deepEqual(
      (await eventsOf(db, id)).map((e) => e.type),
      ['sending', 'deferred', 'sending', 'delivered'],
    );
    assert.equal(receivedBy(inbox, rcpt).length, 1);
  });

  test('a second job for a message deferred to later claims nothing: the retry job owns the next attempt', async () => {
    const rcpt = 'twin-of-retry@example.org';
    replies.set(rcpt, { code: 451, message: '4.7.1 greylisted, come back later' });
    const { messages } = await queueEmail(db, rsaDomain, { to: [rcpt], text: 'hi' });
    const id = messages[rcpt]!;
    await waitForStatus(db, id, ['deferred']);
    await waitUntil(async () => (await jobsFor(db, id)).every((job) => job.attempts === 0));

    const { rows } = await sql<{ id: string }>`
      select (graphile_worker.add_job(${SEND_MESSAGE}, json_build_object('messageId', ${id}::text))).id
    `.execute(db);
    await waitUntil(async () => (await jobsFor(db, id)).every((job) => job.id !== rows[0]!.id));
    replies.delete(rcpt);

    const [message] = (
      await sql<{
        status: string;
        attempts: number;
      }>`select status, attempts from messages where id = ${id}`.execute(db)
    ).rows;
    assert.deepEqual(message, { status: 'deferred', attempts: 1 });
    assert.deepEqual(
      (await eventsOf(db, id)).map((e) => e.type),
      ['sending', 'deferred'],
    );
    assert.equal((await jobsFor(db, id)).length, 1, 'the retry job is still queued');
  });

  test('a 4xx once the message lifetime has run out fails the message instead of deferring it', async () => {
    const rcpt = 'still-greylisted@example.org';
    replies.set(rcpt, { code: 450, message: '4.2.0 mailbox busy' });
    const sixDaysAgo = new Date(Date.now() - 6 * 86_400_000);
    const { messages } = await queueEmail(
      db,
      rsaDomain,
      { to: [rcpt], text: 'hi' },
      { createdAt: sixDaysAgo },
    );
    const failed = await waitForStatus(db, messages[rcpt]!, ['failed']);
    const last = (await eventsOf(db, failed.id)).at(-1)!;
    assert.equal(last.type, 'failed');
    assert.equal(last.detail.expired, true);
    assert.match(String(last.detail.reply), /^450 /);
    await waitUntil(async () => (await jobsFor(db, failed.id)).length === 0);
  });

  test('a relay that cannot be reached defers the message', async () => {
    const closed = await startInbox();
    const deadPort = closed.smtpPort;
    await closed.close();
    const otherDb = await createTestDatabase();
    const other = openDatabase(otherDb.url, { max: 5 });
    const otherConfig = readConfig(
      envOf(otherDb.url, { MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${deadPort}` }),
    );
    const otherSender = await startSender({
      pool: other.pool,
      db: other.db,
      config: otherConfig,
      log: quiet,
      metrics: createMetrics(),
      renderer,
    });
    try {
      const t = await seedTenant(other.db, 'acme');
      const domain = await seedDomain(other.db, otherConfig, t, 'example.com', 'ed25519');
      const { messages } = await queueEmail(other.db, domain, { to: ['nobody@example.org'], text: 'hi' });
      const message = await waitForStatus(other.db, messages['nobody@example.org']!, ['deferred']);
      const last = (await eventsOf(other.db, message.id)).at(-1)!;
      assert.equal(last.type, 'deferred');
      assert.equal(last.detail.code, 'ESOCKET');
      assert.equal(last.detail.reply, undefined);
    } finally {
      await otherSender.stop();
      await other.close();
      await otherDb.drop();
    }
  });
});

describe('bounces and suppression', () => {
  test('a 5xx bounces the message and suppresses the address; a later message to it is suppressed and never sent', async () => {
    const rcpt = 'gone@example.org';
    replies.set(rcpt, { code: 550, message: '5.1.1 no such user here' });
    const first = await queueEmail(db, rsaDomain, { to: [rcpt], text: 'hi' });
    const bounced = await waitForStatus(db, first.messages[rcpt]!, ['bounced']);
    assert.match(bounced.last_reply ?? '', /^550 5\.1\.1 no such user here/);
    const suppression = await db
      .selectFrom('suppressions')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('address', '=', rcpt)
      .executeTakeFirstOrThrow();
    assert.equal(suppression.reason, 'bounce');
    assert.equal(suppression.detail, bounced.last_reply);
    const events = await eventsOf(db, bounced.id);
    assert.deepEqual(
      events.map((e) => e.type),
      ['sending', 'bounced'],
    );
    assert.equal(events[1]!.detail.command, 'RCPT TO');

    replies.delete(rcpt); // the sink would take it now: only the suppression can stop it
    const suppressedBefore = await counted(metrics, 'suppressed');
    const again = 'Gone@EXAMPLE.org';
    const second = await queueEmail(db, rsaDomain, { to: [again], text: 'hi again' });
    const suppressed = await waitForStatus(db, second.messages[again]!, ['suppressed']);
    assert.equal(suppressed.attempts, 0);
    assert.deepEqual(
      (await eventsOf(db, suppressed.id)).map((e) => e.type),
      ['suppressed'],
    );
    assert.equal(await counted(metrics, 'suppressed'), suppressedBefore + 1);
    await sleep(200);
    assert.equal(receivedBy(inbox, rcpt).length + receivedBy(inbox, again).length, 0);
  });
});

describe('templates', () => {
  test('a template that throws fails its message with the reason, and the next message still delivers', async () => {
    const broken = await seedTemplate(db, tenantId, 'broken', {
      subject: 'Hi <%= user.name %>',
      text: 'line one\n<% throw new Error("no coupon for " + user.name) %>',
    });
    const working = await seedTemplate(db, tenantId, 'welcome', {
      subject: 'Welcome, <%= user.name %>',
      html: '<p>Hello <%= user.name %></p>',
    });
    const bad = await queueEmail(db, rsaDomain, {
      to: ['template-bad@example.org'],
      template: { ...broken, variables: { user: { name: 'Ada' } } },
    });
    const failed = await waitForStatus(db, bad.messages['template-bad@example.org']!, ['failed']);
    const event = (await eventsOf(db, failed.id)).at(-1)!;
    assert.equal(event.type, 'failed');
    assert.equal(event.detail.code, 'ETEMPLATE_RUNTIME');
    assert.match(String(event.detail.reason), /no coupon for Ada/);
    assert.equal(event.detail.part, 'text');
    assert.equal(receivedBy(inbox, 'template-bad@example.org').length, 0);

    const good = await queueEmail(db, rsaDomain, {
      to: ['template-good@example.org'],
      template: { ...working, variables: { user: { name: '<Grace>' } } },
    });
    await waitForStatus(db, good.messages['template-good@example.org']!, ['delivered']);
    const [received] = receivedBy(inbox, 'template-good@example.org');
    assert.equal(received?.subject, 'Welcome, <Grace>');
    assert.match(received!.raw, /Hello &lt;Grace&gt;/);
  });

  test('a template that loops forever fails with a timeout, and the worker keeps sending', async () => {
    const looping = await seedTemplate(db, tenantId, 'looping', {
      subject: '<% while (true) {} %>x',
      text: 'x',
    });
    const bad = await queueEmail(db, rsaDomain, {
      to: ['template-loop@example.org'],
      template: { ...looping, variables: {} },
    });
    const failed = await waitForStatus(db, bad.messages['template-loop@example.org']!, ['failed']);
    assert.equal((await eventsOf(db, failed.id)).at(-1)!.detail.code, 'ETEMPLATE_TIMEOUT');

    const next = await queueEmail(db, rsaDomain, { to: ['after-loop@example.org'], text: 'still here' });
    await waitForStatus(db, next.messages['after-loop@example.org']!, ['delivered']);
  });
});

describe('shutdown', () => {
  test('stop() during a send lets it finish as delivered, and leaves the next job queued and unlocked', async () => {
    const slow = await startInbox({ delayMs: 800 });
    const ownDb = await createTestDatabase();
    const own = openDatabase(ownDb.url, { max: 5 });
    const ownConfig = readConfig(
      envOf(ownDb.url, {
        MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${slow.smtpPort}`,
        MAILPLANE_SENDER_CONCURRENCY: '1',
      }),
    );
    const ownSender = await startSender({
      pool: own.pool,
      db: own.db,
      config: ownConfig,
      log: quiet,
      metrics: createMetrics(),
      renderer,
    });
    try {
      const t = await seedTenant(own.db, 'acme');
      const domain = await seedDomain(own.db, ownConfig, t, 'example.com', 'ed25519');
      const first = await queueEmail(own.db, domain, { to: ['in-flight@example.org'], text: 'hi' });
      await waitForStatus(own.db, first.messages['in-flight@example.org']!, ['sending']);
      const second = await queueEmail(own.db, domain, { to: ['not-started@example.org'], text: 'hi' });
      const waiting = second.messages['not-started@example.org']!;
      // The worker fetches (and locks) it into its local queue while the only slot is busy.
      await waitUntil(async () => (await jobsFor(own.db, waiting))[0]?.locked_at != null);

      await ownSender.stop();

      const inFlight = await waitForStatus(own.db, first.messages['in-flight@example.org']!, FINAL, 0);
      assert.equal(inFlight.status, 'delivered');
      assert.equal(receivedBy(slow, 'in-flight@example.org').length, 1);

      assert.equal((await waitForStatus(own.db, waiting, ['queued'], 0)).status, 'queued');
      const jobs = await jobsFor(own.db, waiting);
      assert.equal(jobs.length, 1, 'its job is still queued');
      assert.equal(jobs[0]!.locked_at, null, 'returned by the stopped worker, not left locked');
      assert.equal(jobs[0]!.attempts, 0);
      assert.equal(receivedBy(slow, 'not-started@example.org').length, 0);
    } finally {
      await ownSender.stop();
      await own.close();
      await ownDb.drop();
      await slow.close();
    }
  });
});

describe('crash recovery and health', () => {
  /** A sender of its own on a database of its own, with short heartbeat and stall bounds. */
  async function ownSender(
    options: {
      url?: (databaseUrl: string) => string;
      timing?: Parameters<typeof startSender>[0]['timing'];
    } = {},
  ) {
    const ownDb = await createTestDatabase();
    const own = openDatabase(ownDb.url, { max: 5 });
    const senderDb = options.url ? openDatabase(options.url(ownDb.url), { max: 5 }) : own;
    const ownConfig = readConfig(
      envOf(ownDb.url, { MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${inbox.smtpPort}` }),
    );
    const ownMetrics = createMetrics();
    const t = await seedTenant(own.db, 'acme');
    const domain = await seedDomain(own.db, ownConfig, t, 'example.com', 'ed25519');
    const start = () =>
      startSender({
        pool: senderDb.pool,
        db: senderDb.db,
        config: ownConfig,
        // MAILPLANE_TEST_VERBOSE shows this sender's log, as it does the file's main sender's.
        log: process.env.MAILPLANE_TEST_VERBOSE
          ? createLogger({ level: 'debug', write: (l) => process.stderr.write(l + '\n') })
          : quiet,
        metrics: ownMetrics,
        renderer,
        timing: options.timing,
      });
    const close = async (s?: Sender) => {
      await s?.stop();
      if (senderDb !== own) await senderDb.close();
      await own.close();
      await ownDb.drop();
    };
    return { db: own.db, domain, metrics: ownMetrics, start, close };
  }

  /** Leaves a message as a sender killed mid-send leaves it: `sending`, its job locked by `pool`. */
  async function strand(db: Db, messageId: string, pool: string) {
    await sql`update messages set status = 'sending', attempts = 1 where id = ${messageId}`.execute(db);
    await sql`
      update graphile_worker._private_jobs set locked_by = ${pool}, locked_at = now() - interval '1 hour', attempts = 1
      where payload->>'messageId' = ${messageId}`.execute(db);
  }

  test('the jobs of a sender that stopped beating are taken over and delivered with the Message-ID of their email; a live peer keeps its own', async () => {
    const own = await ownSender({ timing: { beatIntervalMs: 100, staleAfterMs: 600 } });
    let s: Sender | undefined;
    try {
      const dead = await queueEmail(own.db, own.domain, { to: ['dead@example.org'], text: 'hi' });
      const ghost = await queueEmail(own.db, own.domain, { to: ['ghost@example.org'], text: 'hi' });
      const alive = await queueEmail(own.db, own.domain, { to: ['alive@example.org'], text: 'hi' });
      const deadId = dead.messages['dead@example.org']!;
      const ghostId = ghost.messages['ghost@example.org']!;
      const aliveId = alive.messages['alive@example.org']!;
      // Killed: its heartbeat is an hour old. A ghost: it died before its first beat.
      await strand(own.db, deadId, 'pool-dead');
      await strand(own.db, ghostId, 'pool-ghost');
      await strand(own.db, aliveId, 'pool-alive');
      await sql`insert into sender_heartbeats (worker_id, host, beat_at) values
        ('pool-dead', 'h1', now() - interval '1 hour'), ('pool-alive', 'h2', now() + interval '1 hour')`.execute(
        own.db,
      );

      const started = Date.now();
      s = await own.start();
      const delivered = await waitForStatus(own.db, deadId, ['delivered']);
      await waitForStatus(own.db, ghostId, ['delivered']);
      const tookMs = Date.now() - started;
      assert.ok(tookMs < 5_000, `taken over in ${tookMs} ms`);
      assert.equal(delivered.attempts, 2, 'the crashed attempt counts, and this is one more');
      const copies = receivedBy(inbox, 'dead@example.org');
      assert.equal(copies.length, 1);
      assert.match(
        headerBlock(copies[0]!.raw),
        new RegExp(`^Message-ID: <${dead.emailId}@example\\.com>$`, 'mi'),
      );
      assert.equal((await own.metrics.recoveredJobs.get()).values[0]?.value, 2);

      const heartbeats = await sql<{ worker_id: string }>`select worker_id from sender_heartbeats`.execute(
        own.db,
      );
      const seeded = heartbeats.rows.map((r) => r.worker_id).filter((w) => /^pool-[a-z]+$/.test(w));
      assert.deepEqual(seeded, ['pool-alive'], 'the dead pool is swept, the live one kept');
      assert.equal((await waitForStatus(own.db, aliveId, ['sending'], 0)).status, 'sending');
      assert.ok((await jobsFor(own.db, aliveId))[0]?.locked_at, 'a live peer keeps its job');
    } finally {
      await own.close(s);
    }
  });

  test('a sender declared dead by a peer (its heartbeat row gone) gives up instead of sending twice', async () => {
    const own = await ownSender({ timing: { beatIntervalMs: 100 } });
    const s = await own.start();
    try {
      await sql`delete from sender_heartbeats`.execute(own.db);
      await assert.rejects(s.done, /declared this sender dead/);
    } finally {
      await own.close(s);
    }
  });

  test('a sender cut off from Postgres never lingers: it resumes once Postgres is back, or exits to be restarted', async () => {
    const proxy = await startTcpProxy(
      Number(new URL(database.url).port || 5432),
      new URL(database.url).hostname,
    );
    const viaProxy = (url: string) => {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(proxy.port);
      return u.toString();
    };
    // An idle sender polls every 2 s: the bounds leave room for that.
    const own = await ownSender({ url: viaProxy, timing: { stallNotReadyMs: 3_000, stallExitMs: 8_000 } });
    let s = await own.start();
    let restarts = 0;
    /** Whether `sender` has given up: its `done` rejected. */
    const gaveUp = (sender: Sender) =>
      sender.done.then(
        () => false,
        () => true,
      );
    try {
      assert.equal(s.readiness(), undefined);
      // A short outage, as a Postgres restart is.
      await proxy.cut();
      await Promise.race([waitUntil(async () => s.readiness() !== undefined, 6_000), gaveUp(s)]);
      await proxy.restore();
      const { messages } = await queueEmail(own.db, own.domain, {
        to: ['after-outage@example.org'],
        text: 'hi',
      });
      const id = messages['after-outage@example.org']!;
      // graphile-worker stops its runner when a batch of completions cannot be written; then the
      // sender exits and, as Kubernetes would, a new one takes over.
      const outcome = await Promise.race([
        waitForStatus(own.db, id, ['delivered'], 15_000).then(
          () => 'resumed' as const,
          () => 'lingered' as const,
        ),
        gaveUp(s).then((gave) => (gave ? ('exited' as const) : ('stopped' as const))),
      ]);
      assert.ok(outcome === 'resumed' || outcome === 'exited', `the sender ${outcome}`);
      if (outcome === 'exited') {
        await s.stop();
        s = await own.start();
        restarts++;
        await waitForStatus(own.db, id, ['delivered'], 15_000);
      }
      assert.equal(s.readiness(), undefined);

      // A long one: the sender says it is not ready, then gives up so that it is restarted.
      await proxy.cut();
      await Promise.race([waitUntil(async () => s.readiness() !== undefined, 6_000), gaveUp(s)]);
      await assert.rejects(s.done, /no jobs could be fetched|job runner/);
      assert.ok(restarts <= 1);
    } finally {
      await proxy.close();
      await own.close(s);
    }
  });
});
