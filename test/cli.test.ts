// `mailplane <command>` as a person meets it on a wrong step: `apply` reads stdin and several -f,
// says what a dry run would change and writes nothing, prints JSON for scripts, validates against
// the CRD schemas, refuses a kind or version it does not serve by file and document, and every
// mistake of the user's is one line, never a stack trace. `--help` works on every command.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { unevaluatedRules } from '../lib/crd-schema.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const SECRET = 'cli-test-secret-key-of-at-least-32-characters';
let testDb: TestDatabase;
let database: DatabaseHandle;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `mailplane …args` from the source tree, with `input` on its standard input. */
function mailplane(
  args: string[],
  options: { input?: string; env?: Record<string, string> } = {},
): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ['--import', 'tsx', 'cmd/mailplane.ts', ...args],
      {
        env: {
          ...process.env,
          DATABASE_URL: testDb.url,
          MAILPLANE_SECRET_KEY: SECRET,
          LOG_LEVEL: 'warn',
          ...options.env,
        },
      },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin!.end(options.input ?? '');
  });
}

function file(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'mailplane-cli-')), name);
  writeFileSync(path, text);
  return path;
}

/** Every row of every table of ours, as one digest: equal digests, nothing written. */
async function fingerprint(): Promise<string> {
  const tables = await sql<{ name: string }>`
    select table_name as name from information_schema.tables
    where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`.execute(database.db);
  const parts: string[] = [];
  for (const { name } of tables.rows) {
    const { rows } = await sql<{ digest: string | null; n: number }>`
      select md5(string_agg(t::text, ',' order by t::text)) as digest, count(*)::int as n
      from ${sql.table(name)} t`.execute(database.db);
    parts.push(`${name}:${rows[0]!.n}:${rows[0]!.digest}`);
  }
  const jobs = await sql<{ n: number }>`select count(*)::int as n from graphile_worker._private_jobs`.execute(
    database.db,
  );
  return `${parts.join(' ')} jobs:${jobs.rows[0]!.n}`;
}

const TENANT = `apiVersion: mailplane.io/v1alpha1
kind: Tenant
metadata: {name: stdin-co}
spec:
  apiKeys: [{name: app, scopes: [send]}]
`;

before(async () => {
  testDb = await createTestDatabase();
  database = openDatabase(testDb.url);
});
after(async () => {
  await database.close();
  await testDb.drop();
});

test('a dry run on a new database says what would be created, prints no key, and writes no row', async () => {
  const before = await fingerprint();
  const out = await mailplane(['apply', '--dry-run', '-f', 'examples']);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^tenant\/acme configured \(key backend issued\) \(dry run\)$/m);
  assert.match(out.stdout, /^sendingdomain\/example-com configured \(DKIM key generated\) \(dry run\)$/m);
  assert.match(out.stdout, /^template\/welcome configured \(version 1\) \(dry run\)$/m);
  assert.doesNotMatch(out.stdout + out.stderr, /mp_live_/, 'no API key is printed');
  assert.equal(await fingerprint(), before, 'no row was written, the installation’s key check included');

  const json = await mailplane(['apply', '--dry-run', '-o', 'json', '-f', 'examples']);
  assert.equal(json.code, 0, json.stderr);
  const results = JSON.parse(json.stdout) as { apiKeys?: unknown; dryRun?: boolean }[];
  assert.equal(results.length, 3);
  assert.ok(
    results.every((r) => r.dryRun === true && r.apiKeys === undefined),
    json.stdout,
  );
  assert.equal(await fingerprint(), before);
});

test('-o json prints one object per resource, with the new API key in its apiKeys', async () => {
  const out = await mailplane(['apply', '-o', 'json', '-f', 'examples']);
  assert.equal(out.code, 0, out.stderr);
  const results = JSON.parse(out.stdout) as {
    kind: string;
    namespace: string;
    name: string;
    outcome: string;
    details: string[];
    apiKeys?: { name: string; scopes: string[]; key: string }[];
  }[];
  assert.deepEqual(
    results.map(({ kind, namespace, name, outcome }) => ({ kind, namespace, name, outcome })),
    [
      { kind: 'Tenant', namespace: 'default', name: 'acme', outcome: 'configured' },
      { kind: 'SendingDomain', namespace: 'default', name: 'example-com', outcome: 'configured' },
      { kind: 'Template', namespace: 'default', name: 'welcome', outcome: 'configured' },
    ],
  );
  assert.deepEqual(results[0]!.details, ['key backend issued']);
  const [key] = results[0]!.apiKeys!;
  assert.equal(key!.name, 'backend');
  assert.deepEqual(key!.scopes, ['send', 'read']);
  assert.match(key!.key, /^mp_live_/);
  assert.deepEqual(results[1]!.details, ['DKIM key generated']);
  assert.deepEqual(results[2]!.details, ['version 1']);
});

