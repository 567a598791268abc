// `mailplane dev`: the whole platform in one process for a first look. Postgres is embedded
// (unless DATABASE_URL is set), mail goes to a local inbox on loopback (unless
// MAILPLANE_RELAY_URL is set), the manifests in examples/ are applied, and an API key is printed.
// SMTP submission listens beside the api with a self-signed certificate (dev/submission-tls.ts),
// and the api's own address is the public URL of unsubscribe and tracking links, so that both
// work from a local mail client and browser.
// State lives in the checkout's `.dev/`. `mailplane dev apply -f …` (`make apply F=…`) applies
// more manifests to the same database, keeping their keys beside the others.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import pg from 'pg';
import { hashApiKey } from '../lib/crypto.js';
import { isDatabaseUnavailable, type Db } from '../lib/db/index.js';
import { listen } from '../lib/listen.js';
import { createLogger, type Level } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { applyResources } from '../lib/reconcile/apply.js';
import { applyCommand, type IssuedKey } from '../lib/reconcile/cli.js';
import type { KeyStore } from '../lib/reconcile/key-store.js';
import { readManifests } from '../lib/resources.js';
import { openRuntime, redact, templateRenderer } from '../lib/runtime.js';
import { onShutdown } from '../lib/shutdown.js';
import { UserError } from '../lib/user-error.js';
import { startEmbeddedPostgres } from './embedded-postgres.js';
import { startInbox } from './inbox.js';
import { devSubmissionTls } from './submission-tls.js';

type Env = Record<string, string | undefined>;

/** Ports a newcomer can remember; each can be changed by its variable. */
const DEFAULT_INBOX_HTTP_PORT = 8025;
const DEFAULT_INBOX_SMTP_PORT = 2525;
/** SMTP submission's, as 587 and 465 with a 2 before them: those need root. */
const DEFAULT_SUBMISSION_PORT = 2587;
const DEFAULT_SUBMISSIONS_PORT = 2465;
/** Names the inbox answers to: a page on another name is a DNS-rebinding page reading our mail. */
const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

export const DEV_USAGE = `Usage: mailplane dev                       (make dev)
       mailplane dev apply -f <file|dir|->    (make apply F=<file|dir>)

Runs the api, the sender and SMTP submission in one process on an embedded Postgres, with a
local inbox that catches every message, applies the manifests in examples/, and prints the API's
address, an API key, the SMTP submission ports and the inbox's address. Unsubscribe and tracked
links point at the API's own address. Ctrl-C stops it; the database stays in the state directory.

\`mailplane dev apply\` applies your own manifests to that database while it runs, with the
options of mailplane apply (--dry-run, -o json, several -f), and keeps their API keys with the
others.

Settings (environment):
  PORT                        the API's port (8080)
  MAILPLANE_INBOX_PORT        the inbox's web page and JSON list, on 127.0.0.1 (8025)
  MAILPLANE_INBOX_SMTP_PORT   the inbox's SMTP port, on 127.0.0.1 (2525)
  MAILPLANE_SUBMISSION_PORT   SMTP submission with STARTTLS (2587)
  MAILPLANE_SUBMISSIONS_PORT  SMTP submission over TLS (2465)
  MAILPLANE_TLS_CERT_FILE     submission's certificate and key, PEM (a self-signed one for
  MAILPLANE_TLS_KEY_FILE      localhost, made once into the state directory with openssl)
  MAILPLANE_PUBLIC_URL        the base of unsubscribe and tracked links (the API's address)
  MAILPLANE_DEV_DIR           the state directory: secret key, API keys, database (.dev in the
                              checkout); delete it to start over
  MAILPLANE_DEV_MANIFESTS     what is applied at start (examples/ in the checkout)
  DATABASE_URL                a Postgres of your own instead of the embedded one
  MAILPLANE_SECRET_KEY        a key of your own instead of the state directory's
  MAILPLANE_RELAY_URL         deliver to this SMTP server instead of the inbox
  LOG_LEVEL                   debug, info, warn or error (warn)
and the settings of mailplane api and mailplane sender (see their --help).`;

/**
 * `mailplane dev [apply …]`; resolves with an exit code, or 'running' once everything is up.
 *
 *   await devCommand([], process.env);   // prints the banner, runs until Ctrl-C
 */
