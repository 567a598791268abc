// /v1/webhooks in Resend's shapes, so that its SDK's webhooks.create, list, get, update, remove,
// rotateSigningSecret and events.list, get and replay work unchanged: an application team with an
// API key registers, changes and removes its endpoints, reads the log of deliveries, and replays
// the events it missed during its own outage. An endpoint declared in a Tenant (source 'tenant')
// is read-only here. Another tenant's endpoint is as absent as one that never existed.
//
// Reading needs `read`. Changing needs `send` and `read` both: a key that can say where events go
// can read every recipient and subject of the tenant's (replay them to a URL of its own), so it
// must be one already trusted to read them; and `send` because changes here, like a cancel, act.

import { Router, type Request, type Response } from 'express';
import { encrypt } from '../lib/crypto.js';
import type { Db } from '../lib/db/index.js';
import {
  createEndpoint,
  deleteEndpoint,
  getDelivery,
  getEndpoint,
  listAttempts,
  listDeliveries,
  listEndpoints,
  loadDelivery,
  MAX_ENDPOINTS_PER_TENANT,
  REPLAY_MAX_EVENTS,
  replayEvents,
  rotateSecret,
  updateEndpoint,
  type AttemptRow,
  type DeliveryRow,
  type EndpointKey,
  type EndpointRow,
  type PageOf,
} from '../lib/db/webhooks.js';
import { Problem } from '../lib/problem.js';
import { newWebhookSecret, webhookPayload, type WebhookEventType } from '../lib/webhooks.js';
import { principalOf, requireScope } from './auth.js';
import type {
  DeletedWebhook,
  ReplayedDelivery,
  Webhook,
  WebhookAttempt,
  WebhookDelivery,
  WebhookDeliveryWithPayload,
  WebhookPayload,
  WebhookReplay,
  WebhookWithSecret,
} from './schemas.js';
import { withAuditContext } from '../lib/db/audit.js';
import { hasNoBody } from './json-body.js';
import { parseCreate, parsePage, parseReplay, parseUpdate } from './webhook-requests.js';

