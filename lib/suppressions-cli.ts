// `mailplane suppressions import|export`: a tenant's suppression list moved in and out as CSV
// through the API (POST /v1/suppressions/import, GET /v1/suppressions/export), since the teams who
// own a list hold an API key, not the database. Both stream: a file of millions of rows is never
// held whole, and a progress line on stderr says how far it has got.

import { once } from 'node:events';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { UserError } from './user-error.js';

type Env = Record<string, string | undefined>;

export const SUPPRESSIONS_USAGE = `Usage: mailplane suppressions import -f <file.csv|->
       mailplane suppressions export [-o <file.csv>] [--reason <reason>]

Moves the tenant's suppression list in and out as CSV, through the API: the tenant is the API
key's. The CSV's first row names its columns: address, and optionally reason (bounce,
complaint, unsubscribe or manual; manual when empty) and detail; export writes
address,reason,detail,created_at, which import takes back. Import keeps the good rows, reports
each bad one by its line, and exits 1 if there was any. An address suppressed already keeps its
reason. A progress line goes to stderr.

Options:
  -f, --filename <path>    import: the CSV file, or - for standard input
  -o, --output <path>      export: the file to write (standard output by default)
      --reason <reason>    export: only suppressions for this reason
      --api-url <url>      the api's base URL ($MAILPLANE_API_URL)
      --api-key <key>      an API key of the tenant, mp_live_… ($MAILPLANE_API_KEY); import
                           needs the send scope, export the read scope
  -h, --help               this help`;

/** How often the progress line is redrawn on a terminal, and written as a new line elsewhere. */
const TTY_PROGRESS_MS = 200;
const LOG_PROGRESS_MS = 5000;

/**
 * Runs the command; answers the exit code.
 *
 *   await suppressionsCommand(['import', '-f', 'list.csv'], process.env);
 */
export async function suppressionsCommand(
  args: string[],
  env: Env,
  io: { stdin: Readable; stdout: Writable; stderr: Writable & { isTTY?: boolean } } = process,
): Promise<number> {
  const [action, ...rest] = args;
  const { values } = parse(rest);
  if (action === undefined) {
    io.stderr.write(`${SUPPRESSIONS_USAGE}\n`);
    return 2;
  }
  if (values.help || action === '--help' || action === '-h') {
    io.stdout.write(`${SUPPRESSIONS_USAGE}\n`);
    return 0;
  }
  if (action !== 'import' && action !== 'export') {
    throw new UserError(`suppressions: unknown action "${action}" (import or export)`);
  }
  const api = apiOf(values, env);
  return action === 'import' ? importCsv(api, values.filename, io) : exportCsv(api, values, io);
}

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      options: {
        filename: { type: 'string', short: 'f' },
        output: { type: 'string', short: 'o' },
        reason: { type: 'string' },
        'api-url': { type: 'string' },
        'api-key': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new UserError(`suppressions: ${(err as Error).message}\n\n${SUPPRESSIONS_USAGE}`);
  }
}

interface Api {
  url: string;
  key: string;
}

function apiOf(values: { 'api-url'?: string; 'api-key'?: string }, env: Env): Api {
  const url = (values['api-url'] ?? env.MAILPLANE_API_URL ?? '').replace(/\/+$/, '');
  const key = values['api-key'] ?? env.MAILPLANE_API_KEY ?? '';
  const missing = [
    ...(url ? [] : ['the api URL (--api-url or MAILPLANE_API_URL)']),
    ...(key ? [] : ['an API key (--api-key or MAILPLANE_API_KEY)']),
  ];
  if (missing.length > 0) throw new UserError(`suppressions needs ${missing.join(' and ')}`);
  if (!/^https?:\/\//.test(url)) throw new UserError(`the api URL must start with http(s)://, got "${url}"`);
  return { url, key };
}

/** A progress line: redrawn in place on a terminal, a line now and then in a log. */
function progress(stderr: Writable & { isTTY?: boolean }) {
  const tty = Boolean(stderr.isTTY);
  let last = 0;
  return {
    update(text: string, force = false) {
      const now = Date.now();
      if (!force && now - last < (tty ? TTY_PROGRESS_MS : LOG_PROGRESS_MS)) return;
      last = now;
      stderr.write(tty ? `\r\x1b[K${text}` : `${text}\n`);
    },
    done(text: string) {
      stderr.write(tty ? `\r\x1b[K${text}\n` : `${text}\n`);
    },
  };
}

const count = (n: number) => n.toLocaleString('en-US');

/** Counts lines and bytes as they pass. */
function counter(onChunk: (lines: number, bytes: number) => void): Transform {
  let lines = 0;
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
      onChunk(lines, bytes);
      callback(null, chunk);
    },
  });
}

