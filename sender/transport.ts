// Delivery of signed messages over pooled SMTP connections: through one relay when
// MAILPLANE_RELAY_URL is set, otherwise straight to the MX hosts of each recipient's domain.
//
// Errors are nodemailer's: `code` (ECONNECTION, ETIMEDOUT, EENVELOPE, EMESSAGE, EAUTH, …) and, when
// the server answered, `responseCode` and `response`. DNS outcomes that are final (a domain that
// does not exist, a null MX, no MX and no address) are reported the same way, with the 5xx a
// receiving server would give, and so is a message larger than the SIZE the server announced
// (552 5.3.4, refused before DATA).
//
// Wire manners: `SIZE=` is declared on MAIL FROM whenever the server offers SIZE (RFC 1870);
// credentials are never sent over an unencrypted connection (a relay URL without smtps:// gets
// STARTTLS or no AUTH at all, unless it says `?insecure_auth=true`); EHLO names a fully qualified
// domain (heloNameFor).
//
// Direct delivery resolves MX hosts and their addresses itself, through the configured DNS
// servers, and connects to the addresses (sender/smtp-session.ts), with the MX name for TLS:
// connections are limited per destination IP (sender/ip-pool.ts), whatever names lead there.
// TLS is opportunistic (a failed handshake is retried in plaintext on the same host) unless the
// recipient domain publishes an MTA-STS policy in enforce mode (sender/mta-sts.ts): then only the
// MX hosts it names, with STARTTLS and a valid certificate for that name, receive the message, or
// it is deferred with the reason. Every session's TLS is counted (sender/tls-report.ts).

import nodemailer from 'nodemailer';
import type { Transporter } from 'nodemailer';
import { domainOf } from '../lib/address.js';
import type { Logger } from '../lib/log.js';
import { createResolver } from '../lib/resolver.js';
import { createIpPool } from './ip-pool.js';
import { createMtaSts, mxMatches, type StsPolicy } from './mta-sts.js';
import { isPublicAddress } from '../lib/net-policy.js';
import { addressesOf, mxHosts, smtpError, type AddressResolver, type MxResolver } from './mx.js';
import { openSession, type SmtpSession, type TlsUse } from './smtp-session.js';
import { sendInternational, smtpUtf8Need } from './smtputf8.js';
import {
  certificateResult,
  noTlsReport,
  type PolicyType,
  type TlsReport,
  type TlsResultType,
} from './tls-report.js';

export { mxHosts, type MxResolver };

export interface Envelope {
  /** MAIL FROM */
  from: string;
  /** RCPT TO: one recipient, so that its reply is its own. */
  to: string;
}

export interface DeliveryReceipt {
  /** The server's final reply, e.g. `250 2.0.0 Ok: queued as 4bKx`. */
  reply: string;
  /** The host that accepted it. */
  host: string;
}

export interface Transport {
  send(envelope: Envelope, raw: Buffer): Promise<DeliveryReceipt>;
  /** Closes every pooled connection; call once nothing is sending any more. */
  close(): Promise<void>;
}

/** The DNS direct delivery asks: node:dns/promises' Resolver (lib/resolver.ts) or a test's own. */
export interface DeliveryResolver extends AddressResolver {
  resolveMx(name: string): Promise<{ exchange: string; priority: number }[]>;
  resolveTxt(name: string): Promise<string[][]>;
}

