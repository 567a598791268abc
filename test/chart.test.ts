// The Helm chart: lint and render with helm built from source, then against a real kube-apiserver
// every rendered object in a namespace enforcing the "restricted" Pod Security Standard, a real
// install and upgrade, and `kubectl auth can-i` for each ServiceAccount.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { run, startControlPlane, type ControlPlane } from './helpers/control-plane.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HELM = `${ROOT}bin/helm`;
const CHART = 'charts/mailplane';
const RUN = randomBytes(3).toString('hex');
const RELEASE_NS = `mailplane-${RUN}`;
const TENANT_NS = `apps-${RUN}`;
const DEFAULTS = ['--set', 'database.url=postgres://mailplane:secret@db.example:5432/mailplane'];
/** Every option on: what `helm lint` and the dry-run must also take. */
const FULL = [
  '--set',
  'postgresql.enabled=true',
  '--set',
  'api.autoscaling.enabled=true',
  '--set',
  'networkPolicy.enabled=true',
  '--set',
  'networkPolicy.postgresCIDR=10.0.0.0/8',
  '--set',
  'metrics.serviceMonitor.enabled=true',
  '--set',
  'metrics.prometheusRule.enabled=true',
  '--set',
  `operator.secretNamespaces={${TENANT_NS}}`,
  '--set',
  'sender.relayUrl=smtp://relay.example:587',
  '--set',
  'inboundHost=mx.example.com',
  '--set',
  'spf.include={amazonses.com}',
  '--set',
  'spf.egressIPs={203.0.113.5,2001:db8::/48}',
  '--set',
  'dmarc.rua={dmarc@reports.example.com}',
  '--set',
  'extraEnv[0].name=MAILPLANE_MAX_RECIPIENTS',
  '--set-string',
  'extraEnv[0].value=100',
  '--set',
  'operator.tolerations[0].operator=Exists',
  '--set',
  'api.nodeSelector.pool=web',
  '--set',
  'submission.enabled=true',
  '--set',
  'submission.certificate.enabled=true',
  '--set',
  'submission.certificate.issuerRef.name=cluster-ca',
  '--set',
  'publicUrl=https://mail.example.com',
  '--set',
  'ingress.enabled=true',
  '--set',
  'ingress.hosts={mail.example.com,track.example.com}',
  '--set',
  'ingress.tls.secretName=mailplane-public-tls',
];

let cp: ControlPlane;

