// The send endpoints against bodies a hostile or careless tenant might post: wrong types in every
// field, NUL bytes and lone surrogates, absurd sizes, depths and numbers, reserved headers, bad
// dates. Whatever the body, the answer is never a 5xx, a refusal is problem+json naming the field
// at fault, and a refused request queues nothing.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { composeMessage } from '../sender/compose.js';
import { startTestPlatform, type TestPlatform } from './helpers/platform.js';

let platform: TestPlatform;
let key: string;

const FROM = 'Acme <hello@example.com>';
const VALID = { from: FROM, to: 'a@example.org', subject: 's', text: 't' };
const DAY = 24 * 60 * 60 * 1000;

interface Answer {
  status: number;
  type: string;
  body: { errors?: { field: string; message: string }[]; [key: string]: unknown } | undefined;
  ms: number;
}

/** Posts `body` as JSON, or as it is when it is already a string (for JSON that JSON.stringify cannot write). */
async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const started = performance.now();
  const res = await fetch(platform.url + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    body: text ? (JSON.parse(text) as Answer['body']) : undefined,
    ms: performance.now() - started,
  };
}

async function emailRows(): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from emails`.execute(
    platform.database.db,
  );
  return rows[0]!.n;
}

/** Never a 5xx; a 4xx is problem+json; a 422 names at least one field, each with a message. */
function assertWellFormedRefusal(res: Answer, label: string): void {
  assert.ok(res.status < 500, `${label}: ${res.status} ${JSON.stringify(res.body)}`);
  assert.ok(res.status >= 400, `${label}: accepted with ${res.status}`);
  assert.match(res.type, /^application\/problem\+json/, label);
  if (res.status === 422) {
    const errors = res.body?.errors ?? [];
    assert.ok(errors.length > 0, `${label}: a 422 without a field: ${JSON.stringify(res.body)}`);
    for (const e of errors) {
      assert.ok(typeof e.field === 'string' && e.field.length > 0, `${label}: ${JSON.stringify(e)}`);
      assert.ok(typeof e.message === 'string' && e.message.length > 0, `${label}: ${JSON.stringify(e)}`);
    }
  }
}

/** The fields a refusal names, for the assertion messages. */
const fieldsOf = (res: Answer) => (res.body?.errors ?? []).map((e) => e.field);

/**
 * Posts `email` alone and, after a valid one, in a strict batch; both must be refused naming
 * `field` (exactly, or a field under it when `under`), with no email stored. Returns the answer to
 * the single post.
 */
async function assertRefused(label: string, email: unknown, field: string, under = false): Promise<Answer> {
  const names = (res: Answer, prefix: string) =>
    fieldsOf(res).some((f) => (under ? f.startsWith(prefix + field) : f === prefix + field));
  const before = await emailRows();
  const single = await post('/v1/emails', email);
  assertWellFormedRefusal(single, label);
  assert.equal(single.status, 422, `${label}: ${JSON.stringify(single.body)}`);
  assert.ok(names(single, ''), `${label}: names ${JSON.stringify(fieldsOf(single))}, not ${field}`);
  const batch = await post('/v1/emails/batch', `[${JSON.stringify(VALID)},${raw(email)}]`);
  assertWellFormedRefusal(batch, `${label} (batch)`);
  assert.equal(batch.status, 422, `${label} (batch): ${JSON.stringify(batch.body)}`);
  assert.ok(names(batch, '[1].'), `${label} (batch): names ${JSON.stringify(fieldsOf(batch))}`);
  assert.equal(await emailRows(), before, `${label}: a refused request stored an email`);
  return single;
}

const raw = (body: unknown) => (typeof body === 'string' ? body : JSON.stringify(body));
/** A valid email as JSON text with `member` (JSON text too) added, for values JSON.stringify cannot write. */
const rawWith = (member: string, base: object = VALID) => `${JSON.stringify(base).slice(0, -1)},${member}}`;
const nested = (depth: number, leaf = '1') => '['.repeat(depth) + leaf + ']'.repeat(depth);
const template = (variables: unknown) => ({
  from: FROM,
  to: 'a@example.org',
  template: { id: 'welcome', variables },
});

before(async () => {
  platform = await startTestPlatform();
  key = platform.keys.get('default/acme/backend')!;
});
after(async () => platform.close());

describe('wrong types', () => {
  const strings = [42, -1.5, true, false, {}, [], [[]], { a: { b: [1] } }];
  const addressLists = [42, true, {}, [[]], [42], [{}], [null], [true], { to: 'a@example.org' }];
  const objects = [42, true, 'str', [], [[]], [{ 'X-A': 'b' }]];
  const lists = [42, true, 'str', {}, { 0: { name: 'a', value: 'b' } }, [42], [[]], ['str'], [true], [[[]]]];
  const cases: [string, unknown[]][] = [
    ['from', [...strings, null, '', '   ']],
    ['to', [...addressLists, [], null, '']],
    ['cc', addressLists],
    ['bcc', addressLists],
    ['reply_to', addressLists],
    ['subject', strings],
    ['html', strings],
    ['text', strings],
    ['headers', objects],
    ['attachments', lists],
    ['tags', lists],
    ['scheduled_at', [...strings, 0, 1893488400000, '']],
    ['template', [42, true, 'str', [], {}, { id: 42 }, { id: [] }, { id: '' }, { id: { id: 'welcome' } }]],
    ['template.variables', objects],
  ];
  for (const [field, values] of cases) {
    test(`${field} of the wrong type (number, boolean, object, list, nested lists) is refused naming it, and nothing is stored`, async () => {
      for (const value of values) {
        const email =
          field === 'template.variables'
            ? template(value)
            : { ...VALID, ...(field === 'template' ? { subject: undefined } : {}), [field]: value };
        await assertRefused(`${field}: ${JSON.stringify(value)}`, email, field, true);
      }
    });
  }

  test('a body that is not an object is refused, and nothing is stored', async () => {
    const before = await emailRows();
    for (const body of ['"hello"', '42', 'null', 'true', '[]', '[{}]', '1e400', '"\\u0000"']) {
      const res = await post('/v1/emails', body);
      assertWellFormedRefusal(res, body);
    }
    for (const body of ['[42]', '[null]', '["x"]', '[[]]', `[${JSON.stringify(VALID)},[[[1]]]]`]) {
      const res = await post('/v1/emails/batch', body);
      assertWellFormedRefusal(res, body);
      assert.equal(res.status, 422, body);
      assert.ok(
        fieldsOf(res).some((f) => /^\[\d+\]$/.test(f)),
        `${body}: ${JSON.stringify(res.body)}`,
      );
    }
    assert.equal(await emailRows(), before);
  });

  test('a batch body that is not a list of 1 to 100 emails is refused naming the body', async () => {
    for (const body of ['{}', '"x"', '[]', JSON.stringify(Array.from({ length: 101 }, () => VALID))]) {
      const res = await post('/v1/emails/batch', body);
      assertWellFormedRefusal(res, body);
    }
  });
});

describe('what Postgres cannot store', () => {
  // Postgres' text and jsonb refuse U+0000, and jsonb the escape of an unpaired surrogate.
  for (const [what, bad] of [
    ['a NUL byte', 'a\u0000b'],
    ['a lone high surrogate', 'a\ud800b'],
    ['a lone low surrogate', '\udc00'],
  ] as const) {
    test(`${what} anywhere in an email is refused with the field named, not a 500`, async () => {
      const cases: [unknown, string, boolean?][] = [
        [{ ...VALID, subject: bad }, 'subject'],
        [{ ...VALID, html: bad }, 'html'],
        [{ ...VALID, text: bad }, 'text'],
        [{ ...VALID, headers: { 'X-Campaign': bad } }, 'headers.X-Campaign'],
        [{ ...VALID, headers: { [`X-${bad}`]: 'v' } }, `headers.X-${bad}`],
        [{ ...VALID, tags: [{ name: 'category', value: bad }] }, 'tags[0].value'],
        [{ ...VALID, tags: [{ name: bad, value: 'v' }] }, 'tags[0].name'],
        [{ ...VALID, attachments: [{ filename: `${bad}.txt`, content: 'aGk=' }] }, 'attachments[0].filename'],
        [{ ...VALID, attachments: [{ filename: 'a.txt', content: `aGk=${bad}` }] }, 'attachments[0].content'],
        [
          { ...VALID, attachments: [{ filename: 'a.txt', content: 'aGk=', content_type: bad }] },
          'attachments[0].content_type',
        ],
        [{ ...VALID, from: `Acme ${bad} <hello@example.com>` }, 'from'],
        [{ ...VALID, to: `Ada ${bad} <a@example.org>` }, 'to'],
        [{ ...VALID, to: ['b@example.org', `Ada ${bad} <a@example.org>`] }, 'to[1]'],
        [{ ...VALID, cc: `${bad} <c@example.org>` }, 'cc'],
        [{ ...VALID, bcc: [`"${bad}" <c@example.org>`] }, 'bcc[0]'],
        [{ ...VALID, reply_to: `Support ${bad} <support@example.com>` }, 'reply_to'],
        [{ ...VALID, scheduled_at: `2030-01-01T09:00:00Z${bad}` }, 'scheduled_at'],
        [{ from: FROM, to: 'a@example.org', template: { id: `welcome${bad}` } }, 'template.id'],
        [template({ name: bad }), 'template.variables.name'],
        [template({ user: { names: ['ok', bad] } }), 'template.variables.user.names[1]'],
        [template({ [bad]: 'x' }), `template.variables[${JSON.stringify(bad)}]`],
        [
          template({ a: [{ b: { [`k${bad}`]: 1 } }] }),
          `template.variables.a[0].b[${JSON.stringify(`k${bad}`)}]`,
        ],
        [
          template({ deep: JSON.parse(nested(20, JSON.stringify(bad))) as unknown }),
          'template.variables.deep',
          true,
        ],
      ];
      for (const [email, field, under] of cases) {
        const res = await assertRefused(`${what} in ${field}`, email, field, under);
        // Only the field at fault: a refused value is not reported again as a missing one.
        assert.equal(fieldsOf(res).length, 1, `${what} in ${field}: ${JSON.stringify(res.body?.errors)}`);
      }
    });
  }

  test('a batch in permissive mode sends its valid emails and reports the unstorable one by index', async () => {
    const before = await emailRows();
    const res = await post(
      '/v1/emails/batch',
      [VALID, { ...VALID, subject: 'a\u0000' }, template({ name: '\ud800' }), VALID],
      { 'x-batch-validation': 'permissive' },
    );
    assert.equal(res.status, 202, JSON.stringify(res.body));
    assert.equal((res.body!.data as unknown[]).length, 2);
    assert.deepEqual(
      (res.body!.errors as unknown as { index: number }[]).map((e) => e.index),
      [1, 2],
    );
    assert.equal((await emailRows()) - before, 2);
  });
});

describe('absurd sizes, depths and numbers', () => {
  test('template.variables nested 100,000 deep, or past 32 levels, is refused naming template.variables', async () => {
    for (const depth of [100_000, 5_000, 33]) {
      await assertRefused(
        `variables ${depth} deep`,
        rawWith(`"template":{"id":"welcome","variables":{"x":${nested(depth)}}}`, {
          from: FROM,
          to: 'a@example.org',
        }),
        'template.variables',
      );
    }
    // 31 arrays under the variables object and its member: 32 levels, the most allowed.
    const before = await emailRows();
    const ok = await post('/v1/emails', template({ x: JSON.parse(nested(31)) as unknown }));
    assert.equal(ok.status, 202, JSON.stringify(ok.body));
    assert.equal((await emailRows()) - before, 1);
  });

  test('deeply nested arrays in the other fields are refused as the wrong type', async () => {
    for (const field of [
      'from',
      'to',
      'cc',
      'subject',
      'html',
      'headers',
      'tags',
      'attachments',
      'scheduled_at',
    ]) {
      await assertRefused(
        `${field} nested 100,000 deep`,
        rawWith(`"${field}":${nested(100_000)}`),
        field,
        true,
      );
    }
    await assertRefused(
      'a header nested deep',
      rawWith(`"headers":{"X-A":${nested(100_000)}}`),
      'headers.X-A',
    );
    await assertRefused('a tag nested deep', rawWith(`"tags":[{"name":${nested(100_000)}}]`), 'tags[0].name');
  });

  test('template.variables over 256 KiB, as one string or as many small values, is refused', async () => {
    await assertRefused('one big string', template({ x: 'x'.repeat(300 * 1024) }), 'template.variables');
    const manyKeys = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${i}`, i]));
    await assertRefused('100,000 names', template(manyKeys), 'template.variables');
    await assertRefused(
      'a million zeros',
      template({ x: new Array(1_000_000).fill(0) }),
      'template.variables',
    );
  });

  test('numbers JSON cannot carry exactly are refused in variables, not stored as null or rounded', async () => {
    const base = { from: FROM, to: 'a@example.org' };
    for (const [literal, field] of [
      ['1e400', 'template.variables.x'],
      ['-1e400', 'template.variables.x'],
      ['123456789012345678901234567890', 'template.variables.x'],
      ['9007199254740993', 'template.variables.x'],
      ['{"y":[1,1e999]}', 'template.variables.x.y[1]'],
    ]) {
      await assertRefused(
        literal!,
        rawWith(`"template":{"id":"welcome","variables":{"x":${literal}}}`, base),
        field!,
      );
    }
    // Every other number is kept as it was sent.
    const numbers = { max: 9007199254740991, min: -9007199254740991, fraction: 0.1, tiny: 5e-324, zero: 0 };
    const res = await post('/v1/emails', template(numbers));
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const row = await platform.database.db
      .selectFrom('emails')
      .select('content')
      .where('id', '=', res.body!.id as string)
      .executeTakeFirstOrThrow();
    assert.deepEqual(row.content.template?.variables, numbers);
    // A number in a field that takes a string is the wrong type, however large.
    await assertRefused(
      'subject 1e400',
      rawWith('"subject":1e400', { ...VALID, subject: undefined }),
      'subject',
    );
    await assertRefused('a header 1e400', rawWith('"headers":{"X-A":1e400}'), 'headers.X-A');
  });

  test('lists of 100,000 entries are refused with one error each, quickly, not parsed one by one', async () => {
    const many = <T>(make: (i: number) => T) => Array.from({ length: 100_000 }, (_, i) => make(i));
    const cases: [string, unknown][] = [
      ['to', many((i) => `r${i}@example.org`)],
      ['cc', many(() => 42)],
      ['bcc', many(() => 'a@example.org')],
      ['reply_to', many(() => ({}))],
      ['tags', many((i) => ({ name: `n${i}`, value: 'v' }))],
      ['attachments', many((i) => ({ filename: `${i}.txt`, content: 'aGk=' }))],
      ['headers', Object.fromEntries(many((i) => [`X-H${i}`, 'v']))],
    ];
    for (const [field, value] of cases) {
      const res = await post('/v1/emails', { ...VALID, [field]: value });
      assertWellFormedRefusal(res, field);
      assert.deepEqual(fieldsOf(res), [field], JSON.stringify(res.body).slice(0, 500));
      await assertRefused(`${field} × 100,000`, { ...VALID, [field]: value }, field);
    }
  });

  test('however many fields are at fault, the answer lists at most 100 of them', async () => {
    const tags = Array.from({ length: 50 }, () => ({ name: '!', value: '!' }));
    const headers = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`X-${i}`, 42]));
    const res = await post('/v1/emails', { ...VALID, tags, headers });
    assert.equal(res.status, 422);
    assert.equal(res.body!.errors!.length, 100);
    assert.match(res.body!.detail as string, /^headers\.X-0: must be a string \(and 149 more faults\)$/);
  });

  test('huge strings are refused naming their field, and a whitespace-stuffed address does not stall the api', async () => {
    await assertRefused('a 1 MB subject', { ...VALID, subject: 'x'.repeat(1 << 20) }, 'subject');
    await assertRefused(
      'a 1 MB header',
      { ...VALID, headers: { 'X-A': 'x'.repeat(1 << 20) } },
      'headers.X-A',
    );
    await assertRefused(
      'a 1 MB header name',
      { ...VALID, headers: { ['X'.repeat(1 << 20)]: 'v' } },
      `headers.${'X'.repeat(80)}…`,
    );
    await assertRefused('a 1 MB from', { ...VALID, from: `${'a'.repeat(1 << 20)}@example.com` }, 'from');
    await assertRefused('a 1 MB to', { ...VALID, to: `${'a'.repeat(1 << 20)}@example.org` }, 'to');
    await assertRefused(
      'a 1 MB filename',
      { ...VALID, attachments: [{ filename: 'a'.repeat(1 << 20), content: 'aGk=' }] },
      'attachments[0].filename',
    );
    await assertRefused(
      'a 1 MB template id',
      { from: FROM, to: 'a@example.org', template: { id: 'w'.repeat(1 << 20) } },
      'template.id',
    );
    await assertRefused('a 1 MB variable name', template({ ['k'.repeat(1 << 20)]: 1 }), 'template.variables');
    // The address parser's pattern takes time in the length times the longest run of spaces: one
    // run of 90,000 cost it seconds, and so did 50 entries of 1,000 runs of 40.
    const stuffed = [
      `Ada${' '.repeat(90_000)}x <a@example.org>`,
      ...Array.from({ length: 50 }, () => `${'a'.padEnd(41)}`.repeat(1000)),
    ];
    for (const [field, value] of [
      ['from', stuffed[0]],
      ['to', stuffed[0]],
      ['reply_to', stuffed.slice(0, 1)],
      ['cc', stuffed.slice(1)],
      ['bcc', stuffed.slice(1, 2)],
      ['to', `${'Ada'.padEnd(20)}<a@example.org>`],
    ] as const) {
      const res = await post('/v1/emails', { ...VALID, [field]: value });
      assert.equal(res.status, 422);
      assert.ok(
        fieldsOf(res).every((f) => f.startsWith(field)),
        JSON.stringify(fieldsOf(res)),
      );
      assert.ok(res.ms < 1500, `${field}: answered in ${Math.round(res.ms)} ms`);
    }
  });
});

