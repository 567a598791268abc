// The template sandbox: renders tenants' ejs templates (subject, html, text) inside V8 isolates
// with a heap limit and a per-render time limit, so that template code, which is untrusted
// JavaScript, cannot read the sender's environment or files, reach the network, or stall or crash
// the worker. ejs turns a template into JavaScript source here in the host (parsing, never
// running it); the source is evaluated and run only inside an isolate, and only strings cross the
// boundary: template code and variables as JSON going in, rendered text or an error coming out.
//
// Each isolate and its one context serve many renders, because creating them costs about 2 ms and
// 0.5 ms, more than a render. Templates of different tenants therefore share a realm, and the
// bootstrap below freezes every object in it, so that no template can leave state behind for the
// next one (a patched String.prototype.replace would silently turn off escaping for everyone; a
// global could collect other tenants' variables).
//
// Tenants share the isolates fairly. A Renderer keeps P isolates (`isolates`, default 2), each
// running one render at a time; renders wait in a FIFO queue per tenant, tenants are served round
// robin, and no tenant holds more than max(1, P − 1) isolates at once. The bound: a render waits
// behind at most one render of each other tenant that has renders queued, each bounded by the time
// limit, never behind another tenant's backlog (with n such tenants it starts within
// ⌈(n + 1) / P⌉ × timeoutMs; see FairRenderer); and with P ≥ 2, one tenant's looping templates
// always leave an isolate to the others.
//
// What comes out is bounded as well (`maxOutputBytes`, the message size limit). Strings built by
// concatenation are ropes that cost V8 almost nothing, so a 32 MiB heap holds a 64-million
// character result, whose copy to the host would cost hundreds of MB; its length is checked inside
// the isolate, before anything is copied out.
//
// And a process that exits while isolated-vm still works on an isolate waits for it (exitGuard),
// where it would die of a segmentation fault.

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
  'ETEMPLATE_COMPILE' | 'ETEMPLATE_RUNTIME' | 'ETEMPLATE_TIMEOUT' | 'ETEMPLATE_MEMORY' | 'ETEMPLATE_OUTPUT';
export type TemplatePart = 'subject' | 'html' | 'text';

/**
 * A template's fault: it does not compile, throws, runs too long, uses too much memory or renders
 * more than the output limit. Rendering it again will fail again, so the message fails rather than
 * retries. Any other error from a Renderer (a plain Error) is the sandbox's own trouble and worth a
 * retry.
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
  /** Heap limit of each isolate in MiB (isolated-vm's minimum is 8), e.g. config.renderMemoryMb. */
  memoryMb: number;
  /**
   * Largest output of one render, subject + html + text in UTF-8 bytes: the sender passes
   * config.maxMessageBytes, since a bigger render could not be sent anyway. Default 10 MiB, that
   * limit's default.
   */
  maxOutputBytes?: number;
  /**
   * Isolates that render at once, e.g. config.renderIsolates; each may use memoryMb. Default 2, the
   * fewest with which one tenant's slow templates cannot stall the others (see FairRenderer).
   */
  isolates?: number;
  /**
   * Called when V8 loses control of an isolate (isolated-vm's onCatastrophicError). Its memory is
   * then unrecoverable; isolated-vm's advice is to log, finish outstanding work and exit.
   */
  onCatastrophicError?: (message: string) => void;
}

export interface RenderOptions {
  /** Whose render this is, e.g. message.tenantId. Renders that name none share one queue. */
  tenant?: string;
}

export interface Renderer {
  /** Compiles every part; throws RenderError (ETEMPLATE_COMPILE with the line at fault) if one does not compile. */
  compile(source: TemplateSource): void;
  /** Renders every present part with the variables (plain JSON data), in the tenant's turn. */
  render(
    source: TemplateSource,
    variables: Record<string, unknown>,
    options?: RenderOptions,
  ): Promise<Rendered>;
  /** Disposes every isolate; renders queued or under way reject with "the renderer is disposed". */
  dispose(): void;
}

