// Renders every error as application/problem+json, with the request's id as `request_id` for the
// client to quote. Problems are the client's fault and are not logged as errors; anything else is
// a 500 with a generic detail and a cause logged through the request's logger, under that id.

import type { NextFunction, Request, Response } from 'express';
import type { Duplex } from 'node:stream';
import { isDatabaseUnavailable } from '../lib/db/index.js';
import { Problem } from '../lib/problem.js';
import { routeTemplate } from './route-template.js';

/** body-parser's error types, mapped to what the client must change. */
function fromParserError(err: {
  type?: string;
  status?: number;
  limit?: number;
  expose?: boolean;
  message?: string;
}): Problem | undefined {
  switch (err.type) {
    case 'entity.too.large':
      return new Problem(413, 'body-too-large', `The request body is over the limit of ${err.limit} bytes.`);
    case 'entity.parse.failed':
      return new Problem(400, 'malformed-json', 'The request body is not valid JSON.');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new Problem(415, 'unsupported-encoding', 'Send the body as UTF-8 JSON.');
    default:
      // Any other error http-errors marks as the client's (a Content-Encoding that does not
      // decode, an aborted upload): its status, and a message that is safe to show.
      if (err.expose === true && typeof err.status === 'number' && err.status >= 400 && err.status < 500) {
        return new Problem(
          err.status,
          'bad-request',
          `The request body could not be read: ${err.message ?? 'malformed'}.`,
        );
      }
      return undefined;
  }
}

/**
 * How long a client should wait before retrying while Postgres is away: a restart or a managed
 * database's failover takes seconds to a minute.
 */
export const RETRY_AFTER_SECONDS = 5;

/** The answer while Postgres is unreachable: nothing was accepted, and a retry will be. */
export function databaseUnavailable(): Problem {
  return new Problem(
    503,
    'service-unavailable',
    'The database is unreachable for the moment; nothing was accepted. Retry after a few seconds.',
  );
}

/**
 * Answers with `problem`, its members and the request's id.
 *
 *   sendProblem(req, res, databaseUnavailable());
 */
export function sendProblem(req: Request, res: Response, problem: Problem): void {
  // A route that knows how long to wait (a per-domain limit, api/domains.ts) has said so already.
  if ((problem.status === 503 || problem.status === 429) && !res.get('Retry-After')) {
    res.set('Retry-After', String(RETRY_AFTER_SECONDS));
  }
  res
    .status(problem.status)
    .type('application/problem+json')
    .send(JSON.stringify({ ...problem.toJSON(), request_id: req.id }));
}

/**
 * The problem an error is answered with: a Problem as it is, body-parser's errors as what the
 * client must change, Postgres away as a 503, anything else a 500 whose cause is logged through
 * `req.log` (so the line carries the request's id). The vendor-shaped routes (api/sendgrid.ts,
 * api/postmark.ts) render the same problem in their own error shapes.
 *
 *   const problem = problemOf(err, req);
 */
export function problemOf(err: unknown, req: Request): Problem {
  const problem = err instanceof Problem ? err : fromParserError(err as { type?: string });
  if (problem) return problem;
  // A path parameter that is not valid percent-encoding (`/v1/emails/%ZZ`): the router's URIError.
  if (err instanceof URIError && (err as { status?: number }).status === 400) {
    return new Problem(400, 'bad-request', 'The request path is not valid percent-encoding.');
  }
  if (isDatabaseUnavailable(err)) {
    req.log.warn('database unavailable', {
      err: err as Error,
      method: req.method,
      route: routeTemplate(req),
      path: req.path,
    });
    return databaseUnavailable();
  }
  req.log.error('request failed', {
    err: err as Error,
    method: req.method,
    route: routeTemplate(req),
    path: req.path,
  });
  return new Problem(
    500,
    'internal-server-error',
    'Something went wrong on our side; the request was not accepted.',
  );
}

/** The app's last middleware; logs through `req.log`, so a 5xx line carries the request's id. */
export function problemHandler() {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    sendProblem(req, res, problemOf(err, req));
  };
}

/**
 * A request Node's HTTP parser refuses before any route sees it — headers over its limit, a
 * control character in one, a request line that is not HTTP — answered as a problem like every
 * other refusal, not as an empty 400. A client that has gone gets nothing.
 *
 *   server.on('clientError', answerClientError);
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  // An answer already begun on this connection (a bad request pipelined after a good one) cannot
  // be followed by another status line: the connection just ends, as Node's own handler does.
  const current = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || current?.headersSent) {
    socket.destroy();
    return;
  }
  const problem =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new Problem(431, 'bad-request', 'The request’s headers are over the limit of 16 KB.')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new Problem(408, 'bad-request', 'The request did not arrive in time.')
        : new Problem(400, 'bad-request', 'The request is not well-formed HTTP/1.1 (RFC 9112).');
  const body = JSON.stringify(problem);
  // Written, then closed on both sides: past a parse error no timeout applies, and a client that
  // keeps its half open would otherwise hold the connection for good.
  socket.end(
    `HTTP/1.1 ${problem.status} ${problem.title}\r\n` +
      'Content-Type: application/problem+json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
    () => socket.destroy(),
  );
}
