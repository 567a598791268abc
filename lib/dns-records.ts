// The DNS records a domain's owner must publish for mail from Mailplane to be accepted: DKIM
// (the public key), SPF (who may send for the bounce domain), DMARC (a reporting policy to
// start from) and, for a separate return-path domain, the MX that brings its bounces back. Shown by `GET /v1/domains` and, in a cluster, in the SendingDomain's status.

import { dkimTxtValue, type DkimAlgorithm } from './crypto.js';

export interface DnsRecord {
  type: 'TXT' | 'MX';
  name: string;
  value: string;
  purpose: 'dkim' | 'spf' | 'dmarc' | 'return-path';
}

export interface DomainKeyFacts {
  name: string;
  selector: string;
  dkim_algorithm: DkimAlgorithm;
  dkim_public_key: string;
  return_path_domain: string | null;
}

/**
 * Lists the records to publish for a domain. `inboundHost` is the public name of Mailplane's
 * inbound SMTP service; a return-path domain's MX must point there for bounces to come back.
 *
 *   dnsRecords(domainRow)  // [{ type: 'TXT', name: 'mp1._domainkey.mail.example.com', ... }, ...]
 */
export function dnsRecords(domain: DomainKeyFacts, options: { inboundHost?: string } = {}): DnsRecord[] {
  const returnPath: DnsRecord[] =
    domain.return_path_domain && options.inboundHost
      ? [
          {
            type: 'MX',
            name: domain.return_path_domain,
            value: `10 ${options.inboundHost}`,
            purpose: 'return-path',
          },
        ]
      : [];
  return [
    {
      type: 'TXT',
      name: `${domain.selector}._domainkey.${domain.name}`,
      value: dkimTxtValue(domain.dkim_algorithm, domain.dkim_public_key),
      purpose: 'dkim',
    },
    {
      type: 'TXT',
      name: domain.return_path_domain ?? domain.name,
      // `mx` authorises the hosts the domain receives on; a relay adds its own include.
      value: 'v=spf1 mx ~all',
      purpose: 'spf',
    },
    // p=none reports without rejecting: the safe start before moving to quarantine or reject.
    { type: 'TXT', name: `_dmarc.${domain.name}`, value: 'v=DMARC1; p=none', purpose: 'dmarc' },
    ...returnPath,
  ];
}
