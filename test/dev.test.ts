// `mailplane dev` as a newcomer meets it: no DATABASE_URL, so an embedded Postgres; the examples
// applied; the printed key sends an email that arrives in the printed inbox, DKIM-signed.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { verifyDkimIndependently } from './helpers/dkim.js';

let child: ChildProcess;
let dir: string;
let printed: { api: string; key: string; inbox: string };

/** Starts `mailplane dev` and resolves with the three lines it prints. */
function startDev(env: Record<string, string>): Promise<typeof printed> {
  return new Promise((resolve, reject) => {
    child = spawn(process.execPath, ['--import', 'tsx', 'cmd/mailplane.ts', 'dev'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`mailplane dev printed no URLs in time:\n${out}`)),
      60_000,
    );
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const api = /^API: (http\S+)$/m.exec(out)?.[1];
      const key = /^API key: (mp_live_\S+)$/m.exec(out)?.[1];
      const inbox = /^Inbox: (http\S+)$/m.exec(out)?.[1];
      if (api && key && inbox) {
        clearTimeout(timer);
        resolve({ api, key, inbox });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`mailplane dev exited with ${code}:\n${out}`)));
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mailplane-dev-'));
  // As root, the embedded Postgres runs as the `postgres` user, who must be able to enter it.
  chmodSync(dir, 0o755);
  const env: Record<string, string> = {
    MAILPLANE_DEV_DIR: dir,
    PORT: '0',
    MAILPLANE_INBOX_PORT: '0',
    MAILPLANE_INBOX_SMTP_PORT: '0',
  };
  delete process.env.DATABASE_URL;
  delete process.env.MAILPLANE_RELAY_URL;
  printed = await startDev(env);
});

after(async () => {
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

test('the README curl sends an email that arrives in the local inbox, DKIM-signed and verifiable', async () => {
  const auth = { authorization: `Bearer ${printed.key}` };
  const sent = await fetch(`${printed.api}/v1/emails`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({
      from: 'Acme <hello@example.com>',
      to: ['ada@example.org'],
      subject: 'Hello from Mailplane',
      html: '<p>It works.</p>',
    }),
  });
  assert.equal(sent.status, 202);
  const { id } = (await sent.json()) as { id: string };

  let status = '';
  for (let i = 0; i < 100 && status !== 'delivered'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    status = (
      (await (await fetch(`${printed.api}/v1/emails/${id}`, { headers: auth })).json()) as { status: string }
    ).status;
  }
  assert.equal(status, 'delivered');

  const list = (await (await fetch(`${printed.inbox}/messages`)).json()) as {
    id: string;
    subject?: string;
  }[];
  const caught = list.find((m) => m.subject === 'Hello from Mailplane');
  assert.ok(caught, JSON.stringify(list));
  const raw = await (await fetch(`${printed.inbox}/messages/${caught.id}/raw`)).text();
  assert.match(raw, /^DKIM-Signature: .*d=example\.com/m);

  const domains = (await (await fetch(`${printed.api}/v1/domains`, { headers: auth })).json()) as {
    data: { records: { purpose: string; name: string; value: string }[] }[];
  };
  const dkim = domains.data[0]!.records.find((r) => r.purpose === 'dkim')!;
  const verdict = await verifyDkimIndependently(raw, { [dkim.name]: dkim.value });
  assert.ok(verdict.ok, verdict.output);

  const page = await (await fetch(printed.inbox)).text();
  assert.match(page, /Hello from Mailplane/);
});
