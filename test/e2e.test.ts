// The whole platform as a user installs and uses it, every part real: the Helm chart installed
// into a kube-apiserver that enforces RBAC; the operator run with its Deployment's environment
// and a token of the chart's own ServiceAccount (not the admin certificate), so the chart's RBAC
// is what it gets; `kubectl apply -f examples/`; the API key read from its Secret; the api and the
// sender run with their Deployments' environment; an email sent through the api and delivered to
// Debian's Postfix; and its DKIM signature verified by dkimpy against the record the
// SendingDomain lists in status.dnsRecords. Then a message Postfix cannot deliver: the bounce
// Postfix writes comes back to the smtp Deployment's listener through the signed return path.
//
// Nothing runs in pods (the control plane has no kubelet): each Deployment's command runs as a
// child process with the environment the kubelet would give it, Secret references resolved from
// the Secrets the chart created.

import assert from 'node:assert/strict';
import { createPublicKey, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, parseAllDocuments, stringify as toYaml } from 'yaml';
import { startInbox, type Inbox } from '../dev/inbox.js';
import { startCliProcess, type CliProcess } from './helpers/cli-process.js';
import { freePort } from './helpers/free-port.js';
import { run, startControlPlane, type ControlPlane } from './helpers/control-plane.js';
import { verifyDkimIndependently } from './helpers/dkim.js';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { eventually } from './helpers/eventually.js';
import { startPostfix, type PostfixInstance } from './helpers/postfix.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HELM = join(ROOT, 'bin', 'helm');
const RUN = randomBytes(3).toString('hex');
const RELEASE = 'mailplane';
const RELEASE_NS = `mailplane-e2e-${RUN}`;
/** Where the examples go, as the README's `kubectl -n apps apply -f examples/`. */
const APPS_NS = `apps-e2e-${RUN}`;
const RECIPIENT = 'ada@example.org';
/** A domain whose server (a sink on loopback, behind Postfix) has no such user. */
const GONE_DOMAIN = 'example.net';
/** The public name of the inbound listener, the return-path MX the domain lists. */
const INBOUND_HOST = 'mx.mailplane.test';

// -- what the examples declare ------------------------------------------------------------------

interface Manifest {
  kind: string;
  metadata: { name: string };
  spec: Record<string, unknown>;
}

async function readExamples(): Promise<Manifest[]> {
  const dir = join(ROOT, 'examples');
  const files = (await readdir(dir)).filter((f) => /\.ya?ml$/.test(f)).sort();
  const docs = await Promise.all(
    files.map(async (f) => parseAllDocuments(await readFile(join(dir, f), 'utf8'))),
  );
  return docs.flat().map((d) => d.toJS() as Manifest);
}

// -- objects as kubectl prints them -----------------------------------------------------------------

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

interface DnsRecord {
  type: string;
  name: string;
  value: string;
  purpose: string;
}

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // Rendered manifests are read field by field; their shape is whatever the chart wrote.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  spec?: Record<string, any>;
  status?: {
    observedGeneration?: number;
    conditions?: Condition[];
    dnsRecords?: DnsRecord[];
    apiKeys?: { name: string; secretName: string }[];
  };
  data?: Record<string, string>;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string };
    fieldRef?: { fieldPath: string };
  };
}

const condition = (o: KubeObject | undefined, type: string) =>
  o?.status?.conditions?.find((c) => c.type === type);

// -- commands -------------------------------------------------------------------------------------

// -- shared state of the steps --------------------------------------------------------------------

let cp: ControlPlane | undefined;
let testDb: TestDatabase | undefined;
let postfix: PostfixInstance | undefined;
let dns: DnsServer | undefined;
let workDir: string | undefined;
let operator: CliProcess | undefined;
let api: CliProcess | undefined;
let sender: CliProcess | undefined;
let smtp: CliProcess | undefined;
let refusingMx: Inbox | undefined;
/** Where the smtp Deployment's listener runs; Postfix routes the return-path domain there. */
let smtpPort: number;

