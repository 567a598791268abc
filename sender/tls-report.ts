// TLS-RPT-style accounting of direct delivery (RFC 8460): per destination domain, the SMTP sessions
// that negotiated TLS and the failures by the RFC's result types, as Prometheus counters. No
// reports are sent; the counters are what an operator watches (and alerts on) instead.
//
// Label cardinality is bounded: a bulk sender reaches thousands of domains, and each would be a
// series of its own. The first MAX_REPORTED_DOMAINS domains a process meets keep their name, the
// rest are counted under `other`; the big receivers, met first, stay visible.

import type { Metrics } from '../lib/metrics.js';

/** RFC 8460 §4.4: `sts` when an MTA-STS policy applied (enforce or testing), else `no-policy-found`. */
export type PolicyType = 'sts' | 'no-policy-found';

/** RFC 8460 §4.3 result types (the DANE ones aside: Mailplane does not validate DANE). */
export type TlsResultType =
  | 'starttls-not-supported'
  | 'certificate-host-mismatch'
  | 'certificate-expired'
  | 'certificate-not-trusted'
  | 'validation-failure'
  | 'sts-policy-fetch-error'
  | 'sts-policy-invalid'
  | 'sts-webpki-invalid';

/** Distinct domain labels per process; more would grow the metrics of a bulk sender without bound. */
export const MAX_REPORTED_DOMAINS = 100;
/** The label of every domain beyond MAX_REPORTED_DOMAINS. */
export const OTHER_DOMAINS = 'other';

export interface TlsReport {
  /** A session that negotiated TLS (and, under an MTA-STS policy, validated its certificate). */
  success(domain: string, policyType: PolicyType): void;
  failure(domain: string, policyType: PolicyType, result: TlsResultType): void;
}

/**
 * Records into the process's metrics.
 *
 *   const report = createTlsReport(metrics);
 *   report.failure('example.org', 'sts', 'certificate-expired');
 */
export function createTlsReport(
  metrics: Pick<Metrics, 'tlsSessions' | 'tlsFailures'>,
  maxDomains = MAX_REPORTED_DOMAINS,
): TlsReport {
  const named = new Set<string>();
  const label = (domain: string) => {
    if (named.has(domain)) return domain;
    if (named.size >= maxDomains) return OTHER_DOMAINS;
    named.add(domain);
    return domain;
  };
  return {
    success: (domain, policyType) =>
      metrics.tlsSessions.inc({ domain: label(domain), policy_type: policyType }),
    failure: (domain, policyType, result) =>
      metrics.tlsFailures.inc({ domain: label(domain), policy_type: policyType, result_type: result }),
  };
}

/** Reports nothing: for a transport without metrics (tests of the bare transport, the relay). */
export const noTlsReport: TlsReport = { success: () => {}, failure: () => {} };

/**
 * The result type of a certificate that did not validate, from Node's verification code (a
 * TLSSocket's authorizationError, or the code of the error a verifying connection failed with).
 *
 *   certificateResult('CERT_HAS_EXPIRED')   // 'certificate-expired'
 */
export function certificateResult(code: string | undefined): TlsResultType {
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return 'certificate-expired';
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
    case 'HOSTNAME_MISMATCH':
      return 'certificate-host-mismatch';
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'CERT_UNTRUSTED':
    case 'CERT_REJECTED':
      return 'certificate-not-trusted';
    default:
      return 'validation-failure';
  }
}

/** Whether an error code is one of certificate verification (as opposed to the network or the protocol). */
export function isCertificateError(code: string | undefined): boolean {
  return (
    code !== undefined &&
    (certificateResult(code) !== 'validation-failure' || /^(CERT_|ERR_TLS_CERT)/.test(code))
  );
}
