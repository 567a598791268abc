// The template sandbox: renders tenants' ejs templates (subject, html, text) inside a V8 isolate
// with a heap limit and a per-render time limit, so that template code, which is untrusted
// JavaScript, cannot read the sender's environment or files, reach the network, or stall or crash
// the worker. ejs turns a template into JavaScript source here in the host (parsing, never
// running it); the source is evaluated and run only inside the isolate, and only strings cross the
// boundary: template code and variables as JSON going in, rendered text or an error coming out.
//
// One isolate and one context serve every render of a Renderer, because creating them costs about
// 2 ms and 0.5 ms, more than a render. Templates of different tenants therefore share a realm, and
// the bootstrap below freezes every object in it, so that no template can leave state behind for
// the next one (a patched String.prototype.replace would silently turn off escaping for everyone; a
// global could collect other tenants' variables).

import { compileFunction } from 'node:vm';
import ejs from 'ejs';
import ivm from 'isolated-vm';

/** A template version: `key` (e.g. `${templateId}:${version}`) must change whenever the text does. */
export interface TemplateSource {
  key: string;
  subject: string;
  html?: string | null;
  text?: string | null;
}

export interface Rendered {
  subject: string;
  html?: string;
  text?: string;
}

export type RenderErrorCode =
  'ETEMPLATE_COMPILE' | 'ETEMPLATE_RUNTIME' | 'ETEMPLATE_TIMEOUT' | 'ETEMPLATE_MEMORY';
export type TemplatePart = 'subject' | 'html' | 'text';

/**
 * A template's fault: it does not compile, throws, runs too long or uses too much memory. Rendering
 * it again will fail again, so the message fails rather than retries. Any other error from a
 * Renderer (a plain Error) is the sandbox's own trouble and worth a retry.
 */
export class RenderError extends Error {
  constructor(
    readonly code: RenderErrorCode,
    readonly part: TemplatePart,
    message: string,
    /** Line of the template at fault, 1-based, when known. */
    readonly line?: number,
  ) {
    super(message);
    this.name = 'RenderError';
  }
}

export interface RendererOptions {
  /** Wall-clock limit of one render (all parts together), e.g. config.renderTimeoutMs. */
  timeoutMs: number;
  /** Heap limit of the isolate in MiB (isolated-vm's minimum is 8), e.g. config.renderMemoryMb. */
  memoryMb: number;
  /**
   * Called when V8 loses control of the isolate (isolated-vm's onCatastrophicError). Its memory is
   * then unrecoverable; isolated-vm's advice is to log, finish outstanding work and exit.
   */
  onCatastrophicError?: (message: string) => void;
}

export interface Renderer {
  /** Compiles every part; throws RenderError (ETEMPLATE_COMPILE with the line at fault) if one does not compile. */
  compile(source: TemplateSource): void;
  /** Renders every present part with the variables (plain JSON data). */
  render(source: TemplateSource, variables: Record<string, unknown>): Promise<Rendered>;
  dispose(): void;
}

const PARTS: readonly TemplatePart[] = ['subject', 'html', 'text'];

/** Compiled templates kept per isolate. Hot templates are few; the bound only stops unbounded growth. */
const CACHE_ENTRIES = 500;

/**
 * Share of the heap that cached template code may take. V8 keeps each function's source and its
 * string constants on the heap, so a 50 kB HTML template costs over 100 kB; without this bound,
 * 500 large templates would outgrow the limit and kill the isolate under an innocent render.
 */
const CACHE_HEAP_SHARE = 1 / 4;

/**
 * Renders in flight are told apart by a slot in a shared Int32Array, where the isolate writes the
 * part it is rendering, so that a timeout or an out-of-memory kill names the part at fault. Slots
 * are handed out round-robin; more renders than this in flight on one Renderer would only blur
 * which part an error names.
 */
const PROGRESS_SLOTS = 4096;

/** What isolated-vm says when it stops a call at its timeout. */
const TIMEOUT_MESSAGE = 'Script execution timed out.';

/**
 * Fixed ejs options: none of them comes from the tenant. `_with` (ejs' default) lets a template say
 * `name` as well as `locals.name`; it needs sloppy mode, hence `strict: false`. `compileDebug`
 * makes the code track `__line`, which errors report. No filename, so no include resolution.
 */
const EJS_OPTIONS = { strict: false, _with: true, compileDebug: true, localsName: 'locals' } as const;

