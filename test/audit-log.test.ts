// GET /v1/audit-log: every change to a tenant's keys, domains, templates, webhooks and
// suppressions is there, attributed to the key and request, the controller or the process that
// made it — and no secret is copied into it.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { cliArgs } from './helpers/cli-process.js';
import { sendingDomain, startTestPlatform, tenant, type TestPlatform } from './helpers/platform.js';

const SECRET = 'test-secret-key-of-at-least-32-characters';
let platform: TestPlatform;
let key: string;

interface Entry {
  actor: string;
  action: string;
  target: string;
  detail: Record<string, unknown>;
  request_id: string | null;
}

async function call(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  apiKey = key,
) {
  const res = await fetch(`${platform.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const log = async (apiKey = key, query = '') =>
  ((await call('GET', `/v1/audit-log${query}`, undefined, {}, apiKey)).body.data as Entry[]) ?? [];

before(async () => {
  platform = await startTestPlatform({ MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: 'true' });
  key = platform.keys.get('default/acme/backend')!;
});
after(async () => platform.close());

test('webhook changes through the api are logged with the key and the request id, newest first', async () => {
  const created = await call(
    'POST',
    '/v1/webhooks',
    { endpoint: 'http://127.0.0.1:9/hooks', events: ['email.delivered'] },
    { 'x-request-id': 'audit-create-1' },
  );
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = String(created.body.id);
  assert.equal((await call('POST', `/v1/webhooks/${id}/signing-secret/rotate`)).status, 200);
  assert.equal((await call('DELETE', `/v1/webhooks/${id}`)).status, 200);

  const entries = (await log()).filter((e) => e.action.startsWith('webhook.'));
  assert.deepEqual(
    entries.map((e) => e.action),
    ['webhook.deleted', 'webhook.secret_rotated', 'webhook.created'],
  );
  const create = entries[2]!;
  assert.equal(create.actor, 'api_key:backend');
  assert.equal(create.request_id, 'audit-create-1');
  assert.equal(create.detail.url, 'http://127.0.0.1:9/hooks');
  assert.ok(entries.every((e) => e.actor === 'api_key:backend'));
  // Filtered by action prefix.
  assert.equal((await log(key, '?action=webhook.created')).length, 1);
});

test('what `mailplane apply` changes is logged as mailplane-apply; keys, domains and templates all appear', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailplane-audit-'));
  const template = readFileSync('examples/template.yaml', 'utf8').replace(
    'Welcome to Acme',
    'Hello from Acme',
  );
  writeFileSync(join(dir, 'template.yaml'), template);
  await promisify(execFile)(process.execPath, cliArgs('apply', '-f', dir), {
    env: { ...process.env, DATABASE_URL: platform.config.databaseUrl, MAILPLANE_SECRET_KEY: SECRET },
  });
  const entries = await log();
  const updated = entries.find((e) => e.action === 'template.updated');
  assert.ok(updated, JSON.stringify(entries.map((e) => e.action)));
  assert.equal(updated.actor, 'mailplane-apply');
  assert.equal(updated.target, 'welcome');
  assert.equal(updated.detail.version, 2);
  for (const action of ['api_key.issued', 'domain.created', 'template.created']) {
    assert.ok(
      entries.some((e) => e.action === action),
      `${action} in ${entries.map((e) => e.action)}`,
    );
  }
  const text = JSON.stringify(entries);
  assert.doesNotMatch(text, /whsec_|PRIVATE KEY|mp_live_[A-Za-z0-9_-]{20}/, 'no secret in the log');
});

test('another tenant sees only its own log, and a bad query is a 422 naming the parameter', async () => {
  await platform.apply([
    tenant('globex', [{ name: 'app', scopes: ['read'] }]),
    sendingDomain('globex-com', 'globex', 'globex.com'),
  ]);
  const other = await log(platform.keys.get('default/globex/app')!);
  assert.ok(other.length > 0);
  assert.ok(other.every((e) => !e.action.startsWith('webhook.') && e.target !== 'example.com'));
  for (const [query, field] of [
    ['limit=0', 'limit'],
    ['before=abc', 'before'],
    ['action=DROP TABLE', 'action'],
  ] as const) {
    const res = await call('GET', `/v1/audit-log?${query}`);
    assert.equal(res.status, 422, query);
    assert.equal((res.body.errors as { field: string }[])[0]!.field, field);
  }
});
