// GET /v1/stats against real parts: emails sent through the api and the sender, counted by the
// rollups each event updates, read back overall, per domain and per tag.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Sender } from '../sender/worker.js';
import { startInbox, type Inbox } from '../dev/inbox.js';
import { eventually } from './helpers/eventually.js';
import {
  sendingDomain,
  startTestPlatform,
  startTestSender,
  tenant,
  type TestPlatform,
} from './helpers/platform.js';

let platform: TestPlatform;
let inbox: Inbox;
let sender: Sender;
let key: string;

async function call(path: string, init: RequestInit = {}, apiKey = key) {
  const res = await fetch(`${platform.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const send = (to: string, tag: string) =>
  call('/v1/emails', {
    method: 'POST',
    body: JSON.stringify({
      from: 'hello@example.com',
      to,
      subject: 'Hi',
      text: 'hello',
      tags: [{ name: 'campaign', value: tag }],
    }),
  });

before(async () => {
  // The inbox answers 550 to a local part starting with `bounce`.
  inbox = await startInbox();
  platform = await startTestPlatform({ MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${inbox.smtpPort}` });
  key = platform.keys.get('default/acme/backend')!;
  sender = await startTestSender(platform);
});
after(async () => {
  await sender?.stop();
  await platform?.close();
  await inbox?.close();
});

test('stats count what was sent, delivered and bounced, with rates, overall, per domain and per tag', async () => {
  assert.equal((await send('a@example.org', 'spring')).status, 202);
  assert.equal((await send('b@example.org', 'spring')).status, 202);
  assert.equal((await send('bounce-c@example.org', 'autumn')).status, 202);
  const totals = await eventually('three settled emails in the stats', async () => {
    const { body } = await call('/v1/stats');
    const t = body.totals as Record<string, number>;
    return t.delivered === 2 && t.bounced === 1 && t;
  });
  assert.equal(totals.sent, 3);
  assert.equal(totals.delivery_rate, 0.6667);
  assert.equal(totals.bounce_rate, 0.3333);
  assert.equal(totals.complaint_rate, 0);

  const byDomain = await call('/v1/stats?group_by=domain&interval=hour');
  const rows = byDomain.body.data as Record<string, unknown>[];
  assert.deepEqual(
    rows.map((r) => [r.domain, r.sent, r.delivered]),
    [['example.com', 3, 2]],
  );
  assert.match(String(rows[0]!.start), /:00:00\.000Z$/);

  const byTag = await call('/v1/stats?group_by=tag');
  const tags = Object.fromEntries(
    (byTag.body.data as Record<string, unknown>[]).map((r) => [r.tag, [r.delivered, r.bounced]]),
  );
  assert.deepEqual(tags, { 'campaign:autumn': [0, 1], 'campaign:spring': [2, 0] });
});

test('another tenant sees none of it, and a bad query is a 422 naming the parameter', async () => {
  await platform.apply([
    tenant('globex', [{ name: 'app', scopes: ['read'] }]),
    sendingDomain('globex-com', 'globex', 'globex.com'),
  ]);
  const other = await call('/v1/stats', {}, platform.keys.get('default/globex/app')!);
  assert.equal(other.status, 200);
  assert.equal((other.body.totals as Record<string, number>).sent, 0);

  for (const [query, field] of [
    ['interval=week', 'interval'],
    ['group_by=planet', 'group_by'],
    ['from=yesterday', 'from'],
    ['from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z', 'from'],
  ] as const) {
    const res = await call(`/v1/stats?${query}`);
    assert.equal(res.status, 422, query);
    assert.equal((res.body.errors as { field: string }[])[0]!.field, field, query);
  }
});
