// The CRDs under crds/ against a real kube-apiserver: they install, accept the examples, and refuse
// what lib/resources.ts refuses with a message that says what to fix.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { startControlPlane, type CommandResult, type ControlPlane } from './helpers/control-plane.js';

const CRDS = ['tenants.mailplane.io', 'sendingdomains.mailplane.io', 'templates.mailplane.io'];
const NAMESPACE = `mailplane-crds-${randomBytes(4).toString('hex')}`;
let cp: ControlPlane;

async function kubectl(args: string[], input?: string): Promise<CommandResult> {
  return cp.kubectl(['--namespace', NAMESPACE, ...args], input);
}

async function ok(args: string[], input?: string): Promise<string> {
  const result = await kubectl(args, input);
  assert.equal(result.code, 0, `kubectl ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

/** Applies a manifest the API server must refuse, and returns what it said. */
async function refused(yaml: string): Promise<string> {
  const result = await kubectl(['apply', '-f', '-'], yaml);
  assert.notEqual(result.code, 0, `accepted, but should have been refused:\n${yaml}`);
  return result.stderr;
}

before(async () => {
  cp = await startControlPlane();
  await ok(['apply', '-f', 'crds/']);
  await ok(['create', 'namespace', NAMESPACE]);
});

after(async () => {
  await cp?.stop();
});

test('the three CRDs become Established', async () => {
  await ok(['wait', '--for=condition=Established', '--timeout=60s', ...CRDS.map((c) => `crd/${c}`)]);
  for (const crd of CRDS) {
    const status = await ok([
      'get',
      'crd',
      crd,
      '-o',
      'jsonpath={.status.conditions[?(@.type=="NamesAccepted")].status}',
    ]);
    assert.equal(status, 'True', `${crd} names not accepted`);
  }
});

test('the examples are accepted and listed under the mailplane category', async () => {
  await ok(['apply', '-f', 'examples/']);
  const names = (await ok(['get', 'mailplane', '-o', 'name'])).trim().split('\n').sort();
  assert.deepEqual(names, [
    'sendingdomain.mailplane.io/example-com',
    'template.mailplane.io/welcome',
    'tenant.mailplane.io/acme',
  ]);
  const table = await ok(['get', 'mpd']);
  assert.match(table, /^NAME\s+DOMAIN\s+TENANT\s+ALGORITHM\s+READY\s+DNS\s+AGE$/m);
  assert.match(table, /^example-com\s+example\.com\s+acme\s/m);
});

const domain = (spec: string) => `
apiVersion: mailplane.io/v1alpha1
kind: SendingDomain
metadata: {name: bad-domain}
spec: ${spec}
`;

test('a SendingDomain with a malformed domain is refused in words, not with a regex', async () => {
  const stderr = await refused(domain('{tenantRef: {name: acme}, domain: Mail_Example.com}'));
  assert.match(
    stderr,
    /spec\.domain: Invalid value: "string": must be a lower-case domain name such as mail\.example\.com/,
  );
  assert.doesNotMatch(stderr, /should match|\[a-z0-9\]/);
});

test('an international domain is taken as its A-labels, A-label top-level domains included, and refused as U-labels', async () => {
  for (const name of ['mail.xn--bcher-kva.example', 'mail.example.xn--p1ai']) {
    await ok(['apply', '--dry-run=server', '-f', '-'], domain(`{tenantRef: {name: acme}, domain: ${name}}`));
  }
  const stderr = await refused(domain('{tenantRef: {name: acme}, domain: mail.bücher.example}'));
  assert.match(
    stderr,
    /spec\.domain: Invalid value: "string": .*as its A-labels, e\.g\. mail\.xn--bcher-kva\.example/,
  );
});

test('every malformed name, selector and return path is refused in words', async () => {
  const cases: [string, RegExp][] = [
    [
      domain('{tenantRef: {name: Acme_Corp}, domain: mail.example.com}'),
      /spec\.tenantRef\.name: Invalid value: "string": must be the name of a Tenant: a DNS label/,
    ],
    [
      domain('{tenantRef: {name: acme}, domain: mail.example.com, dkim: {selector: "2026.01"}}'),
      /spec\.dkim\.selector: Invalid value: "string": must be a DNS label: lower-case letters, digits and -/,
    ],
    [
      domain('{tenantRef: {name: acme}, domain: mail.example.com, returnPath: "bounces!"}'),
      /spec\.returnPath: Invalid value: "string": must be a lower-case domain name/,
    ],
    [
      tenant('[{name: Back_End, scopes: [send]}]'),
      /spec\.apiKeys\[0\]\.name: Invalid value: "string": must be a DNS label/,
    ],
  ];
  for (const [yaml, message] of cases) {
    const stderr = await refused(yaml);
    assert.match(stderr, message);
    assert.doesNotMatch(stderr, /should match/, 'no regex shown');
  }
});

test('a SendingDomain with an unknown DKIM algorithm is refused', async () => {
  const stderr = await refused(
    domain('{tenantRef: {name: acme}, domain: mail.example.com, dkim: {algorithm: rsa-1024}}'),
  );
  assert.match(
    stderr,
    /spec\.dkim\.algorithm: Unsupported value: "rsa-1024": supported values: "rsa-2048", "ed25519"/,
  );
});

test('a SendingDomain without a tenantRef is refused', async () => {
  const stderr = await refused(domain('{domain: mail.example.com}'));
  assert.match(stderr, /spec\.tenantRef: Required value/);
});

test('a Template with neither html nor text is refused', async () => {
  const stderr = await refused(`
apiVersion: mailplane.io/v1alpha1
kind: Template
metadata: {name: empty}
spec: {tenantRef: {name: acme}, subject: Hello}
`);
  assert.match(stderr, /spec: Invalid value: "object": spec needs html, text or both/);
});

const tenant = (apiKeys: string) => `
apiVersion: mailplane.io/v1alpha1
kind: Tenant
metadata: {name: bad-tenant}
spec: {apiKeys: ${apiKeys}}
`;

test('a Tenant listing one API key name twice is refused', async () => {
  const stderr = await refused(tenant('[{name: backend, scopes: [send]}, {name: backend, scopes: [read]}]'));
  assert.match(stderr, /spec\.apiKeys\[1\]: Duplicate value: .*"name":"backend"/);
});

test('a Tenant with an unknown API key scope is refused', async () => {
  const stderr = await refused(tenant('[{name: backend, scopes: [send, admin]}]'));
  assert.match(
    stderr,
    /spec\.apiKeys\[0\]\.scopes\[1\]: Unsupported value: "admin": supported values: "send", "read"/,
  );
});

test("a resource whose name is not a DNS label is refused (names are a tenant's and a key's handle)", async () => {
  const stderr = await refused(`
apiVersion: mailplane.io/v1alpha1
kind: Tenant
metadata: {name: acme.example}
spec: {}
`);
  assert.match(stderr, /metadata\.name must be a DNS label/);
});

test("changing an existing SendingDomain's domain or tenant is refused", async () => {
  await ok(['get', 'sendingdomain', 'example-com']); // created by the examples test
  const patch = async (spec: object) => {
    const result = await kubectl([
      'patch',
      'sendingdomain',
      'example-com',
      '--type=merge',
      '-p',
      JSON.stringify({ spec }),
    ]);
    assert.notEqual(result.code, 0, `patch ${JSON.stringify(spec)} was accepted`);
    return result.stderr;
  };
  assert.match(
    await patch({ domain: 'other.example.com' }),
    /spec\.domain: Invalid value: "string": spec\.domain is immutable/,
  );
  assert.match(
    await patch({ tenantRef: { name: 'someone-else' } }),
    /spec\.tenantRef: Invalid value: "object": spec\.tenantRef is immutable/,
  );
  // what may change still does
  await ok([
    'patch',
    'sendingdomain',
    'example-com',
    '--type=merge',
    '-p',
    '{"spec":{"dkim":{"selector":"mp2"}}}',
  ]);
});

test("changing an existing Template's tenant is refused", async () => {
  const result = await kubectl([
    'patch',
    'template',
    'welcome',
    '--type=merge',
    '-p',
    '{"spec":{"tenantRef":{"name":"someone-else"}}}',
  ]);
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /spec\.tenantRef is immutable/);
});

test('the status subresource takes the documented status shape, and the ALGORITHM column shows the key in use', async () => {
  const status = {
    observedGeneration: 1,
    selector: 'mailplane',
    algorithm: 'rsa-2048',
    dnsRecords: [
      {
        type: 'TXT',
        name: 'mailplane._domainkey.example.com',
        value: 'v=DKIM1; k=rsa; p=AAAA',
        purpose: 'dkim',
      },
    ],
    conditions: [
      {
        type: 'Ready',
        status: 'True',
        reason: 'DNSVerified',
        message: 'all records found',
        lastTransitionTime: '2026-01-01T00:00:00Z',
        observedGeneration: 1,
      },
    ],
  };
  await ok([
    'patch',
    'sendingdomain',
    'example-com',
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({ status }),
  ]);
  const ready = await ok(['get', 'mpd', 'example-com', '-o', 'jsonpath={.status.conditions[0].reason}']);
  assert.equal(ready, 'DNSVerified');
  // From status, not spec: the examples name it, but a defaulted algorithm shows as well.
  assert.match(
    await ok(['get', 'mpd', 'example-com']),
    /^example-com\s+example\.com\s+acme\s+rsa-2048\s+True\s/m,
  );
  const bad = await kubectl([
    'patch',
    'sendingdomain',
    'example-com',
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({ status: { conditions: [{ ...status.conditions[0], status: 'Maybe' }] } }),
  ]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /status\.conditions\[0\]\.status: Unsupported value: "Maybe"/);
});

interface SchemaNode {
  description?: string;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
}

test('every field of every CRD has a description (but metadata, which Kubernetes describes itself)', async () => {
  for (const crd of CRDS) {
    const served = JSON.parse(await ok(['get', 'crd', crd, '-o', 'json'])) as {
      spec: { versions: { schema: { openAPIV3Schema: SchemaNode } }[] };
    };
    const missing: string[] = [];
    const walk = (node: SchemaNode, path: string) => {
      for (const [name, child] of Object.entries(node.properties ?? {})) {
        const at = `${path}.${name}`;
        if (at === '.metadata') continue;
        if (!child.description) missing.push(at);
        walk(child, at);
      }
      if (node.items) {
        if (!node.items.description) missing.push(`${path}[]`);
        walk(node.items, `${path}[]`);
      }
    };
    walk(served.spec.versions[0]!.schema.openAPIV3Schema, '');
    assert.deepEqual(missing, [], `${crd}: fields without a description`);
  }
  const explained = await ok(['explain', 'sendingdomain.spec.tenantRef.name']);
  assert.match(explained, /The name of the Tenant/);
  assert.match(await ok(['explain', 'tenant.spec']), /what its deletion keeps/);
});

test("a Tenant's deletionPolicy is Retain unless it says Delete, and nothing else", async () => {
  await ok(['apply', '-f', '-'], tenant('[]').replace('bad-tenant', 'policy-default'));
  assert.equal(await ok(['get', 'mpt', 'policy-default', '-o', 'jsonpath={.spec.deletionPolicy}']), 'Retain');
  const stderr = await refused(`
apiVersion: mailplane.io/v1alpha1
kind: Tenant
metadata: {name: policy-wrong}
spec: {deletionPolicy: Cascade}
`);
  assert.match(
    stderr,
    /spec\.deletionPolicy: Unsupported value: "Cascade": supported values: "Retain", "Delete"/,
  );
});

test("a Template's sampleData is bounded: more than 64 variables is refused", async () => {
  const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`v${i}`, i]));
  const stderr = await refused(`
apiVersion: mailplane.io/v1alpha1
kind: Template
metadata: {name: too-much}
spec: {tenantRef: {name: acme}, subject: Hi, text: Hi, sampleData: ${JSON.stringify(many)}}
`);
  assert.match(stderr, /spec\.sampleData: Too many: 65: must have at most 64 items/);
});
