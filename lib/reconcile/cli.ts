// `mailplane apply -f <file|dir>`: the operator's reconcile functions run on manifests straight
// into Postgres, without a cluster (what `make dev` and a quick trial use).

import { parseArgs } from 'node:util';
import { printOnceKeyStore } from './key-store.js';
import { applyResources } from './apply.js';
import { readManifests } from '../resources.js';
import { openRuntime, templateRenderer } from '../runtime.js';
import { UserError } from '../user-error.js';

export const APPLY_USAGE = `Usage: mailplane apply -f <file|dir> [-n namespace]

Applies Tenant, SendingDomain and Template manifests to the database at DATABASE_URL, as the
operator would, and prints each new API key once.

  -f, --filename <path>    a manifest file or a directory of them
  -n, --namespace <name>   namespace for manifests that name none (default "default")
  -h, --help               this help`;

/** Runs `mailplane apply`; resolves with the exit code. */
export async function applyCommand(args: string[], env: Record<string, string | undefined>): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        filename: { type: 'string', short: 'f' },
        namespace: { type: 'string', short: 'n', default: 'default' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UserError(`${(err as Error).message}\n\n${APPLY_USAGE}`);
  }
  if (values.help) {
    process.stdout.write(`${APPLY_USAGE}\n`);
    return 0;
  }
  if (!values.filename) throw new UserError(`apply: -f <file|dir> is required\n\n${APPLY_USAGE}`);
  const resources = readManifests(values.filename, values.namespace ?? 'default');
  const { config, database } = await openRuntime('apply', env, { logLevel: 'warn' });
  const renderer = templateRenderer(config);
  try {
    const keys = printOnceKeyStore((line) => process.stdout.write(`${line}\n`));
    const lines = await applyResources(
      { db: database.db, keys, secretKey: config.secretKey, renderer },
      resources,
    );
    for (const line of lines) process.stdout.write(`${line}\n`);
  } finally {
    renderer.dispose();
    await database.close();
  }
  return 0;
}
