// /v1/broadcasts in Resend's shapes, so that its SDK's broadcasts.create, list, get, update, send,
// cancel and remove work unchanged: a draft written once, sent (now or at a time) to every contact
// of a segment who has not unsubscribed, each contact getting an email of their own with one-click
// unsubscribe (RFC 8058) always on. The fan-out is the sender's (sender/broadcast-task.ts); GET shows
// its progress. Another tenant's broadcast is as absent as one that never existed.
//
// Reading needs `read`; everything else `send`, since a broadcast mails people. Every change runs
// under the key that made it, so the audit log (written by the trigger on broadcasts) names it.
//
// Sending is refused when no one-click unsubscribe link can be offered from the From domain
// (neither its spec.tracking.domain nor MAILPLANE_PUBLIC_URL): Gmail and Yahoo require it of bulk
// senders, so a broadcast never goes out without it.

import { Router, type Request } from 'express';
import { domainOf, parseMailbox } from '../lib/address.js';
import { withAuditContext } from '../lib/db/audit.js';
import { getSegment } from '../lib/db/contacts.js';
import {
  cancelBroadcast,
  createBroadcast,
  deleteBroadcast,
  getBroadcast,
  listBroadcasts,
  queueBroadcast,
  updateDraft,
  type BroadcastKey,
  type BroadcastSummaryRow,
} from '../lib/db/broadcasts.js';
import type { Db } from '../lib/db/index.js';
import type { Broadcast as BroadcastRow, BroadcastStatus } from '../lib/db/schema.js';
import { Problem } from '../lib/problem.js';
import { createDomainResolver } from '../lib/send/checks.js';
import { unsubscribeBase } from '../lib/unsubscribe.js';
import { principalOf, requireScope } from './auth.js';
import { hasNoBody } from './json-body.js';
import {
  parseCreate,
  parseListQuery,
  parseSend,
  parseUpdate,
  type Broadcast,
  type BroadcastList,
  type BroadcastSummary,
} from './schemas-broadcasts.js';

