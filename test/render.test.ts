// The template sandbox: what tenants' ejs templates render, and what they cannot do (read the
// host, outlast the time limit, exhaust memory, or change what other templates render).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { createRenderer, RenderError, type Renderer, type TemplateSource } from '../lib/render/sandbox.js';

const TIMEOUT_MS = 200;

function renderer(t: { after: (fn: () => void) => void }): Renderer {
  const r = createRenderer({ timeoutMs: TIMEOUT_MS, memoryMb: 32 });
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