export interface WebhooksDeps {
  db: Db;
  /** Encrypts each endpoint's signing secret at rest (config.secretKey). */
  secretKey: Buffer;
  /** MAILPLANE_WEBHOOKS_ALLOW_PRIVATE: plain http and private addresses are taken. */
  allowPrivate: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Delivery ids are bigserials; eighteen digits stay inside bigint. */
const DELIVERY_ID = /^[0-9]{1,18}$/;

/** Changing a webhook: see the opening paragraph. */
const MANAGE = [requireScope('send'), requireScope('read')];

/**
 * Runs a change so that the audit log names the key that made it and the request (the log is
 * written by triggers: see lib/db/audit.ts).
 */
function auditedBy(db: Db) {
  return <T>(req: Request, fn: (trx: Db) => Promise<T>): Promise<T> => {
    const principal = principalOf(req);
    return withAuditContext(db, { actor: `api_key:${principal.keyName}`, requestId: req.id }, fn);
  };
}

export function webhooksRouter(deps: WebhooksDeps): Router {
  const { db } = deps;
  const router = Router();
  const audited = auditedBy(db);

  /** The tenant's endpoint that `:id` names, or a 404. */
  const endpointOf = async (req: Request): Promise<EndpointRow & { key: EndpointKey }> => {
    const key = { tenantId: principalOf(req).tenantId, id: String(req.params.id) };
    const row = UUID.test(key.id) ? await getEndpoint(db, key) : undefined;
    if (!row) throw new Problem(404, 'not-found', `No webhook ${key.id}.`);
    return { ...row, key };
  };

  /** As endpointOf, for a change: an endpoint declared in a Tenant is a 403. */
  const changeableOf = async (req: Request): Promise<EndpointKey> => {
    const endpoint = await endpointOf(req);
    if (endpoint.source === 'tenant') {
      throw new Problem(
        403,
        'webhook-read-only',
        `Webhook ${endpoint.id}${endpoint.name ? ` ("${endpoint.name}")` : ''} is declared in the Tenant ` +
          `resource ${principalOf(req).tenant} (spec.webhooks): change it there, not through the API.`,
      );
    }
    return endpoint.key;
  };

  /** After a change that found nothing: the endpoint went away meanwhile. */
  const gone = (key: EndpointKey) => new Problem(404, 'not-found', `No webhook ${key.id}.`);

  router.post('/webhooks', ...MANAGE, async (req, res) => {
    const principal = principalOf(req);
    const request = parseCreate(req.body, deps);
    // Shown once, in this answer; only its encrypted envelope is kept. (Resend's get shows it again;
    // here a key that may only read must not learn what signs.)
    const secret = newWebhookSecret();
    const row = await audited(req, (trx) =>
      createEndpoint(trx, {
        tenantId: principal.tenantId,
        ...request,
        secret: encrypt(deps.secretKey, secret),
      }),
    );
    if (!row) {
      throw new Problem(
        422,
        'validation-error',
        `A tenant has at most ${MAX_ENDPOINTS_PER_TENANT} webhooks; delete one before adding another.`,
        [{ field: '(body)', message: `this tenant has ${MAX_ENDPOINTS_PER_TENANT} webhooks already` }],
      );
    }
    res.status(201).location(`/v1/webhooks/${row.id}`).json(secretView(row, secret));
  });

  router.get('/webhooks', requireScope('read'), async (req, res) => {
    const page = parsePage(req.query, 'uuid');
    res.json(listView(await listEndpoints(db, principalOf(req).tenantId, page), webhookView));
  });

  router.get('/webhooks/:id', requireScope('read'), async (req, res) => {
    res.json(webhookView(await endpointOf(req)));
  });

  router.patch('/webhooks/:id', ...MANAGE, async (req, res) => {
    // PATCH is not among the verbs jsonBody reads as {} without a body; one that is not JSON is a 415.
    if (req.body === undefined && !hasNoBody(req)) {
      throw new Problem(415, 'unsupported-media-type', 'Send the body as application/json.');
    }
    const key = await changeableOf(req);
    const changes = parseUpdate(req.body, deps);
    const row = await audited(req, (trx) => updateEndpoint(trx, key, changes));
    if (!row) throw gone(key);
    res.json(webhookView(row));
  });

  router.delete('/webhooks/:id', ...MANAGE, async (req, res) => {
    const key = await changeableOf(req);
    if (!(await audited(req, (trx) => deleteEndpoint(trx, key)))) throw gone(key);
    res.json(deletedView(key.id));
  });

  // Resend's path for rotateSigningSecret.
  router.post('/webhooks/:id/signing-secret/rotate', ...MANAGE, async (req, res) => {
    const key = await changeableOf(req);
    const secret = newWebhookSecret();
    const row = await audited(req, (trx) => rotateSecret(trx, key, encrypt(deps.secretKey, secret)));
    if (!row) throw gone(key);
    res.json(secretView(row, secret));
  });

  // The log of deliveries; `events` is Resend's path for it (webhooks.events.list).
  const deliveries = async (req: Request, res: Response) => {
    const endpoint = await endpointOf(req);
    const page = parsePage(req.query, 'serial');
    res.json(listView(await listDeliveries(db, endpoint.key, page), deliveryView));
  };
  router.get('/webhooks/:id/deliveries', requireScope('read'), deliveries);
  router.get('/webhooks/:id/events', requireScope('read'), deliveries);

  /** The endpoint's delivery that `:eventId` names, or a 404. */
  const deliveryOf = async (req: Request, endpoint: EndpointKey): Promise<DeliveryRow> => {
    const id = String(req.params.eventId);
    const row = DELIVERY_ID.test(id) ? await getDelivery(db, endpoint, id) : undefined;
    if (!row) throw new Problem(404, 'not-found', `No event ${id} of webhook ${endpoint.id}.`);
    return row;
  };

  // One delivery with the body it sends (webhooks.events.get).
  router.get('/webhooks/:id/events/:eventId', requireScope('read'), async (req, res) => {
    const endpoint = await endpointOf(req);
    const delivery = await deliveryOf(req, endpoint.key);
    const sent = await loadDelivery(db, delivery.id);
    if (!sent || sent.orphaned) {
      throw new Problem(404, 'not-found', `No event ${delivery.id} of webhook ${endpoint.id}.`);
    }
    res.json(deliveryWithPayloadView(delivery, webhookPayload({ ...sent, createdAt: sent.eventCreatedAt })));
  });

  // Each attempt of one delivery (webhooks.events.attempts.list).
  router.get('/webhooks/:id/events/:eventId/attempts', requireScope('read'), async (req, res) => {
    const endpoint = await endpointOf(req);
    const delivery = await deliveryOf(req, endpoint.key);
    const page = parsePage(req.query, 'serial');
    res.json(listView(await listAttempts(db, delivery.id, page), attemptView));
  });

  /** Replay is recovery, not a change of the endpoint: a Tenant's endpoints take it too. */
  const replayable = async (req: Request): Promise<EndpointRow & { key: EndpointKey }> => {
    const endpoint = await endpointOf(req);
    if (!endpoint.enabled) {
      throw new Problem(
        409,
        'webhook-disabled',
        `Webhook ${endpoint.id} is disabled (${endpoint.disabled_reason ?? 'no reason recorded'}); ` +
          'enable it first, or the replayed events would not be sent.',
      );
    }
    return endpoint;
  };

  // One delivery's event again, as a new delivery (webhooks.events.replay).
  router.post('/webhooks/:id/events/:eventId/replay', ...MANAGE, async (req, res) => {
    const endpoint = await replayable(req);
    const delivery = await deliveryOf(req, endpoint.key);
    const replayed = await replayEvents(db, endpoint.key, { deliveryId: delivery.id });
    if (!replayed.lastDeliveryId) {
      throw new Problem(
        422,
        'validation-error',
        `The webhook no longer subscribes to ${delivery.type}; nothing was replayed.`,
        [{ field: 'eventId', message: `${delivery.type} is not among the webhook's events` }],
      );
    }
    res.status(202).json(replayedView(replayed.lastDeliveryId));
  });

  // The events of one email or of a time range, again: the recovery after an application's outage.
  router.post('/webhooks/:id/replay', ...MANAGE, async (req, res) => {
    const endpoint = await replayable(req);
    const filter = parseReplay(req.body);
    const replayed = await replayEvents(db, endpoint.key, filter);
    if (replayed.matched > REPLAY_MAX_EVENTS) {
      throw new Problem(
        422,
        'validation-error',
        `More than ${REPLAY_MAX_EVENTS} events match; nothing was replayed. Replay shorter ranges.`,
        [{ field: 'to', message: `brings the range over ${REPLAY_MAX_EVENTS} events` }],
      );
    }
    if (replayed.matched === 0 && 'emailId' in filter) {
      const email = await db
        .selectFrom('emails')
        .select('id')
        .where('id', '=', filter.emailId)
        .where('tenant_id', '=', endpoint.key.tenantId)
        .executeTakeFirst();
      if (!email) {
        throw new Problem(422, 'validation-error', `email_id: names no email of this tenant`, [
          { field: 'email_id', message: 'names no email of this tenant' },
        ]);
      }
    }
    res.status(202).json(replayView(endpoint.id, replayed.queued));
  });

  return router;
}

/** A webhook in Resend's shape (api/schemas.ts Webhook), its secrets left out. */
export function webhookView(row: EndpointRow): Webhook {
  const overlap = row.previous_secret_expires_at;
  return {
    object: 'webhook',
    id: row.id,
    endpoint: row.url,
    events: row.events.length === 0 ? null : (row.events as WebhookEventType[]),
    status: row.enabled ? 'enabled' : 'disabled',
    disabled_reason: row.enabled ? null : row.disabled_reason,
    source: row.source,
    name: row.name,
    previous_secret_expires_at: overlap && overlap.getTime() > Date.now() ? overlap.toISOString() : null,
    failing_since: row.failing_since?.toISOString() ?? null,
    paused_until:
      row.paused_until && row.paused_until.getTime() > Date.now() ? row.paused_until.toISOString() : null,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

/** Create and rotate: the webhook and its new secret, which is never shown again. */
export function secretView(row: EndpointRow, secret: string): WebhookWithSecret {
  return { ...webhookView(row), signing_secret: secret };
}

export function deletedView(id: string): DeletedWebhook {
  return { object: 'webhook', id, deleted: true };
}

/** Resend's list envelope (api/schemas.ts WebhookList, WebhookDeliveryList). */
export interface List<T> {
  object: 'list';
  has_more: boolean;
  data: T[];
}

export function listView<R, T>(page: PageOf<R>, view: (row: R) => T): List<T> {
  return { object: 'list', has_more: page.hasMore, data: page.rows.map(view) };
}

/** One event sent (or being sent) to one webhook, as Resend's WebhookEventLog (api/schemas.ts). */
export function deliveryView(row: DeliveryRow): WebhookDelivery {
  return {
    object: 'webhook_event',
    id: row.id,
    // Written only as WEBHOOK_TYPE_SQL maps an event, one of WEBHOOK_EVENT_TYPES.
    type: row.type as WebhookEventType,
    status:
      row.status === 'delivered'
        ? 'success'
        : row.status === 'failed'
          ? 'failed'
          : row.attempts > 0
            ? 'attempting'
            : 'pending',
    email_id: row.email_id,
    attempts: row.attempts,
    next_attempt_at: row.next_attempt_at?.toISOString() ?? null,
    response_status: row.response_status,
    response_excerpt: row.response_excerpt,
    latency_ms: row.latency_ms,
    error: row.error,
    replay: row.replay,
    created_at: row.created_at.toISOString(),
    delivered_at: row.delivered_at?.toISOString() ?? null,
  };
}

/** GET /v1/webhooks/{id}/events/{eventId}: the delivery and the body it sends. */
export function attemptView(row: AttemptRow): WebhookAttempt {
  return {
    id: String(row.attempt),
    http_status_code: row.response_status,
    response: row.response_excerpt ?? row.error ?? '',
    error: row.error,
    latency_ms: row.latency_ms,
    sent_at: row.sent_at?.toISOString() ?? null,
  };
}

export function deliveryWithPayloadView(
  row: DeliveryRow,
  payload: Record<string, unknown>,
): WebhookDeliveryWithPayload {
  // lib/webhooks.ts builds the body as the schema describes it; test/openapi.test.ts holds the two
  // together on real deliveries.
  return { ...deliveryView(row), payload: payload as WebhookPayload };
}

/** POST /v1/webhooks/{id}/events/{eventId}/replay: the event's new delivery. */
export function replayedView(deliveryId: string): ReplayedDelivery {
  return { object: 'webhook_event', id: deliveryId };
}

/** POST /v1/webhooks/{id}/replay: how many events were queued again. */
export function replayView(webhookId: string, queued: number): WebhookReplay {
  return { object: 'webhook_replay', webhook_id: webhookId, queued };
}
