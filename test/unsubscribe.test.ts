// One-click unsubscribe (RFC 8058) against real parts: the api and the sender on a fresh database,
// a loopback SMTP sink as the relay, dkimpy verifying what arrived, the real inbound listener for
// the mailto address, and a loopback webhook receiver verifying with `standardwebhooks`. The
// installation's public URL is a name nothing resolves (https://mail.mailplane.test): the test
// reads the link from the message and sends its path to the api it started.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { headerValue } from '../dev/inbox.js';
import { encrypt } from '../lib/crypto.js';
import { silentLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { signToken } from '../lib/signed-token.js';
import { parseManifests, type TenantResource } from '../lib/resources.js';
import {
  listUnsubscribeHeaders,
  messageIdOfUnsubscribeAddress,
  unsubscribeMailbox,
  unsubscribeToken,
} from '../lib/unsubscribe.js';
import { bounceAddress, messageIdOfBounceAddress } from '../lib/verp.js';
import { newWebhookSecret } from '../lib/webhooks.js';
import { withOfferedHeaders } from '../sender/unsubscribe-offer.js';
import type { Sender } from '../sender/worker.js';
import { startInboundServer, type InboundServer } from '../smtp/inbound-server.js';
import { verifyDkimIndependently, dkimRecordsOf } from './helpers/dkim.js';
import { eventually } from './helpers/eventually.js';
import { startTestPlatform, startTestSender, type TestPlatform } from './helpers/platform.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

const PUBLIC_URL = 'https://mail.mailplane.test';
let platform: TestPlatform;
let sink: SmtpSink;
let sender: Sender;
let inbound: InboundServer;
let receiver: WebhookReceiver;
let key: string;
let tenantId: string;
const secret = newWebhookSecret();

before(async () => {
  sink = await startSmtpSink();
  platform = await startTestPlatform({
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${sink.port}`,
    MAILPLANE_PUBLIC_URL: PUBLIC_URL,
    MAILPLANE_INBOUND_HOST: 'mx.mailplane.test',
    MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: 'true',
  });
  key = platform.keys.get('default/acme/backend')!;
  tenantId = (await platform.database.db.selectFrom('tenants').select('id').executeTakeFirstOrThrow()).id;
  receiver = await startWebhookReceiver(() => [secret]);
  await platform.database.db
    .insertInto('webhook_endpoints')
    .values({
      tenant_id: tenantId,
      url: receiver.url,
      events: ['email.unsubscribed'],
      secret: encrypt(platform.config.secretKey, secret),
    })
    .execute();
  inbound = await startInboundServer(
    {
      db: platform.database.db,
      secretKey: platform.config.secretKey,
      log: silentLogger,
      registry: createMetrics().registry,
      hostname: 'inbound.test',
    },
    { port: 0, host: '127.0.0.1' },
  );
  sender = await startTestSender(platform);
});

after(async () => {
  await sender?.stop();
  await inbound?.close();
  await receiver?.close();
  await platform?.close();
  await sink?.close();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read member by member
async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${platform.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** Sends one email to `to`; answers its id and its message's. */
async function send(
  to: string,
  extra: Record<string, unknown>,
): Promise<{ emailId: string; messageId: string }> {
  const res = await api('POST', '/v1/emails', {
    from: 'Acme <hello@example.com>',
    to,
    subject: 'News',
    html: '<p>This week at Acme.</p>',
    ...extra,
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const row = await platform.database.db
    .selectFrom('messages')
    .select('id')
    .where('email_id', '=', res.body.id)
    .executeTakeFirstOrThrow();
  return { emailId: res.body.id, messageId: row.id };
}

/** The message as the sink received it. */
async function receivedBy(to: string): Promise<string> {
  const message = await eventually(`mail to ${to}`, async () =>
    sink.messages().find((m) => m.envelope.to.includes(to)),
  );
  return message.raw;
}

async function statusOf(emailId: string): Promise<string> {
  return (await api('GET', `/v1/emails/${emailId}`)).body.status as string;
}

async function suppression(address: string) {
  return platform.database.db
    .selectFrom('suppressions')
    .select(['reason', 'detail'])
    .where('tenant_id', '=', tenantId)
    .where('address', '=', address)
    .executeTakeFirst();
}

/** The link and the mailto address of List-Unsubscribe, in that order. */
function offers(raw: string): { url: string; mailto: string } {
  const value = headerValue(raw, 'list-unsubscribe');
  assert.ok(value, 'the message has a List-Unsubscribe field');
  // RFC 2369: whitespace inside the brackets is ignored (a long URL may be folded there).
  const uris = [...value.matchAll(/<([^>]*)>/g)].map((m) => m[1]!.replace(/\s+/g, ''));
  const url = uris.find((u) => u.startsWith('https://'));
  const mailto = uris.find((u) => u.startsWith('mailto:'));
  assert.ok(url && mailto, `an https link and a mailto address: ${value}`);
  return { url, mailto: mailto.slice('mailto:'.length).split('?')[0]! };
}

/** The link's path on the api under test. */
const local = (url: string) => `${platform.url}${new URL(url).pathname}`;

const dkimRecords = () => dkimRecordsOf(platform.database.db);

function oneClick(url: string): Promise<Response> {
  return fetch(local(url), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'List-Unsubscribe=One-Click',
  });
}

describe('one-click unsubscribe', () => {
  test('a message sent with unsubscribe: true carries List-Unsubscribe (an https link and a mailto address) and List-Unsubscribe-Post, both covered by a DKIM signature that dkimpy verifies; the caller’s own List-Unsubscribe is replaced', async () => {
    await send('reader-1@example.org', {
      unsubscribe: true,
      headers: {
        'List-Unsubscribe': '<https://elsewhere.example/unsubscribe>',
        'list-unsubscribe-post': 'List-Unsubscribe=One-Click',
      },
    });
    const raw = await receivedBy('reader-1@example.org');
    const { url, mailto } = offers(raw);
    assert.ok(url.startsWith(`${PUBLIC_URL}/u/`), url);
    assert.match(mailto, /^unsub\+[0-9a-f-]{36}\.[0-9a-f]{16}@bounces\.example\.com$/);
    assert.ok(mailto.split('@')[0]!.length <= 64, 'the local part is within RFC 5321’s 64 octets');
    assert.equal(headerValue(raw, 'list-unsubscribe-post'), 'List-Unsubscribe=One-Click');
    const header = raw.slice(0, raw.indexOf('\r\n\r\n'));
    assert.equal(header.match(/^list-unsubscribe:/gim)?.length, 1, 'one List-Unsubscribe field');
    assert.equal(header.match(/^list-unsubscribe-post:/gim)?.length, 1, 'one List-Unsubscribe-Post field');
    assert.doesNotMatch(header, /elsewhere\.example/);
    assert.ok(header.split('\r\n').every((line) => line.length <= 998));

    const signature = headerValue(raw, 'dkim-signature')!.replace(/\s+/g, '');
    const signed = /(?:^|;)h=([^;]+)/.exec(signature)![1]!.toLowerCase().split(':');
    assert.ok(
      signed.includes('list-unsubscribe') && signed.includes('list-unsubscribe-post'),
      signed.join(':'),
    );
    const verified = await verifyDkimIndependently(raw, await dkimRecords());
    assert.ok(verified.ok, verified.output);
    // The signature breaks if either field is changed on the way.
    const tampered = raw.replace(
      'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
      'List-Unsubscribe-Post: List-Unsubscribe=One-Clack',
    );
    assert.notEqual(tampered, raw);
    assert.equal((await verifyDkimIndependently(tampered, await dkimRecords())).ok, false);
  });

  test('a GET of the link shows a page with a button and suppresses nothing; the POST a mail client sends suppresses the address at once and answers 200; the next send to it is suppressed', async () => {
    const address = 'reader-2@example.org';
    await send(address, { unsubscribe: true });
    const { url } = offers(await receivedBy(address));

    // What a link scanner does, several times over.
    for (let i = 0; i < 3; i++) {
      const page = await fetch(local(url));
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
      const html = await page.text();
      assert.match(html, /<form method="post">/);
      assert.match(html, /reader-2@example\.org/);
      assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    }
    assert.equal(await suppression(address), undefined, 'a GET does not unsubscribe');

    const res = await oneClick(url);
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await suppression(address), { reason: 'unsubscribe', detail: 'one-click' });
    const audit = await api('GET', '/v1/audit-log?action=suppression.');
    const entry = (audit.body.data as { target: string; action: string; actor: string }[]).find(
      (e) => e.target === address,
    );
    assert.deepEqual(entry && [entry.action, entry.actor], [
      'suppression.added',
      'recipient:unsubscribe-link',
    ]);

    const again = await send(address, { unsubscribe: true });
    await eventually(
      'the next send suppressed',
      async () => (await statusOf(again.emailId)) === 'suppressed',
    );
    assert.equal(sink.messages().filter((m) => m.envelope.to.includes(address)).length, 1);
  });

  test('the button of the page unsubscribes too, and says so', async () => {
    const address = 'reader-3@example.org';
    await send(address, { unsubscribe: true });
    const { url } = offers(await receivedBy(address));
    const res = await fetch(local(url), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'confirm=page',
    });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /will get no more mail/);
    assert.deepEqual(await suppression(address), { reason: 'unsubscribe', detail: 'page' });
  });

  test('forged and altered tokens are refused alike, by GET and by POST, and suppress nothing', async () => {
    const address = 'reader-4@example.org';
    const { messageId } = await send(address, { unsubscribe: true });
    const { url } = offers(await receivedBy(address));
    const token = new URL(url).pathname.slice('/u/'.length);
    const [payload, mac] = token.split('.') as [string, string];
    const flip = (s: string, at: number) => s.slice(0, at) + (s[at] === 'A' ? 'B' : 'A') + s.slice(at + 1);
    const target = { tenantId, messageId, address: 'someone-else@example.org' };
    const forged = [
      `${flip(payload, 3)}.${mac}`,
      `${payload}.${flip(mac, 0)}`,
      `${payload}.${mac.slice(0, -2)}`,
      // Another address, under a key that is not the installation's.
      unsubscribeToken(Buffer.alloc(32, 7), target),
      // A token of the installation's, minted for another purpose.
      signToken(platform.config.secretKey, 'click', [tenantId, messageId, target.address]),
      'not-a-token',
      `${payload}.${mac}.${mac}`,
    ];
    const answers = new Set<string>();
    for (const bad of forged) {
      for (const method of ['GET', 'POST']) {
        const res = await fetch(`${platform.url}/u/${bad}`, {
          method,
          ...(method === 'POST'
            ? {
                headers: { 'content-type': 'application/x-www-form-urlencoded' },
                body: 'List-Unsubscribe=One-Click',
              }
            : {}),
        });
        assert.equal(res.status, 404, `${method} ${bad}`);
        answers.add(await res.text());
      }
    }
    assert.equal(answers.size, 1, 'every refusal reads the same: nothing says what was wrong');
    assert.equal(await suppression(address), undefined);
    assert.equal(await suppression('someone-else@example.org'), undefined);
  });

  test('an unsubscribe reaches the email.unsubscribed webhook, the timeline and the statistics', async () => {
    const address = 'reader-5@example.org';
    const { emailId } = await send(address, {
      unsubscribe: true,
      tags: [{ name: 'campaign', value: 'dec' }],
    });
    const { url } = offers(await receivedBy(address));
    await eventually('delivered', async () => (await statusOf(emailId)) === 'delivered');
    assert.equal((await oneClick(url)).status, 200);
    // Pressed again, and then by a burst at once (a client retrying, a scanner): suppressed once,
    // one event, every press answered.
    assert.equal((await oneClick(url)).status, 200);
    const burst = await Promise.all(Array.from({ length: 50 }, () => oneClick(url)));
    assert.deepEqual(new Set(burst.map((r) => r.status)), new Set([200]));

    const hook = await eventually('the webhook', async () =>
      receiver.received.find((r) => r.body.type === 'email.unsubscribed' && r.body.data.email_id === emailId),
    );
    assert.deepEqual(hook.verifiedWith, [secret]);
    assert.equal(hook.body.data.recipient, address);
    assert.deepEqual(hook.body.data.unsubscribe, { method: 'one-click' });
    assert.deepEqual(hook.body.data.tags, { campaign: 'dec' });

    const email = (await api('GET', `/v1/emails/${emailId}`)).body;
    const events = (email.events as { type: string; method?: string }[]).filter(
      (e) => e.type === 'unsubscribed',
    );
    assert.deepEqual(
      events.map((e) => e.method),
      ['one-click'],
    );
    assert.equal(email.status, 'delivered', 'an unsubscribe changes no status');

    const stats = await api('GET', '/v1/stats?group_by=tag');
    assert.equal(stats.status, 200);
    const tagged = (stats.body.data as { tag: string; unsubscribed: number }[]).filter(
      (d) => d.tag === 'campaign:dec',
    );
    assert.equal(
      tagged.reduce((n, d) => n + d.unsubscribed, 0),
      1,
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(
      receiver.received.filter(
        (r) => r.body.type === 'email.unsubscribed' && r.body.data.email_id === emailId,
      ).length,
      1,
    );
  });

  test('a mail to the mailto address, through the real inbound listener, suppresses the address as the link does, whatever case an MTA gives it', async () => {
    const address = 'reader-6@example.org';
    const { emailId } = await send(address, { unsubscribe: true });
    const { mailto } = offers(await receivedBy(address));
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: inbound.port,
      secure: false,
      ignoreTLS: true,
    });
    try {
      await transport.sendMail({
        from: address,
        // Some MTAs fold a local part's case.
        to: mailto.toUpperCase(),
        subject: 'unsubscribe',
        text: 'unsubscribe',
      });
      await assert.rejects(
        transport.sendMail({
          from: address,
          to: mailto.replace(/\.[0-9a-f]{16}@/, '.0000000000000000@'),
          subject: 'unsubscribe',
          text: 'unsubscribe',
        }),
        /550/,
        'a forged tag is refused at RCPT',
      );
    } finally {
      transport.close();
    }
    assert.deepEqual(await suppression(address), { reason: 'unsubscribe', detail: 'mailto' });
    const events = (await api('GET', `/v1/emails/${emailId}`)).body.events as {
      type: string;
      method?: string;
    }[];
    assert.deepEqual(
      events.filter((e) => e.type === 'unsubscribed').map((e) => e.method),
      ['mailto'],
    );
  });

  test('unsubscribe: false carries no List-Unsubscribe; the Tenant’s spec.unsubscribe is the default of an email that does not say', async () => {
    await send('reader-7@example.org', { unsubscribe: false });
    assert.equal(headerValue(await receivedBy('reader-7@example.org'), 'list-unsubscribe'), undefined);

    await platform.apply([
      {
        kind: 'Tenant',
        metadata: { namespace: 'default', name: 'acme' },
        spec: { apiKeys: [{ name: 'backend', scopes: ['send', 'read'] }], unsubscribe: true },
      },
    ]);
    const log = await api('GET', '/v1/audit-log?action=tenant.');
    const entries = log.body.data as { action: string; detail: Record<string, unknown> }[];
    assert.ok(
      entries.some((e) => e.action === 'tenant.updated' && e.detail.unsubscribe === true),
      `the change of default is in the audit log: ${JSON.stringify(entries)}`,
    );
    await send('reader-8@example.org', {});
    assert.ok(offers(await receivedBy('reader-8@example.org')).url);
    await send('reader-9@example.org', { unsubscribe: false });
    assert.equal(headerValue(await receivedBy('reader-9@example.org'), 'list-unsubscribe'), undefined);

    // Each email of a batch says for itself.
    const batch = await api('POST', '/v1/emails/batch', [
      {
        from: 'Acme <hello@example.com>',
        to: 'reader-10@example.org',
        subject: 'a',
        text: 'a',
        unsubscribe: false,
      },
      { from: 'Acme <hello@example.com>', to: 'reader-11@example.org', subject: 'b', text: 'b' },
    ]);
    assert.equal(batch.status, 202, JSON.stringify(batch.body));
    assert.equal(headerValue(await receivedBy('reader-10@example.org'), 'list-unsubscribe'), undefined);
    assert.ok(offers(await receivedBy('reader-11@example.org')).url);
  });

  test('a SendingDomain with a tracking domain serves the link under it, over https, instead of MAILPLANE_PUBLIC_URL', async () => {
    const domains = platform.database.db.updateTable('domains').where('name', '=', 'example.com');
    await domains.set({ tracking_domain: 'links.example.com' }).execute();
    try {
      await send('reader-12@example.org', { unsubscribe: true });
      const raw = await receivedBy('reader-12@example.org');
      const { url } = offers(raw);
      assert.ok(url.startsWith('https://links.example.com/u/'), url);
      assert.equal(headerValue(raw, 'list-unsubscribe-post'), 'List-Unsubscribe=One-Click');
      assert.equal((await fetch(local(url))).status, 200, 'the api serves it whatever the host');
    } finally {
      await domains.set({ tracking_domain: null }).execute();
    }
  });

  test('a message submitted whole over SMTP gets the offer in place of its own List-Unsubscribe fields, its other fields as written', async () => {
    const raw = Buffer.from(
      [
        'From: Acme <hello@example.com>',
        'To: ada@example.org',
        'Subject: News',
        'List-Unsubscribe: <https://elsewhere.example/u>',
        'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
        'X-Long: ' + 'a'.repeat(120),
        '',
        'Hello',
        '',
      ].join('\r\n'),
    );
    const offer = listUnsubscribeHeaders({
      url: `${PUBLIC_URL}/u/${'t'.repeat(150)}`,
      mailto: 'unsub+x@bounces.example.com',
    });
    const text = withOfferedHeaders(raw, offer).toString('latin1');
    const header = text.slice(0, text.indexOf('\r\n\r\n'));
    assert.doesNotMatch(header, /elsewhere\.example/);
    assert.equal(header.match(/^list-unsubscribe:/gim)?.length, 1);
    assert.equal(header.match(/^list-unsubscribe-post:/gim)?.length, 1);
    assert.ok(header.includes(`X-Long: ${'a'.repeat(120)}\r\n`), 'the client’s own fields are untouched');
    assert.ok(header.split('\r\n').every((line) => !line.startsWith('List-') || line.length <= 998));
    assert.ok(text.endsWith('\r\n\r\nHello\r\n'));
    assert.equal(withOfferedHeaders(raw, []), raw, 'no offer, no change');
  });

  test('the mailto address and the bounce address of one message never stand for each other', () => {
    const key = platform.config.secretKey;
    const id = '0b6c1f3e-9a4d-4c2b-8e7f-1a2b3c4d5e6f';
    const mailto = unsubscribeMailbox(key, id, 'bounces.example.com');
    const bounce = bounceAddress(key, id, 'bounces.example.com');
    assert.equal(messageIdOfUnsubscribeAddress(key, mailto), id);
    assert.equal(messageIdOfBounceAddress(key, mailto), undefined);
    assert.equal(messageIdOfUnsubscribeAddress(key, bounce), undefined);
    // The same tag under the other prefix is no address of either kind.
    const swapped = mailto.replace('unsub+', 'bounces+');
    assert.equal(messageIdOfBounceAddress(key, swapped), undefined);
  });

  test('a Tenant manifest takes spec.unsubscribe as a boolean, as the CRD says', () => {
    const manifest = (value: string) =>
      `apiVersion: mailplane.io/v1alpha1\nkind: Tenant\nmetadata: {name: news}\nspec: {unsubscribe: ${value}}\n`;
    const [news] = parseManifests(manifest('true'), 'news.yaml');
    assert.equal((news as TenantResource).spec.unsubscribe, true);
    assert.throws(() => parseManifests(manifest('"yes"'), 'news.yaml'), /spec\.unsubscribe/);
  });

  test('without an https link there is no List-Unsubscribe-Post: RFC 8058 one-click needs https', () => {
    assert.deepEqual(listUnsubscribeHeaders({ mailto: 'unsub+x@bounces.example.com' }), [
      { key: 'List-Unsubscribe', value: '<mailto:unsub+x@bounces.example.com?subject=unsubscribe>' },
    ]);
    assert.deepEqual(
      listUnsubscribeHeaders({ url: 'http://localhost:8080/u/t' }).map((h) => h.key),
      ['List-Unsubscribe'],
    );
    assert.deepEqual(listUnsubscribeHeaders({}), []);
  });

  test('a send with unsubscribe that is not a boolean is a 422 naming the field', async () => {
    const res = await api('POST', '/v1/emails', {
      from: 'Acme <hello@example.com>',
      to: 'x@example.org',
      subject: 's',
      text: 't',
      unsubscribe: 'yes',
    });
    assert.equal(res.status, 422);
    assert.deepEqual(res.body.errors, [{ field: 'unsubscribe', message: 'must be true or false' }]);
  });
});