test('a dry run against applied resources says what an edit would change, and changes nothing', async () => {
  const before = await fingerprint();
  const edited = readFileSync('examples/tenant.yaml', 'utf8').replace(
    /maxRecipients: \d+/,
    'maxRecipients: 7',
  );
  assert.match(edited, /maxRecipients: 7/);
  const out = await mailplane(['apply', '--dry-run', '-f', '-', '-f', 'examples/domain.yaml'], {
    input: edited,
  });
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^tenant\/acme configured \(dry run\)$/m);
  assert.match(out.stdout, /^sendingdomain\/example-com unchanged \(dry run\)$/m);
  assert.equal(await fingerprint(), before);
});

test('-f - reads stdin, and several -f apply all of them', async () => {
  const out = await mailplane(
    ['apply', '-f', '-', '-f', 'examples/domain.yaml', '-f', 'examples/template.yaml'],
    { input: TENANT },
  );
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^API key default\/stdin-co\/app \(send\): mp_live_\S+$/m);
  assert.match(out.stdout, /^tenant\/stdin-co configured \(key app issued\)$/m);
  assert.match(out.stdout, /^sendingdomain\/example-com unchanged$/m);
  assert.match(out.stdout, /^template\/welcome unchanged$/m);
  const tenant = await database.db
    .selectFrom('tenants')
    .select('name')
    .where('name', '=', 'stdin-co')
    .executeTakeFirst();
  assert.ok(tenant, 'the tenant from stdin is written');
});

test('an unknown kind or a wrong apiVersion is an error naming the file and the document, and nothing is applied', async () => {
  const before = await fingerprint();
  const configMap = file(
    'mixed.yaml',
    `${TENANT.replace('stdin-co', 'never-applied')}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n`,
  );
  const kind = await mailplane(['apply', '-f', configMap]);
  assert.equal(kind.code, 1);
  assert.match(kind.stderr, new RegExp(`${configMap.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} document 2`));
  assert.match(kind.stderr, /kind: "ConfigMap" is not a kind mailplane apply takes: .*Tenant/);

  const version = await mailplane(['apply', '-f', '-'], {
    input: TENANT.replace('mailplane.io/v1alpha1', 'mailplane.io/v1'),
  });
  assert.equal(version.code, 1);
  assert.match(version.stderr, /stdin document 1/);
  assert.match(
    version.stderr,
    /apiVersion: "mailplane\.io\/v1" does not serve Tenant: use mailplane\.io\/v1alpha1/,
  );
  assert.equal(await fingerprint(), before);
});

test('a manifest is validated against the CRD schema (ajv): a limit only the CRD states, and an unknown field, are named', async () => {
  // maxItems: 32 for spec.apiKeys is written in crds/tenants.yaml and nowhere else.
  const keys = Array.from({ length: 33 }, (_, i) => `{name: k${i}, scopes: [send]}`).join(', ');
  const out = await mailplane(['apply', '-f', '-'], {
    input: `apiVersion: mailplane.io/v1alpha1
kind: Tenant
metadata: {name: too-many}
spec:
  limits: {maxRecipients: 5000}
  apikeys: []
  apiKeys: [${keys}]
`,
  });
  assert.equal(out.code, 1);
  assert.match(out.stderr, /stdin document 1 \(Tenant default\/too-many\)/);
  assert.match(out.stderr, /- spec\.apiKeys: must list at most 32/);
  assert.match(out.stderr, /- spec\.limits\.maxRecipients: must be at most 1000/);
  assert.match(out.stderr, /- spec\.apikeys: is not a field of this kind/);
  // A CEL rule of the CRD, with the CRD's own message.
  const cel = await mailplane(['apply', '-f', '-'], {
    input: `apiVersion: mailplane.io/v1alpha1
kind: Template
metadata: {name: no-body}
spec: {tenantRef: {name: acme}, subject: Hi}
`,
  });
  assert.equal(cel.code, 1);
  assert.match(cel.stderr, /- spec: needs html, text or both/);
});

test('every CEL rule of the CRDs is one apply evaluates, or a transition rule (nothing to compare on a create)', () => {
  assert.deepEqual(unevaluatedRules(), []);
});

