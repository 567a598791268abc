// The public tracking endpoints, served without an API key under a domain's tracking host:
//
//   GET /t/o/:token   the open pixel: a 1×1 transparent GIF, never cached
//   GET /t/c/:token   a tracked link: 302 to the URL its token signs, exactly as the message had it
//
// A token that does not verify (forged, altered, cut short, of another purpose) is a 404, never a
// redirect: the only place a click can lead is the URL Mailplane signed. Answering costs two
// hashes and no database: the fetch is handed to the engagement recorder, which classifies and
// writes it off the request path (api/engagement-recorder.ts).

import { Router, type Request } from 'express';
import { Problem } from '../lib/problem.js';
import { readClickToken, readOpenToken } from '../lib/tracking.js';
import type { EngagementRecorder } from './engagement-recorder.js';

/** The smallest transparent GIF: 1×1, one colour, 42 bytes. */
const PIXEL = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');

/** No cache along the way may answer for us: each fetch is an open to count. */
const NO_CACHE = {
  'Cache-Control': 'no-store, no-cache, must-revalidate, private, max-age=0',
  Pragma: 'no-cache',
  Expires: '0',
};

/** Longer than any token a message of ours holds (a URL of several kilobytes, base64). */
const MAX_TOKEN = 16 * 1024;

export function trackingRouter(deps: { secretKey: Buffer; recorder: EngagementRecorder }): Router {
  const { secretKey, recorder } = deps;
  const router = Router();

  const notFound = () => new Problem(404, 'not-found', 'No such tracked link.');
  const client = (req: Request) => ({
    method: req.method,
    // req.ip honours X-Forwarded-For only from the proxies MAILPLANE_TRUST_PROXY names.
    ip: req.ip,
    userAgent: req.get('user-agent'),
    at: Date.now(),
  });

  router.get('/t/o/:token', (req, res) => {
    const token = req.params.token;
    const open = token.length <= MAX_TOKEN ? readOpenToken(secretKey, token) : undefined;
    if (!open) throw notFound();
    recorder.record({ kind: 'open', ...open, ...client(req) });
    res.set(NO_CACHE).type('image/gif').send(PIXEL);
  });

  router.get('/t/c/:token', (req, res) => {
    const token = req.params.token;
    const click = token.length <= MAX_TOKEN ? readClickToken(secretKey, token) : undefined;
    // Only under the host it was made for (req.hostname: the Host, or X-Forwarded-Host from a
    // trusted proxy): elsewhere a tenant's token would be an open redirect on another's domain.
    if (!click || click.host !== req.hostname.toLowerCase()) throw notFound();
    const { url, host: _host, ...message } = click;
    recorder.record({ kind: 'click', ...message, link: url, ...client(req) });
    // Not cached either: a second click is a click too, and the answer is for this token only.
    res.set(NO_CACHE).redirect(302, url);
  });

  return router;
}
