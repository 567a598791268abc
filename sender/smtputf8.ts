// Delivery of the messages that need SMTPUTF8 (RFC 6531): a UTF-8 local part in the envelope, or
// UTF-8 in the header (an address written in the To or Cc of another recipient's copy, a message
// submitted over SMTP as the client wrote it). Such a message goes only to a server whose EHLO
// offers SMTPUTF8, with SMTPUTF8 on MAIL FROM; to any other it is not sent at all, and fails
// with the reason (5.6.7 for an address, 5.6.9 for a header, RFC 6531 §3.5): raw UTF-8 to a
// server that did not offer to take it is a protocol violation that it may mangle or misroute.
//
// nodemailer's pool does not say which extensions a pooled connection's server offered before
// it sends MAIL FROM, and sends raw UTF-8 either way (nodemailer/nodemailer#1378); it also adds
// SMTPUTF8 only for a non-ASCII envelope. So through the relay these rare messages take a
// connection of their own, opened with the pool's options (the same host, port, TLS and
// credentials), whose EHLO reply is read before anything of the message is sent; a direct-delivery
// session (sender/smtp-session.ts) reads its own EHLO reply when it opens.

import type { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { needsSmtpUtf8 } from '../lib/address.js';

/** Why a message needs SMTPUTF8: an address of its envelope, or its header. */
export type Utf8Need = 'address' | 'header';

/** The envelope of one recipient's message, as sender/transport.ts hands it over. */
interface Envelope {
  from: string;
  to: string;
}

/** What of a pool's options a connection of its own takes: nodemailer's connection options and the credentials. */
export type ConnectionOptions = SMTPConnection.Options & { auth?: { user: string; pass: string } };

/**
 * Whether (and why) the message needs SMTPUTF8; undefined for an ASCII one, which is all but a few.
 *
 *   smtpUtf8Need({ from: 'a@example.com', to: '用户@example.org' }, raw)   // 'address'
 */
export function smtpUtf8Need(envelope: Envelope, raw: Buffer): Utf8Need | undefined {
  if (needsSmtpUtf8(envelope.from) || needsSmtpUtf8(envelope.to)) return 'address';
  const end = raw.indexOf('\r\n\r\n');
  const header = end < 0 ? raw : raw.subarray(0, end);
  for (const byte of header) if (byte >= 0x80) return 'header';
  return undefined;
}

/** What a message goes out through (sender/transport.ts): the relay's pool, or a direct-delivery session. */
export interface Utf8Sender {
  /** A direct-delivery session's: whether its server offered SMTPUTF8 (sender/smtp-session.ts). */
  readonly smtpUtf8?: boolean;
  /** The relay's nodemailer pool's: what a connection of its own is opened with. */
  readonly options?: unknown;
  sendMail(mail: {
    envelope: { from: string; to: string[]; size: number; use8BitMime?: boolean };
    raw: Buffer;
    smtputf8?: boolean;
  }): Promise<unknown>;
}

/**
 * Sends a message that needs SMTPUTF8 (smtpUtf8Need) through `sender`: over the session when it
 * is one whose server offered it, over a connection of its own opened with the pool's options for
 * the relay; refused as a server would when the server does not offer it.
 *
 *   const reply = await sendInternational(pool, envelope, raw, need);
 */
export async function sendInternational(
  sender: Utf8Sender,
  envelope: Envelope,
  raw: Buffer,
  need: Utf8Need,
): Promise<string> {
  if (typeof sender.smtpUtf8 !== 'boolean') {
    return sendWithSmtpUtf8(sender.options as ConnectionOptions, envelope, raw, need);
  }
  if (!sender.smtpUtf8) throw notOffered('the receiving server', envelope, need);
  const info = await sender.sendMail({
    envelope: { from: envelope.from, to: [envelope.to], size: raw.length, use8BitMime: true },
    raw,
    smtputf8: true,
  });
  return String((info as { response?: unknown }).response ?? '');
}

/** Whether the server offered SMTPUTF8, read off the EHLO reply as soon as connect() has called back. */
export function offersSmtpUtf8(connection: SMTPConnection): boolean {
  return /^250[ -]SMTPUTF8\b/im.test(String(connection.lastServerResponse || ''));
}

/**
 * Sends one message over a connection of its own, if its server offers SMTPUTF8; answers the
 * server's final reply. Errors are nodemailer's, and the refusal for want of SMTPUTF8 is shaped
 * as a server's 5xx (ESMTPUTF8), so that the message fails and its address is left alone.
 */
async function sendWithSmtpUtf8(
  options: ConnectionOptions,
  envelope: Envelope,
  raw: Buffer,
  need: Utf8Need,
): Promise<string> {
  const { auth, ...connectionOptions } = options;
  const connection = new Utf8Connection(connectionOptions);
  // An error after connect() has called back (the server hanging up mid-send) reaches send's callback too.
  connection.on('error', () => undefined);
  let sent = false;
  try {
    await new Promise<void>((resolve, reject) => {
      connection.once('error', reject);
      connection.connect((err?: Error | null) => {
        connection.removeListener('error', reject);
        if (err) reject(err);
        else resolve();
      });
    });
    // The EHLO reply (after STARTTLS, the second one): connect() calls back once it is read.
    if (!offersSmtpUtf8(connection)) throw notOffered(options.host ?? 'the relay', envelope, need);
    if (auth && connection.allowsAuth) {
      await untilEnd<void>(connection, (resolve, reject) =>
        connection.login(auth, (err) => (err ? reject(err) : resolve())),
      );
    }
    connection.forceSmtpUtf8 = true;
    const info = await untilEnd<{ response?: string }>(connection, (resolve, reject) =>
      connection.send(
        { from: envelope.from, to: [envelope.to], size: raw.length, use8BitMime: true },
        raw as Buffer | Readable,
        (err, result) => (err ? reject(err) : resolve(result as { response?: string })),
      ),
    );
    sent = true;
    return String(info.response ?? '');
  } finally {
    // QUIT when the session is in order; otherwise the socket is simply closed.
    if (sent) connection.quit();
    else connection.close();
  }
}

/**
 * A step of a connection that settles even when the connection ends under it: nodemailer drops
 * the callbacks it had queued (a login, a send) when a server hangs up or goes silent.
 */
function untilEnd<T>(
  connection: SMTPConnection,
  step: (resolve: (value: T) => void, reject: (err: Error) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const ended = () =>
      reject(Object.assign(new Error('the connection closed before its answer'), { code: 'ECONNECTION' }));
    connection.once('end', ended);
    step(
      (value) => {
        connection.removeListener('end', ended);
        resolve(value);
      },
      (err) => {
        connection.removeListener('end', ended);
        reject(err);
      },
    );
  });
}

