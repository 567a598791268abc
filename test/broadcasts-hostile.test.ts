// Broadcasts against input written to hurt: a template that would make personalisation quadratic
// and hold up every tenant's fan-out, characters Postgres cannot store in a broadcast's name or
// preview text, a contact's property that tries to add a header through the subject, a list that
// would load every body it lists, and a path segment echoed back at any length. Then the files
// `mailplane dev` writes for TLS: its key is the owner's alone, also when it is made again.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { simpleParser } from 'mailparser';
import { devSubmissionTls } from '../dev/submission-tls.js';
import { listBroadcasts } from '../lib/db/broadcasts.js';
import { personalize, type ContactValues } from '../sender/broadcast-task.js';
import type { Sender } from '../sender/worker.js';
import { eventually } from './helpers/eventually.js';
import { startTestPlatform, startTestSender, type TestPlatform } from './helpers/platform.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';

const FROM = 'Acme News <news@example.com>';
const values: ContactValues = {
  builtIn: { FIRST_NAME: 'Ada & co', LAST_NAME: null, EMAIL: 'ada@example.org' },
  properties: { plan: 'pro', seats: 3, nested: { value: 'given' }, empty: '', line: 'x\r\nBcc: a@b.c' },
};

/** Placeholders as a single regex read them, the reading personalize keeps: the oracle. */
function byRegex(template: string, html: boolean): string {
  return template.replace(
    /\{\{\{\s*([A-Za-z0-9_]{1,50})\s*(?:\|([^}]*))?\}\}\}/g,
    (whole, key: string, fallback: string | undefined) => {
      const upper = key.toUpperCase();
      if (upper === 'RESEND_UNSUBSCRIBE_URL') return whole;
      const raw =
        upper in values.builtIn
          ? values.builtIn[upper as keyof ContactValues['builtIn']]
          : values.properties[key];
      const value =
        typeof raw === 'object' && raw !== null && 'value' in raw ? (raw as { value: unknown }).value : raw;
      const text = typeof value === 'number' ? String(value) : value;
      if (typeof text !== 'string' || text === '') return fallback?.trim() ?? '';
      return html ? text.replace(/&/g, '&amp;') : text;
    },
  );
}

