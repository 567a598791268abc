// SMTP submission (`mailplane submission`): the way in for applications that already send through
// an SMTP client (a framework mailer, nodemailer, a local MTA's relayhost). Port 587 takes
// STARTTLS (RFC 6409, RFC 3207) and port 465 implicit TLS (RFC 8314); AUTH PLAIN or LOGIN takes any
// user name and an API key with the `send` scope as the password, and only over TLS.
//
// Each message is checked as POST /v1/emails checks a send, at the step of the conversation that
// fits: the envelope sender's domain at MAIL FROM, each recipient (the tenant's recipient limit,
// its suppression list) at RCPT TO, the size, the From domain and the tags after DATA. The
// message is kept as the client wrote it (content.raw; sender/raw-message.ts sends it) and queued
// by the REST API's own acceptor, one message per envelope recipient, before the 250: a 250 means
// committed to Postgres, and a failure to commit is a 451 that the client retries.

import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Counter, type Registry } from 'prom-client';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerAuthentication,
  type SMTPServerDataStream,
  type SMTPServerOptions,
  type SMTPServerSession,
} from 'smtp-server';
import { AddressError, domainOf, formatMailbox, normalizeAddress } from '../lib/address.js';
import type { Db } from '../lib/db/index.js';
import { listen } from '../lib/listen.js';
import type { Logger } from '../lib/log.js';
import type { Acceptor, PreparedEmail } from '../lib/send/accept.js';
import { createKeyLookup, type Principal } from '../lib/send/api-keys.js';
import { createDomainResolver, suppressedAmong } from '../lib/send/checks.js';
import { createAuthGuard } from './auth-guard.js';
import { readSubmittedMessage, type SubmittedMessage } from './message.js';
import { isRefusal, refusal } from './refusal.js';
import type { TlsPair } from './tls.js';

/**
 * Connections served at once per process. An application keeps a small pool open (nodemailer's
 * default is 5); this is far above a cluster's worth of pools and keeps a flood from exhausting
 * the pod's memory first.
 */
const MAX_CLIENTS = 1000;
/** Connections from one address at once: a node's pods behind one address, each with a pool. */
export const MAX_CONNECTIONS_PER_ADDRESS = 100;
/**
 * A connection idle this long is closed (421). RFC 5321 4.5.3.2 has servers wait 5 minutes for
 * a command; a pooled client that waits longer reconnects, which costs it a handshake.
 */
const IDLE_TIMEOUT_MS = 5 * 60_000;
/** Connections still open this long after close() are cut; a message is accepted in milliseconds. */
const CLOSE_TIMEOUT_MS = 10_000;
/**
 * The longest command line: RFC 5321 4.5.3.1.4 allows 512 octets, RFC 4954 4 12288 for an AUTH
 * line; an AUTH PLAIN of a long user name and a key is well under this.
 */
const MAX_COMMAND_LENGTH = 4096;
/** Room for a message's header fields beyond its encoded content. */
const HEADER_ALLOWANCE = 64 * 1024;

/**
 * The SIZE announced and enforced: a message whose body and attachments are within the API's
 * limit (MAILPLANE_MAX_MESSAGE_BYTES, counted decoded) as MIME carries it — base64, 4 bytes for 3
 * in lines of 76 characters and their CRLF — plus its header fields.
 *
 *   submissionSizeLimit(10 * 1024 * 1024)   // 14 414 471
 */
export function submissionSizeLimit(maxMessageBytes: number): number {
  return Math.ceil(((maxMessageBytes * 4) / 3) * (78 / 76)) + HEADER_ALLOWANCE;
}

export interface SubmissionDeps {
  db: Db;
  acceptor: Acceptor;
  log: Logger;
  registry: Registry;
  /** Name announced in the greeting. */
  hostname: string;
  /** The installation's limits (the Tenant's maxRecipients takes precedence). */
  limits: { maxRecipients: number; maxMessageBytes: number };
  tls: TlsPair;
  /** How long each AUTH of an address over its failures waits (auth-guard.ts); for tests. */
  authDelayMs?: number;
}

export interface SubmissionOptions {
  /** STARTTLS port (0: any free port). */
  port: number;
  /** Implicit TLS port (0: any free port). */
  securePort: number;
  host?: string;
}

export interface SubmissionServer {
  port: number;
  securePort: number;
  /** Takes up a renewed certificate for new connections. */
  updateTls(pair: TlsPair): void;
  close(): Promise<void>;
}

