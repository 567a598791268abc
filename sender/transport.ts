// Delivery of signed messages over pooled SMTP connections: through one relay when
// MAILPLANE_RELAY_URL is set, otherwise straight to the MX hosts of each recipient's domain, with
// one connection pool per destination host.
//
// Errors are nodemailer's: `code` (ECONNECTION, ETIMEDOUT, EENVELOPE, EMESSAGE, EAUTH, …) and, when
// the server answered, `responseCode` and `response`. DNS outcomes that are final (a domain that
// does not exist, a null MX) are reported the same way, with the 5xx a receiving server would give.

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
  /** smtp(s)://user:pass@host:port; unset means direct MX delivery. */
  relayUrl?: string;
  /** Our name in EHLO. */
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
  const pool = nodemailer.createTransport({
    ...commonOptions(options),
    host,
    port: url.port ? Number(url.port) : secure ? 465 : 587,
    secure,
    auth: url.username
      ? { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) }
      : undefined,
    maxConnections: options.maxConnections ?? DEFAULT_CONNECTIONS_PER_HOST,
  });
  return {
    send: async (envelope, raw) => ({ reply: await sendThrough(pool, envelope, raw), host }),
    close: async () => pool.close(),
  };
}

function directTransport(options: TransportOptions): Transport {
  const resolveMx = options.resolveMx ?? ((domain: string) => dns.resolveMx(domain));
  const port = options.port ?? 25;
  // Insertion order is recency of use: a used pool is moved to the end.
  const pools = new Map<string, { pool: Transporter; inFlight: number }>();

  const poolFor = (host: string) => {
    let entry = pools.get(host);
    if (entry) pools.delete(host);
    else {
      entry = {
        inFlight: 0,
        pool: nodemailer.createTransport({
          ...commonOptions(options),
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
    pools.set(host, entry);
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
      let lastError: unknown;
      for (const host of hosts) {
        const entry = poolFor(host);
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

function commonOptions(options: TransportOptions) {
  return {
    pool: true as const,
    name: options.heloName,
    // Each connection carries many messages; the pool replaces it after this many.
    maxMessages: 1000,
    connectionTimeout: CONNECTION_TIMEOUT_MS,
    greetingTimeout: CONNECTION_TIMEOUT_MS,
    socketTimeout: SOCKET_TIMEOUT_MS,
  };
}

async function sendThrough(pool: Transporter, envelope: Envelope, raw: Buffer): Promise<string> {
  const info = await pool.sendMail({ envelope: { from: envelope.from, to: [envelope.to] }, raw });
  return String((info as { response?: unknown }).response ?? '');
}

/** An error shaped like nodemailer's when a server rejects: callers branch on responseCode. */
function smtpError(code: string, response: string): Error {
  const responseCode = Number(response.slice(0, 3));
  return Object.assign(new Error(response), { code, response, responseCode, permanent: responseCode >= 500 });
}
