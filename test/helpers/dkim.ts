// A DKIM verifier independent of mailauth, which Mailplane signs with: Debian's dkimpy, run as a
// child process (dkim_verify.py next to this file). A signature that only mailauth accepts would
// pass a test that verifies with mailauth and still fail at Gmail; a second implementation
// catches that; OpenDKIM (`opendkim -t`, Debian's opendkim, in C with its own canonicalization)
// is a third. Install both with test/setup-deps.sh.

import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { fileURLToPath } from 'node:url';
import { dkimTxtValue, type DkimAlgorithm } from '../../lib/crypto.js';
import type { Db } from '../../lib/db/index.js';

const SCRIPT = fileURLToPath(new URL('./dkim_verify.py', import.meta.url));

/**
 * Debian's interpreter, not the first python3 on PATH: a pyenv or venv python3 does not see
 * Debian's dist-packages, where python3-dkim installs.
 */
const PYTHON = process.env.MAILPLANE_TEST_PYTHON ?? '/usr/bin/python3';

/**
 * Verifies every DKIM-Signature of `raw` with dkimpy, answering DNS from `records` (name → TXT
 * value; no network). `ok` is true only when there is at least one signature and all pass;
 * `output` says, per signature, what passed or why it failed. Throws, rather than answering
 * `ok: false`, when the verifier cannot run, so that a test expecting a failure cannot pass
 * because python3-dkim is missing.
 *
 *   const { ok, output } = await verifyDkimIndependently(signed, {
 *     'mp1._domainkey.example.com': 'v=DKIM1; k=rsa; p=MIIBIjANBg...',
 *   });
 *   assert.ok(ok, output);
 */
export async function verifyDkimIndependently(
  raw: Buffer | string,
  records: Record<string, string>,
): Promise<{ ok: boolean; output: string }> {
  const child = spawn(PYTHON, [SCRIPT, JSON.stringify(records)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
  // The script may exit before reading all of stdin (bad usage); that EPIPE is not the failure to report.
  child.stdin.on('error', () => {});
  child.stdin.end(raw);

  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', (err) =>
      reject(
        new Error(`cannot run ${PYTHON} for the DKIM verifier (run test/setup-deps.sh): ${err.message}`),
      ),
    );
    child.on('close', resolve);
  });
  const output = Buffer.concat(chunks).toString('utf8');
  if (code !== 0 && code !== 1) {
    throw new Error(`the DKIM verifier did not run (exit code ${code}):\n${output}`);
  }
  return { ok: code === 0, output };
}

/**
 * The result of each DKIM-Signature of `raw` as mailauth (the signing library) verifies it,
 * answering DNS from `records`.
 *
 *   assert.deepEqual(await verifyDkimWithMailauth(raw, records), ['pass']);
 */
export async function verifyDkimWithMailauth(
  raw: Buffer | string,
  records: Record<string, string>,
): Promise<string[]> {
  const result = await dkimVerify(raw, {
    resolver: async (name) => {
      const record = records[name.replace(/\.$/, '')];
      if (!record) throw Object.assign(new Error(`no TXT at ${name}`), { code: 'ENOTFOUND' });
      return [[record]];
    },
  });
  return result.results.map((r) => r.status.result);
}

const OPENDKIM = process.env.MAILPLANE_TEST_OPENDKIM ?? '/usr/sbin/opendkim';

/**
 * Verifies every DKIM-Signature of `raw` with OpenDKIM in test mode (`opendkim -t`), its keys
 * read from a TestPublicKeys file made of `records` (no DNS). `ok` is true only when there is a
 * signature and every one succeeded. opendkim exits 0 whatever the verdict, so the verdict is read
 * from its one line per signature; like verifyDkimIndependently, it throws when it cannot run.
 *
 *   const { ok, output } = await verifyDkimWithOpenDkim(signed, records);
 *   assert.ok(ok, output);
 */
export async function verifyDkimWithOpenDkim(
  raw: Buffer | string,
  records: Record<string, string>,
): Promise<{ ok: boolean; output: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'mailplane-opendkim-'));
  try {
    const keys = Object.entries(records)
      .map(([name, value]) => `${name.replace(/\.$/, '')} ${value}`)
      .join('\n');
    await writeFile(join(dir, 'keys'), keys + '\n');
    await writeFile(join(dir, 'message.eml'), raw);
    await writeFile(
      join(dir, 'opendkim.conf'),
      ['Mode v', `TestPublicKeys ${join(dir, 'keys')}`, 'Syslog no', 'MinimumKeyBits 1024', ''].join('\n'),
    );
    const child = spawn(OPENDKIM, ['-x', join(dir, 'opendkim.conf'), '-t', join(dir, 'message.eml')]);
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', (err) =>
        reject(new Error(`cannot run ${OPENDKIM} (run test/setup-deps.sh): ${err.message}`)),
      );
      child.on('close', resolve);
    });
    const output = Buffer.concat(chunks).toString('utf8');
    const verdicts = output.split('\n').filter((line) => /verification \(/.test(line));
    if (code !== 0 || (verdicts.length === 0 && !/no signature/i.test(output))) {
      throw new Error(`opendkim did not run (exit code ${code}):\n${output}`);
    }
    const ok = verdicts.length > 0 && verdicts.every((line) => /\) succeeded$/.test(line.trim()));
    return { ok, output };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The DKIM record of a domain as its row holds it, keyed by the name a receiver looks up: what
 * the verifiers above take as `records`.
 *
 *   await verifyDkimIndependently(raw, await dkimRecordsOf(platform.database.db));
 */
export async function dkimRecordsOf(db: Db, name = 'example.com'): Promise<Record<string, string>> {
  const domain = await db
    .selectFrom('domains')
    .select(['name', 'selector', 'dkim_algorithm', 'dkim_public_key'])
    .where('name', '=', name)
    .executeTakeFirstOrThrow();
  return {
    [`${domain.selector}._domainkey.${domain.name}`]: dkimTxtValue(
      domain.dkim_algorithm as DkimAlgorithm,
      domain.dkim_public_key,
    ),
  };
}
