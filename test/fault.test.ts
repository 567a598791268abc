// "A 202 means the mail goes out, promptly and once", under the faults a cluster has: a sender
// killed with jobs in flight, and Postgres killed under load. Real parts only: a Postgres of this
// file's own (so that it may be killed), `mailplane api` and two `mailplane sender` processes kept
// running as a Deployment keeps them (a killed or exited process is replaced by a new one), the dev
// inbox as the SMTP sink that every message is relayed to, and a load generator that posts
// single-recipient emails with `fetch` and retries a 5xx with the same Idempotency-Key, as a client
// is meant to.
//
// Each test runs on a fresh instance and checks what a user of the API would: every accepted
// email is delivered within a bound after the fault, none is lost, a duplicate is rare (one per
// message in flight at the kill) and carries the Message-ID of an accepted email, and no sender
// is left running without taking jobs. The figures (recovery times, duplicates, 503s, restarts)
// are printed as test diagnostics.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { readConfig } from '../lib/config.js';
import { headerValue, startInbox, type Inbox } from '../dev/inbox.js';
import { cliArgs } from './helpers/cli-process.js';
import { startOwnPostgres, type OwnPostgres } from './helpers/own-postgres.js';
import { superviseCliProcess, type SupervisedProcess } from './helpers/supervised-process.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECRET = 'fault-test-secret-key-of-at-least-32-characters';

/** Emails per test: enough that every fault lands mid-run, few enough for two cores. */
const SENDS = 3_000;
/** Requests in flight at once, as a busy application's workers would have. */
const LOAD_CONCURRENCY = 20;
/**
 * The product's promise after a fault: a dead sender's jobs are taken over within a minute, so
 * every accepted message is final well within two. graphile-worker alone frees them after 4 hours.
 */
const DRAIN_BOUND_MS = 120_000;
/** How long a killed process (sender or Postgres) stays down before it is started again. */
const DOWN_FOR_MS = 3_000;
/** The sink must have seen this many deliveries before the sender is killed: it is mid-run. */
const DELIVERIES_BEFORE_SENDER_KILL = 300;
/** Postgres is killed once this share of the emails is accepted: the api and senders are busy. */
const ACCEPTED_BEFORE_POSTGRES_KILL = 0.4;
/**
 * One request is retried for at most this long (and this many times) before it counts as refused:
 * past the api's 60 s lease on an Idempotency-Key whose first attempt died with Postgres.
 */
const REQUEST_DEADLINE_MS = 90_000;
const REQUEST_MAX_ATTEMPTS = 100;
/** A request without an answer in this long is abandoned and retried (with its Idempotency-Key). */
const REQUEST_TIMEOUT_MS = 15_000;
/** A request that takes longer than this to be accepted, retries included, is counted as slow. */
const SLOW_REQUEST_MS = 10_000;
/** Longest Retry-After the load generator honours; the api says 5 s. */
const RETRY_AFTER_CAP_MS = 10_000;
/** Emails sent at a time after the faults, whenever the queue runs low, to see each sender take jobs. */
const PROBE_BATCH = 40;
/** Postgres' own default, set explicitly: the processes' default pool sizes must fit in it. */
const MAX_CONNECTIONS = '100';
/** How often the connections in use are counted, for their peak. */
const CONNECTION_SAMPLE_MS = 250;

/** The senders' concurrency, as they read it (the default, since the test sets none). */
const SENDER_CONCURRENCY = readConfig({
  DATABASE_URL: 'postgres://unused',
  MAILPLANE_SECRET_KEY: SECRET,
}).senderConcurrency;
/**
 * Duplicates a kill may cause: a message whose SMTP transaction completed but whose `delivered`
 * was not yet written is sent again when its job runs again. Only a running job can be in that
 * window, so one process's kill strands at most SENDER_CONCURRENCY of them; a Postgres kill
 * interrupts the status writes of both senders at once, 2 × SENDER_CONCURRENCY. Each such message
 * is sent once more, not twice: its second attempt writes its status to a live Postgres.
 */
const DUPLICATES_PER_KILL = 2 * SENDER_CONCURRENCY;

// -- the load generator ----------------------------------------------------------------------------

