// /v1/segments in Resend's shapes, so that its SDK's segments.create, list, get, update and remove
// work unchanged, and the older /v1/audiences paths (an audience is a segment, answered as
// `object: 'audience'`). A segment is a named group of the tenant's contacts that a broadcast goes
// to; deleting it takes its memberships, never its contacts. Its contacts are listed at
// /v1/segments/{id}/contacts (api/contacts.ts). Another tenant's segment is as absent as one that
// never existed; every change runs under the key that made it, so the audit log names it.
//
// Reading needs `read`; changing needs `send`, as changing contacts does.

import { Router, type Request } from 'express';
import { withAuditContext } from '../lib/db/audit.js';
import { broadcastUsing } from '../lib/db/broadcasts.js';
import {
  createSegment,
  deleteSegment,
  getSegment,
  listSegments,
  renameSegment,
  type SegmentRow,
} from '../lib/db/contacts.js';
import type { Db } from '../lib/db/index.js';
import { Problem } from '../lib/problem.js';
import { principalOf, requireScope } from './auth.js';
import { hasNoBody } from './json-body.js';
import { parseListPage, parseSegmentInput, UUID, type SegmentSummaryView } from './schemas-contacts.js';

function audited<T>(db: Db, req: Request, fn: (trx: Db) => Promise<T>): Promise<T> {
  return withAuditContext(db, { actor: `api_key:${principalOf(req).keyName}`, requestId: req.id }, fn);
}

/** Which name a path uses, for the words of a 404 and the `object` of an answer. */
export type Kind = 'segment' | 'audience';

const notFound = (kind: Kind, id: string) =>
  new Problem(404, 'not-found', `No ${kind} ${id.slice(0, 64)} in this tenant.`);

/**
 * The tenant's segment that the path parameter `param` names, or a 404.
 *
 *   const segment = await segmentOf(db, req, 'audienceId');
 */
export async function segmentOf(
  db: Db,
  req: Request,
  param: 'id' | 'audienceId',
  kind: Kind = param === 'id' ? 'segment' : 'audience',
): Promise<SegmentRow> {
  const id = String(req.params[param]);
  const row = UUID.test(id) ? await getSegment(db, principalOf(req).tenantId, id.toLowerCase()) : undefined;
  if (!row) throw notFound(kind, id);
  return row;
}

/** A segment in a list (Resend's Segment). */
export function segmentSummaryView(row: SegmentRow): SegmentSummaryView {
  return { id: row.id, name: row.name, created_at: row.created_at.toISOString() };
}

/**
 * The JSON routes, under /v1 after its body parser and authentication.
 *
 *   v1.use(segmentsRouter(db));
 */
export function segmentsRouter(db: Db): Router {
  const router = Router();

  for (const kind of ['segment', 'audience'] as const) {
    const base = `/${kind}s`;

    router.post(base, requireScope('send'), async (req, res) => {
      const name = parseSegmentInput(req.body);
      const row = await audited(db, req, (trx) => createSegment(trx, principalOf(req).tenantId, name));
      res.status(201).location(`/v1${base}/${row.id}`).json({ object: kind, id: row.id, name: row.name });
    });

    router.get(base, requireScope('read'), async (req, res) => {
      const page = parseListPage(req.query, 'segments');
      const { rows, hasMore } = await listSegments(db, principalOf(req).tenantId, page);
      res.json({ object: 'list', has_more: hasMore, data: rows.map(segmentSummaryView) });
    });

    router.get(`${base}/:id`, requireScope('read'), async (req, res) => {
      const row = await segmentOf(db, req, 'id', kind);
      res.json({ object: kind, ...segmentSummaryView(row) });
    });

    router.delete(`${base}/:id`, requireScope('send'), async (req, res) => {
      const id = String(req.params.id);
      // A broadcast going out to it would lose its contacts mid-way (and fail): cancel it first.
      const using = UUID.test(id) && (await broadcastUsing(db, principalOf(req).tenantId, id.toLowerCase()));
      if (using) {
        throw new Problem(
          409,
          'segment-in-use',
          `Broadcast ${using} is going out to this ${kind}; cancel it first.`,
        );
      }
      const deleted =
        UUID.test(id) &&
        (await audited(db, req, (trx) => deleteSegment(trx, principalOf(req).tenantId, id.toLowerCase())));
      if (!deleted) throw notFound(kind, id);
      res.json({ object: kind, id: id.toLowerCase(), deleted: true });
    });
  }

  router.patch('/segments/:id', requireScope('send'), async (req, res) => {
    // PATCH is not among the verbs jsonBody reads as {} without a body; one that is not JSON is a 415.
    if (req.body === undefined && !hasNoBody(req)) {
      throw new Problem(415, 'unsupported-media-type', 'Send the body as application/json.');
    }
    const id = String(req.params.id);
    const name = parseSegmentInput(req.body);
    const row = UUID.test(id)
      ? await audited(db, req, (trx) => renameSegment(trx, principalOf(req).tenantId, id.toLowerCase(), name))
      : undefined;
    if (!row) throw notFound('segment', id);
    res.json({ object: 'segment', id: row.id });
  });

  return router;
}
