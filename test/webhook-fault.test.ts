// A sender killed with -9 while it posts webhooks: every event still reaches the endpoint, at
// least once, signed, within half a minute or so, and an event posted twice carries the same
// webhook-id both times, so that the receiver can tell. Real parts: `mailplane api` and `mailplane
// sender` as processes, the sender relaying to a loopback SMTP sink, and a receiver that verifies
// with the official `standardwebhooks` library and answers slowly, so that the sender holds many
// attempts at once.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Webhook } from 'standardwebhooks';
import { readConfig } from '../lib/config.js';
import { encrypt } from '../lib/crypto.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { newWebhookSecret } from '../lib/webhooks.js';
import { startCliProcess, type CliProcess } from './helpers/cli-process.js';
import { applyExamples } from './helpers/platform.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';

const SECRET = 'webhook-fault-secret-key-of-at-least-32-characters';
const EMAILS = 150;
/** The receiver answers each webhook after this long: the sender holds its slots' worth at once. */
const ANSWER_AFTER_MS = 150;
/** Webhooks the receiver has answered before the sender is killed: mid-run. */
const RECEIVED_BEFORE_KILL = 40;
/**
 * The promise: a dead sender's attempts are another's once its peers find its heartbeat stale
 * (20 s, and a live peer that has beaten for as long), well before their 60 s lease would end.
 */
const RECOVERY_BOUND_MS = 50_000;
/** How long the test waits for everything to arrive, past the bound, to say how late it was. */
const WAIT_MS = 120_000;

let testDb: TestDatabase;
let database: DatabaseHandle;
let sink: SmtpSink;
let api: CliProcess;
let env: Record<string, string>;
let apiKey: string;
const webhookSecret = newWebhookSecret();
/** webhook-id → how many times it arrived, every one verified. */
const arrivals = new Map<string, number>();
let unverified = 0;
const receiver = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
    try {
      new Webhook(webhookSecret).verify(Buffer.concat(chunks).toString('utf8'), headers);
      arrivals.set(headers['webhook-id']!, (arrivals.get(headers['webhook-id']!) ?? 0) + 1);
    } catch {
      unverified++;
    }
    setTimeout(() => res.writeHead(204).end(), ANSWER_AFTER_MS);
  });
});
const received = () => [...arrivals.values()].reduce((a, b) => a + b, 0);

before(async () => {
  testDb = await createTestDatabase();
  database = openDatabase(testDb.url);
  const config = readConfig({ DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: SECRET });
  apiKey = (await applyExamples(database.db, SECRET)).get('default/acme/backend')!;
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const tenant = await database.db
    .selectFrom('tenants')
    .select('id')
    .where('name', '=', 'acme')
    .executeTakeFirstOrThrow();
  await database.db
    .insertInto('webhook_endpoints')
    .values({
      tenant_id: tenant.id,
      url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`,
      secret: encrypt(config.secretKey, webhookSecret),
    })
    .execute();
  sink = await startSmtpSink();
  env = {
    DATABASE_URL: testDb.url,
    MAILPLANE_SECRET_KEY: SECRET,
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${sink.port}`,
    MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: 'true',
    LOG_LEVEL: 'warn',
  };
  api = await startCliProcess('api', env);
});

after(async () => {
  await api?.stop();
  await sink?.close();
  receiver.closeAllConnections();
  receiver.close();
  await database?.close();
  await testDb?.drop();
});

test('a sender killed mid-run: every event reaches the endpoint, and a repeat has the same webhook-id', async (t) => {
  // Accepted before any sender runs, so that the first one has plenty to post when it dies.
  for (let i = 0; i < EMAILS; i += 10) {
    await Promise.all(
      Array.from({ length: 10 }, async (_, j) => {
        const res = await fetch(`${api.url}/v1/emails`, {
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            from: 'Acme <hello@example.com>',
            to: [`user${i + j}@example.org`],
            subject: 'Your receipt',
            html: '<p>Thanks.</p>',
          }),
        });
        assert.ok(res.ok, `${res.status} ${await res.text()}`);
      }),
    );
  }

  const first = await startCliProcess('sender', env);
  let killedAt = 0;
  let held = 0;
  let receivedAtKill = 0;
  let second: CliProcess | undefined;
  try {
    const deadline = Date.now() + 60_000;
    while (received() < RECEIVED_BEFORE_KILL && Date.now() < deadline) await sleep(20);
    assert.ok(received() >= RECEIVED_BEFORE_KILL, `only ${received()} webhooks in 60 s\n${first.tail()}`);
    first.kill('SIGKILL');
    await first.exited;
    killedAt = Date.now();
    receivedAtKill = received();
    // What the dead sender held: taken, under lease, not yet recorded.
    const { rows } = await database.pool.query<{ n: number }>(
      `select count(*)::int as n from webhook_deliveries where status = 'pending' and locked_until > now()`,
    );
    held = rows[0]!.n;
    second = await startCliProcess('sender', env);

    const pending = async () => {
      const { rows: counts } = await database.pool.query<{ messages: number; deliveries: number }>(
        `select (select count(*)::int from messages where status not in ('delivered')) as messages,
                (select count(*)::int from webhook_deliveries where status <> 'delivered') as deliveries`,
      );
      return counts[0]!;
    };
    let left = await pending();
    while ((left.messages > 0 || left.deliveries > 0) && Date.now() - killedAt < WAIT_MS) {
      await sleep(250);
      left = await pending();
    }
    const recoveredIn = Date.now() - killedAt;
    t.diagnostic(
      `killed after ${receivedAtKill} webhooks, holding ${held} attempts; every event out ${(recoveredIn / 1000).toFixed(1)} s after the kill`,
    );
    assert.deepEqual(left, { messages: 0, deliveries: 0 }, second.tail());
    assert.ok(recoveredIn < RECOVERY_BOUND_MS, `every event out ${recoveredIn} ms after the kill`);

    const { rows: deliveries } = await database.pool.query<{ id: string }>(
      'select id from webhook_deliveries',
    );
    // Two events a message (email.sent, email.delivered), each posted to the one endpoint.
    assert.equal(deliveries.length, 2 * EMAILS);
    assert.ok(held > 0, 'the sender was killed holding attempts');
    // Every event arrived, under its delivery's webhook-id and no other: a repeat has the same id.
    assert.deepEqual(
      [...arrivals.keys()].sort(),
      deliveries.map((d) => `msg_${d.id}`).sort(),
      'every event reached the endpoint, each under one webhook-id',
    );
    // The live sender ended the dead one's leases: it did not wait for them to run out.
    const metrics = await (await fetch(`${second.url}/metrics`)).text();
    const recovered = Number(/^mailplane_webhook_recovered_leases_total (\d+)/m.exec(metrics)?.[1]);
    assert.equal(recovered, held, 'the leases taken over');
    assert.equal(unverified, 0, 'every webhook verified with the endpoint’s secret');
    const repeated = [...arrivals.values()].filter((n) => n > 1).length;
    // A repeat is an attempt the dead sender had made but not recorded: at most what it held.
    assert.ok(repeated <= held, `${repeated} events arrived twice; the dead sender held ${held}`);
    assert.ok(
      [...arrivals.values()].every((n) => n <= 2),
      'no event arrived more than twice',
    );
  } finally {
    await first.stop();
    await second?.stop();
  }
});
