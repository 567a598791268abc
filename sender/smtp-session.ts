// One SMTP session of direct delivery: nodemailer's SMTPConnection to an IP address, naming the MX
// host for TLS (SNI and the certificate check use the MX name, never the IP), with the TLS
// outcome read off the socket, so that the transport can decide what the recipient domain's policy
// allows and count it. A session carries many messages, one at a time, through `sendMail`, the same
// call a nodemailer pool takes, so that one send function serves the relay and direct delivery.

import { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import MimeNode from 'nodemailer/lib/mime-node';
import { offersSmtpUtf8, Utf8Connection } from './smtputf8.js';
import type { Poolable } from './ip-pool.js';

/**
 * - `require`: STARTTLS or no session (an MTA-STS policy in enforce mode).
 * - `opportunistic`: STARTTLS when offered, plaintext when not offered or refused (RFC 7435).
 * - `none`: no STARTTLS: the retry in plaintext after a handshake that failed.
 */
export type TlsUse = 'require' | 'opportunistic' | 'none';

export interface SessionOptions {
  ip: string;
  port: number;
  /** The MX host name: SNI and the name the certificate must carry. */
  mxHost: string;
  /** Our name in EHLO. */
  heloName: string;
  tls: TlsUse;
  connectionTimeoutMs: number;
  socketTimeoutMs: number;
}

/** What TLS the session got. */
export interface TlsOutcome {
  secure: boolean;
  /** Whether the certificate chains to a trusted CA and names the MX host. */
  authorized: boolean;
  /** Node's verification code when it does not (CERT_HAS_EXPIRED, ERR_TLS_CERT_ALTNAME_INVALID, …). */
  authorizationError?: string;
}

export interface SmtpSession extends Poolable {
  readonly tls: TlsOutcome;
  /** Messages sent (or tried) on this session. */
  readonly messages: number;
  /** Whether the server offered SMTPUTF8, which a message with a UTF-8 address or header needs (sender/smtputf8.ts). */
  readonly smtpUtf8: boolean;
  /**
   * Sends one message; nodemailer's errors (EENVELOPE, EMESSAGE, responseCode, …) as they come.
   * `smtputf8` puts SMTPUTF8 on MAIL FROM.
   */
  sendMail(mail: {
    envelope: { from: string; to: string[]; size: number; use8BitMime?: boolean };
    raw: Buffer;
    smtputf8?: boolean;
  }): Promise<{ response: string }>;
}

/**
 * Messages one session carries before it is replaced. Receivers limit messages per connection
 * (often about 100) and answer the next one with a 4xx; replacing first costs one handshake.
 */
const MAX_MESSAGES_PER_SESSION = 100;
/** Longest a message may take from MAIL FROM to the final reply (RFC 5321 §4.5.3.2's 10 minutes). */
const SEND_DEADLINE_MS = 10 * 60_000;

/**
 * Opens a session and resolves once EHLO (and STARTTLS, when used) is done. A handshake that fails
 * rejects with `tlsHandshakeFailed: true` on the error, so that the caller may retry in plaintext.
 *
 *   const session = await openSession({ ip: '192.0.2.25', port: 25, mxHost: 'mx1.example.org', … });
 *   session.tls.authorized   // false for a self-signed certificate
 */
export async function openSession(options: SessionOptions): Promise<SmtpSession> {
  const connection = new Utf8Connection({
    host: options.ip,
    port: options.port,
    name: options.heloName,
    secure: false,
    servername: options.mxHost,
    requireTLS: options.tls === 'require',
    opportunisticTLS: options.tls === 'opportunistic',
    ignoreTLS: options.tls === 'none',
    // Verified below, against the policy; refusing here would leave no way to tell the cases apart.
    tls: { servername: options.mxHost, rejectUnauthorized: false },
    connectionTimeout: options.connectionTimeoutMs,
    greetingTimeout: options.connectionTimeoutMs,
    socketTimeout: options.socketTimeoutMs,
    logger: false,
  });
  let ended = false;
  let messages = 0;
  let broken = false;
  const endCallbacks: (() => void)[] = [];
  // Errors reach the callbacks below; this keeps one on an idle session from being unhandled.
  connection.on('error', () => {});
  connection.once('end', () => {
    ended = true;
    for (const callback of endCallbacks.splice(0)) callback();
  });

  await new Promise<void>((resolve, reject) => {
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      connection.close();
      // nodemailer sets `upgrading` for the handshake and clears it only once it has succeeded.
      const failedHandshake = connection.upgrading === true || isHandshakeError(err);
      reject(Object.assign(err, failedHandshake ? { tlsHandshakeFailed: true } : {}));
    };
    // A failure to connect comes as an 'error' event (or an end without one), not to the callback.
    connection.once('error', fail);
    connection.once('end', () =>
      fail(Object.assign(new Error('connection closed before EHLO'), { code: 'ECONNECTION' })),
    );
    connection.connect((err?: Error | null) => {
      if (err) return fail(err);
      if (settled) return;
      settled = true;
      resolve();
    });
  });

  const socket = connection._socket as TLSSocket | false | null;
  const tls: TlsOutcome = connection.secure
    ? {
        secure: true,
        authorized: socket ? socket.authorized === true : false,
        ...(socket && socket.authorizationError
          ? { authorizationError: String(socket.authorizationError) }
          : {}),
      }
    : { secure: false, authorized: false };

  return {
    tls,
    smtpUtf8: offersSmtpUtf8(connection),
    get messages() {
      return messages;
    },
    get reusable() {
      return !ended && !broken && messages < MAX_MESSAGES_PER_SESSION;
    },
    close: () => {
      if (ended) return;
      connection.quit();
      // A server that does not answer QUIT does not hold the slot.
      setTimeout(() => connection.close(), 1_000).unref();
    },
    onEnd: (callback) => {
      if (ended) callback();
      else endCallbacks.push(callback);
    },
    sendMail: ({ envelope, raw, smtputf8 }) =>
      new Promise((resolve, reject) => {
        messages++;
        connection.forceSmtpUtf8 = smtputf8 === true;
        // The envelope as a nodemailer pool sends it: domains lower-cased and in A-labels (kept
        // UTF-8 beside a UTF-8 local part), an odd local part quoted.
        const { from, to } = new MimeNode().setEnvelope(envelope).getEnvelope();
        // Once the whole message has gone out, a failure without a reply (a timeout, a dropped
        // connection) may follow a server that took it: `afterData` tells the transport not to
        // hand the message straight to another host, which would deliver it twice.
        let dataSent = false;
        const body = Readable.from([raw]);
        body.once('end', () => {
          dataSent = true;
        });
        let settled = false;
        const finish = (err?: Error & { code?: string }, response?: string) => {
          if (settled) return;
          settled = true;
          clearTimeout(deadline);
          if (!err) return resolve({ response: response ?? '' });
          const failed = err as Error & { responseCode?: number; afterData?: boolean };
          if (dataSent && failed.responseCode === undefined) failed.afterData = true;
          reject(failed);
        };
        // The socket timeout counts silence only: a server trickling a byte a minute would hold
        // the message and the slot for ever. RFC 5321 §4.5.3.2 waits 10 minutes for the last reply.
        const deadline = setTimeout(() => {
          broken = true;
          connection.close();
          finish(
            Object.assign(new Error('no answer to the message within 10 minutes'), { code: 'ETIMEDOUT' }),
          );
        }, SEND_DEADLINE_MS);
        deadline.unref();
        // nodemailer may drop a callback when the connection closes under it (an RSET queued
        // behind a server that hangs up): the end of the session settles what is still open, with
        // the server's refusal when there was one.
        let refusal: (Error & { code?: string }) | undefined;
        const closed = () =>
          Object.assign(new Error('the connection closed during the message'), { code: 'ECONNECTION' });
        if (ended) return finish(closed());
        endCallbacks.push(() => {
          broken = true;
          finish(refusal ?? closed());
        });
        connection.send({ ...envelope, from: from || '', to }, body, (err, info) => {
          if (!err) return finish(undefined, String(info?.response ?? ''));
          const e = err as Error & { code?: string; responseCode?: number };
          // A refusal of this message leaves the session fit for the next after RSET; anything
          // else (a dropped connection, a 421) ends it.
          if ((e.code === 'EENVELOPE' || e.code === 'EMESSAGE') && e.responseCode !== 421 && !ended) {
            // A server that hangs up instead of answering RSET ends the session: the refusal
            // stands (see `closed` above), and the session is not used again.
            refusal = e;
            connection.reset((resetErr) => {
              if (resetErr) broken = true;
              finish(e);
            });
            return;
          }
          broken = true;
          finish(e);
        });
      }),
  };
}

/** nodemailer's own report of a TLS upgrade that could not start. */
function isHandshakeError(err: Error & { code?: string; command?: string; response?: unknown }): boolean {
  return err.code === 'ETLS' && err.command === 'STARTTLS' && !err.response;
}
