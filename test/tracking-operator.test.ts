// A SendingDomain with a tracking domain, through the operator against a real kube-apiserver and
// etcd: status.dnsRecords lists the CNAME to publish, the DNS check says when it is missing or
// points elsewhere, and the domain verifies once it is published; the domains row carries what
// the sender tracks.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { startControlPlane, type ControlPlane } from './helpers/control-plane.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { eventually } from './helpers/eventually.js';
import { startOperatorProcess, type OperatorProcess } from './helpers/operator.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const SECRET = 'tracking-operator-test-secret-key-of-32-characters';
const NS = `tracking-${randomBytes(3).toString('hex')}`;
const PUBLIC_HOST = 'mail.mailplane.test';

let cp: ControlPlane;
let testDb: TestDatabase;
let database: DatabaseHandle;
let dns: DnsServer;
let operator: OperatorProcess | undefined;

interface Status {
  conditions?: { type: string; status: string; reason: string; message: string }[];
  dnsRecords?: { type: string; name: string; value: string; purpose: string }[];
}

async function kubectl(args: string[], input?: string): Promise<string> {
  const result = await cp.kubectl(args, input);
  assert.equal(result.code, 0, `kubectl ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

async function status(name: string): Promise<Status> {
  const o = JSON.parse(await kubectl(['-n', NS, 'get', 'sendingdomain', name, '-o', 'json'])) as {
    status?: Status;
  };
  return o.status ?? {};
}

const dnsCondition = (s: Status) => s.conditions?.find((c) => c.type === 'DNSVerified');

before(async () => {
  [cp, testDb, dns] = await Promise.all([startControlPlane(), createTestDatabase(), startDnsServer()]);
  await kubectl(['apply', '-f', 'crds/']);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
  await kubectl(['create', 'namespace', NS]);
  database = openDatabase(testDb.url, { max: 2 });
  operator = await startOperatorProcess({
    KUBECONFIG: cp.kubeconfig,
    DATABASE_URL: testDb.url,
    MAILPLANE_SECRET_KEY: SECRET,
    MAILPLANE_OPERATOR_NAMESPACE: NS,
    MAILPLANE_RESYNC_SECONDS: '2',
    MAILPLANE_DNS_RECHECK_SECONDS: '1',
    MAILPLANE_DNS_SERVERS: dns.address,
    MAILPLANE_PUBLIC_URL: `https://${PUBLIC_HOST}`,
  });
});

after(async () => {
  await operator?.stop();
  await database?.close();
  await Promise.all([cp?.stop(), testDb?.drop(), dns?.close()]);
});

test('the tracking domain is a CNAME to the public host in status.dnsRecords, checked in DNS like the others', async () => {
  await kubectl(
    ['apply', '-f', '-'],
    `apiVersion: mailplane.io/v1alpha1
kind: Tenant
metadata: { name: shop, namespace: ${NS} }
spec: {}
---
apiVersion: mailplane.io/v1alpha1
kind: SendingDomain
metadata: { name: shop-example, namespace: ${NS} }
spec:
  tenantRef: { name: shop }
  domain: shop.example
  tracking: { domain: t.shop.example, opens: true, clicks: true }
`,
  );
  const listed = await eventually('the records in status', async () => {
    const s = await status('shop-example');
    return (s.dnsRecords?.length ?? 0) > 0 && s;
  });
  assert.deepEqual(
    listed.dnsRecords!.filter((r) => r.purpose === 'tracking'),
    [{ type: 'CNAME', name: 't.shop.example', value: PUBLIC_HOST, purpose: 'tracking' }],
  );
  const row = await database.db
    .selectFrom('domains')
    .select(['tracking_domain', 'track_opens', 'track_clicks'])
    .where('name', '=', 'shop.example')
    .executeTakeFirstOrThrow();
  assert.deepEqual(row, { tracking_domain: 't.shop.example', track_opens: true, track_clicks: true });

  // Everything published but the CNAME, then a CNAME to the wrong host, then the right one.
  for (const r of listed.dnsRecords!) {
    if (r.type === 'TXT')
      dns.records.set(r.name, [...(dns.records.get(r.name) ?? []), { type: 'TXT', value: r.value }]);
  }
  await eventually('DNSVerified False naming the missing CNAME', async () => {
    const c = dnsCondition(await status('shop-example'));
    return c?.status === 'False' && /CNAME t\.shop\.example \(no CNAME record\)/.test(c.message) && c;
  });
  dns.records.set('t.shop.example', [{ type: 'CNAME', target: 'elsewhere.example.net' }]);
  await eventually('DNSVerified False: the CNAME points elsewhere', async () => {
    const c = dnsCondition(await status('shop-example'));
    return c?.status === 'False' && /CNAME is not mail\.mailplane\.test/.test(c.message) && c;
  });
  dns.records.set('t.shop.example', [{ type: 'CNAME', target: PUBLIC_HOST }]);
  await eventually(
    'DNSVerified True',
    async () => dnsCondition(await status('shop-example'))?.status === 'True',
  );

  // Turning tracking off removes the record to publish and the row's defaults.
  await kubectl([
    '-n',
    NS,
    'patch',
    'sendingdomain',
    'shop-example',
    '--type=merge',
    '-p',
    JSON.stringify({ spec: { tracking: null } }),
  ]);
  await eventually('no tracking record', async () => {
    const s = await status('shop-example');
    return s.dnsRecords !== undefined && !s.dnsRecords.some((r) => r.purpose === 'tracking');
  });
  assert.deepEqual(
    await database.db
      .selectFrom('domains')
      .select(['tracking_domain', 'track_opens', 'track_clicks'])
      .where('name', '=', 'shop.example')
      .executeTakeFirstOrThrow(),
    { tracking_domain: null, track_opens: false, track_clicks: false },
  );
});
