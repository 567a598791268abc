// The SPF and DMARC records a SendingDomain lists, and the operator's check of what is published,
// on a real kube-apiserver, Postgres and a DNS server on loopback: the SPF record names the
// relay's include and the egress addresses the installation is configured with, at the return-path
// domain; the check evaluates the published record as a receiver would, so `v=spf1 -all` is not
// verified, an owner's existing record is told what to add (never to publish a second), nested
// includes count, and a DMARC record without the installation's report address is not enough.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { startApi, type RunningApi } from '../api/main.js';
import { readConfig } from '../lib/config.js';
import { checkDnsRecords } from '../lib/dns-check.js';
import { dnsRecords } from '../lib/dns-records.js';
import { createResolver } from '../lib/resolver.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { startControlPlane, type ControlPlane } from './helpers/control-plane.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { eventually } from './helpers/eventually.js';
import { condition, installCrds, kubeObjects, secretData, tenantYaml } from './helpers/kube-objects.js';
import { startOperatorProcess, type OperatorProcess } from './helpers/operator.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const SECRET = 'operator-spf-secret-key-of-32-characters-or-more';
const RUN = randomBytes(3).toString('hex');
const APPS = `spf-${RUN}`;
const INBOUND_HOST = 'mx.mailplane.test';
/** What the installation sends through and from, as a platform team configures it. */
const SETTINGS = {
  MAILPLANE_SPF_INCLUDE: 'spf.relay.example',
  MAILPLANE_EGRESS_IPS: '203.0.113.8/30,2001:db8::25',
  MAILPLANE_DMARC_RUA: 'dmarc@reports.example',
  MAILPLANE_INBOUND_HOST: INBOUND_HOST,
};
const WANTED_SPF = 'v=spf1 include:spf.relay.example ip4:203.0.113.8/30 ip6:2001:db8::25 ~all';

let cp: ControlPlane;
let k: ReturnType<typeof kubeObjects>;
let testDb: TestDatabase;
let database: DatabaseHandle;
let api: RunningApi;
let dns: DnsServer;
let operator: OperatorProcess | undefined;

const domainYaml = (name: string, domain: string) => `
apiVersion: mailplane.io/v1alpha1
kind: SendingDomain
metadata: { name: ${name}, namespace: ${APPS} }
spec:
  tenantRef: { name: acme }
  domain: ${domain}
  returnPath: bounces.${domain}
`;

before(async () => {
  [cp, testDb, dns] = await Promise.all([startControlPlane(), createTestDatabase(), startDnsServer()]);
  k = kubeObjects(cp);
  await installCrds(cp);
  await k.kubectl(['create', 'namespace', APPS]);
  const env = { DATABASE_URL: testDb.url, MAILPLANE_SECRET_KEY: SECRET, ...SETTINGS };
  database = openDatabase(testDb.url, { max: 5 });
  api = await startApi({
    database,
    config: readConfig({ ...env, PORT: '0' }),
    log: silentLogger,
    metrics: createMetrics(),
  });
  operator = await startOperatorProcess({
    ...env,
    KUBECONFIG: cp.kubeconfig,
    MAILPLANE_OPERATOR_NAMESPACE: APPS,
    MAILPLANE_RESYNC_SECONDS: '2',
    MAILPLANE_DNS_RECHECK_SECONDS: '1',
    MAILPLANE_DNS_SERVERS: dns.address,
  });
  await k.apply(tenantYaml(APPS, 'acme', [{ name: 'backend', scopes: ['send', 'read'] }]));
  // The relay's own SPF record, which a published include of it is evaluated through.
  dns.records.set('spf.relay.example', [{ type: 'TXT', value: 'v=spf1 ip4:192.0.2.200 -all' }]);
});

after(async () => {
  await operator?.stop();
  await api?.close();
  await database?.close();
  await Promise.all([cp?.stop(), testDb?.drop(), dns?.close()]);
});

/** Publishes every record the domain lists except SPF and DMARC, as given. */
async function publishAllBut(name: string): Promise<void> {
  const domain = await k.waitCondition(APPS, 'sendingdomain', name, 'Ready', 'True');
  for (const r of domain.status!.dnsRecords!) {
    if (r.purpose === 'spf' || r.purpose === 'dmarc') continue;
    const answer =
      r.type === 'MX'
        ? { type: 'MX' as const, priority: 10, exchange: r.value.split(' ')[1]! }
        : { type: 'TXT' as const, value: r.value };
    dns.records.set(r.name, [...(dns.records.get(r.name) ?? []), answer]);
  }
}