async function ok(command: string, args: string[], input?: string): Promise<string> {
  const result = await run(command, args, {
    env: { ...process.env, KUBECONFIG: cp?.kubeconfig ?? '' },
    input,
  });
  assert.equal(result.code, 0, `${command} ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

const helm = (args: string[]) => ok(HELM, args);
const kubectl = (args: string[], input?: string) => ok(`${ROOT}bin/kubectl`, args, input);

/** Rendered manifests are checked field by field; their shape is whatever the chart wrote. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = Record<string, any>;

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: Loose;
}

async function render(args: string[]): Promise<Obj[]> {
  const out = await helm(['template', 'mailplane', CHART, '--namespace', RELEASE_NS, ...args]);
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

function podSpecs(objects: Obj[]): { name: string; spec: Loose }[] {
  return objects
    .filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet')
    .map((o) => ({ name: o.metadata.name, spec: o.spec!.template.spec }));
}

before(async () => {
  cp = await startControlPlane();
  await kubectl(['create', 'namespace', RELEASE_NS]);
  await kubectl(['label', 'namespace', RELEASE_NS, 'pod-security.kubernetes.io/enforce=restricted']);
  await kubectl(['create', 'namespace', TENANT_NS]);
});

after(async () => {
  await cp?.stop();
});

test('helm lint --strict passes with the default values and with every option on', async () => {
  await helm(['lint', '--strict', CHART, ...DEFAULTS]);
  await helm(['lint', '--strict', CHART, ...FULL]);
});

test('a wrong value is refused with a message naming it', async () => {
  const cases: [string[], RegExp][] = [
    [['--set', 'database.url=mysql://x'], /\/database\/url.*does not match/],
    [[...DEFAULTS, '--set', 'smtp.containerPort=25'], /\/smtp\/containerPort.*minimum/],
    [[...DEFAULTS, '--set', 'logLevel=verbose'], /\/logLevel.*must be one of/],
    [[...DEFAULTS, '--set', 'sender.relayUrl=relay.example'], /\/sender\/relayUrl/],
    [[...DEFAULTS, '--set', 'apiReplicas=3'], /additional properties 'apiReplicas' not allowed/],
    [[], /set exactly one of database\.url, database\.existingSecret or postgresql\.enabled/],
  ];
  for (const [args, message] of cases) {
    const result = await run(HELM, ['template', 'mailplane', CHART, ...args]);
    assert.notEqual(result.code, 0, `accepted: ${args.join(' ')}`);
    assert.match(result.stderr, message);
  }
});

test('the default render has the CRDs (kept on uninstall), two operator replicas, and api, sender, smtp, PDB and secret key', async () => {
  const objects = await render(DEFAULTS);
  const names = objects.map((o) => `${o.kind}/${o.metadata.name}`);
  for (const expected of [
    'CustomResourceDefinition/tenants.mailplane.io',
    'CustomResourceDefinition/sendingdomains.mailplane.io',
    'CustomResourceDefinition/templates.mailplane.io',
    'Deployment/mailplane-operator',
    'Deployment/mailplane-api',
    'Deployment/mailplane-sender',
    'Service/mailplane-api',
    'Deployment/mailplane-smtp',
    'Service/mailplane-smtp',
    'PodDisruptionBudget/mailplane-sender',
    'PodDisruptionBudget/mailplane-operator',
    'Secret/mailplane-secret-key',
    'Secret/mailplane-database',
  ]) {
    assert.ok(names.includes(expected), `missing ${expected}`);
  }
  for (const crd of objects.filter((o) => o.kind === 'CustomResourceDefinition')) {
    assert.equal(crd.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
  }
  assert.equal(
    objects.find((o) => o.metadata.name === 'mailplane-operator' && o.kind === 'Deployment')!.spec!.replicas,
    2,
  );
  assert.ok(!names.some((n) => n.startsWith('StatefulSet/')), 'no Postgres unless asked for');
  // Port 25 outside, a port the non-root container can bind inside.
  const smtpService = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'mailplane-smtp')!;
  assert.deepEqual(smtpService.spec!.ports, [{ name: 'smtp', port: 25, targetPort: 'smtp' }]);
  const smtpPod = podSpecs(objects).find((p) => p.name === 'mailplane-smtp')!.spec;
  assert.deepEqual(smtpPod.containers[0].args, ['smtp']);
  assert.ok(smtpPod.containers[0].ports.some((p: Loose) => p.name === 'smtp' && p.containerPort === 2525));
  const noCrds = await render([...DEFAULTS, '--set', 'crds.install=false']);
  assert.ok(!noCrds.some((o) => o.kind === 'CustomResourceDefinition'));
  // A drain takes one operator replica at a time; the other leads or takes over.
  const pdb = objects.find(
    (o) => o.kind === 'PodDisruptionBudget' && o.metadata.name === 'mailplane-operator',
  )!;
  assert.equal(pdb.spec!.maxUnavailable, 1);
  assert.deepEqual(pdb.spec!.selector.matchLabels['app.kubernetes.io/component'], 'operator');
});

test('the operator is told its Lease and where its RBAC lets it keep Secrets, and a secretNamespace that may not exist yet is rendered, kept on uninstall', async () => {
  const env = async (args: string[]) => {
    const objects = await render([...DEFAULTS, ...args]);
    const operator = podSpecs(objects).find((p) => p.name === 'mailplane-operator')!.spec;
    return {
      objects,
      env: Object.fromEntries(
        (operator.containers[0].env as { name: string; value?: string }[]).map((v) => [v.name, v.value]),
      ),
    };
  };
  const byDefault = await env([]);
  assert.equal(byDefault.env.MAILPLANE_SECRET_NAMESPACES, RELEASE_NS);
  assert.equal(byDefault.env.MAILPLANE_LEASE_NAME, 'mailplane-operator');
  assert.ok(!byDefault.objects.some((o) => o.kind === 'Namespace'), "the release namespace is helm's own");
  const listed = await env(['--set', `operator.secretNamespaces={${TENANT_NS},team-b}`]);
  assert.equal(listed.env.MAILPLANE_SECRET_NAMESPACES, `${TENANT_NS},team-b`);
  const namespaces = listed.objects.filter((o) => o.kind === 'Namespace');
  assert.deepEqual(namespaces.map((o) => o.metadata.name).sort(), [TENANT_NS, 'team-b'].sort());
  for (const n of namespaces) assert.equal(n.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
  assert.equal((await env(['--set', 'operator.secretNamespaces={*}'])).env.MAILPLANE_SECRET_NAMESPACES, '*');
  const none = await env([
    '--set',
    `operator.secretNamespaces={${TENANT_NS}}`,
    '--set',
    'operator.createSecretNamespaces=false',
  ]);
  assert.ok(!none.objects.some((o) => o.kind === 'Namespace'));
});

test('the optional Ingress routes only /t/ and /u/ of each host to the api Service, with the TLS Secret named, and the api believes one proxy hop', async () => {
  assert.ok(!(await render(DEFAULTS)).some((o) => o.kind === 'Ingress'), 'no Ingress unless asked for');
  const objects = await render([
    ...DEFAULTS,
    '--set',
    'publicUrl=https://mail.example.com',
    '--set',
    'ingress.enabled=true',
    '--set',
    'ingress.className=nginx',
    '--set',
    'ingress.hosts={mail.example.com,track.example.com}',
    '--set',
    'ingress.tls.secretName=mailplane-public-tls',
  ]);
  const ingress = objects.find((o) => o.kind === 'Ingress')!;
  assert.equal(ingress.spec!.ingressClassName, 'nginx');
  assert.deepEqual(ingress.spec!.tls, [
    { secretName: 'mailplane-public-tls', hosts: ['mail.example.com', 'track.example.com'] },
  ]);
  const service = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'mailplane-api')!;
  assert.ok(service.spec!.ports.some((p: Loose) => p.name === 'http'));
  assert.deepEqual(
    ingress.spec!.rules.map((r: Loose) => [
      r.host,
      r.http.paths.map(
        (p: Loose) => `${p.pathType} ${p.path} → ${p.backend.service.name}:${p.backend.service.port.name}`,
      ),
    ]),
    ['mail.example.com', 'track.example.com'].map((host) => [
      host,
      ['Prefix /t/ → mailplane-api:http', 'Prefix /u/ → mailplane-api:http'],
    ]),
  );
  const env = (name: string) =>
    podSpecs(objects).find((p) => p.name === name)!.spec.containers[0].env as {
      name: string;
      value?: string;
    }[];
  assert.deepEqual(
    env('mailplane-api').find((e) => e.name === 'MAILPLANE_TRUST_PROXY'),
    { name: 'MAILPLANE_TRUST_PROXY', value: '1' },
  );
  assert.ok(
    !env('mailplane-sender').some((e) => e.name === 'MAILPLANE_TRUST_PROXY'),
    'only the api is behind it',
  );
  for (const name of ['mailplane-api', 'mailplane-sender', 'mailplane-operator']) {
    assert.deepEqual(
      env(name).find((e) => e.name === 'MAILPLANE_PUBLIC_URL'),
      { name: 'MAILPLANE_PUBLIC_URL', value: 'https://mail.example.com' },
      name,
    );
  }
  const noHosts = await run(HELM, [
    'template',
    'mailplane',
    CHART,
    ...DEFAULTS,
    '--set',
    'ingress.enabled=true',
  ]);
  assert.notEqual(noHosts.code, 0);
  assert.match(noHosts.stderr, /ingress\.hosts must name at least one host/);
  const badHost = await run(HELM, [
    'template',
    'mailplane',
    CHART,
    ...DEFAULTS,
    '--set',
    'ingress.enabled=true',
    '--set',
    'ingress.hosts={Not A Host}',
  ]);
  assert.notEqual(badHost.code, 0);
  assert.match(badHost.stderr, /\/ingress\/hosts\/0/);
});

test('publicUrl: with the Ingress on and publicUrl empty, https:// and the first host (TLS ended before the Ingress or not); set, as set; neither, no MAILPLANE_PUBLIC_URL', async () => {
  const PROCESSES = ['mailplane-api', 'mailplane-operator', 'mailplane-sender', 'mailplane-smtp'];
  /** MAILPLANE_PUBLIC_URL of each process that links or lists it, by Deployment. */
  const publicUrl = async (args: string[]) =>
    Object.fromEntries(
      podSpecs(await render([...DEFAULTS, ...args]))
        .filter(({ name }) => PROCESSES.includes(name))
        .map(({ name, spec }) => [
          name,
          (spec.containers[0].env as { name: string; value?: string }[]).find(
            (e) => e.name === 'MAILPLANE_PUBLIC_URL',
          )?.value,
        ]),
    );
  const each = (value: string | undefined) => Object.fromEntries(PROCESSES.map((name) => [name, value]));

  const ingress = [
    '--set',
    'ingress.enabled=true',
    '--set',
    'ingress.hosts={mail.example.com,track.example.com}',
  ];
  assert.deepEqual(await publicUrl(ingress), each('https://mail.example.com'));
  assert.deepEqual(
    await publicUrl([...ingress, '--set', 'ingress.tls.secretName=mailplane-public-tls']),
    each('https://mail.example.com'),
  );
  assert.deepEqual(
    await publicUrl([...ingress, '--set', 'publicUrl=https://links.example.com']),
    each('https://links.example.com'),
  );
  assert.deepEqual(
    await publicUrl(['--set', 'publicUrl=https://links.example.com']),
    each('https://links.example.com'),
  );
  assert.deepEqual(await publicUrl([]), each(undefined));
});

test('helm install says where one-click unsubscribe links are served, or warns that bulk mail will carry none and how to fix it', async () => {
  const notes = async (args: string[]) => {
    const out = await helm([
      'install',
      'mailplane',
      CHART,
      '--dry-run=client',
      '--namespace',
      RELEASE_NS,
      ...DEFAULTS,
      ...args,
    ]);
    return out.slice(out.indexOf('NOTES:'));
  };
  const none = await notes([]);
  assert.match(none, /WARNING: no public URL\. Bulk mail will carry no one-click unsubscribe link/);
  assert.match(none, /Gmail\s+and Yahoo require/);
  assert.match(none, /--set ingress\.enabled=true --set ingress\.hosts='\{mail\.example\.com\}'/);
  assert.match(none, /--set publicUrl=https:\/\/mail\.example\.com/);

  for (const args of [
    ['--set', 'ingress.enabled=true', '--set', 'ingress.hosts={mail.example.com}'],
    ['--set', 'publicUrl=https://mail.example.com'],
  ]) {
    const set = await notes(args);
    assert.doesNotMatch(set, /WARNING: no public URL/, args.join(' '));
    assert.match(
      set,
      /served at https:\/\/mail\.example\.com\/u\/ and https:\/\/mail\.example\.com\/t\//,
      args.join(' '),
    );
  }
});

test('SMTP submission: off by default; on, a Deployment on non-privileged ports with the TLS Secret mounted whole, a ClusterIP Service on 587 and 465, a PDB, the optional Certificate and a NetworkPolicy for in-cluster clients', async () => {
  const names = (objects: Obj[]) => objects.map((o) => `${o.kind}/${o.metadata.name}`);
  assert.ok(!names(await render(DEFAULTS)).some((n) => n.endsWith('/mailplane-submission')));

  const withSecret = await render([
    ...DEFAULTS,
    '--set',
    'submission.enabled=true',
    '--set',
    'submission.tls.existingSecret=smtp-tls',
  ]);
  for (const expected of [
    'Deployment/mailplane-submission',
    'Service/mailplane-submission',
    'PodDisruptionBudget/mailplane-submission',
    'ServiceAccount/mailplane-submission',
  ]) {
    assert.ok(names(withSecret).includes(expected), `missing ${expected}`);
  }
  assert.ok(!withSecret.some((o) => o.kind === 'Certificate'), 'no Certificate unless asked for');
  const service = withSecret.find((o) => o.kind === 'Service' && o.metadata.name === 'mailplane-submission')!;
  assert.equal(service.spec!.type, 'ClusterIP');
  assert.deepEqual(service.spec!.ports, [
    { name: 'submission', port: 587, targetPort: 'submission' },
    { name: 'submissions', port: 465, targetPort: 'submissions' },
  ]);
  const pod = podSpecs(withSecret).find((p) => p.name === 'mailplane-submission')!.spec;
  const container = pod.containers[0];
  assert.deepEqual(container.args, ['submission']);
  const env = Object.fromEntries(
    (container.env as { name: string; value?: string }[]).map((e) => [e.name, e.value]),
  );
  assert.equal(env.MAILPLANE_SUBMISSION_PORT, '2587');
  assert.equal(env.MAILPLANE_SUBMISSIONS_PORT, '2465');
  assert.equal(env.MAILPLANE_TLS_CERT_FILE, '/etc/mailplane/tls/tls.crt');
  assert.equal(env.MAILPLANE_TLS_KEY_FILE, '/etc/mailplane/tls/tls.key');
  assert.deepEqual(
    container.ports.filter((p: Loose) => p.name !== 'http'),
    [
      { name: 'submission', containerPort: 2587 },
      { name: 'submissions', containerPort: 2465 },
    ],
  );
  const mount = container.volumeMounts.find((m: Loose) => m.name === 'submission-tls');
  assert.deepEqual(
    mount,
    { name: 'submission-tls', mountPath: '/etc/mailplane/tls', readOnly: true },
    'the Secret mounted whole: a subPath mount would never see a renewal',
  );
  assert.equal(pod.volumes.find((v: Loose) => v.name === 'submission-tls').secret.secretName, 'smtp-tls');
  assert.equal(pod.automountServiceAccountToken, false);

  const full = await render(FULL);
  const certificate = full.find((o) => o.kind === 'Certificate')!;
  assert.equal(certificate.apiVersion, 'cert-manager.io/v1');
  assert.equal(certificate.spec!.secretName, 'mailplane-submission-tls');
  assert.deepEqual(certificate.spec!.issuerRef, {
    name: 'cluster-ca',
    kind: 'Issuer',
    group: 'cert-manager.io',
  });
  assert.ok(certificate.spec!.dnsNames.includes(`mailplane-submission.${RELEASE_NS}.svc`));
  const fullPod = podSpecs(full).find((p) => p.name === 'mailplane-submission')!.spec;
  assert.equal(
    fullPod.volumes.find((v: Loose) => v.name === 'submission-tls').secret.secretName,
    certificate.spec!.secretName,
  );
  const policy = full.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'mailplane-submission')!;
  const smtpRule = policy.spec!.ingress.find((r: Loose) =>
    r.ports.some((p: Loose) => p.port === 'submission'),
  );
  assert.deepEqual(smtpRule.from, [{ namespaceSelector: {} }], 'pods of the cluster, nothing from outside');
  assert.ok(
    !policy.spec!.egress.some((r: Loose) => r.ports.some((p: Loose) => p.port === 25 || p.port === 587)),
    'submission sends nothing itself',
  );

  const refused: [string[], RegExp][] = [
    [['--set', 'submission.enabled=true'], /submission needs a certificate/],
    [
      ['--set', 'submission.enabled=true', '--set', 'submission.certificate.enabled=true'],
      /submission\.certificate\.issuerRef\.name must name/,
    ],
    [['--set', 'submission.containerPort=587'], /\/submission\/containerPort.*minimum/],
  ];
  for (const [args, message] of refused) {
    const result = await run(HELM, ['template', 'mailplane', CHART, ...DEFAULTS, ...args]);
    assert.notEqual(result.code, 0, `accepted: ${args.join(' ')}`);
    assert.match(result.stderr, message);
  }
});

test('api.machineSignals replaces the api’s machine lists from a ConfigMap it mounts, as JSON the api reads', async () => {
  const signals = {
    apple: { cidrs: ['17.0.0.0/8'], userAgents: ['^Mozilla/5\\.0$'] },
    google: { cidrs: [], userAgents: ['GoogleImageProxy'] },
    scanners: { userAgents: ['Barracuda'], networks: { 'corporate-gateway': ['198.51.100.0/24'] } },
  };
  assert.ok(
    !(await render(DEFAULTS)).some(
      (o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('-machine-signals'),
    ),
  );
  const objects = await render([...DEFAULTS, '--set-json', `api.machineSignals=${JSON.stringify(signals)}`]);
  const map = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'mailplane-machine-signals')!;
  assert.deepEqual(JSON.parse((map as Loose).data['machine-signals.json']), signals);
  const pod = podSpecs(objects).find((p) => p.name === 'mailplane-api')!.spec;
  const env = pod.containers[0].env as { name: string; value?: string }[];
  const file = env.find((e) => e.name === 'MAILPLANE_TRACKING_SIGNALS_FILE')!.value!;
  const mount = (pod.containers[0].volumeMounts as Loose[]).find((m) => m.name === 'machine-signals')!;
  assert.equal(file, `${mount.mountPath}/machine-signals.json`);
  assert.deepEqual(
    (pod.volumes as Loose[]).find((v) => v.name === 'machine-signals'),
    { name: 'machine-signals', configMap: { name: 'mailplane-machine-signals' } },
  );
});

test('every pod is restricted, and only the operator mounts a service-account token', async () => {
  for (const { name, spec } of podSpecs(await render(FULL))) {
    assert.equal(spec.securityContext.runAsNonRoot, true, name);
    assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault', name);
    for (const c of spec.containers) {
      assert.equal(c.securityContext.allowPrivilegeEscalation, false, name);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true, name);
      assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], name);
    }
    if (name.endsWith('-operator')) assert.notEqual(spec.automountServiceAccountToken, false, name);
    else assert.equal(spec.automountServiceAccountToken, false, `${name} must not mount a token`);
  }
});

test('every rendered object passes a server-side dry run in a namespace enforcing the restricted Pod Security Standard', async () => {
  // ServiceMonitor and PrometheusRule need the Prometheus operator's CRDs, which this API server lacks.
  // Nor does it have cert-manager's, for the submission Certificate.
  const objects = (await render(FULL)).filter(
    (o) => !o.apiVersion.startsWith('monitoring.coreos.com/') && !o.apiVersion.startsWith('cert-manager.io/'),
  );
  const crds = objects.filter((o) => o.kind === 'CustomResourceDefinition');
  const rest = objects.filter((o) => o.kind !== 'CustomResourceDefinition');
  const toYaml = (list: Obj[]) => list.map((o) => JSON.stringify(o)).join('\n---\n');
  await kubectl(['apply', '--dry-run=server', '-f', '-'], toYaml(crds));
  // helm install sets the release namespace on whatever names none; so does this.
  const clusterScoped = new Set(['ClusterRole', 'ClusterRoleBinding']);
  for (const o of rest) if (!clusterScoped.has(o.kind)) o.metadata.namespace ??= RELEASE_NS;
  const result = await cp.kubectl(['apply', '--dry-run=server', '-f', '-'], toYaml(rest));
  assert.equal(result.code, 0, result.stderr);
  assert.doesNotMatch(result.stderr, /PodSecurity|violate/);
  // Pod Security is enforced on Pods (it only warns on Deployments): dry-run each pod template as a Pod.
  const pods = podSpecs(objects).map(({ name, spec }) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `${name}-check`, namespace: RELEASE_NS },
    // A StatefulSet's claim templates become volumes only once a controller runs: stand in for them.
    spec: {
      ...spec,
      volumes: [
        ...(spec.volumes ?? []),
        ...(
          objects.find((o) => o.metadata.name === name && o.kind === 'StatefulSet')?.spec!
            .volumeClaimTemplates ?? []
        ).map((claim: { metadata: { name: string } }) => ({ name: claim.metadata.name, emptyDir: {} })),
      ],
    },
  }));
  const podResult = await cp.kubectl(['create', '--dry-run=server', '-f', '-'], toYaml(pods as Obj[]));
  assert.equal(podResult.code, 0, podResult.stderr);
});

test('helm install and upgrade: the secret key is generated once and kept; uninstall keeps the CRDs and the key', async () => {
  const install = [
    '--namespace',
    RELEASE_NS,
    ...DEFAULTS,
    '--set',
    `operator.secretNamespaces={${TENANT_NS}}`,
    '--set',
    'submission.enabled=true',
    '--set',
    'submission.tls.existingSecret=smtp-tls',
  ];
  const installed = await helm(['install', 'mailplane', CHART, ...install]);
  // No publicUrl and no Ingress: the notes say what bulk mail then lacks.
  assert.match(installed, /WARNING: no public URL\. Bulk mail will carry no one-click unsubscribe link/);
  const key = async () =>
    kubectl([
      '-n',
      RELEASE_NS,
      'get',
      'secret',
      'mailplane-secret-key',
      '-o',
      'jsonpath={.data.MAILPLANE_SECRET_KEY}',
    ]);
  const first = await key();
  assert.ok(Buffer.from(first, 'base64').length >= 32);
  await helm(['upgrade', 'mailplane', CHART, ...install, '--set', 'logLevel=debug']);
  assert.equal(await key(), first, 'an upgrade must not change the secret key');
  await kubectl(['wait', '--for=condition=Established', 'crd/tenants.mailplane.io', '--timeout=30s']);
});

test('kubectl auth can-i: the operator may do what its reconcilers list and nothing more; api, sender, smtp and submission nothing', async () => {
  const can = async (sa: string, args: string[]) => {
    const result = await cp.kubectl([
      'auth',
      'can-i',
      ...args,
      `--as=system:serviceaccount:${RELEASE_NS}:${sa}`,
    ]);
    return result.stdout.trim() === 'yes';
  };
  const operator = 'mailplane-operator';
  const allowed: string[][] = [
    ['watch', 'tenants.mailplane.io', '--all-namespaces'],
    ['list', 'sendingdomains.mailplane.io', '--all-namespaces'],
    ['patch', 'templates.mailplane.io', '-n', TENANT_NS],
    ['patch', 'tenants.mailplane.io', '--subresource=status', '-n', TENANT_NS],
    ['create', 'events', '-n', TENANT_NS],
    ['create', 'secrets', '-n', TENANT_NS],
    ['patch', 'secrets', '-n', TENANT_NS],
    ['delete', 'secrets', '-n', TENANT_NS],
    // The Secret watch that restores a deleted or edited key Secret.
    ['list', 'secrets', '-n', TENANT_NS],
    ['watch', 'secrets', '-n', TENANT_NS],
    ['create', 'leases.coordination.k8s.io', '-n', RELEASE_NS],
    ['update', 'leases.coordination.k8s.io/mailplane-operator', '-n', RELEASE_NS],
    ['get', 'leases.coordination.k8s.io/mailplane-operator', '-n', RELEASE_NS],
  ];
  for (const args of allowed)
    assert.equal(await can(operator, args), true, `operator should: ${args.join(' ')}`);
  const denied: string[][] = [
    ['get', 'secrets', '-n', 'default'],
    ['list', 'secrets', '-n', 'default'],
    ['delete', 'tenants.mailplane.io', '-n', TENANT_NS],
    ['update', 'leases.coordination.k8s.io', '-n', TENANT_NS],
    // Only its own Lease: not another controller's in the same namespace.
    ['update', 'leases.coordination.k8s.io/someone-else', '-n', RELEASE_NS],
    ['list', 'pods', '-n', RELEASE_NS],
    ['get', 'configmaps', '-n', RELEASE_NS],
    ['create', 'customresourcedefinitions.apiextensions.k8s.io'],
  ];
  for (const args of denied)
    assert.equal(await can(operator, args), false, `operator should not: ${args.join(' ')}`);
  for (const sa of ['mailplane-api', 'mailplane-sender', 'mailplane-smtp', 'mailplane-submission']) {
    for (const args of [
      ['get', 'secrets', '-n', RELEASE_NS],
      ['list', 'tenants.mailplane.io', '--all-namespaces'],
      ['get', 'leases.coordination.k8s.io', '-n', RELEASE_NS],
    ]) {
      assert.equal(await can(sa, args), false, `${sa} should not: ${args.join(' ')}`);
    }
  }
});

test('helm uninstall keeps the CRDs and the secret key', async () => {
  await helm(['uninstall', 'mailplane', '--namespace', RELEASE_NS, '--wait']);
  await kubectl(['get', 'crd', 'tenants.mailplane.io']);
  await kubectl(['-n', RELEASE_NS, 'get', 'secret', 'mailplane-secret-key']);
});