const PARTS: readonly TemplatePart[] = ['subject', 'html', 'text'];

/** The default of `isolates`: see RendererOptions. */
const DEFAULT_ISOLATES = 2;

/** The default of `maxOutputBytes`: config.maxMessageBytes' default. */
const DEFAULT_MAX_OUTPUT_BYTES = 10 * 1024 * 1024;

/** The tenant of renders that name none: they take their turns as one tenant. */
const SHARED_TENANT = '';

/** Compiled templates kept per isolate. Hot templates are few; the bound only stops unbounded growth. */
const CACHE_ENTRIES = 500;

/**
 * Share of the heap that cached template code may take. V8 keeps each function's source and its
 * string constants on the heap, so a 50 kB HTML template costs over 100 kB; without this bound,
 * 500 large templates would outgrow the limit and kill the isolate under an innocent render.
 */
const CACHE_HEAP_SHARE = 1 / 4;

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
 * Creates a renderer with its own isolates (each started when first needed). Throws if Node runs
 * with its startup snapshot, which isolated-vm cannot live with (see assertNoNodeSnapshot).
 *
 *   const renderer = createRenderer({
 *     timeoutMs: config.renderTimeoutMs,
 *     memoryMb: config.renderMemoryMb,
 *     maxOutputBytes: config.maxMessageBytes,
 *     isolates: config.renderIsolates,
 *   });
 *   const { subject, html, text } = await renderer.render(
 *     { key: 'welcome:3', subject: 'Hi <%= name %>', html: '<p>Hi <%= name %></p>' },
 *     { name: 'Ada' },
 *     { tenant: message.tenantId },
 *   );
 */
export function createRenderer(options: RendererOptions): Renderer {
  assertNoNodeSnapshot();
  const { isolates = DEFAULT_ISOLATES, maxOutputBytes = DEFAULT_MAX_OUTPUT_BYTES } = options;
  if (!Number.isInteger(isolates) || isolates < 1) {
    throw new RangeError(`isolates must be an integer ≥ 1, got ${isolates}`);
  }
  if (!Number.isInteger(maxOutputBytes) || maxOutputBytes < 1) {
    throw new RangeError(`maxOutputBytes must be an integer ≥ 1, got ${maxOutputBytes}`);
  }
  return new FairRenderer({ ...options, maxOutputBytes }, isolates);
}

/**
 * isolated-vm needs Node's startup snapshot off from Node 20 on: V8 shares read-only heap data
 * between the isolates of a process, which crashes it when they start from different snapshots
 * (laverdet/isolated-vm#420). Refusing to start says so at once, where the crash would come only
 * now and then, and say nothing.
 */
function assertNoNodeSnapshot(): void {
  const flag = '--no-node-snapshot';
  const off =
    (process.config.variables as Record<string, unknown>).node_use_node_snapshot === false ||
    process.execArgv.includes(flag) ||
    (process.env.NODE_OPTIONS ?? '').split(/\s+/).includes(flag);
  if (!off) {
    throw new Error(
      `the template sandbox (isolated-vm) needs Node's startup snapshot off: run node ${flag} or set NODE_OPTIONS=${flag}`,
    );
  }
}

type Limits = Required<Pick<RendererOptions, 'timeoutMs' | 'memoryMb' | 'maxOutputBytes'>> &
  Pick<RendererOptions, 'onCatastrophicError'>;

interface Job {
  source: TemplateSource;
  variablesJson: string;
  resolve: (rendered: Rendered) => void;
  reject: (err: unknown) => void;
}

