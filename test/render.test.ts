// The template sandbox: what tenants' ejs templates render, and what they cannot do (read the
// host, outlast the time limit, exhaust memory, render more than a message can carry, keep other
// tenants waiting, or change what other templates render).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import {
  createRenderer,
  RenderError,
  type Renderer,
  type RendererOptions,
  type TemplateSource,
} from '../lib/render/sandbox.js';

const TIMEOUT_MS = 200;

/** The sender's limit, config.maxMessageBytes' default. */
const MAX_OUTPUT_BYTES = 10 * 1024 * 1024;

/** A template whose output doubles a string to 64 million characters: a rope, cheap in the isolate. */
const DOUBLING = "<% let s = 'x'.repeat(1e6); for (let i = 0; i < 6; i++) s += s; %>";

function renderer(t: { after: (fn: () => void) => void }, options: Partial<RendererOptions> = {}): Renderer {
  const r = createRenderer({
    timeoutMs: TIMEOUT_MS,
    memoryMb: 32,
    maxOutputBytes: MAX_OUTPUT_BYTES,
    ...options,
  });
  t.after(() => r.dispose());
  return r;
}

let keys = 0;
function source(parts: Omit<TemplateSource, 'key'>): TemplateSource {
  return { key: `test-${++keys}:1`, ...parts };
}

/** The RenderError a render rejects with; fails the test if it renders or throws anything else. */
async function renderError(r: Renderer, src: TemplateSource, vars: Record<string, unknown> = {}) {
  const outcome = await r.render(src, vars).then(
    (rendered) => assert.fail(`expected a RenderError, rendered ${JSON.stringify(rendered)}`),
    (err: unknown) => err,
  );
  assert.ok(outcome instanceof RenderError, `expected a RenderError, got ${String(outcome)}`);
  return outcome;
}

