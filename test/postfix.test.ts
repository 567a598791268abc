// Delivery to a real peer MTA: a message accepted by the api is rendered, DKIM-signed and relayed
// by the sender to Debian's Postfix on loopback, and what Postfix stored verifies under dkimpy
// with the public key the domain publishes.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { dnsRecords } from '../lib/dns-records.js';
import { silentLogger } from '../lib/log.js';
import { startSender, type Sender } from '../sender/worker.js';
import { verifyDkimIndependently } from './helpers/dkim.js';
import { startTestPlatform, type TestPlatform } from './helpers/platform.js';
import { startPostfix, type PostfixInstance } from './helpers/postfix.js';

let postfix: PostfixInstance;
let platform: TestPlatform;
let sender: Sender;

before(async () => {
  postfix = await startPostfix();
  platform = await startTestPlatform({ MAILPLANE_RELAY_URL: `smtp://${postfix.host}:${postfix.port}` });
  const { database, config, metrics, renderer } = platform;
  sender = await startSender({
    pool: database.pool,
    db: database.db,
    config,
    log: silentLogger,
    metrics,
    renderer,
  });
});

after(async () => {
  await sender?.stop();
  await platform?.close();
  await postfix?.stop();
});

test('a templated send reaches Postfix DKIM-signed, and verifies under an independent verifier', async () => {
  const res = await fetch(`${platform.url}/v1/emails`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${platform.keys.get('default/acme/backend')!}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({
      from: 'Acme <hello@example.com>',
      to: ['ada@example.org'],
      template: { id: 'welcome', variables: { name: 'Ada', email: 'ada@example.org' } },
    }),
  });
  assert.equal(res.status, 202, await res.text());

  const [received] = await postfix.waitForMessages(1, 20_000);
  assert.equal(received!.originalRecipient, 'ada@example.org');
  // The example domain has a return path, but this installation has no inbound host for its MX:
  // bounces go to the From address rather than to a domain nothing receives for.
  assert.equal(received!.sender, 'hello@example.com');
  const raw = received!.raw.toString('utf8');
  assert.match(raw, /^Subject: Welcome to Acme, Ada!/m);
  assert.match(raw, /^DKIM-Signature: .*d=example\.com/m);

  const domain = await platform.database.db
    .selectFrom('domains')
    .selectAll()
    .where('name', '=', 'example.com')
    .executeTakeFirstOrThrow();
  const dkim = dnsRecords(domain).find((r) => r.purpose === 'dkim')!;
  const { ok, output } = await verifyDkimIndependently(received!.raw, { [dkim.name]: dkim.value });
  assert.ok(ok, output);
  // Postfix's own Received and Delivered-To headers sit above the signature and do not break it;
  // a byte changed in the body would.
  const tampered = Buffer.from(raw.replace('Ada!', 'Eve!'));
  assert.equal((await verifyDkimIndependently(tampered, { [dkim.name]: dkim.value })).ok, false);
});
