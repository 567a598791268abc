// DKIM keys that rotate themselves, and Ed25519 domains that also sign with RSA, on a real
// kube-apiserver, Postgres, the operator as a process, a loopback DNS server and the real sender
// relaying to an SMTP sink: a key walks through generate → publish → verify → switch → retire
// (with a short rotateEvery and retireAfter), an operator restarted mid-rotation carries on with
// the same next key, and what the sender signs verifies under dkimpy and OpenDKIM against the
// records status.dnsRecords lists.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { startApi, type RunningApi } from '../api/main.js';
import { readConfig, type Config } from '../lib/config.js';
import { decrypt } from '../lib/crypto.js';
import { openDatabase, type DatabaseHandle } from '../lib/db/index.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { templateRenderer } from '../lib/runtime.js';
import type { Renderer } from '../lib/render/sandbox.js';
import { startSender, type Sender } from '../sender/worker.js';
import { startControlPlane, type ControlPlane } from './helpers/control-plane.js';
import { verifyDkimIndependently, verifyDkimWithOpenDkim } from './helpers/dkim.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { eventually } from './helpers/eventually.js';
import {
  condition,
  domainYaml,
  installCrds,
  kubeObjects,
  secretData,
  tenantYaml,
  type KubeObject,
} from './helpers/kube-objects.js';
import { startOperatorProcess, type OperatorProcess } from './helpers/operator.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';

const SECRET = 'dkim-rotation-secret-key-of-32-characters-ok';
const RUN = randomBytes(3).toString('hex');
const APPS = `apps-${RUN}`;
/** rotateEvery of the rotating domain: the shortest the CRD takes. */
const ROTATE_EVERY = '1m';
/** The first rotation starts a minute after the key was made; the reconcile that sees it is on time. */
const ROTATION_START_MS = 100_000;

let cp: ControlPlane;
let k: ReturnType<typeof kubeObjects>;
let testDb: TestDatabase;
let database: DatabaseHandle;
let config: Readonly<Config>;
let api: RunningApi;
let dns: DnsServer;
let sink: SmtpSink;
let renderer: Renderer;
let sender: Sender;
let operator: OperatorProcess | undefined;
let apiKey: string;

const operatorEnv = () => ({
  KUBECONFIG: cp.kubeconfig,
  DATABASE_URL: testDb.url,
  MAILPLANE_SECRET_KEY: SECRET,
  MAILPLANE_OPERATOR_NAMESPACE: APPS,
  MAILPLANE_LEASE_DURATION_SECONDS: '2',
  MAILPLANE_RESYNC_SECONDS: '600',
  // A key waiting for DNS is looked up again this often.
  MAILPLANE_DNS_RECHECK_SECONDS: '1',
  MAILPLANE_DNS_SERVERS: dns.address,
});