function compileError(r: Renderer, src: TemplateSource): RenderError {
  try {
    r.compile(src);
  } catch (err) {
    assert.ok(err instanceof RenderError, `expected a RenderError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected compile() to throw');
}

test('renders subject, html and text with the variables; <%= %> escapes HTML in html only and <%- %> is raw', async (t) => {
  const r = renderer(t);
  const rendered = await r.render(
    source({
      subject: 'Order <%= order.id %> for <%= name %>\n',
      html: '<p>Hi <%= name %></p><%- signature %>',
      text: 'Hi <%= locals.name %>,\n<% for (const item of order.items) { %>- <%= item %>\n<% } %>',
    }),
    {
      name: 'Ada <script>alert(1)</script> & co',
      signature: '<b>Mailplane</b>',
      order: { id: 7, items: ['a', 'b'] },
    },
  );
  assert.deepEqual(rendered, {
    subject: 'Order 7 for Ada <script>alert(1)</script> & co',
    html: '<p>Hi Ada &lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p><b>Mailplane</b>',
    text: 'Hi Ada <script>alert(1)</script> & co,\n- a\n- b\n',
  });
});

test('a part the template does not have is not in the result, and null or undefined values print nothing', async (t) => {
  const r = renderer(t);
  const rendered = await r.render(source({ subject: '[<%= missing %>]', html: null }), { missing: null });
  assert.deepEqual(rendered, { subject: '[]' });
});

test('a subject is one line: line breaks become spaces and the ends are trimmed', async (t) => {
  const r = renderer(t);
  const rendered = await r.render(source({ subject: '  Hello\r\n<%= name %>\n' }), { name: 'Ada' });
  assert.equal(rendered.subject, 'Hello Ada');
});

test('a template cannot read the environment, require or import modules, fetch, or reach host globals', async (t) => {
  const r = renderer(t);
  const canary = `canary-${randomUUID()}`;
  process.env.MAILPLANE_RENDER_CANARY = canary;
  t.after(() => delete process.env.MAILPLANE_RENDER_CANARY);

  const attempts = [
    '<%= process.env.MAILPLANE_RENDER_CANARY %>',
    '<%= JSON.stringify(globalThis.process && globalThis.process.env) %>',
    "<%= require('fs').readFileSync('/proc/self/environ', 'utf8') %>",
    "<% import('node:fs').then((fs) => fs.readFileSync('/proc/self/environ')) %>",
    "<%= typeof fetch === 'function' ? 'has fetch' : 'no fetch' %>",
    "<%= this.constructor.constructor('return process')().env.MAILPLANE_RENDER_CANARY %>",
    "<%= Function('return this')().process.env.MAILPLANE_RENDER_CANARY %>",
    "<%= escapeFn.constructor('return process')().env.MAILPLANE_RENDER_CANARY %>",
    "<%= ['process', 'require', 'module', 'Buffer', 'fetch', 'setTimeout'].filter((n) => n in globalThis).join() %>",
  ];
  for (const attempt of attempts) {
    let outcome: string;
    try {
      const rendered = await r.render(source({ subject: attempt, html: attempt, text: attempt }), {});
      outcome = JSON.stringify(rendered);
      assert.ok(
        !/\b(process|require|module|Buffer|has fetch|setTimeout)\b/.test(rendered.text ?? ''),
        outcome,
      );
    } catch (err) {
      assert.ok(err instanceof RenderError, `${attempt} → ${String(err)}`);
      assert.equal(err.code, 'ETEMPLATE_RUNTIME', `${attempt} → ${err.message}`);
      outcome = err.message;
    }
    assert.ok(!outcome.includes(canary), `${attempt} leaked the environment: ${outcome}`);
  }
});

test('include() is not supported and says so', async (t) => {
  const r = renderer(t);
  const err = await renderError(r, source({ subject: "<%- include('/etc/passwd') %>" }));
  assert.equal(err.code, 'ETEMPLATE_RUNTIME');
  assert.match(err.message, /include\(\) is not supported/);
});

test('one template cannot change what another renders: built-ins, globals and RegExp.$1 are not shared state', async (t) => {
  const r = renderer(t);
  const poison = [
    "<% try { String.prototype.replace = function () { return 'PWNED' } } catch (e) {} %>",
    "<% try { Object.prototype.polluted = 'PWNED' } catch (e) {} %>",
    '<% try { globalThis.stash = locals; stash2 = locals } catch (e) {} %>',
    "<% try { Object.defineProperty(Array.prototype, 'join', { value: () => 'PWNED' }) } catch (e) {} %>",
    '<% try { Object.getPrototypeOf([][Symbol.iterator]()).next = () => ({ done: true }) } catch (e) {} %>',
    '<% /(s3cret-\\w+)/.exec(secret) %>',
  ].join('');
  await r.render(source({ subject: 'x', html: poison }), { secret: 's3cret-value' });

  const rendered = await r.render(
    source({
      subject: 'x',
      html: "<%- RegExp.$1 %>|<%- typeof RegExp.lastMatch %>|<%= '<b>' %>|<%= typeof stash %>|<%= typeof stash2 %>|<%= ({}).polluted %>|<%= [1, 2].join('-') %>|<%= [...'ab'].length + [...[1]].length %>",
    }),
    {},
  );
  assert.equal(rendered.html, '|undefined|&lt;b&gt;|undefined|undefined||1-2|3');
});

test('an infinite loop fails with ETEMPLATE_TIMEOUT near the limit, without blocking the event loop, and the next render works', async (t) => {
  const r = renderer(t);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const started = performance.now();
  const err = await renderError(r, source({ subject: 'x', text: 'line 1\n<% while (true) {} %>' }));
  const elapsed = performance.now() - started;
  clearInterval(timer);

  assert.equal(err.code, 'ETEMPLATE_TIMEOUT');
  assert.equal(err.part, 'text');
  assert.ok(elapsed >= TIMEOUT_MS * 0.9 && elapsed < TIMEOUT_MS + 1000, `took ${elapsed} ms`);
  assert.ok(ticks >= 5, `the event loop ran ${ticks} timers during the render`);

  const rendered = await r.render(source({ subject: 'still <%= state %>' }), { state: 'fine' });
  assert.equal(rendered.subject, 'still fine');
});

test('work a template queues to run after it returns (a promise callback) is under the time limit too', async (t) => {
  const r = renderer(t);
  const err = await renderError(
    r,
    source({ subject: '<% Promise.resolve().then(function spin() { for (;;); }) %>' }),
  );
  assert.equal(err.code, 'ETEMPLATE_TIMEOUT');
  assert.equal((await r.render(source({ subject: 'ok' }), {})).subject, 'ok');
});

test('a memory bomb fails with ETEMPLATE_MEMORY (or the timeout if first), the process lives, and the next render works', async (t) => {
  const r = renderer(t);
  const bomb = source({
    subject: 'x',
    html: '<% let a = []; while (true) a.push(new Array(1e6).fill(1)) %>',
  });
  // Renders queued behind the bomb on the same isolate are not blamed for it.
  const [bombed, queued] = await Promise.allSettled([
    r.render(bomb, {}),
    r.render(source({ subject: 'queued' }), {}),
  ]);

  assert.equal(bombed.status, 'rejected');
  const err = bombed.reason as unknown;
  assert.ok(err instanceof RenderError, String(err));
  assert.ok(['ETEMPLATE_MEMORY', 'ETEMPLATE_TIMEOUT'].includes(err.code), err.message);
  assert.equal(err.part, 'html');
  assert.deepEqual(queued, { status: 'fulfilled', value: { subject: 'queued' } });

  const rendered = await r.render(source({ subject: 'after <%= n %>' }), { n: 1 });
  assert.equal(rendered.subject, 'after 1');
});

test('a syntax error is ETEMPLATE_COMPILE with the line of the template at fault, from compile() and render()', async (t) => {
  const r = renderer(t);
  const bad = source({ subject: 'ok', html: '<p>\n  <%= name %>\n  <%= user.name( %>\n</p>' });

  const compiled = compileError(r, bad);
  assert.equal(compiled.code, 'ETEMPLATE_COMPILE');
  assert.equal(compiled.part, 'html');
  assert.equal(compiled.line, 3);
  assert.match(compiled.message, /^html line 3: SyntaxError/);

  const rendered = await renderError(r, bad, { name: 'x' });
  assert.equal(rendered.code, 'ETEMPLATE_COMPILE');
  assert.equal(rendered.line, 3);
});

test('a syntax error inside a multi-line scriptlet reports the line it is on', async (t) => {
  const r = renderer(t);
  const err = compileError(
    r,
    source({ subject: 'x', text: 'one\n<%\n  const a = 1;\n  const b = ;\n%>\nsix' }),
  );
  assert.equal(err.line, 4);
});

test('an unclosed block is ETEMPLATE_COMPILE at the end of the template, and an unclosed tag at the tag', async (t) => {
  const r = renderer(t);
  const block = compileError(r, source({ subject: 'x', html: '<% if (vip) { %>\n<b>VIP</b>\nthanks' }));
  assert.equal(block.code, 'ETEMPLATE_COMPILE');
  assert.equal(block.line, 3);
  assert.match(block.message, /unclosed block/);

  const tag = compileError(r, source({ subject: 'x', text: 'one\ntwo\n<% if (vip) {\nfour' }));
  assert.equal(tag.code, 'ETEMPLATE_COMPILE');
  assert.equal(tag.part, 'text');
  assert.equal(tag.line, 3);
});

test('compile() accepts a good template', (t) => {
  const r = renderer(t);
  r.compile(
    source({
      subject: 'Hi <%= name %>',
      html: '<% if (items.length) { %><ul><% items.forEach((i) => { %><li><%= i %></li><% }) %></ul><% } %>',
      text: '<%# a comment %>Hi <%- name %>',
    }),
  );
});

test('a runtime error is ETEMPLATE_RUNTIME with the message and the line', async (t) => {
  const r = renderer(t);
  const err = await renderError(r, source({ subject: 'x', html: '<p>\n<%= user.name %>\n</p>' }), {
    user: null,
  });
  assert.equal(err.code, 'ETEMPLATE_RUNTIME');
  assert.equal(err.part, 'html');
  assert.equal(err.line, 2);
  assert.match(err.message, /^html line 2: TypeError: Cannot read properties of null/);
});

test('whatever a template throws becomes a plain message', async (t) => {
  const r = renderer(t);
  const err = await renderError(r, source({ subject: "<% throw { toString() { return 'custom' } } %>" }));
  assert.equal(err.code, 'ETEMPLATE_RUNTIME');
  assert.equal(err.message, 'subject line 1: Uncaught custom');
  assert.equal(Object.getPrototypeOf(err), RenderError.prototype);
});

test('a key names one template version: it is compiled once and later sources under that key are not read', async (t) => {
  const r = renderer(t);
  await r.render({ key: 'welcome:1', subject: 'version 1' }, {});
  const rendered = await r.render({ key: 'welcome:1', subject: 'version 2' }, {});
  assert.equal(rendered.subject, 'version 1');
  assert.equal((await r.render({ key: 'welcome:2', subject: 'version 2' }, {})).subject, 'version 2');
});

test('a disposed renderer refuses to render', async (t) => {
  const r = renderer(t);
  await r.render(source({ subject: 'x' }), {});
  r.dispose();
  await assert.rejects(r.render(source({ subject: 'x' }), {}), /disposed/);
});

test('output over maxOutputBytes fails with ETEMPLATE_OUTPUT before it leaves the isolate, and the host memory stays flat', async (t) => {
  const r = renderer(t);
  await r.render(source({ subject: 'warm' }), {});
  const before = process.memoryUsage();

  const bombs = [
    // Printed raw, the rope reaches the end of the part; escaped, it would be flattened first.
    source({ subject: 'x', text: `${DOUBLING}<%- s %>` }),
    source({ subject: 'x', html: `${DOUBLING}<%= s %>` }),
  ];
  for (let i = 0; i < 4; i++) {
    for (const bomb of bombs) {
      const err = await renderError(r, bomb);
      assert.equal(err.code, 'ETEMPLATE_OUTPUT', err.message);
      assert.equal(err.part, bomb.text ? 'text' : 'html');
      assert.match(err.message, /^(text|html line 1): rendered output is over the limit of 10485760 bytes: /);
      assert.match(err.message, /64000000 characters/);
    }
  }

  const after = process.memoryUsage();
  const grown = (key: 'rss' | 'heapUsed' | 'external') => (after[key] - before[key]) / 2 ** 20;
  // Copied out, each render would cost the host 64 MB or more (one-byte string) and its copies.
  assert.ok(grown('rss') < 100, `rss grew ${grown('rss').toFixed(1)} MiB`);
  assert.ok(grown('heapUsed') + grown('external') < 100, `heap grew ${grown('heapUsed').toFixed(1)} MiB`);
  assert.equal((await r.render(source({ subject: 'still <%= n %>' }), { n: 1 })).subject, 'still 1');
});

test('the output limit counts subject, html and text together, in UTF-8 bytes', async (t) => {
  const r = renderer(t, { maxOutputBytes: 1000 });
  const fits = await r.render(source({ subject: '', text: "<%- 'x'.repeat(1000) %>" }), {});
  assert.equal(fits.text?.length, 1000);

  const together = await renderError(
    r,
    source({ subject: "<%- 'x'.repeat(600) %>", text: "<%- 'y'.repeat(600) %>" }),
  );
  assert.equal(together.code, 'ETEMPLATE_OUTPUT');
  assert.equal(together.part, 'text');
  assert.equal(
    together.message,
    'text: rendered output is over the limit of 1000 bytes: text has 600 characters, 1200 with the parts before it',
  );

  // 600 characters pass the isolate's count; the host counts their 1200 bytes.
  const wide = await renderError(r, source({ subject: 'x', html: "<%- 'é'.repeat(600) %>" }));
  assert.equal(wide.code, 'ETEMPLATE_OUTPUT');
  assert.equal(wide.part, 'html');
  assert.equal(
    wide.message,
    'html: rendered output is over the limit of 1000 bytes: html has 1200 bytes, 1201 with the parts before it',
  );
});

test('a template that catches the escape refusing a too long value still fails with ETEMPLATE_OUTPUT', async (t) => {
  const r = renderer(t, { maxOutputBytes: 1000 });
  const err = await renderError(
    r,
    source({ subject: 'x', text: "<% try { %><%= 'x'.repeat(2000) %><% } catch (e) {} %>fine" }),
  );
  assert.equal(err.code, 'ETEMPLATE_OUTPUT');
  assert.match(err.message, /text prints a value of 2000 characters/);
});

/** Queues `count` renders of an endless loop for `tenant`; each settles with its error code. */
function loops(r: Renderer, tenant: string, count: number): Promise<string>[] {
  const loop = source({ subject: 'x', html: '<% while (true) {} %>' });
  return Array.from({ length: count }, () =>
    r.render(loop, {}, { tenant }).then(
      () => 'rendered',
      (err: unknown) => (err instanceof RenderError ? err.code : String(err)),
    ),
  );
}

test("one tenant's looping templates do not hold up another's: with 2 isolates it holds one and the other tenant renders at once", async (t) => {
  const r = renderer(t, { isolates: 2 });
  const started = performance.now();
  const flood = loops(r, 'tenant-a', 20);

  // Without fairness this waits for all 20 loops, 20 time limits.
  const rendered = await r.render(
    source({ subject: 'Hi <%= name %>' }),
    { name: 'B' },
    { tenant: 'tenant-b' },
  );
  const waited = performance.now() - started;
  assert.equal(rendered.subject, 'Hi B');
  assert.ok(waited < 3 * TIMEOUT_MS, `tenant B waited ${waited.toFixed(0)} ms behind tenant A's loops`);

  // Every one of A's renders settles, each at its time limit, one isolate at a time.
  const codes = await Promise.all(flood);
  const elapsed = performance.now() - started;
  assert.deepEqual(codes, Array(20).fill('ETEMPLATE_TIMEOUT'));
  assert.ok(
    elapsed >= 20 * TIMEOUT_MS * 0.9,
    `20 loops took ${elapsed.toFixed(0)} ms: more than one isolate`,
  );
});

test('tenants take turns: on a single isolate, a render waits for one render of a busy tenant, not its backlog', async (t) => {
  const r = renderer(t, { isolates: 1 });
  const started = performance.now();
  const flood = loops(r, 'tenant-a', 6);
  const rendered = await r.render(source({ subject: 'turn' }), {}, { tenant: 'tenant-b' });
  const waited = performance.now() - started;
  assert.equal(rendered.subject, 'turn');
  // The loop running when B queued, then one more of A's before B's turn: 2 time limits, not 6.
  assert.ok(waited < 3.5 * TIMEOUT_MS, `tenant B waited ${waited.toFixed(0)} ms`);
  assert.deepEqual(await Promise.all(flood), Array(6).fill('ETEMPLATE_TIMEOUT'));
});

test('dispose() rejects the renders queued and under way, at once, and later renders', async (t) => {
  const r = renderer(t, { isolates: 2 });
  const started = performance.now();
  const pending = [...loops(r, 'tenant-a', 5), ...loops(r, 'tenant-b', 3)];
  await new Promise((resolve) => setTimeout(resolve, 20));
  r.dispose();
  const outcomes = await Promise.all(pending);
  assert.ok(
    outcomes.every((outcome) => /disposed/.test(outcome)),
    outcomes.join(', '),
  );
  assert.ok(performance.now() - started < 2 * TIMEOUT_MS, 'the renders waited for their time limit');
  await assert.rejects(r.render(source({ subject: 'x' }), {}), /disposed/);
});

/** Runs `script` (an ES module) in a child node that loads TypeScript as the tests do; resolves how it ended. */
function runNode(script: string): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: 'ignore',
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
}

test('a process that exits right after a memory-limit kill, or with a render under way, exits with its code, not a segmentation fault', async () => {
  const sandbox = JSON.stringify(new URL('../lib/render/sandbox.ts', import.meta.url).href);
  const start = `import { createRenderer } from ${sandbox};
    const r = createRenderer({ timeoutMs: ${TIMEOUT_MS}, memoryMb: 32 });`;
  const killed = `${start}
    await r.render({ key: 'bomb', subject: 'x', html: '<% let a = []; while (true) a.push(new Array(1e6).fill(1)) %>' }, {}).catch(() => {});
    r.dispose();
    process.exit(3);`;
  const running = `${start}
    await r.render({ key: 'warm', subject: 'x' }, {});
    void r.render({ key: 'loop', subject: 'x', html: '<% while (true) {} %>' }, {}).catch(() => {});
    setTimeout(() => process.exit(3), 20);`;
  // Without the exit guard, 39 exits in 40 crashed after the kill, and every one with a render under way.
  const runs = await Promise.all([killed, killed, killed, running, running, running].map(runNode));
  assert.deepEqual(runs, Array(6).fill({ code: 3, signal: null }));
});
