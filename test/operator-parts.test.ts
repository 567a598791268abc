// The operator's pure parts: the keyed work queue, conditions, failures in words, and the DNS
// check against a real DNS server on loopback.

import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../lib/log.js';
import { dnsRecords } from '../lib/dns-records.js';
import { ApiException } from '@kubernetes/client-node';
import { failedConditions, setConditions } from '../operator/conditions.js';
import { describeFailure } from '../operator/failure.js';
import { KubeError } from '../operator/kube.js';
import { checkDnsRecords } from '../operator/dns-check.js';
import { WorkQueue } from '../operator/work-queue.js';
import { startDnsServer } from './helpers/dns-server.js';

test('a key added many times while it waits is processed once', async () => {
  const seen: string[] = [];
  const queue = new WorkQueue({ log: silentLogger, handler: async (key) => void seen.push(key) });
  for (let i = 0; i < 5; i++) queue.add('a');
  queue.add('b');
  queue.start();
  await sleep(20);
  assert.deepEqual(seen, ['a', 'b']);
});

test('a key added while it is being processed runs again afterwards, never twice at once', async () => {
  let running = 0;
  let maxRunning = 0;
  let runs = 0;
  const queue = new WorkQueue({
    log: silentLogger,
    concurrency: 4,
    handler: async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      runs++;
      await sleep(30);
      running--;
    },
  });
  queue.start();
  queue.add('a');
  await sleep(5);
  queue.add('a');
  queue.add('a');
  await sleep(100);
  assert.equal(maxRunning, 1);
  assert.equal(runs, 2);
});

test('a failing key is retried with a delay that doubles per failure, and forgotten on success', async () => {
  const times: number[] = [];
  const queue = new WorkQueue({
    log: silentLogger,
    baseDelayMs: 20,
    handler: async () => {
      times.push(Date.now());
      if (times.length < 4) throw new Error('not yet');
    },
  });
  queue.start();
  queue.add('a');
  await sleep(300);
  assert.equal(times.length, 4);
  const gaps = times.slice(1).map((t, i) => t - times[i]!);
  assert.ok(gaps[0]! >= 18 && gaps[1]! >= 38 && gaps[2]! >= 78, `gaps ${gaps.join(', ')} ms`);
  await queue.stop();
});

test('a handler asking to look again later is run again after that delay', async () => {
  let runs = 0;
  const queue = new WorkQueue({
    log: silentLogger,
    handler: async () => (++runs < 3 ? { requeueAfterMs: 10 } : undefined),
  });
  queue.start();
  queue.add('a');
  await sleep(100);
  assert.equal(runs, 3);
});

test('stop waits for the keys being processed', async () => {
  let finished = false;
  const queue = new WorkQueue({
    log: silentLogger,
    handler: async () => {
      await sleep(50);
      finished = true;
    },
  });
  queue.start();
  queue.add('a');
  await sleep(5);
  await queue.stop();
  assert.equal(finished, true);
});

test('a condition keeps its lastTransitionTime unless its status flips', () => {
  const t0 = new Date('2026-01-01T00:00:00.000Z');
  const t1 = new Date('2026-01-02T00:00:00.000Z');
  const first = setConditions(
    undefined,
    1,
    [{ type: 'Ready', status: 'False', reason: 'A', message: 'a' }],
    t0,
  );
  const same = setConditions(first, 2, [{ type: 'Ready', status: 'False', reason: 'B', message: 'b' }], t1);
  assert.equal(same[0]!.lastTransitionTime, '2026-01-01T00:00:00Z');
  assert.equal(same[0]!.observedGeneration, 2);
  const flipped = setConditions(same, 2, [{ type: 'Ready', status: 'True', reason: 'C', message: 'c' }], t1);
  assert.equal(flipped[0]!.lastTransitionTime, '2026-01-02T00:00:00Z');
});