interface SendRequest {
  n: number;
  idempotencyKey: string;
  recipient: string;
  /** Every id the api answered with for this key (one, unless idempotency failed). */
  ids: Set<string>;
  startedAt?: number;
  acceptedAt?: number;
  attempts: number;
  /** Why it was given up, if it was. */
  refused?: string;
}

interface LoadCounters {
  status503: number;
  status429: number;
  /** 409 concurrent_idempotent_requests: the key is held by an earlier attempt still "in flight". */
  status409: number;
  otherServerErrors: number;
  networkErrors: number;
  /** Requests that needed more than one attempt. */
  retried: number;
}

interface Load {
  requests: SendRequest[];
  counters: LoadCounters;
  accepted(): number;
  /** Sends `count` more emails with the same generator; resolves when all are settled. */
  send(count: number): Promise<void>;
}

/** The last segment of a problem+json `type` ("…/problems/validation-failed"), if the body is one. */
function problemType(body: string): string | undefined {
  try {
    const type = (JSON.parse(body) as { type?: unknown }).type;
    return typeof type === 'string' ? type.slice(type.lastIndexOf('/') + 1) : undefined;
  } catch {
    return undefined;
  }
}

function createLoad(run: string, apiKey: string, apiUrl: () => string | undefined): Load {
  const requests: SendRequest[] = [];
  const counters: LoadCounters = {
    status503: 0,
    status429: 0,
    status409: 0,
    otherServerErrors: 0,
    networkErrors: 0,
    retried: 0,
  };
  let accepted = 0;

  async function post(request: SendRequest): Promise<void> {
    request.startedAt = Date.now();
    const deadline = request.startedAt + REQUEST_DEADLINE_MS;
    while (request.attempts < REQUEST_MAX_ATTEMPTS && Date.now() < deadline) {
      if (request.attempts === 1) counters.retried++;
      request.attempts++;
      const url = apiUrl();
      if (!url) {
        // The api is being restarted.
        await sleep(200);
        continue;
      }
      let res: Response;
      try {
        res = await fetch(`${url}/v1/emails`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${apiKey}`,
            'content-type': 'application/json',
            'idempotency-key': request.idempotencyKey,
          },
          body: JSON.stringify({
            from: 'Acme <hello@example.com>',
            to: [request.recipient],
            subject: `fault ${run} ${request.n}`,
            text: `Message ${request.n} of run ${run}.`,
          }),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
      } catch {
        counters.networkErrors++;
        await sleep(500);
        continue;
      }
      const body = await res.text();
      if (res.status === 200 || res.status === 202) {
        request.ids.add((JSON.parse(body) as { id: string }).id);
        request.acceptedAt ??= Date.now();
        accepted++;
        return;
      }
      // A first attempt that died with Postgres may hold its key for a while: Resend's answer is
      // 409 concurrent_idempotent_requests, which means "retry later", told apart by its type.
      const concurrent = res.status === 409 && problemType(body) === 'concurrent-idempotent-requests';
      if (res.status >= 500 || res.status === 429 || concurrent) {
        if (res.status === 503) counters.status503++;
        else if (res.status === 429) counters.status429++;
        else if (concurrent) counters.status409++;
        else counters.otherServerErrors++;
        const retryAfter = Number(res.headers.get('retry-after'));
        await sleep(
          Number.isFinite(retryAfter) && retryAfter > 0
            ? Math.min(retryAfter * 1000, RETRY_AFTER_CAP_MS)
            : 1000,
        );
        continue;
      }
      request.refused = `${res.status} ${body.slice(0, 300)}`;
      return;
    }
    request.refused ??= `no 2xx after ${request.attempts} attempts`;
  }

  return {
    requests,
    counters,
    accepted: () => accepted,
    async send(count) {
      const batch: SendRequest[] = [];
      for (let i = 0; i < count; i++) {
        const n = requests.length;
        const request: SendRequest = {
          n,
          idempotencyKey: `fault-${run}-${n}`,
          recipient: `fault-${n}@example.net`,
          ids: new Set(),
          attempts: 0,
        };
        requests.push(request);
        batch.push(request);
      }
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(LOAD_CONCURRENCY, batch.length) }, async () => {
          while (next < batch.length) await post(batch[next++]!);
        }),
      );
    },
  };
}

// -- the platform ------------------------------------------------------------------------------------

interface Platform {
  postgres: OwnPostgres;
  /** The test's own connections, for reading statuses and the queue. */
  pool: pg.Pool;
  inbox: Inbox;
  api: SupervisedProcess;
  senders: SupervisedProcess[];
  apiKey: string;
  close(): Promise<void>;
}

async function startPlatform(): Promise<Platform> {
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => {});
  };
  try {
    const postgres = await startOwnPostgres({ max_connections: MAX_CONNECTIONS });
    closers.push(() => postgres.close());
    const inbox = await startInbox({ limit: 100_000 });
    closers.push(() => inbox.close());
    const env = {
      DATABASE_URL: postgres.url,
      MAILPLANE_SECRET_KEY: SECRET,
      MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${inbox.smtpPort}`,
      LOG_LEVEL: 'warn',
    };
    // The CLI path a user takes: it migrates, generates the DKIM key and prints the API key.
    const { stdout } = await promisify(execFile)(process.execPath, cliArgs('apply', '-f', 'examples/'), {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    });
    const apiKey = /^API key \S+ \([^)]*\): (\S+)$/m.exec(stdout)?.[1];
    assert.ok(apiKey, `mailplane apply printed no API key:\n${stdout}`);

    const supervised = await Promise.allSettled([
      superviseCliProcess('api', env, { killRestartDelayMs: DOWN_FOR_MS }),
      superviseCliProcess('sender', env, { killRestartDelayMs: DOWN_FOR_MS }),
      superviseCliProcess('sender', env, { killRestartDelayMs: DOWN_FOR_MS }),
    ]);
    for (const s of supervised) if (s.status === 'fulfilled') closers.push(() => s.value.close());
    const failed = supervised.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    const [api, ...senders] = supervised.map((s) => (s as PromiseFulfilledResult<SupervisedProcess>).value);

    const pool = new pg.Pool({ connectionString: postgres.url, max: 2, connectionTimeoutMillis: 2_000 });
    pool.on('error', () => {});
    pool.on('connect', (c) => c.on('error', () => {}));
    closers.push(() => pool.end());
    return { postgres, pool, inbox, api: api!, senders, apiKey, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** One query that may meet a Postgres being killed: undefined instead of an error. */
async function tryQuery<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  text: string,
  values: unknown[] = [],
): Promise<R[] | undefined> {
  try {
    return (await pool.query<R>(text, values)).rows;
  } catch {
    return undefined;
  }
}

/** Waits for `check` to hold, polling every `everyMs`; false when `timeoutMs` passed first. */
async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 50,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(everyMs);
  }
  return check();
}

/** A sender's own count of delivered messages, from its /metrics; undefined if it does not answer. */
async function deliveredCount(url: string): Promise<number | undefined> {
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2_000) });
    const m = /^mailplane_messages_total\{outcome="delivered"\} (\d+)/m.exec(await res.text());
    return m ? Number(m[1]) : 0;
  } catch {
    return undefined;
  }
}

