// `mailplane dev` as a newcomer meets it: no DATABASE_URL, so an embedded Postgres; the examples
// applied; the printed key sends an email that arrives in the printed inbox, DKIM-signed, through
// the API and through the printed SMTP submission port (nodemailer, STARTTLS with the printed
// self-signed certificate); unsubscribe and tracked links point at the printed API and work there;
// and the README's Resend SDK script runs as printed. test/first-run.test.ts covers root, ports
// and Ctrl-C.

import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { verifyDkimIndependently } from './helpers/dkim.js';

let child: ChildProcess;
let dir: string;
let printed: { api: string; key: string; inbox: string; smtpPort: number; smtpCert: string };

/** The message of `subject` in the printed inbox, as it arrived, once it has. */
async function caughtRaw(subject: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const list = (await (await fetch(`${printed.inbox}/messages`)).json()) as {
      id: string;
      subject?: string;
    }[];
    const caught = list.find((m) => m.subject === subject);
    if (caught) return (await fetch(`${printed.inbox}/messages/${caught.id}/raw`)).text();
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`"${subject}" did not arrive in the inbox`);
}

/** Starts `mailplane dev` and resolves with the lines it prints. */
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
      const smtpPort = /^SMTP submission: localhost:(\d+) \(STARTTLS\)/m.exec(out)?.[1];
      const smtpCert = /^SMTP login: .*self-signed certificate (\S+)$/m.exec(out)?.[1];
      if (api && key && inbox && smtpPort && smtpCert) {
        clearTimeout(timer);
        resolve({ api, key, inbox, smtpPort: Number(smtpPort), smtpCert });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`mailplane dev exited with ${code}:\n${out}`)));
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mailplane-dev-'));
  // Enterable by the `postgres` user (who runs the embedded Postgres when we are root), so the data
  // stays in the state directory and goes with it; first-run.test.ts takes the other case.
  chmodSync(dir, 0o755);
  const env: Record<string, string> = {
    MAILPLANE_DEV_DIR: dir,
    PORT: '0',
    MAILPLANE_INBOX_PORT: '0',
    MAILPLANE_INBOX_SMTP_PORT: '0',
    MAILPLANE_SUBMISSION_PORT: '0',
    MAILPLANE_SUBMISSIONS_PORT: '0',
  };
  delete process.env.DATABASE_URL;
  delete process.env.MAILPLANE_RELAY_URL;
  delete process.env.MAILPLANE_PUBLIC_URL;
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

test('the printed SMTP submission port takes a message with the printed key, over STARTTLS with the printed certificate, into the inbox', async () => {
  const transport = nodemailer.createTransport({
    host: 'localhost',
    port: printed.smtpPort,
    secure: false,
    requireTLS: true,
    auth: { user: 'dev', pass: printed.key },
    // Trusted as the banner says: by its file, not by skipping verification.
    tls: { ca: readFileSync(printed.smtpCert) },
  });
  try {
    const info = await transport.sendMail({
      from: 'Acme <hello@example.com>',
      to: 'grace@example.org',
      subject: 'Hello over SMTP submission',
      text: 'It works over SMTP too.',
    });
    assert.deepEqual(info.accepted, ['grace@example.org']);
  } finally {
    transport.close();
  }
  const raw = await caughtRaw('Hello over SMTP submission');
  assert.match(raw, /^DKIM-Signature: .*d=example\.com/m);
  assert.match(raw, /It works over SMTP too\./);
});

test('unsubscribe and tracked links point at the printed API, and work there', async () => {
  const auth = { authorization: `Bearer ${printed.key}` };
  const sent = await fetch(`${printed.api}/v1/emails`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({
      from: 'Acme <hello@example.com>',
      to: ['linus@example.org'],
      subject: 'Links to the local api',
      html: '<p>Read <a href="https://example.org/docs">the docs</a>.</p>',
      unsubscribe: true,
      tracking: { clicks: true },
    }),
  });
  assert.equal(sent.status, 202, await sent.clone().text());
  const raw = await caughtRaw('Links to the local api');
  const mail = await simpleParser(raw);

  const click = /href="([^"]+)"/.exec(String(mail.html))?.[1] ?? '';
  assert.ok(click.startsWith(`${printed.api}/t/c/`), click);
  const redirect = await fetch(click, { redirect: 'manual' });
  assert.ok(redirect.status >= 300 && redirect.status < 400, String(redirect.status));
  assert.equal(redirect.headers.get('location'), 'https://example.org/docs');

  // http, so no List-Unsubscribe-Post: RFC 8058 one-click needs https. The link still unsubscribes.
  const header = /^List-Unsubscribe: (.*(?:\r\n[ \t].*)*)/m.exec(raw)?.[1] ?? '';
  assert.doesNotMatch(raw, /^List-Unsubscribe-Post:/m);
  const link = /<(http[^>]+)>/.exec(header.replace(/\r\n[ \t]+/g, ''))?.[1] ?? '';
  assert.ok(link.startsWith(`${printed.api}/u/`), header);
  const pressed = await fetch(link, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'List-Unsubscribe=One-Click',
  });
  assert.equal(pressed.status, 200);
  const suppressed = await fetch(`${printed.api}/v1/suppressions/linus@example.org`, { headers: auth });
  assert.equal(suppressed.status, 200, await suppressed.clone().text());
});

test("the README's Resend SDK script runs as printed: an email with an attachment read from a file, a read, a batch", async () => {
  const readme = readFileSync('README.md', 'utf8');
  const section = readme.slice(readme.indexOf('## Use the Resend SDK'));
  const script = /```js\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  assert.ok(script.includes("from 'resend'"), 'the README has the script');
  // As the README says: saved in the checkout (here a directory that shares its node_modules and
  // README.md), run with node; only the port differs, make dev's being 8080.
  const work = mkdtempSync(join(tmpdir(), 'mailplane-sdk-'));
  try {
    symlinkSync(resolve('node_modules'), join(work, 'node_modules'));
    copyFileSync('README.md', join(work, 'README.md'));
    writeFileSync(join(work, 'send.mjs'), script.replaceAll('http://localhost:8080', printed.api));
    const { stdout } = await promisify(execFile)(process.execPath, ['send.mjs'], {
      cwd: work,
      env: { ...process.env, MAILPLANE_API_KEY: printed.key },
    });
    const id = /^sent (\S+)$/m.exec(stdout)?.[1];
    assert.ok(id, stdout);
    assert.match(stdout, /^status (queued|sending|delivered)$/m);
    assert.match(stdout, /^batch 2 emails$/m);

    let caught: { id: string; subject?: string } | undefined;
    for (let i = 0; i < 100 && !caught; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const list = (await (await fetch(`${printed.inbox}/messages`)).json()) as {
        id: string;
        subject?: string;
      }[];
      caught = list.find((m) => m.subject === 'The README you asked for');
    }
    assert.ok(caught, 'the email arrived');
    const raw = await (await fetch(`${printed.inbox}/messages/${caught.id}/raw`)).text();
    assert.match(raw, /filename="?README\.md"?/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