export interface BroadcastsDeps {
  db: Db;
  /** The installation's public URL (config.publicUrl), where unsubscribe links go without a tracking domain. */
  publicUrl?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** What each refused change needs, in the words of its 409. */
const NEEDS = {
  update: 'Only a draft can be changed',
  send: 'Only a draft can be sent',
  delete: 'Only a draft or a scheduled broadcast can be deleted (cancel one that is going out)',
  cancel: 'Only a scheduled, queued or sending broadcast can be canceled',
};

/**
 * The routes, under /v1 after its body parser and authentication.
 *
 *   v1.use(broadcastsRouter({ db, publicUrl: config.publicUrl }));
 */
export function broadcastsRouter(deps: BroadcastsDeps): Router {
  const { db } = deps;
  const router = Router();
  const domainOfTenant = createDomainResolver(db);

  const audited = <T>(req: Request, fn: (trx: Db) => Promise<T>): Promise<T> =>
    withAuditContext(db, { actor: `api_key:${principalOf(req).keyName}`, requestId: req.id }, fn);

  const keyOf = (req: Request): BroadcastKey => {
    const id = String(req.params.id);
    if (!UUID.test(id)) throw notFound(id);
    return { tenantId: principalOf(req).tenantId, id: id.toLowerCase() };
  };

  /** The tenant's broadcast that `:id` names, or a 404. */
  const broadcastOf = async (req: Request): Promise<BroadcastRow> => {
    const key = keyOf(req);
    const row = await getBroadcast(db, key);
    if (!row) throw notFound(key.id);
    return row;
  };

  /** 403 for a From domain that is not the tenant's, as POST /v1/emails answers. */
  const checkFrom = async (tenantId: string, from: string) => {
    const domain = domainOf(parseMailbox(from).address);
    const domainId = await domainOfTenant(tenantId, domain);
    if (!domainId) {
      throw new Problem(403, 'domain-not-owned', `${domain} is not a sending domain of this tenant.`, [
        { field: 'from', message: `add a SendingDomain for ${domain} first` },
      ]);
    }
    return domainId;
  };

  /** A 422 unless the segment is the tenant's. */
  const checkSegment = async (tenantId: string, segmentId: string) => {
    if (!(await getSegment(db, tenantId, segmentId))) {
      throw new Problem(422, 'validation-error', 'segment_id: names no segment of this tenant', [
        { field: 'segment_id', message: 'names no segment of this tenant' },
      ]);
    }
  };

  /**
   * What a send needs beyond a draft: a From domain still the tenant's, a segment, and a one-click
   * unsubscribe link to offer (see the opening paragraph).
   */
  const checkSendable = async (row: BroadcastRow) => {
    const domainId = await checkFrom(row.tenant_id, row.from_address);
    if (!row.segment_id) {
      throw new Problem(422, 'validation-error', 'segment_id: its segment was deleted; name another', [
        { field: 'segment_id', message: 'its segment was deleted' },
      ]);
    }
    const domain = await db
      .selectFrom('domains')
      .select(['name', 'tracking_domain'])
      .where('id', '=', domainId)
      .executeTakeFirstOrThrow();
    if (!unsubscribeBase(domain.tracking_domain, deps.publicUrl)) {
      throw new Problem(
        422,
        'unsubscribe-unavailable',
        `A broadcast goes out only with one-click unsubscribe (RFC 8058), and ${domain.name} cannot offer ` +
          `a link: set spec.tracking.domain on its SendingDomain, or MAILPLANE_PUBLIC_URL for the ` +
          'installation.',
      );
    }
  };

  router.post('/broadcasts', requireScope('send'), async (req, res) => {
    const principal = principalOf(req);
    const { draft, send, at } = parseCreate(req.body, Date.now());
    await checkFrom(principal.tenantId, draft.from);
    await checkSegment(principal.tenantId, draft.segmentId);
    const row = await audited(req, async (trx) => {
      const created = await createBroadcast(trx, principal.tenantId, draft);
      if (!send) return created;
      await checkSendable(created);
      return (await queueBroadcast(trx, { tenantId: principal.tenantId, id: created.id }, at))!;
    });
    res.status(201).location(`/v1/broadcasts/${row.id}`).json({ id: row.id });
  });

  router.get('/broadcasts', requireScope('read'), async (req, res) => {
    const principal = principalOf(req);
    const page = parseListQuery(req.query);
    const listed = await listBroadcasts(db, principal.tenantId, page);
    if (!listed) {
      const field = page.after !== undefined ? 'after' : 'before';
      throw new Problem(422, 'validation-error', `${field}: names no broadcast of this tenant`, [
        { field, message: 'names no broadcast of this tenant' },
      ]);
    }
    const body: BroadcastList = {
      object: 'list',
      has_more: listed.hasMore,
      data: listed.rows.map(summaryView),
    };
    res.json(body);
  });

  router.get('/broadcasts/:id', requireScope('read'), async (req, res) => {
    const row = await broadcastOf(req);
    res.json(broadcastView(row));
  });

  router.patch('/broadcasts/:id', requireScope('send'), async (req, res) => {
    // PATCH is not among the verbs jsonBody reads as {} without a body; one that is not JSON is a 415.
    if (req.body === undefined && !hasNoBody(req)) {
      throw new Problem(415, 'unsupported-media-type', 'Send the body as application/json.');
    }
    const current = await broadcastOf(req);
    if (current.status !== 'draft') throw notChangeable(current.id, current.status, NEEDS.update);
    const changes = parseUpdate(req.body, current);
    if (changes.from !== undefined) await checkFrom(current.tenant_id, changes.from);
    if (changes.segmentId !== undefined) await checkSegment(current.tenant_id, changes.segmentId);
    const key = { tenantId: current.tenant_id, id: current.id };
    const row = await audited(req, (trx) => updateDraft(trx, key, changes));
    if (!row) throw await refusal(key, NEEDS.update);
    res.json({ id: row.id });
  });

  router.delete('/broadcasts/:id', requireScope('send'), async (req, res) => {
    const key = keyOf(req);
    const outcome = await audited(req, (trx) => deleteBroadcast(trx, key));
    if (outcome === 'not-found') throw notFound(key.id);
    if (outcome !== 'deleted') throw notChangeable(key.id, outcome, NEEDS.delete);
    res.json({ object: 'broadcast', id: key.id, deleted: true });
  });

  router.post('/broadcasts/:id/send', requireScope('send'), async (req, res) => {
    const current = await broadcastOf(req);
    const at = parseSend(req.body, Date.now());
    if (current.status !== 'draft') throw notChangeable(current.id, current.status, NEEDS.send);
    await checkSendable(current);
    const key = { tenantId: current.tenant_id, id: current.id };
    const row = await audited(req, (trx) => queueBroadcast(trx, key, at));
    if (!row) throw await refusal(key, NEEDS.send);
    res.status(202).json({ id: row.id });
  });

  router.post('/broadcasts/:id/cancel', requireScope('send'), async (req, res) => {
    const key = keyOf(req);
    const outcome = await audited(req, (trx) => cancelBroadcast(trx, key));
    if (outcome === 'not-found') throw notFound(key.id);
    if (typeof outcome === 'string') throw notChangeable(key.id, outcome, NEEDS.cancel);
    res.json({ object: 'broadcast', id: key.id });
  });

  /** After a change that found nothing to change: gone meanwhile, or no longer a draft. */
  const refusal = async (key: BroadcastKey, needs: string): Promise<Problem> => {
    const row = await getBroadcast(db, key);
    return row ? notChangeable(key.id, row.status, needs) : notFound(key.id);
  };

  return router;
}

const notFound = (id: string) => new Problem(404, 'not-found', `No broadcast ${id.slice(0, 64)}.`);

function notChangeable(id: string, status: BroadcastStatus, needs: string): Problem {
  return new Problem(409, 'broadcast-not-changeable', `${needs}; broadcast ${id} is ${status}.`);
}

/**
 * GET /v1/broadcasts/{id} in Resend's shape, with the fan-out's progress as the chunks count it:
 * reading it costs one row however large the broadcast (its messages' statuses are GET
 * /v1/stats by its tag).
 */
export function broadcastView(row: BroadcastRow): Broadcast {
  return {
    object: 'broadcast',
    id: row.id,
    name: row.name,
    segment_id: row.segment_id,
    audience_id: row.segment_id,
    from: row.from_address,
    subject: row.subject,
    reply_to: row.reply_to.length > 0 ? row.reply_to : null,
    preview_text: row.preview_text,
    html: row.html,
    text: row.text,
    topic_id: null,
    status: row.status,
    created_at: row.created_at.toISOString(),
    scheduled_at: row.scheduled_at?.toISOString() ?? null,
    sent_at: row.sent_at?.toISOString() ?? null,
    failure: row.failure,
    progress: { emails: row.created_count },
  };
}

/** One broadcast of GET /v1/broadcasts. */
export function summaryView(row: BroadcastSummaryRow): BroadcastSummary {
  return {
    id: row.id,
    name: row.name,
    segment_id: row.segment_id,
    audience_id: row.segment_id,
    status: row.status,
    created_at: row.created_at.toISOString(),
    scheduled_at: row.scheduled_at?.toISOString() ?? null,
    sent_at: row.sent_at?.toISOString() ?? null,
  };
}
