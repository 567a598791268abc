// Posting a webhook to a URL a tenant chose, without letting that URL reach inside the cluster.
// Only https, and only to public addresses — unless the installation allows private ones
// (MAILPLANE_WEBHOOKS_ALLOW_PRIVATE, for tests and `make dev`, which also allows plain http). The
// check is made on the addresses the name resolves to at delivery time, and the connection goes
// to the address that was checked (the request's own `lookup`), so a name that resolves to a
// public address at registration and to 169.254.169.254 later (DNS rebinding) is refused.
// Redirects are not followed, and time and the response read are bounded.

import { lookup as dnsLookup } from 'node:dns';
import { request as httpRequest, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { isPublicAddress } from '../lib/net-policy.js';

// The address policy is lib/net-policy.ts's, shared with the api's check at registration.
export { isPublicAddress };

/** A receiver that has not answered within this is failed for this attempt (Svix uses 15 s). */
const TIMEOUT_MS = 10_000;
/** What is kept of a response for the deliveries log. */
const EXCERPT_BYTES = 1024;

export type WebhookErrorCode = 'EURL' | 'EBLOCKED' | 'ETIMEOUT' | 'ENETWORK';

export class WebhookError extends Error {
  constructor(
    readonly code: WebhookErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'WebhookError';
  }
}

export interface WebhookResponse {
  status: number;
  excerpt: string;
  latencyMs: number;
}

/**
 * POSTs `body` with `headers`; resolves with the status (any, 3xx included) or rejects with a
 * WebhookError.
 *
 *   const res = await postWebhook(url, headers, body, { allowPrivate: false });
 */
export function postWebhook(
  url: string,
  headers: Record<string, string>,
  body: string,
  options: { allowPrivate: boolean; timeoutMs?: number },
): Promise<WebhookResponse> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return Promise.reject(new WebhookError('EURL', `not a URL: ${url}`));
  }
  const https = target.protocol === 'https:';
  if (!https && !(options.allowPrivate && target.protocol === 'http:')) {
    return Promise.reject(new WebhookError('EURL', 'webhook URLs must be https'));
  }
  const host = target.hostname.replace(/^\[|\]$/g, '');
  // An address literal skips `lookup`: it is checked here instead.
  if (isIP(host) && !options.allowPrivate && !isPublicAddress(host)) {
    return Promise.reject(new WebhookError('EBLOCKED', `${host} is a private address`));
  }
  const lookup: LookupFunction = (hostname, lookupOptions, callback) => {
    dnsLookup(hostname, { ...lookupOptions, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const allowed = addresses.filter((a) => options.allowPrivate || isPublicAddress(a.address));
      const first = allowed[0];
      if (!first) {
        const list = addresses.map((a) => a.address).join(', ');
        return callback(
          Object.assign(new Error(`${hostname} resolves only to private addresses (${list})`), {
            code: 'EBLOCKED',
          }),
          '',
          0,
        );
      }
      if (lookupOptions.all)
        return (callback as unknown as (e: null, a: typeof allowed) => void)(null, allowed);
      callback(null, first.address, first.family);
    });
  };
  const requestOptions: RequestOptions = {
    method: 'POST',
    headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
    lookup,
    timeout: options.timeoutMs ?? TIMEOUT_MS,
  };
  const started = performance.now();
  return new Promise<WebhookResponse>((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(target, requestOptions, (res) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      res.on('data', (chunk: Buffer) => {
        if (kept < EXCERPT_BYTES) chunks.push(chunk.subarray(0, EXCERPT_BYTES - kept));
        kept += chunk.length;
        // Enough for the log: the rest is not read, and the connection is not kept.
        if (kept >= EXCERPT_BYTES) res.destroy();
      });
      const done = () =>
        resolve({
          status: res.statusCode ?? 0,
          // Postgres text holds no NUL, and a receiver may answer anything.
          excerpt: Buffer.concat(chunks).toString('utf8').replaceAll('\0', '\uFFFD'),
          latencyMs: Math.round(performance.now() - started),
        });
      res.on('end', done);
      res.on('close', done);
    });
    req.on('timeout', () =>
      req.destroy(new WebhookError('ETIMEOUT', `no answer within ${requestOptions.timeout} ms`)),
    );
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof WebhookError) return reject(err);
      reject(new WebhookError(err.code === 'EBLOCKED' ? 'EBLOCKED' : 'ENETWORK', err.message));
    });
    req.end(body);
  });
}