/** fetch, with an api that cannot be reached said in one line. */
async function reach(api: Api, url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new UserError(
      `cannot reach the api at ${api.url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
    );
  }
}

async function failure(res: Response, what: string): Promise<UserError> {
  const text = await res.text();
  let detail = text.slice(0, 500);
  try {
    detail = String((JSON.parse(text) as { detail?: unknown }).detail ?? detail);
  } catch {
    // not a problem document: its text says it
  }
  return new UserError(`${what}: the api answered ${res.status}: ${detail}`);
}

async function importCsv(
  api: Api,
  filename: string | undefined,
  io: { stdin: Readable; stderr: Writable & { isTTY?: boolean } },
): Promise<number> {
  if (!filename) throw new UserError('suppressions import needs -f <file.csv|->');
  let size: number | undefined;
  let source: Readable;
  if (filename === '-') source = io.stdin;
  else {
    try {
      size = statSync(filename).size;
    } catch {
      throw new UserError(`${filename}: no such file or directory`);
    }
    source = createReadStream(filename);
  }
  const line = progress(io.stderr);
  let sent = { lines: 0, bytes: 0 };
  const said = () =>
    `sent ${count(sent.lines)} lines${size ? ` (${Math.floor((100 * sent.bytes) / Math.max(size, 1))}%)` : ''}`;
  const counted = source.pipe(
    counter((lines, bytes) => {
      sent = { lines, bytes };
      line.update(said());
    }),
  );
  source.on('error', (err) => counted.destroy(err));
  const res = await reach(api, `${api.url}/v1/suppressions/import`, {
    method: 'POST',
    headers: { authorization: `Bearer ${api.key}`, 'content-type': 'text/csv' },
    body: Readable.toWeb(counted) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  line.update(said(), true);
  if (!res.ok) throw await failure(res, 'import');
  const result = (await res.json()) as {
    added: number;
    existing: number;
    rejected: number;
    errors: { line: number; message: string }[];
  };
  line.done(
    `imported ${filename === '-' ? 'standard input' : filename}: ${count(result.added)} added, ` +
      `${count(result.existing)} already suppressed, ${count(result.rejected)} rejected`,
  );
  for (const e of result.errors) io.stderr.write(`  line ${e.line}: ${e.message}\n`);
  if (result.rejected > result.errors.length) {
    io.stderr.write(`  … and ${count(result.rejected - result.errors.length)} more\n`);
  }
  return result.rejected > 0 ? 1 : 0;
}

async function exportCsv(
  api: Api,
  values: { output?: string; reason?: string },
  io: { stdout: Writable; stderr: Writable & { isTTY?: boolean } },
): Promise<number> {
  const query = values.reason ? `?reason=${encodeURIComponent(values.reason)}` : '';
  const res = await reach(api, `${api.url}/v1/suppressions/export${query}`, {
    headers: { authorization: `Bearer ${api.key}` },
  });
  if (!res.ok || !res.body) throw await failure(res, 'export');
  const line = progress(io.stderr);
  let rows = 0;
  const target = values.output ? createWriteStream(values.output) : io.stdout;
  const counted = counter((lines) => {
    // The header row is not a suppression.
    rows = Math.max(lines - 1, 0);
    line.update(`received ${count(rows)} suppressions`);
  });
  if (values.output) {
    await pipeline(Readable.fromWeb(res.body as never), counted, target);
  } else {
    // Standard output stays open for whatever the shell does next.
    await pipeline(Readable.fromWeb(res.body as never), counted, async (chunks: AsyncIterable<Buffer>) => {
      for await (const chunk of chunks) if (!io.stdout.write(chunk)) await once(io.stdout, 'drain');
    });
  }
  line.done(`exported ${count(rows)} suppressions${values.output ? ` to ${values.output}` : ''}`);
  return 0;
}
