// `make bench`: throughput figures for the api and the sender, printed; not a test. Everything
// runs on this machine: Postgres (the test helper's choice), the processes, the load and the sink.

import { openDatabase } from '../lib/db/index.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { applyExamples } from '../test/helpers/platform.js';
import { load, loadConnections, startServer } from './api.js';
import { stopChild } from './child.js';
import { benchSender } from './sender.js';
import { benchSubmission, submissionConnections } from './submission.js';
import { benchTracking } from './tracking.js';
import { benchUnsubscribe } from './unsubscribe.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const SECRET = 'bench-secret-key-of-at-least-32-characters';

function line(label: string, value: string): void {
  process.stdout.write(`${label.padEnd(44)} ${value}\n`);
}

/** Returns the accept rate of POST /v1/emails, for the submission figure to stand beside. */
async function benchApi(): Promise<number> {
  const testDb = await createTestDatabase();
  const database = openDatabase(testDb.url);
  const keys = await applyExamples(database.db, SECRET);
  await database.close();
  const key = keys.get('default/acme/backend')!;
  const env = { DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: SECRET, PORT: '0', LOG_LEVEL: 'info' };
  const body = JSON.stringify({
    from: 'Acme <hello@example.com>',
    to: ['ada@example.org'],
    subject: 'Your receipt',
    html: '<p>Thanks for your order.</p>',
  });

  const api = await startServer(['dist/cmd/mailplane.js', 'api'], env);
  const full = await load(
    `http://127.0.0.1:${api.port}/v1/emails`,
    body,
    { authorization: `Bearer ${key}` },
    SECONDS,
  );
  await stopChild(api.child);
  const bare = await startServer(['--import', 'tsx', 'bench/bare-api.ts'], env);
  const ceiling = await load(`http://127.0.0.1:${bare.port}/send`, body, {}, SECONDS);
  await stopChild(bare.child);
  const tracking = process.env.BENCH_SKIP_TRACKING ? undefined : await benchTracking(env, key, SECONDS);
  const unsubscribe = process.env.BENCH_SKIP_UNSUBSCRIBE
    ? undefined
    : await benchUnsubscribe(env, key, SECONDS);
  await testDb.drop();

  process.stdout.write(
    `\napi — single-recipient POST /v1/emails, ${loadConnections} connections, ${SECONDS} s\n`,
  );
  line('accepted/s', `${full.requestsPerSecond.toFixed(0)}   (target ≥ 4000)`);
  line('latency p50 / p99', `${full.p50} ms / ${full.p99} ms   (target p99 ≤ 30 ms)`);
  line('non-2xx / errors', `${full.non2xx} / ${full.errors}`);
  line(
    'bare ceiling (insert + queue), req/s',
    `${ceiling.requestsPerSecond.toFixed(0)}   p99 ${ceiling.p99} ms`,
  );
  line('ratio', `${(full.requestsPerSecond / ceiling.requestsPerSecond).toFixed(2)}   (target ≥ 0.6)`);
  if (tracking) {
    process.stdout.write(
      `\ntracked links — GET /t/c/<token>, ${loadConnections} connections, ${SECONDS} s\n`,
    );
    for (const [label, value] of tracking.lines) line(label, value);
  }
  if (unsubscribe) {
    process.stdout.write(
      `\none-click unsubscribe — POST /u/<token>, ${loadConnections} connections, ${SECONDS} s\n`,
    );
    for (const [label, value] of unsubscribe.lines) line(label, value);
  }
  return full.requestsPerSecond;
}

async function benchSubmissionFigures(rest: number | undefined): Promise<void> {
  const smtp = await benchSubmission(SECRET, SECONDS);
  process.stdout.write(
    `\nsubmission — single-recipient messages, ${submissionConnections} pooled STARTTLS connections (nodemailer), ${SECONDS} s\n`,
  );
  const beside = rest ? `   (REST above: ${rest.toFixed(0)}/s at ${loadConnections} connections)` : '';
  line('accepted/s', `${smtp.perSecond.toFixed(0)}${beside}`);
  line('end of DATA to 250, p50 / p99', `${smtp.p50Ms.toFixed(1)} ms / ${smtp.p99Ms.toFixed(1)} ms`);
  line('accepted / refused or failed', `${smtp.sent} / ${smtp.failed}`);
}

async function benchSenderFigures(): Promise<void> {
  const { lines } = await benchSender(SECRET);
  process.stdout.write('\nsender — single-recipient welcome template, RSA-2048 DKIM, loopback SMTP sink\n');
  for (const [label, value] of lines) line(label, value);
}

const rest = process.env.BENCH_SKIP_API ? undefined : await benchApi();
if (!process.env.BENCH_SKIP_SUBMISSION) await benchSubmissionFigures(rest);
await benchSenderFigures();
process.exit(0);
