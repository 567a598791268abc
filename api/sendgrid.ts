// SendGrid's v3 `POST /v3/mail/send`, so that an application on @sendgrid/mail moves by changing
// its base URL and key: the Mailplane key as `Authorization: Bearer`, the body in SendGrid's shape
// (api/sendgrid-request.ts translates it), each personalization one email through the same checks,
// tenant, limits and accept path as POST /v1/emails, all of them queued or none. It answers as
// SendGrid does: 202 with no body and the (first) email's id in X-Message-Id, 200 for a sandbox
// send, which is checked and not queued, and every refusal as `{"errors":[{message, field, help}]}`
// under SendGrid's status (400 where /v1 answers 422).

import express, { type NextFunction, type Request, type Response } from 'express';
import type { PreparedEmail } from '../lib/send/accept.js';
import { authenticate, principalOf, requireScope } from './auth.js';
import { jsonBody } from './json-body.js';
import { problemOf, RETRY_AFTER_SECONDS } from './problems.js';
import {
  acceptAll,
  answerIdempotently,
  createPreparer,
  type Answer,
  type SendCoreDeps,
} from './send-core.js';
import { translateSendGrid } from './sendgrid-request.js';
import { uniqueFaults } from './vendor-fields.js';
import { describeFaults } from './validate.js';
import { Problem, type FieldError } from '../lib/problem.js';

export interface SendGridDeps extends SendCoreDeps {
  /** The largest JSON body read, as under /v1; also what the emails of one request may hold. */
  maxBodyBytes: number;
}

/** The receipt of an accepted send: what its answer, and a replay of it, are rendered from. */
interface Sent {
  ids: string[];
}

/** SendGrid answers a fault of the request with 400 where Mailplane answers 422. */
const SENDGRID_STATUS: Record<number, number> = { 422: 400 };

/**
 * The router of /v3/mail/send; its parser, authentication and error shape apply to that route
 * alone, so that nothing else outside /v1 changes.
 *
 *   app.use(sendgridRouter({ db, acceptor, metrics, limits, maxBodyBytes }));
 */
export function sendgridRouter(deps: SendGridDeps): express.Router {
  const { db } = deps;
  const prepare = createPreparer(deps);
  const router = express.Router();

  router.post(
    '/v3/mail/send',
    ...jsonBody({ limit: deps.maxBodyBytes }),
    authenticate(db),
    requireScope('send'),
    (req, res) =>
      answerIdempotently(
        db,
        req,
        res,
        async (receiptFor) => {
          const principal = principalOf(req);
          const { emails, sandbox } = translateSendGrid(req.body, { maxTotalBytes: deps.maxBodyBytes });
          const prepared: PreparedEmail[] = [];
          const errors: FieldError[] = [];
          let status = 0;
          let first: Problem | undefined;
          for (const { body, names } of emails) {
            try {
              prepared.push(await prepare(principal, body));
            } catch (err) {
              if (!(err instanceof Problem)) throw err;
              status = Math.max(status, err.status);
              first ??= err;
              // A fault of a field is named by it; a refusal of the email (403, 413) by its detail.
              errors.push(
                ...(err.type === 'validation-error'
                  ? names.rename(err.errors ?? [])
                  : [{ field: names.name(err.errors?.[0]?.field ?? '(body)'), message: err.detail }]),
              );
            }
          }
          if (first) {
            const unique = uniqueFaults(errors);
            throw new Problem(status, first.type, describeFaults(unique), unique);
          }
          const answer: Answer = { status: sandbox ? 200 : 202, body: { ids: prepared.map((e) => e.id) } };
          await acceptAll(deps, principal, sandbox ? [] : prepared, receiptFor?.(answer));
          return answer;
        },
        renderSent,
      ),
  );

  router.use(sendgridErrors());
  return router;
}

/** 202 (or a sandbox's 200) with no body, as SendGrid answers; the first email's id as its message id. */
function renderSent(res: Response, answer: Answer): void {
  const { ids } = answer.body as Sent;
  if (ids[0]) res.set('X-Message-Id', ids[0]);
  res.status(answer.status).end();
}

/**
 * Every refusal of the route in SendGrid's shape. `help` is null, as SendGrid's often is: the
 * message says what to change.
 */
function sendgridErrors() {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const problem = problemOf(err, req);
    const status = SENDGRID_STATUS[problem.status] ?? problem.status;
    const errors = problem.errors?.length
      ? problem.errors.map((e) => ({
          message: e.message,
          field: e.field === '(body)' ? null : e.field,
          help: null,
        }))
      : [{ message: problem.detail, field: null, help: null }];
    if (status === 503 || status === 429) res.set('Retry-After', String(RETRY_AFTER_SECONDS));
    res.status(status).json({ errors });
  };
}
