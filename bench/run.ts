// `make bench`: throughput figures for the api and the sender, printed; not a test. Everything
// runs on this machine: Postgres (the test helper's choice), the processes, the load and the sink.

import { readConfig } from '../lib/config.js';
import { openDatabase } from '../lib/db/index.js';
import { applyResources } from '../lib/reconcile/apply.js';
import { createRenderer } from '../lib/render/sandbox.js';
import { readManifests } from '../lib/resources.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { memoryKeyStore } from '../test/helpers/platform.js';
import { load, loadConnections, startServer } from './api.js';
import { stopChild } from './child.js';
import { benchSender } from './sender.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const SECRET = 'bench-secret-key-of-at-least-32-characters';

function line(label: string, value: string): void {
  process.stdout.write(`${label.padEnd(44)} ${value}\n`);
}

async function benchApi(): Promise<void> {
  const testDb = await createTestDatabase();
  const database = openDatabase(testDb.url);
  const config = readConfig({ DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: SECRET });
  const keys = new Map<string, string>();
  const renderer = createRenderer({ timeoutMs: 250, memoryMb: 32 });
  await applyResources(
    { db: database.db, keys: memoryKeyStore(keys), secretKey: config.secretKey, renderer },
    readManifests('examples', 'default'),
  );
  renderer.dispose();
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
}

async function benchSenderFigures(): Promise<void> {
  const { lines } = await benchSender(SECRET);
  process.stdout.write('\nsender — single-recipient welcome template, RSA-2048 DKIM, loopback SMTP sink\n');
  for (const [label, value] of lines) line(label, value);
}

if (!process.env.BENCH_SKIP_API) await benchApi();
await benchSenderFigures();
process.exit(0);