export interface TransportOptions {
  /**
   * smtp(s)://user:pass@host:port; unset means direct MX delivery. `?insecure_auth=true` allows
   * AUTH over a connection that is not encrypted (INSECURE_AUTH_PARAM).
   */
  relayUrl?: string;
  /** Our name in EHLO; when it is not a fully qualified domain, see heloNameFor. */
  heloName: string;
  /** Connections per pool: the relay's, or each destination IP address's. */
  maxConnections?: number;
  /** Direct delivery only: MX, A/AAAA and MTA-STS lookups. Default the system's resolvers. */
  resolver?: DeliveryResolver;
  /** Direct delivery only: replaces resolver.resolveMx, for a test's own MX table. */
  resolveMx?: MxResolver;
  /** Direct delivery only: the MX port (MAILPLANE_MX_PORT; 25 by default, tests use another). */
  port?: number;
  /** Direct delivery only: HTTPS port of MTA-STS policy hosts (MAILPLANE_MTA_STS_PORT; 443 by default). */
  mtaStsPort?: number;
  /**
   * Direct delivery only: MX hosts (and MTA-STS policy hosts) may be at private, loopback or
   * link-local addresses (MAILPLANE_DELIVERY_ALLOW_PRIVATE). Default false: a recipient domain
   * whose MX names 10.0.0.5 must not make the sender talk to a server inside the cluster.
   */
  allowPrivate?: boolean;
  /** Direct delivery only: false applies no MTA-STS policies (tests of the bare transport). */
  mtaSts?: false;
  /** Direct delivery only: where each session's TLS outcome is counted. */
  tlsReport?: TlsReport;
  /** Direct delivery only: where an MTA-STS policy that could not be had is told. */
  log?: Pick<Logger, 'warn'>;
}

/**
 * Connections per destination IP address in direct delivery. Large receivers throttle senders
 * that open many connections from one address; a few connections, each carrying many messages,
 * go further.
 */
const DEFAULT_CONNECTIONS_PER_IP = 5;
/**
 * Addresses tried per MX host. Several addresses of one name are usually one service; when two
 * fail, the next MX (or the retry later) is the better bet.
 */
const MAX_ADDRESSES_PER_HOST = 2;
/**
 * Socket inactivity limit. RFC 5321 allows servers 10 minutes after DATA; waiting that long would
 * hold a sender slot (and a graceful shutdown) hostage to one slow host, and the retry costs little.
 */
const SOCKET_TIMEOUT_MS = 2 * 60_000;
const CONNECTION_TIMEOUT_MS = 30_000;
/**
 * The relay URL's query parameter that allows AUTH in clear text (a relay on the same host or a
 * private link that offers no STARTTLS). Without it, credentials go only over smtps:// or after
 * STARTTLS, and a relay that offers neither fails the attempt.
 */
export const INSECURE_AUTH_PARAM = 'insecure_auth';

/** A host name of at least two labels, the last not numeric: what RFC 5321 §4.1.1.1 wants in EHLO. */
const FQDN = /^(?=.{1,253}$)(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?!\d+$)(?!-)[a-z0-9-]{2,63}(?<!-)$/i;

/**
 * The name to announce in EHLO: the configured one (MAILPLANE_HELO_NAME) when it is a fully
 * qualified domain, otherwise the domain of the envelope sender. The configured default is the
 * host name, which in Kubernetes is a pod name that resolves nowhere, and many receivers refuse
 * or score a non-FQDN HELO (Postfix's reject_non_fqdn_helo_hostname). Falling back, rather than
 * refusing to start, keeps `mailplane dev` and existing installations sending; the sending
 * domain (or its return-path domain) is one the tenant proved it controls, and the chart sets
 * MAILPLANE_HELO_NAME for production.
 *
 *   heloNameFor('mailplane-sender-7d9f', 'bounces+…@bounces.example.com')   // 'bounces.example.com'
 */
export function heloNameFor(configured: string, envelopeFrom: string): string {
  if (isFqdn(configured)) return configured;
  const domain = domainOf(envelopeFrom).toLowerCase();
  return isFqdn(domain) ? domain : configured;
}

export function isFqdn(name: string): boolean {
  return FQDN.test(name) && !/\.(?:local|localdomain|internal)$/i.test(name);
}

/**
 * Creates the transport the sender delivers through.
 *
 *   const transport = createTransport({ relayUrl: config.relayUrl, heloName: config.heloName });
 *   const { reply } = await transport.send({ from: 'a@example.com', to: 'b@example.org' }, signed);
 */
