// What every way in to the accept path shares, for the routes that speak another vendor's API
// (api/sendgrid.ts, api/postmark.ts): a request translated into Mailplane's send shape is checked
// by the same checkSendRequest as POST /v1/emails, its From domain and template resolved in the
// caller's tenant the same way, and queued by the same acceptor under the same Idempotency-Key
// rules; only the shapes of the answers differ, so each route passes its own renderer. POST
// /v1/emails prepares with the same createPreparer.

import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import { formatMailbox } from '../lib/address.js';
import {
  abandonIdempotent,
  beginIdempotent,
  completeIdempotent,
  type Receipt,
} from '../lib/db/idempotency.js';
import type { Db } from '../lib/db/index.js';
import { withCurrentVersion } from '../lib/db/templates.js';
import type { Metrics } from '../lib/metrics.js';
import { Problem } from '../lib/problem.js';
import type { Acceptor, PreparedEmail } from '../lib/send/accept.js';
import { createDomainResolver } from '../lib/send/checks.js';
import { principalOf, type Principal } from './auth.js';
import { idempotentRequest } from './idempotency.js';
import { checkSendRequest, fromDomain, type Limits } from './validate.js';

export interface SendCoreDeps {
  db: Db;
  acceptor: Acceptor;
  metrics: Metrics;
  limits: Limits;
}

/** An answer as the route renders it: kept as the Idempotency-Key's receipt, replayed as it was. */
export interface Answer {
  status: number;
  body: unknown;
}

/** Prepares one send for the accept path, or throws the Problem POST /v1/emails would answer. */
export type Prepare = (principal: Principal, body: unknown, prefix?: string) => Promise<PreparedEmail>;

/**
 * The template a send names is not one of the tenant's: a 422 like any fault of the request, of
 * its own class because Postmark's callers branch on its own code (1101).
 */
export class TemplateNotFound extends Problem {}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The preparation of every send: checkSendRequest under the tenant's recipient limit, 403 for
 * a From domain the tenant does not own, the template's current version pinned.
 *
 *   const prepare = createPreparer(deps);
 *   const email = await prepare(principalOf(req), { from, to, subject, text });
 */
export function createPreparer(deps: Pick<SendCoreDeps, 'db' | 'limits'>): Prepare {
  const { db } = deps;
  const domainOfTenant = createDomainResolver(db);
  return async (principal, body, prefix = '') => {
    const limits = {
      ...deps.limits,
      maxRecipients: principal.limits.maxRecipients ?? deps.limits.maxRecipients,
    };
    const send = checkSendRequest(body, limits, prefix);
    const domainName = fromDomain(send);
    const domainId = await domainOfTenant(principal.tenantId, domainName);
    if (!domainId) {
      throw new Problem(403, 'domain-not-owned', `${domainName} is not a sending domain of this tenant.`, [
        { field: `${prefix}from`, message: `add a SendingDomain for ${domainName} first` },
      ]);
    }
    const content = send.content;
    if (send.template) {
      const byId = UUID.test(send.template.ref);
      const template = await withCurrentVersion(db)
        .select(['templates.id', 'templates.current_version'])
        .where('templates.tenant_id', '=', principal.tenantId)
        .where(byId ? 'templates.id' : 'templates.name', '=', send.template.ref)
        .executeTakeFirst();
      if (!template) {
        throw new TemplateNotFound(
          422,
          'validation-error',
          `No template "${send.template.ref}" in this tenant.`,
          [{ field: `${prefix}template.id`, message: 'names no Template of this tenant' }],
        );
      }
      // The version is pinned now: a template edited after acceptance does not change this email.
      content.template = {
        id: template.id,
        version: template.current_version,
        variables: send.template.variables,
      };
    }
    return {
      id: randomUUID(),
      tenantId: principal.tenantId,
      domainId,
      from: formatMailbox(send.from),
      // A template's subject is rendered for each message as it is sent.
      subject: send.template ? '' : content.subject,
      content,
      recipients: send.recipients,
      scheduledAt: send.scheduledAt,
    };
  };
}

/**
 * Queues the emails with the request's receipt, or records the receipt alone when there is nothing
 * to queue (a batch whose every email was refused, a SendGrid sandbox send); counts what it queued.
 */
export async function acceptAll(
  deps: SendCoreDeps,
  principal: Principal,
  emails: PreparedEmail[],
  receipt: Receipt | undefined,
): Promise<void> {
  if (emails.length > 0) await deps.acceptor.accept(emails, receipt);
  else if (receipt) await completeIdempotent(deps.db, receipt);
  deps.metrics.accepted.inc(
    { tenant: principal.tenant },
    emails.reduce((n, e) => n + e.recipients.length, 0),
  );
}

/**
 * Answers a send under its Idempotency-Key, as POST /v1/emails does: `handle` checks, queues and
 * returns the answer (handing `receiptFor`'s receipt to the acceptor); a replay gets the first
 * answer, rendered the same way with `replayed` set; a refused request frees its key.
 */
export async function answerIdempotently(
  db: Db,
  req: Request,
  res: Response,
  handle: (receiptFor?: (answer: Answer) => Receipt) => Promise<Answer>,
  render: (res: Response, answer: Answer) => void,
): Promise<void> {
  const principal = principalOf(req);
  const idem = idempotentRequest(req, principal.tenantId);
  if (idem) {
    const begun = await beginIdempotent(db, idem);
    if (begun.kind === 'replay') {
      res.set('Idempotent-Replayed', 'true');
      render(res, { status: begun.status, body: begun.body });
      return;
    }
  }
  let answer: Answer;
  try {
    answer = await handle(idem && ((a) => ({ ...idem, status: a.status, body: a.body })));
  } catch (err) {
    // Nothing was queued: the key is free for a corrected retry.
    if (idem) await abandonIdempotent(db, idem).catch(() => {});
    throw err;
  }
  render(res, answer);
}