test('the DNS check reads split TXT strings and folded keys, and names what is missing', async () => {
  const dns = await startDnsServer();
  try {
    const resolver = new Resolver();
    resolver.setServers([dns.address]);
    const key = 'A'.repeat(392);
    const records = dnsRecords(
      {
        name: 'mail.example',
        selector: 's1',
        dkim_algorithm: 'rsa-2048',
        dkim_public_key: key,
        return_path_domain: 'b.mail.example',
      },
      { inboundHost: 'mx.example.net' },
    );
    // Published as an owner would: the key split over strings with spaces, their own SPF policy.
    dns.records.set('s1._domainkey.mail.example', [
      { type: 'TXT', value: `v=DKIM1; k=rsa; p=${key.slice(0, 200)} ${key.slice(200)}` },
    ]);
    dns.records.set('b.mail.example', [
      { type: 'TXT', value: 'v=spf1 include:_spf.example.net -all' },
      { type: 'MX', priority: 5, exchange: 'other.example.net' },
    ]);
    const checks = await checkDnsRecords(resolver, records);
    assert.deepEqual(
      checks.map((c) => [c.record.purpose, c.found, c.problem]),
      [
        ['dkim', true, undefined],
        ['spf', true, undefined],
        ['dmarc', false, 'no v=DMARC1 TXT record'],
        ['return-path', false, 'MX is not mx.example.net'],
      ],
    );
    dns.records.set('s1._domainkey.mail.example', [{ type: 'TXT', value: 'v=DKIM1; k=rsa; p=OTHER' }]);
    assert.equal((await checkDnsRecords(resolver, records.slice(0, 1)))[0]!.problem, 'publishes another key');
  } finally {
    await dns.close();
  }
});

test('a failed reconcile turns Ready False for the generation tried and leaves the other conditions as last found', () => {
  const t0 = new Date('2026-01-01T00:00:00.000Z');
  const found = setConditions(
    undefined,
    1,
    [
      { type: 'Compiled', status: 'True', reason: 'Compiled', message: 'compiles' },
      { type: 'Ready', status: 'True', reason: 'VersionStored', message: 'version 1 in use' },
    ],
    t0,
  );
  const failed = failedConditions(
    found,
    2,
    'Postgres is unreachable: connect ECONNREFUSED',
    new Date('2026-01-02'),
  );
  assert.deepEqual(
    failed.map((c) => [c.type, c.status, c.reason, c.observedGeneration]),
    [
      ['Compiled', 'True', 'Compiled', 1],
      ['Ready', 'False', 'ReconcileFailed', 2],
    ],
  );
  assert.equal(failed[1]!.lastTransitionTime, '2026-01-02T00:00:00Z');
  // An object that never had a status gets one.
  assert.deepEqual(
    failedConditions(undefined, 1, 'x').map((c) => c.reason),
    ['ReconcileFailed'],
  );
});

test("a refusal by the API server is said as what was being done and the Status's message, not its JSON", () => {
  const body = JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    status: 'Failure',
    message:
      'secrets "acme-api-key-backend" is forbidden: User "system:serviceaccount:mp:op" cannot patch resource "secrets"',
    reason: 'Forbidden',
    code: 403,
  });
  const err = new KubeError(
    'write Secret apps/acme-api-key-backend',
    new ApiException(403, 'Forbidden', body, {}),
  );
  assert.equal(err.code, 403);
  assert.equal(err.reason, 'Forbidden');
  assert.equal(
    describeFailure(err),
    'could not write Secret apps/acme-api-key-backend: secrets "acme-api-key-backend" is forbidden: ' +
      'User "system:serviceaccount:mp:op" cannot patch resource "secrets"',
  );
  assert.doesNotMatch(describeFailure(new ApiException(500, 'x', body, {})), /[{}]/);
});

test('Postgres out of reach, or refusing a statement, is said in words', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  assert.equal(describeFailure(refused), 'Postgres is unreachable: connect ECONNREFUSED 127.0.0.1:5432');
  // Both addresses of localhost refused: an AggregateError with no message of its own.
  const both = Object.assign(new AggregateError([refused, refused], ''), { code: 'ECONNREFUSED' });
  assert.equal(describeFailure(both), 'Postgres is unreachable: connect ECONNREFUSED 127.0.0.1:5432');
  const fk = Object.assign(new Error('insert or update on table "domains" violates foreign key constraint'), {
    code: '23503',
  });
  assert.match(describeFailure(fk), /^Postgres refused a statement: .* \(SQLSTATE 23503\)$/);
});
