// The operator's own settings, on top of the configuration every process shares.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { ConfigError } from '../lib/config.js';

type Env = Record<string, string | undefined>;

export interface OperatorConfig {
  /** Namespace of the leader Lease: MAILPLANE_OPERATOR_NAMESPACE, else the pod's own, else default. */
  leaseNamespace: string;
  /** Name of the leader Lease. Default mailplane-operator. */
  leaseName: string;
  /** This replica in the Lease and in Events: the pod name plus a random suffix. */
  identity: string;
  /** Seconds a Lease holds without renewal (MAILPLANE_LEASE_DURATION_SECONDS). Default 15, as client-go. */
  leaseDurationMs: number;
  /** Two thirds of the lease: the leader gives up this long after its last renewal. */
  renewDeadlineMs: number;
  /**
   * Pause between renewals and attempts: 2 s as client-go, or a fifth of a lease shorter than 10 s.
   * A standby takes over at most a lease duration plus this after the leader's last renewal.
   */
  retryPeriodMs: number;
  /**
   * Namespaces where the operator may keep Secrets, comma-separated (MAILPLANE_SECRET_NAMESPACES,
   * set by the chart from operator.secretNamespaces, as its RBAC is); `*` or unset: every one.
   * A Tenant or SendingDomain elsewhere is refused before it gets a finalizer.
   */
  secretNamespaces: string[] | undefined;
  /** Seconds between full resyncs (MAILPLANE_RESYNC_SECONDS). Default 600. */
  resyncMs: number;
  /** Seconds between DNS checks of a verified domain (MAILPLANE_DNS_RECHECK_SECONDS). Default 300. */
  dnsRecheckMs: number;
}

/** client-go's retry period: what a standby's takeover and a leader's renewals wait between tries. */
const RETRY_PERIOD_MS = 2_000;

function secretNamespaces(raw: string | undefined): string[] | undefined {
  const list = (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return list.length === 0 || list.includes('*') ? undefined : list;
}

/** The namespace a pod runs in, as its service-account mount tells it. */
const POD_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export function readOperatorConfig(env: Env): Readonly<OperatorConfig> {
  const problems: string[] = [];
  const seconds = (key: string, fallback: number, min: number): number => {
    const raw = env[key];
    if (raw === undefined || raw === '') return fallback * 1000;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min) {
      problems.push(`${key} must be a number of seconds ≥ ${min}, got "${raw}"`);
      return fallback * 1000;
    }
    return value * 1000;
  };
  const leaseDurationMs = seconds('MAILPLANE_LEASE_DURATION_SECONDS', 15, 2);
  const podNamespace = existsSync(POD_NAMESPACE_FILE)
    ? readFileSync(POD_NAMESPACE_FILE, 'utf8').trim()
    : undefined;
  const config: OperatorConfig = {
    leaseNamespace: env.MAILPLANE_OPERATOR_NAMESPACE || podNamespace || 'default',
    leaseName: env.MAILPLANE_LEASE_NAME || 'mailplane-operator',
    identity: `${env.POD_NAME || hostname()}_${randomBytes(4).toString('hex')}`,
    leaseDurationMs,
    renewDeadlineMs: Math.round((leaseDurationMs * 2) / 3),
    retryPeriodMs: Math.min(RETRY_PERIOD_MS, Math.round(leaseDurationMs / 5)),
    secretNamespaces: secretNamespaces(env.MAILPLANE_SECRET_NAMESPACES),
    resyncMs: seconds('MAILPLANE_RESYNC_SECONDS', 600, 1),
    dnsRecheckMs: seconds('MAILPLANE_DNS_RECHECK_SECONDS', 300, 1),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}