export function createTransport(options: TransportOptions): Transport {
  return options.relayUrl ? relayTransport(options.relayUrl, options) : directTransport(options);
}

function relayTransport(relayUrl: string, options: TransportOptions): Transport {
  const url = new URL(relayUrl);
  const secure = url.protocol === 'smtps:';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = url.port ? Number(url.port) : secure ? 465 : 587;
  const auth = url.username
    ? { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) }
    : undefined;
  // With credentials and no smtps://, STARTTLS is required, so that AUTH is never sent in clear.
  const requireTLS = !secure && auth !== undefined && url.searchParams.get(INSECURE_AUTH_PARAM) !== 'true';
  // One pool per EHLO name: one in all when MAILPLANE_HELO_NAME is an FQDN.
  const pools = new Map<string, Transporter>();
  const poolFor = (name: string) => {
    let pool = pools.get(name);
    if (!pool) {
      pool = nodemailer.createTransport({
        ...commonOptions(),
        name,
        host,
        port,
        secure,
        requireTLS,
        auth,
        maxConnections: options.maxConnections ?? DEFAULT_CONNECTIONS_PER_IP,
      });
      pools.set(name, pool);
    }
    return pool;
  };
  return {
    async send(envelope, raw) {
      try {
        const pool = poolFor(heloNameFor(options.heloName, envelope.from));
        return { reply: await sendThrough(pool, envelope, raw), host };
      } catch (err) {
        if (requireTLS && (err as { code?: unknown }).code === 'ETLS') {
          // Not the server's verdict on the message (its 5xx to STARTTLS would read as one).
          throw Object.assign(
            new Error(
              `the relay ${host}:${port} did not start TLS (${(err as Error).message}); credentials are ` +
                `never sent over an unencrypted connection: use smtps://, a relay that offers STARTTLS, ` +
                `or add ?${INSECURE_AUTH_PARAM}=true to MAILPLANE_RELAY_URL`,
            ),
            { code: 'EINSECUREAUTH', command: 'STARTTLS' },
          );
        }
        throw err;
      }
    },
    async close() {
      for (const pool of pools.values()) pool.close();
      pools.clear();
    },
  };
}

