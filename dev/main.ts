// `mailplane dev`: the whole platform in one process for a first look. Postgres is embedded
// (unless DATABASE_URL is set), mail goes to a local inbox (unless MAILPLANE_RELAY_URL is set),
// the manifests in examples/ are applied, and an API key is printed. State lives in `.dev/`.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import express from 'express';
import { startApi } from '../api/main.js';
import { readConfig } from '../lib/config.js';
import { openDatabase } from '../lib/db/index.js';
import { migrate } from '../lib/db/migrate.js';
import { verifySecretKey } from '../lib/installation.js';
import { createLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { applyResources } from '../lib/reconcile/apply.js';
import type { KeyStore } from '../lib/reconcile/key-store.js';
import { readManifests } from '../lib/resources.js';
import { templateRenderer } from '../lib/runtime.js';
import { onShutdown } from '../lib/shutdown.js';
import { startSender } from '../sender/worker.js';
import { startEmbeddedPostgres } from './embedded-postgres.js';
import { startInbox } from './inbox.js';

type Env = Record<string, string | undefined>;

/** Ports a newcomer can remember; each can be changed by its variable. */
const DEFAULT_INBOX_HTTP_PORT = 8025;
const DEFAULT_INBOX_SMTP_PORT = 2525;

export async function main(env: Env): Promise<void> {
  const stateDir = resolve(env.MAILPLANE_DEV_DIR ?? '.dev');
  mkdirSync(stateDir, { recursive: true });
  const log = createLogger({ level: (env.LOG_LEVEL as 'info') ?? 'warn' }).child({ component: 'dev' });

  const secretFile = join(stateDir, 'secret-key');
  if (!existsSync(secretFile)) writeFileSync(secretFile, randomBytes(32).toString('base64'), { mode: 0o600 });

  let stopPostgres = async () => {};
  let databaseUrl = env.DATABASE_URL;
  if (!databaseUrl) {
    const pg = await startEmbeddedPostgres(join(stateDir, 'postgres'), log);
    databaseUrl = pg.url;
    stopPostgres = pg.stop;
  }

  const inbox = await startInbox({
    smtpPort: Number(env.MAILPLANE_INBOX_SMTP_PORT ?? DEFAULT_INBOX_SMTP_PORT),
  });
  const config = readConfig({
    ...env,
    DATABASE_URL: databaseUrl,
    MAILPLANE_SECRET_KEY: env.MAILPLANE_SECRET_KEY ?? readFileSync(secretFile, 'utf8'),
    MAILPLANE_RELAY_URL: env.MAILPLANE_RELAY_URL ?? `smtp://127.0.0.1:${inbox.smtpPort}`,
  });
  const database = openDatabase(config.databaseUrl, { max: config.databasePoolSize });
  await migrate(database.db, database.pool, log);
  await verifySecretKey(database.db, config.secretKey);

  const renderer = templateRenderer(config);
  const keyFile = join(stateDir, 'api-keys.json');
  const keys = fileKeyStore(keyFile);
  const examples = resolve(env.MAILPLANE_DEV_MANIFESTS ?? 'examples');
  for (const line of await applyResources(
    { db: database.db, keys, secretKey: config.secretKey, renderer },
    readManifests(examples, 'default'),
  )) {
    log.info(line);
  }

  const metrics = createMetrics({ defaults: true });
  const api = await startApi({ database, config, log, metrics });
  const sender = await startSender({ pool: database.pool, db: database.db, config, log, metrics, renderer });
  sender.done.catch(() => process.exit(1));
  const inboxApp = express();
  inboxApp.use(inbox.handler);
  const inboxPort = Number(env.MAILPLANE_INBOX_PORT ?? DEFAULT_INBOX_HTTP_PORT);
  const inboxServer = await new Promise<ReturnType<typeof inboxApp.listen>>((ok, fail) => {
    const s = inboxApp.listen(inboxPort, () => ok(s)).once('error', fail);
  });

  const [firstKey] = Object.values(JSON.parse(readFileSync(keyFile, 'utf8')) as Record<string, string>);
  process.stdout.write(
    [
      '',
      `API: ${api.url}`,
      `API key: ${firstKey ?? '(none: the examples declare no API key)'}`,
      `Inbox: http://localhost:${(inboxServer.address() as AddressInfo).port}`,
      env.MAILPLANE_RELAY_URL ? `Relay: ${env.MAILPLANE_RELAY_URL.replace(/\/\/[^@/]*@/, '//***@')}` : '',
      '',
    ]
      .filter((l, i, all) => l !== '' || i === 0 || i === all.length - 1)
      .join('\n') + '\n',
  );

  onShutdown(log, async () => {
    await api.close();
    await sender.stop();
    renderer.dispose();
    await database.close();
    await new Promise((ok) => inboxServer.close(ok));
    await inbox.close();
    await stopPostgres();
  });
}

/** Keeps issued API keys in a file, so that every `make dev` can print the key again. */
function fileKeyStore(file: string): KeyStore {
  const read = (): Record<string, string> => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {});
  const id = (t: { namespace: string; name: string }, keyName: string) =>
    `${t.namespace}/${t.name}/${keyName}`;
  const write = (keys: Record<string, string>) =>
    writeFileSync(file, JSON.stringify(keys, null, 2), { mode: 0o600 });
  if (!existsSync(file)) write({});
  return {
    hasApiKey: async (tenant, keyName) => id(tenant, keyName) in read(),
    saveApiKey: async (tenant, keyName, key) => write({ ...read(), [id(tenant, keyName)]: key }),
    updateApiKeyScopes: async () => {},
    deleteApiKey: async (tenant, keyName) => {
      const keys = read();
      delete keys[id(tenant, keyName)];
      write(keys);
    },
    loadUserDkimKey: async (_domain, secretName) => {
      throw new Error(`spec.dkim.secretRef (${secretName}) needs the operator; leave it out in dev`);
    },
    loadGeneratedDkimKey: async () => undefined,
    saveGeneratedDkimKey: async () => {},
  };
}
