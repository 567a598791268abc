// Open and click tracking against real parts: a message through the api, the sender and an SMTP
// sink, whose rewritten links and pixel dkimpy verifies; the public endpoints answering a
// browser, a forger and each kind of machine; the events on the timeline, at a webhook receiver
// and in the statistics, people's apart from machines'.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { simpleParser } from 'mailparser';
import { Client } from '@sendgrid/client';
import { MailService } from '@sendgrid/mail';
import { Models, ServerClient } from 'postmark';
import { startApi } from '../api/main.js';
import { loadMachineSignals, classifyFetch } from '../api/machine-fetch.js';
import { createEngagementRecorder } from '../api/engagement-recorder.js';
import { readConfig } from '../lib/config.js';
import { checkDnsRecords } from '../lib/dns-check.js';
import { dkimTxtValue, encrypt } from '../lib/crypto.js';
import { silentLogger } from '../lib/log.js';
import { reconcileDomain } from '../lib/reconcile/domain.js';
import type { SendingDomainResource } from '../lib/resources.js';
import { signToken } from '../lib/signed-token.js';
import { clickUrl, openUrl } from '../lib/tracking.js';
import { newWebhookSecret } from '../lib/webhooks.js';
import type { Sender } from '../sender/worker.js';
import { trackHtml } from '../sender/track-html.js';
import { verifyDkimIndependently } from './helpers/dkim.js';
import { eventually } from './helpers/eventually.js';
import { startTestPlatform, startTestSender, type TestPlatform } from './helpers/platform.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

const BROWSER =
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
const TRACKING_HOST = 'track.example.com';
const PUBLIC_URL = 'https://mail.example.com';
/** A message sent an hour ago: past the scanner window, as a person's click would be. */
const AN_HOUR_AGO = () => Date.now() - 3600_000;

let platform: TestPlatform;
let sink: SmtpSink;
let sender: Sender;
let receiver: WebhookReceiver;
let key: string;
let tenantId: string;
const secret = newWebhookSecret();

const domain = (tracking: SendingDomainResource['spec']['tracking']): SendingDomainResource => ({
  kind: 'SendingDomain',
  metadata: { namespace: 'default', name: 'example-com' },
  spec: {
    tenantRef: { name: 'acme' },
    domain: 'example.com',
    dkim: { selector: 'mailplane', algorithm: 'rsa-2048' },
    ...(tracking ? { tracking } : {}),
  },
});

