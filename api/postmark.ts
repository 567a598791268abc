// Postmark's sending API — `POST /email`, `/email/batch`, `/email/withTemplate` and
// `/email/batchWithTemplates` — so that an application on the `postmark` client moves by changing
// its host and token: the Mailplane key as X-Postmark-Server-Token (or Bearer), each message in
// Postmark's shape (api/postmark-request.ts translates it) through the same checks, tenant, limits
// and accept path as POST /v1/emails. It answers as Postmark does: 200 with
// `{To, SubmittedAt, MessageID, ErrorCode: 0, Message: 'OK'}` (a list of those for a batch, where
// each refused message has its own ErrorCode and the others are sent), and a refusal as
// `{ErrorCode, Message}` under Postmark's codes, mostly with HTTP 422, as Postmark's client reads
// them. One difference from /v1: as Postmark does, a message whose every recipient is suppressed
// is refused (406, inactive recipient) instead of accepted and then suppressed.

import express, { type NextFunction, type Request, type Response } from 'express';
import { Problem, type FieldError, type ProblemType } from '../lib/problem.js';
import type { PreparedEmail } from '../lib/send/accept.js';
import { suppressedAmong } from '../lib/send/checks.js';
import { authenticate, principalOf, requireScope, type Principal } from './auth.js';
import { jsonBody } from './json-body.js';
import { translatePostmark } from './postmark-request.js';
import { problemOf, RETRY_AFTER_SECONDS } from './problems.js';
import { MAX_BATCH } from './schemas-send.js';
import {
  acceptAll,
  answerIdempotently,
  createPreparer,
  TemplateNotFound,
  type Answer,
  type SendCoreDeps,
} from './send-core.js';
import { describeFaults } from './validate.js';
import { isObject, uniqueFaults } from './vendor-fields.js';

export interface PostmarkDeps extends SendCoreDeps {
  /** The largest JSON body read, as under /v1. */
  maxBodyBytes: number;
}

/** The header Postmark's clients send the server token in. */
export const SERVER_TOKEN_HEADER = 'x-postmark-server-token';

/** Postmark's ErrorCode numbers that Mailplane answers with (Postmark's API reference). */
export const PostmarkCode = {
  ok: 0,
  badToken: 10,
  maintenance: 100,
  invalidEmailRequest: 300,
  senderSignatureNotFound: 400,
  invalidJson: 402,
  incompatibleJson: 403,
  notAllowedToSend: 405,
  inactiveRecipient: 406,
  jsonRequired: 409,
  tooManyBatchMessages: 410,
  rateLimitExceeded: 429,
  internal: 500,
  templateNotFound: 1101,
} as const;
type PostmarkCode = (typeof PostmarkCode)[keyof typeof PostmarkCode];

/** A refusal in Postmark's terms: its ErrorCode, and the HTTP status Postmark answers it with. */
class PostmarkRefusal extends Problem {
  constructor(
    readonly code: PostmarkCode,
    detail: string,
    type: ProblemType = 'validation-error',
  ) {
    super(422, type, detail);
  }
}

/** Postmark's codes for Mailplane's problems; any other is an invalid email request. */
const CODE_OF: Partial<Record<ProblemType, PostmarkCode>> = {
  'missing-api-key': PostmarkCode.badToken,
  'invalid-api-key': PostmarkCode.badToken,
  'restricted-api-key': PostmarkCode.notAllowedToSend,
  'domain-not-owned': PostmarkCode.senderSignatureNotFound,
  'malformed-json': PostmarkCode.invalidJson,
  'bad-request': PostmarkCode.invalidJson,
  'unsupported-media-type': PostmarkCode.jsonRequired,
  'unsupported-encoding': PostmarkCode.jsonRequired,
  'rate-limit-exceeded': PostmarkCode.rateLimitExceeded,
  'service-unavailable': PostmarkCode.maintenance,
  'internal-server-error': PostmarkCode.internal,
};

/**
 * The HTTP status of each code that is not 422: Postmark answers a bad token 401, and what is
 * not the request's fault keeps its own status so that a client retries it; a conflict on an
 * Idempotency-Key (which Postmark does not have) stays a 409.
 */
const STATUS_OF: Partial<Record<PostmarkCode, number>> = {
  [PostmarkCode.badToken]: 401,
  [PostmarkCode.maintenance]: 503,
  [PostmarkCode.rateLimitExceeded]: 429,
  [PostmarkCode.internal]: 500,
};

interface Sent {
  To: string;
  SubmittedAt: string;
  MessageID: string;
  ErrorCode: 0;
  Message: 'OK';
}

interface Refused {
  ErrorCode: number;
  Message: string;
}

/**
 * The router of Postmark's four send routes, each with its own parser, authentication and error
 * shape, so that nothing else outside /v1 changes.
 *
 *   app.use(postmarkRouter({ db, acceptor, metrics, limits, maxBodyBytes }));
 */