function directTransport(options: TransportOptions): Transport {
  const resolver = options.resolver ?? createResolver(undefined);
  const resolveMx = options.resolveMx ?? ((domain: string) => resolver.resolveMx(domain));
  const port = options.port ?? 25;
  const report = options.tlsReport ?? noTlsReport;
  const mtaSts =
    options.mtaSts === false
      ? undefined
      : createMtaSts({
          resolver,
          port: options.mtaStsPort,
          allowPrivate: options.allowPrivate === true,
          onFailure: (domain, failure) => {
            report.failure(domain, 'sts', failure.result);
            options.log?.warn('MTA-STS policy not available', { domain, ...failure });
          },
        });
  const pool = createIpPool<SmtpSession>(options.maxConnections ?? DEFAULT_CONNECTIONS_PER_IP);

  /**
   * Opens a session to one address of an MX host, as the domain's policy wants, and counts its TLS.
   * Without an enforced policy, TLS that cannot be had is not worth the message (RFC 7435): a
   * failed handshake is retried on the same host in plaintext. Under `enforce`, a session without
   * STARTTLS or without a valid certificate for the MX name is closed before MAIL FROM.
   */
  async function open(target: Target): Promise<SmtpSession> {
    const { domain, host, ip, policy } = target;
    const enforce = policy?.mode === 'enforce';
    const policyType: PolicyType = policy ? 'sts' : 'no-policy-found';
    const session = (tls: TlsUse) =>
      openSession({
        ip,
        port,
        mxHost: host,
        heloName: target.heloName,
        tls,
        connectionTimeoutMs: CONNECTION_TIMEOUT_MS,
        socketTimeoutMs: SOCKET_TIMEOUT_MS,
      });
    const refuse = (result: TlsResultType, detail: string) => {
      report.failure(domain, policyType, result);
      return Object.assign(new Error(`${host} [${ip}]: ${result} (${detail})`), {
        code: 'ETLSPOLICY',
        result,
      });
    };

    let opened: SmtpSession;
    try {
      opened = await session(enforce ? 'require' : 'opportunistic');
    } catch (err) {
      const e = err as Error & { code?: string; response?: string; tlsHandshakeFailed?: boolean };
      // requireTLS sends STARTTLS even when it is not offered; the refusal is the server's answer.
      if (enforce && e.code === 'ETLS' && e.response) throw refuse('starttls-not-supported', e.response);
      if (!e.tlsHandshakeFailed) throw err;
      if (enforce) throw refuse('validation-failure', `TLS handshake failed: ${e.message}`);
      report.failure(domain, policyType, 'validation-failure');
      return session('none');
    }
    const { tls } = opened;
    if (!tls.secure) {
      // Not offered, or refused with a 4xx/5xx: plaintext (only without an enforced policy).
      report.failure(domain, policyType, 'starttls-not-supported');
    } else if (policy && !tls.authorized) {
      const result = certificateResult(tls.authorizationError);
      if (enforce) {
        opened.close();
        throw refuse(result, tls.authorizationError ?? 'certificate not valid');
      }
      // `testing`: counted, and delivered as without a policy.
      report.failure(domain, policyType, result);
    } else {
      report.success(domain, policyType);
    }
    return opened;
  }

  async function deliverVia(target: Target, envelope: Envelope, raw: Buffer): Promise<DeliveryReceipt> {
    const key = `${target.heloName} ${target.host} ${target.policy?.mode === 'enforce' ? 'require' : 'may'}`;
    let stale = false;
    const attempt = () =>
      pool.withSession(
        target.ip,
        key,
        () => open(target),
        async (session) => {
          const reused = session.messages > 0;
          try {
            return await sendThrough(session, envelope, raw);
          } catch (err) {
            stale = reused && isStaleSession(err);
            throw err;
          }
        },
      );
    try {
      return { reply: await attempt(), host: target.host };
    } catch (err) {
      // A kept session the server closed meanwhile fails before the message was sent: once more
      // on a new session, rather than a deferral for a connection that was merely old.
      if (!stale || (err as { afterData?: boolean }).afterData) throw err;
      return { reply: await attempt(), host: target.host };
    }
  }

  return {
    async send(envelope, raw) {
      const domain = domainOf(envelope.to).toLowerCase();
      const heloName = heloNameFor(options.heloName, envelope.from);
      const [hosts, policy] = await Promise.all([mxHosts(resolveMx, domain), mtaSts?.policyFor(domain)]);
      const enforce = policy?.mode === 'enforce';
      // RFC 8461 §4.1: under `enforce`, an MX the policy does not name is no candidate at all.
      const candidates = enforce ? hosts.filter((host) => mxMatches(policy.mx, host)) : hosts;
      const refusals: string[] = [];
      if (enforce && candidates.length === 0) {
        report.failure(domain, 'sts', 'validation-failure');
        refusals.push(`no MX host (${hosts.join(', ')}) matches the policy's mx (${policy.mx.join(', ')})`);
      }
      let lastError: unknown;
      for (const host of candidates) {
        let addresses: string[];
        try {
          addresses = await addressesOf(resolver, host);
        } catch (err) {
          // No MX and no address: nothing receives mail for the domain (RFC 5321 §5.1).
          if (hosts.length === 1 && host === domain && (err as { code?: string }).code === 'ENOTFOUND') {
            throw smtpError('ENOTFOUND', `550 5.1.2 Recipient domain ${domain} has no MX and no address`);
          }
          lastError = err;
          refusals.push(`${host}: ${(err as Error).message}`);
          continue;
        }
        const reachable = options.allowPrivate ? addresses : addresses.filter(isPublicAddress);
        if (reachable.length === 0) {
          lastError = Object.assign(
            new Error(
              `${host} has only private addresses (${addresses.join(', ')}), which are not delivered to`,
            ),
            { code: 'EPRIVATE' },
          );
          refusals.push((lastError as Error).message);
          continue;
        }
        for (const ip of reachable.slice(0, MAX_ADDRESSES_PER_HOST)) {
          try {
            return await deliverVia({ domain, host, ip, heloName, policy }, envelope, raw);
          } catch (err) {
            lastError = err;
            // A reply from a server is its answer for this recipient; only a host that could not
            // be reached, that is closing its doors (421) or that the policy refused sends us on.
            // A failure after the whole message went out is no such case: that server may have
            // taken it, and the next would deliver it a second time. It waits for a retry.
            const code = (err as { responseCode?: number }).responseCode;
            if (code !== undefined && code !== 421) throw err;
            if ((err as { afterData?: boolean }).afterData) throw err;
            refusals.push((err as Error).message);
          }
        }
      }
      if (enforce) {
        throw Object.assign(
          new Error(`MTA-STS policy of ${domain} (enforce) allows no MX host now: ${refusals.join('; ')}`),
          { code: 'EMTASTS' },
        );
      }
      throw lastError;
    },
    async close() {
      pool.close();
    },
  };
}

