// The DNS records a domain's owner must publish for mail from Mailplane to be accepted: DKIM
// (the public key), SPF (who may send for the envelope domain: the relay or the egress addresses
// the installation names, lib/dns-settings.ts), DMARC (a reporting policy to start from, with the
// installation's report address) and, for a separate return-path domain, the MX that brings its
// bounces back. Listed by domainRecords, the one list both `GET /v1/domains` and the
// SendingDomain's status.dnsRecords show: during a DKIM rotation it holds every key's record.

import { dkimTxtValue, type DkimAlgorithm } from './crypto.js';
import type { DnsSettings } from './dns-settings.js';

export interface DnsRecord {
  type: 'TXT' | 'MX' | 'CNAME';
  name: string;
  value: string;
  purpose: 'dkim' | 'spf' | 'dmarc' | 'return-path' | 'tracking';
}

/** Where a listed DKIM key is in its life: signing, waiting to sign, or signing no more. */
export type KeyState = 'active' | 'next' | 'retiring';

/** A record to publish, with the state of its key for a DKIM one. */
export type ListedRecord = DnsRecord & { state?: KeyState };

/**
 * A DKIM key of the domain besides the one its row signs with (a dkim_keys row): the next key of
 * a rotation, one being retired, the RSA key of a dual-signing domain (lib/reconcile/dkim-keys.ts).
 */
export interface OtherDkimKey {
  selector: string;
  algorithm: DkimAlgorithm;
  public_key: string;
  state: KeyState;
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
 * The TXT record that publishes one DKIM key of a domain, under its selector.
 *
 *   dkimRecord('example.com', { selector: 'mp1', algorithm: 'ed25519', public_key: 'MCow…' })
 *   // { type: 'TXT', name: 'mp1._domainkey.example.com', value: 'v=DKIM1; k=ed25519; p=MCow…', purpose: 'dkim' }
 */
export function dkimRecord(
  domainName: string,
  key: Pick<OtherDkimKey, 'selector' | 'algorithm' | 'public_key'>,
): DnsRecord {
  return {
    type: 'TXT',
    name: `${key.selector}._domainkey.${domainName}`,
    value: dkimTxtValue(key.algorithm, key.public_key),
    purpose: 'dkim',
  };
}

/**
 * Every record the domain's owner is to publish: dnsRecords' with the signing key's marked
 * `active`, and right after it each other key's (`others`: the domain's dkim_keys rows) with its
 * state, so that a zone is written in one go. The SendingDomain's status.dnsRecords and
 * `GET /v1/domains` both list this, so that they never disagree.
 *
 *   domainRecords(domainRow, await loadKeys(db, domainRow.id), { inboundHost, dns: config.dns })
 *   // [{ purpose: 'dkim', state: 'active', … }, { purpose: 'dkim', state: 'next', … }, { purpose: 'spf', … }, …]
 */
export function domainRecords(
  domain: DomainKeyFacts,
  others: readonly OtherDkimKey[],
  options: DnsRecordOptions = {},
): ListedRecord[] {
  const records: ListedRecord[] = dnsRecords(domain, options).map((r) =>
    r.purpose === 'dkim' ? { ...r, state: 'active' as const } : r,
  );
  const at = records.findIndex((r) => r.purpose === 'dkim') + 1;
  records.splice(at, 0, ...others.map((key) => ({ ...dkimRecord(domain.name, key), state: key.state })));
  return records;
}

/**
 * Whether receivers need the record for the mail signed now: a next key's record is the
 * rotation's to wait for, and a retiring key's may already be gone without harm to new mail. The
 * domain's verification (DNSVerified, its status in the api) is about these.
 *
 *   records.filter(inUse)
 */
export function inUse(record: ListedRecord): boolean {
  return record.state === undefined || record.state === 'active';
}

/**
 * The records to publish for a domain, with the key it signs with only (domainRecords adds the
 * others'). `inboundHost` is the public name of Mailplane's inbound SMTP service; a return-path
 * domain's MX must point there for bounces to come back.
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
    dkimRecord(domain.name, {
      selector: domain.selector,
      algorithm: domain.dkim_algorithm,
      public_key: domain.dkim_public_key,
    }),
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
