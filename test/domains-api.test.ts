// GET /v1/domains/:id and POST /v1/domains/:id/verify against real lookups: the api asks a loopback
// DNS server (MAILPLANE_DNS_SERVERS) whose zone the test edits, and the Resend SDK unchanged is the
// caller. examples/ gives acme example.com with a return-path domain, whose MX is listed since the
// installation names its inbound host. A domain is checked on request once per VERIFY_INTERVAL_MS:
// where a test checks again, it first moves the last check back by that much, as if the time had
// passed. A rotating domain is taken through a rotation by the operator's own reconcile, to show
// that the api lists what the SendingDomain's status lists.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { Resend } from 'resend';
import { VERIFY_INTERVAL_MS } from '../api/domains.js';
import { startApi, type RunningApi } from '../api/main.js';
import { findingsOf, saveDnsFindings } from '../lib/db/dns-findings.js';
import type { DnsRecord, ListedRecord } from '../lib/dns-records.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { reconcileDomain } from '../lib/reconcile/domain.js';
import type { SendingDomainResource } from '../lib/resources.js';
import { createResolver } from '../lib/resolver.js';
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
  purpose?: string;
  state?: string;
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

/** Moves the domain's last check back by VERIFY_INTERVAL_MS: a check on request may run again. */
async function aWhileLater(id: string): Promise<void> {
  await platform.database.db
    .updateTable('domains')
    .set({ dns_checked_at: sql<Date>`dns_checked_at - make_interval(secs => ${VERIFY_INTERVAL_MS / 1000})` })
    .where('id', '=', id)
    .execute();
}

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
    await aWhileLater(ids.acme);
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
    await aWhileLater(ids.acme);
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
    await aWhileLater(ids.globex);
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
    // A check now says what DNS says (saving the findings was a check, as the operator's is).
    await aWhileLater(ids.globex);
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
      await aWhileLater(ids.acme);
      const verified = await client.domains.verify(ids.acme);
      assert.equal(verified.error, null, JSON.stringify(verified.error));
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

describe('domains.verify, at most one check of a domain every VERIFY_INTERVAL_MS', () => {
  const verifyRaw = (id: string, key = platform.keys.get('default/globex/backend')!) =>
    fetch(`${platform.url}/v1/domains/${id}/verify`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}` },
    });

  test('a check asked for sooner is a 429 saying when to ask again and what the last check found', async () => {
    await aWhileLater(ids.globex);
    const first = await globex.domains.verify(ids.globex);
    assert.equal(first.error, null, JSON.stringify(first.error));
    const last = (await globex.domains.get(ids.globex)).data!;
    const checkedAt = (last as unknown as { dns_checked_at: string }).dns_checked_at;

    // The Resend SDK sees Resend's error name for it.
    const again = await globex.domains.verify(ids.globex);
    assert.equal(again.error?.name, 'rate_limit_exceeded', JSON.stringify(again));

    const res = await verifyRaw(ids.globex);
    assert.equal(res.status, 429);
    assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
    const retryAfter = Number(res.headers.get('retry-after'));
    assert.ok(
      Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= VERIFY_INTERVAL_MS / 1000,
      `Retry-After: ${res.headers.get('retry-after')}`,
    );
    const problem = (await res.json()) as { type: string; detail: string };
    assert.equal(problem.type, 'https://mailplane.io/problems/rate-limit-exceeded');
    assert.ok(
      problem.detail.includes(checkedAt) && problem.detail.includes(`found ${last.status}`),
      problem.detail,
    );

    // Nothing was looked up for the refused ones: the domain is as the first check left it.
    const unchanged = (await globex.domains.get(ids.globex)).data!;
    assert.equal((unchanged as unknown as { dns_checked_at: string }).dns_checked_at, checkedAt);
  });

  test('the limit is per domain, and once the interval is over a check runs again', async () => {
    // globex.example was just checked; acme's example.com may be checked all the same.
    assert.equal((await verifyRaw(ids.globex)).status, 429);
    await aWhileLater(ids.acme);
    const acme = await resend.domains.verify(ids.acme);
    assert.equal(acme.error, null, JSON.stringify(acme.error));

    await aWhileLater(ids.globex);
    const before = (await globex.domains.get(ids.globex)).data as unknown as { dns_checked_at: string };
    const res = await verifyRaw(ids.globex);
    assert.equal(res.status, 200, await res.clone().text());
    const after = (await globex.domains.get(ids.globex)).data as unknown as { dns_checked_at: string };
    assert.ok(
      Date.parse(after.dns_checked_at) > Date.parse(before.dns_checked_at),
      JSON.stringify({ before, after }),
    );
  });
});

describe('domains.verify across api replicas', () => {
  test('two replicas asked at the same moment run one check between them: one 200, one 429', async () => {
    // Its own routes and checks under way; the database is what replicas share.
    const replica = await startApi({
      database: platform.database,
      config: { ...platform.config, port: 0 },
      log: silentLogger,
      metrics: createMetrics(),
    });
    try {
      await aWhileLater(ids.globex);
      const key = platform.keys.get('default/globex/backend')!;
      const ask = (base: string) =>
        fetch(`${base}/v1/domains/${ids.globex}/verify`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}` },
        }).then((r) => r.status);
      const answers = await Promise.all([ask(platform.url), ask(replica.url)]);
      assert.deepEqual(answers.sort(), [200, 429]);
    } finally {
      await replica.close();
    }
  });
});