/** One address of one MX host, for one message. */
interface Target {
  domain: string;
  host: string;
  ip: string;
  heloName: string;
  policy: StsPolicy | undefined;
}

/** A send that failed before the server answered anything about the message: its connection was gone. */
function isStaleSession(err: unknown): boolean {
  const e = err as { code?: string; command?: string; responseCode?: number };
  return (
    e.responseCode === undefined &&
    (e.code === 'ECONNECTION' || e.code === 'ESOCKET') &&
    (e.command === 'API' || e.command === 'MAIL FROM')
  );
}

function commonOptions() {
  return {
    pool: true as const,
    // Each connection carries many messages; the pool replaces it after this many.
    maxMessages: 1000,
    connectionTimeout: CONNECTION_TIMEOUT_MS,
    greetingTimeout: CONNECTION_TIMEOUT_MS,
    socketTimeout: SOCKET_TIMEOUT_MS,
  };
}

/** What a message goes out through: the relay's nodemailer pool, or a direct-delivery session. */
interface MailSender {
  sendMail(mail: { envelope: { from: string; to: string[]; size: number }; raw: Buffer }): Promise<unknown>;
}

async function sendThrough(pool: MailSender, envelope: Envelope, raw: Buffer): Promise<string> {
  // `size` is declared as SIZE= when the server offers SIZE, and checked by nodemailer against
  // the limit it announced, before MAIL FROM is even sent.
  const size = raw.length;
  try {
    // A UTF-8 address or header goes only to a server that offers SMTPUTF8 (sender/smtputf8.ts).
    const need = smtpUtf8Need(envelope, raw);
    if (need) return await sendInternational(pool, envelope, raw, need);
    const info = await pool.sendMail({ envelope: { from: envelope.from, to: [envelope.to], size }, raw });
    return String((info as { response?: unknown }).response ?? '');
  } catch (err) {
    const e = err as { code?: unknown; command?: unknown; responseCode?: unknown; message?: unknown };
    // nodemailer's own refusal of a message over the announced SIZE: no reply, so it would read
    // as a connection problem and be retried for days. It is the message's fault: say so as the
    // server would have at DATA.
    if (e.code === 'EMESSAGE' && e.command === 'MAIL FROM' && e.responseCode === undefined) {
      throw smtpError(
        'ESIZE',
        `552 5.3.4 message of ${size} bytes not sent: larger than the server accepts (${String(e.message)})`,
      );
    }
    throw err;
  }
}