export async function devCommand(args: string[], env: Env): Promise<number | 'running'> {
  const [sub, ...rest] = args;
  if (sub === '--help' || sub === '-h') {
    process.stdout.write(`${DEV_USAGE}\n`);
    return 0;
  }
  if (sub === 'apply') return devApply(rest, env);
  if (sub !== undefined) {
    throw new UserError(`mailplane dev: unknown argument "${sub}"\n\n${DEV_USAGE}`);
  }
  await main(env);
  return 'running';
}

/** The checkout this file is in: dev/main.ts from source, dist/dev/main.js once built. */
function checkout(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

function statePaths(env: Env) {
  const root = checkout();
  const stateDir = env.MAILPLANE_DEV_DIR ? resolve(env.MAILPLANE_DEV_DIR) : join(root, '.dev');
  return {
    root,
    stateDir,
    secretFile: join(stateDir, 'secret-key'),
    keyFile: join(stateDir, 'api-keys.json'),
    /** The database the last `mailplane dev` ran on, for `mailplane dev apply`. */
    urlFile: join(stateDir, 'database-url'),
  };
}

export async function main(env: Env): Promise<void> {
  const paths = statePaths(env);
  const { root, stateDir, secretFile, keyFile } = paths;
  const newState = !existsSync(secretFile);
  // The state holds the secret key, api keys and the TLS key: the developer's own.
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const log = createLogger({ level: logLevel(env) }).child({ component: 'dev' });
  if (newState) writeFileSync(secretFile, randomBytes(32).toString('base64'), { mode: 0o600 });

  // Ctrl-C while starting: exit, so that the exit hooks stop what was started (Postgres); a
  // signal's default action would skip them. From the banner on, onShutdown stops it all in order.
  const interrupted = () => process.exit(130);
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  // The inbox first: a taken port is said before anything slow has started.
  const inbox = await startInbox({
    smtpPort: Number(env.MAILPLANE_INBOX_SMTP_PORT ?? DEFAULT_INBOX_SMTP_PORT),
    smtpPortSetting: 'MAILPLANE_INBOX_SMTP_PORT',
  });
  const inboxApp = express();
  inboxApp.use((req, res, next) => {
    if (LOOPBACK_NAMES.has((req.headers.host ?? '').replace(/:\d+$/, ''))) return next();
    res.status(403).type('text/plain').send('the dev inbox answers to localhost only\n');
  });
  inboxApp.use(inbox.handler);
  const inboxServer = createServer(inboxApp);
  await listen(inboxServer, {
    port: Number(env.MAILPLANE_INBOX_PORT ?? DEFAULT_INBOX_HTTP_PORT),
    host: '127.0.0.1',
    setting: 'MAILPLANE_INBOX_PORT',
  });

  let stopPostgres = async () => {};
  let databaseUrl = env.DATABASE_URL;
  const notes: string[] = [];
  if (!databaseUrl) {
    const pg = await startEmbeddedPostgres({ stateDir, newState, log });
    databaseUrl = pg.url;
    stopPostgres = pg.stop;
    // A new cluster holds none of the keys an earlier one issued.
    if (pg.fresh) writeFileSync(keyFile, '{}\n', { mode: 0o600 });
    if (pg.movedBecause) notes.push(`Postgres data: ${pg.dataDir} (${pg.movedBecause})`);
    void pg.unexpectedExit.then((exit) => {
      log.error('the embedded Postgres stopped; see its log', { exit, log: pg.logFile });
      process.exit(1);
    });
  }
  writeFileSync(paths.urlFile, `${databaseUrl}\n`, { mode: 0o600 });

  // Submission takes no AUTH before TLS: without a certificate of the developer's own, one made here.
  const ownTls = Boolean(env.MAILPLANE_TLS_CERT_FILE && env.MAILPLANE_TLS_KEY_FILE);
  const tls = ownTls ? undefined : await devSubmissionTls(stateDir);
  if (tls && 'unavailable' in tls) {
    notes.push(
      `SMTP submission: off (${tls.unavailable}; or set MAILPLANE_TLS_CERT_FILE and MAILPLANE_TLS_KEY_FILE)`,
    );
  }
  const tlsFiles = tls && 'files' in tls ? tls.files : undefined;

  // What every process does first (an unreachable DATABASE_URL or a wrong key is one line).
  const { config, database } = await openRuntime(
    'dev',
    {
      ...env,
      DATABASE_URL: databaseUrl,
      MAILPLANE_SECRET_KEY: env.MAILPLANE_SECRET_KEY ?? readFileSync(secretFile, 'utf8'),
      MAILPLANE_RELAY_URL: env.MAILPLANE_RELAY_URL ?? `smtp://127.0.0.1:${inbox.smtpPort}`,
      MAILPLANE_SUBMISSION_PORT: env.MAILPLANE_SUBMISSION_PORT ?? String(DEFAULT_SUBMISSION_PORT),
      MAILPLANE_SUBMISSIONS_PORT: env.MAILPLANE_SUBMISSIONS_PORT ?? String(DEFAULT_SUBMISSIONS_PORT),
      ...(tlsFiles
        ? { MAILPLANE_TLS_CERT_FILE: tlsFiles.certFile, MAILPLANE_TLS_KEY_FILE: tlsFiles.keyFile }
        : {}),
    },
    { logLevel: logLevel(env) },
  );

  const renderer = templateRenderer(config);
  const keys = fileKeyStore(keyFile);
  const examples = env.MAILPLANE_DEV_MANIFESTS
    ? resolve(env.MAILPLANE_DEV_MANIFESTS)
    : join(root, 'examples');
  for (const line of await applyResources(
    { db: database.db, keys, secretKey: config.secretKey, renderer },
    readManifests(examples, 'default'),
  )) {
    log.info(line);
  }
  await forgetStaleKeys(database.db, keyFile);

  // Imported here, not above: `dev --help` and `dev apply` need none of them.
  const [{ startApi }, { startSender }, { startSubmission }] = await Promise.all([
    import('../api/main.js'),
    import('../sender/worker.js'),
    import('../submission/main.js'),
  ]);
  const metrics = createMetrics({ defaults: true });
  // Submission first: a taken port is said before the api and the sender have started.
  const submission =
    ownTls || tlsFiles ? await startSubmission({ database, config, log, metrics }) : undefined;
  const api = await startApi({ database, config, log, metrics });
  // The api's address is known once it listens (PORT=0 takes any free port): the sender's links
  // point there, plain http, so unsubscribe links carry no List-Unsubscribe-Post (RFC 8058 asks
  // https for one-click) but open in a browser, and tracked links redirect.
  const senderConfig = Object.freeze({ ...config, publicUrl: config.publicUrl ?? api.url });
  const sender = await startSender({
    pool: database.pool,
    db: database.db,
    config: senderConfig,
    log,
    metrics,
    renderer,
  });
  sender.done.catch(() => process.exit(1));

  const [firstKey] = Object.values(readKeys(keyFile));
  const apply = `${env.MAILPLANE_DEV_DIR ? `MAILPLANE_DEV_DIR=${stateDir} ` : ''}make apply F=<file|dir>`;
  process.stdout.write(
    [
      '',
      `API: ${api.url}`,
      `API key: ${firstKey ?? '(none: the manifests declare no API key)'}`,
      ...(submission
        ? [
            `SMTP submission: localhost:${submission.server.port} (STARTTLS), localhost:${submission.server.securePort} (TLS)`,
            `SMTP login: any user name, the API key as password${ownTls ? '' : `; self-signed certificate ${tlsFiles!.certFile}`}`,
          ]
        : []),
      `Inbox: http://localhost:${(inboxServer.address() as AddressInfo).port}`,
      ...(env.MAILPLANE_RELAY_URL
        ? [`Relay: ${env.MAILPLANE_RELAY_URL.replace(/\/\/[^@/]*@/, '//***@')}`]
        : []),
      // The embedded one's password is a throwaway on loopback: shown, for psql.
      `Database: ${env.DATABASE_URL ? redact(config.databaseUrl) : config.databaseUrl}`,
      ...notes,
      `Your own manifests: ${apply}, in another terminal (from ${root})`,
      'Ctrl-C stops everything.',
      '',
    ].join('\n') + '\n',
  );

  process.off('SIGINT', interrupted);
  process.off('SIGTERM', interrupted);
  onShutdown(log, async () => {
    await submission?.close();
    await api.close();
    await sender.stop();
    renderer.dispose();
    await database.close();
    await new Promise((ok) => inboxServer.close(ok));
    await inbox.close();
    await stopPostgres();
  });
}

/** Quieter than the processes by default: the banner is what a newcomer reads. */
function logLevel(env: Env): Level {
  return (env.LOG_LEVEL as Level | undefined) ?? 'warn';
}

/** `mailplane dev apply`: `mailplane apply` on the database and with the key of `mailplane dev`. */
async function devApply(args: string[], env: Env): Promise<number> {
  const { stateDir, secretFile, keyFile, urlFile } = statePaths(env);
  const command = 'mailplane dev apply';
  if (args.includes('--help') || args.includes('-h')) return applyCommand(args, env, { command });
  const databaseUrl = env.DATABASE_URL ?? (existsSync(urlFile) ? readFileSync(urlFile, 'utf8').trim() : '');
  if (!databaseUrl || !existsSync(secretFile)) {
    throw new UserError(`dev apply: ${stateDir} has no dev database yet; start \`make dev\` first`);
  }
  // Said plainly before apply's own message: the usual cause is that `make dev` is not running.
  const probe = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 3_000 });
  probe.on('error', () => {});
  try {
    await probe.connect();
  } catch (err) {
    if (!isDatabaseUnavailable(err)) throw err;
    throw new UserError(
      `dev apply: the dev database (${redact(databaseUrl)}) does not answer; is \`make dev\` running?`,
    );
  } finally {
    await probe.end().catch(() => {});
  }
  return applyCommand(
    args,
    {
      ...env,
      DATABASE_URL: databaseUrl,
      MAILPLANE_SECRET_KEY: env.MAILPLANE_SECRET_KEY ?? readFileSync(secretFile, 'utf8'),
    },
    { command, keyStore: (report) => fileKeyStore(keyFile, report) },
  );
}