/** What an authenticated session carries: its key, to look up again, and what it was found to be. */
interface SessionUser {
  key: string;
  principal: Principal;
}

/** What became of a message, as counted in `mailplane_submission_messages_total`. */
type Outcome = 'accepted' | 'refused' | 'failed';

/**
 * Starts both listeners and resolves once they listen.
 *
 *   const submission = await startSubmissionServer(deps, { port: 2587, securePort: 2465 });
 */
export async function startSubmissionServer(
  deps: SubmissionDeps,
  options: SubmissionOptions,
): Promise<SubmissionServer> {
  const { db, log } = deps;
  const lookup = createKeyLookup(db);
  const domainOfTenant = createDomainResolver(db);
  const guard = createAuthGuard({ delayMs: deps.authDelayMs });
  const size = submissionSizeLimit(deps.limits.maxMessageBytes);
  const connections = new Map<string, number>();
  const counted = new Set<string>();

  const messages = new Counter({
    name: 'mailplane_submission_messages_total',
    help: 'Messages sent to the end of DATA, by outcome: accepted (queued), refused (a 5xx), failed (a 4xx: not queued).',
    labelNames: ['outcome'],
    registers: [deps.registry],
  });
  const recipients = new Counter({
    name: 'mailplane_submission_recipients_total',
    help: 'Messages (one per recipient) queued from SMTP submission, by tenant.',
    labelNames: ['tenant'],
    registers: [deps.registry],
  });
  const authFailures = new Counter({
    name: 'mailplane_submission_auth_failures_total',
    help: 'AUTH attempts refused: an unknown or revoked key, or one without the send scope.',
    registers: [deps.registry],
  });
  const authDelayed = new Counter({
    name: 'mailplane_submission_auth_delayed_total',
    help: 'AUTH attempts made to wait because their address has failed too often.',
    registers: [deps.registry],
  });
  const count = (outcome: Outcome) => messages.inc({ outcome });

  const principalOf = (session: SMTPServerSession) => (session.user as SessionUser).principal;

  /**
   * The session's principal as of now: looked up again (through the lookup's one-second cache) at
   * each MAIL FROM, so that a key revoked while a pooled connection stays open stops sending, and
   * a Tenant's new limits apply to its next message.
   */
  async function refreshPrincipal(session: SMTPServerSession): Promise<Principal> {
    const user = session.user as SessionUser;
    let principal: Principal | undefined;
    try {
      principal = await lookup(user.key);
    } catch (err) {
      throw unavailable(err);
    }
    if (!principal?.scopes.includes('send')) {
      throw refusal(
        421,
        '4.7.0',
        'the API key of this session has been revoked or has lost the send scope; closing the connection',
      );
    }
    user.principal = principal;
    return principal;
  }

  async function authenticate(auth: SMTPServerAuthentication, session: SMTPServerSession) {
    const address = session.remoteAddress;
    const delay = guard.delayFor(address);
    if (delay > 0) {
      authDelayed.inc();
      await sleep(delay);
    }
    let principal: Principal | undefined;
    try {
      principal = await lookup(auth.password ?? '');
    } catch (err) {
      log.error('cannot look up an API key', { err, client: address });
      throw refusal(454, '4.7.0', 'cannot check the key now; try again later');
    }
    const fault = !principal
      ? 'the password is not a valid API key, or the key has been revoked'
      : principal.scopes.includes('send')
        ? undefined
        : 'this API key lacks the "send" scope';
    if (fault) {
      authFailures.inc();
      log.info('AUTH refused', { client: address, reason: fault, user: auth.username });
      if (guard.failed(session.id, address)) {
        throw refusal(421, '4.7.0', `${fault}; too many failed AUTH attempts, closing the connection`);
      }
      throw refusal(535, '5.7.8', fault);
    }
    const user: SessionUser = { key: auth.password!, principal: principal! };
    return { user };
  }

  async function checkSender(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const principal = await refreshPrincipal(session);
    if (!address.address) {
      throw refusal(553, '5.1.7', 'a sender address is required (the null sender <> is for bounces)');
    }
    const sender = normalized(address.address, 553, '5.1.7');
    const domain = domainOf(sender);
    if (!(await resolve(principal.tenantId, domain))) {
      throw refusal(
        553,
        '5.7.1',
        `<${sender}>: ${domain} is not a sending domain of this tenant; add a SendingDomain for it first`,
      );
    }
  }

  async function checkRecipient(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const principal = principalOf(session);
    const recipient = normalized(address.address, 553, '5.1.3');
    const { rcptTo } = session.envelope;
    const limit = principal.limits.maxRecipients ?? deps.limits.maxRecipients;
    const repeated = rcptTo.some((r) => r.address.toLowerCase() === address.address.toLowerCase());
    if (!repeated && rcptTo.length >= limit) {
      // 452, as RFC 5321 4.5.3.1.10 has it: the client may send the rest in another transaction.
      throw refusal(
        452,
        '4.5.3',
        `too many recipients: this tenant sends to at most ${limit} per message; send to the others in another message`,
      );
    }
    let suppressed: string[];
    try {
      suppressed = await suppressedAmong(db, principal.tenantId, [recipient]);
    } catch (err) {
      throw unavailable(err);
    }
    if (suppressed.length > 0) {
      throw refusal(
        550,
        '5.7.1',
        `<${recipient}>: the address is on this tenant's suppression list (a bounce, a complaint or by hand) and is not sent to`,
      );
    }
  }

  /** Checks and queues a message; resolves with the email's id once committed. */
  async function accept(data: Buffer, session: SMTPServerSession): Promise<string> {
    const principal = principalOf(session);
    const message = await readSubmittedMessage(data);
    // Every address a receiver shows as the author's must be the tenant's; the first From
    // address's domain signs (DKIM aligned with From, as DMARC asks).
    let domainId: string | null = null;
    const authors = [
      ...message.from.map((m) => ['From', m] as const),
      ...message.sender.map((m) => ['Sender', m] as const),
    ];
    for (const [field, mailbox] of authors) {
      const domain = domainOf(mailbox.address);
      const id = await resolve(principal.tenantId, domain);
      if (!id) {
        throw refusal(
          554,
          '5.7.1',
          `${field}: ${domain} is not a sending domain of this tenant; add a SendingDomain for it first`,
        );
      }
      domainId ??= id;
    }
    const envelope = [...new Set(session.envelope.rcptTo.map((r) => normalizeAddress(r.address)))];
    const email: PreparedEmail = {
      id: randomUUID(),
      tenantId: principal.tenantId,
      domainId: domainId!,
      from: formatMailbox(message.from[0]!),
      subject: message.subject,
      content: {
        to: message.to.map(formatMailbox),
        cc: message.cc.map(formatMailbox),
        bcc: blindCopies(envelope, message),
        reply_to: message.replyTo.map(formatMailbox),
        subject: message.subject,
        headers: {},
        attachments: [],
        tags: message.tags,
        raw: message.raw.toString('base64'),
        ...(message.messageId ? { message_id: message.messageId } : {}),
      },
      recipients: envelope,
      scheduledAt: null,
    };
    try {
      await deps.acceptor.accept([email]);
    } catch (err) {
      throw unavailable(err);
    }
    recipients.inc({ tenant: principal.tenant }, envelope.length);
    log.info('message accepted', {
      emailId: email.id,
      tenant: principal.tenant,
      recipients: envelope.length,
      bytes: data.length,
      client: session.remoteAddress,
    });
    return email.id;
  }

  async function resolve(tenantId: string, domain: string): Promise<string | null> {
    try {
      return await domainOfTenant(tenantId, domain);
    } catch (err) {
      throw unavailable(err);
    }
  }

  /** Postgres did not answer: nothing was taken, and the client is to try again. */
  function unavailable(err: unknown) {
    if (isRefusal(err)) return err;
    log.error('cannot reach Postgres; answering 451', { err });
    return refusal(451, '4.3.0', 'cannot take the message now (nothing was queued); try again later');
  }

  const handlers: SMTPServerOptions = {
    onConnect(session, callback) {
      const address = session.remoteAddress;
      const open = (connections.get(address) ?? 0) + 1;
      if (open > MAX_CONNECTIONS_PER_ADDRESS) {
        return callback(
          refusal(
            421,
            '4.7.0',
            `too many connections from ${address}; at most ${MAX_CONNECTIONS_PER_ADDRESS} at once`,
          ),
        );
      }
      connections.set(address, open);
      counted.add(session.id);
      callback();
    },
    onClose(session) {
      guard.forget(session.id);
      if (!counted.delete(session.id)) return;
      const open = (connections.get(session.remoteAddress) ?? 1) - 1;
      if (open > 0) connections.set(session.remoteAddress, open);
      else connections.delete(session.remoteAddress);
    },
    onAuth(auth, session, callback) {
      authenticate(auth, session).then(
        (response) => callback(null, response),
        (err: Error) => callback(err),
      );
    },
    onMailFrom(address, session, callback) {
      checkSender(address, session).then(
        () => callback(),
        (err: Error) => callback(err),
      );
    },
    onRcptTo(address, session, callback) {
      checkRecipient(address, session).then(
        () => callback(),
        (err: Error) => callback(err),
      );
    },
    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback) {
      const chunks: Buffer[] = [];
      let bytes = 0;
      stream.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        // Past the limit the rest is read and dropped, so that the refusal comes after DATA.
        if (bytes <= size) chunks.push(chunk);
      });
      stream.on('end', () => {
        if (stream.sizeExceeded || bytes > size) {
          count('refused');
          return callback(
            refusal(
              552,
              '5.3.4',
              `the message is over the limit of ${size} bytes (SIZE); nothing was queued`,
            ),
          );
        }
        accept(Buffer.concat(chunks), session).then(
          (id) => {
            count('accepted');
            callback(null, `2.0.0 queued as ${id}`);
          },
          (err: unknown) => {
            const reply = isRefusal(err) ? err : unavailable(err);
            count(reply.responseCode >= 500 ? 'refused' : 'failed');
            callback(reply);
          },
        );
      });
    },
  };

  const common: SMTPServerOptions = {
    name: deps.hostname,
    banner: 'Mailplane submission',
    key: deps.tls.key,
    cert: deps.tls.cert,
    authMethods: ['PLAIN', 'LOGIN'],
    // No relaying for anyone unauthenticated, and no AUTH before TLS (538 on port 587).
    authOptional: false,
    allowInsecureAuth: false,
    authRequiredMessage:
      '5.7.0 authentication required: AUTH PLAIN or LOGIN after STARTTLS, an API key with the send scope as the password',
    size,
    maxClients: MAX_CLIENTS,
    socketTimeout: IDLE_TIMEOUT_MS,
    closeTimeout: CLOSE_TIMEOUT_MS,
    maxCommandLength: MAX_COMMAND_LENGTH,
    // Not offered: DSN requests are not honoured (bounces come back as events and webhooks), and
    // SMTPUTF8 envelopes are not taken yet (a client then sends ASCII addresses, or refuses).
    hideDSN: true,
    hideSMTPUTF8: true,
    // A reverse lookup of every client would ask the cluster's DNS for each connection, for a
    // name nothing reads.
    disableReverseLookup: true,
    logger: false,
    ...handlers,
  };
  const starttls = new SMTPServer({ ...common, secure: false });
  const implicit = new SMTPServer({ ...common, secure: true });
  for (const server of [starttls, implicit]) {
    // A client that goes away mid-session must not take the process with it.
    server.on('error', (err) => log.debug('submission session error', { err }));
  }

  await listen(starttls.server, {
    port: options.port,
    host: options.host,
    setting: 'MAILPLANE_SUBMISSION_PORT',
  });
  try {
    await listen(implicit.server, {
      port: options.securePort,
      host: options.host,
      setting: 'MAILPLANE_SUBMISSIONS_PORT',
    });
  } catch (err) {
    await new Promise<void>((resolve) => starttls.close(() => resolve()));
    throw err;
  }
  return {
    port: (starttls.server.address() as AddressInfo).port,
    securePort: (implicit.server.address() as AddressInfo).port,
    updateTls(pair) {
      for (const server of [starttls, implicit])
        server.updateSecureContext({ key: pair.key, cert: pair.cert });
    },
    close: async () => {
      await Promise.all(
        [starttls, implicit].map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
      );
    },
  };
}

/**
 * The blind copies: the envelope recipients that neither To nor Cc names (a client such as
 * nodemailer writes no Bcc field), as the API's views list them.
 */
function blindCopies(envelope: string[], message: SubmittedMessage): string[] {
  const named = new Set([...message.to, ...message.cc].map((m) => m.address.toLowerCase()));
  return envelope.filter((address) => !named.has(address.toLowerCase()));
}

/** The address normalized (domain lower-cased), or a refusal with `code` and `status` saying why not. */
function normalized(address: string, code: number, status: string): string {
  try {
    return normalizeAddress(address);
  } catch (err) {
    if (err instanceof AddressError) throw refusal(code, status, err.message);
    throw err;
  }
}