test('no user mistake ends in a stack trace: each is one line saying what to fix', async () => {
  const badYaml = file('bad.yaml', 'apiVersion: [\n');
  const invalid = file('invalid.yaml', TENANT.replace('[send]', '[shout]'));
  const mistakes: [string, string[], RegExp, { input?: string; env?: Record<string, string> }?][] = [
    [
      'a missing file',
      ['apply', '-f', 'no/such/file.yaml'],
      /no\/such\/file\.yaml: no such file or directory/,
    ],
    ['bad YAML', ['apply', '-f', badYaml], /bad\.yaml document 1:\n {2}- \(yaml\): /],
    ['a bad flag', ['apply', '--frobnicate'], /Unknown option '--frobnicate'/],
    ['no -f', ['apply'], /-f <file\|dir\|-> is required/],
    ['an unknown output', ['apply', '-f', 'examples', '-o', 'yaml'], /-o yaml is not an output format/],
    [
      'a manifest that fails validation',
      ['apply', '-f', invalid],
      /spec\.apiKeys\[0\]\.scopes\[0\]: must be one of send, read/,
    ],
    [
      'an unknown kind',
      ['apply', '-f', '-'],
      /is not a kind mailplane apply takes/,
      { input: 'kind: Secret\n' },
    ],
    [
      'an unreachable database',
      ['apply', '-f', 'examples'],
      /cannot reach Postgres at DATABASE_URL \(postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/x\)/,
      { env: { DATABASE_URL: 'postgres://u:secret@127.0.0.1:1/x' } },
    ],
    [
      'an unreachable database, dry run',
      ['apply', '--dry-run', '-f', 'examples'],
      /cannot reach Postgres at DATABASE_URL/,
      { env: { DATABASE_URL: 'postgres://u:secret@127.0.0.1:1/x' } },
    ],
    [
      'a missing setting',
      ['apply', '-f', 'examples'],
      /MAILPLANE_SECRET_KEY must be at least 32 characters/,
      { env: { MAILPLANE_SECRET_KEY: '' } },
    ],
    ['an argument to a process', ['api', '--port', '9000'], /takes no arguments .* see mailplane api --help/],
    [
      'SMTP submission without a certificate',
      ['submission'],
      /mailplane submission needs a certificate: set MAILPLANE_TLS_CERT_FILE and MAILPLANE_TLS_KEY_FILE/,
      { env: { MAILPLANE_TLS_CERT_FILE: '', MAILPLANE_TLS_KEY_FILE: '' } },
    ],
    ['an unknown command', ['sendr'], /unknown command "sendr"/],
    ['an unknown dev argument', ['dev', 'aply'], /unknown argument "aply"/],
  ];
  await Promise.all(
    mistakes.map(async ([what, args, message, options]) => {
      const out = await mailplane(args, options);
      assert.notEqual(out.code, 0, `${what}: exit code`);
      assert.match(out.stderr, message, `${what}:\n${out.stderr}`);
      assert.match(out.stderr, /^mailplane/, `${what}: says who speaks`);
      assert.doesNotMatch(out.stderr, /\n\s+at /, `${what}: no stack trace:\n${out.stderr}`);
      assert.doesNotMatch(out.stderr, /secret@/, `${what}: no password`);
    }),
  );
});

test('--help works on every command and lists its settings; every setting is listed somewhere', async () => {
  const commands = ['api', 'sender', 'smtp', 'submission', 'operator', 'migrate', 'apply', 'dev'];
  const helps = await Promise.all(
    commands.map(async (command) => {
      const [long, short] = await Promise.all([
        mailplane([command, '--help']),
        mailplane([command, '-h'], { env: { DATABASE_URL: '' } }),
      ]);
      assert.equal(long.code, 0, `${command} --help: ${long.stderr}`);
      assert.equal(short.stdout, long.stdout, `${command} -h`);
      assert.match(long.stdout, new RegExp(`^Usage: mailplane ${command}`), command);
      assert.match(long.stdout, /Settings \(environment\):\n {2}\S/, `${command} lists its settings`);
      assert.match(long.stdout, /DATABASE_URL/, command);
      return long.stdout;
    }),
  );
  const top = await mailplane(['--help']);
  assert.equal(top.code, 0);
  for (const command of commands) assert.match(top.stdout, new RegExp(`^ {2}${command} `, 'm'));

  // The settings the configuration reads, each in some command's help.
  const all = helps.join('\n');
  for (const source of ['lib/config.ts', 'operator/config.ts']) {
    const keys = [...readFileSync(source, 'utf8').matchAll(/(?:env\.|\(')([A-Z][A-Z0-9_]{2,})/g)].map(
      (m) => m[1]!,
    );
    assert.ok(keys.length > 5, source);
    for (const key of keys)
      assert.match(all, new RegExp(`\\b${key}\\b`), `${key} (${source}) is in no --help`);
  }
});

test('the image carries the CRDs where apply looks for them: /app/crds, beside /app/dist', () => {
  const dockerfile = readFileSync('Dockerfile', 'utf8');
  assert.match(dockerfile, /^COPY charts\/mailplane\/files\/crds crds$/m, 'into the build stage');
  assert.match(dockerfile, /^COPY --from=build \/src\/crds crds$/m, 'into the image');
  assert.match(dockerfile, /^COPY --from=build \/src\/dist dist$/m);
  assert.match(
    readFileSync('.dockerignore', 'utf8'),
    /^!charts\/mailplane\/files\/crds$/m,
    'in the build context',
  );
  // lib/crd-schema.ts looks in ../crds/ (source) and ../../crds/ (dist/lib/crd-schema.js).
  assert.equal(new URL('../../crds/', 'file:///app/dist/lib/crd-schema.js').pathname, '/app/crds/');
});