async function api(path: string, init: RequestInit = {}) {
  const res = await fetch(`${platform.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...init.headers },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Sends one email and waits for the sink to take it: its message id and the raw message. */
async function sendThrough(email: Record<string, unknown>): Promise<{ messageId: string; raw: string }> {
  const subject = `t-${Math.random().toString(36).slice(2)}`;
  const res = await api('/v1/emails', {
    method: 'POST',
    body: JSON.stringify({ from: 'Acme <hello@example.com>', to: 'ada@example.org', subject, ...email }),
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const raw = await eventually(
    'the message at the sink',
    async () => sink.messages().find((m) => m.raw.includes(`Subject: ${subject}`))?.raw,
  );
  const { id } = await platform.database.db
    .selectFrom('messages')
    .select('id')
    .where('email_id', '=', res.body.id as string)
    .executeTakeFirstOrThrow();
  return { messageId: id, raw };
}

/** Messages to fetch for, one per case: the burst signal looks at what else of a message was clicked. */
async function messages(n: number): Promise<string[]> {
  const res = await api('/v1/emails/batch', {
    method: 'POST',
    body: JSON.stringify(
      Array.from({ length: n }, (_, i) => ({
        from: 'hello@example.com',
        to: `case-${i}@example.org`,
        subject: 'case',
        text: 'hello',
      })),
    ),
  });
  assert.equal(res.status, 202);
  const ids = (res.body.data as { id: string }[]).map((e) => e.id);
  const rows = await platform.database.db
    .selectFrom('messages')
    .select(['id', 'email_id'])
    .where('email_id', 'in', ids)
    .execute();
  return ids.map((emailId) => rows.find((r) => r.email_id === emailId)!.id);
}

async function eventsOf(messageId: string, count = 1) {
  return eventually(`${count} engagement event(s) of ${messageId}`, async () => {
    const rows = await platform.database.db
      .selectFrom('events')
      .select(['type', 'detail'])
      .where('message_id', '=', messageId)
      .where('type', 'in', ['opened', 'clicked'])
      .orderBy('id')
      .execute();
    return rows.length >= count && rows;
  });
}

function fetchTracked(url: string, init: { headers?: Record<string, string>; method?: string } = {}) {
  // The tracked URL's host is the tracking domain; the api behind it is on loopback.
  // The Ingress says which host was asked for, as it says who asked.
  const { pathname, host } = new URL(url);
  return fetch(`${platform.url}${pathname}`, {
    redirect: 'manual',
    ...init,
    headers: { 'x-forwarded-host': host, ...init.headers },
  });
}

before(async () => {
  sink = await startSmtpSink();
  platform = await startTestPlatform({
    MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${sink.port}`,
    MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: 'true',
    MAILPLANE_PUBLIC_URL: PUBLIC_URL,
    // The test stands in for an Ingress controller on loopback, saying where each fetch came from.
    MAILPLANE_TRUST_PROXY: 'loopback',
    // The first click of the message through the sink comes seconds after sending, however busy
    // the machine; the other cases are signed as sent an hour ago.
    MAILPLANE_TRACKING_SCAN_SECONDS: '60',
  });
  key = platform.keys.get('default/acme/backend')!;
  tenantId = (await platform.database.db.selectFrom('tenants').select('id').executeTakeFirstOrThrow()).id;
  await platform.apply([domain({ domain: TRACKING_HOST, opens: true, clicks: true })]);
  receiver = await startWebhookReceiver(() => [secret]);
  await platform.database.db
    .insertInto('webhook_endpoints')
    .values({
      tenant_id: tenantId,
      url: receiver.url,
      events: ['email.opened', 'email.clicked'],
      secret: encrypt(platform.config.secretKey, secret),
    })
    .execute();
  sender = await startTestSender(platform);
});

after(async () => {
  await sender?.stop();
  await platform?.close();
  await receiver?.close();
  await sink?.close();
});

