// What GET /v1/domains/{id} and POST /v1/domains/{id}/verify answer: Resend's domains.get and
// domains.verify, the records with the status the last DNS check found for each.

import { z } from 'zod';
import { Domain, DnsRecord, DomainStatus } from './schemas.js';

export { DomainStatus };

const dateTime = z.string().meta({ format: 'date-time' });

const recordStatus = z
  .enum(['not_started', 'pending', 'verified', 'failed', 'temporary_failure'])
  .describe(
    '`verified`: found as published; `pending`: not found; `failed`: a record says something else ' +
      '(another DKIM key, another MX host); `temporary_failure`: the lookup failed; `not_started`: ' +
      'not checked yet.',
  );

export const CheckedDnsRecord = DnsRecord.extend({
  status: recordStatus,
  problem: z.string().optional().describe('What the check found wrong.'),
});

export const DomainDetail = Domain.extend({
  dns_checked_at: dateTime
    .nullable()
    .describe('When DNS was last checked, by the operator on its interval or by the api.'),
  records: z.array(CheckedDnsRecord).describe('The DNS records to publish, each with what the check found.'),
}).describe('A sending domain with each record’s verification status.');

export const VerifiedDomain = z
  .object({ object: z.literal('domain'), id: z.guid(), status: DomainStatus })
  .describe('Checked now; read the records’ statuses at /v1/domains/{id}.');

export type DomainDetail = z.infer<typeof DomainDetail>;
export type VerifiedDomain = z.infer<typeof VerifiedDomain>;
