// Resend's inline images: an attachment with a `content_id` (the SDK's `contentId`) is sent as an
// inline part with that Content-ID, which the html shows as `cid:…`, next to the html in a
// multipart/related; a content_id that could break its header is refused naming the field.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Resend } from 'resend';
import { composeMessage } from '../sender/compose.js';
import { startTestPlatform, type TestPlatform } from './helpers/platform.js';

let platform: TestPlatform;
let key: string;

const FROM = 'Acme <hello@example.com>';
const PNG = Buffer.from('89504e470d0a1a0a', 'hex');

before(async () => {
  platform = await startTestPlatform();
  key = platform.keys.get('default/acme/backend')!;
});
after(async () => platform.close());

test("the SDK's contentId arrives as content_id, is stored, and makes an inline part with that Content-ID", async () => {
  const resend = new Resend(key, { baseUrl: `${platform.url}/v1` });
  const sent = await resend.emails.send({
    from: FROM,
    to: 'ada@example.org',
    subject: 'Logo',
    html: '<img src="cid:logo-image">',
    attachments: [
      { filename: 'logo.png', content: PNG, contentType: 'image/png', contentId: 'logo-image' },
      { filename: 'terms.txt', content: Buffer.from('terms') },
    ],
  });
  assert.equal(sent.error, null, JSON.stringify(sent.error));
  const row = await platform.database.db
    .selectFrom('emails')
    .select(['from_address', 'content'])
    .where('id', '=', sent.data!.id)
    .executeTakeFirstOrThrow();
  const stored = row.content.attachments as { filename: string; content_id?: string }[];
  assert.deepEqual(
    stored.map((a) => [a.filename, a.content_id]),
    [
      ['logo.png', 'logo-image'],
      ['terms.txt', undefined],
    ],
  );

  const raw = await composeMessage({
    from: row.from_address,
    content: row.content,
    rendered: { subject: 'Logo', html: row.content.html },
    messageId: 'inline@example.com',
    date: new Date(0),
  });
  const parts = raw.toString().split(/\r\n--/);
  const logo = parts.find((p) => /name=logo\.png/.test(p)) ?? '';
  assert.match(logo, /^Content-ID: <logo-image>$/m);
  assert.match(logo, /^Content-Disposition: inline; filename=logo\.png$/m);
  const terms = parts.find((p) => /name=terms\.txt/.test(p)) ?? '';
  assert.match(terms, /^Content-Disposition: attachment; filename=terms\.txt$/m);
  assert.doesNotMatch(terms, /^Content-ID:/m);
  assert.match(raw.toString(), /Content-Type: multipart\/related; type="text\/html"/);
});

test('a content_id with a line break, angle brackets or over 255 characters is refused naming it', async () => {
  for (const contentId of ['a\r\nBcc: x@example.org', '<logo>', 'a b', '', 'x'.repeat(256), 'a\u0000']) {
    const res = await fetch(`${platform.url}/v1/emails`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        from: FROM,
        to: 'ada@example.org',
        subject: 's',
        html: '<img src="cid:x">',
        attachments: [{ filename: 'x.png', content: 'aGk=', content_id: contentId }],
      }),
    });
    assert.equal(res.status, 422, JSON.stringify(contentId));
    const body = (await res.json()) as { errors: { field: string }[] };
    assert.deepEqual(
      body.errors.map((e) => e.field),
      ['attachments[0].content_id'],
    );
  }
});
