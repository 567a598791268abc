// A real Postfix (Debian's) on loopback as the receiving MTA of end-to-end tests: what Mailplane
// sends has to get past a widely deployed MTA, not only the smtp-server sink of dev/inbox.ts,
// and the test then reads each message as that MTA stored it. It accepts any recipient at any
// domain and keeps every message in one Maildir. Each call runs a private instance (config, queue,
// data and mail in a temp directory), never the system's Postfix or /etc/postfix. Postfix runs
// only as root; install it with `bash test/setup-deps.sh`.
//
// `routes` sends mail for some domains on to other SMTP servers on loopback instead, as Postfix
// would to their MX: a server there that refuses the recipient makes Postfix send a real bounce
// (DSN) to the envelope sender, which a route can carry to Mailplane's inbound listener.
//
//   const mta = await startPostfix(); // send to mta.host:mta.port
//   const [message] = await mta.waitForMessages(1); // message.raw, message.recipient
//   await mta.stop();

import { spawn, spawnSync } from 'node:child_process';
import {
  access,
  chmod,
  chown,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { constants, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';

const POSTFIX = '/usr/sbin/postfix';

export interface ReceivedMessage {
  /**
   * The message with the trace headers Postfix prepends (Return-Path, X-Original-To, Delivered-To,
   * Received) and everything else as the client sent it, DKIM-Signature included. Line endings are
   * CRLF, as on the wire: Postfix stores LF, and the conversion back is exact.
   */
  raw: Buffer;
  /** Envelope recipient (RCPT TO) after Postfix's address rewriting, from Delivered-To. */
  recipient: string;
  /** Envelope recipient as the client sent it, from X-Original-To. */
  originalRecipient: string;
  /** Envelope sender (MAIL FROM) from Return-Path; '' for the null sender <>. */
  sender: string;
  /** The Maildir file, named in the order Postfix delivered. */
  file: string;
}

export interface PostfixInstance {
  host: string;
  port: number;
  /** Every message delivered so far, oldest first, one per recipient. */
  messages(): Promise<ReceivedMessage[]>;
  /** Resolves once `count` messages are delivered; after `timeoutMs`, fails with the mail log's tail. */
  waitForMessages(count: number, timeoutMs?: number): Promise<ReceivedMessage[]>;
  /** Stops this instance, waits for its master process to exit, and removes its directory. */
  stop(): Promise<void>;
}

/** Queue and delivery are near-instant on loopback; a loaded CI machine gets plenty of slack. */
const DEFAULT_WAIT_MS = 10_000;
const START_TIMEOUT_MS = 15_000;

export interface PostfixOptions {
  /** Domains whose mail Postfix relays to an SMTP server on loopback, e.g. `{ 'example.net': 2526 }`. */
  routes?: Record<string, number>;
  /**
   * Address and port to listen on (default 127.0.0.1 and a free port): an MX on an address of its
   * own, at the port every MX of a direct-delivery test shares.
   */
  host?: string;
  port?: number;
  /** Offer STARTTLS with this key and certificate (PEM); the Received header then says TLS was used. */
  tls?: { key: string; cert: string };
}

/** Starts a private Postfix and resolves once its SMTP server answers with a greeting. */
export async function startPostfix(options: PostfixOptions = {}): Promise<PostfixInstance> {
  try {
    await access(POSTFIX, constants.X_OK);
  } catch {
    throw new Error(`${POSTFIX} is missing: run \`bash test/setup-deps.sh\` to install Debian's postfix`);
  }
  if (process.getuid?.() !== 0) {
    throw new Error('Postfix starts only as root (its master process needs it); run the test as root');
  }
  const owner = await postfixUser();

  const dir = await mkdtemp(join(tmpdir(), 'mailplane-postfix-'));
  const host = options.host ?? '127.0.0.1';
  const mailbox = join(dir, 'mail');
  const maillog = join(dir, 'maillog');
  let started: { port: number; masterPid: number };
  try {
    started = await startIn(dir, host, owner, options);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const { port, masterPid } = started;

  // A test that throws before stop() must not leave a master running on a deleted directory.
  const onExit = () => {
    spawnSync(POSTFIX, ['-c', join(dir, 'config'), 'stop'], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  const messages = () => readMaildir(join(mailbox, 'inbox', 'new'));
  let stopped = false;
  return {
    host,
    port,
    messages,
    waitForMessages: async (count, timeoutMs = DEFAULT_WAIT_MS) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = await messages();
        if (found.length >= count) return found;
        if (Date.now() >= deadline) {
          const log = await readFile(maillog, 'utf8').catch(() => '(no mail log)');
          throw new Error(
            `Postfix delivered ${found.length} of ${count} messages in ${timeoutMs} ms; ${maillog}:\n` +
              log.split('\n').slice(-30).join('\n'),
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      process.removeListener('exit', onExit);
      try {
        await postfixCommand(dir, 'stop');
        await waitForExit(masterPid, 10_000);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Prepares `dir` and starts Postfix there, on a new port when the first one was taken meanwhile. */
async function startIn(
  dir: string,
  host: string,
  owner: { uid: number; gid: number },
  options: PostfixOptions,
): Promise<{ port: number; masterPid: number }> {
  const fixedPort = options.port;
  // Postfix's daemons run as `postfix` and must get through this directory to their queue.
  await chmod(dir, 0o755);
  // Apart from the queue: postfix's start-up check wants everything under config_directory owned
  // by root, and warns about every queue subdirectory (owned by `postfix`) otherwise.
  await mkdir(join(dir, 'config'), { mode: 0o755 });
  // postfix creates what is inside the queue directory (with its owners), not the directory.
  await mkdir(join(dir, 'queue'), { mode: 0o755 });
  await mkdir(join(dir, 'mail'), { mode: 0o700 });
  await chown(join(dir, 'mail'), owner.uid, owner.gid);

  for (let attempt = 1; ; attempt++) {
    const port = fixedPort ?? (await freePort());
    await writeConfig(dir, host, port, owner, options);
    try {
      const masterPid = await postfixCommand(dir, 'start');
      await waitForGreeting(host, port, START_TIMEOUT_MS);
      return { port, masterPid };
    } catch (err) {
      await postfixCommand(dir, 'stop').catch(() => {});
      // Another process can bind a port between freePort() and master binding it.
      const log = await readFile(join(dir, 'maillog'), 'utf8').catch(() => '');
      if (attempt === 3 || fixedPort || !log.includes(`port ${port}: Address already in use`)) throw err;
    }
  }
}

async function postfixUser(): Promise<{ uid: number; gid: number }> {
  const passwd = await readFile('/etc/passwd', 'utf8');
  const fields = passwd
    .split('\n')
    .map((line) => line.split(':'))
    .find((f) => f[0] === 'postfix');
  if (!fields) throw new Error("no `postfix` user: reinstall Debian's postfix (bash test/setup-deps.sh)");
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}

async function writeConfig(
  dir: string,
  host: string,
  port: number,
  owner: { uid: number; gid: number },
  options: PostfixOptions,
): Promise<void> {
  const routes = options.routes ?? {};
  // Read by smtpd before it drops privileges: owned by root, readable by nobody else.
  const tls = options.tls
    ? { key: join(dir, 'config', 'tls.key'), cert: join(dir, 'config', 'tls.pem') }
    : undefined;
  if (tls && options.tls) {
    await writeFile(tls.key, options.tls.key, { mode: 0o600 });
    await writeFile(tls.cert, options.tls.cert, { mode: 0o644 });
  }
  // Looked up before the address class's own transport, so a routed domain leaves by SMTP even
  // though every domain is a virtual mailbox domain here.
  const transports = Object.entries(routes).map(([domain, to]) => `${domain}=smtp:[127.0.0.1]:${to}`);
  const main = {
    compatibility_level: '3.6',
    queue_directory: join(dir, 'queue'),
    data_directory: join(dir, 'data'),
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    // No syslog in a container; postlogd (the `postlog` service below) writes this file instead,
    // and refuses a path outside maillog_file_prefixes.
    maillog_file: join(dir, 'maillog'),
    maillog_file_prefixes: dir,
    myhostname: 'mx.postfix.test',
    mydomain: 'postfix.test',
    myorigin: '$myhostname',
    // Postfix checks inet_interfaces against the interfaces' own addresses, and loopback has only
    // 127.0.0.1 of its /8: another loopback address is bound in master.cf alone.
    inet_interfaces: host === '127.0.0.1' ? host : 'all',
    inet_protocols: 'ipv4',
    mynetworks: '127.0.0.0/8',
    // Every domain is a virtual mailbox domain and every address maps to the one Maildir (the
    // trailing slash means Maildir), so nothing is local, relayed or rejected as unknown.
    mydestination: '',
    relay_domains: '',
    virtual_mailbox_domains: 'static:all',
    virtual_mailbox_base: join(dir, 'mail'),
    virtual_mailbox_maps: 'static:inbox/',
    virtual_uid_maps: `static:${owner.uid}`,
    virtual_gid_maps: `static:${owner.gid}`,
    virtual_minimum_uid: '1',
    // Nothing leaves this instance, not even a bounce for a sender at a real domain.
    default_transport: 'error:outbound mail is disabled in this test MTA',
    relay_transport: 'error:outbound mail is disabled in this test MTA',
    transport_maps: transports.length > 0 ? `inline:{ ${transports.join(', ')} }` : '',
    smtp_dns_support_level: 'disabled',
    smtp_host_lookup: 'native',
    smtpd_peername_lookup: 'no',
    // Nothing is local, and Debian's defaults name /etc/aliases.db (absent) and NIS.
    alias_maps: '',
    alias_database: '',
    smtpd_client_restrictions: '',
    smtpd_helo_restrictions: '',
    smtpd_sender_restrictions: '',
    smtpd_relay_restrictions: 'permit_mynetworks, reject',
    smtpd_recipient_restrictions: 'permit_mynetworks, reject',
    // Loopback clients count as local by default, and cleanup would then rewrite their header
    // addresses and add missing Date and Message-ID headers: a real MX does neither to our mail.
    local_header_rewrite_clients: '',
    biff: 'no',
    ...(tls
      ? {
          smtpd_tls_security_level: 'may',
          smtpd_tls_cert_file: tls.cert,
          smtpd_tls_key_file: tls.key,
          smtpd_tls_received_header: 'yes',
        }
      : {}),
  };
  // chroot off everywhere (Debian's master.cf chroots most daemons into the queue directory, which
  // would need copies of /etc files there), and only the services this instance uses.
  const master = [
    `${host}:${port} inet n - n - - smtpd`,
    'pickup unix n - n 60 1 pickup',
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'verify unix - - n - 1 verify',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
    'showq unix n - n - - showq',
    'error unix - - n - - error',
    'smtp unix - - n - - smtp',
    'retry unix - - n - - error',
    'discard unix - - n - - discard',
    'virtual unix - n n - - virtual',
    'anvil unix - - n - 1 anvil',
    'scache unix - - n - 1 scache',
    'postlog unix-dgram n - n - 1 postlogd',
    // TLS session cache and randomness for smtpd, when it offers STARTTLS.
    ...(tls ? ['tlsmgr unix - - n 1000? 1 tlsmgr'] : []),
  ];
  const mainCf = Object.entries(main).map(([name, value]) => `${name} = ${value}`);
  // Back-dated: Postfix takes a file modified within the last second or so for one still being
  // edited and rereads it every 300 ms until it is older, which made each start 1.5 s slower.
  const past = new Date(Date.now() - 60_000);
  for (const [name, lines] of [
    ['main.cf', mainCf],
    ['master.cf', master],
  ] as const) {
    await writeFile(join(dir, 'config', name), lines.join('\n') + '\n');
    await utimes(join(dir, 'config', name), past, past);
  }
}

/**
 * Runs `postfix -c dir <command>`; for `start`, answers the master's pid. Its output goes to a
 * file, not a pipe: the master daemon it starts would inherit a pipe and hold it open.
 */
async function postfixCommand(dir: string, command: 'start' | 'stop'): Promise<number> {
  const outputFile = join(dir, `postfix-${command}.out`);
  const output = await open(outputFile, 'w');
  let code: number;
  try {
    const child = spawn(POSTFIX, ['-c', join(dir, 'config'), command], {
      stdio: ['ignore', output.fd, output.fd],
    });
    code = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (status, signal) => resolve(status ?? (signal ? 128 : 1)));
    });
  } finally {
    await output.close();
  }
  if (code !== 0) {
    const text = await readFile(outputFile, 'utf8').catch(() => '');
    const log = await readFile(join(dir, 'maillog'), 'utf8').catch(() => '');
    throw new Error(
      `postfix ${command} failed (exit ${code}):\n${text}${log.split('\n').slice(-20).join('\n')}`,
    );
  }
  if (command === 'stop') return 0;
  return Number((await readFile(join(dir, 'queue', 'pid', 'master.pid'), 'utf8')).trim());
}

/**
 * A greeting, not only an accepted connection: master binds the port itself and accepts even when
 * smtpd then dies on a bad setting, which would otherwise surface only in the test.
 */
async function waitForGreeting(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    last = await new Promise<string>((resolve) => {
      const socket = connect({ host, port });
      let greeting = '';
      socket.setTimeout(2_000, () => socket.destroy());
      socket.on('data', (chunk) => {
        const complete = greeting.includes('\n');
        greeting += chunk.toString();
        if (!complete && greeting.includes('\n')) socket.end('QUIT\r\n');
      });
      socket.on('error', (err) => resolve(greeting || err.message));
      socket.on('close', () => resolve(greeting));
    });
    if (last.startsWith('220')) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(
    `Postfix on ${host}:${port} sent no SMTP greeting within ${timeoutMs} ms (last: ${last || 'nothing'})`,
  );
}

async function waitForExit(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`Postfix master (pid ${pid}) still running ${timeoutMs} ms after postfix stop`);
}

async function readMaildir(dir: string): Promise<ReceivedMessage[]> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return []; // virtual creates the Maildir with the first message
    throw err;
  });
  // Postfix names a file <seconds>.V<dev>I<inode>M<microseconds>.<host>: the time orders them.
  const order = (name: string) => {
    const match = /^(\d+)\.V[0-9a-f]+I[0-9a-f]+M(\d+)\./.exec(name);
    return match ? Number(match[1]) * 1e6 + Number(match[2]) : 0;
  };
  names.sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  return Promise.all(
    names.map(async (name) => {
      const file = join(dir, name);
      const stored = await readFile(file);
      const end = stored.indexOf('\n\n');
      // UTF-8, as the addresses of an SMTPUTF8 message (RFC 6532) are; ASCII reads the same.
      const head = stored.subarray(0, end < 0 ? stored.length : end).toString('utf8');
      // Postfix prepends these, so the first occurrence is its own and not one the client sent.
      const header = (field: string) =>
        new RegExp(`^${field}:[ \\t]*(.*)$`, 'mi').exec(head)?.[1]?.trim() ?? '';
      return {
        raw: toCrlf(stored),
        recipient: header('Delivered-To'),
        originalRecipient: header('X-Original-To'),
        sender: header('Return-Path').replace(/^<(.*)>$/, '$1'),
        file,
      };
    }),
  );
}

/** Postfix turns each CRLF it receives into LF, so the reverse is every LF back into CRLF. */
function toCrlf(stored: Buffer): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  for (let lf = stored.indexOf(10); lf >= 0; lf = stored.indexOf(10, start)) {
    parts.push(stored.subarray(start, lf), CRLF);
    start = lf + 1;
  }
  parts.push(stored.subarray(start));
  return Buffer.concat(parts);
}

const CRLF = Buffer.from('\r\n');
