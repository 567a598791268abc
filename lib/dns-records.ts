// The DNS records a domain's owner must publish for mail from Mailplane to be accepted: DKIM
// (the public key), SPF (who may send for the envelope domain: the relay or the egress addresses
// the installation names, lib/dns-settings.ts), DMARC (a reporting policy to start from, with the
// installation's report address) and, for a separate return-path domain, the MX that brings its
// bounces back. Shown by `GET /v1/domains` and, in a cluster, in the SendingDomain's status.

import { dkimTxtValue, type DkimAlgorithm } from './crypto.js';
import type { DnsSettings } from './dns-settings.js';

export interface DnsRecord {
  type: 'TXT' | 'MX' | 'CNAME';
  name: string;
  value: string;
  purpose: 'dkim' | 'spf' | 'dmarc' | 'return-path' | 'tracking';
}

export interface DomainKeyFacts {
  name: string;
  selector: string;
  dkim_algorithm: DkimAlgorithm;
  dkim_public_key: string;
  return_path_domain: string | null;
  /** The host tracked links are served under (spec.tracking.domain), a CNAME to the public host. */
  tracking_domain?: string | null;
}

export interface DnsRecordOptions {
  /** Public name of Mailplane's inbound SMTP service (config.inboundHost). */
  inboundHost?: string;
  /** What SPF authorises and where DMARC reports go (config.dns). */
  dns?: DnsSettings;
  /** The host of MAILPLANE_PUBLIC_URL, which a tracking domain is a CNAME of. */
  trackingTarget?: string;
}

/**
 * The domain of the envelope sender (MAIL FROM), where receivers evaluate SPF: the return-path
 * domain once the installation has the inbound host its MX points at, else none, and the From
 * address stands in (sender/send-message.ts).
 *
 *   returnPathDomain({ name: 'example.com', return_path_domain: 'bounces.example.com' }, 'mx.mp.example')
 *   // 'bounces.example.com'
 */
export function returnPathDomain(
  domain: Pick<DomainKeyFacts, 'return_path_domain'>,
  inboundHost: string | undefined,
): string | undefined {
  return domain.return_path_domain && inboundHost ? domain.return_path_domain : undefined;
}

/**
 * The SPF record Mailplane's mail needs: the relay's `include:` and the egress addresses, then
 * `~all` (a soft fail for anyone else, the usual start). Without either setting Mailplane cannot
 * name its senders, and `?all` claims nothing: SPF is neutral and DMARC passes on DKIM alone.
 *
 *   spfValue({ spfInclude: ['amazonses.com'], egressIps: ['203.0.113.5'], dmarcRua: [] })
 *   // 'v=spf1 include:amazonses.com ip4:203.0.113.5 ~all'
 */
export function spfValue(dns: DnsSettings | undefined): string {
  const terms = [
    ...(dns?.spfInclude ?? []).map((domain) => `include:${domain}`),
    ...(dns?.egressIps ?? []).map((range) => `${range.includes(':') ? 'ip6' : 'ip4'}:${range}`),
  ];
  return terms.length ? `v=spf1 ${terms.join(' ')} ~all` : 'v=spf1 ?all';
}

/**
 * Lists the records to publish for a domain. `inboundHost` is the public name of Mailplane's
 * inbound SMTP service; a return-path domain's MX must point there for bounces to come back.
 *
 *   dnsRecords(domainRow, { inboundHost, dns: config.dns })
 *   // [{ type: 'TXT', name: 'mp1._domainkey.mail.example.com', ... }, ...]
 */
export function dnsRecords(domain: DomainKeyFacts, options: DnsRecordOptions = {}): DnsRecord[] {
  const bounces = returnPathDomain(domain, options.inboundHost);
  const returnPath: DnsRecord[] = bounces
    ? [{ type: 'MX', name: bounces, value: `10 ${options.inboundHost}`, purpose: 'return-path' }]
    : [];
  const rua = options.dns?.dmarcRua ?? [];
  return [
    {
      type: 'TXT',
      name: `${domain.selector}._domainkey.${domain.name}`,
      value: dkimTxtValue(domain.dkim_algorithm, domain.dkim_public_key),
      purpose: 'dkim',
    },
    // At the envelope domain, where SPF is evaluated; the From domain's own record is not read.
    { type: 'TXT', name: bounces ?? domain.name, value: spfValue(options.dns), purpose: 'spf' },
    {
      type: 'TXT',
      name: `_dmarc.${domain.name}`,
      // p=none reports without rejecting: the safe start before moving to quarantine or reject.
      value: `v=DMARC1; p=none${rua.length ? `; rua=${rua.map((a) => `mailto:${a}`).join(',')}` : ''}`,
      purpose: 'dmarc',
    },
    ...returnPath,
    // Tracked links and the open pixel are served by the api under the domain's own name.
    ...(domain.tracking_domain && options.trackingTarget
      ? [
          {
            type: 'CNAME',
            name: domain.tracking_domain,
            value: options.trackingTarget,
            purpose: 'tracking',
          } as const,
        ]
      : []),
  ];
}