/** The DNSVerified condition once its message matches `expected` (the check runs every second). */
async function dnsCondition(name: string, expected: RegExp | string) {
  let last: string | undefined;
  return eventually(
    `DNSVerified of ${name} to say ${String(expected)}`,
    async () => {
      const c = condition(await k.getObject(APPS, 'sendingdomain', name), 'DNSVerified');
      last = c && `${c.status} ${c.reason}: ${c.message}`;
      const ok = typeof expected === 'string' ? c?.message === expected : expected.test(c?.message ?? '');
      return ok ? c : undefined;
    },
    30_000,
    () => `last: ${last}`,
  );
}

const txt = (value: string) => ({ type: 'TXT' as const, value });

test('the SPF record names the relay and the egress addresses, at the return-path domain; DMARC asks for reports', async () => {
  await k.apply(domainYaml('listed', 'listed.example'));
  const domain = await k.waitCondition(APPS, 'sendingdomain', 'listed', 'Ready', 'True');
  const records = domain.status!.dnsRecords!;
  const spf = records.filter((r) => r.purpose === 'spf');
  assert.deepEqual(spf, [{ type: 'TXT', name: 'bounces.listed.example', value: WANTED_SPF, purpose: 'spf' }]);
  assert.ok(!records.some((r) => r.purpose === 'spf' && r.name === 'listed.example'), 'nothing at the apex');
  assert.equal(
    records.find((r) => r.purpose === 'dmarc')?.value,
    'v=DMARC1; p=none; rua=mailto:dmarc@reports.example',
  );

  // The api lists the same records from the same settings.
  const key = await eventually('the API key', async () =>
    secretData(await k.getObject(APPS, 'secret', 'acme-api-key-backend'), 'api-key'),
  );
  const res = await fetch(`${api.url}/v1/domains`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
  const listed = (
    (await res.json()) as {
      data: { name: string; records: { purpose: string; name: string; value: string }[] }[];
    }
  ).data.find((d) => d.name === 'listed.example')!;
  assert.deepEqual(
    listed.records.filter((r) => r.purpose === 'spf').map((r) => [r.name, r.value]),
    [['bounces.listed.example', WANTED_SPF]],
  );
});

test('`v=spf1 -all` is not verified: the condition names every sender it refuses and the record to publish instead', async () => {
  await k.apply(domainYaml('deny', 'deny.example'));
  await publishAllBut('deny');
  dns.records.set('_dmarc.deny.example', [txt('v=DMARC1; p=none; rua=mailto:dmarc@reports.example')]);
  dns.records.set('bounces.deny.example', [
    ...(dns.records.get('bounces.deny.example') ?? []),
    txt('v=spf1 -all'),
  ]);
  const c = await dnsCondition('deny', /does not authorise/);
  assert.equal(c.status, 'False');
  assert.equal(c.reason, 'RecordsMissing');
  assert.equal(
    c.message,
    'publish: TXT bounces.deny.example (does not authorise include:spf.relay.example (fail), ' +
      'ip4:203.0.113.8/30 (fail), ip6:2001:db8::25 (fail): add them to the record there, not as a ' +
      'second one: "v=spf1 include:spf.relay.example ip4:203.0.113.8/30 ip6:2001:db8::25 -all")',
  );
});

test("an owner's own record is told what to add; once it has it, nested in an include of theirs, it is verified", async () => {
  await k.apply(domainYaml('owned', 'owned.example'));
  await publishAllBut('owned');
  dns.records.set('_dmarc.owned.example', [txt('v=DMARC1; p=quarantine; rua=mailto:dmarc@reports.example')]);
  const own = (spf: string) =>
    dns.records.set('bounces.owned.example', [
      ...(dns.records.get('bounces.owned.example') ?? []).filter((a) => a.type !== 'TXT'),
      txt(spf),
    ]);
  // Theirs authorises their own servers and the first egress address only.
  own('v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.8 ~all');
  const partial = await dnsCondition('owned', /does not authorise/);
  assert.match(
    partial.message,
    /does not authorise include:spf\.relay\.example \(softfail\), ip4:203\.0\.113\.8\/30 \(softfail\), ip6:2001:db8::25 \(softfail\): add them to the record there, not as a second one: "v=spf1 ip4:198\.51\.100\.0\/24 ip4:203\.0\.113\.8 include:spf\.relay\.example ip4:203\.0\.113\.8\/30 ip6:2001:db8::25 ~all"/,
  );

  // A second record beside theirs is an error receivers fail every message for: said so.
  dns.records.set('bounces.owned.example', [
    ...(dns.records.get('bounces.owned.example') ?? []),
    txt(WANTED_SPF),
  ]);
  await dnsCondition('owned', /2 SPF records, which receivers treat as an error \(permerror/);

  // One record, reaching Mailplane's senders through an include of the owner's own.
  own('v=spf1 ip4:198.51.100.0/24 include:_spf.owned.example ~all');
  dns.records.set('_spf.owned.example', [
    txt('v=spf1 include:spf.relay.example ip4:203.0.113.8/30 ip6:2001:db8::/64 -all'),
  ]);
  const verified = await dnsCondition('owned', /^all \d+ records found$/);
  assert.equal(verified.status, 'True');
  assert.equal(verified.reason, 'RecordsFound');
});

test('a DMARC record without the report address is not verified, and says what its rua lacks', async () => {
  await k.apply(domainYaml('reports', 'reports-to.example'));
  await publishAllBut('reports');
  dns.records.set('bounces.reports-to.example', [
    ...(dns.records.get('bounces.reports-to.example') ?? []),
    txt(WANTED_SPF),
  ]);
  dns.records.set('_dmarc.reports-to.example', [txt('v=DMARC1; p=reject; rua=mailto:someone@else.example')]);
  const c = await dnsCondition('reports', /rua= lacks/);
  assert.equal(
    c.message,
    'publish: TXT _dmarc.reports-to.example (its rua= lacks mailto:dmarc@reports.example, so aggregate reports do not reach the installation)',
  );
  dns.records.set('_dmarc.reports-to.example', [
    txt('v=DMARC1; p=reject; rua=mailto:someone@else.example,mailto:dmarc@reports.example!10m'),
  ]);
  assert.equal((await dnsCondition('reports', /^all \d+ records found$/)).status, 'True');
});

test('without the settings the SPF record claims nothing, and only a record that authorises nobody is refused', async () => {
  const records = dnsRecords(
    {
      name: 'plain.example',
      selector: 's1',
      dkim_algorithm: 'rsa-2048',
      dkim_public_key: 'AAAA',
      return_path_domain: null,
    },
    { dns: readConfig({ DATABASE_URL: 'postgres://x', MAILPLANE_SECRET_KEY: SECRET }).dns },
  );
  const spf = records.find((r) => r.purpose === 'spf')!;
  assert.deepEqual(spf, { type: 'TXT', name: 'plain.example', value: 'v=spf1 ?all', purpose: 'spf' });
  const resolver = createResolver([dns.address]);
  const check = async (published: string) => {
    dns.records.set('plain.example', [txt(published)]);
    return (await checkDnsRecords(resolver, [spf]))[0]!;
  };
  assert.deepEqual(await check('v=spf1 include:_spf.google.com ~all'), { record: spf, found: true });
  assert.deepEqual(await check('v=spf1 ?all'), { record: spf, found: true });
  const refused = await check('v=spf1 -all');
  assert.equal(refused.found, false);
  assert.equal(refused.problem, '"v=spf1 -all" authorises no sender at all');
});

test('the settings are checked when read, every bad entry named', () => {
  assert.throws(
    () =>
      readConfig({
        DATABASE_URL: 'postgres://x',
        MAILPLANE_SECRET_KEY: SECRET,
        MAILPLANE_SPF_INCLUDE: 'include:amazonses.com, not a domain',
        MAILPLANE_EGRESS_IPS: '203.0.113.5, 127.1, 2001:db8::/129',
        MAILPLANE_DMARC_RUA: 'mailto:dmarc@reports.example, nobody',
      }),
    (err: Error & { problems?: string[] }) => {
      assert.deepEqual(err.problems, [
        'MAILPLANE_SPF_INCLUDE must list domain names such as amazonses.com, got "not a domain"',
        'MAILPLANE_EGRESS_IPS must list IP addresses or CIDR ranges, got "127.1"',
        'MAILPLANE_EGRESS_IPS must list IP addresses or CIDR ranges, got "2001:db8::/129"',
        'MAILPLANE_DMARC_RUA must list email addresses such as dmarc@example.com, got "nobody"',
      ]);
      return true;
    },
  );
  const dns = readConfig({
    DATABASE_URL: 'postgres://x',
    MAILPLANE_SECRET_KEY: SECRET,
    MAILPLANE_SPF_INCLUDE: 'include:AmazonSES.com',
    MAILPLANE_EGRESS_IPS: '2001:DB8:0::25/128,203.0.113.0/24',
    MAILPLANE_DMARC_RUA: 'mailto:DMARC@Reports.Example',
  }).dns;
  assert.deepEqual(dns, {
    spfInclude: ['amazonses.com'],
    egressIps: ['2001:db8::25/128', '203.0.113.0/24'],
    dmarcRua: ['DMARC@reports.example'],
  });
});
