// `mailplane apply -f <file|dir|->`: the operator's reconcile functions run on manifests straight
// into Postgres, without a cluster (what `make dev` and a quick trial use). `--dry-run` runs them
// on a rehearsal handle (./dry-run.ts) with a key store that keeps and prints nothing, so it says
// what would change and leaves no row, no key and no printed secret behind.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { readConfig, type Config } from '../config.js';
import { isDatabaseUnavailable, type Db } from '../db/index.js';
import type { Scope } from '../db/schema.js';
import { verifySecretKey } from '../installation.js';
import { parseManifests, readManifests, type Resource } from '../resources.js';
import { openRuntime, redact, templateRenderer } from '../runtime.js';
import { UserError } from '../user-error.js';
import { applyEach, describeResult, type ApplyResult } from './apply.js';
import { openRehearsal } from './dry-run.js';
import {
  reportingWebhookSecrets,
  webhookSecretLine,
  type KeyStore,
  type ResourceRef,
  type WebhookSecret,
} from './key-store.js';

type Env = Record<string, string | undefined>;

export const APPLY_USAGE = `Usage: mailplane apply -f <file|dir|-> [-f …] [-n namespace] [--dry-run] [-o json]

Applies Tenant, SendingDomain and Template manifests to the database at DATABASE_URL, as the
operator would, and prints each new API key and webhook signing secret once. Manifests are checked against the CRD schemas
(crds/) before anything is written.

Options:
  -f, --filename <path>    a manifest file, a directory of them (.yaml, .yml, .json), or - for
                           standard input; repeat to apply several
  -n, --namespace <name>   namespace for manifests that name none (default "default")
      --dry-run            say what would change, and write nothing: no rows, no keys
  -o, --output json        print the results as JSON, one object per resource (new API keys
                           in its apiKeys, new webhook signing secrets in its webhooks),
                           instead of lines
  -h, --help               this help

Settings (environment):
  DATABASE_URL                  Postgres to apply to (required)
  MAILPLANE_SECRET_KEY          the installation's key, 32+ characters (required); DKIM keys
                                and webhook signing secrets are stored encrypted under it
  MAILPLANE_RENDER_TIMEOUT_MS   time limit of the sample render of a Template (250)
  MAILPLANE_RENDER_MEMORY_MB    memory limit of the template sandbox (32)
  MAILPLANE_MAX_MESSAGE_BYTES   largest rendered template (10485760)
  MAILPLANE_WEBHOOKS_ALLOW_PRIVATE
                                a Tenant's webhooks may be plain http and private
                                addresses, as \`make dev\` and tests want (false)`;

/** An API key issued during an apply: printed once (or returned in -o json), kept nowhere. */
export interface IssuedKey {
  tenant: ResourceRef;
  name: string;
  scopes: Scope[];
  key: string;
}

export interface ApplyCommandOptions {
  /** How the command is called, for messages: `mailplane apply` or `mailplane dev apply`. */
  command?: string;
  /** The store new API keys go to; `report` must be called for each new key. Default: none kept. */
  keyStore?: (report: (key: IssuedKey) => void) => KeyStore;
  /** Reads standard input for `-f -`. */
  readStdin?: () => string;
}

interface ApplyArgs {
  files: string[];
  namespace: string;
  dryRun: boolean;
  json: boolean;
}

/**
 * Runs `mailplane apply`; resolves with the exit code, throws a UserError for a mistake of the
 * user's (a flag, a file, a manifest, the database), which the binary prints as one line.
 *
 *   process.exitCode = await applyCommand(['-f', 'examples/'], process.env);
 */
