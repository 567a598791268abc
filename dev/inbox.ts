// A local SMTP sink with a web view: where `mailplane dev` delivers, and what the tests deliver to.
// It accepts any sender and recipient without authentication or TLS, keeps the last messages in
// memory, and can answer chosen recipients with a 4xx or 5xx to exercise deferrals and bounces.
//
// Recipients whose local part starts with `bounce` are refused with `550 5.1.1`, those starting
// with `defer` with `451 4.3.0`, so that a `mailplane dev` user can try both from the API
// (bounce@example.com, defer-1@example.com). A `reply` hook decides first; the convention applies
// to the recipients it returns nothing for.

import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import express, { type Router } from 'express';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { listen } from '../lib/listen.js';

export interface CapturedMessage {
  id: string;
  receivedAt: string;
  envelope: { from: string; to: string[] };
  /** The message as received (CRLF line endings, dot-stuffing removed). */
  raw: string;
  /** Decoded Subject header, if any. */
  subject?: string;
}

export interface InboxReply {
  code: number;
  message: string;
}

export interface InboxOptions {
  /** Interface to listen on. Default 127.0.0.1: what it keeps is readable by anyone who reaches it. */
  host?: string;
  /** SMTP port; 0 (the default) picks a free one. */
  smtpPort?: number;
  /** The setting a taken smtpPort is moved with, for the message. Default MAILPLANE_INBOX_SMTP_PORT. */
  smtpPortSetting?: string;
  /** Messages kept; the oldest go first. Default 1000. */
  limit?: number;
  /** Answer for a recipient at RCPT TO; undefined accepts it (or applies the convention above). */
  reply?: (rcpt: string) => InboxReply | undefined;
  /** Milliseconds to wait before answering DATA, to stand for a slow server. */
  delayMs?: number;
}

export interface Inbox {
  smtpPort: number;
  /** Messages kept, oldest first. */
  messages(): CapturedMessage[];
  /** Resolves with the messages once at least `count` are kept; rejects after `timeoutMs` (5 s). */
  waitFor(count: number, timeoutMs?: number): Promise<CapturedMessage[]>;
  clear(): void;
  /** GET / (HTML list), GET /messages (JSON), GET /messages/:id/raw (the .eml as text). */
  handler: Router;
  close(): Promise<void>;
}

const DEFAULT_LIMIT = 1000;
const DEFAULT_WAIT_MS = 5000;
/** A sink has nothing to wait for when closing: clients with idle pooled connections are cut off. */
const CLOSE_TIMEOUT_MS = 500;

/** The `mailplane dev` convention for recipients no `reply` hook answered. */
function conventionalReply(rcpt: string): InboxReply | undefined {
  const local = rcpt.slice(0, rcpt.lastIndexOf('@')).toLowerCase();
  if (local.startsWith('bounce')) return { code: 550, message: '5.1.1 mailbox unavailable' };
  if (local.startsWith('defer')) return { code: 451, message: '4.3.0 try again later' };
  return undefined;
}

/**
 * Starts the inbox.
 *
 *   const inbox = await startInbox({ reply: (rcpt) => (rcpt === 'x@example.org' ? { code: 452, message: '4.2.2 full' } : undefined) });
 *   // deliver to smtp://127.0.0.1:${inbox.smtpPort}
 *   const [message] = await inbox.waitFor(1);
 */
