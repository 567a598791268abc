// The DNS records a domain's owner must publish for mail from Mailplane to be accepted: DKIM
// (the public key), SPF (who may send for the bounce domain) and DMARC (a reporting policy to
// start from). Shown by `GET /v1/domains` and, in a cluster, in the SendingDomain's status.

import { dkimTxtValue, type DkimAlgorithm } from './crypto.js';

export interface DnsRecord {
  type: 'TXT' | 'MX';
  name: string;
  value: string;
  purpose: 'dkim' | 'spf' | 'dmarc';
}

export interface DomainKeyFacts {
  name: string;
  selector: string;
  dkim_algorithm: DkimAlgorithm;
  dkim_public_key: string;
  return_path_domain: string | null;
}

/**
 * Lists the records to publish for a domain.
 *
 *   dnsRecords(domainRow)  // [{ type: 'TXT', name: 'mp1._domainkey.mail.example.com', ... }, ...]
 */
export function dnsRecords(domain: DomainKeyFacts): DnsRecord[] {
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
  ];
}