describe('during a DKIM rotation the api lists what the SendingDomain’s status lists', () => {
  const ROTATING = 'rotating.example';
  let id = '';
  let initech: Resend;
  const resource: SendingDomainResource = {
    kind: 'SendingDomain',
    metadata: { namespace: 'default', name: 'rotating-example' },
    spec: {
      tenantRef: { name: 'initech' },
      domain: ROTATING,
      dkim: { selector: 'mp', algorithm: 'ed25519', alsoRsa: true, rotateEvery: '1m' },
    },
  };
  /** The operator's reconcile of the domain (operator/reconcilers/domain.ts), `minutes` from now. */
  const reconcileAt = (minutes: number) =>
    reconcileDomain(
      {
        db: platform.database.db,
        keys: platform.keyStore,
        secretKey: platform.config.secretKey,
        inboundHost: platform.config.inboundHost,
        dns: platform.config.dns,
        rotation: {
          resolver: createResolver([dns.address]),
          now: () => new Date(Date.now() + minutes * 60_000),
        },
      },
      resource,
    );
  const listed = (records: (Record | ListedRecord)[]) =>
    records.map(({ type, name, value, purpose, state }) => ({ type, name, value, purpose, state }));
  const states = (records: (Record | ListedRecord)[]) =>
    records.filter((r) => r.purpose === 'dkim').map((r) => r.state);

  before(async () => {
    await platform.apply([tenant('initech', [{ name: 'backend', scopes: ['send', 'read'] }]), resource]);
    initech = new Resend(platform.keys.get('default/initech/backend')!, { baseUrl: `${platform.url}/v1` });
    id = (
      await platform.database.db
        .selectFrom('domains')
        .select('id')
        .where('name', '=', ROTATING)
        .executeTakeFirstOrThrow()
    ).id;
  });

  /** The domain's records as GET /v1/domains/:id and GET /v1/domains show them. */
  async function apiRecords(): Promise<{ detail: Record[]; list: Record[] }> {
    const detail = await initech.domains.get(id);
    assert.equal(detail.error, null, JSON.stringify(detail.error));
    const list = await initech.domains.list();
    assert.equal(list.error, null, JSON.stringify(list.error));
    return {
      detail: detail.data!.records as unknown as Record[],
      list: (list.data!.data.find((d) => d.id === id) as unknown as { records: Record[] }).records,
    };
  }

  test('the RSA key of an Ed25519 domain, and the next keys while DNS does not show them', async () => {
    const before = await apiRecords();
    assert.deepEqual(
      states(before.detail),
      ['active', 'active'],
      'the Ed25519 key and the RSA key beside it',
    );

    const outcome = await reconcileAt(2);
    assert.deepEqual(states(outcome.dnsRecords), ['active', 'active', 'next', 'next']);
    const { detail, list } = await apiRecords();
    assert.deepEqual(listed(detail), listed(outcome.dnsRecords));
    assert.deepEqual(listed(list), listed(outcome.dnsRecords));

    // With the records in use published, the domain is verified; the next keys are still to publish.
    for (const record of outcome.dnsRecords.filter((r) => r.state !== 'next')) publish(record);
    await aWhileLater(id);
    const verified = await initech.domains.verify(id);
    assert.equal(verified.error, null, JSON.stringify(verified.error));
    const domain = (await initech.domains.get(id)).data!;
    assert.equal(domain.status, 'verified');
    const records = domain.records as unknown as Record[];
    assert.deepEqual(
      records.filter((r) => r.state === 'next').map((r) => r.status),
      ['pending', 'pending'],
      JSON.stringify(records),
    );
  });

  test('after the switch, the keys replaced are listed as retiring', async () => {
    const waiting = await reconcileAt(2);
    for (const record of waiting.dnsRecords.filter((r) => r.state === 'next')) publish(record);
    const switched = await reconcileAt(2);
    assert.deepEqual(states(switched.dnsRecords).sort(), ['active', 'active', 'retiring', 'retiring']);
    const { detail, list } = await apiRecords();
    assert.deepEqual(listed(detail), listed(switched.dnsRecords));
    assert.deepEqual(listed(list), listed(switched.dnsRecords));
    const domain = (await initech.domains.get(id)).data!;
    assert.equal((domain as unknown as { dkim: { selector: string } }).dkim.selector, switched.selector);
  });
});

describe('domains.list pages as Resend’s SDK asks', () => {
  test('by name, limit at a time, forwards with after and back with before; a cursor of another tenant is refused', async () => {
    await platform.apply(
      ['d', 'a', 'c', 'b'].map((n) => sendingDomain(`globex-${n}`, 'globex', `${n}.globex.example`)),
    );
    const names = ['a', 'b', 'c', 'd'].map((n) => `${n}.globex.example`).concat('globex.example');
    const seen: { id: string; name: string }[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await globex.domains.list({ limit: 2, ...(after ? { after } : {}) });
      assert.equal(page.error, null, JSON.stringify(page.error));
      seen.push(...page.data!.data.map((d) => ({ id: d.id, name: d.name })));
      if (!page.data!.has_more) break;
      after = page.data!.data.at(-1)!.id;
    }
    assert.deepEqual(
      seen.map((d) => d.name),
      names,
    );
    const back = await globex.domains.list({ limit: 2, before: seen.at(-1)!.id });
    assert.deepEqual(
      back.data!.data.map((d) => d.name),
      names.slice(2, 4),
    );
    assert.equal(back.data!.has_more, true);

    const foreign = await resend.domains.list({ after: seen[0]!.id });
    assert.equal(foreign.error?.statusCode, 422);
    assert.match(foreign.error!.message, /after: names no domain of this tenant/);
    const all = await resend.domains.list();
    assert.deepEqual(
      all.data!.data.map((d) => d.name),
      ['example.com'],
    );
    assert.equal(all.data!.has_more, false);
  });
});