before(async () => {
  [cp, testDb, dns, sink] = await Promise.all([
    startControlPlane(),
    createTestDatabase(),
    startDnsServer(),
    startSmtpSink(),
  ]);
  k = kubeObjects(cp);
  await installCrds(cp);
  await k.kubectl(['create', 'namespace', APPS]);
  config = readConfig({
    DATABASE_URL: testDb.url,
    MAILPLANE_SECRET_KEY: SECRET,
    PORT: '0',
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${sink.port}`,
  });
  database = openDatabase(testDb.url, { max: 5 });
  api = await startApi({ database, config, log: silentLogger, metrics: createMetrics() });
  renderer = templateRenderer(config);
  sender = await startSender({
    pool: database.pool,
    db: database.db,
    config,
    log: silentLogger,
    metrics: createMetrics(),
    renderer,
  });
  operator = await startOperatorProcess(operatorEnv());
  await k.apply(tenantYaml(APPS, 'acme', [{ name: 'backend', scopes: ['send', 'read'] }]));
  await k.waitCondition(APPS, 'tenant', 'acme', 'Ready', 'True');
  apiKey = secretData(await k.getObject(APPS, 'secret', 'acme-api-key-backend'), 'api-key')!;
});

after(async () => {
  await operator?.stop();
  await sender?.stop();
  renderer?.dispose();
  await api?.close();
  await database?.close();
  await Promise.all([cp?.stop(), testDb?.drop(), dns?.close(), sink?.close()]);
});

type DnsRecord = NonNullable<NonNullable<KubeObject['status']>['dnsRecords']>[number] & { state?: string };

const dkimRecords = (o: KubeObject | undefined) =>
  ((o?.status?.dnsRecords ?? []) as DnsRecord[]).filter((r) => r.purpose === 'dkim');

/** Publishes records in the loopback DNS, as the domain's owner would in their zone. */
function publish(records: DnsRecord[]): void {
  for (const r of records) {
    if (r.type !== 'TXT') continue;
    const name = r.name.toLowerCase();
    const others = (dns.records.get(name) ?? []).filter((a) => a.type !== 'TXT' || r.purpose !== 'dkim');
    dns.records.set(name, [...others, { type: 'TXT', value: r.value }]);
  }
}

/** Sends one email through the api and returns it as the sink received it. */
async function sendAndReceive(from: string, subject: string): Promise<string> {
  const res = await fetch(`${api.url}/v1/emails`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ from, to: 'someone@example.org', subject, text: `hello from ${from}` }),
  });
  assert.equal(res.status, 202, await res.text());
  return eventually(
    `the sink to receive "${subject}"`,
    async () => sink.messages().find((m) => m.raw.includes(`Subject: ${subject}`))?.raw,
    30_000,
  );
}

/** The DKIM-Signature fields of a message, unfolded. */
function signatures(raw: string): { s: string; a: string }[] {
  const header = raw.slice(0, raw.indexOf('\r\n\r\n'));
  return header
    .split(/\r\n(?=\S)/)
    .filter((f) => /^DKIM-Signature:/i.test(f))
    .map((f) => f.replace(/\r\n\s+/g, ' '))
    .map((f) => ({ s: /\bs=([^;\s]+)/.exec(f)![1]!, a: /\ba=([^;\s]+)/.exec(f)![1]! }));
}

/** The TXT values status.dnsRecords lists for DKIM, by name, as a verifier's DNS. */
const keyRecords = (o: KubeObject | undefined) =>
  Object.fromEntries(dkimRecords(o).map((r) => [r.name, r.value]));

const dkimKeyRows = (domain: string) =>
  database.db
    .selectFrom('dkim_keys')
    .innerJoin('domains', 'domains.id', 'dkim_keys.domain_id')
    .select(['dkim_keys.selector', 'dkim_keys.state', 'dkim_keys.slot', 'dkim_keys.private_key'])
    .where('domains.name', '=', domain)
    .orderBy('dkim_keys.selector')
    .execute();

test(
  'a key rotates: the next key is published and waits for DNS (across an operator restart), mail switches to it, and the old one is retired',
  { timeout: 300_000 },
  async () => {
    await k.apply(
      domainYaml(APPS, 'rotating', 'acme', 'rotating.example', {
        rotateEvery: ROTATE_EVERY,
        retireAfter: '15s',
      }),
    );
    const first = await k.waitCondition(APPS, 'sendingdomain', 'rotating', 'Ready', 'True');
    publish(first.status!.dnsRecords as DnsRecord[]);
    assert.equal(first.status!.selector, 'mailplane');
    assert.equal(condition(first, 'KeyCurrent')?.reason, 'RotationScheduled');
    assert.match(condition(first, 'KeyCurrent')!.message, /the next rotation is due at /);
    const [original] = dkimRecords(first);
    assert.equal(original!.state, 'active');

    // Generate and publish: due a minute after the key was made.
    const started = await k.waitCondition(
      APPS,
      'sendingdomain',
      'rotating',
      'KeyCurrent',
      'False',
      'NextKeyNotPublished',
      ROTATION_START_MS,
    );
    const next = dkimRecords(started).find((r) => r.state === 'next')!;
    assert.ok(next, `a next key is listed: ${JSON.stringify(dkimRecords(started))}`);
    const selector = next.name.split('._domainkey.')[0]!;
    assert.match(selector, /^mailplane-\d{8}$/);
    assert.notEqual(next.value, original!.value);
    assert.equal(started.status!.selector, 'mailplane', 'still signing with the old key');
    assert.equal(condition(started, 'Ready')?.status, 'True');
    assert.equal(condition(started, 'DNSVerified')?.status, 'True', 'what signs now is all published');
    assert.match(condition(started, 'KeyCurrent')!.message, new RegExp(`publish TXT ${next.name}`));
    const generated = await k.waitEvent(APPS, 'rotating', 'NextKeyGenerated');
    assert.match(generated.message, /spec\.dkim\.rotateEvery is 1m/);
    await k.waitEvent(APPS, 'rotating', 'NextKeyNotPublished');
    // The next key is in the Secret beside the one signing, so a deleted Secret comes back whole.
    const secret = await k.getObject(APPS, 'secret', 'rotating-dkim');
    const [nextRow] = (await dkimKeyRows('rotating.example')).filter((r) => r.state === 'next');
    assert.equal(secretData(secret, `${selector}.key`), decrypt(config.secretKey, nextRow!.private_key));
    assert.equal(secretData(secret, 'selector'), 'mailplane');

    // Until DNS shows the new key, mail is signed with the old one.
    const before = await sendAndReceive('hello@rotating.example', 'before the switch');
    assert.deepEqual(
      signatures(before).map((s) => s.s),
      ['mailplane'],
    );
    const verifiedBefore = await verifyDkimIndependently(before, keyRecords(started));
    assert.ok(verifiedBefore.ok, verifiedBefore.output);

    // The operator restarts mid-rotation: the new one carries on with the same next key.
    await operator!.stop();
    operator = await startOperatorProcess(operatorEnv());
    // Two reconciles of the domain by the new leader: the second saw what the first left.
    await eventually(
      'the new operator to reconcile the domain',
      async () =>
        (await operator!.metric('mailplane_operator_reconciles_total', { kind: 'SendingDomain' })) >= 2,
      30_000,
    );
    const afterRestart = await k.getObject(APPS, 'sendingdomain', 'rotating');
    assert.deepEqual(
      dkimRecords(afterRestart).find((r) => r.state === 'next'),
      next,
      'the same next key, not another',
    );
    assert.equal(
      (await dkimKeyRows('rotating.example')).filter((r) => r.state === 'next').length,
      1,
      'one next key',
    );
    assert.equal(condition(afterRestart, 'KeyCurrent')?.reason, 'NextKeyNotPublished');

    // Verify and switch: the owner publishes the record, the operator sees it in DNS.
    publish([next]);
    const switched = await k.waitCondition(
      APPS,
      'sendingdomain',
      'rotating',
      'KeyCurrent',
      'True',
      'OldKeyRetiring',
    );
    assert.equal(switched.status!.selector, selector);
    const states = Object.fromEntries(dkimRecords(switched).map((r) => [r.name, r.state]));
    assert.deepEqual(states, {
      [next.name]: 'active',
      [original!.name]: 'retiring',
    });
    assert.equal(condition(switched, 'Ready')?.status, 'True');
    const switchEvent = await k.waitEvent(APPS, 'rotating', 'KeySwitched');
    assert.match(switchEvent.message, new RegExp(`DNS shows selector ${selector}`));
    const audit = await database.db
      .selectFrom('audit_log')
      .select(['action', 'detail'])
      .where('action', '=', 'domain.key_changed')
      .where('target', '=', 'rotating.example')
      .execute();
    assert.equal(audit.length, 1, 'the switch is in the audit log');

    const afterSwitch = await sendAndReceive('hello@rotating.example', 'after the switch');
    assert.deepEqual(
      signatures(afterSwitch).map((s) => s.s),
      [selector],
    );
    const verified = await verifyDkimIndependently(afterSwitch, keyRecords(switched));
    assert.ok(verified.ok, verified.output);
    // The old record is still listed for mail in flight: what was signed before still verifies.
    const stillBefore = await verifyDkimIndependently(before, keyRecords(switched));
    assert.ok(stillBefore.ok, stillBefore.output);

    // Retire: after retireAfter, the old key and its record go.
    const retired = await eventually(
      'the old key to be retired',
      async () => {
        const o = await k.getObject(APPS, 'sendingdomain', 'rotating');
        return dkimRecords(o).length === 1 && condition(o, 'KeyCurrent')?.status === 'True' ? o : undefined;
      },
      40_000,
    );
    assert.deepEqual(
      dkimRecords(retired).map((r) => [r.name, r.state]),
      [[next.name, 'active']],
    );
    assert.equal(condition(retired, 'KeyCurrent')?.reason, 'RotationScheduled');
    const retiredEvent = await k.waitEvent(APPS, 'rotating', 'KeyRetired');
    assert.match(retiredEvent.message, /selector mailplane is retired/);
    await eventually(
      'the retired key to leave the Secret',
      async () => {
        const s = await k.getObject(APPS, 'secret', 'rotating-dkim');
        return secretData(s, 'mailplane.key') === undefined && secretData(s, 'selector') === selector;
      },
      10_000,
    );
    assert.deepEqual(await dkimKeyRows('rotating.example'), []);
  },
);

test('an Ed25519 domain with alsoRsa signs every message twice, and both signatures verify under dkimpy and OpenDKIM', async () => {
  await k.apply(domainYaml(APPS, 'dual', 'acme', 'dual.example', { algorithm: 'ed25519', alsoRsa: true }));
  const domain = await k.waitCondition(APPS, 'sendingdomain', 'dual', 'Ready', 'True');
  const records = dkimRecords(domain);
  assert.deepEqual(
    records.map((r) => [r.name, r.state, /k=(\w+)/.exec(r.value)![1]]),
    [
      ['mailplane._domainkey.dual.example', 'active', 'ed25519'],
      ['mailplane-rsa._domainkey.dual.example', 'active', 'rsa'],
    ],
  );
  assert.match(condition(domain, 'KeyReady')!.message, /and an rsa-2048 key, selector mailplane-rsa/);

  const raw = await sendAndReceive('hello@dual.example', 'signed twice');
  assert.deepEqual(
    signatures(raw)
      .map((s) => `${s.s} ${s.a}`)
      .sort(),
    ['mailplane ed25519-sha256', 'mailplane-rsa rsa-sha256'],
  );
  const dkimpy = await verifyDkimIndependently(raw, keyRecords(domain));
  assert.ok(dkimpy.ok, dkimpy.output);
  const opendkim = await verifyDkimWithOpenDkim(raw, keyRecords(domain));
  assert.ok(opendkim.ok, opendkim.output);
  // A receiver that knows only the RSA key (it cannot read Ed25519 records) still finds a valid signature.
  const rsaOnly = { 'mailplane-rsa._domainkey.dual.example': records[1]!.value };
  const rsaVerdict = await verifyDkimWithOpenDkim(raw, rsaOnly);
  assert.match(rsaVerdict.output, /s=mailplane-rsa.*succeeded|mailplane-rsa[^\n]*succeeded/);
});

test('alsoRsa added to an Ed25519 domain in use waits for DNS before the second signature; taken off, the RSA key is retired', async () => {
  await k.apply(domainYaml(APPS, 'later', 'acme', 'later.example', { algorithm: 'ed25519' }));
  const plain = await k.waitCondition(APPS, 'sendingdomain', 'later', 'Ready', 'True');
  publish(plain.status!.dnsRecords as DnsRecord[]);
  await k.patchSpec(APPS, 'sendingdomain', 'later', { dkim: { algorithm: 'ed25519', alsoRsa: true } });
  const waiting = await k.waitCondition(
    APPS,
    'sendingdomain',
    'later',
    'KeyCurrent',
    'False',
    'NextKeyNotPublished',
  );
  const rsa = dkimRecords(waiting).find((r) => r.state === 'next')!;
  assert.match(rsa.value, /k=rsa/);
  const single = await sendAndReceive('hello@later.example', 'one signature while DNS waits');
  assert.deepEqual(
    signatures(single).map((s) => s.a),
    ['ed25519-sha256'],
  );

  publish([rsa]);
  const both = await k.waitCondition(APPS, 'sendingdomain', 'later', 'KeyCurrent', 'True', 'KeyInUse');
  assert.ok(dkimRecords(both).every((r) => r.state === 'active'));
  const twice = await sendAndReceive('hello@later.example', 'two signatures once DNS shows both');
  assert.deepEqual(
    signatures(twice)
      .map((s) => s.a)
      .sort(),
    ['ed25519-sha256', 'rsa-sha256'],
  );
  const verified = await verifyDkimWithOpenDkim(twice, keyRecords(both));
  assert.ok(verified.ok, verified.output);

  await k.patchSpec(APPS, 'sendingdomain', 'later', { dkim: { algorithm: 'ed25519', alsoRsa: false } });
  const stopped = await k.waitCondition(
    APPS,
    'sendingdomain',
    'later',
    'KeyCurrent',
    'True',
    'OldKeyRetiring',
  );
  assert.equal(dkimRecords(stopped).find((r) => r.name === rsa.name)?.state, 'retiring');
  await k.waitEvent(APPS, 'later', 'RsaSigningStopped');
  const once = await sendAndReceive('hello@later.example', 'one signature again');
  assert.deepEqual(
    signatures(once).map((s) => s.a),
    ['ed25519-sha256'],
  );
});

test('the API server refuses a rotateEvery that is not a duration, in words', async () => {
  const result = await cp.kubectl(
    ['apply', '-f', '-'],
    domainYaml(APPS, 'typo', 'acme', 'typo.example', { rotateEvery: '90 days' }),
  );
  assert.notEqual(result.code, 0);
  assert.match(
    result.stderr,
    /spec\.dkim\.rotateEvery: Invalid value.*must be a duration such as 90d, 2160h or 36h30m/,
  );
});

test('a new spec.dkim.selector rotates to a new key under exactly that selector, once DNS shows it', async () => {
  await k.apply(domainYaml(APPS, 'renamed', 'acme', 'renamed.example'));
  const first = await k.waitCondition(APPS, 'sendingdomain', 'renamed', 'Ready', 'True');
  publish(first.status!.dnsRecords as DnsRecord[]);
  await k.patchSpec(APPS, 'sendingdomain', 'renamed', { dkim: { selector: 'mp2' } });
  const waiting = await k.waitCondition(
    APPS,
    'sendingdomain',
    'renamed',
    'KeyCurrent',
    'False',
    'NextKeyNotPublished',
  );
  assert.equal(waiting.status!.selector, 'mailplane', 'the published selector signs until then');
  const next = dkimRecords(waiting).find((r) => r.state === 'next')!;
  assert.equal(next.name, 'mp2._domainkey.renamed.example');
  publish([next]);
  const switched = await k.waitCondition(
    APPS,
    'sendingdomain',
    'renamed',
    'KeyCurrent',
    'True',
    'OldKeyRetiring',
  );
  assert.equal(switched.status!.selector, 'mp2');
  const raw = await sendAndReceive('hello@renamed.example', 'under the new selector');
  assert.deepEqual(
    signatures(raw).map((s) => s.s),
    ['mp2'],
  );
  const verified = await verifyDkimIndependently(raw, keyRecords(switched));
  assert.ok(verified.ok, verified.output);
});
