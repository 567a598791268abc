// /v1/suppressions: the tenant's suppression list without SQL. List (in address order, filtered by
// reason or address), add one or many, lift one, and import and export CSV, both streamed: an
// import is read and written a batch at a time, whatever its size, and an export is written as the
// list is read. Every change runs under the key that made it, so the audit log (written by the
// trigger on suppressions) names it and the request.
//
// Reading needs `read`; changing needs `send`, because lifting a suppression is what lets mail go
// to an address again. A suppression that came from a complaint is lifted only with
// `?lift_complaint=true`: the recipient said the mail was spam, and mailing them again harms the
// reputation of every tenant of the installation.

import { once } from 'node:events';
import { parse, type CsvError, type Info } from 'csv-parse';
import { pipeline } from 'node:stream';
import { Router, type Request } from 'express';
import { withAuditContext } from '../lib/db/audit.js';
import type { Db } from '../lib/db/index.js';
import { SUPPRESSION_REASONS, type SuppressionReason } from '../lib/db/schema.js';
import {
  addSuppressions,
  getSuppression,
  liftSuppression,
  listSuppressions,
  walkSuppressions,
  type NewSuppression,
  type SuppressionRow,
} from '../lib/db/suppressions.js';
import { Problem } from '../lib/problem.js';
import { authenticate, principalOf, requireScope } from './auth.js';
import { parseRequest } from './requests.js';
import { unstorable } from './schemas-checks.js';
import {
  LiftSuppressionQuery,
  MAX_DETAIL,
  parseAdd,
  parseExportQuery,
  parseListQuery,
  suppressionAddress,
  type AddedSuppressions,
  type LiftedSuppression,
  type Suppression,
  type SuppressionImport,
  type SuppressionList,
} from './schemas-suppressions.js';
import type { z } from 'zod';

/** Rows of an import written per statement: large enough to be fast, small enough to stay short. */
const IMPORT_BATCH = 2000;
/** Faults an import answer lists; the rest are counted. */
const MAX_LISTED_ERRORS = 100;
/** A row longer than this is not a suppression (an address, a reason and a note). */
const MAX_ROW_BYTES = 4096;
/** The columns of an export, and of an import without a header row. */
const COLUMNS = ['address', 'reason', 'detail', 'created_at'] as const;

/** Runs a change under the key that makes it (see the opening paragraph). */
function audited<T>(db: Db, req: Request, fn: (trx: Db) => Promise<T>): Promise<T> {
  return withAuditContext(db, { actor: `api_key:${principalOf(req).keyName}`, requestId: req.id }, fn);
}

export function suppressionView(row: SuppressionRow): z.infer<typeof Suppression> {
  return {
    object: 'suppression',
    address: row.address,
    reason: row.reason,
    detail: row.detail,
    created_at: row.created_at.toISOString(),
  };
}

/** The address a path names, lower-cased, or a 404: no malformed address is suppressed. */
function addressParam(req: Request): string {
  const raw = String(req.params.address);
  const parsed = suppressionAddress(raw);
  if (typeof parsed !== 'string') throw notFound(raw);
  return parsed;
}

const notFound = (address: string) =>
  new Problem(404, 'not-found', `${address.slice(0, 254)} is not suppressed for this tenant.`);

/**
 * The JSON routes, under /v1 after its body parser and authentication.
 *
 *   v1.use(suppressionsRouter(db));
 */