export async function applyCommand(
  argv: string[],
  env: Env,
  options: ApplyCommandOptions = {},
): Promise<number> {
  const command = options.command ?? 'mailplane apply';
  const usage = APPLY_USAGE.replace('mailplane apply', command);
  const args = parseApplyArgs(argv, command, usage);
  if (args === 'help') {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const resources = loadManifests(args, options.readStdin ?? (() => readFileSync(0, 'utf8')));
  const config = readConfig(env);

  const issued: IssuedKey[] = [];
  const report = (key: IssuedKey) => {
    if (args.json) issued.push(key);
    else
      process.stdout.write(
        `API key ${key.tenant.namespace}/${key.tenant.name}/${key.name} (${key.scopes.join(',')}): ${key.key}\n`,
      );
  };
  // A Tenant's webhook signing secrets, shown once as its API keys are (Postgres keeps them encrypted).
  const secrets: { tenant: ResourceRef; name: string; webhook: WebhookSecret }[] = [];
  const reportSecret = (tenant: ResourceRef, name: string, webhook: WebhookSecret) => {
    if (args.json) secrets.push({ tenant, name, webhook });
    else process.stdout.write(`${webhookSecretLine(tenant, name, webhook)}\n`);
  };
  const store = reportingWebhookSecrets((options.keyStore ?? printingKeyStore)(report), reportSecret);
  const results: (ApplyResult & {
    dryRun?: true;
    apiKeys?: Omit<IssuedKey, 'tenant'>[];
    webhooks?: { name: string; url: string; signingSecret: string }[];
  })[] = [];
  try {
    await withDatabase(env, config, args.dryRun, async (db) => {
      const renderer = templateRenderer(config);
      try {
        const deps = {
          db,
          keys: args.dryRun ? writingNothing(store) : store,
          secretKey: config.secretKey,
          webhooksAllowPrivate: config.webhooksAllowPrivate,
          renderer,
        };
        for await (const result of applyEach(deps, resources)) {
          if (args.json) {
            const keys = issued
              .filter(
                (k) =>
                  result.kind === 'Tenant' &&
                  k.tenant.namespace === result.namespace &&
                  k.tenant.name === result.name,
              )
              .map(({ name, scopes, key }) => ({ name, scopes, key }));
            const hooks = secrets
              .filter(
                (w) =>
                  result.kind === 'Tenant' &&
                  w.tenant.namespace === result.namespace &&
                  w.tenant.name === result.name,
              )
              .map(({ name, webhook }) => ({ name, url: webhook.url, signingSecret: webhook.secret }));
            results.push({
              ...result,
              ...(args.dryRun ? { dryRun: true } : {}),
              ...(keys.length ? { apiKeys: keys } : {}),
              ...(hooks.length ? { webhooks: hooks } : {}),
            });
          } else {
            process.stdout.write(`${describeResult(result)}${args.dryRun ? ' (dry run)' : ''}\n`);
          }
        }
      } finally {
        renderer.dispose();
      }
    });
  } finally {
    // What was applied before a failure is printed too: it stays applied.
    if (args.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  }
  return 0;
}

function parseApplyArgs(argv: string[], command: string, usage: string): ApplyArgs | 'help' {
  /** Messages are printed after "mailplane: ". */
  const name = command.replace(/^mailplane /, '');
  // kubectl spells it --dry-run=client|server|none; here both run against the database.
  const normalized = argv.flatMap((arg) =>
    arg === '--dry-run=client' || arg === '--dry-run=server'
      ? ['--dry-run']
      : arg === '--dry-run=none'
        ? []
        : [arg],
  );
  let values;
  try {
    ({ values } = parseArgs({
      args: normalized,
      options: {
        filename: { type: 'string', short: 'f', multiple: true },
        namespace: { type: 'string', short: 'n', default: 'default' },
        'dry-run': { type: 'boolean' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UserError(`${name}: ${(err as Error).message}\n\n${usage}`);
  }
  if (values.help) return 'help';
  if (!values.filename?.length) throw new UserError(`${name}: -f <file|dir|-> is required\n\n${usage}`);
  if (values.output !== undefined && values.output !== 'json') {
    throw new UserError(`${name}: -o ${values.output} is not an output format; the one there is: -o json`);
  }
  if (values.filename.filter((f) => f === '-').length > 1) {
    throw new UserError(`${name}: -f - (standard input) can be given once`);
  }
  return {
    files: values.filename,
    namespace: values.namespace ?? 'default',
    dryRun: values['dry-run'] ?? false,
    json: values.output === 'json',
  };
}

function loadManifests(args: ApplyArgs, readStdin: () => string): Resource[] {
  const resources = args.files.flatMap((file) =>
    file === '-' ? parseManifests(readStdin(), 'stdin', args.namespace) : readManifests(file, args.namespace),
  );
  if (resources.length === 0) throw new UserError(`no manifests in ${args.files.join(', ')}`);
  // A user's own DKIM key is a Kubernetes Secret: said before anything is written, not midway.
  const withSecret = resources.filter((r) => r.kind === 'SendingDomain' && r.spec.dkim?.secretRef);
  if (withSecret.length > 0) {
    throw new UserError(
      `${withSecret.map((r) => `sendingdomain/${r.metadata.name}`).join(', ')}: spec.dkim.secretRef names a ` +
        'Kubernetes Secret, which only the operator can read; leave it out to have a key generated',
    );
  }
  return resources;
}

/**
 * Runs `work` on the database: migrated and its secret key checked (as every process does at
 * start), or, for a dry run, on a rehearsal handle where even the first-use key check is undone.
 */
async function withDatabase(
  env: Env,
  config: Readonly<Config>,
  dryRun: boolean,
  work: (db: Db) => Promise<void>,
): Promise<void> {
  const where = redact(config.databaseUrl);
  try {
    if (dryRun) {
      const rehearsal = openRehearsal(config.databaseUrl);
      try {
        await verifySecretKey(rehearsal.db, config.secretKey);
        await work(rehearsal.db);
      } finally {
        await rehearsal.close();
      }
    } else {
      const { database } = await openRuntime('apply', env, { logLevel: 'warn' });
      try {
        await work(database.db);
      } finally {
        await database.close();
      }
    }
  } catch (err) {
    if (!(err instanceof UserError) && isDatabaseUnavailable(err)) {
      throw new UserError(`cannot reach Postgres at DATABASE_URL (${where}): ${(err as Error).message}`, {
        cause: err,
      });
    }
    // 42P01 undefined_table, 42703 undefined_column: a dry run changes no schema either.
    const code = (err as { code?: unknown }).code;
    if (dryRun && (code === '42P01' || code === '42703')) {
      throw new UserError(
        `the database at DATABASE_URL (${where}) is not set up for this version of Mailplane ` +
          `(${(err as Error).message}); a dry run changes no schema: run \`mailplane migrate\` first`,
        { cause: err },
      );
    }
    throw err;
  }
}

/** The store of `mailplane apply`: reports each new API key once, and keeps nothing. */
function printingKeyStore(report: (key: IssuedKey) => void): KeyStore {
  return {
    // Nothing is kept, so nothing can be lost: the hash in Postgres is the only record.
    hasApiKey: async () => true,
    saveApiKey: async (tenant, name, key, scopes) => report({ tenant, name, scopes, key }),
    updateApiKeyScopes: async () => {},
    deleteApiKey: async () => {},
    loadUserDkimKey: async (domain) => {
      // loadManifests refuses a secretRef first; this is for a caller that did not.
      throw new UserError(`sendingdomain/${domain.name}: spec.dkim.secretRef needs the operator`);
    },
    loadGeneratedDkimKey: async () => undefined,
    saveGeneratedDkimKey: async () => {},
  };
}

/** `store` as a dry run sees it: it answers what it holds, and takes nothing (no key is reported). */
function writingNothing(store: KeyStore): KeyStore {
  return {
    ...(store.keepsDkimKeys !== undefined ? { keepsDkimKeys: store.keepsDkimKeys } : {}),
    hasApiKey: (tenant, name) => store.hasApiKey(tenant, name),
    ...(store.checkApiKey
      ? { checkApiKey: (tenant, name, hash, scopes) => store.checkApiKey!(tenant, name, hash, scopes) }
      : {}),
    saveApiKey: async () => {},
    updateApiKeyScopes: async () => {},
    deleteApiKey: async () => {},
    loadUserDkimKey: (domain, secret) => store.loadUserDkimKey(domain, secret),
    loadGeneratedDkimKey: (domain) => store.loadGeneratedDkimKey(domain),
    saveGeneratedDkimKey: async () => {},
  };
}
