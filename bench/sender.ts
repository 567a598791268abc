// Sender throughput: messages queued as the api queues them (rows and jobs, through the api's own
// accept path), then delivered by the real sender process (dist/cmd/mailplane.js sender) to a loopback
// SMTP sink in a process of its own; and the ceiling, the same per-message work done bare in one
// loop with the same concurrency, reusing the sender's own functions, with no job queue.

import { randomUUID } from 'node:crypto';
import { createAcceptor, type PreparedEmail } from '../lib/send/accept.js';
import { domainOf, parseMailbox } from '../lib/address.js';
import { readConfig } from '../lib/config.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import type { EmailContent } from '../lib/db/schema.js';
import { createRenderer, type Renderer } from '../lib/render/sandbox.js';
import { composeMessage } from '../sender/compose.js';
import { createDkimSigner } from '../sender/dkim.js';
import { encrypt } from '../lib/crypto.js';
import { claimMessage, settle } from '../lib/db/transitions.js';
import { newWebhookSecret } from '../lib/webhooks.js';
import { createTemplateVersions } from '../sender/templates.js';
import { createTransport } from '../sender/transport.js';
import { createTestDatabase, type TestDatabase } from '../test/helpers/postgres.js';
import { applyExamples } from '../test/helpers/platform.js';
import { startChild, stopChild } from './child.js';
import { postgresCpu, processCpu } from './cpu.js';

const MESSAGES = Number(process.env.BENCH_SENDER_MESSAGES ?? 10_000);
/** A sender that stops making progress for this long has stalled: the bench says so and moves on. */
const STALL_MS = 30_000;
/** Pairs of runs, without and with a webhook on every event, whose ratios the figure is the median of. */
const WEBHOOK_PAIRS = Number(process.env.BENCH_WEBHOOK_PAIRS ?? 3);
const POLL_MS = 50;
/** Extra node arguments for the sender processes, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`. */
const SENDER_NODE_ARGS = (process.env.BENCH_SENDER_NODE_ARGS ?? '').split(' ').filter(Boolean);

/**
 * A minimal SMTP sink: accepts everything and discards the data. Run in a child process so its
 * CPU is not the sender's; smtp-server is what dev/inbox.ts uses, minus the keeping.
 */
const SINK = `
import { SMTPServer } from 'smtp-server';
const server = new SMTPServer({
  disabledCommands: ['STARTTLS', 'AUTH'],
  logger: false,
  closeTimeout: 100,
  onData(stream, _session, callback) {
    stream.on('end', () => callback());
    stream.resume();
  },
});
server.on('error', () => {});
server.listen(0, '127.0.0.1', () => process.stdout.write('listening ' + server.server.address().port + '\\n'));
`;

/** A webhook receiver that answers 204 to everything, in a process of its own. */
const RECEIVER = `
import { createServer } from 'node:http';
const server = createServer((req, res) => { req.resume(); req.on('end', () => res.writeHead(204).end()); });
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => process.stdout.write('listening ' + server.address().port + '\\n'));
`;

interface Prepared {
  testDb: TestDatabase;
  database: DatabaseHandle;
  env: Record<string, string>;
  /** Every message id queued, in queue order. */
  messageIds: string[];
}

export interface SenderFigures {
  lines: [string, string][];
}

/** A fresh database with examples/ applied and `count` single-recipient welcome emails queued. */
async function prepare(secret: string, count: number): Promise<Prepared> {
  const testDb = await createTestDatabase();
  const database = openDatabase(testDb.url, { max: 8 });
  await applyExamples(database.db, secret);
  const domain = await database.db
    .selectFrom('domains')
    .select(['id', 'tenant_id'])
    .where('name', '=', 'example.com')
    .executeTakeFirstOrThrow();
  const template = await database.db
    .selectFrom('templates')
    .select(['id', 'current_version'])
    .where('name', '=', 'welcome')
    .executeTakeFirstOrThrow();

  const emails: PreparedEmail[] = [];
  for (let i = 0; i < count; i++) {
    const to = `user${i}@example.org`;
    const content: EmailContent = {
      to: [to],
      cc: [],
      bcc: [],
      reply_to: [],
      subject: '',
      headers: {},
      attachments: [],
      tags: [],
      template: {
        id: template.id,
        version: template.current_version,
        variables: { name: `User ${i}`, email: to, plan: 'pro' },
      },
    };
    emails.push({
      id: randomUUID(),
      tenantId: domain.tenant_id,
      domainId: domain.id,
      from: 'Acme <hello@example.com>',
      subject: 'Welcome to Acme',
      content,
      recipients: [to],
      scheduledAt: null,
    });
  }
  const acceptor = createAcceptor(database.pool);
  for (let i = 0; i < emails.length; i += 500) await acceptor.accept(emails.slice(i, i + 500));
  await acceptor.drain();
  const { rows } = await database.pool.query<{ id: string }>(
    'select id from messages order by created_at, id',
  );
  return {
    testDb,
    database,
    env: { DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: secret, LOG_LEVEL: 'warn' },
    messageIds: rows.map((r) => r.id),
  };
}