function readKeys(file: string): Record<string, string> {
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>) : {};
}

function writeKeys(file: string, keys: Record<string, string>): void {
  writeFileSync(file, `${JSON.stringify(keys, null, 2)}\n`, { mode: 0o600 });
}

/**
 * Keeps issued API keys in a file, so that every `make dev` can print the key again; `report`
 * hears of each new one (for `mailplane dev apply` to print it).
 */
function fileKeyStore(file: string, report?: (key: IssuedKey) => void): KeyStore {
  const id = (t: { namespace: string; name: string }, keyName: string) =>
    `${t.namespace}/${t.name}/${keyName}`;
  if (!existsSync(file)) writeKeys(file, {});
  return {
    hasApiKey: async (tenant, keyName) => id(tenant, keyName) in readKeys(file),
    saveApiKey: async (tenant, name, key, scopes) => {
      writeKeys(file, { ...readKeys(file), [id(tenant, name)]: key });
      report?.({ tenant, name, scopes, key });
    },
    updateApiKeyScopes: async () => {},
    deleteApiKey: async (tenant, keyName) => {
      const keys = readKeys(file);
      delete keys[id(tenant, keyName)];
      writeKeys(file, keys);
    },
    loadUserDkimKey: async (_domain, secretName) => {
      throw new UserError(`spec.dkim.secretRef (${secretName}) needs the operator; leave it out in dev`);
    },
    loadGeneratedDkimKey: async () => undefined,
    saveGeneratedDkimKey: async () => {},
  };
}

/**
 * Drops from the key file every key the database does not hold live (a database started over,
 * a DATABASE_URL pointing elsewhere), so that the key printed is one that works.
 */
async function forgetStaleKeys(db: Db, file: string): Promise<void> {
  const keys = readKeys(file);
  if (Object.keys(keys).length === 0) return;
  const live = await db.selectFrom('api_keys').select('hash').where('revoked_at', 'is', null).execute();
  const hashes = new Set(live.map((k) => k.hash.toString('hex')));
  const kept = Object.fromEntries(
    Object.entries(keys).filter(([, key]) => hashes.has(hashApiKey(key).toString('hex'))),
  );
  if (Object.keys(kept).length !== Object.keys(keys).length) writeKeys(file, kept);
}