/** Parameters of the function each part becomes, in the isolate: see BOOTSTRAP. */
const PARAMS = ['locals', 'escapeFn', 'include', '__state'];

/**
 * Creates a renderer with its own isolate (started on the first render).
 *
 *   const renderer = createRenderer({ timeoutMs: config.renderTimeoutMs, memoryMb: config.renderMemoryMb });
 *   const { subject, html, text } = await renderer.render(
 *     { key: 'welcome:3', subject: 'Hi <%= name %>', html: '<p>Hi <%= name %></p>' },
 *     { name: 'Ada' },
 *   );
 */
export function createRenderer(options: RendererOptions): Renderer {
  return new IsolateRenderer(options);
}

interface Sandbox {
  isolate: ivm.Isolate;
  dispatch: ivm.Reference<Dispatch>;
  progress: Int32Array;
}

/** Signature of the isolate-side dispatcher (BOOTSTRAP); sources are given only to load a key. */
type Dispatch = (
  slot: number,
  key: string,
  variablesJson: string,
  subject?: string,
  html?: string | null,
  text?: string | null,
) => Reply;

type Reply =
  | { miss: true }
  | { error: RenderErrorCode; part: number; message: string; line?: number }
  | { subject: string; html?: string; text?: string };

class IsolateRenderer implements Renderer {
  private sandbox: Sandbox | undefined;
  private slot = 0;
  private disposed = false;

  constructor(private readonly options: RendererOptions) {}

  compile(source: TemplateSource): void {
    translate(source);
  }

  async render(source: TemplateSource, variables: Record<string, unknown>): Promise<Rendered> {
    const json = JSON.stringify(variables ?? {});
    // A second attempt only when the isolate died under another render before this one ran.
    for (let attempt = 0; ; attempt++) {
      const sandbox = this.current();
      const slot = (this.slot = (this.slot + 1) % PROGRESS_SLOTS);
      sandbox.progress[slot] = 0;
      try {
        const options = { timeout: this.options.timeoutMs, result: { copy: true } } as const;
        let reply = (await sandbox.dispatch.apply(undefined, [slot, source.key, json], options)) as Reply;
        if ('miss' in reply) {
          const [subject, html, text] = translate(source);
          const args: Parameters<Dispatch> = [slot, source.key, json, subject, html, text];
          reply = (await sandbox.dispatch.apply(undefined, args, options)) as Reply;
        }
        return this.result(reply);
      } catch (err) {
        if (err instanceof RenderError) throw err;
        const message = err instanceof Error ? err.message : String(err);
        const part = PARTS[sandbox.progress[slot] ?? 0] ?? 'subject';
        if (message === TIMEOUT_MESSAGE) {
          throw new RenderError(
            'ETEMPLATE_TIMEOUT',
            part,
            `${part}: rendering took longer than ${this.options.timeoutMs} ms`,
          );
        }
        if (sandbox.isolate.isDisposed) {
          if (this.sandbox === sandbox) this.sandbox = undefined;
          // isolated-vm: "Isolate was disposed during execution due to memory limit".
          if (/memory limit/i.test(message)) {
            throw new RenderError(
              'ETEMPLATE_MEMORY',
              part,
              `${part}: rendering used more than ${this.options.memoryMb} MiB of memory`,
            );
          }
          if (attempt === 0 && !this.disposed) continue;
        }
        if (this.disposed) throw new Error('the renderer is disposed', { cause: err });
        if (!sandbox.isolate.isDisposed) {
          // The dispatcher catches what templates throw, so this is a promise the template
          // rejected and left unhandled (import() is one), which isolated-vm reports on the call.
          const name = err instanceof Error ? err.name : 'Error';
          throw new RenderError('ETEMPLATE_RUNTIME', part, `${part}: ${name}: ${message}`);
        }
        throw new Error(`template sandbox failed: ${message}`, { cause: err });
      }
    }
  }

  dispose(): void {
    this.disposed = true;
    if (this.sandbox && !this.sandbox.isolate.isDisposed) this.sandbox.isolate.dispose();
    this.sandbox = undefined;
  }

