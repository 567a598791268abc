// Who a request is: its X-Request-Id, taken from the caller (or the proxy in front) when it is a
// sane value and made otherwise, echoed on the response and carried by a child logger, so that a
// client quoting the id from a problem body leads to every line the api wrote for that request.
//
// The logger travels on the request (`req.log`) rather than in an AsyncLocalStorage: the api
// passes its scopes explicitly, as the sender and the operator do, and its shared machinery (the
// group-committing acceptor, the caches) works for many requests at once, so an ambient context
// would stamp whichever request happened to start a batch on the lines of the whole batch.

import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../lib/log.js';

export const REQUEST_ID_HEADER = 'X-Request-Id';

/**
 * Long enough for a UUID (36), a W3C traceparent (55) or a cloud load balancer's trace id; short
 * enough that a hostile client cannot put kilobytes into every line logged for its request.
 */
const MAX_REQUEST_ID_LENGTH = 128;

/**
 * Visible ASCII only: no control characters to forge log lines or headers with, and no spaces, so
 * that an id is one token to grep for (and a header sent twice, which Node joins with ", ", is
 * replaced rather than echoed as a list).
 */
const SANE_REQUEST_ID = new RegExp(`^[\\x21-\\x7e]{1,${MAX_REQUEST_ID_LENGTH}}$`);

declare module 'express-serve-static-core' {
  interface Request {
    /** This request's id, as echoed in X-Request-Id and in problem bodies. */
    id: string;
    /** The api's logger, scoped to this request ({requestId}). */
    log: Logger;
  }
}

/**
 * The caller's id when it is one we can log and echo safely, else a fresh UUID.
 *
 *   requestIdFrom('abc-123');        // 'abc-123'
 *   requestIdFrom('a\nforged line'); // a new UUID
 */
export function requestIdFrom(header: string | undefined): string {
  return header !== undefined && SANE_REQUEST_ID.test(header) ? header : randomUUID();
}

/**
 * Middleware, first in the app: sets `req.id`, `req.log` and the X-Request-Id response header
 * (set before any handler runs, so that refusals from middleware carry it too).
 *
 *   app.use(requestContext(log));
 */
export function requestContext(log: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    req.id = requestIdFrom(req.get(REQUEST_ID_HEADER));
    req.log = log.child({ requestId: req.id });
    res.set(REQUEST_ID_HEADER, req.id);
    next();
  };
}