/**
 * Starts `processes` sender processes on a prepared database and measures delivered/s from the
 * moment all of them are up until every message is `delivered`.
 */
async function endToEnd(
  prepared: Prepared,
  sinkPort: number,
  processes: number,
  webhook?: { url: string; receiverPid?: number },
): Promise<{
  perSecond: number;
  /** Milliseconds of CPU per delivered message, by process, from start to the last webhook. */
  cpu?: CpuPerMessage;
  delivered: number;
  events: number;
  seconds: number;
  /** With a webhook endpoint: events it received per second, until the last one was received. */
  webhooks?: { perSecond: number; delivered: number; total: number; seconds: number };
}> {
  const env = {
    ...prepared.env,
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${sinkPort}`,
    LOG_LEVEL: 'info',
    // Each process's probe server on a port of its own: two on 8080 would stop the second.
    PORT: '0',
    ...(webhook ? { MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: 'true' } : {}),
  };
  const webhookUrl = webhook?.url;
  if (webhookUrl) {
    const tenant = await prepared.database.db.selectFrom('tenants').select('id').executeTakeFirstOrThrow();
    const config = readConfig(prepared.env);
    await prepared.database.db
      .insertInto('webhook_endpoints')
      .values({
        tenant_id: tenant.id,
        url: webhookUrl,
        secret: encrypt(config.secretKey, newWebhookSecret()),
      })
      .execute();
  }
  const total = prepared.messageIds.length;
  const count = async () =>
    Number(
      (
        await prepared.database.pool.query<{ n: string }>(
          "select count(*) as n from messages where status = 'delivered'",
        )
      ).rows[0]!.n,
    );
  // Started together; the clock starts once the last one is up (the others had a head start of
  // a few milliseconds at most: each process spends its start-up in node and the migration check).
  const senders = await Promise.all(
    Array.from({ length: processes }, () =>
      startChild([...SENDER_NODE_ARGS, 'dist/cmd/mailplane.js', 'sender'], env, /"sender started"/),
    ),
  );
  const cpuNow = () => ({
    sender: sum(senders.map((s) => processCpu(s.child.pid))),
    postgres: postgresCpu(),
    receiver: processCpu(webhook?.receiverPid),
  });
  const cpuBefore = cpuNow();
  const started = performance.now();
  let delivered = 0;
  let lastProgress = started;
  let seconds = 0;
  let webhooks: { perSecond: number; delivered: number; total: number; seconds: number } | undefined;
  let cpuAfter: typeof cpuBefore | undefined;
  try {
    for (;;) {
      const now = await count();
      if (now > delivered) lastProgress = performance.now();
      delivered = now;
      if (delivered >= total) break;
      if (performance.now() - lastProgress > STALL_MS) break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    seconds = (performance.now() - started) / 1000;
    if (webhookUrl) webhooks = await webhooksDone(prepared, started);
    cpuAfter = cpuNow();
  } finally {
    await Promise.all(senders.map((s) => stopChild(s.child)));
  }
  const { rows } = await prepared.database.pool.query<{ n: string }>(
    "select count(*) as n from events where type = 'delivered'",
  );
  const perMessage = (pick: (c: typeof cpuBefore) => number | undefined) => {
    const [before, after] = [pick(cpuBefore), cpuAfter && pick(cpuAfter)];
    return before === undefined || after === undefined || delivered === 0
      ? undefined
      : ((after - before) * 1000) / delivered;
  };
  const cpu = {
    sender: perMessage((c) => c.sender),
    postgres: perMessage((c) => c.postgres),
    receiver: perMessage((c) => c.receiver),
  };
  return {
    perSecond: delivered / seconds,
    cpu,
    delivered,
    events: Number(rows[0]!.n),
    seconds,
    webhooks,
  };
}

interface CpuPerMessage {
  sender?: number;
  postgres?: number;
  receiver?: number;
}

/** The sum of the readings, or undefined when any is missing. */
function sum(values: (number | undefined)[]): number | undefined {
  let total = 0;
  for (const value of values) {
    if (value === undefined) return undefined;
    total += value;
  }
  return total;
}

/** Waits until every webhook delivery is done (or progress stalls); its rate since `started`. */
async function webhooksDone(prepared: Prepared, started: number) {
  let done = 0;
  let total = 0;
  let lastProgress = performance.now();
  for (;;) {
    const { rows } = await prepared.database.pool.query<{ done: string; total: string }>(
      "select count(*) filter (where status = 'delivered') as done, count(*) as total from webhook_deliveries",
    );
    const now = Number(rows[0]!.done);
    total = Number(rows[0]!.total);
    if (now > done) lastProgress = performance.now();
    done = now;
    if (done >= total || performance.now() - lastProgress > STALL_MS) break;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  const seconds = (performance.now() - started) / 1000;
  return { perSecond: done / seconds, delivered: done, total, seconds };
}

/**
 * The ceiling: claim (read + `sending`) → render → compose → sign → deliver → settle (status +
 * event), the sender's own statements and functions, `concurrency` at once in this process, through
 * the same pooled transport: what the task does per message, without the job queue around it.
 */
async function ceiling(
  prepared: Prepared,
  sinkPort: number,
  renderer: Renderer,
): Promise<{ perSecond: number; delivered: number }> {
  const config = readConfig({ ...prepared.env, MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${sinkPort}` });
  const concurrency = config.senderConcurrency;
  const database = openDatabase(prepared.testDb.url, { max: concurrency });
  const signer = createDkimSigner(config.secretKey);
  const templates = createTemplateVersions(database.db);
  const transport = createTransport({
    relayUrl: config.relayUrl,
    heloName: config.heloName,
    maxConnections: concurrency,
  });
  const ids = [...prepared.messageIds];

  const one = async (messageId: string): Promise<boolean> => {
    const { message, attempt } = (await claimMessage(database.pool, messageId))!;
    const domain = message.domain!;
    const template = message.content.template!;
    const body = (await templates.get(message.tenantId, template.id, template.version))!;
    const rendered = await renderer.render(
      { key: `${template.id}@${template.version}`, ...body },
      template.variables,
    );
    const from = parseMailbox(message.fromAddress).address;
    const raw = await composeMessage({
      from: message.fromAddress,
      content: message.content,
      rendered,
      messageId: `${message.id}@${domainOf(from)}`,
      date: new Date(),
    });
    const signed = await signer.sign(raw, {
      domainId: domain.id,
      domain: domain.name,
      selector: domain.selector,
      privateKeyEnvelope: domain.dkim_private_key,
    });
    const { reply, host } = await transport.send({ from, to: message.recipient }, signed);
    return settle(database.pool, {
      messageId,
      status: 'delivered',
      reply,
      detail: { attempt, reply, host },
    });
  };

  // Warm the pool, the isolate and the key cache outside the clock, as a running sender would be.
  let next = 0;
  let delivered = 0;
  const warm = ids.splice(0, concurrency);
  await Promise.all(warm.map(one));
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        if (await one(id)) delivered++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await transport.close();
  await database.close();
  return { perSecond: delivered / seconds, delivered };
}

