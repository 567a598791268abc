// Idempotency-Key, as the IETF draft (draft-ietf-httpapi-idempotency-key-header) and Resend do it:
// per tenant, kept 24 hours (lib/db/idempotency.ts keeps the records). The first request with a key records itself as in flight; its
// answer is written by the same statement that queues its emails (lib/send/accept.ts), so a 202 and
// its record commit together or not at all. A retry with the same key and the same request gets
// the first answer again; the same key with another request, or while the first is still in
// flight, is a 409 (Resend's answer; the draft allows 409 or 422), and nothing is sent.

import { createHash } from 'node:crypto';
import type { Request } from 'express';
import type { IdempotentRequest } from '../lib/db/idempotency.js';
import { Problem } from '../lib/problem.js';

/** Resend's bound on the key's length. */
const MAX_KEY_LENGTH = 256;

/**
 * The request's key and fingerprint, or undefined when it sends no Idempotency-Key.
 *
 *   const idem = idempotentRequest(req, principal.tenantId);
 */
export function idempotentRequest(req: Request, tenantId: string): IdempotentRequest | undefined {
  const key = req.get('idempotency-key');
  if (key === undefined) return undefined;
  if (key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new Problem(
      400,
      'invalid-idempotency-key',
      `Idempotency-Key must be 1 to ${MAX_KEY_LENGTH} characters.`,
    );
  }
  const fingerprint = createHash('sha256')
    .update(`${req.method} ${req.baseUrl}${req.path}\n`)
    // A header that changes what the request does is part of the request.
    .update(`${req.get('x-batch-validation') ?? ''}\n`)
    .update(JSON.stringify(req.body ?? null))
    .digest('base64url');
  return { tenantId, key, fingerprint };
}
