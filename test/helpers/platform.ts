// Starts the api against a fresh database with the examples applied: what most api tests need.

import type { Scope } from '../../lib/db/schema.js';
import { readConfig, type Config } from '../../lib/config.js';
import { openDatabase, type DatabaseHandle } from '../../lib/db/index.js';
import { silentLogger, type Logger } from '../../lib/log.js';
import { createMetrics, type Metrics } from '../../lib/metrics.js';
import { applyResources } from '../../lib/reconcile/apply.js';
import type { KeyStore } from '../../lib/reconcile/key-store.js';
import { createRenderer, type Renderer } from '../../lib/render/sandbox.js';
import { readManifests, type Resource } from '../../lib/resources.js';
import { startApi, type RunningApi } from '../../api/main.js';
import { startSender, type Sender } from '../../sender/worker.js';
import { createTestDatabase } from './postgres.js';

export interface TestPlatform {
  url: string;
  config: Readonly<Config>;
  database: DatabaseHandle;
  metrics: Metrics;
  renderer: Renderer;
  /** Keys issued so far, by `namespace/tenant/key`. */
  keys: Map<string, string>;
  keyStore: KeyStore;
  apply(resources: Resource[]): Promise<string[]>;
  close(): Promise<void>;
}

/** A key store that remembers what it issued, as the operator's Secrets would. */
export function memoryKeyStore(keys: Map<string, string>): KeyStore {
  const id = (t: { namespace: string; name: string }, k: string) => `${t.namespace}/${t.name}/${k}`;
  return {
    hasApiKey: async (t, k) => keys.has(id(t, k)),
    saveApiKey: async (t, k, key) => void keys.set(id(t, k), key),
    updateApiKeyScopes: async () => {},
    deleteApiKey: async (t, k) => void keys.delete(id(t, k)),
    loadUserDkimKey: async () => {
      throw new Error('no user keys in tests');
    },
    loadGeneratedDkimKey: async () => undefined,
    saveGeneratedDkimKey: async () => {},
  };
}

/**
 * Applies examples/ (the acme tenant, its domain and templates) to `db`, as `mailplane apply` would,
 * and returns the API keys it issued by `namespace/tenant/key`: for tests and benchmarks that run
 * the real processes against a database of their own.
 *
 *   const keys = await applyExamples(database.db, secret);
 *   const key = keys.get('default/acme/backend')!;
 */
export async function applyExamples(db: DatabaseHandle['db'], secret: string): Promise<Map<string, string>> {
  const config = readConfig({ DATABASE_URL: 'postgres://unused', MAILPLANE_SECRET_KEY: secret });
  const keys = new Map<string, string>();
  const renderer = createRenderer({ timeoutMs: 250, memoryMb: 32 });
  try {
    await applyResources(
      { db, keys: memoryKeyStore(keys), secretKey: config.secretKey, renderer },
      readManifests('examples', 'default'),
    );
  } finally {
    renderer.dispose();
  }
  return keys;
}

export function tenant(
  name: string,
  apiKeys: { name: string; scopes: Scope[] }[],
  maxRecipients?: number,
): Resource {
  return {
    kind: 'Tenant',
    metadata: { namespace: 'default', name },
    spec: { apiKeys, ...(maxRecipients ? { limits: { maxRecipients } } : {}) },
  };
}

export function sendingDomain(
  name: string,
  tenantName: string,
  domain: string,
  algorithm: 'rsa-2048' | 'ed25519' = 'rsa-2048',
): Resource {
  return {
    kind: 'SendingDomain',
    metadata: { namespace: 'default', name },
    spec: { tenantRef: { name: tenantName }, domain, dkim: { selector: 'mp1', algorithm } },
  };
}

/**
 * A fresh database with examples/ applied and the api listening on a free port.
 *
 *   const platform = await startTestPlatform({ MAILPLANE_RELAY_URL: 'smtp://127.0.0.1:2525' });
 *
 * `options.log` receives the api's log lines (silent by default); `options.metrics` replaces its
 * registry, e.g. one with Node's default metrics.
 */
export async function startTestPlatform(
  env: Record<string, string> = {},
  options: { log?: Logger; metrics?: Metrics } = {},
): Promise<TestPlatform> {
  const testDb = await createTestDatabase();
  const config = readConfig({
    DATABASE_URL: testDb.url,
    MAILPLANE_SECRET_KEY: 'test-secret-key-of-at-least-32-characters',
    PORT: '0',
    ...env,
  });
  const database = openDatabase(config.databaseUrl, { max: 20 });
  const renderer = createRenderer({ timeoutMs: config.renderTimeoutMs, memoryMb: config.renderMemoryMb });
  const keys = new Map<string, string>();
  const keyStore = memoryKeyStore(keys);
  const apply = (resources: Resource[]) =>
    applyResources({ db: database.db, keys: keyStore, secretKey: config.secretKey, renderer }, resources);
  await apply(readManifests('examples', 'default'));
  const metrics = options.metrics ?? createMetrics();
  const log = options.log ?? silentLogger;
  const api: RunningApi = await startApi({ database, config, log, metrics });
  return {
    url: api.url,
    config,
    database,
    metrics,
    renderer,
    keys,
    keyStore,
    apply,
    close: async () => {
      await api.close();
      renderer.dispose();
      await database.close();
      await testDb.drop();
    },
  };
}

/**
 * A sender on the platform's database and configuration, quiet: what tests that watch mail go out
 * (webhooks, statistics) start beside the api. Its metrics are `metrics`, a registry of its own
 * unless given.
 *
 *   const sender = await startTestSender(platform);
 *   after(() => sender.stop());
 */
export async function startTestSender(
  platform: TestPlatform,
  metrics: Metrics = createMetrics(),
): Promise<Sender> {
  return startSender({
    pool: platform.database.pool,
    db: platform.database.db,
    config: platform.config,
    log: silentLogger,
    metrics,
    renderer: platform.renderer,
  });
}