describe('a tracked message', () => {
  let sent: { messageId: string; raw: string };
  const html = [
    '<html><body><p>Hi Ada,</p>',
    '<p><a href="https://shop.example.org/spring?utm_source=mail&amp;utm_medium=email#offer">Spring sale</a></p>',
    '<p><a class="button" href="https://docs.example.org/guide">Guide</a></p>',
    '<p><a href="mailto:help@example.com">mail us</a> <a href="tel:+15550100">call</a> <a href="#top">top</a></p>',
    '<p><a data-mailplane-no-track href="https://private.example.org/x">not tracked</a></p>',
    `<p><a href="${PUBLIC_URL}/u/some-token">unsubscribe</a></p>`,
    '</body></html>',
  ].join('\n');

  before(async () => {
    sent = await sendThrough({ html, text: 'Hi Ada' });
  });

  test('its links and pixel are rewritten before signing, and dkimpy verifies what the recipient gets', async () => {
    const parsed = await simpleParser(sent.raw);
    const body = String(parsed.html);
    const hrefs = [...body.matchAll(/href="([^"]*)"/g)].map((m) => m[1]!);
    const tracked = hrefs.filter((h) => h.startsWith(`https://${TRACKING_HOST}/t/c/`));
    assert.equal(tracked.length, 2, body);
    for (const untouched of [
      'mailto:help@example.com',
      'tel:+15550100',
      '#top',
      'https://private.example.org/x',
      `${PUBLIC_URL}/u/some-token`,
    ]) {
      assert.ok(hrefs.includes(untouched), `${untouched} left alone: ${body}`);
    }
    assert.match(
      body,
      new RegExp(
        `<img src="https://${TRACKING_HOST}/t/o/[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+" width="1" height="1"`,
      ),
    );
    // Everything else of the html is as it was written.
    assert.ok(body.includes('<a class="button" href="https://'));

    const row = await platform.database.db
      .selectFrom('domains')
      .select(['selector', 'dkim_algorithm', 'dkim_public_key'])
      .where('name', '=', 'example.com')
      .executeTakeFirstOrThrow();
    const records = {
      [`${row.selector}._domainkey.example.com`]: dkimTxtValue(row.dkim_algorithm, row.dkim_public_key),
    };
    const verified = await verifyDkimIndependently(sent.raw, records);
    assert.ok(verified.ok, verified.output);
  });

  test('a click goes to exactly the URL the message had, query and fragment kept, and is recorded with its link', async () => {
    const body = String((await simpleParser(sent.raw)).html);
    const link = /href="(https:\/\/track\.example\.com\/t\/c\/[^"]+)"/.exec(body)![1]!;
    const res = await fetchTracked(link, { headers: { 'user-agent': BROWSER } });
    assert.equal(res.status, 302);
    assert.equal(
      res.headers.get('location'),
      'https://shop.example.org/spring?utm_source=mail&utm_medium=email#offer',
    );
    assert.match(res.headers.get('cache-control') ?? '', /no-store/);
    const [event] = await eventsOf(sent.messageId);
    assert.equal(event!.type, 'clicked');
    assert.equal(
      event!.detail.link,
      'https://shop.example.org/spring?utm_source=mail&utm_medium=email#offer',
    );
    // Within seconds of sending: the receiving gateway's scanner, not Ada.
    assert.equal(event!.detail.machine, true);
    assert.equal(event!.detail.machine_reason, 'soon-after-sending');
  });

  test('a forged or altered token redirects nowhere: 404 without a Location', async () => {
    const body = String((await simpleParser(sent.raw)).html);
    const link = /href="(https:\/\/track\.example\.com\/t\/c\/[^"]+)"/.exec(body)![1]!;
    const token = new URL(link).pathname.slice('/t/c/'.length);
    const [payload, mac] = token.split('.') as [string, string];
    const [messageId, sentAt] = Buffer.from(payload, 'base64url').toString().split('\n');
    const otherUrl = Buffer.from([messageId, sentAt, 'https://evil.example/'].join('\n')).toString(
      'base64url',
    );
    const flip = (s: string, at: number) => s.slice(0, at) + (s[at] === 'A' ? 'B' : 'A') + s.slice(at + 1);
    const forged = [
      `${otherUrl}.${mac}`, // another URL under the original MAC
      `${flip(payload, 10)}.${mac}`, // one character of the fields changed
      `${payload}.${flip(mac, 3)}`, // one character of the MAC changed
      `${payload}.${mac.slice(0, -2)}`, // cut short
      `${payload}`, // no MAC at all
      signToken(Buffer.alloc(32, 7), 'click', [messageId!, sentAt!, 'https://evil.example/']), // another key
      signToken(platform.config.secretKey, 'open', [messageId!, sentAt!]), // another purpose's token
      signToken(platform.config.secretKey, 'click', [
        messageId!,
        sentAt!,
        'javascript:alert(1)',
        'track.example.com',
      ]),
    ];
    for (const bad of forged) {
      const res = await fetchTracked(`https://track.example.com/t/c/${bad}`);
      assert.equal(res.status, 404, bad);
      assert.equal(res.headers.get('location'), null, bad);
    }
    // The genuine link redirects only under the tracking host it was made for: not under the
    // shared public host, nor another tenant's tracking domain.
    for (const host of [new URL(PUBLIC_URL).host, 'track.other-tenant.example']) {
      const res = await fetchTracked(`https://${host}/t/c/${token}`);
      assert.equal(res.status, 404, host);
      assert.equal(res.headers.get('location'), null, host);
    }
    assert.equal((await fetchTracked(link)).status, 302);
    const pixel = await fetch(`${platform.url}/t/o/${flip(payload, 10)}.${mac}`);
    assert.equal(pixel.status, 404);
  });

  test('the pixel is a 1×1 GIF that no cache keeps, and the open is recorded', async () => {
    const body = String((await simpleParser(sent.raw)).html);
    const pixel = /<img src="([^"]+)"/.exec(body)![1]!;
    const res = await fetchTracked(pixel, {
      headers: { 'user-agent': BROWSER, 'x-forwarded-for': '203.0.113.9' },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/gif');
    assert.match(res.headers.get('cache-control') ?? '', /no-store/);
    assert.equal(res.headers.get('pragma'), 'no-cache');
    const gif = Buffer.from(await res.arrayBuffer());
    assert.equal(gif.subarray(0, 6).toString(), 'GIF89a');
    assert.deepEqual([gif.readUInt16LE(6), gif.readUInt16LE(8)], [1, 1]);
    const events = await eventsOf(sent.messageId, 2);
    const open = events.find((e) => e.type === 'opened')!;
    assert.equal(open.detail.ip, '203.0.113.9');
    assert.equal(open.detail.user_agent, BROWSER);
  });

  test('the SendingDomain and GET /v1/domains list its tracking domain as a CNAME to the public host', async () => {
    const outcome = await reconcileDomain(
      {
        db: platform.database.db,
        keys: platform.keyStore,
        secretKey: platform.config.secretKey,
        trackingTarget: 'mail.example.com',
      },
      domain({ domain: TRACKING_HOST, opens: true, clicks: true }),
    );
    assert.deepEqual(
      outcome.dnsRecords.filter((r) => r.purpose === 'tracking'),
      [{ type: 'CNAME', name: TRACKING_HOST, value: 'mail.example.com', purpose: 'tracking' }],
    );
    const { body } = await api('/v1/domains');
    const listed = (body.data as { name: string; records: Record<string, unknown>[] }[])
      .find((d) => d.name === 'example.com')!
      .records.find((r) => r.purpose === 'tracking');
    assert.deepEqual(
      [listed?.record, listed?.type, listed?.name, listed?.value],
      ['TRACKING', 'CNAME', TRACKING_HOST, 'mail.example.com'],
    );
  });
});