/**
 * The scheduler in front of the isolates. A render goes into its tenant's FIFO queue; whenever an
 * isolate is idle, the first tenant in the round that holds fewer than max(1, P − 1) isolates gives
 * its oldest render, and goes to the back of the round.
 *
 * Bound: take a render at the head of its tenant's queue, its tenant holding fewer than its share.
 * Of the other tenants' renders, at most one per tenant that has renders queued starts before it
 * (a tenant served goes behind it in the round), never another tenant's backlog; and a render holds
 * its isolate for at most timeoutMs (plus the host's few ms to compile a template new to that
 * isolate, or to replace an isolate killed at its memory limit). So every isolate comes free at
 * least once per timeoutMs, and with n such tenants the render starts within ⌈(n + 1) / P⌉ ×
 * timeoutMs. And since no tenant holds more than P − 1 isolates, a tenant with nothing running,
 * while only one other tenant is busy (however many of its templates loop), starts at once.
 */
class FairRenderer implements Renderer {
  private readonly runners: readonly IsolateRunner[];
  /**
   * Idle isolates, taken last in first out, so that a light load keeps to one warm isolate and its
   * template cache, and the others start only when renders overlap.
   */
  private readonly idle: IsolateRunner[];
  /** Queued renders of each tenant that has any, in the order tenants are served (a Map keeps it). */
  private readonly queues = new Map<string, Job[]>();
  /** Isolates each tenant's renders are running on. */
  private readonly holding = new Map<string, number>();
  private readonly share: number;
  private disposed = false;

  constructor(limits: Limits, isolates: number) {
    this.runners = Array.from({ length: isolates }, () => new IsolateRunner(limits));
    this.idle = [...this.runners];
    this.share = Math.max(1, isolates - 1);
  }

  compile(source: TemplateSource): void {
    translate(source);
  }

  async render(
    source: TemplateSource,
    variables: Record<string, unknown>,
    options: RenderOptions = {},
  ): Promise<Rendered> {
    if (this.disposed) throw new Error('the renderer is disposed');
    const variablesJson = JSON.stringify(variables ?? {});
    const tenant = options.tenant ?? SHARED_TENANT;
    return new Promise((resolve, reject) => {
      const job = { source, variablesJson, resolve, reject };
      const queue = this.queues.get(tenant);
      if (queue) queue.push(job);
      else this.queues.set(tenant, [job]);
      this.schedule();
    });
  }

  dispose(): void {
    this.disposed = true;
    const queued = [...this.queues.values()].flat();
    this.queues.clear();
    // Renders under way reject as their isolate goes (IsolateRunner.render).
    for (const runner of this.runners) runner.dispose();
    for (const job of queued) job.reject(new Error('the renderer is disposed'));
  }

  /** Starts queued renders on idle isolates until either runs out. */
  private schedule(): void {
    while (!this.disposed && this.idle.length > 0) {
      const next = this.next();
      if (next === undefined) return;
      const [tenant, job] = next;
      const runner = this.idle.pop() as IsolateRunner;
      this.holding.set(tenant, (this.holding.get(tenant) ?? 0) + 1);
      void this.run(runner, tenant, job);
    }
  }

  /** Takes the oldest render of the first tenant in the round under its share; the tenant goes to the back. */
  private next(): [string, Job] | undefined {
    for (const [tenant, queue] of this.queues) {
      if ((this.holding.get(tenant) ?? 0) >= this.share) continue;
      const job = queue.shift();
      this.queues.delete(tenant);
      if (queue.length > 0) this.queues.set(tenant, queue);
      if (job) return [tenant, job];
    }
    return undefined;
  }

  private async run(runner: IsolateRunner, tenant: string, job: Job): Promise<void> {
    try {
      job.resolve(await runner.render(job.source, job.variablesJson));
    } catch (err) {
      job.reject(err);
    } finally {
      const held = (this.holding.get(tenant) ?? 1) - 1;
      if (held > 0) this.holding.set(tenant, held);
      else this.holding.delete(tenant);
      this.idle.push(runner);
      this.schedule();
    }
  }
}

