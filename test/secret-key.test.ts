// A wrong MAILPLANE_SECRET_KEY is caught when a process or `apply` starts, with a message that
// says so, instead of every message deferring later with "cannot sign".

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const run = promisify(execFile);
const RIGHT = 'the-installation-secret-key-of-32-characters';
const WRONG = 'another-secret-key-of-at-least-32-characters';
let testDb: TestDatabase;
let database: DatabaseHandle;

async function mailplane(args: string[], secret: string) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'cmd/mailplane.ts', ...args], {
      env: { ...process.env, DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: secret, LOG_LEVEL: 'warn' },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

before(async () => {
  testDb = await createTestDatabase();
  database = openDatabase(testDb.url);
});
after(async () => {
  await database.close();
  await testDb.drop();
});

test('apply and migrate with another key than the installation’s stop at once and say why; the right key works again', async () => {
  assert.equal((await mailplane(['apply', '-f', 'examples'], RIGHT)).code, 0);

  for (const args of [['apply', '-f', 'examples'], ['migrate']]) {
    const wrong = await mailplane(args, WRONG);
    assert.equal(wrong.code, 1, args.join(' '));
    assert.match(wrong.stderr, /MAILPLANE_SECRET_KEY is not the key this database was set up with/);
    assert.doesNotMatch(wrong.stderr, /\n\s+at /, 'no stack trace');
  }
  const again = await mailplane(['apply', '-f', 'examples'], RIGHT);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /unchanged/);
});

test('an installation from before the check proves its key by decrypting a stored DKIM key', async () => {
  await sql`delete from installation`.execute(database.db);
  const wrong = await mailplane(['migrate'], WRONG);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /the key of example\.com does not decrypt/);
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from installation`.execute(database.db);
  assert.equal(rows[0]!.n, 0, 'a wrong key is not recorded as the installation’s');
  assert.equal((await mailplane(['migrate'], RIGHT)).code, 0);
  assert.equal((await mailplane(['migrate'], WRONG)).code, 1);
});