async function readyStatus(url: string): Promise<string> {
  try {
    const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) });
    return `${res.status} ${(await res.text()).trim()}`;
  } catch (err) {
    return (err as Error).message;
  }
}

// -- observing ---------------------------------------------------------------------------------------

/** Samples Postgres' client connections until stopped; `peak()` is the most seen at once. */
function sampleConnections(pool: pg.Pool): { peak(): number; stop(): Promise<void> } {
  let peak = 0;
  let stopped = false;
  const loop = (async () => {
    // Bounded as every loop here: far more samples than a run's few minutes take.
    for (let i = 0; i < 10_000 && !stopped; i++) {
      const rows = await tryQuery<{ n: number }>(
        pool,
        "select count(*)::int as n from pg_stat_activity where backend_type = 'client backend'",
      );
      if (rows) peak = Math.max(peak, rows[0]!.n);
      await sleep(CONNECTION_SAMPLE_MS);
    }
  })();
  return {
    peak: () => peak,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

interface Delivery {
  /** The messages row id: its email's, from the Message-ID header (`<email id@domain>`), and the recipient's. */
  messageId: string;
  recipient: string;
  at: number;
}

interface IdleCheck {
  slot: number;
  pid?: number;
  outcome: 'taking jobs' | 'alive but idle' | 'not running';
  delivered?: number;
  ready?: string;
}

interface Outcome {
  load: Load;
  deliveries: Delivery[];
  /** messages row id → email id, recipient, status, attempts, for every message in Postgres. */
  messages: Map<string, { emailId: string; recipient: string; status: string; attempts: number }>;
  jobsLeft: {
    id: string;
    locked_by: string | null;
    locked_at: Date | null;
    attempts: number;
    last_error: string | null;
    message_id: string;
  }[];
  drainedAt?: number;
  lastFaultAt: number;
  idle: IdleCheck[];
  /** Most client connections Postgres had at once (the api's, the senders' and the test's 2). */
  peakConnections: number;
}

/**
 * Deliveries the sink recorded, each named by its messages row: the Message-ID the sender wrote is
 * its email's (`<email id@domain>`, one for all its recipients), and the envelope says whose it is.
 */
function deliveriesOf(inbox: Inbox, messages: Outcome['messages']): Delivery[] {
  const byEmail = new Map([...messages].map(([id, m]) => [`${m.emailId} ${m.recipient}`, id]));
  return inbox.messages().map((m) => {
    const emailId = /^<([^@>\s]+)@/.exec(headerValue(m.raw, 'message-id') ?? '')?.[1] ?? '(none)';
    const recipient = m.envelope.to.join(',');
    return {
      messageId: byEmail.get(`${emailId} ${recipient}`) ?? `(no message of ${emailId})`,
      recipient,
      at: Date.parse(m.receivedAt),
    };
  });
}

/**
 * After the faults, each sender slot must be taking jobs: its process's delivered counter moves
 * (a process that replaced an exited one counts from zero, its counter being new) and its /readyz
 * answers 200. Work is kept available meanwhile, a batch sent whenever fewer than PROBE_BATCH jobs
 * wait, so that an idle sender is one that leaves work waiting, not one that has none. Runs until
 * every slot takes jobs or `until` (the drain bound), which gives a sender that exits to be
 * restarted, as it should when it cannot go on, the time to do so.
 */
async function checkSendersTakeJobs(platform: Platform, load: Load, until: number): Promise<IdleCheck[]> {
  const baseline = new Map<number, number>();
  for (const sender of platform.senders) {
    const proc = sender.current();
    if (proc) baseline.set(proc.pid, (await deliveredCount(proc.url)) ?? 0);
  }
  let results: IdleCheck[] = [];
  for (let round = 0; round < DRAIN_BOUND_MS / 1000 && Date.now() < until; round++) {
    const waiting = await tryQuery<{ n: number }>(
      platform.pool,
      'select count(*)::int as n from graphile_worker._private_jobs where locked_by is null and run_at <= now()',
    );
    if (waiting && waiting[0]!.n < PROBE_BATCH) await load.send(PROBE_BATCH);
    await sleep(1_000);
    results = await Promise.all(
      platform.senders.map(async (sender, slot): Promise<IdleCheck> => {
        const proc = sender.current();
        if (!proc) return { slot, outcome: 'not running' };
        const [delivered, ready] = await Promise.all([deliveredCount(proc.url), readyStatus(proc.url)]);
        const taking =
          delivered !== undefined && delivered > (baseline.get(proc.pid) ?? 0) && ready.startsWith('200');
        return { slot, pid: proc.pid, outcome: taking ? 'taking jobs' : 'alive but idle', delivered, ready };
      }),
    );
    if (results.every((r) => r.outcome === 'taking jobs')) break;
  }
  return results;
}

async function waitForDrain(platform: Platform, load: Load, until: number): Promise<number | undefined> {
  const ids = () => load.requests.flatMap((r) => [...r.ids]);
  const drained = await waitUntil(
    async () => {
      const emailIds = ids();
      const rows = await tryQuery<{ n: number }>(
        platform.pool,
        `select count(*)::int as n from messages where email_id = any($1::uuid[]) and status = 'delivered'`,
        [emailIds],
      );
      return rows !== undefined && rows[0]!.n >= emailIds.length;
    },
    Math.max(0, until - Date.now()),
    500,
  );
  return drained ? Date.now() : undefined;
}

async function gather(platform: Platform): Promise<Pick<Outcome, 'messages' | 'jobsLeft' | 'deliveries'>> {
  // Postgres is up by now: a failing query here is the harness's fault and must say so.
  const { rows } = await platform.pool.query<{
    id: string;
    email_id: string;
    recipient: string;
    status: string;
    attempts: number;
  }>('select id, email_id, recipient, status, attempts from messages');
  const messages = new Map(
    rows.map((r) => [
      r.id,
      { emailId: r.email_id, recipient: r.recipient, status: r.status, attempts: r.attempts },
    ]),
  );
  const { rows: jobsLeft } = await platform.pool.query<Outcome['jobsLeft'][number]>(
    `select id::text, locked_by, locked_at, attempts, last_error, payload->>'messageId' as message_id
     from graphile_worker._private_jobs order by id`,
  );
  return { messages, jobsLeft, deliveries: deliveriesOf(platform.inbox, messages) };
}

// -- what a user cares about -------------------------------------------------------------------------

const seconds = (ms: number | undefined) => (ms === undefined ? 'never' : `${(ms / 1000).toFixed(1)} s`);

async function assertOutcome(
  t: TestContext,
  platform: Platform,
  outcome: Outcome,
  kills: number,
): Promise<void> {
  const { load, deliveries, messages, jobsLeft } = outcome;
  const accepted = load.requests.filter((r) => r.ids.size > 0);
  const acceptedEmailIds = new Set(accepted.flatMap((r) => [...r.ids]));
  const emailToMessage = new Map([...messages].map(([id, m]) => [m.emailId, id]));
  const sinkCount = new Map<string, number>();
  for (const d of deliveries) sinkCount.set(d.messageId, (sinkCount.get(d.messageId) ?? 0) + 1);
  const duplicates = [...sinkCount.values()].reduce((sum, n) => sum + n - 1, 0);
  const servers = [platform.api, ...platform.senders];

  t.diagnostic(
    `accepted ${accepted.length} of ${load.requests.length}; 503s ${load.counters.status503}, other 5xx ${load.counters.otherServerErrors}, ` +
      `429s ${load.counters.status429}, 409 (key in flight) ${load.counters.status409}, network errors ${load.counters.networkErrors}, requests retried ${load.counters.retried}`,
  );
  const waits = accepted.map((r) => r.acceptedAt! - r.startedAt!);
  t.diagnostic(
    `slowest request accepted after ${seconds(Math.max(0, ...waits))} (with its retries); ` +
      `${waits.filter((w) => w > SLOW_REQUEST_MS).length} took over ${seconds(SLOW_REQUEST_MS)}`,
  );
  t.diagnostic(`peak client connections ${outcome.peakConnections} of max_connections ${MAX_CONNECTIONS}`);
  t.diagnostic(
    `sink: ${deliveries.length} deliveries of ${sinkCount.size} Message-IDs, duplicates ${duplicates} ` +
      `(bound ${kills} × ${DUPLICATES_PER_KILL})`,
  );
  t.diagnostic(
    `every accepted email delivered ${outcome.drainedAt ? `${seconds(outcome.drainedAt - outcome.lastFaultAt)} after the last fault` : `not within ${seconds(DRAIN_BOUND_MS)} of the last fault`}; ` +
      `${jobsLeft.length} jobs left in the queue (${jobsLeft.filter((j) => j.locked_by).length} locked)`,
  );
  for (const s of servers) {
    const exits = s
      .exits()
      .map((e) => `pid ${e.pid} ${e.killed ? 'killed' : 'exited'} (${e.signal ?? `code ${e.code}`})`);
    t.diagnostic(
      `${s.command}: restarts after exiting on its own ${s.restarts()}, failed starts ${s.failedStarts()}` +
        (exits.length ? `; ${exits.join(', ')}` : ''),
    );
  }
  t.diagnostic(
    `after the faults: ${outcome.idle.map((c) => `sender ${c.slot} ${c.outcome}${c.pid ? ` (pid ${c.pid}, delivered ${c.delivered}, readyz ${c.ready})` : ''}`).join('; ')}`,
  );

  await t.test(`the default pools fit in max_connections = ${MAX_CONNECTIONS}`, () => {
    // What Postgres says when a connection finds no free slot, in its log whatever the client did.
    const refusals = platform.postgres
      .logText()
      .split('\n')
      .filter((l) => /too many clients already|remaining connection slots are reserved/.test(l));
    assert.equal(
      refusals.length,
      0,
      `${refusals.length} connections refused (peak ${outcome.peakConnections}): ${refusals[0]}`,
    );
  });

  await t.test('every request is accepted in the end, retrying 5xx with its Idempotency-Key', () => {
    const refused = load.requests.filter((r) => r.refused);
    assert.equal(
      refused.length,
      0,
      `${refused.length} refused, e.g. ${refused
        .slice(0, 3)
        .map((r) => `#${r.n}: ${r.refused}`)
        .join('; ')}`,
    );
  });

  await t.test('one Idempotency-Key is one email, however often it is retried', () => {
    const split = load.requests.filter((r) => r.ids.size > 1);
    assert.equal(
      split.length,
      0,
      `keys answered with several ids: ${split
        .slice(0, 3)
        .map((r) => `${r.idempotencyKey}: ${[...r.ids].join(', ')}`)
        .join('; ')}`,
    );
  });

  await t.test(
    `every accepted email is delivered within ${DRAIN_BOUND_MS / 1000} s of the last fault`,
    async () => {
      const late = [...acceptedEmailIds].filter(
        (id) => messages.get(emailToMessage.get(id) ?? '')?.status !== 'delivered',
      );
      if (!late.length) return;
      const byStatus = new Map<string, number>();
      for (const id of late) {
        const status = messages.get(emailToMessage.get(id) ?? '')?.status ?? '(no message row)';
        byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
      }
      const lateMessages = new Set(late.map((id) => emailToMessage.get(id)));
      const jobs = jobsLeft.filter((j) => lateMessages.has(j.message_id));
      const lockedBy = new Map<string, number>();
      for (const j of jobs)
        lockedBy.set(j.locked_by ?? 'unlocked', (lockedBy.get(j.locked_by ?? 'unlocked') ?? 0) + 1);
      // The API's own view of a few of them.
      const api = platform.api.current();
      const views = api
        ? await Promise.all(
            late.slice(0, 3).map(async (id) => {
              const res = await fetch(`${api.url}/v1/emails/${id}`, {
                headers: { authorization: `Bearer ${platform.apiKey}` },
                signal: AbortSignal.timeout(5_000),
              }).catch(() => undefined);
              return `${id}: ${res ? `${res.status} status=${((await res.json()) as { status?: string }).status}` : 'no answer'}`;
            }),
          )
        : [];
      assert.fail(
        `${late.length} of ${acceptedEmailIds.size} accepted emails are not delivered ${seconds(DRAIN_BOUND_MS)} after the last fault ` +
          `(by status: ${[...byStatus].map(([s, n]) => `${s} ${n}`).join(', ')}); their jobs: ` +
          `${[...lockedBy].map(([w, n]) => `${n} locked by ${w}`).join(', ') || 'none'}` +
          (jobs[0]
            ? ` (first locked at ${jobs[0].locked_at?.toISOString()}, attempts ${jobs[0].attempts}, last error ${jobs[0].last_error})`
            : '') +
          `\nGET /v1/emails/:id says ${views.join('; ')}\n${servers.map((s) => s.tail(5)).join('\n')}`,
      );
    },
  );

  await t.test('no accepted email is lost: each reaches the sink at least once', () => {
    const lost = [...acceptedEmailIds].filter((id) => !sinkCount.has(emailToMessage.get(id) ?? ''));
    assert.equal(
      lost.length,
      0,
      `${lost.length} accepted emails never reached the sink, e.g. ${lost.slice(0, 5).join(', ')}`,
    );
  });

  await t.test('the sink receives only accepted emails, each to its own recipient', () => {
    const wrong = deliveries.filter((d) => {
      const message = messages.get(d.messageId);
      return !message || !acceptedEmailIds.has(message.emailId) || message.recipient !== d.recipient;
    });
    assert.equal(
      wrong.length,
      0,
      `deliveries of no accepted email: ${wrong
        .slice(0, 5)
        .map((d) => `${d.messageId} to ${d.recipient}`)
        .join('; ')}`,
    );
  });

  await t.test(
    `duplicates are at most ${DUPLICATES_PER_KILL} per kill and carry the Message-ID of the accepted email`,
    () => {
      // Every Message-ID seen more than once names an accepted email's message (checked above for
      // all deliveries): a duplicate is the same message again, which receivers can tell apart.
      const twice = [...sinkCount].filter(([, n]) => n > 1).map(([id]) => id);
      for (const id of twice)
        assert.ok(
          acceptedEmailIds.has(messages.get(id)?.emailId ?? ''),
          `duplicate ${id} is of no accepted email`,
        );
      assert.ok(
        duplicates <= kills * DUPLICATES_PER_KILL,
        `${duplicates} duplicate deliveries (${twice.length} messages) for ${kills} kill(s)`,
      );
    },
  );

  await t.test(
    'no sender is left alive but idle: each takes jobs (or exited non-zero and was replaced)',
    () => {
      // A process that gives up must say so with its exit code, or an orchestrator would not know.
      const quiet = platform.senders.flatMap((s) => s.exits().filter((e) => !e.killed && e.code === 0));
      assert.equal(
        quiet.length,
        0,
        `senders exited on their own with code 0: ${quiet.map((e) => e.pid).join(', ')}`,
      );
      const idle = outcome.idle.filter((c) => c.outcome !== 'taking jobs');
      assert.equal(
        idle.length,
        0,
        `${idle.map((c) => `sender ${c.slot}: ${c.outcome}${c.pid ? ` (pid ${c.pid}, delivered ${c.delivered}, readyz ${c.ready})` : ''}`).join('; ')}\n` +
          platform.senders.map((s) => s.tail(5)).join('\n'),
      );
    },
  );
}

// -- a run ------------------------------------------------------------------------------------------

/** What a fault did, for the figures printed once the run is over. */
interface FaultReport {
  /** When the fault struck: the drain bound counts from here. */
  at: number;
  /** Diagnostics computed once everything is gathered. */
  figures(gathered: Gathered, drainedAt: number | undefined): string[];
}

type Gathered = Awaited<ReturnType<typeof gather>>;

/**
 * Starts a platform, sends SENDS emails while `inject` strikes, checks that the senders take jobs
 * afterwards, waits for every accepted email to be delivered (bounded from the fault), and asserts
 * the outcome. The platform is closed whatever happens.
 */
async function runScenario(
  t: TestContext,
  inject: (platform: Platform, load: Load, started: number) => Promise<FaultReport>,
): Promise<void> {
  const phases: string[] = [];
  let mark = Date.now();
  const phase = (name: string) => {
    phases.push(`${name} ${seconds(Date.now() - mark)}`);
    mark = Date.now();
  };
  const platform = await startPlatform();
  phase('setup');
  const connections = sampleConnections(platform.pool);
  try {
    const load = createLoad(
      randomBytes(4).toString('hex'),
      platform.apiKey,
      () => platform.api.current()?.url,
    );
    const started = Date.now();
    const sending = load.send(SENDS);
    const fault = await inject(platform, load, started);
    await sending;
    phase(`${SENDS} requests`);
    const idle = await checkSendersTakeJobs(platform, load, fault.at + DRAIN_BOUND_MS);
    phase('senders checked');
    const drainedAt = await waitForDrain(platform, load, fault.at + DRAIN_BOUND_MS);
    phase('drain wait');
    await connections.stop();
    const gathered = await gather(platform);
    for (const line of fault.figures(gathered, drainedAt)) t.diagnostic(line);
    t.diagnostic(`phases: ${phases.join(', ')}`);
    await assertOutcome(
      t,
      platform,
      { load, ...gathered, drainedAt, lastFaultAt: fault.at, idle, peakConnections: connections.peak() },
      1,
    );
  } catch (err) {
    t.diagnostic(platform.postgres.logTail());
    throw err;
  } finally {
    await connections.stop();
    const closing = Date.now();
    await platform.close();
    if (process.env.MAILPLANE_TEST_VERBOSE)
      process.stderr.write(`fault.test: closed in ${seconds(Date.now() - closing)}\n`);
  }
}

// -- the tests ---------------------------------------------------------------------------------------

test('a sender killed with jobs in flight: its messages go out from another sender within the bound, once', async (t) => {
  await runScenario(t, async (platform, load, started) => {
    const sender = platform.senders[0]!;
    // Mid-run: the sink has seen a good number of deliveries, so both senders hold jobs.
    const underWay = await waitUntil(
      () => platform.inbox.messages().length >= DELIVERIES_BEFORE_SENDER_KILL,
      60_000,
    );
    assert.ok(underWay, `only ${platform.inbox.messages().length} deliveries after 60 s\n${sender.tail()}`);
    const delivered = await deliveredCount(sender.current()!.url);
    const killedPid = await sender.kill('SIGKILL');
    const at = Date.now();
    // Postgres' clock, read once the process is gone: no lock of its can be newer.
    const { rows: clock } = await platform.pool.query<{ now: Date }>('select clock_timestamp() as now');
    // The killed sender's jobs: those of a pool that locked nothing since the kill. Read once the
    // live sender has moved on (its jobs take milliseconds), before the replacement starts.
    // _private_jobs, since graphile-worker's public jobs view leaves out the payload.
    await sleep(DOWN_FOR_MS / 2);
    const { rows: locks } = await platform.pool.query<{
      locked_by: string;
      newest: Date;
      messages: string[];
    }>(
      `select locked_by, max(locked_at) as newest, array_agg(payload->>'messageId') as messages
       from graphile_worker._private_jobs where locked_by is not null group by locked_by`,
    );
    const dead = locks.filter((l) => l.newest < clock[0]!.now);
    const stranded = new Set(dead.flatMap((l) => l.messages));
    await sender.running(60_000);
    return {
      at,
      figures: (gathered, drainedAt) => {
        const takenOver = gathered.deliveries.find((d) => d.at > at && stranded.has(d.messageId));
        const done = [...stranded].filter((id) => gathered.messages.get(id)?.status === 'delivered').length;
        return [
          `sender pid ${killedPid} killed ${seconds(at - started)} into the run, after ${delivered} deliveries of its own, ` +
            `holding ${stranded.size} jobs (pool ${dead.map((l) => l.locked_by).join(', ') || 'none found'})`,
          `kill → first delivery of one of its messages by another sender: ${seconds(takenOver && takenOver.at - at)}; ` +
            `kill → every accepted email delivered: ${seconds(drainedAt && drainedAt - at)}; ${done} of its ${stranded.size} messages delivered`,
        ];
      },
    };
  });
});

test('Postgres killed under load: retried requests are accepted once it is back, and every accepted email goes out, once', async (t) => {
  await runScenario(t, async (platform, load, started) => {
    const busy = await waitUntil(() => load.accepted() >= SENDS * ACCEPTED_BEFORE_POSTGRES_KILL, 60_000);
    assert.ok(busy, `only ${load.accepted()} accepted after 60 s\n${platform.api.tail()}`);
    const before = { accepted: load.accepted(), delivered: platform.inbox.messages().length };
    await platform.postgres.crash();
    const at = Date.now();
    await sleep(DOWN_FOR_MS);
    await platform.postgres.start();
    const upAt = Date.now();
    return {
      at,
      figures: (gathered, drainedAt) => {
        const nextDelivery = gathered.deliveries.find((d) => d.at > upAt);
        const nextAccept = Math.min(
          ...load.requests.map((r) => r.acceptedAt ?? Infinity).filter((a) => a > upAt),
        );
        return [
          `Postgres killed ${seconds(at - started)} into the run (${before.accepted} accepted, ${before.delivered} delivered), ` +
            `up again ${seconds(upAt - at)} later`,
          `Postgres up → next delivery ${seconds(nextDelivery && nextDelivery.at - upAt)}, next 2xx ` +
            `${seconds(Number.isFinite(nextAccept) ? nextAccept - upAt : undefined)}, every accepted email delivered ${seconds(drainedAt && drainedAt - upAt)}`,
        ];
      },
    };
  });
});
