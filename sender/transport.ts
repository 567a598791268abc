// Delivery of signed messages over pooled SMTP connections: through one relay when
// MAILPLANE_RELAY_URL is set, otherwise straight to the MX hosts of each recipient's domain, with
// one connection pool per destination host.
//
// Errors are nodemailer's: `code` (ECONNECTION, ETIMEDOUT, EENVELOPE, EMESSAGE, EAUTH, …) and, when
// the server answered, `responseCode` and `response`. DNS outcomes that are final (a domain that
// does not exist, a null MX) are reported the same way, with the 5xx a receiving server would give,
// and so is a message larger than the SIZE the server announced (552 5.3.4, refused before DATA).
//
// Wire manners: `SIZE=` is declared on MAIL FROM whenever the server offers SIZE (RFC 1870);
// credentials are never sent over an unencrypted connection (a relay URL without smtps:// gets
// STARTTLS or no AUTH at all, unless it says `?insecure_auth=true`); EHLO names a fully qualified
// domain (heloNameFor).

import { promises as dns, type MxRecord } from 'node:dns';
import nodemailer from 'nodemailer';
import type { Transporter } from 'nodemailer';
import { domainOf } from '../lib/address.js';

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

export type MxResolver = (domain: string) => Promise<MxRecord[]>;

export interface TransportOptions {
  /**
   * smtp(s)://user:pass@host:port; unset means direct MX delivery. `?insecure_auth=true` allows
   * AUTH over a connection that is not encrypted (INSECURE_AUTH_PARAM).
   */
  relayUrl?: string;
  /** Our name in EHLO; when it is not a fully qualified domain, see heloNameFor. */
  heloName: string;
  /** Connections per pool: the relay's, or each destination host's. */
  maxConnections?: number;
  /** Direct delivery only: MX lookup (DNS by default) and port (25 by default; tests use another). */
  resolveMx?: MxResolver;
  port?: number;
}

/**
 * Connections per destination host in direct delivery. Large receivers throttle senders that open
 * many connections from one address; a few connections, each carrying many messages, go further.
 */
const DEFAULT_CONNECTIONS_PER_HOST = 5;
/** Destination pools kept open; beyond this, the least recently used idle one is closed. */
const MAX_POOLS = 500;
/** MX hosts tried for one message; later ones are rarely better than a retry later. */
const MAX_MX_HOSTS = 5;
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
        maxConnections: options.maxConnections ?? DEFAULT_CONNECTIONS_PER_HOST,
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
  const resolveMx = options.resolveMx ?? ((domain: string) => dns.resolveMx(domain));
  const port = options.port ?? 25;
  // Insertion order is recency of use: a used pool is moved to the end.
  const pools = new Map<string, { pool: Transporter; inFlight: number }>();

  const poolFor = (host: string, name: string) => {
    const key = `${name} ${host}`;
    let entry = pools.get(key);
    if (entry) pools.delete(key);
    else {
      entry = {
        inFlight: 0,
        pool: nodemailer.createTransport({
          ...commonOptions(),
          name,
          host,
          port,
          // Opportunistic TLS (RFC 7435): MX certificates rarely match the MX name, and refusing
          // them would only send the message in clear text elsewhere or not at all.
          tls: { rejectUnauthorized: false },
          opportunisticTLS: true,
          maxConnections: options.maxConnections ?? DEFAULT_CONNECTIONS_PER_HOST,
        }),
      };
      closeIdlePools();
    }
    pools.set(key, entry);
    return entry;
  };
  const closeIdlePools = () => {
    for (const [host, entry] of pools) {
      if (pools.size < MAX_POOLS) return;
      if (entry.inFlight > 0) continue;
      entry.pool.close();
      pools.delete(host);
    }
  };

  return {
    async send(envelope, raw) {
      const hosts = await mxHosts(resolveMx, domainOf(envelope.to).toLowerCase());
      const name = heloNameFor(options.heloName, envelope.from);
      let lastError: unknown;
      for (const host of hosts) {
        const entry = poolFor(host, name);
        entry.inFlight++;
        try {
          return { reply: await sendThrough(entry.pool, envelope, raw), host };
        } catch (err) {
          lastError = err;
          // A reply from a server is its answer for this recipient; only a host that could not be
          // reached, or that is closing its doors (421), sends us to the next one.
          const code = (err as { responseCode?: number }).responseCode;
          if (code !== undefined && code !== 421) throw err;
        } finally {
          entry.inFlight--;
        }
      }
      throw lastError;
    },
    async close() {
      for (const { pool } of pools.values()) pool.close();
      pools.clear();
    },
  };
}

/** MX hosts by preference, equal preferences shuffled (RFC 5321 §5.1); the domain itself if no MX. */
export async function mxHosts(resolveMx: MxResolver, domain: string): Promise<string[]> {
  let records: MxRecord[];
  try {
    records = await resolveMx(domain);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === dns.NOTFOUND) {
      throw smtpError('ENOTFOUND', `550 5.1.2 Recipient domain ${domain} does not exist`);
    }
    // No MX records: the implicit MX is the domain's own address (RFC 5321 §5.1).
    if (code === dns.NODATA) return [domain];
    throw Object.assign(new Error(`MX lookup of ${domain} failed: ${code}`), {
      code: 'EDNS',
      originalCode: code,
    });
  }
  if (records.length === 0) return [domain];
  // RFC 7505: a single "." MX says the domain accepts no mail at all.
  if (records.some((r) => r.exchange === '' || r.exchange === '.')) {
    throw smtpError('ENULLMX', `556 5.1.10 Recipient domain ${domain} does not accept mail (null MX)`);
  }
  return records
    .map((r) => ({ ...r, tieBreak: Math.random() }))
    .sort((a, b) => a.priority - b.priority || a.tieBreak - b.tieBreak)
    .slice(0, MAX_MX_HOSTS)
    .map((r) => r.exchange);
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

async function sendThrough(pool: Transporter, envelope: Envelope, raw: Buffer): Promise<string> {
  // `size` is declared as SIZE= when the server offers SIZE, and checked by nodemailer against
  // the limit it announced, before MAIL FROM is even sent.
  const size = raw.length;
  try {
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

/** An error shaped like nodemailer's when a server rejects: callers branch on responseCode. */
function smtpError(code: string, response: string): Error {
  const responseCode = Number(response.slice(0, 3));
  return Object.assign(new Error(response), { code, response, responseCode, permanent: responseCode >= 500 });
}
