// While Postgres cannot be reached, the api says so: 503 with Retry-After and a problem body, and
// /readyz fails; nothing is half-accepted, and it answers as before once Postgres is back.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestPlatform, type TestPlatform } from './helpers/platform.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

let database: TestDatabase;
let proxy: TcpProxy;
let platform: TestPlatform;
let key: string;

before(async () => {
  database = await createTestDatabase();
  const direct = new URL(database.url);
  proxy = await startTcpProxy(Number(direct.port || 5432), direct.hostname);
  const proxied = new URL(database.url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  platform = await startTestPlatform({ DATABASE_URL: proxied.toString() });
  key = platform.keys.get('default/acme/backend')!;
});
after(async () => {
  await platform?.close();
  await proxy?.close();
  await database?.drop();
});

const send = () =>
  fetch(`${platform.url}/v1/emails`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ from: 'hello@example.com', to: 'a@example.org', subject: 's', text: 't' }),
  });

test('with Postgres unreachable a send is a 503 with Retry-After, /readyz fails, and both recover', async () => {
  assert.equal((await send()).status, 202);

  await proxy.cut();
  const refused = await send();
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get('retry-after'), '5');
  assert.equal(refused.headers.get('content-type'), 'application/problem+json; charset=utf-8');
  const problem = (await refused.json()) as { type: string; detail: string };
  assert.match(problem.type, /service-unavailable$/);
  assert.match(problem.detail, /nothing was accepted/);
  const ready = await fetch(`${platform.url}/readyz`);
  assert.equal(ready.status, 503);
  assert.equal(ready.headers.get('retry-after'), '5');

  await proxy.restore();
  assert.equal((await send()).status, 202);
  assert.equal((await fetch(`${platform.url}/readyz`)).status, 200);
});