  private result(reply: Reply): Rendered {
    if ('error' in reply) {
      const part = PARTS[reply.part] ?? 'subject';
      const where = reply.line ? `${part} line ${reply.line}` : part;
      throw new RenderError(reply.error, part, `${where}: ${reply.message}`, reply.line || undefined);
    }
    if ('miss' in reply) throw new Error('template sandbox lost a template it had just loaded');
    const rendered: Rendered = { subject: oneLine(reply.subject) };
    if (reply.html !== undefined) rendered.html = reply.html;
    if (reply.text !== undefined) rendered.text = reply.text;
    return rendered;
  }

  /** The live sandbox, or a new one if there is none or the last one died (memory limit). */
  private current(): Sandbox {
    if (this.disposed) throw new Error('the renderer is disposed');
    if (this.sandbox && !this.sandbox.isolate.isDisposed) return this.sandbox;
    this.sandbox = createSandbox(this.options);
    return this.sandbox;
  }
}

/**
 * Starts an isolate and runs BOOTSTRAP in a fresh context. Synchronous (a few ms, only at start and
 * after an isolate died), so that concurrent renders cannot race to create two.
 */
function createSandbox(options: RendererOptions): Sandbox {
  const isolate = new ivm.Isolate({
    memoryLimit: options.memoryMb,
    onCatastrophicError: (message) => options.onCatastrophicError?.(message),
  });
  try {
    const context = isolate.createContextSync();
    const script = isolate.compileScriptSync(BOOTSTRAP, { filename: 'mailplane:bootstrap' });
    const bootstrap = script.runSync(context, { reference: true }) as ivm.Reference<
      (progress: SharedArrayBuffer, entries: number, bytes: number) => Dispatch
    >;
    const buffer = new SharedArrayBuffer(PROGRESS_SLOTS * Int32Array.BYTES_PER_ELEMENT);
    const cacheBytes = Math.floor(options.memoryMb * 1024 * 1024 * CACHE_HEAP_SHARE);
    // The shared buffer is plain memory, not an object of the host realm; it stays in the
    // bootstrap's closure, out of templates' reach.
    const progress = new ivm.ExternalCopy(buffer).copyInto();
    const dispatch = bootstrap.applySync(undefined, [progress, CACHE_ENTRIES, cacheBytes], {
      result: { reference: true },
    }) as ivm.Reference<Dispatch>;
    return { isolate, dispatch, progress: new Int32Array(buffer) };
  } catch (err) {
    if (!isolate.isDisposed) isolate.dispose();
    throw err;
  }
}