/**
 * nodemailer's connection, with SMTPUTF8 on MAIL FROM whenever `forceSmtpUtf8` is set: nodemailer
 * adds it for a non-ASCII envelope only, and a message whose header alone is UTF-8 needs it as
 * much (RFC 6531 §3.4). The MAIL FROM line is the one command it changes; the test of a header-only
 * international message checks that the server sees the parameter.
 */
export class Utf8Connection extends SMTPConnection {
  forceSmtpUtf8 = false;

  /** Overrides nodemailer's internal writer of commands (its `_sendCommand`). */
  _sendCommand(command: string, logCommand?: string): void {
    const line =
      this.forceSmtpUtf8 && /^MAIL FROM:/i.test(command) && !/ SMTPUTF8(?: |$)/i.test(command)
        ? `${command} SMTPUTF8`
        : command;
    BASE_SEND_COMMAND.call(this, line, logCommand);
  }
}

const BASE_SEND_COMMAND = (
  SMTPConnection.prototype as unknown as { _sendCommand(command: string, logCommand?: string): void }
)._sendCommand;

/** A server's refusal, as sender/outcome.ts reads one: 5.6.x is the message's fault, not the address's. */
function notOffered(host: string, envelope: Envelope, need: Utf8Need): Error {
  const response =
    need === 'address'
      ? `553 5.6.7 not sent: ${needsSmtpUtf8(envelope.to) ? envelope.to : envelope.from} is an internationalized ` +
        `address, which needs SMTPUTF8, and ${host} does not offer it`
      : `550 5.6.9 not sent: the message's header has UTF-8 (an internationalized address), which needs ` +
        `SMTPUTF8, and ${host} does not offer it`;
  return Object.assign(new Error(response), {
    code: 'ESMTPUTF8',
    response,
    responseCode: Number(response.slice(0, 3)),
    command: 'MAIL FROM',
    permanent: true,
  });
}