export function postmarkRouter(deps: PostmarkDeps): express.Router {
  const { db } = deps;
  const prepare = createPreparer(deps);
  const router = express.Router();
  const before = [
    ...jsonBody({ limit: deps.maxBodyBytes }),
    authenticate(db, { tokenHeader: SERVER_TOKEN_HEADER }),
    requireScope('send'),
  ];

  /** One message prepared for the accept path, or its refusal in Postmark's terms. */
  const prepareMessage = async (
    principal: Principal,
    message: unknown,
    template: boolean,
  ): Promise<PreparedEmail | Refused> => {
    const translated = translatePostmark(message, { template });
    if (!translated.ok) return refusal(PostmarkCode.invalidEmailRequest, translated.errors);
    const { body, names } = translated.email;
    let email: PreparedEmail;
    try {
      email = await prepare(principal, body);
    } catch (err) {
      if (!(err instanceof Problem)) throw err;
      if (err instanceof TemplateNotFound)
        return { ErrorCode: PostmarkCode.templateNotFound, Message: err.detail };
      const code = CODE_OF[err.type] ?? PostmarkCode.invalidEmailRequest;
      if (err.type !== 'validation-error' || !err.errors?.length)
        return { ErrorCode: code, Message: err.detail };
      return refusal(code, names.rename(err.errors));
    }
    const recipients = new Set(email.recipients.map((r) => r.toLowerCase()));
    const inactive = await suppressedAmong(db, principal.tenantId, [...recipients]);
    if (inactive.length === recipients.size) {
      return {
        ErrorCode: PostmarkCode.inactiveRecipient,
        // Postmark's words, which its client parses for InactiveRecipientsError.recipients.
        Message:
          'You tried to send to recipient(s) that have been marked as inactive. Found inactive ' +
          `addresses: ${inactive.join(', ')}. Inactive recipients are ones that have generated a ` +
          'hard bounce, a spam complaint, or a manual suppression.',
      };
    }
    return email;
  };

  const sendOne = (template: boolean) => (req: Request, res: Response) =>
    answerIdempotently(
      db,
      req,
      res,
      async (receiptFor) => {
        const principal = principalOf(req);
        if (!isObject(req.body)) {
          throw new PostmarkRefusal(
            PostmarkCode.incompatibleJson,
            'The body must be one message: a JSON object.',
          );
        }
        const email = await prepareMessage(principal, req.body, template);
        if (!('id' in email)) throw new PostmarkRefusal(email.ErrorCode as PostmarkCode, email.Message);
        const answer: Answer = { status: 200, body: sentView(email) };
        await acceptAll(deps, principal, [email], receiptFor?.(answer));
        return answer;
      },
      renderJson,
    );

  const sendBatch = (template: boolean) => (req: Request, res: Response) =>
    answerIdempotently(
      db,
      req,
      res,
      async (receiptFor) => {
        const principal = principalOf(req);
        // /email/batch takes a list; /email/batchWithTemplates a list under Messages.
        const messages: unknown = template ? (isObject(req.body) ? req.body.Messages : undefined) : req.body;
        if (!Array.isArray(messages)) {
          throw new PostmarkRefusal(
            PostmarkCode.incompatibleJson,
            template ? 'The body must be {"Messages": [...]}.' : 'The body must be a list of messages.',
          );
        }
        if (messages.length > MAX_BATCH) {
          throw new PostmarkRefusal(
            PostmarkCode.tooManyBatchMessages,
            `The batch has ${messages.length} messages; the limit is ${MAX_BATCH}.`,
          );
        }
        // Each message is answered on its own, as Postmark does: the valid ones are sent.
        const results: (PreparedEmail | Refused)[] = [];
        for (const message of messages) results.push(await prepareMessage(principal, message, template));
        const prepared = results.filter((r): r is PreparedEmail => 'id' in r);
        const answer: Answer = {
          status: 200,
          body: results.map((r) => ('id' in r ? sentView(r) : r)),
        };
        await acceptAll(deps, principal, prepared, receiptFor?.(answer));
        return answer;
      },
      renderJson,
    );

  router.post('/email', ...before, sendOne(false));
  router.post('/email/batch', ...before, sendBatch(false));
  router.post('/email/withTemplate', ...before, sendOne(true));
  router.post('/email/batchWithTemplates', ...before, sendBatch(true));
  router.use(postmarkErrors());
  return router;
}

/** A refusal naming every field at fault, the first in the message as Postmark's client shows it. */
function refusal(code: PostmarkCode, errors: FieldError[]): Refused {
  return { ErrorCode: code, Message: describeFaults(uniqueFaults(errors)) };
}

function sentView(email: PreparedEmail): Sent {
  return {
    To: email.content.to.join(', '),
    SubmittedAt: new Date().toISOString(),
    MessageID: email.id,
    ErrorCode: PostmarkCode.ok,
    Message: 'OK',
  };
}

function renderJson(res: Response, answer: Answer): void {
  res.status(answer.status).json(answer.body);
}

/** Every refusal of these routes as `{ErrorCode, Message}`, with the status Postmark gives it. */
function postmarkErrors() {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const problem = problemOf(err, req);
    const code =
      problem instanceof PostmarkRefusal
        ? problem.code
        : (CODE_OF[problem.type] ?? PostmarkCode.invalidEmailRequest);
    const status = STATUS_OF[code] ?? (problem.status === 409 ? 409 : 422);
    if (status === 503 || status === 429) res.set('Retry-After', String(RETRY_AFTER_SECONDS));
    const body: Refused = { ErrorCode: code, Message: problem.detail };
    res.status(status).json(body);
  };
}