describe('paths', () => {
  test('a path that is not valid percent-encoding is a 400, on the public routes and under /v1 alike', async () => {
    for (const path of ['/v1/emails/%ZZ', '/v1/templates/%E0%A4%A', '/u/%ZZ', '/t/c/%ZZ', '/t/o/%ZZ']) {
      const res = await fetch(platform.url + path, { headers: { authorization: `Bearer ${key}` } });
      assert.equal(res.status, 400, path);
      assert.equal(((await res.json()) as { type: string }).type.endsWith('bad-request'), true, path);
    }
  });
});

describe('addresses', () => {
  // International addresses (bücher.de, ада@пример.рф) are accepted: test/international.test.ts.
  test('absurd addresses are refused naming the field: 2,000-character local parts, no domain', async () => {
    for (const address of [
      `${'a'.repeat(2000)}@example.org`,
      `${'a'.repeat(65)}@example.org`,
      `a@${'b'.repeat(250)}.org`,
      'a@xn--.de',
      'a@example',
      'a@',
      '@example.org',
      'a@@example.org',
      'a..b@example.org',
      '<>',
      '"unterminated <a@example.org>',
      'Ada <a@example.org',
      ',,,,',
    ]) {
      await assertRefused(`to ${address.slice(0, 40)}`, { ...VALID, to: address }, 'to');
      await assertRefused(`from ${address.slice(0, 40)}`, { ...VALID, from: address }, 'from');
    }
  });

  test('unicode display names and subjects are accepted and stored as sent', async () => {
    const subject = 'Zoë 😀 — שלום \u200d\ufeff\u2028 №42 𝒜';
    const res = await post('/v1/emails', {
      ...VALID,
      from: 'Zoë 😀 <hello@example.com>',
      to: ['"Dœ, J 🚀" <a@example.org>', 'שלום <b@example.org>'],
      subject,
      html: '<p>\ud83d\ude00 \u0301 \uffff</p>',
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const got = await fetch(`${platform.url}/v1/emails/${res.body!.id as string}`, {
      headers: { authorization: `Bearer ${key}` },
    });
    const email = (await got.json()) as { subject: string; to: string[]; html: string };
    assert.equal(email.subject, subject);
    assert.deepEqual(email.to, ['"Dœ, J 🚀" <a@example.org>', '"שלום" <b@example.org>']);
    assert.equal(email.html, '<p>\ud83d\ude00 \u0301 \uffff</p>');
  });
});

describe('headers', () => {
  test('trace, authentication and composed headers cannot be set by a caller, in any case', async () => {
    for (const name of [
      'Authentication-Results',
      'ARC-Seal',
      'ARC-Message-Signature',
      'ARC-Authentication-Results',
      'arc-anything-later',
      'Received',
      'RECEIVED',
      'Received-SPF',
      'DKIM-Signature',
      'dkim-signature',
      'DomainKey-Signature',
      'Return-Path',
      'Delivered-To',
      'From',
      'To',
      'Cc',
      'Bcc',
      'Sender',
      'Reply-To',
      'Subject',
      'Date',
      'Message-ID',
      'MIME-Version',
      'Content-Type',
      'Content-Transfer-Encoding',
      'Content-Disposition',
    ]) {
      await assertRefused(name, { ...VALID, headers: { [name]: 'spf=pass' } }, `headers.${name}`);
    }
  });

  test('header names outside printable ASCII, or with a colon or space, are refused', async () => {
    for (const name of ['X-Ünicode', 'X-😀', 'X A', 'X:A', '', 'X\tA', 'X\u0085', 'X'.repeat(77)]) {
      await assertRefused(
        `name ${JSON.stringify(name)}`,
        { ...VALID, headers: { [name]: 'v' } },
        `headers.${name}`,
      );
    }
  });

  test('control characters in a header value or the subject are refused; a tab is not', async () => {
    for (const bad of ['\u0001', '\u001b[31m', '\u007f', '\r', '\n', '\u000b']) {
      await assertRefused(
        `value ${JSON.stringify(bad)}`,
        { ...VALID, headers: { 'X-A': `a${bad}b` } },
        'headers.X-A',
      );
      await assertRefused(`subject ${JSON.stringify(bad)}`, { ...VALID, subject: `a${bad}b` }, 'subject');
    }
    const res = await post('/v1/emails', { ...VALID, subject: 'a\tb', headers: { 'X-A': 'a\tb' } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
  });

  test('__proto__ and constructor are ordinary names in headers, variables and tags', async () => {
    // JSON.parse makes "__proto__" an own member; it must be stored as one, not set a prototype.
    const body = rawWith(
      '"headers":{"__proto__":"x","constructor":"y"},' +
        '"tags":[{"name":"__proto__","value":"constructor"}],' +
        '"template":{"id":"welcome","variables":{"__proto__":{"polluted":true},"constructor":{"prototype":1}}}',
      { from: FROM, to: 'a@example.org' },
    );
    const res = await post('/v1/emails', body);
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const row = await platform.database.db
      .selectFrom('emails')
      .select('content')
      .where('id', '=', res.body!.id as string)
      .executeTakeFirstOrThrow();
    assert.deepEqual(Object.entries(row.content.headers), [
      ['__proto__', 'x'],
      ['constructor', 'y'],
    ]);
    assert.deepEqual(row.content.tags, [{ name: '__proto__', value: 'constructor' }]);
    assert.deepEqual(Object.keys(row.content.template!.variables), ['__proto__', 'constructor']);
    assert.equal(({} as { polluted?: boolean }).polluted, undefined);
    await assertRefused(
      '__proto__ object header',
      rawWith('"headers":{"__proto__":{"a":1}}'),
      'headers.__proto__',
    );
  });

  test('a job queued before the api refused trace headers is composed without them', async () => {
    const message = await composeMessage({
      from: FROM,
      content: {
        to: ['a@example.org'],
        cc: [],
        bcc: [],
        reply_to: [],
        subject: 's',
        text: 't',
        headers: {
          'Authentication-Results': 'mx.example.org; dkim=pass',
          'ARC-Seal': 'i=1; a=rsa-sha256; cv=none',
          'arc-message-signature': 'i=1',
          Received: 'from trusted.example.org',
          'Received-SPF': 'pass',
          'DKIM-Signature': 'v=1; d=bank.example',
          'Return-Path': '<ceo@bank.example>',
          Bcc: 'hidden@example.org',
          'X-Campaign': 'spring',
        },
        attachments: [],
        tags: [],
      },
      rendered: { subject: 's', text: 't' },
      messageId: 'id@example.com',
      date: new Date(0),
    });
    const header = message.toString().split('\r\n\r\n')[0]!;
    assert.doesNotMatch(
      header,
      /^(authentication-results|arc-[\w-]+|received(-spf)?|dkim-signature|return-path|bcc):/im,
    );
    assert.match(header, /^X-Campaign: spring$/m);
  });
});

describe('attachments', () => {
  test('content that is not base64 is refused naming attachments[i].content', async () => {
    for (const content of [
      'not base64!',
      'aGk',
      'aGk==',
      '====',
      'a=b=',
      '=aGk',
      'aGk=aGk=',
      '    ',
      'aGk=\u00a0',
      'aGk-',
      'aGk_',
    ]) {
      await assertRefused(
        `content ${JSON.stringify(content)}`,
        {
          ...VALID,
          attachments: [{ filename: 'a.txt', content }],
        },
        'attachments[0].content',
      );
    }
  });

  test('base64 wrapped at 76 columns, as MIME writes it, is accepted', async () => {
    const wrapped = Buffer.alloc(300, 7).toString('base64').replace(/.{76}/g, '$&\r\n');
    const res = await post('/v1/emails', {
      ...VALID,
      attachments: [{ filename: 'a.bin', content: wrapped }],
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
  });

  test('a filename with a path, a control character or over 255 characters is refused', async () => {
    for (const filename of ['../etc/passwd', 'a\\b', 'a\u0007.txt', 'a\u007f', 'x'.repeat(256), '']) {
      await assertRefused(
        `filename ${JSON.stringify(filename.slice(0, 20))}`,
        {
          ...VALID,
          attachments: [{ filename, content: 'aGk=' }],
        },
        'attachments[0].filename',
      );
    }
  });
});

describe('scheduled_at', () => {
  test('anything but an RFC 3339 date-time with a time zone is refused', async () => {
    for (const when of [
      '1',
      '2030',
      '2030-01-01',
      '2030-01-01T09:00',
      '2030-01-01T09:00:00',
      '2030-01-01 09:00:00Z',
      '20300101T090000Z',
      '2030-1-1T09:00:00Z',
      '2030-01-01T09:00:00+0200',
      '2030-01-01T09:00:00.Z',
      'in 1 min',
      'tomorrow',
      'Tue, 01 Jan 2030 09:00:00 GMT',
      '-271821-04-20T00:00:00Z',
      '+275760-09-13T00:00:00Z',
      '+002030-01-01T09:00:00Z',
    ]) {
      await assertRefused(when, { ...VALID, scheduled_at: when }, 'scheduled_at');
    }
  });

  test('a date that does not exist is refused, not moved to another day; leap years are right', async () => {
    for (const [when, message] of [
      ['2030-02-30T09:00:00Z', /day 30, but 2030-02 has 28 days/],
      ['2027-02-29T09:00:00Z', /day 29, but 2027-02 has 28 days/],
      ['2100-02-29T09:00:00Z', /day 29, but 2100-02 has 28 days/],
      ['2030-04-31T09:00:00Z', /day 31, but 2030-04 has 30 days/],
      ['2030-13-01T09:00:00Z', /month 13/],
      ['2030-00-10T09:00:00Z', /month 00/],
      ['2030-01-00T09:00:00Z', /day 00/],
      ['2030-01-01T24:00:00Z', /time of day/],
      ['2030-01-01T09:60:00Z', /time of day/],
      ['2030-12-31T23:59:60Z', /time of day/],
      ['2030-01-01T09:00:00+24:00', /time zone offset/],
      ['2030-01-01T09:00:00-00:60', /time zone offset/],
    ] as const) {
      const res = await post('/v1/emails', { ...VALID, scheduled_at: when });
      assert.equal(res.status, 422, when);
      const error = res.body!.errors!.find((e) => e.field === 'scheduled_at');
      assert.match(error?.message ?? '', message, when);
    }
    // 2000 and 2028 are leap years: a real date, refused only for its distance (or sent now).
    const leap = await post('/v1/emails', { ...VALID, scheduled_at: '2028-02-29T09:00:00Z' });
    assert.equal(leap.status, 422);
    assert.match(leap.body!.errors![0]!.message, /at most 30 days ahead/);
    const past = await post('/v1/emails', { ...VALID, scheduled_at: '2000-02-29T09:00:00Z' });
    assert.equal(past.status, 202, JSON.stringify(past.body));
  });

  test('at most 30 days ahead: 9999-12-31 is refused, 29 days is scheduled, a past time is sent now', async () => {
    for (const when of ['9999-12-31T00:00:00Z', new Date(Date.now() + 31 * DAY).toISOString()]) {
      await assertRefused(when, { ...VALID, scheduled_at: when }, 'scheduled_at');
    }
    const read = async (id: string) =>
      platform.database.db
        .selectFrom('emails')
        .select('scheduled_at')
        .where('id', '=', id)
        .executeTakeFirstOrThrow();

    // An offset and a fraction of a second name the same instant as its UTC spelling.
    const at = new Date(Math.floor((Date.now() + 29 * DAY) / 1000) * 1000 + 123);
    const local = new Date(at.getTime() + 2 * 60 * 60 * 1000).toISOString().replace('Z', '456+02:00');
    const ahead = await post('/v1/emails', { ...VALID, scheduled_at: local });
    assert.equal(ahead.status, 202, `${local}: ${JSON.stringify(ahead.body)}`);
    assert.equal((await read(ahead.body!.id as string)).scheduled_at?.toISOString(), at.toISOString());
    const lower = await post('/v1/emails', { ...VALID, scheduled_at: at.toISOString().toLowerCase() });
    assert.equal(lower.status, 202, JSON.stringify(lower.body));

    for (const when of ['2020-01-01T00:00:00Z', '0001-01-01T00:00:00Z', '0099-06-15T00:00:00-05:00']) {
      const past = await post('/v1/emails', { ...VALID, scheduled_at: when });
      assert.equal(past.status, 202, `${when}: ${JSON.stringify(past.body)}`);
      assert.equal((await read(past.body!.id as string)).scheduled_at, null, when);
    }
  });
});

describe('the request itself', () => {
  test('a body whose content-encoding does not decode is refused as a 400, not a 500', async () => {
    for (const encoding of ['gzip', 'deflate', 'br']) {
      const res = await post('/v1/emails', 'not compressed', { 'content-encoding': encoding });
      assertWellFormedRefusal(res, encoding);
      assert.equal(res.status, 400, encoding);
    }
  });

  test('what a refusal quotes back is bounded: a 100 KB member name or a 10 KB id is not echoed whole', async () => {
    const name = 'Z'.repeat(100_000);
    const unknown = await fetch(`${platform.url}/v1/segments`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 's', [name]: 1 }),
    });
    const refusal = await unknown.text();
    assert.equal(unknown.status, 422);
    assert.ok(refusal.length < 8_000, `${refusal.length} characters back`);
    assert.match(refusal, /ZZZZ…/);
    for (const path of [`/v1/emails/${'P'.repeat(10_000)}`, `/v1/templates/${'P'.repeat(10_000)}`]) {
      const res = await fetch(platform.url + path, { headers: { authorization: `Bearer ${key}` } });
      const text = await res.text();
      assert.equal(res.status, 404, path.slice(0, 20));
      assert.ok(text.length < 8_000, `${path.slice(0, 20)}: ${text.length} characters back`);
    }
  });

  test('a member named after what every object has (__proto__, constructor) is an unknown member, not a 500', async () => {
    for (const path of ['/v1/contacts', '/v1/templates']) {
      for (const name of ['__proto__', 'constructor', 'toString']) {
        const body =
          path === '/v1/contacts'
            ? `{"email":"proto@example.org","${name}":1}`
            : `{"name":"proto","subject":"s","html":"x","${name}":{}}`;
        const res = await post(path, body);
        assertWellFormedRefusal(res, `${path} ${name}`);
        assert.equal(res.status, 422, `${path} ${name}: ${JSON.stringify(res.body)}`);
        assert.deepEqual(fieldsOf(res), [name]);
        assert.ok(
          res.body!.errors!.every((e) => typeof e.message === 'string' && !/native code/.test(e.message)),
        );
      }
    }
  });

  test('a Postmark batch quotes a 100 KB Metadata key back bounded', async () => {
    const res = await fetch(`${platform.url}/email/batch`, {
      method: 'POST',
      headers: {
        'x-postmark-server-token': key,
        'content-type': 'application/json',
        accept: 'application/json',
      },
      body: JSON.stringify([
        {
          From: FROM,
          To: 'a@example.org',
          Subject: 's',
          TextBody: 't',
          Metadata: { ['Z'.repeat(100_000)]: 'v' },
        },
      ]),
    });
    const text = await res.text();
    assert.ok(text.length < 8_000, `${text.length} characters back`);
    const [result] = JSON.parse(text) as { ErrorCode: number; Message: string }[];
    assert.notEqual(result!.ErrorCode, 0);
    assert.match(result!.Message, /^Metadata\.ZZZ+…/);
  });

  test('a NUL or a lone surrogate is a 4xx naming where, never a 500: template paths, suppression details, imports', async () => {
    for (const ref of ['a%00b', 'welcome%00', 'a%00@b.c']) {
      const res = await fetch(`${platform.url}/v1/templates/${ref}`, {
        headers: { authorization: `Bearer ${key}` },
      });
      assert.equal(res.status, 404, ref);
    }
    for (const detail of ['a\u0000b', '\ud800', 'a\udc00\ud800b']) {
      const res = await post('/v1/suppressions', { address: 'x@example.org', detail });
      assertWellFormedRefusal(res, detail);
      assert.equal(res.status, 422, detail);
      assert.deepEqual(fieldsOf(res), ['detail'], detail);
    }
    const imported = await fetch(`${platform.url}/v1/suppressions/import`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'text/csv' },
      body: 'address,reason,detail\nnul@example.org,manual,a\u0000b\nfine@example.org,manual,ok\n',
    });
    const result = (await imported.json()) as { added: number; errors: { line: number; message: string }[] };
    assert.equal(imported.status, 200);
    assert.equal(result.added, 1, 'the good row is kept');
    assert.deepEqual(
      result.errors.map((e) => e.line),
      [2],
    );
    assert.match(result.errors[0]!.message, /^detail: must not contain a NUL/);
  });

  test('after every hostile body the api still accepts a valid one', async () => {
    const before = await emailRows();
    const res = await post('/v1/emails', VALID);
    assert.equal(res.status, 202);
    assert.equal((await emailRows()) - before, 1);
  });
});
