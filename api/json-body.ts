// Request bodies under /v1: JSON or nothing. A POST without a body (curl -X POST, fetch without a
// body, Python requests without data: no Content-Type, and no or a zero Content-Length) is read
// as `{}`, so that a verb like cancel needs no ceremony; a body of any other type is a 415.

import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { Problem } from '../lib/problem.js';

const JSON_TYPES = ['application/json', 'application/*+json'];

/**
 * True when the request carries no body at all. HTTP/1.1 frames a body by Content-Length or
 * Transfer-Encoding (RFC 9112 §6.3); a chunked body is taken as a body even if it turns out empty,
 * since telling would mean reading it first.
 */
export function hasNoBody(req: Request): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return false;
  const length = req.headers['content-length'];
  return length === undefined || Number(length) === 0;
}

/**
 * The parser, then the rule for what it did not parse.
 *
 *   v1.use(jsonBody({ limit: 14 << 20 }));
 */
export function jsonBody(options: { limit: number }): RequestHandler[] {
  return [
    express.json({ limit: options.limit, type: JSON_TYPES }),
    (req: Request, _res: Response, next: NextFunction) => {
      if (req.method !== 'POST') return next();
      if (hasNoBody(req)) {
        // express.json already turned an empty JSON body into {}; the same for one of no type.
        req.body ??= {};
        return next();
      }
      if (!req.is(JSON_TYPES)) {
        return next(new Problem(415, 'unsupported-media-type', 'Send the body as application/json.'));
      }
      next();
    },
  ];
}