export async function startInbox(options: InboxOptions = {}): Promise<Inbox> {
  const limit = options.limit ?? DEFAULT_LIMIT;
  let kept: CapturedMessage[] = [];
  let waiters: { count: number; resolve: (messages: CapturedMessage[]) => void }[] = [];

  const capture = (message: CapturedMessage) => {
    kept.push(message);
    if (kept.length > limit) kept = kept.slice(kept.length - limit);
    const ready = waiters.filter((w) => kept.length >= w.count);
    waiters = waiters.filter((w) => kept.length < w.count);
    for (const w of ready) w.resolve([...kept]);
  };

  const server = new SMTPServer({
    // Plain text, no TLS; AUTH is optional and any credentials pass, so that a relay URL with a
    // user and password works against the sink too.
    disabledCommands: ['STARTTLS'],
    authOptional: true,
    allowInsecureAuth: true,
    onAuth: (auth, _session, callback) => callback(null, { user: auth.username ?? 'anyone' }),
    logger: false,
    closeTimeout: CLOSE_TIMEOUT_MS,
    onRcptTo(address, _session, callback) {
      const answer = options.reply?.(address.address) ?? conventionalReply(address.address);
      if (!answer || answer.code < 400) return callback();
      callback(Object.assign(new Error(answer.message), { responseCode: answer.code }));
    },
    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const accept = () => {
          capture({
            id: randomUUID(),
            receivedAt: new Date().toISOString(),
            envelope: {
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              to: session.envelope.rcptTo.map((r) => r.address),
            },
            raw,
            subject: headerValue(raw, 'subject'),
          });
          callback();
        };
        if (options.delayMs) setTimeout(accept, options.delayMs);
        else accept();
      });
    },
  });
  // Without a listener, a client that goes away mid-session would crash the process.
  server.on('error', () => {});

  await listen(server.server, {
    port: options.smtpPort ?? 0,
    host: options.host ?? '127.0.0.1',
    setting: options.smtpPortSetting ?? 'MAILPLANE_INBOX_SMTP_PORT',
  });
  const smtpPort = (server.server.address() as AddressInfo).port;

  return {
    smtpPort,
    messages: () => [...kept],
    waitFor(count, timeoutMs = DEFAULT_WAIT_MS) {
      if (kept.length >= count) return Promise.resolve([...kept]);
      return new Promise((resolve, reject) => {
        const waiter = {
          count,
          resolve: (messages: CapturedMessage[]) => {
            clearTimeout(timer);
            resolve(messages);
          },
        };
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w !== waiter);
          reject(new Error(`inbox: ${kept.length} of ${count} messages after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    clear: () => {
      kept = [];
    },
    handler: inboxRouter(() => kept),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function inboxRouter(messages: () => CapturedMessage[]): Router {
  const router = express.Router();
  router.get('/', (req, res) => {
    const base = req.baseUrl;
    const rows = [...messages()]
      .reverse()
      .map(
        (m) => `<tr><td>${escapeHtml(new Date(m.receivedAt).toLocaleString())}</td>
<td>${escapeHtml(m.envelope.from)}</td><td>${escapeHtml(m.envelope.to.join(', '))}</td>
<td><a href="${escapeHtml(`${base}/messages/${encodeURIComponent(m.id)}/raw`)}">${escapeHtml(m.subject ?? '(no subject)')}</a></td></tr>`,
      )
      .join('\n');
    // The page shows what senders wrote: everything is escaped, and no script may run anyway.
    res.set('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'");
    res.type('html').send(`<!doctype html>
<html><head><meta charset="utf-8"><title>Mailplane inbox</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.4em;text-align:left}</style></head>
<body><h1>Mailplane inbox</h1><p>${messages().length} message(s), newest first.</p>
<table><thead><tr><th>Received</th><th>From</th><th>To</th><th>Subject</th></tr></thead>
<tbody>
${rows || '<tr><td colspan="4">No mail yet.</td></tr>'}
</tbody></table></body></html>`);
  });
  router.get('/messages', (_req, res) => {
    res.json(messages().map(({ raw: _raw, ...rest }) => ({ ...rest, size: Buffer.byteLength(_raw) })));
  });
  router.get('/messages/:id/raw', (req, res) => {
    const message = messages().find((m) => m.id === req.params.id);
    if (!message) {
      res.status(404).type('text/plain').send('no such message\n');
      return;
    }
    // text/plain and nosniff: a browser must not render the HTML inside the message.
    res.set('X-Content-Type-Options', 'nosniff');
    res.type('text/plain; charset=utf-8').send(message.raw);
  });
  return router;
}

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => HTML_ESCAPES[ch]!);
}

/** The first header field named `name`, unfolded, with RFC 2047 encoded-words decoded. */
export function headerValue(raw: string, name: string): string | undefined {
  const end = raw.search(/\r?\n\r?\n/);
  const header = (end < 0 ? raw : raw.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  const prefix = `${name.toLowerCase()}:`;
  const line = header.split(/\r?\n/).find((l) => l.toLowerCase().startsWith(prefix));
  return line === undefined ? undefined : decodeEncodedWords(line.slice(prefix.length).trim());
}

function decodeEncodedWords(value: string): string {
  // Whitespace between two encoded-words is not part of the text (RFC 2047 §6.2).
  return value
    .replace(/(=\?[^?]+\?[bqBQ]\?[^?]*\?=)\s+(?==\?)/g, '$1')
    .replace(/=\?([^?]+)\?([bqBQ])\?([^?]*)\?=/g, (word, charset: string, encoding: string, text: string) => {
      const bytes =
        encoding.toUpperCase() === 'B'
          ? Buffer.from(text, 'base64')
          : Buffer.from(
              text
                .replace(/_/g, ' ')
                .replace(/=([0-9a-fA-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))),
              'latin1',
            );
      try {
        return new TextDecoder(charset.split('*')[0]).decode(bytes);
      } catch {
        return word;
      }
    });
}