interface Sandbox {
  isolate: ivm.Isolate;
  dispatch: ivm.Reference<Dispatch>;
  /**
   * Where the isolate writes the part it is rendering, so that a timeout or an out-of-memory kill,
   * which leave no reply, name the part at fault. One cell: an isolate runs one render at a time.
   */
  progress: Int32Array;
}

/** Signature of the isolate-side dispatcher (BOOTSTRAP); sources are given only to load a key. */
type Dispatch = (
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

/** One isolate, started on its first render and again after it died, running one render at a time. */
class IsolateRunner {
  private sandbox: Sandbox | undefined;
  private call: Call | undefined;
  private disposed = false;

  constructor(private readonly limits: Limits) {}

  async render(source: TemplateSource, variablesJson: string): Promise<Rendered> {
    // A second attempt only when the isolate died under this render for no fault of the template's.
    for (let attempt = 0; ; attempt++) {
      const sandbox = this.current();
      sandbox.progress[0] = 0;
      try {
        let reply = await this.dispatch(sandbox, [source.key, variablesJson]);
        if ('miss' in reply) {
          const [subject, html, text] = translate(source);
          reply = await this.dispatch(sandbox, [source.key, variablesJson, subject, html, text]);
        }
        return this.result(reply);
      } catch (err) {
        if (err instanceof RenderError) throw err;
        const message = err instanceof Error ? err.message : String(err);
        const part = PARTS[sandbox.progress[0] ?? 0] ?? 'subject';
        if (message === TIMEOUT_MESSAGE) {
          throw new RenderError(
            'ETEMPLATE_TIMEOUT',
            part,
            `${part}: rendering took longer than ${this.limits.timeoutMs} ms`,
          );
        }
        if (sandbox.isolate.isDisposed) {
          tornDown();
          if (this.sandbox === sandbox) this.sandbox = undefined;
          // isolated-vm: "Isolate was disposed during execution due to memory limit".
          if (/memory limit/i.test(message)) {
            throw new RenderError(
              'ETEMPLATE_MEMORY',
              part,
              `${part}: rendering used more than ${this.limits.memoryMb} MiB of memory`,
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
    if (this.sandbox && !this.sandbox.isolate.isDisposed) {
      this.sandbox.isolate.dispose();
      tornDown();
      // Terminated with its isolate: the teardown is what is left to wait for.
      if (this.call) exitGuard.calls.delete(this.call);
    }
    this.sandbox = undefined;
  }

  /** A call into the isolate, which the exit guard knows of while it runs. */
  private async dispatch(sandbox: Sandbox, args: Parameters<Dispatch>): Promise<Reply> {
    const call = (this.call = { deadline: performance.now() + this.limits.timeoutMs });
    guardExit();
    exitGuard.calls.add(call);
    try {
      const options = { timeout: this.limits.timeoutMs, result: { copy: true } } as const;
      return (await sandbox.dispatch.apply(undefined, args, options)) as Reply;
    } finally {
      exitGuard.calls.delete(call);
      this.call = undefined;
    }
  }

  private result(reply: Reply): Rendered {
    if ('error' in reply) {
      const part = PARTS[reply.part] ?? 'subject';
      const where = reply.line ? `${part} line ${reply.line}` : part;
      throw new RenderError(reply.error, part, `${where}: ${reply.message}`, reply.line || undefined);
    }
    if ('miss' in reply) throw new Error('template sandbox lost a template it had just loaded');
    // The isolate bounded the length in UTF-16 code units; a unit can take up to 3 bytes in UTF-8.
    let total = 0;
    for (const part of PARTS) {
      const text = reply[part];
      if (text === undefined) continue;
      const bytes = Buffer.byteLength(text);
      total += bytes;
      if (total > this.limits.maxOutputBytes) {
        throw new RenderError(
          'ETEMPLATE_OUTPUT',
          part,
          `${part}: rendered output is over the limit of ${this.limits.maxOutputBytes} bytes: ` +
            `${part} has ${bytes} bytes, ${total} with the parts before it`,
        );
      }
    }
    const rendered: Rendered = { subject: oneLine(reply.subject) };
    if (reply.html !== undefined) rendered.html = reply.html;
    if (reply.text !== undefined) rendered.text = reply.text;
    return rendered;
  }

  /** The live sandbox, or a new one if there is none or the last one died (memory limit). */
  private current(): Sandbox {
    if (this.disposed) throw new Error('the renderer is disposed');
    if (this.sandbox && !this.sandbox.isolate.isDisposed) return this.sandbox;
    this.sandbox = createSandbox(this.limits);
    return this.sandbox;
  }
}

/**
 * How long isolated-vm may go on tearing an isolate down, on a thread of its own, after it was
 * disposed (by dispose() or at its memory limit): about 10 ms for a 32 MiB heap, under 30 ms for the
 * 500 MB that flattening a rope briefly takes past the limit; this allows several times that.
 */
const TEARDOWN_MS = 250;

/** A call into an isolate under way, which may run until its deadline (performance.now()). */
interface Call {
  deadline: number;
}

/**
 * Keeps the process from exiting while isolated-vm still works on an isolate on one of its
 * threads. process.exit() disposes Node's V8 platform before the C++ exit handlers run; an isolate
 * being torn down or running a call then dies with the platform, and the process with a
 * segmentation fault (exiting right after a memory-limit kill crashed 39 times in 40; exiting with
 * a call under way, 30 in 30). isolated-vm waits for its isolates only when Node frees its
 * environment, which a natural exit does and process.exit() skips, and it tells no one when a
 * teardown ends; so an 'exit' listener blocks for what may be left: TEARDOWN_MS after the last
 * teardown began, and the calls under way until their time limit and a teardown after it.
 */
const exitGuard = { listening: false, teardownAt: -Infinity, calls: new Set<Call>() };

function guardExit(): void {
  if (exitGuard.listening) return;
  exitGuard.listening = true;
  process.on('exit', waitForIsolates);
}

function tornDown(): void {
  guardExit();
  exitGuard.teardownAt = performance.now();
}

function waitForIsolates(): void {
  let until = exitGuard.teardownAt + TEARDOWN_MS;
  for (const call of exitGuard.calls) until = Math.max(until, call.deadline + TEARDOWN_MS);
  const wait = Math.ceil(until - performance.now());
  // An 'exit' listener cannot wait for a timer; Atomics.wait sleeps without one.
  if (wait > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait);
}

/**
 * Starts an isolate and runs BOOTSTRAP in a fresh context. Synchronous (a few ms, only at start and
 * after an isolate died), so that concurrent renders cannot race to create two.
 */
function createSandbox(limits: Limits): Sandbox {
  const isolate = new ivm.Isolate({
    memoryLimit: limits.memoryMb,
    onCatastrophicError: (message) => limits.onCatastrophicError?.(message),
  });
  try {
    const context = isolate.createContextSync();
    const script = isolate.compileScriptSync(BOOTSTRAP, { filename: 'mailplane:bootstrap' });
    const bootstrap = script.runSync(context, { reference: true }) as ivm.Reference<
      (progress: SharedArrayBuffer, entries: number, bytes: number, maxOutput: number) => Dispatch
    >;
    const buffer = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
    const cacheBytes = Math.floor(limits.memoryMb * 1024 * 1024 * CACHE_HEAP_SHARE);
    // The shared buffer is plain memory, not an object of the host realm; it stays in the
    // bootstrap's closure, out of templates' reach.
    const progress = new ivm.ExternalCopy(buffer).copyInto();
    const dispatch = bootstrap.applySync(
      undefined,
      [progress, CACHE_ENTRIES, cacheBytes, limits.maxOutputBytes],
      { result: { reference: true } },
    ) as ivm.Reference<Dispatch>;
    return { isolate, dispatch, progress: new Int32Array(buffer) };
  } catch (err) {
    if (!isolate.isDisposed) isolate.dispose();
    tornDown();
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
 * Runs once in each new context; evaluates to a function that takes the shared progress buffer,
 * the cache bounds and the output limit, and returns the dispatcher. Everything it keeps lives in this closure, not in
 * globals, where templates could reach it.
 *
 * The dispatcher renders the parts of template `key` with the variables (a JSON string), loading
 * the key from the sources it is given (the bodies made by translatePart), or answering `{miss}`
 * when it has not got the key and was given none. It returns plain strings only: the rendered
 * parts, or `{error, part, message, line}`. Output over the limit is an error: the length of a
 * string, even a rope, is known without building it, and a UTF-16 code unit takes at least one
 * byte in UTF-8, so a length over the limit proves the output too big before it is copied out (the
 * host then counts the bytes of what passed).
 */
const BOOTSTRAP = String.raw`(function bootstrap(progressBuffer, cacheEntries, cacheBytes, maxOutput) {
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
  // The length of a value <%= %> refused to print, for the dispatcher: one longer than the output
  // limit cannot fit, and escaping it would first flatten it, which V8 does past the heap limit
  // (that is checked after an allocation): a rope of 64 million characters takes 64 MB flat.
  let overflow = 0;
  const printable = (value) => {
    const text = value === undefined || value === null ? '' : String(value);
    if (text.length > maxOutput) {
      overflow = text.length;
      throw new RangeError('rendered output is over the limit of ' + maxOutput + ' bytes');
    }
    return text;
  };
  const escapeHtml = (value) => printable(value).replace(HTML_SPECIAL, (c) => HTML_ESCAPES[c]);
  // Subject and text are not HTML: entities would reach the reader as "&amp;". <%= %> there
  // prints the value as it is (header encoding is the MIME builder's job).
  const escapeNone = (value) => printable(value);
  const ESCAPES = [escapeNone, escapeHtml, escapeNone];
  const PART_NAMES = ['subject', 'html', 'text'];
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

  return function dispatch(key, variablesJson, subject, html, text) {
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
    let total = 0;
    for (let part = 0; part < functions.length; part++) {
      const render = functions[part];
      if (render === null) continue;
      progress[0] = part;
      // Parsed again for each part, so that what one part changes the next does not see; a
      // null-prototype copy, so that bare names cannot resolve to Object.prototype (as ejs does).
      const locals = Object.assign(Object.create(null), JSON.parse(variablesJson));
      const state = { line: 0 };
      const name = PART_NAMES[part];
      let output;
      let line = 0;
      overflow = 0;
      try {
        output = render(locals, ESCAPES[part], include, state);
        output = typeof output === 'string' ? output : output === undefined || output === null ? '' : String(output);
      } catch (error) {
        line = state.line; // read once: the template may have made it a getter
        line = Number.isInteger(line) && line > 0 ? line : 0;
        if (overflow === 0) return { error: 'ETEMPLATE_RUNTIME', part, message: describe(error), line };
      }
      // Even if the template caught the escape's error: it tried to print more than fits.
      if (overflow > 0) {
        const message = 'rendered output is over the limit of ' + maxOutput + ' bytes: ' + name +
          ' prints a value of ' + overflow + ' characters';
        return { error: 'ETEMPLATE_OUTPUT', part, message, line };
      }
      // A length over the limit proves the output too big: a UTF-16 code unit takes a byte or more.
      total += output.length;
      if (total > maxOutput) {
        const message = 'rendered output is over the limit of ' + maxOutput + ' bytes: ' + name + ' has ' +
          output.length + ' characters, ' + total + ' with the parts before it';
        return { error: 'ETEMPLATE_OUTPUT', part, message };
      }
      result[name] = output;
    }
    return result;
  };
})`;