export function suppressionsRouter(db: Db): Router {
  const router = Router();

  router.get('/suppressions', requireScope('read'), async (req, res) => {
    const { filter, page } = parseListQuery(req.query);
    const { rows, hasMore } = await listSuppressions(db, principalOf(req).tenantId, filter, page);
    const body: z.infer<typeof SuppressionList> = {
      object: 'list',
      has_more: hasMore,
      data: rows.map(suppressionView),
    };
    res.json(body);
  });

  router.get('/suppressions/export', requireScope('read'), async (req, res) => {
    const filter = parseExportQuery(req.query);
    const pages = walkSuppressions(db, principalOf(req).tenantId, filter);
    // The first page is read before the answer starts: a database that cannot be read is a 503,
    // not a CSV cut short.
    let page = await pages.next();
    res.status(200);
    res.type('text/csv; charset=utf-8');
    res.set('Content-Disposition', 'attachment; filename="suppressions.csv"');
    res.write(csvLine(COLUMNS));
    while (!page.done) {
      const chunk = page.value
        .map((r) => csvLine([r.address, r.reason, inert(r.detail ?? ''), r.created_at.toISOString()]))
        .join('');
      // A client that reads slowly holds the walk back; one that went away stops it.
      if (!res.write(chunk)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
      if (res.destroyed) break;
      page = await pages.next();
    }
    res.end();
  });

  router.get('/suppressions/:address', requireScope('read'), async (req, res) => {
    const address = addressParam(req);
    const row = await getSuppression(db, principalOf(req).tenantId, address);
    if (!row) throw notFound(address);
    res.json(suppressionView(row));
  });

  router.post('/suppressions', requireScope('send'), async (req, res) => {
    const items: NewSuppression[] = parseAdd(req.body);
    const rows = await audited(db, req, (trx) => addSuppressions(trx, principalOf(req).tenantId, items));
    const body: z.infer<typeof AddedSuppressions> = {
      object: 'list',
      data: rows.map((row) => ({ ...suppressionView(row), added: row.added })),
    };
    res.json(body);
  });

  router.delete('/suppressions/:address', requireScope('send'), async (req, res) => {
    const address = addressParam(req);
    const query = parseRequest(LiftSuppressionQuery, req.query);
    const lifted = await audited(db, req, (trx) =>
      liftSuppression(trx, principalOf(req).tenantId, address, {
        liftComplaint: query.lift_complaint === 'true',
      }),
    );
    if (lifted.outcome === 'not-found') throw notFound(address);
    if (lifted.outcome === 'complaint') {
      throw new Problem(
        409,
        'suppression-from-complaint',
        `${address} is suppressed because its recipient complained (marked the mail as spam). Mailing ` +
          'them again harms the delivery of every sender here; if they asked to be mailed again, ' +
          `lift it with DELETE /v1/suppressions/${encodeURIComponent(address)}?lift_complaint=true.`,
      );
    }
    const body: z.infer<typeof LiftedSuppression> = {
      object: 'suppression',
      address,
      reason: lifted.row!.reason,
      deleted: true,
    };
    res.json(body);
  });

  return router;
}

/**
 * POST /v1/suppressions/import, a text/csv body streamed: under /v1 before the JSON body parser,
 * with its own authentication.
 *
 *   v1.use(suppressionsImportRouter(db));
 */
export function suppressionsImportRouter(db: Db): Router {
  const router = Router();
  router.post('/suppressions/import', authenticate(db), requireScope('send'), async (req, res) => {
    if (!req.is(['text/csv', 'text/plain', 'application/csv'])) {
      throw new Problem(
        415,
        'unsupported-media-type',
        'Send the list as text/csv: a header row `address,reason,detail` (reason and detail optional), ' +
          'then one address a row.',
      );
    }
    res.json(await importCsv(db, req));
  });
  return router;
}

/** Reads the body as CSV, writing each batch of good rows as it fills; bad rows are reported by line. */
async function importCsv(db: Db, req: Request): Promise<z.infer<typeof SuppressionImport>> {
  const tenantId = principalOf(req).tenantId;
  const result: z.infer<typeof SuppressionImport> = {
    object: 'suppression_import',
    added: 0,
    existing: 0,
    rejected: 0,
    errors: [],
  };
  const reject = (line: number, message: string) => {
    result.rejected++;
    if (result.errors.length < MAX_LISTED_ERRORS) result.errors.push({ line, message });
  };
  const parser = parse({
    bom: true,
    info: true,
    trim: true,
    skip_empty_lines: true,
    relax_column_count: true,
    skip_records_with_error: true,
    max_record_size: MAX_ROW_BYTES,
  });
  // A row the parser cannot read (an unclosed quote, an over-long row) is skipped and reported.
  parser.on('skip', (err: CsvError & { lines?: number }) => reject(err.lines ?? 0, err.message));
  // A request cut short destroys the parser with its error, which ends the loop below.
  pipeline(req, parser, () => {});

  let columns: ReturnType<typeof columnsOf> | undefined;
  let batch: NewSuppression[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const rows = await audited(db, req, (trx) => addSuppressions(trx, tenantId, batch));
    for (const row of rows) {
      if (row.added) result.added++;
      else result.existing++;
    }
    batch = [];
  };

  for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: Info }>) {
    if (!columns) {
      columns = columnsOf(record);
      if (columns.header) continue;
    }
    const row = rowOf(record, columns);
    if (typeof row === 'string') reject(info.lines, row);
    else batch.push(row);
    if (batch.length >= IMPORT_BATCH) await flush();
  }
  await flush();
  // The parser reports a row it cannot read as it reads ahead, before the rows before it are checked.
  result.errors.sort((a, b) => a.line - b.line);
  return result;
}

/** Where each column is: named by a header row, or address, reason, detail in that order. */
function columnsOf(first: string[]): Record<'address' | 'reason' | 'detail', number> & { header: boolean } {
  const names = first.map((f) => f.toLowerCase());
  if (!names.includes('address')) return { address: 0, reason: 1, detail: 2, header: false };
  return {
    address: names.indexOf('address'),
    reason: names.indexOf('reason'),
    detail: names.indexOf('detail'),
    header: true,
  };
}

function rowOf(
  record: string[],
  columns: Record<'address' | 'reason' | 'detail', number>,
): NewSuppression | string {
  const at = (i: number) => (i >= 0 ? (record[i] ?? '') : '');
  const address = suppressionAddress(at(columns.address));
  if (typeof address !== 'string') return `address: ${address.fault}`;
  const reason = at(columns.reason).toLowerCase() || 'manual';
  if (!(SUPPRESSION_REASONS as readonly string[]).includes(reason)) {
    return `reason: "${reason.slice(0, 64)}" is not one of ${SUPPRESSION_REASONS.join(', ')}`;
  }
  const detail = at(columns.detail);
  if (detail.length > MAX_DETAIL) return `detail: must be at most ${MAX_DETAIL} characters`;
  const unstorableWhy = unstorable(detail);
  if (unstorableWhy) return `detail: ${unstorableWhy}`;
  return { address, reason: reason as SuppressionReason, detail: detail || null };
}

/**
 * A detail is free text, often a remote server's words (a bounce's diagnostic): one a spreadsheet
 * would run as a formula (`=HYPERLINK(…)`) goes out behind an apostrophe, as OWASP advises.
 * Addresses and reasons are checked on the way in and need nothing.
 */
function inert(text: string): string {
  return /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
}

/** One CSV line (RFC 4180): a field with a comma, quote or line break is quoted. */
function csvLine(fields: readonly string[]): string {
  return fields.map((f) => (/[",\r\n]/.test(f) ? `"${f.replace(/"/g, '""')}"` : f)).join(',') + '\r\n';
}