let examples: Manifest[];
/** What the release installed, as `helm get manifest` prints it. */
let manifest: KubeObject[];
let apiKey: string;

/** Runs bin/kubectl as the admin (a user of the cluster); fails the test on a non-zero exit. */
async function kubectl(args: string[], input?: string): Promise<string> {
  const result = await cp!.kubectl(args, input);
  assert.equal(result.code, 0, `kubectl ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

async function helm(args: string[]): Promise<string> {
  const result = await run(HELM, args, { env: { ...process.env, KUBECONFIG: cp!.kubeconfig } });
  assert.equal(result.code, 0, `helm ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

async function getObject(namespace: string, kind: string, name: string): Promise<KubeObject> {
  return JSON.parse(await kubectl(['-n', namespace, 'get', kind, name, '-o', 'json'])) as KubeObject;
}

async function secretValue(namespace: string, name: string, key: string): Promise<string> {
  const data = (await getObject(namespace, 'secret', name)).data ?? {};
  assert.ok(
    key in data,
    `Secret ${namespace}/${name} has no key ${key} (it has: ${Object.keys(data).join(', ')})`,
  );
  return Buffer.from(data[key]!, 'base64').toString('utf8');
}

/**
 * The environment the kubelet would give the Deployment's container: literal values, Secret
 * references read from the cluster, the downward API's pod name and namespace. Anything else
 * fails, so that a chart change this test cannot stand in for is noticed rather than dropped.
 */
async function deploymentRuntime(
  name: string,
): Promise<{ command: string; serviceAccount: string; env: Record<string, string> }> {
  const deployment = manifest.find((o) => o.kind === 'Deployment' && o.metadata.name === name);
  assert.ok(deployment, `the release installed no Deployment ${name}`);
  const pod = deployment.spec!.template.spec;
  assert.equal(pod.containers.length, 1, `${name}: one container expected`);
  const container = pod.containers[0];
  assert.equal(container.envFrom, undefined, `${name}: envFrom is not resolved by this test`);
  const args = (container.args ?? []) as string[];
  assert.equal(args.length, 1, `${name}: args should be one mailplane command, got ${JSON.stringify(args)}`);
  const env: Record<string, string> = {};
  for (const v of (container.env ?? []) as EnvVar[]) {
    const secretRef = v.valueFrom?.secretKeyRef;
    const fieldPath = v.valueFrom?.fieldRef?.fieldPath;
    if (v.value !== undefined) env[v.name] = String(v.value);
    else if (secretRef) env[v.name] = await secretValue(RELEASE_NS, secretRef.name, secretRef.key);
    else if (fieldPath === 'metadata.namespace') env[v.name] = RELEASE_NS;
    else if (fieldPath === 'metadata.name') env[v.name] = `${name}-e2e-${RUN}`;
    else assert.fail(`${name}: env ${v.name} has a source this test cannot resolve: ${JSON.stringify(v)}`);
  }
  return { command: args[0]!, serviceAccount: pod.serviceAccountName, env };
}

/** Fails when the API server refused the operator anything: the chart's RBAC lacks a grant. */
function assertNotForbidden(child: CliProcess): void {
  const refusals = child
    .output()
    .split('\n')
    .filter((line) => /\bforbidden\b/i.test(line));
  assert.equal(
    refusals.length,
    0,
    `the operator was refused what its RBAC should allow:\n${refusals.slice(0, 5).join('\n')}\n${child.tail()}`,
  );
}

/** Steps share state: once one fails, the later ones are skipped rather than failing confusingly. */
let failedStep: string | undefined;
function step(name: string, fn: (t: TestContext) => Promise<void>): void {
  it(name, async (t) => {
    if (failedStep) return t.skip(`an earlier step failed: ${failedStep}`);
    try {
      await fn(t);
    } catch (err) {
      failedStep = name;
      throw err;
    }
  });
}

describe('end to end: helm install, kubectl apply -f examples/, send through the api, delivered DKIM-signed to Postfix, a bounce back to the listener', () => {
  before(async () => {
    // Postfix and the DNS server are up before the install: their addresses go into the chart's values.
    examples = await readExamples();
    const returnPath = examples.find((e) => e.kind === 'SendingDomain')!.spec.returnPath as string;
    smtpPort = await freePort();
    const startMtas = async () => {
      refusingMx = await startInbox({ reply: () => ({ code: 550, message: '5.1.1 no such user' }) });
      // As the return-path MX and the refusing domain's MX would be, reached by Postfix on loopback.
      postfix = await startPostfix({
        routes: { [GONE_DOMAIN]: refusingMx.smtpPort, [returnPath]: smtpPort },
      });
    };
    const started = await Promise.allSettled([
      startControlPlane().then((v) => (cp = v)),
      createTestDatabase().then((v) => (testDb = v)),
      startMtas(),
      startDnsServer().then((v) => (dns = v)),
      mkdtemp(join(tmpdir(), 'mailplane-e2e-')).then((v) => (workDir = v)),
    ]);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  });

  after(async () => {
    const problems: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown> | undefined) => {
      try {
        await fn();
      } catch (err) {
        problems.push(`${what}: ${(err as Error).message}`);
      }
    };
    // The processes first: they hold connections to the database and watches on the API server.
    await Promise.all([
      attempt('sender', () => sender?.stop()),
      attempt('smtp', () => smtp?.stop()),
      attempt('api', () => api?.stop()),
      attempt('operator', () => operator?.stop()),
    ]);
    await Promise.all([
      attempt('control plane', () => cp?.stop()),
      attempt('database', () => testDb?.drop()),
      attempt('postfix', () => postfix?.stop()),
      attempt('refusing MX', () => refusingMx?.close()),
      attempt('dns server', () => dns?.close()),
      attempt('temp dir', () => (workDir ? rm(workDir, { recursive: true, force: true }) : undefined)),
    ]);
    if (problems.length > 0) assert.fail(`cleanup failed:\n${problems.join('\n')}`);
  });

  step(
    'helm install puts the chart into a fresh namespace, with the installation secret key in its own Secret',
    async (t) => {
      await kubectl(['create', 'namespace', APPS_NS]);
      const started = Date.now();
      await helm([
        'install',
        RELEASE,
        'charts/mailplane',
        '--namespace',
        RELEASE_NS,
        '--create-namespace',
        '--set-string',
        `database.url=${testDb!.url}`,
        // The namespace the examples go into: the operator may keep their key Secrets there.
        '--set',
        `operator.secretNamespaces={${APPS_NS}}`,
        // Through the chart's own values rather than extra env: the sender relays to the test's
        // Postfix, the operator checks DNS against a loopback server with no records (no outside
        // lookups of example.com, so DNSVerified is reliably False).
        '--set-string',
        `sender.relayUrl=smtp://${postfix!.host}:${postfix!.port}`,
        '--set-string',
        `operator.dnsServers=${dns!.address}`,
        // The listener's public name: domains list it as their return-path MX.
        '--set-string',
        `inboundHost=${INBOUND_HOST}`,
      ]);
      t.diagnostic(`helm install took ${Date.now() - started} ms`);
      const status = JSON.parse(await helm(['status', RELEASE, '-n', RELEASE_NS, '-o', 'json'])) as {
        info: { status: string };
      };
      assert.equal(status.info.status, 'deployed');

      manifest = parseAllDocuments(await helm(['get', 'manifest', RELEASE, '-n', RELEASE_NS]))
        .map((d) => d.toJS() as KubeObject | null)
        .filter((o): o is KubeObject => o !== null);
      for (const name of ['mailplane-operator', 'mailplane-api', 'mailplane-sender', 'mailplane-smtp']) {
        assert.ok(
          manifest.some((o) => o.kind === 'Deployment' && o.metadata.name === name),
          `the release has no Deployment ${name}`,
        );
      }

      // The key the operator's Deployment reads is in a Secret the chart made, kept on uninstall.
      const operatorEnv = (manifest.find(
        (o) => o.metadata.name === 'mailplane-operator' && o.kind === 'Deployment',
      )!.spec!.template.spec.containers[0].env ?? []) as EnvVar[];
      const keyRef = operatorEnv.find((v) => v.name === 'MAILPLANE_SECRET_KEY')?.valueFrom?.secretKeyRef;
      assert.ok(keyRef, 'the operator Deployment takes MAILPLANE_SECRET_KEY from a Secret');
      const keySecret = await getObject(RELEASE_NS, 'secret', keyRef.name);
      assert.equal(keySecret.metadata.labels?.['app.kubernetes.io/managed-by'], 'Helm');
      assert.equal(keySecret.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
      const secretKey = await secretValue(RELEASE_NS, keyRef.name, keyRef.key);
      assert.ok(secretKey.length >= 32, `the generated secret key has ${secretKey.length} characters`);
    },
  );

  step(
    "the operator, running as the chart's ServiceAccount with a token, makes every example Ready",
    async (t) => {
      const { command, serviceAccount, env } = await deploymentRuntime('mailplane-operator');
      assert.equal(command, 'operator');
      assert.ok(serviceAccount, 'the operator Deployment names a ServiceAccount');

      // The kubeconfig a pod's mounted token amounts to: the API server, its CA, the SA's token.
      const admin = parseYaml(await readFile(cp!.kubeconfig, 'utf8')) as {
        clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
      };
      const { server, 'certificate-authority-data': ca } = admin.clusters[0]!.cluster;
      const token = (
        await kubectl(['-n', RELEASE_NS, 'create', 'token', serviceAccount, '--duration=1h'])
      ).trim();
      const operatorKubeconfig = join(workDir!, 'operator.kubeconfig');
      await writeFile(
        operatorKubeconfig,
        toYaml({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'envtest', cluster: { server, 'certificate-authority-data': ca } }],
          users: [{ name: serviceAccount, user: { token } }],
          contexts: [
            {
              name: 'operator',
              context: { cluster: 'envtest', user: serviceAccount, namespace: RELEASE_NS },
            },
          ],
          'current-context': 'operator',
        }),
        { mode: 0o600 },
      );
      // It is the ServiceAccount the API server sees, and RBAC holds it to the chart's grants.
      const whoami = await kubectl(['--kubeconfig', operatorKubeconfig, 'auth', 'whoami', '-o', 'json']);
      assert.equal(
        (JSON.parse(whoami) as { status: { userInfo: { username: string } } }).status.userInfo.username,
        `system:serviceaccount:${RELEASE_NS}:${serviceAccount}`,
      );
      const canReadAnySecret = await cp!.kubectl([
        '--kubeconfig',
        operatorKubeconfig,
        'auth',
        'can-i',
        'get',
        'secrets',
        '-n',
        'default',
      ]);
      assert.equal(canReadAnySecret.stdout.trim(), 'no', 'the operator token must not be an admin');

      operator = await startCliProcess(command, { ...env, KUBECONFIG: operatorKubeconfig });

      const applied = Date.now();
      await kubectl(['-n', APPS_NS, 'apply', '-f', 'examples/']);
      const table = async () => (await cp!.kubectl(['-n', APPS_NS, 'get', 'mailplane'])).stdout;
      const objects = await eventually(
        `every resource of \`kubectl -n ${APPS_NS} get mailplane\` to be Ready`,
        async () => {
          // A refusal by RBAC does not go away with time: say so at once rather than time out.
          assertNotForbidden(operator!);
          const list = JSON.parse(await kubectl(['-n', APPS_NS, 'get', 'mailplane', '-o', 'json'])) as {
            items: KubeObject[];
          };
          const ready = (o: KubeObject) =>
            condition(o, 'Ready')?.status === 'True' &&
            o.status?.observedGeneration === o.metadata.generation;
          return list.items.length === examples.length && list.items.every(ready) ? list.items : undefined;
        },
        90_000,
        async () =>
          `kubectl get mailplane:\n${await table()}\nconditions:\n${JSON.stringify(
            JSON.parse(await kubectl(['-n', APPS_NS, 'get', 'mailplane', '-o', 'json'])).items.map(
              (o: KubeObject) => ({ kind: o.kind, name: o.metadata.name, conditions: o.status?.conditions }),
            ),
            null,
            1,
          )}\n${operator!.tail()}`,
      );
      t.diagnostic(`examples Ready ${Date.now() - applied} ms after kubectl apply`);
      assert.deepEqual(
        objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(),
        examples.map((e) => `${e.kind}/${e.metadata.name}`).sort(),
      );

      // No DNS is published in the loopback server: Ready, but DNSVerified says what to publish.
      const domain = objects.find((o) => o.kind === 'SendingDomain')!;
      assert.equal(condition(domain, 'KeyReady')?.status, 'True');
      const dnsVerified = condition(domain, 'DNSVerified');
      assert.equal(dnsVerified?.status, 'False', JSON.stringify(dnsVerified));
      assert.equal(dnsVerified?.reason, 'RecordsMissing');

      // What `kubectl describe` shows: the Events the operator recorded as it issued the keys.
      const tenantName = examples.find((e) => e.kind === 'Tenant')!.metadata.name;
      const eventReasons = async () =>
        (
          JSON.parse(await kubectl(['-n', APPS_NS, 'get', 'events', '-o', 'json'])) as {
            items: { reason: string; involvedObject: { kind: string; name: string } }[];
          }
        ).items.map((e) => `${e.involvedObject.kind}/${e.involvedObject.name} ${e.reason}`);
      const expectedEvents = [
        `Tenant/${tenantName} KeyIssued`,
        `SendingDomain/${domain.metadata.name} KeyGenerated`,
      ];
      await eventually(
        `the Events ${expectedEvents.join(', ')}`,
        async () => {
          assertNotForbidden(operator!);
          const reasons = await eventReasons();
          return expectedEvents.every((e) => reasons.includes(e)) ? true : undefined;
        },
        15_000,
        async () => `events: ${JSON.stringify(await eventReasons())}\n${operator!.tail()}`,
      );

      // Every write the operator made went through on its first try: no permission it lacks.
      assertNotForbidden(operator);
    },
  );

  step("the API key is read from the Tenant's Secret with kubectl, as a user would", async () => {
    const tenantName = examples.find((e) => e.kind === 'Tenant')!.metadata.name;
    const tenant = await getObject(APPS_NS, 'tenant', tenantName);
    const listed = tenant.status?.apiKeys ?? [];
    assert.equal(listed.length, 1, `status.apiKeys: ${JSON.stringify(listed)}`);
    assert.equal(listed[0]!.secretName, `${tenantName}-api-key-${listed[0]!.name}`);
    const encoded = await kubectl([
      '-n',
      APPS_NS,
      'get',
      'secret',
      listed[0]!.secretName,
      '-o',
      'jsonpath={.data.api-key}',
    ]);
    apiKey = Buffer.from(encoded, 'base64').toString('utf8');
    assert.match(apiKey, /^mp_live_\S{20,}$/);
  });

  step(
    'the api, the sender and the smtp listener start with the environment of their Deployments and answer /readyz',
    async () => {
      const apiRuntime = await deploymentRuntime('mailplane-api');
      const senderRuntime = await deploymentRuntime('mailplane-sender');
      const smtpRuntime = await deploymentRuntime('mailplane-smtp');
      assert.equal(apiRuntime.command, 'api');
      assert.equal(senderRuntime.command, 'sender');
      assert.equal(smtpRuntime.command, 'smtp');
      assert.equal(senderRuntime.env.MAILPLANE_RELAY_URL, `smtp://${postfix!.host}:${postfix!.port}`);
      // The chart's container port (2525) is one port for every pod; beside each other, the
      // listener takes the one Postfix routes to, as the Service's targetPort would.
      assert.equal(smtpRuntime.env.MAILPLANE_SMTP_PORT, '2525');
      [api, sender, smtp] = await Promise.all([
        startCliProcess(apiRuntime.command, apiRuntime.env),
        startCliProcess(senderRuntime.command, senderRuntime.env),
        startCliProcess(smtpRuntime.command, { ...smtpRuntime.env, MAILPLANE_SMTP_PORT: String(smtpPort) }),
      ]);
    },
  );

  step(
    'an email sent through the api is delivered to Postfix, and its DKIM signature verifies against status.dnsRecords',
    async (t) => {
      const domainExample = examples.find((e) => e.kind === 'SendingDomain')!;
      const domainName = domainExample.spec.domain as string;
      const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
      const sent = Date.now();
      const res = await fetch(`${api!.url}/v1/emails`, {
        method: 'POST',
        headers,
        body: JSON.stringify({
          from: `Acme <hello@${domainName}>`,
          to: [RECIPIENT],
          subject: 'Hello from the end-to-end test',
          text: 'It works.',
        }),
      });
      const body = await res.text();
      assert.equal(res.status, 202, `POST /v1/emails: ${body}\n${api!.tail()}`);
      const { id } = JSON.parse(body) as { id: string };

      interface EmailView {
        status: string;
        recipients: { address: string; status: string; attempts: number; last_reply: string | null }[];
      }
      let last: EmailView | undefined;
      const email = await eventually(
        `email ${id} to be delivered`,
        async () => {
          const r = await fetch(`${api!.url}/v1/emails/${id}`, {
            headers: { authorization: `Bearer ${apiKey}` },
          });
          assert.equal(r.status, 200, `GET /v1/emails/${id}: ${r.status}`);
          last = (await r.json()) as EmailView;
          // A deferral would only be retried a minute later: here it means delivery is broken.
          assert.ok(
            !['deferred', 'bounced', 'failed', 'suppressed', 'canceled'].includes(last.status),
            `email ${id} is ${last.status}: ${JSON.stringify(last.recipients)}\n${sender!.tail()}`,
          );
          return last.status === 'delivered' ? last : undefined;
        },
        60_000,
        () => `last seen: ${JSON.stringify(last)}\n${sender!.tail()}\n${api!.tail(20)}`,
      );
      t.diagnostic(`delivered ${Date.now() - sent} ms after POST /v1/emails`);
      assert.equal(email.recipients.length, 1);
      const [recipient] = email.recipients;
      assert.equal(recipient!.address, RECIPIENT);
      assert.match(recipient!.last_reply ?? '', /^250 /);

      // The message Postfix stored is the one the api reports delivered: its queue id is in both.
      const [received] = await postfix!.waitForMessages(1);
      assert.equal(received!.originalRecipient, RECIPIENT);
      const queueId = /queued as ([0-9A-Za-z]+)/.exec(recipient!.last_reply ?? '')?.[1];
      assert.ok(queueId, `no Postfix queue id in the reply ${recipient!.last_reply}`);
      const raw = received!.raw.toString('utf8');
      assert.match(
        raw,
        new RegExp(`with E?SMTP id ${queueId}\\b`),
        'Postfix received it under that queue id',
      );
      assert.match(raw, /^Subject: Hello from the end-to-end test\r?$/m);
      // The return path is a signed VERP address at the return-path domain, whose MX the status lists.
      const returnPath = domainExample.spec.returnPath as string;
      assert.match(
        received!.sender,
        new RegExp(`^bounces\\+[0-9a-f-]{36}\\.[0-9a-f]{16}@${returnPath.replace(/\./g, '\\.')}$`),
      );
      const domain = await getObject(APPS_NS, 'sendingdomain', domainExample.metadata.name);
      assert.deepEqual(
        domain.status?.dnsRecords?.find((r) => r.purpose === 'return-path'),
        { type: 'MX', name: returnPath, value: `10 ${INBOUND_HOST}`, purpose: 'return-path' },
      );

      // The DKIM record as a user reads it to publish: the SendingDomain's status, with kubectl.
      const selector = (domainExample.spec.dkim as { selector: string }).selector;
      const dkimRecord = domain.status?.dnsRecords?.find((r) => r.purpose === 'dkim');
      assert.ok(
        dkimRecord,
        `no DKIM record in status.dnsRecords: ${JSON.stringify(domain.status?.dnsRecords)}`,
      );
      assert.equal(dkimRecord.type, 'TXT');
      assert.equal(dkimRecord.name, `${selector}._domainkey.${domainName}`);

      const signatures = raw
        .slice(0, raw.indexOf('\r\n\r\n'))
        .replace(/\r\n[ \t]+/g, ' ')
        .split('\r\n')
        .filter((line) => /^DKIM-Signature:/i.test(line));
      assert.equal(signatures.length, 1, `one DKIM-Signature expected:\n${signatures.join('\n')}`);
      const tags = Object.fromEntries(
        signatures[0]!
          .replace(/^DKIM-Signature:/i, '')
          .split(';')
          .map((part) => part.split('='))
          .map(([k, ...v]) => [k!.trim(), v.join('=').replace(/\s+/g, '')]),
      );
      assert.equal(tags.d, domainName, 'signed for the example domain (d=)');
      assert.equal(tags.s, selector, 'signed with the selector the status lists (s=)');

      const { ok, output } = await verifyDkimIndependently(received!.raw, {
        [dkimRecord.name]: dkimRecord.value,
      });
      assert.ok(ok, `dkimpy does not verify the signature with the status record:\n${output}\n${raw}`);
      // The pass rests on that record: without it there is no key to verify with.
      assert.equal((await verifyDkimIndependently(received!.raw, {})).ok, false);
      // And the status lists the key the operator keeps in the domain's Secret.
      const pem = await secretValue(APPS_NS, `${domainExample.metadata.name}-dkim`, 'private.key');
      const spki = createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('base64');
      assert.ok(dkimRecord.value.replace(/\s+/g, '').endsWith(`p=${spki}`), 'status p= is the Secret key');
    },
  );

  step(
    'a message Postfix accepts but cannot deliver comes back as a bounce to the smtp listener: bounced, and the address suppressed',
    async (t) => {
      const domainName = examples.find((e) => e.kind === 'SendingDomain')!.spec.domain as string;
      const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
      const to = `gone@${GONE_DOMAIN}`;
      const post = async () => {
        const res = await fetch(`${api!.url}/v1/emails`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ from: `hello@${domainName}`, to, subject: 'Hello?', text: 'Anyone?' }),
        });
        const body = await res.text();
        assert.equal(res.status, 202, body);
        return (JSON.parse(body) as { id: string }).id;
      };
      interface EmailView {
        status: string;
        events: { type: string; async?: boolean; status?: string }[];
      }
      const view = async (id: string) =>
        (await (await fetch(`${api!.url}/v1/emails/${id}`, { headers })).json()) as EmailView;

      const sent = Date.now();
      const id = await post();
      let last: EmailView | undefined;
      const bounced = await eventually(
        `email ${id} to bounce`,
        async () => ((last = await view(id)).status === 'bounced' ? last : undefined),
        60_000,
        () => `last seen: ${JSON.stringify(last)}\n${sender!.tail(20)}\n${smtp!.tail(20)}`,
      );
      t.diagnostic(`bounced ${Date.now() - sent} ms after POST /v1/emails`);
      const types = bounced.events.map((e) => e.type);
      assert.ok(types.indexOf('delivered') < types.indexOf('bounced'), `Postfix took it first: ${types}`);
      const event = bounced.events.find((e) => e.type === 'bounced')!;
      assert.equal(event.async, true);
      assert.equal(event.status, '5.1.1');
      const metrics = await (await fetch(`${smtp!.url}/metrics`)).text();
      assert.match(metrics, /^mailplane_inbound_reports_total\{outcome="bounced"\} 1$/m);

      // The address is suppressed: the next send to it is not attempted.
      const again = await post();
      await eventually(
        `email ${again} to be suppressed`,
        async () => ((last = await view(again)).status === 'suppressed' ? last : undefined),
        30_000,
        () => `last seen: ${JSON.stringify(last)}\n${sender!.tail(20)}`,
      );
    },
  );

  step(
    'the operator still leads, renewing its Lease as the ServiceAccount, and was refused nothing',
    async () => {
      const leaseNamespace = (await deploymentRuntime('mailplane-operator')).env
        .MAILPLANE_OPERATOR_NAMESPACE!;
      interface Lease {
        spec: { holderIdentity?: string; acquireTime?: string; renewTime?: string };
      }
      let lease: Lease | undefined;
      // The leader renews every fifth of the lease duration; a renewal is an update RBAC must allow.
      await eventually(
        `the Lease ${leaseNamespace}/mailplane-operator to be renewed`,
        async () => {
          assertNotForbidden(operator!);
          lease = JSON.parse(
            await kubectl(['-n', leaseNamespace, 'get', 'lease', 'mailplane-operator', '-o', 'json']),
          ) as Lease;
          const { acquireTime, renewTime } = lease.spec;
          return acquireTime && renewTime && Date.parse(renewTime) > Date.parse(acquireTime)
            ? true
            : undefined;
        },
        30_000,
        () => `lease: ${JSON.stringify(lease)}\n${operator!.tail()}`,
      );
      assert.match(lease!.spec.holderIdentity ?? '', /^mailplane-operator-e2e-/);
      const metrics = await (await fetch(`${operator!.url}/metrics`)).text();
      assert.match(metrics, /^mailplane_operator_leader 1$/m, `not leading:\n${operator!.tail()}`);
      assertNotForbidden(operator!);
    },
  );
  step(
    'a Tenant in a namespace where the operator may not keep Secrets gets no finalizer, and kubectl shows why as one Warning Event',
    async () => {
      const strayNs = `stray-e2e-${RUN}`;
      await kubectl(['create', 'namespace', strayNs]);
      await kubectl(
        ['-n', strayNs, 'apply', '-f', '-'],
        toYaml({
          apiVersion: 'mailplane.io/v1alpha1',
          kind: 'Tenant',
          metadata: { name: 'stray' },
          spec: { apiKeys: [{ name: 'backend', scopes: ['send'] }] },
        }),
      );
      interface Event {
        type: string;
        reason: string;
        message: string;
        involvedObject: { kind: string; name: string };
      }
      const failures = async () =>
        (
          JSON.parse(await kubectl(['-n', strayNs, 'get', 'events', '-o', 'json'])) as { items: Event[] }
        ).items.filter((e) => e.reason === 'NamespaceNotAllowed');
      const [event] = await eventually(
        `a NamespaceNotAllowed Event in ${strayNs}`,
        async () => ((await failures()).length > 0 ? failures() : undefined),
        30_000,
        () => operator!.tail(),
      );
      assert.equal(event!.type, 'Warning');
      assert.deepEqual(event!.involvedObject.kind, 'Tenant');
      assert.match(event!.message, /may not keep Secrets in namespace/);
      // Told once, not at every retry.
      await sleep(2_000);
      assert.equal((await failures()).length, 1);
    },
  );
});
