// A receiving SMTP server on loopback that answers what a test asks for, at RCPT TO or after
// DATA, announces SIZE or not, and records what each session did on the wire (the EHLO name, the
// MAIL FROM parameters, whether AUTH was tried, whether DATA was ever sent), so that a test can
// assert what a real receiver would have seen. dev/inbox.ts answers at RCPT TO only; this one
// stands for the receivers that refuse a message after reading it (size, content, spam).

import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';

export interface SinkReply {
  code: number;
  message: string;
}

/** One MAIL FROM and what followed it. */
export interface SinkTransaction {
  /** The name the client gave in EHLO (or HELO). */
  ehlo: string;
  /** MAIL FROM parameters, upper-cased names: `{ SIZE: '1234' }`. */
  mailFromArgs: Record<string, string>;
  from: string;
  /** Recipients accepted at RCPT TO. */
  to: string[];
  /** Whether the client got as far as sending the message. */
  data: boolean;
  /** Whether the session was encrypted (after STARTTLS) by then. */
  secure: boolean;
}

export interface SinkMessage {
  envelope: { from: string; to: string[] };
  /** As received: CRLF line endings, dot-stuffing removed. */
  raw: string;
}

export interface SmtpSink {
  port: number;
  transactions(): SinkTransaction[];
  /** Every AUTH a client sent, and whether its connection was encrypted then. */
  authAttempts(): { secure: boolean }[];
  messages(): SinkMessage[];
  /** Sessions (connections) so far, and the most that were open at once. */
  sessions(): { total: number; peak: number };
  close(): Promise<void>;
}

export interface SinkOptions {
  /** Announced in EHLO as `SIZE <n>`, and enforced. */
  size?: number;
  /** Accept AUTH (any credentials); by default AUTH is offered even without TLS, as a bad relay does. */
  auth?: boolean;
  /** The answer to RCPT TO for a recipient; undefined accepts. */
  rcpt?: (rcpt: string) => SinkReply | undefined;
  /** The answer after DATA, given the recipients and the message; undefined accepts. */
  data?: (to: string[], raw: string) => SinkReply | undefined;
  /** Announce SMTPUTF8 in EHLO (RFC 6531), as smtp-server does by default; false withholds it. */
  smtpUtf8?: boolean;
  /** Address and port to listen on; default 127.0.0.1 and a free port. */
  host?: string;
  port?: number;
  /**
   * Offer STARTTLS with this key and certificate (PEM), or offer it and fail every handshake
   * (`fail-handshake`, as an outdated TLS stack does). Unset: no STARTTLS.
   */
  starttls?: { key: string; cert: string } | 'fail-handshake';
  /** Milliseconds to hold the reply to DATA, so that sessions overlap. */
  dataDelayMs?: number;
}

/**
 * Starts a sink on 127.0.0.1 and a free port.
 *
 *   const sink = await startSmtpSink({ size: 1_000_000, data: () => ({ code: 552, message: '5.3.4 too big' }) });
 */
export async function startSmtpSink(options: SinkOptions = {}): Promise<SmtpSink> {
  const transactions: SinkTransaction[] = [];
  const current = new Map<string, SinkTransaction>();
  const authAttempts: { secure: boolean }[] = [];
  const messages: SinkMessage[] = [];
  const refusal = (reply: SinkReply) => Object.assign(new Error(reply.message), { responseCode: reply.code });
  const sessions = { open: 0, total: 0, peak: 0 };
  const { starttls } = options;

  const server = new SMTPServer({
    disabledCommands: [...(starttls ? [] : ['STARTTLS']), ...(options.auth === false ? ['AUTH'] : [])],
    // TLS 1.0 only, which no current client accepts: the handshake fails, as an old stack's does.
    ...(starttls === 'fail-handshake'
      ? { minVersion: 'TLSv1' as const, maxVersion: 'TLSv1' as const }
      : starttls
        ? { key: starttls.key, cert: starttls.cert }
        : {}),
    onConnect(_s, callback) {
      sessions.open++;
      sessions.total++;
      sessions.peak = Math.max(sessions.peak, sessions.open);
      callback();
    },
    onClose() {
      sessions.open--;
    },
    authOptional: true,
    allowInsecureAuth: true,
    size: options.size,
    hideSMTPUTF8: options.smtpUtf8 === false,
    logger: false,
    closeTimeout: 200,
    onAuth(_auth, s, callback) {
      authAttempts.push({ secure: s.secure });
      callback(null, { user: 'anyone' });
    },
    onMailFrom(address, s, callback) {
      const args = (address.args || {}) as Record<string, string>;
      const transaction: SinkTransaction = {
        ehlo: s.hostNameAppearsAs,
        mailFromArgs: Object.fromEntries(Object.entries(args).map(([k, v]) => [k.toUpperCase(), v])),
        from: address.address,
        to: [],
        data: false,
        secure: s.secure,
      };
      transactions.push(transaction);
      current.set(s.id, transaction);
      callback();
    },
    onRcptTo(address, s, callback) {
      const reply = options.rcpt?.(address.address);
      if (reply) return callback(refusal(reply));
      current.get(s.id)?.to.push(address.address);
      callback();
    },
    onData(stream: SMTPServerDataStream, s: SMTPServerSession, callback) {
      const transaction = current.get(s.id);
      if (transaction) transaction.data = true;
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const to = s.envelope.rcptTo.map((r) => r.address);
        if (stream.sizeExceeded) return callback(refusal({ code: 552, message: '5.3.4 message too big' }));
        const reply = options.data?.(to, raw);
        if (reply) return callback(refusal(reply));
        messages.push({ envelope: { from: transaction?.from ?? '', to }, raw });
        if (options.dataDelayMs) setTimeout(() => callback(), options.dataDelayMs);
        else callback();
      });
    },
  });
  server.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve);
  });
  return {
    port: (server.server.address() as AddressInfo).port,
    transactions: () => [...transactions],
    authAttempts: () => [...authAttempts],
    messages: () => [...messages],
    sessions: () => ({ total: sessions.total, peak: sessions.peak }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
