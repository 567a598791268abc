// MTA-STS (RFC 8461) and the TLS report's parts: policy and record parsing, MX matching, the
// result types of certificate errors, the bound on domain labels, and the policy cache against a
// DNS server and an HTTPS policy host on loopback (a test CA trusted in this process), with the
// clock moved by hand: cached for max_age, fetched again only when the record's id changes, kept
// through a failed fetch or a vanished record until it expires.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { createMetrics } from '../lib/metrics.js';
import { createResolver } from '../lib/resolver.js';
import {
  createMtaSts,
  mxMatches,
  parsePolicy,
  parseStsRecord,
  type PolicyFailure,
} from '../sender/mta-sts.js';
import { certificateResult, createTlsReport, OTHER_DOMAINS } from '../sender/tls-report.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { createTestCa, type TestCa } from './helpers/test-ca.js';

describe('policy files and records', () => {
  test('a policy reads its mode, mx patterns and max_age, with CRLF or LF, and is refused when malformed', () => {
    assert.deepEqual(
      parsePolicy(
        'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\nmx: *.Example.org\r\nmax_age: 604800\r\n',
      ),
      { mode: 'enforce', mx: ['mx1.example.org', '*.example.org'], maxAgeSeconds: 604800 },
    );
    assert.deepEqual(parsePolicy('version: STSv1\nmode: none\nmax_age: 86400\n'), {
      mode: 'none',
      mx: [],
      maxAgeSeconds: 86400,
    });
    for (const [text, reason] of [
      ['mode: enforce\nmx: a.example\nmax_age: 1', /version/],
      ['version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1', /mode/],
      ['version: STSv1\nmode: enforce\nmax_age: 1', /lists no mx/],
      ['version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601', /max_age/],
      ['version: STSv1\nmode: testing\nmx: a.*.example\nmax_age: 1', /not a host name/],
    ] as const) {
      const parsed = parsePolicy(text);
      assert.ok('invalid' in parsed && reason.test(parsed.invalid), `${text} → ${JSON.stringify(parsed)}`);
    }
  });

  test('the _mta-sts record gives its id; none is no policy; two, or one without an id, are invalid', () => {
    assert.deepEqual(parseStsRecord([['v=STSv1; id=20190429T010101;']]), { id: '20190429T010101' });
    assert.deepEqual(parseStsRecord([['v=STSv1;', ' id=abc']]), { id: 'abc' });
    assert.equal(parseStsRecord([['v=spf1 -all']]), undefined);
    assert.ok('invalid' in parseStsRecord([['v=STSv1; id=a'], ['v=STSv1; id=b']])!);
    assert.ok('invalid' in parseStsRecord([['v=STSv1; id=not-alnum!']])!);
  });

  test('an mx pattern matches its host exactly, or a wildcard one leftmost label', () => {
    assert.ok(mxMatches(['mx.example.org'], 'MX.example.org.'));
    assert.ok(mxMatches(['*.example.org'], 'mx1.example.org'));
    assert.ok(!mxMatches(['*.example.org'], 'example.org'));
    assert.ok(!mxMatches(['*.example.org'], 'a.mx1.example.org'));
    assert.ok(!mxMatches(['mx.example.org'], 'mx.example.org.evil.test'));
  });
});

describe('TLS report', () => {
  test('certificate errors map to RFC 8460 result types', () => {
    assert.equal(certificateResult('CERT_HAS_EXPIRED'), 'certificate-expired');
    assert.equal(certificateResult('ERR_TLS_CERT_ALTNAME_INVALID'), 'certificate-host-mismatch');
    assert.equal(certificateResult('DEPTH_ZERO_SELF_SIGNED_CERT'), 'certificate-not-trusted');
    assert.equal(certificateResult('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'certificate-not-trusted');
    assert.equal(certificateResult('CERT_NOT_YET_VALID'), 'validation-failure');
  });

  test('domains beyond the bound are counted under `other`, so the series stay bounded', async () => {
    const metrics = createMetrics();
    const report = createTlsReport(metrics, 2);
    report.success('a.example', 'no-policy-found');
    report.failure('b.example', 'sts', 'certificate-expired');
    report.success('c.example', 'no-policy-found');
    report.success('d.example', 'no-policy-found');
    report.success('a.example', 'no-policy-found');
    const sessions = (await metrics.tlsSessions.get()).values.map((v) => [v.labels.domain, v.value]);
    assert.deepEqual(sessions.sort(), [
      ['a.example', 2],
      [OTHER_DOMAINS, 2],
    ]);
  });
});

describe('policy cache', () => {
  let ca: TestCa;
  let dns: DnsServer;
  let server: Server;
  let port: number;
  let body: string | undefined;
  let fetches = 0;

  before(async () => {
    ca = await createTestCa();
    // This process's TLS clients trust the test CA, as NODE_EXTRA_CA_CERTS makes the sender's.
    setDefaultCACertificates([...getCACertificates('default'), await readFile(ca.caFile, 'utf8')]);
    dns = await startDnsServer();
    const { key, cert } = await ca.issue(['mta-sts.cache.test']);
    server = createServer({ key, cert }, (_req, res) => {
      fetches++;
      if (body === undefined) res.writeHead(404).end();
      else res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    dns.records.set('mta-sts.cache.test', [{ type: 'A', address: '127.0.0.1' }]);
  });

  after(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await dns?.close();
    await ca?.close();
  });

  test('a policy is cached for max_age, fetched again only for a new id, and outlives a failed fetch or a vanished record', async () => {
    let clock = Date.now();
    const failures: PolicyFailure[] = [];
    const mtaSts = createMtaSts({
      resolver: createResolver([dns.address]),
      port,
      // The policy server is on loopback.
      allowPrivate: true,
      now: () => clock,
      onFailure: (_domain, failure) => failures.push(failure),
    });
    const record = (id: string) =>
      dns.records.set('_mta-sts.cache.test', [{ type: 'TXT', value: `v=STSv1; id=${id}` }]);
    const minutes = (n: number) => (clock += n * 60_000);

    record('one');
    body = 'version: STSv1\nmode: enforce\nmx: mx.cache.test\nmax_age: 3600\n';
    assert.equal((await mtaSts.policyFor('cache.test'))?.mode, 'enforce');
    assert.equal(fetches, 1);

    // The same id, looked up again after a while: nothing to fetch.
    minutes(10);
    assert.equal((await mtaSts.policyFor('cache.test'))?.id, 'one');
    assert.equal(fetches, 1);

    // A new id: the new policy.
    record('two');
    body = 'version: STSv1\nmode: testing\nmx: mx.cache.test\nmax_age: 3600\n';
    minutes(10);
    assert.deepEqual(
      { ...(await mtaSts.policyFor('cache.test')) },
      { id: 'two', mode: 'testing', mx: ['mx.cache.test'], maxAgeSeconds: 3600 },
    );
    assert.equal(fetches, 2);

    // A newer id whose policy cannot be fetched: the cached one goes on applying.
    record('three');
    body = undefined;
    minutes(10);
    assert.equal((await mtaSts.policyFor('cache.test'))?.id, 'two');
    assert.equal(fetches, 3);
    assert.equal(failures.at(-1)?.result, 'sts-policy-fetch-error');

    // The record gone (an attacker can strip it): still the cached policy, until max_age.
    dns.records.set('_mta-sts.cache.test', [{ type: 'TXT', value: 'unrelated' }]);
    minutes(10);
    assert.equal((await mtaSts.policyFor('cache.test'))?.id, 'two');
    minutes(60);
    assert.equal(await mtaSts.policyFor('cache.test'), undefined);
  });
});
