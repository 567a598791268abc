// Configuration from the environment: one typed, frozen object, with every problem reported at
// once so that a misconfigured Deployment fails with the whole list, not one key per restart.

import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { isIPv4, isIPv6 } from 'node:net';
import type { Level } from './log.js';
import { readDnsSettings, type DnsSettings } from './dns-settings.js';
import { readTrackingConfig, type TrackingConfig } from './tracking-config.js';
import { UserError } from './user-error.js';

export interface Config {
  /** Postgres connection string. Required (`mailplane dev` starts an embedded Postgres instead). */
  databaseUrl: string;
  /** 32-byte key derived from MAILPLANE_SECRET_KEY; encrypts DKIM private keys at rest. */
  secretKey: Buffer;
  /** HTTP port of the api (and of the probes and metrics of the other processes). Default 8080. */
  port: number;
  /** Port of the inbound SMTP listener (`mailplane smtp`). Default 2525: binding 25 needs privilege. */
  smtpPort: number;
  /**
   * Port of SMTP submission with STARTTLS (`mailplane submission`). Default 587 (RFC 6409); the
   * chart's container listens on 2587 instead, since binding below 1024 needs privilege.
   */
  submissionPort: number;
  /** Port of SMTP submission over implicit TLS (RFC 8314). Default 465; the chart's container, 2465. */
  submissionsPort: number;
  /** PEM certificate chain of SMTP submission's TLS, re-read when it changes. Required by `submission`. */
  tlsCertFile: string | undefined;
  /** PEM private key of that certificate, re-read with it. */
  tlsKeyFile: string | undefined;
  /** debug | info | warn | error. Default info. */
  logLevel: Level;
  /** smtp(s)://user:pass@host:port to relay all mail through; unset means direct MX delivery. */
  relayUrl: string | undefined;
  /** Public name of the inbound SMTP service, the MX of return-path domains. Unset: no MX is listed. */
  inboundHost: string | undefined;
  /** Name this host gives in EHLO. Default the machine's hostname. */
  heloName: string;
  /** Jobs one sender process runs at once. Default 32 (SMTP waits on the network, not the CPU). */
  senderConcurrency: number;
  /**
   * Postgres connections one process may open. Default 10: a job holds a connection only for
   * its two short statements, not while it talks SMTP, so 32 jobs share a few; and the chart's
   * default replicas stay far below a stock Postgres' 100 connections (see the README).
   */
  databasePoolSize: number;
  /** Largest accepted message (body and attachments, as sent in the request). Default 10 MiB. */
  maxMessageBytes: number;
  /** Recipients (to + cc + bcc) in one send. Default 50, as Resend. */
  maxRecipients: number;
  /** How long a deferred message keeps being retried before it fails. Default 5 days. */
  messageLifetimeSeconds: number;
  /** Wall-clock limit of one template render. Default 250 ms. */
  renderTimeoutMs: number;
  /** Heap limit of the template sandbox. Default 32 MiB. */
  renderMemoryMb: number;
  /**
   * Webhook attempts one sender runs at once, apart from its send slots. Default 32: an attempt is
   * mostly a wait on the receiver, and with more under way each claim (one statement and one
   * commit) takes and records more of them: about 30 % less CPU per delivery than at 8.
   */
  webhookConcurrency: number;
  /**
   * Lets webhooks reach private and loopback addresses and plain http. Default false: a tenant's
   * URL must not reach inside the cluster. For tests and `make dev`.
   */
  webhooksAllowPrivate: boolean;
  /** Template isolates per process, each up to renderMemoryMb. Default 2: a tenant holds all but one. */
  renderIsolates: number;
  /**
   * Public base URL of the api's public endpoints (one-click unsubscribe `/u/…`, tracking `/t/…`),
   * as recipients reach it, e.g. https://mail.example.com. Unset: messages offer only the mailto
   * unsubscribe. A SendingDomain's tracking domain takes its place for that domain's mail.
   */
  publicUrl: string | undefined;
  /**
   * Resolvers that DNS checks ask, host[:port] comma-separated (MAILPLANE_DNS_SERVERS), each an IP
   * address (`[v6]:port` with a port). Default the system's.
   */
  dnsServers: string[] | undefined;
  /**
   * What each domain's SPF record authorises and where its DMARC reports go (MAILPLANE_SPF_INCLUDE,
   * MAILPLANE_EGRESS_IPS, MAILPLANE_DMARC_RUA; lib/dns-settings.ts). Default none of them.
   */
  dns: DnsSettings;
  /**
   * Port of direct delivery to MX hosts (MAILPLANE_MX_PORT). Default 25, the only port MX hosts
   * listen on; another is for tests, whose MTAs on loopback cannot all have 25.
   */
  mxPort: number;
  /**
   * Port of the HTTPS fetch of MTA-STS policies (MAILPLANE_MTA_STS_PORT). Default 443, which RFC
   * 8461 fixes; another is for tests, whose policy server on loopback runs unprivileged.
   */
  mtaStsPort: number;
  /**
   * Lets direct delivery reach MX and MTA-STS hosts at private, loopback and link-local addresses
   * (MAILPLANE_DELIVERY_ALLOW_PRIVATE). Default false: a recipient domain's DNS must not make the
   * sender talk to servers inside the cluster. Tests, whose MTAs are on loopback, set it.
   */
  deliveryAllowPrivate: boolean;
  /** Open and click tracking: the trusted proxies and the machine signals' tunables (lib/tracking-config.ts). */
  tracking: TrackingConfig;
}