/**
 * Runs the sender bench and returns its printed lines.
 *
 *   for (const [label, value] of (await benchSender(SECRET)).lines) line(label, value);
 */
export async function benchSender(secret: string): Promise<SenderFigures> {
  const renderer = createRenderer({ timeoutMs: 250, memoryMb: 32 });
  const sink = await startChild(['--input-type=module', '-e', SINK], {}, /listening (\d+)/);
  const sinkPort = Number(sink.match[1]);
  const lines: [string, string][] = [];
  try {
    const one = await prepare(secret, MESSAGES);
    const full = await endToEnd(one, sinkPort, 1).finally(() => release(one));
    lines.push([
      'delivered/s, 1 sender process',
      `${full.perSecond.toFixed(0)}   (target ≥ 800; ${full.delivered} of ${MESSAGES} delivered, ${full.events} events, ${full.seconds.toFixed(1)} s)`,
    ]);

    // With a webhook on every event against without, in pairs whose order alternates (without
    // first, then with first), so that a machine growing busier or calmer during the run does not
    // read as the webhooks' cost; each pair gives a ratio, and the median is the figure.
    const receiver = await startChild(['--input-type=module', '-e', RECEIVER], {}, /listening (\d+)/);
    try {
      const url = `http://127.0.0.1:${receiver.match[1]}/hooks`;
      const run = async (hooks: boolean) => {
        const prepared = await prepare(secret, MESSAGES);
        return endToEnd(
          prepared,
          sinkPort,
          1,
          hooks ? { url, receiverPid: receiver.child.pid } : undefined,
        ).finally(() => release(prepared));
      };
      const pairs: {
        without: number;
        withHooks: number;
        received: number;
        delivered: number;
        total: number;
        cpu: { without?: CpuPerMessage; withHooks?: CpuPerMessage };
      }[] = [];
      for (let i = 0; i < WEBHOOK_PAIRS; i++) {
        const withoutFirst = i % 2 === 0;
        const first = withoutFirst && i === 0 ? full : await run(!withoutFirst);
        const second = await run(withoutFirst);
        const [without, hooked] = withoutFirst ? [first, second] : [second, first];
        const hooks = hooked.webhooks!;
        pairs.push({
          without: without.perSecond,
          withHooks: hooked.perSecond,
          received: hooks.perSecond,
          delivered: hooks.delivered,
          total: hooks.total,
          cpu: { without: without.cpu, withHooks: hooked.cpu },
        });
      }
      const median = (values: number[]) => {
        const sorted = [...values].sort((a, b) => a - b);
        const mid = sorted.length / 2;
        return sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
      };
      const ratios = pairs.map((p) => p.withHooks / p.without);
      const received = pairs.map((p) => p.received / p.withHooks);
      lines.push([
        'delivered/s, 1 process, webhook on every event',
        `${median(pairs.map((p) => p.withHooks)).toFixed(0)}   (${median(ratios).toFixed(2)} of the figure without, median of ${pairs.length} alternating pairs: ${ratios.map((r) => r.toFixed(2)).join(', ')}; target ≥ 0.9)`,
      ]);
      const cpuOf = (key: keyof CpuPerMessage, side: 'without' | 'withHooks') => {
        const values = pairs.map((p) => p.cpu[side]?.[key]);
        return values.every((v) => v !== undefined) ? median(values as number[]) : undefined;
      };
      const cpuLine = (['sender', 'postgres', 'receiver'] as const)
        .map((key) => {
          const [without, withHooks] = [cpuOf(key, 'without'), cpuOf(key, 'withHooks')];
          if (withHooks === undefined) return undefined;
          return key === 'receiver'
            ? `receiver ${withHooks.toFixed(2)}`
            : `${key} ${without?.toFixed(2) ?? '?'} → ${withHooks.toFixed(2)}`;
        })
        .filter(Boolean);
      if (cpuLine.length > 0) {
        lines.push(['CPU ms per message, without → with webhook', `${cpuLine.join(', ')}   (medians)`]);
      }
      const last = pairs.at(-1)!;
      lines.push([
        'webhook events received/s',
        `${median(pairs.map((p) => p.received)).toFixed(0)}   (${median(received).toFixed(2)} × the delivered rate, target ≥ 1; last run ${last.delivered} of ${last.total} events)`,
      ]);
    } finally {
      await stopChild(receiver.child);
    }

    const two = await prepare(secret, MESSAGES);
    const pair = await endToEnd(two, sinkPort, 2).finally(() => release(two));
    lines.push([
      'delivered/s, 2 sender processes',
      `${pair.perSecond.toFixed(0)}   (${pair.delivered} of ${MESSAGES} delivered, ${pair.seconds.toFixed(1)} s)`,
    ]);

    const bare = await prepare(secret, MESSAGES);
    const top = await ceiling(bare, sinkPort, renderer).finally(() => release(bare));
    lines.push([
      'bare ceiling (one loop, no job queue), msg/s',
      `${top.perSecond.toFixed(0)}   (${top.delivered} timed, after a warm-up of one per slot)`,
    ]);
    lines.push([
      'ratio (1 process / ceiling)',
      `${(full.perSecond / top.perSecond).toFixed(2)}   (target ≥ 0.8)`,
    ]);
  } finally {
    renderer.dispose();
    await stopChild(sink.child);
  }
  return { lines };
}

async function release(prepared: Prepared): Promise<void> {
  await prepared.database.close();
  await prepared.testDb.drop();
}