/** A small deterministic generator (mulberry32), so that a failure is the same on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('personalize on a hostile template', () => {
  test('reads each template as the single regex did, placeholders, near misses and nesting alike', () => {
    const pieces = [
      '{',
      '}',
      '{{{',
      '}}}',
      '|',
      ' ',
      '\t',
      'a',
      'plan',
      'EMAIL',
      'first_name',
      'x',
      'k'.repeat(50),
    ];
    const next = random(8);
    for (let i = 0; i < 20_000; i++) {
      let template = '';
      const length = 1 + Math.floor(next() * 12);
      for (let j = 0; j < length; j++) template += pieces[Math.floor(next() * pieces.length)];
      assert.equal(personalize(template, values, false), byRegex(template, false), JSON.stringify(template));
    }
    for (const template of [
      '{{{ plan | a {b} }}}',
      '{{{plan|}}}{{{empty|  none }}}{{{{seats}}}}',
      `{{{${'k'.repeat(51)}|x}}}`,
      '{{{RESEND_UNSUBSCRIBE_URL}}} {{{FIRST_NAME}}}',
      '{{{nested}}}{{{missing|a|b}}}',
    ]) {
      assert.equal(personalize(template, values, true), byRegex(template, true), template);
    }
  });

  test('a megabyte of unclosed placeholders is read in linear time', () => {
    // A single regex takes about 8 s for 100 KB of `{{{a|` and a hundred times that for 1 MB: the
    // bound below is far above linear time on a loaded machine and far below quadratic.
    for (const unit of ['{{{a|', '{{{ a |', '{{{a', '{{{', '{{{a|}']) {
      const template = unit.repeat(Math.ceil(1_000_000 / unit.length));
      const started = performance.now();
      const out = personalize(template, values, true);
      const took = performance.now() - started;
      assert.equal(out, template, `${unit}: nothing in it is a placeholder`);
      assert.ok(took < 5000, `${unit} × ${template.length / unit.length} took ${Math.round(took)} ms`);
    }
    const many = '{{{FIRST_NAME|x}}}'.repeat(60_000);
    assert.equal(personalize(many, values, true), 'Ada &amp; co'.repeat(60_000));
  });

  test('a value in the subject is one line: control characters become spaces, only there', () => {
    assert.equal(personalize('Hi {{{line}}}', values, false, { oneLine: true }), 'Hi x Bcc: a@b.c');
    assert.equal(
      personalize('{{{s}}}', { ...values, properties: { s: 'a\u0000b\u007f\u0085c\u2028d\te' } }, false, {
        oneLine: true,
      }),
      'a b c d e',
    );
    assert.equal(personalize('Hi {{{line}}}', values, false), 'Hi x\r\nBcc: a@b.c');
    assert.equal(personalize('Hi {{{line}}}', values, true), 'Hi x\r\nBcc: a@b.c');
  });
});

describe('the broadcasts api on hostile input', () => {
  let platform: TestPlatform;
  let sink: SmtpSink;
  let sender: Sender;
  let acmeId: string;
  const db = () => platform.database.db;
  const key = () => platform.keys.get('default/acme/backend')!;
  const call = (method: string, path: string, body?: unknown) =>
    fetch(`${platform.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key()}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  before(async () => {
    sink = await startSmtpSink();
    platform = await startTestPlatform({
      MAILPLANE_RELAY_URL: `smtp://127.0.0.1:${sink.port}`,
      MAILPLANE_PUBLIC_URL: 'https://mail.mailplane.test',
    });
    acmeId = (
      await db().selectFrom('tenants').select('id').where('name', '=', 'acme').executeTakeFirstOrThrow()
    ).id;
    sender = await startTestSender(platform);
  });

  after(async () => {
    await sender?.stop();
    await platform?.close();
    await sink?.close();
  });

  async function segmentWith(email: string, properties: Record<string, unknown>): Promise<string> {
    const segment = await db()
      .insertInto('segments')
      .values({ tenant_id: acmeId, name: `segment-${Math.random().toString(36).slice(2)}` })
      .returning('id')
      .executeTakeFirstOrThrow();
    const contact = await db()
      .insertInto('contacts')
      .values({
        tenant_id: acmeId,
        email,
        first_name: null,
        last_name: null,
        unsubscribed: false,
        properties: JSON.stringify(properties),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await db()
      .insertInto('segment_contacts')
      .values({ segment_id: segment.id, contact_id: contact.id })
      .execute();
    return segment.id;
  }

  test('a NUL, a lone surrogate or a line break in the name or preview text is a 422 naming the field', async () => {
    const segment_id = await segmentWith('nul@example.org', {});
    const base = { segment_id, from: FROM, subject: 'S', text: 't' };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ name: 'a\u0000b' }, /^name: must not contain a NUL character/],
      [{ name: 'a\ud800b' }, /^name: must not contain a lone UTF-16 surrogate/],
      [{ name: 'a\r\nb' }, /^name: must not contain line breaks/],
      [{ preview_text: 'a\u0000b' }, /^preview_text: must not contain a NUL character/],
      [{ preview_text: '\udc00' }, /^preview_text: must not contain a lone UTF-16 surrogate/],
      [{ preview_text: 'a\u0007b' }, /^preview_text: must not contain control characters/],
    ];
    for (const [extra, message] of cases) {
      const res = await call('POST', '/v1/broadcasts', { ...base, ...extra });
      const problem = (await res.json()) as { message: string };
      assert.equal(res.status, 422, `${JSON.stringify(extra)}: ${problem.message}`);
      assert.match(problem.message, message);
    }
    const created = await call('POST', '/v1/broadcasts', {
      ...base,
      name: 'Tabs\tare fine',
      preview_text: 'ok',
    });
    assert.equal(created.status, 201);
    const { id } = (await created.json()) as { id: string };
    const patched = await call('PATCH', `/v1/broadcasts/${id}`, { name: 'x\u0000' });
    assert.equal(patched.status, 422);
    assert.match(((await patched.json()) as { message: string }).message, /^name: must not contain a NUL/);
  });

  test('a contact’s property with CR LF in a personalised subject adds no header: the subject is one line', async () => {
    const segment_id = await segmentWith('crlf@example.org', { s: 'x\r\nBcc: evil@example.org' });
    const res = await call('POST', '/v1/broadcasts', {
      segment_id,
      from: FROM,
      subject: 'Hi {{{s}}}',
      text: 'Body {{{s}}} {{{RESEND_UNSUBSCRIBE_URL}}}',
      send: true,
    });
    assert.equal(res.status, 201, await res.clone().text());
    const message = await eventually('the message reached the sink', async () =>
      sink.messages().find((m) => m.envelope.to.includes('crlf@example.org')),
    );
    assert.ok(!sink.messages().some((m) => m.envelope.to.includes('evil@example.org')));
    const parsed = await simpleParser(message.raw);
    assert.equal(parsed.subject, 'Hi x Bcc: evil@example.org');
    assert.equal(parsed.headers.get('bcc'), undefined);
    assert.match(parsed.text ?? '', /Body x\r?\nBcc: evil@example.org/, 'the body keeps the value as it is');
    const stored = await db()
      .selectFrom('emails')
      .select('subject')
      .where('tenant_id', '=', acmeId)
      .where('subject', 'like', 'Hi x%')
      .execute();
    assert.deepEqual(
      stored.map((e) => e.subject),
      ['Hi x Bcc: evil@example.org'],
    );
  });

  test('the list reads no bodies: only the columns a summary shows', async () => {
    const segment_id = await segmentWith('list@example.org', {});
    const big = 'x'.repeat(100_000);
    const res = await call('POST', '/v1/broadcasts', {
      segment_id,
      from: FROM,
      subject: 'S',
      html: big,
      text: big,
    });
    assert.equal(res.status, 201);
    const page = await listBroadcasts(db(), acmeId, { limit: 100 });
    assert.ok(page && page.rows.length > 0);
    for (const row of page.rows) {
      assert.deepEqual(Object.keys(row).sort(), [
        'created_at',
        'id',
        'name',
        'scheduled_at',
        'segment_id',
        'sent_at',
        'status',
      ]);
    }
    const listed = await call('GET', '/v1/broadcasts?limit=1');
    assert.equal(listed.status, 200);
    const body = (await listed.json()) as { data: { id: string; html?: unknown }[] };
    assert.equal(body.data[0]!.id, ((await res.json()) as { id: string }).id);
    assert.equal(body.data[0]!.html, undefined);
    const after = await call('GET', `/v1/broadcasts?limit=1&after=${body.data[0]!.id}`);
    assert.equal(after.status, 200);
    assert.equal((await call('GET', `/v1/broadcasts?after=${crypto.randomUUID()}`)).status, 422);
  });

  test('a segment path of 10 KB is not echoed back whole', async () => {
    const segment = 's'.repeat(10_000);
    const res = await call('POST', `/v1/contacts/list@example.org/segments/${segment}`);
    const problem = (await res.json()) as { message: string };
    assert.equal(res.status, 404);
    assert.ok(problem.message.length < 200, `${problem.message.length} characters`);
    assert.match(problem.message, /^No segment s{64} in this tenant\.$/);
  });
});

describe('the TLS key `mailplane dev` makes', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailplane-tls-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('is readable by its owner only, when made and when made again over a key others could read', async () => {
    const made = await devSubmissionTls(dir);
    assert.ok('files' in made, JSON.stringify(made));
    assert.equal(statSync(made.files.keyFile).mode & 0o777, 0o600);

    // A certificate that cannot be read is made again, over the files that are there.
    writeFileSync(made.files.certFile, 'not a certificate');
    chmodSync(made.files.keyFile, 0o644);
    const again = await devSubmissionTls(dir);
    assert.ok('files' in again, JSON.stringify(again));
    assert.equal(statSync(again.files.keyFile).mode & 0o777, 0o600);
    assert.match(new X509Certificate(readFileSync(again.files.certFile)).subject, /CN=localhost/);
  });
});
