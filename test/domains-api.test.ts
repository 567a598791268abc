// GET /v1/domains/:id and POST /v1/domains/:id/verify against real lookups: the api asks a loopback
// DNS server (MAILPLANE_DNS_SERVERS) whose zone the test edits, and the Resend SDK unchanged is the
// caller. examples/ gives acme example.com with a return-path domain, whose MX is listed since the
// installation names its inbound host.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Resend } from 'resend';
import { startApi, type RunningApi } from '../api/main.js';
import { findingsOf, saveDnsFindings } from '../lib/db/dns-findings.js';
import type { DnsRecord } from '../lib/dns-records.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { sendingDomain, startTestPlatform, tenant, type TestPlatform } from './helpers/platform.js';

const INBOUND = 'mx.mailplane.example';

let dns: DnsServer;
let platform: TestPlatform;
let resend: Resend;
let globex: Resend;
/** acme's example.com and globex's globex.example. */
const ids = { acme: '', globex: '' };

interface Record {
  record: string;
  type: string;
  name: string;
  value: string;
  status: string;
  problem?: string;
}

/** Publishes a record in the loopback zone, as its owner would in theirs. */
function publish(record: Pick<Record, 'type' | 'name' | 'value'>): void {
  const answers = dns.records.get(record.name) ?? [];
  if (record.type === 'MX') {
    const [priority, exchange] = record.value.split(' ');
    answers.push({ type: 'MX', priority: Number(priority), exchange: exchange! });
  } else {
    answers.push({ type: 'TXT', value: record.value });
  }
  dns.records.set(record.name, answers);
}

const statuses = (records: Record[]) => Object.fromEntries(records.map((r) => [r.record, r.status]));

before(async () => {
  dns = await startDnsServer();
  platform = await startTestPlatform({ MAILPLANE_DNS_SERVERS: dns.address, MAILPLANE_INBOUND_HOST: INBOUND });
  await platform.apply([
    tenant('globex', [{ name: 'backend', scopes: ['send', 'read'] }]),
    sendingDomain('globex-example', 'globex', 'globex.example'),
  ]);
  resend = new Resend(platform.keys.get('default/acme/backend')!, { baseUrl: `${platform.url}/v1` });
  globex = new Resend(platform.keys.get('default/globex/backend')!, { baseUrl: `${platform.url}/v1` });
  const rows = await platform.database.db.selectFrom('domains').select(['id', 'name']).execute();
  ids.acme = rows.find((r) => r.name === 'example.com')!.id;
  ids.globex = rows.find((r) => r.name === 'globex.example')!.id;
});
after(async () => {
  await platform?.close();
  await dns?.close();
});

describe('domains.get and domains.verify, unchanged', () => {
  test('with nothing published every record is pending; verify after publishing finds each', async () => {
    const got = await resend.domains.get(ids.acme);
    assert.equal(got.error, null, JSON.stringify(got.error));
    assert.equal(got.data!.object, 'domain');
    assert.equal(got.data!.name, 'example.com');
    assert.equal(got.data!.status, 'pending');
    const records = got.data!.records as unknown as Record[];
    assert.deepEqual(records.map((r) => r.record).sort(), ['DKIM', 'DMARC', 'RETURN-PATH', 'SPF']);
    assert.ok(
      records.every((r) => r.status === 'pending' && r.problem),
      JSON.stringify(records),
    );
    assert.ok((got.data as unknown as { dns_checked_at: string }).dns_checked_at);

    // The DKIM key first: the domain is partly verified.
    publish(records.find((r) => r.record === 'DKIM')!);
    const verified = await resend.domains.verify(ids.acme);
    assert.equal(verified.error, null, JSON.stringify(verified.error));
    assert.equal(verified.data!.id, ids.acme);
    const partly = (await resend.domains.get(ids.acme)).data!;
    assert.equal(partly.status, 'partially_verified');
    assert.deepEqual(statuses(partly.records as unknown as Record[]), {
      DKIM: 'verified',
      SPF: 'pending',
      DMARC: 'pending',
      'RETURN-PATH': 'pending',
    });

    for (const record of records.filter((r) => r.record !== 'DKIM')) publish(record);
    const all = await resend.domains.verify(ids.acme);
    assert.equal((all.data as unknown as { status: string }).status, 'verified');
    const done = (await resend.domains.get(ids.acme)).data!;
    assert.equal(done.status, 'verified');
    // The list says it too, from the same findings.
    const listed = (await resend.domains.list()).data!.data.find((d) => d.id === ids.acme)!;
    assert.equal(listed.status, 'verified');
    assert.ok((done.records as unknown as Record[]).every((r) => r.status === 'verified'));
  });

  test('a record that says something else (another DKIM key) has failed', async () => {
    const first = await globex.domains.get(ids.globex);
    assert.equal(first.error, null, JSON.stringify(first.error));
    const records = first.data!.records as unknown as Record[];
    const dkim = records.find((r) => r.record === 'DKIM')!;
    publish({ ...dkim, value: 'v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAother' });
    await globex.domains.verify(ids.globex);
    const domain = (await globex.domains.get(ids.globex)).data!;
    const checked = (domain.records as unknown as Record[]).find((r) => r.record === 'DKIM')!;
    assert.equal(checked.status, 'failed');
    assert.equal(checked.problem, 'publishes another key');
    assert.equal(domain.status, 'failed');
  });

  test('the operator’s findings are shown as they are while they are recent', async () => {
    // What the operator writes after its own check (operator/reconcilers/domain.ts): here, that
    // every record of globex.example was found, which this zone does not say.
    const records = (await globex.domains.get(ids.globex)).data!.records as unknown as Record[];
    const listed: DnsRecord[] = records.map((r) => ({
      type: r.type as DnsRecord['type'],
      name: r.name,
      value: r.value,
      purpose: (r as unknown as { purpose: DnsRecord['purpose'] }).purpose,
    }));
    await saveDnsFindings(
      platform.database.db,
      ids.globex,
      findingsOf(listed.map((record) => ({ record, found: true }))),
    );
    const domain = (await globex.domains.get(ids.globex)).data!;
    assert.equal(domain.status, 'verified', 'a read does not check again over recent findings');
    // A check now says what DNS says.
    await globex.domains.verify(ids.globex);
    assert.equal((await globex.domains.get(ids.globex)).data!.status, 'failed');
  });

  test('a lookup that fails is a temporary failure, not a missing record', async () => {
    // An api whose resolver has nobody listening: every lookup is refused.
    const broken: RunningApi = await startApi({
      database: platform.database,
      config: { ...platform.config, port: 0, dnsServers: ['127.0.0.1:9'] },
      log: silentLogger,
      metrics: createMetrics(),
    });
    try {
      const client = new Resend(platform.keys.get('default/acme/backend')!, { baseUrl: `${broken.url}/v1` });
      await client.domains.verify(ids.acme);
      const domain = (await client.domains.get(ids.acme)).data!;
      const records = domain.records as unknown as Record[];
      assert.ok(
        records.every((r) => r.status === 'temporary_failure' && /DNS lookup failed/.test(r.problem!)),
        JSON.stringify(records),
      );
    } finally {
      await broken.close();
    }
  });

  test('another tenant’s domain is as absent as one that never existed', async () => {
    assert.equal((await globex.domains.get(ids.acme)).error?.name, 'not_found');
    assert.equal((await globex.domains.verify(ids.acme)).error?.name, 'not_found');
    assert.equal((await resend.domains.get('not-a-uuid')).error?.name, 'not_found');
  });
});
