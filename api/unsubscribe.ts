// The one-click unsubscribe link (RFC 8058), served without an API key: `POST /u/<token>` is what a
// mail client's unsubscribe button sends (`List-Unsubscribe=One-Click`, form-encoded) and
// suppresses the address for its tenant at once, answering 200 with nothing more to do; `GET
// /u/<token>` is a person following the link, or a link scanner fetching every link of a message,
// so it only shows a page with a button that POSTs. A GET never unsubscribes.
//
// The token (lib/unsubscribe.ts) is checked before anything touches the database, and a token that
// does not verify gets the same 404 whatever is wrong with it. A burst of POSTs (a campaign's
// recipients pressing the button within minutes) is written in groups (lib/group-commit.ts), one
// statement per group, so it does not crowd out the send path's connections.

import express, { Router, type Request, type Response } from 'express';
import { withAuditContext } from '../lib/db/audit.js';
import type { Db } from '../lib/db/index.js';
import { recordUnsubscribes, type Unsubscribe } from '../lib/db/transitions.js';
import { createGroupCommitter } from '../lib/group-commit.js';
import { Problem } from '../lib/problem.js';
import { readUnsubscribeToken, UNSUBSCRIBE_PATH, type UnsubscribeTarget } from '../lib/unsubscribe.js';

export interface UnsubscribeDeps {
  db: Db;
  /** The installation's key, which signs the tokens. */
  secretKey: Buffer;
}

/** Far above any token we sign (two UUIDs and an address, base64url, and the MAC). */
const MAX_TOKEN = 1024;
/** The form of the page, or RFC 8058's one field: a few bytes. */
const MAX_BODY = '2kb';
/** Groups written at once: few, so that a burst never holds more than two of the pool's connections. */
const MAX_IN_FLIGHT = 2;
const MAX_GROUP = 500;
/**
 * Presses waiting to be written, each (message, address) once: a repeat while one waits shares
 * its write, and past this many the answer is a 503 to retry rather than a queue without end.
 */
const MAX_WAITING = 10_000;
/** Who the audit log says added the suppression: the recipient, by the link. */
const ACTOR = 'recipient:unsubscribe-link';

/** No script, nothing fetched, not framed, not indexed, not cached, no Referer to the next page. */
const PAGE_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'Cache-Control': 'no-store',
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'X-Robots-Tag': 'noindex, nofollow',
};

/**
 * The routes, mounted before any API-key authentication.
 *
 *   app.use(unsubscribeRouter({ db, secretKey: config.secretKey }));
 */
export function unsubscribeRouter(deps: UnsubscribeDeps): Router {
  const { db, secretKey } = deps;
  const writes = createGroupCommitter<Unsubscribe>(
    async (items) => {
      await withAuditContext(db, { actor: ACTOR }, (trx) => recordUnsubscribes(trx, items));
    },
    { maxInFlight: MAX_IN_FLIGHT, maxGroup: MAX_GROUP },
  );
  const waiting = new Map<string, Promise<void>>();
  const press = (target: UnsubscribeTarget, method: string): Promise<void> => {
    const key = `${target.tenantId}\n${target.messageId}\n${target.address}`;
    let written = waiting.get(key);
    if (!written) {
      if (waiting.size >= MAX_WAITING) {
        throw new Problem(
          503,
          'service-unavailable',
          'Too many unsubscribes at once; retry in a few seconds.',
        );
      }
      written = writes.write([{ ...target, detail: { method } }]).finally(() => waiting.delete(key));
      waiting.set(key, written);
    }
    return written;
  };
  const router = Router();

  /** The token's target, or undefined for anything not signed here (answered alike). */
  const targetOf = (req: Request): UnsubscribeTarget | undefined => {
    const token = String(req.params.token);
    return token.length <= MAX_TOKEN ? readUnsubscribeToken(secretKey, token) : undefined;
  };

  router.get(`${UNSUBSCRIBE_PATH}:token`, (req, res) => {
    const target = targetOf(req);
    if (!target) return invalidLink(res);
    page(res, 200, 'Unsubscribe', [
      `<p>Stop sending mail to <strong>${escapeHtml(target.address)}</strong>?</p>`,
      '<form method="post"><input type="hidden" name="confirm" value="page">',
      '<button type="submit">Unsubscribe</button></form>',
    ]);
  });

  router.post(
    `${UNSUBSCRIBE_PATH}:token`,
    express.urlencoded({ extended: false, limit: MAX_BODY, parameterLimit: 4 }),
    async (req, res) => {
      const target = targetOf(req);
      if (!target) return invalidLink(res);
      // The page's button says so; a mail client sends `List-Unsubscribe=One-Click` (or, outside
      // RFC 8058, nothing), and either way the signed link is the consent.
      const fromPage = (req.body as Record<string, unknown> | undefined)?.confirm === 'page';
      await press(target, fromPage ? 'page' : 'one-click');
      if (fromPage) {
        return page(res, 200, 'Unsubscribed', [
          `<p><strong>${escapeHtml(target.address)}</strong> will get no more mail from this sender.</p>`,
        ]);
      }
      res.status(200).set(PAGE_HEADERS).type('text/plain').send('Unsubscribed.\n');
    },
  );

  return router;
}

/** The same answer for every token that does not verify: nothing says which part was wrong. */
function invalidLink(res: Response): void {
  page(res, 404, 'Link not valid', [
    '<p>This unsubscribe link is not valid. Use the link in the message itself, whole.</p>',
  ]);
}

function page(res: Response, status: number, title: string, body: string[]): void {
  res
    .status(status)
    .set(PAGE_HEADERS)
    .type('html')
    .send(
      [
        '<!doctype html>',
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        `<title>${title}</title>`,
        '<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}',
        'button{font:inherit;padding:.5rem 1.25rem;border:0;border-radius:.25rem;background:#222;color:#fff;cursor:pointer}</style>',
        `</head><body><main><h1>${title}</h1>`,
        ...body,
        '</main></body></html>',
        '',
      ].join('\n'),
    );
}

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}