type Env = Record<string, string | undefined>;

/**
 * Reads the configuration every Mailplane process shares.
 *
 *   const config = readConfig(process.env);   // throws ConfigError listing every bad key
 */
export function readConfig(env: Env): Readonly<Config> {
  const problems: string[] = [];
  const int = (key: string, fallback: number, min = 1): number => {
    const raw = env[key];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min) {
      problems.push(`${key} must be an integer ≥ ${min}, got "${raw}"`);
      return fallback;
    }
    return value;
  };

  const bool = (key: string, fallback: boolean): boolean => {
    const raw = env[key];
    if (raw === undefined || raw === '') return fallback;
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    problems.push(`${key} must be true or false, got "${raw}"`);
    return fallback;
  };

  const databaseUrl = env.DATABASE_URL ?? '';
  if (!databaseUrl) problems.push('DATABASE_URL is required (postgres://user:pass@host:5432/db)');

  const secret = env.MAILPLANE_SECRET_KEY ?? '';
  if (secret.length < 32) {
    problems.push('MAILPLANE_SECRET_KEY must be at least 32 characters (e.g. `openssl rand -base64 32`)');
  }

  const relayUrl = env.MAILPLANE_RELAY_URL || undefined;
  if (relayUrl && !/^smtps?:\/\//.test(relayUrl)) {
    problems.push(`MAILPLANE_RELAY_URL must start with smtp:// or smtps://, got "${relayUrl}"`);
  }

  const publicUrl = (env.MAILPLANE_PUBLIC_URL || '').replace(/\/+$/, '') || undefined;
  if (publicUrl && !/^https?:\/\/[^/?#@\s]+(\/[^?#\s]*)?$/.test(publicUrl)) {
    problems.push(
      `MAILPLANE_PUBLIC_URL must be an https:// (or http://) base URL without query or credentials, got "${publicUrl}"`,
    );
  }

  const dnsServers = env.MAILPLANE_DNS_SERVERS
    ? env.MAILPLANE_DNS_SERVERS.split(',').map((server) => server.trim())
    : undefined;
  for (const server of dnsServers ?? []) {
    if (!isDnsServer(server)) {
      problems.push(`MAILPLANE_DNS_SERVERS must list IP addresses with optional ports, got "${server}"`);
    }
  }

  const logLevel = (env.LOG_LEVEL ?? 'info') as Level;
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) {
    problems.push(`LOG_LEVEL must be debug, info, warn or error, got "${logLevel}"`);
  }

  const config: Config = {
    databaseUrl,
    secretKey: deriveKey(secret),
    port: int('PORT', 8080, 0),
    smtpPort: int('MAILPLANE_SMTP_PORT', 2525, 0),
    submissionPort: int('MAILPLANE_SUBMISSION_PORT', 587, 0),
    submissionsPort: int('MAILPLANE_SUBMISSIONS_PORT', 465, 0),
    tlsCertFile: env.MAILPLANE_TLS_CERT_FILE || undefined,
    tlsKeyFile: env.MAILPLANE_TLS_KEY_FILE || undefined,
    logLevel,
    relayUrl,
    inboundHost: env.MAILPLANE_INBOUND_HOST || undefined,
    heloName: env.MAILPLANE_HELO_NAME || hostname(),
    senderConcurrency: int('MAILPLANE_SENDER_CONCURRENCY', 32),
    databasePoolSize: int('MAILPLANE_DATABASE_POOL_SIZE', 10, 2),
    maxMessageBytes: int('MAILPLANE_MAX_MESSAGE_BYTES', 10 * 1024 * 1024),
    maxRecipients: int('MAILPLANE_MAX_RECIPIENTS', 50),
    messageLifetimeSeconds: int('MAILPLANE_MESSAGE_LIFETIME_SECONDS', 5 * 24 * 3600),
    renderTimeoutMs: int('MAILPLANE_RENDER_TIMEOUT_MS', 250),
    renderMemoryMb: int('MAILPLANE_RENDER_MEMORY_MB', 32, 8),
    renderIsolates: int('MAILPLANE_RENDER_ISOLATES', 2),
    webhookConcurrency: int('MAILPLANE_WEBHOOK_CONCURRENCY', 32),
    webhooksAllowPrivate: bool('MAILPLANE_WEBHOOKS_ALLOW_PRIVATE', false),
    publicUrl,
    dnsServers,
    dns: readDnsSettings(env, problems),
    mxPort: int('MAILPLANE_MX_PORT', 25),
    mtaStsPort: int('MAILPLANE_MTA_STS_PORT', 443),
    deliveryAllowPrivate: bool('MAILPLANE_DELIVERY_ALLOW_PRIVATE', false),
    tracking: readTrackingConfig(env, problems),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

export class ConfigError extends UserError {
  override readonly code = 'ECONFIG';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** An IP address with an optional port, as node:dns setServers takes it: 10.0.0.2:53, [fd00::2]:53, fd00::2. */
function isDnsServer(server: string): boolean {
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(server);
  const v4 = /^([\d.]+)(?::(\d{1,5}))?$/.exec(server);
  const [host, port] = bracketed ? [bracketed[1]!, bracketed[2]] : v4 ? [v4[1]!, v4[2]] : [server, undefined];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return false;
  return bracketed || !v4 ? isIPv6(host) : isIPv4(host);
}

/** The secret may be any string of 32+ characters; the cipher key is its SHA-256 under a label. */
function deriveKey(secret: string): Buffer {
  return createHash('sha256').update('mailplane/v1/secret-key\0').update(secret).digest();
}