/** A subject is one header line: line breaks (a trailing one from a YAML block) become spaces. */
function oneLine(subject: string): string {
  return subject.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/**
 * Turns each part into the body of the function the isolate will run, or throws ETEMPLATE_COMPILE.
 * Subject first: the order of the result is the order of PARTS.
 */
function translate(source: TemplateSource): [string, string | null, string | null] {
  const part = (name: TemplatePart, text: string | null | undefined) =>
    typeof text === 'string' ? translatePart(name, text) : null;
  return [translatePart('subject', source.subject), part('html', source.html), part('text', source.text)];
}

/**
 * ejs generates the code in its Template (compile() also parses it with `new Function`, which
 * creates a function but never calls it); the code is then wrapped so that it reports the line it
 * was on when it threw.
 */
function translatePart(part: TemplatePart, text: string): string {
  if (typeof text !== 'string') throw new TypeError(`template ${part} must be a string`);
  const template = new ejs.Template(text, EJS_OPTIONS);
  let failure: unknown;
  try {
    template.compile();
  } catch (err) {
    failure = err;
  }
  if (failure !== undefined && !(failure instanceof SyntaxError)) {
    // ejs stopped generating code (an unclosed tag) while on the line at fault.
    const line = (template as unknown as { currentLine?: unknown }).currentLine;
    throw compileError(part, failure, typeof line === 'number' ? line : undefined);
  }
  const body = `let __line = 1;\ntry {\n${template.source}} catch (__error) {\n  __state.line = __line;\n  throw __error;\n}\n`;
  if (failure !== undefined) throw locateSyntaxError(part, body, text, failure);
  return body;
}

function compileError(part: TemplatePart, err: unknown, line: number | undefined): RenderError {
  let message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  message = message.split(' while compiling ejs')[0] ?? message;
  return new RenderError(
    'ETEMPLATE_COMPILE',
    part,
    `${line ? `${part} line ${line}` : part}: ${message}`,
    line,
  );
}

/**
 * ejs' SyntaxError says what but not where. Parsing the body again with vm.compileFunction does,
 * in the error's stack (`template:LINE`), and again only creates the function.
 */
function locateSyntaxError(part: TemplatePart, body: string, text: string, failure: unknown): RenderError {
  try {
    compileFunction(body, PARAMS, { filename: 'template' });
  } catch (err) {
    const at = err instanceof SyntaxError ? /^template:(\d+)/.exec(err.stack ?? '') : null;
    if (!at) return compileError(part, err, undefined);
    const lines = body.split('\n');
    const bodyLine = Number(at[1]);
    // Past the template's last statement: V8 names the wrapper's token it stumbled on ("Unexpected
    // token 'catch'"), which means nothing to the author of an unclosed `<% if (x) { %>`.
    const end = lines.lastIndexOf('  return __output;');
    if (end > 0 && bodyLine >= end) {
      const message = 'SyntaxError: the template ends inside an unclosed block or expression';
      return compileError(part, message, text.split('\n').length);
    }
    return compileError(part, err, templateLine(lines, bodyLine, text));
  }
  return compileError(part, failure, undefined);
}

/**
 * Maps a line of the generated body back to the template. ejs writes each token as a statement
 * starting with `    ; `, and after a token that spans lines, `    ; __line = N`; the lines of a
 * multi-line scriptlet continue without that prefix. Approximate where ejs' own output is (a
 * one-line scriptlet ending in a `//` comment gets an extra line).
 */
function templateLine(lines: string[], bodyLine: number, text: string): number {
  let line = 1;
  let started = false;
  for (let i = 0; i < bodyLine && i < lines.length; i++) {
    const code = lines[i] ?? '';
    const marker = /^ {4}; __line = (\d+)$/.exec(code);
    if (marker) line = Number(marker[1]);
    else if (code.startsWith('    ; ')) started = true;
    else if (started) line++;
  }
  return Math.min(Math.max(line, 1), text.split('\n').length);
}

/**
 * Runs once in each new context; evaluates to a function that takes the shared progress buffer and
 * the cache bounds and returns the dispatcher. Everything it keeps lives in this closure, not in
 * globals, where templates could reach it.
 *
 * The dispatcher renders the parts of template `key` with the variables (a JSON string), loading
 * the key from the sources it is given (the bodies made by translatePart), or answering `{miss}`
 * when it has not got the key and was given none. It returns plain strings only: the rendered
 * parts, or `{error, part, message, line}`.
 */
const BOOTSTRAP = String.raw`(function bootstrap(progressBuffer, cacheEntries, cacheBytes) {
  'use strict';
  const progress = new Int32Array(progressBuffer);

  // Not for templates: memory outside the heap limit (WebAssembly, SharedArrayBuffer), a way to
  // block the thread (Atomics), callbacks that run during later renders (FinalizationRegistry).
  for (const name of ['WebAssembly', 'SharedArrayBuffer', 'Atomics', 'FinalizationRegistry', 'WeakRef']) {
    delete globalThis[name];
  }
  // RegExp.$1, RegExp.lastMatch and kin hold the last match of any regexp in the realm, which
  // would let one template read what the previous render matched.
  for (const name of Object.getOwnPropertyNames(RegExp)) {
    if (name !== 'length' && name !== 'name' && name !== 'prototype') delete RegExp[name];
  }

  const HTML_ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&#34;', "'": '&#39;' };
  const HTML_SPECIAL = /[&<>"']/g;
  const escapeHtml = (value) =>
    value === undefined || value === null ? '' : String(value).replace(HTML_SPECIAL, (c) => HTML_ESCAPES[c]);
  // Subject and text are not HTML: entities would reach the reader as "&amp;". <%= %> there
  // prints the value as it is (header encoding is the MIME builder's job).
  const escapeNone = (value) => (value === undefined || value === null ? '' : String(value));
  const ESCAPES = [escapeNone, escapeHtml, escapeNone];
  const include = () => {
    throw new Error('include() is not supported in Mailplane templates; each part is one template');
  };

  // Freeze everything reachable from the global object, and the intrinsics that are reachable only
  // through syntax (generator and async function prototypes, iterator prototypes).
  const roots = [
    globalThis,
    escapeHtml,
    escapeNone,
    include,
    Object.getPrototypeOf(function* () {}),
    Object.getPrototypeOf(async function () {}),
    Object.getPrototypeOf(async function* () {}),
    Object.getPrototypeOf([][Symbol.iterator]()),
    Object.getPrototypeOf(''[Symbol.iterator]()),
    Object.getPrototypeOf(new Map()[Symbol.iterator]()),
    Object.getPrototypeOf(new Set()[Symbol.iterator]()),
    Object.getPrototypeOf(/a/[Symbol.matchAll]('')),
  ];
  if (typeof Intl === 'object' && typeof Intl.Segmenter === 'function') {
    const segments = new Intl.Segmenter().segment('');
    roots.push(Object.getPrototypeOf(segments), Object.getPrototypeOf(segments[Symbol.iterator]()));
  }
  // Iterator helpers (V8 12, Node 22): their results' prototypes are reachable only this way.
  if (typeof Iterator === 'function' && typeof Iterator.from === 'function') {
    roots.push(Object.getPrototypeOf([].values().map((x) => x)), Object.getPrototypeOf(Iterator.from({ next() {} })));
  }
  const seen = new Set();
  while (roots.length > 0) {
    const value = roots.pop();
    if ((typeof value !== 'object' && typeof value !== 'function') || value === null || seen.has(value)) continue;
    seen.add(value);
    Object.freeze(value);
    roots.push(Object.getPrototypeOf(value));
    for (const key of Reflect.ownKeys(value)) {
      const descriptor = Reflect.getOwnPropertyDescriptor(value, key);
      if (descriptor) roots.push(descriptor.value, descriptor.get, descriptor.set);
    }
  }
  seen.clear();

  // Compiled templates by key, least recently used first (a Map keeps insertion order).
  const cache = new Map();
  let cachedBytes = 0;

  function load(key, sources) {
    const functions = [];
    let bytes = 0;
    for (let part = 0; part < sources.length; part++) {
      const body = sources[part];
      if (typeof body !== 'string') {
        functions.push(null);
        continue;
      }
      bytes += body.length * 2;
      try {
        // The Function constructor parses the body on its own, so it cannot close the function
        // early and run code outside it; the function's scope is the frozen global one.
        functions.push(new Function('locals', 'escapeFn', 'include', '__state', body));
      } catch (error) {
        return { error: 'ETEMPLATE_COMPILE', part, message: describe(error) };
      }
    }
    forget(key);
    cache.set(key, { functions, bytes });
    cachedBytes += bytes;
    for (const [oldest] of cache) {
      if (cache.size <= 1 || (cache.size <= cacheEntries && cachedBytes <= cacheBytes)) break;
      forget(oldest);
    }
    return functions;
  }

  function forget(key) {
    const entry = cache.get(key);
    if (entry === undefined) return;
    cache.delete(key);
    cachedBytes -= entry.bytes;
  }

  // A message made of strings only, whatever the template threw (its getters run here, still under
  // the time limit).
  function describe(error) {
    try {
      const text = error instanceof Error ? String(error.name) + ': ' + String(error.message) : 'Uncaught ' + String(error);
      return text.length > 1000 ? text.slice(0, 1000) + '…' : text;
    } catch {
      return 'the template threw a value that cannot be displayed';
    }
  }

  return function dispatch(slot, key, variablesJson, subject, html, text) {
    let functions;
    if (typeof subject === 'string') {
      functions = load(key, [subject, html, text]);
      if (!Array.isArray(functions)) return functions;
    } else {
      const entry = cache.get(key);
      if (entry === undefined) return { miss: true };
      cache.delete(key);
      cache.set(key, entry);
      functions = entry.functions;
    }
    const result = {};
    for (let part = 0; part < functions.length; part++) {
      const render = functions[part];
      if (render === null) continue;
      progress[slot] = part;
      // Parsed again for each part, so that what one part changes the next does not see; a
      // null-prototype copy, so that bare names cannot resolve to Object.prototype (as ejs does).
      const locals = Object.assign(Object.create(null), JSON.parse(variablesJson));
      const state = { line: 0 };
      let output;
      try {
        output = render(locals, ESCAPES[part], include, state);
        output = typeof output === 'string' ? output : output === undefined || output === null ? '' : String(output);
      } catch (error) {
        const line = state.line; // read once: the template may have made it a getter
        return { error: 'ETEMPLATE_RUNTIME', part, message: describe(error), line: Number.isInteger(line) && line > 0 ? line : 0 };
      }
      result[['subject', 'html', 'text'][part]] = output;
    }
    return result;
  };
})`;
