// A DKIM verifier independent of mailauth, which Mailplane signs with: Debian's dkimpy, run as a
// child process (dkim_verify.py next to this file). A signature that only mailauth accepts would
// pass a test that verifies with mailauth and still fail at Gmail; a second implementation
// catches that. Install it with test/setup-deps.sh.

import { spawn } from 'node:child_process';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { fileURLToPath } from 'node:url';

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