test('the DNS check finds a tracking CNAME that points at the public host, and says what is wrong otherwise', async () => {
  const record = {
    type: 'CNAME',
    name: TRACKING_HOST,
    value: 'mail.example.com',
    purpose: 'tracking',
  } as const;
  const resolver = (targets: string[] | undefined) => ({
    resolveTxt: async () => [],
    resolveMx: async () => [],
    resolveCname: async () => {
      if (targets) return targets;
      throw Object.assign(new Error('no such name'), { code: 'ENOTFOUND' });
    },
  });
  const [found] = await checkDnsRecords(resolver(['Mail.Example.com.']), [record]);
  assert.deepEqual([found!.found, found!.problem], [true, undefined]);
  const [other] = await checkDnsRecords(resolver(['elsewhere.example.net']), [record]);
  assert.deepEqual(
    [other!.found, other!.reason, other!.problem],
    [false, 'mismatch', 'CNAME is not mail.example.com'],
  );
  const [none] = await checkDnsRecords(resolver(undefined), [record]);
  assert.deepEqual([none!.found, none!.reason], [false, 'absent']);
});

describe('people, not machines', () => {
  const cases: {
    what: string;
    kind: 'open' | 'click';
    headers: Record<string, string>;
    method?: string;
    machine: boolean;
    reason?: string;
    network?: string;
  }[] = [
    {
      what: 'Apple Mail Privacy Protection: Apple’s network and its bare user agent',
      kind: 'open',
      headers: { 'user-agent': 'Mozilla/5.0', 'x-forwarded-for': '17.58.101.12' },
      machine: true,
      reason: 'apple-privacy-protection',
    },
    {
      what: 'Gmail’s image proxy',
      kind: 'open',
      headers: {
        'user-agent':
          'Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)',
        'x-forwarded-for': '66.102.8.100',
      },
      machine: true,
      reason: 'gmail-image-proxy',
    },
    {
      what: 'a scanner’s user agent',
      kind: 'click',
      headers: { 'user-agent': 'python-requests/2.32.3', 'x-forwarded-for': '198.51.100.20' },
      machine: true,
      reason: 'scanner-user-agent',
    },
    {
      what: 'no user agent at all',
      kind: 'click',
      headers: { 'user-agent': '', 'x-forwarded-for': '198.51.100.21' },
      machine: true,
      reason: 'scanner-user-agent',
    },
    {
      what: 'a HEAD, which checks a link rather than follows it',
      kind: 'click',
      method: 'HEAD',
      headers: { 'user-agent': BROWSER, 'x-forwarded-for': '198.51.100.22' },
      machine: true,
      reason: 'head-request',
    },
    {
      what: 'Microsoft Defender Safe Links from Exchange Online Protection’s network',
      kind: 'click',
      headers: { 'user-agent': BROWSER, 'x-forwarded-for': '40.107.22.58' },
      machine: true,
      reason: 'scanner-network',
      network: 'microsoft-eop',
    },
    {
      what: 'a person in a browser at home',
      kind: 'click',
      headers: { 'user-agent': BROWSER, 'x-forwarded-for': '203.0.113.7', 'accept-language': 'en-GB' },
      machine: false,
    },
    {
      what: 'a person opening the message',
      kind: 'open',
      headers: { 'user-agent': BROWSER, 'x-forwarded-for': '203.0.113.8' },
      machine: false,
    },
  ];
  let ids: string[];
  before(async () => {
    ids = await messages(cases.length + 1);
  });

  cases.forEach((c, i) => {
    test(`${c.what}: machine ${c.machine}${c.reason ? `, ${c.reason}` : ''}`, async () => {
      const base = `https://${TRACKING_HOST}`;
      const url =
        c.kind === 'open'
          ? openUrl(platform.config.secretKey, base, ids[i]!, AN_HOUR_AGO())
          : clickUrl(platform.config.secretKey, base, ids[i]!, AN_HOUR_AGO(), 'https://example.org/landing');
      const res = await fetchTracked(url, { headers: c.headers, ...(c.method ? { method: c.method } : {}) });
      assert.equal(res.status, c.kind === 'open' ? 200 : 302);
      const [event] = await eventsOf(ids[i]!);
      assert.equal(event!.type, c.kind === 'open' ? 'opened' : 'clicked');
      assert.equal(event!.detail.machine, c.machine);
      assert.equal(event!.detail.machine_reason, c.reason);
      assert.equal(event!.detail.network, c.network);
      assert.equal(event!.detail.ip, c.headers['x-forwarded-for']);
    });
  });

  test('every link of a message clicked at once: each click is a scanner’s, the first ones too', async () => {
    const id = ids[cases.length]!;
    const links = ['https://example.org/a', 'https://example.org/b', 'https://example.org/c'];
    for (const link of links) {
      const url = clickUrl(platform.config.secretKey, `https://${TRACKING_HOST}`, id, AN_HOUR_AGO(), link);
      const res = await fetchTracked(url, {
        headers: { 'user-agent': BROWSER, 'x-forwarded-for': '198.51.100.40' },
      });
      assert.equal(res.status, 302);
      assert.equal(res.headers.get('location'), link);
    }
    const events = await eventsOf(id, 3);
    assert.deepEqual(
      // Written together, in no particular order.
      events.map((e) => [e.detail.link, e.detail.machine, e.detail.machine_reason]).sort(),
      links.map((link) => [link, true, 'all-links-at-once']),
    );
  });

  test('without MAILPLANE_TRUST_PROXY an X-Forwarded-For is not believed', async () => {
    const [id] = await messages(1);
    const config = readConfig({
      DATABASE_URL: platform.config.databaseUrl,
      MAILPLANE_SECRET_KEY: 'test-secret-key-of-at-least-32-characters',
      PORT: '0',
    });
    const untrusting = await startApi({
      database: platform.database,
      config,
      log: silentLogger,
      metrics: platform.metrics,
    });
    try {
      const url = new URL(openUrl(config.secretKey, `https://${TRACKING_HOST}`, id!, AN_HOUR_AGO()));
      const res = await fetch(`${untrusting.url}${url.pathname}`, {
        headers: { 'user-agent': BROWSER, 'x-forwarded-for': '17.58.101.12' },
      });
      assert.equal(res.status, 200);
    } finally {
      await untrusting.close();
    }
    const [event] = await eventsOf(id!);
    assert.match(String(event!.detail.ip), /127\.0\.0\.1|::1/);
    assert.equal(event!.detail.machine, false, 'the claimed Apple address was not taken');
  });

  test('a click held for its burst window is written when the recorder closes, not lost with it', async () => {
    const [id] = await messages(1);
    const recorder = createEngagementRecorder({
      pool: platform.database.pool,
      signals: loadMachineSignals(),
      tunables: { scanSeconds: 5, burstLinks: 3, burstSeconds: 60 },
      log: silentLogger,
      metrics: platform.metrics,
    });
    recorder.record({
      kind: 'click',
      messageId: id!,
      sentAt: AN_HOUR_AGO(),
      at: Date.now(),
      link: 'https://example.org/held',
      method: 'GET',
      ip: '203.0.113.50',
      userAgent: BROWSER,
    });
    await recorder.close();
    const rows = await platform.database.db
      .selectFrom('events')
      .select('detail')
      .where('message_id', '=', id!)
      .where('type', '=', 'clicked')
      .execute();
    assert.deepEqual(
      rows.map((r) => [r.detail.link, r.detail.machine]),
      [['https://example.org/held', false]],
    );
  });

  test('MAILPLANE_TRACKING_SIGNALS_FILE replaces the lists, and a file that is not valid is refused naming each fault', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailplane-signals-'));
    try {
      const good = join(dir, 'good.json');
      await writeFile(
        good,
        JSON.stringify({
          apple: { cidrs: [], userAgents: [] },
          google: { cidrs: [], userAgents: [] },
          scanners: { userAgents: [], networks: { 'corporate-gateway': ['198.51.100.0/24'] } },
        }),
      );
      const signals = loadMachineSignals(good);
      const click = (ip: string, userAgent: string) =>
        classifyFetch(
          { kind: 'click', method: 'GET', ip, userAgent, secondsSinceSent: 3600, linksAround: 1 },
          signals,
          { scanSeconds: 5, burstLinks: 3 },
        );
      assert.deepEqual(click('198.51.100.7', BROWSER), {
        machine: true,
        reason: 'scanner-network',
        network: 'corporate-gateway',
      });
      // The shipped Apple range and user agents are gone with the file that replaced them.
      assert.deepEqual(click('17.58.0.1', 'python-requests/2.32.3'), { machine: false });
      const bad = join(dir, 'bad.json');
      await writeFile(
        bad,
        JSON.stringify({
          apple: { cidrs: ['17.0.0.0/33'], userAgents: ['('] },
          google: { cidrs: [], userAgents: [] },
          scanners: { userAgents: [], networks: {} },
        }),
      );
      assert.throws(
        () => loadMachineSignals(bad),
        (err: Error) =>
          /apple\.cidrs\.0: must be a CIDR/.test(err.message) &&
          /apple\.userAgents\.0: must be a regular expression/.test(err.message),
      );
      assert.throws(
        () => loadMachineSignals(join(dir, 'missing.json')),
        /MAILPLANE_TRACKING_SIGNALS_FILE .*missing\.json/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the classifier on its own: IPv4 on a dual-stack socket, Apple IPv6, and each signal switched off by its setting', () => {
    const signals = loadMachineSignals();
    const on = { scanSeconds: 5, burstLinks: 3 };
    const off = { scanSeconds: 0, burstLinks: 0 };
    const fetch = (over: Partial<Parameters<typeof classifyFetch>[0]>) => ({
      kind: 'click' as const,
      method: 'GET',
      ip: '203.0.113.1',
      userAgent: BROWSER,
      secondsSinceSent: 3600,
      linksAround: 1,
      ...over,
    });
    assert.equal(
      classifyFetch(fetch({ ip: '::ffff:17.0.0.9' }), signals, on).reason,
      'apple-privacy-protection',
    );
    assert.equal(
      classifyFetch(fetch({ ip: '2620:149:a:1::5' }), signals, on).reason,
      'apple-privacy-protection',
    );
    assert.equal(classifyFetch(fetch({ secondsSinceSent: 2 }), signals, on).reason, 'soon-after-sending');
    assert.equal(classifyFetch(fetch({ secondsSinceSent: 2 }), signals, off).machine, false);
    assert.equal(classifyFetch(fetch({ linksAround: 5 }), signals, on).reason, 'all-links-at-once');
    assert.equal(classifyFetch(fetch({ linksAround: 5 }), signals, off).machine, false);
    // Google's networks mark an open (its image proxy), not a click from them.
    assert.equal(
      classifyFetch(fetch({ kind: 'open', ip: '66.102.8.1' }), signals, on).reason,
      'gmail-image-proxy',
    );
    assert.equal(classifyFetch(fetch({ ip: '66.102.8.1' }), signals, on).machine, false);
    assert.deepEqual(classifyFetch(fetch({}), signals, on), { machine: false });
  });
});

describe('what follows an open and a click', () => {
  test('the events reach the webhook receiver as email.opened and email.clicked, and the timeline, with machine and reason', async () => {
    const hooks = await eventually('an email.opened and an email.clicked', async () => {
      const types = receiver.received.map((r) => r.body.type);
      return types.includes('email.opened') && types.includes('email.clicked') && receiver.received;
    });
    assert.ok(
      hooks.every((h) => h.verifiedWith.length === 1),
      'signed',
    );
    const apple = hooks.find(
      (h) =>
        h.body.type === 'email.opened' &&
        (h.body.data.open as Record<string, unknown>).ipAddress === '17.58.101.12',
    )!;
    assert.deepEqual(apple.body.data.open, {
      ipAddress: '17.58.101.12',
      timestamp: (apple.body.data.open as Record<string, unknown>).timestamp,
      userAgent: 'Mozilla/5.0',
      machine: true,
      machineReason: 'apple-privacy-protection',
    });
    const person = hooks.find(
      (h) =>
        h.body.type === 'email.clicked' &&
        (h.body.data.click as Record<string, unknown>).ipAddress === '203.0.113.7',
    )!;
    assert.equal((person.body.data.click as Record<string, unknown>).link, 'https://example.org/landing');
    assert.equal((person.body.data.click as Record<string, unknown>).machine, false);

    const emailId = person.body.data.email_id as string;
    const email = await api(`/v1/emails/${emailId}`);
    const clicked = (email.body.events as Record<string, unknown>[]).find((e) => e.type === 'clicked')!;
    assert.equal(clicked.machine, false);
    assert.equal(clicked.link, 'https://example.org/landing');
    // Resend's last_event: what the recipient did, a click before an open.
    assert.equal(email.body.last_event, 'clicked');
    const listed = await api(`/v1/emails?limit=100`);
    const summary = (listed.body.data as { id: string; last_event: string }[]).find((e) => e.id === emailId)!;
    assert.equal(summary.last_event, 'clicked');
  });

  test('statistics count people’s opens and clicks apart from machines’', async () => {
    const counted = await platform.database.db
      .selectFrom('events')
      .select(['type', 'detail'])
      .where('type', 'in', ['opened', 'clicked'])
      .execute();
    const expected = { opened: 0, clicked: 0, machine_opened: 0, machine_clicked: 0 };
    for (const e of counted) {
      const key = `${e.detail.machine ? 'machine_' : ''}${e.type}` as keyof typeof expected;
      expected[key]++;
    }
    assert.ok(
      expected.opened > 0 &&
        expected.clicked > 0 &&
        expected.machine_opened > 0 &&
        expected.machine_clicked > 0,
    );
    const metric = await platform.metrics.registry.getSingleMetric('mailplane_tracking_events_total')!.get();
    const sum = (type: string, machine: string) =>
      metric.values
        .filter((v) => v.labels.type === type && v.labels.machine === machine)
        .reduce((n, v) => n + v.value, 0);
    assert.deepEqual(
      [sum('opened', 'false'), sum('clicked', 'false'), sum('opened', 'true'), sum('clicked', 'true')],
      [expected.opened, expected.clicked, expected.machine_opened, expected.machine_clicked],
    );
    const { body } = await api('/v1/stats');
    const totals = body.totals as Record<string, number>;
    assert.deepEqual(
      {
        opened: totals.opened,
        clicked: totals.clicked,
        machine_opened: totals.machine_opened,
        machine_clicked: totals.machine_clicked,
      },
      expected,
    );
  });
});

describe('per email', () => {
  test('"tracking": {"opens": false, "clicks": false} sends the html as written', async () => {
    const html = '<p>Hi <a href="https://example.org/x?y=1">there</a></p>';
    const { raw } = await sendThrough({ html, tracking: { opens: false, clicks: false } });
    assert.equal(String((await simpleParser(raw)).html).trim(), html);
  });

  test('"tracking": {"clicks": false} keeps the links and still adds the pixel', async () => {
    const { raw } = await sendThrough({
      html: '<p><a href="https://example.org/x">x</a></p>',
      tracking: { clicks: false },
    });
    const body = String((await simpleParser(raw)).html);
    assert.ok(body.includes('href="https://example.org/x"'), body);
    assert.ok(body.includes(`<img src="https://${TRACKING_HOST}/t/o/`), body);
  });

  test('a tracking member that is not a boolean is a 422 naming it', async () => {
    const res = await api('/v1/emails', {
      method: 'POST',
      body: JSON.stringify({
        from: 'hello@example.com',
        to: 'ada@example.org',
        subject: 'x',
        html: '<p>x</p>',
        tracking: { opens: 'yes' },
      }),
    });
    assert.equal(res.status, 422);
    assert.deepEqual(
      (res.body.errors as { field: string }[]).map((e) => e.field),
      ['tracking.opens'],
    );
  });
});

describe('SendGrid’s and Postmark’s clients', () => {
  /** Waits for the message whose subject is `subject` and answers its html. */
  const htmlOf = async (subject: string) => {
    const raw = await eventually(
      'the message at the sink',
      async () => sink.messages().find((m) => m.raw.includes(`Subject: ${subject}`))?.raw,
    );
    return String((await simpleParser(raw)).html);
  };
  const html = '<p>Hi <a href="https://example.org/y">there</a></p>';

  test('Postmark’s TrackOpens false and TrackLinks None turn the domain’s tracking off; a TrackLinks it has not is refused by name', async () => {
    const client = new ServerClient(key, { requestHost: new URL(platform.url).host, useHttps: false });
    const subject = `pm-${Math.random().toString(36).slice(2)}`;
    await client.sendEmail({
      From: 'hello@example.com',
      To: 'ada@example.org',
      Subject: subject,
      HtmlBody: html,
      TrackOpens: false,
      TrackLinks: Models.LinkTrackingOptions.None,
    });
    assert.equal((await htmlOf(subject)).trim(), html);
    await assert.rejects(
      client.sendEmail({
        From: 'hello@example.com',
        To: 'ada@example.org',
        Subject: 'x',
        HtmlBody: html,
        TrackLinks: 'Sometimes' as Models.LinkTrackingOptions,
      }),
      (err: Error & { code?: number }) => err.code === 300 && /TrackLinks/.test(err.message),
    );
  });

  test('SendGrid’s tracking_settings with open and click tracking disabled send the html as written', async () => {
    const client = new Client();
    const warn = console.warn;
    console.warn = () => {};
    try {
      client.setApiKey(key);
    } finally {
      console.warn = warn;
    }
    client.setDefaultRequest('baseUrl', platform.url);
    const mail = new MailService();
    mail.setClient(client);
    const subject = `sg-${Math.random().toString(36).slice(2)}`;
    await mail.send({
      from: 'hello@example.com',
      to: 'ada@example.org',
      subject,
      html,
      trackingSettings: { clickTracking: { enable: false }, openTracking: { enable: false } },
    });
    assert.equal((await htmlOf(subject)).trim(), html);
  });
});

test('the rewriter leaves every byte it does not change as it was, on html that is not well formed', () => {
  const html =
    '<P>x<a HREF = \'https://a.example/?q=1&amp;r=2\' id=x>a</A><a href="https://b.example/"><p>unclosed';
  const out = trackHtml(html, {
    link: (url) => `https://t.example/${encodeURIComponent(url)}`,
    pixel: 'https://t.example/p',
  });
  assert.equal(
    out,
    '<P>x<a href="https://t.example/https%3A%2F%2Fa.example%2F%3Fq%3D1%26r%3D2" id=x>a</A>' +
      '<a href="https://t.example/https%3A%2F%2Fb.example%2F"><p>unclosed' +
      '<img src="https://t.example/p" width="1" height="1" alt="" style="width:1px;height:1px;border:0">',
  );
});
