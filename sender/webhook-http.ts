// Posting a webhook to a URL a tenant chose, without letting that URL reach inside the cluster.
// Only https, and only to public addresses — unless the installation allows private ones
// (MAILPLANE_WEBHOOKS_ALLOW_PRIVATE, for tests and `make dev`, which also allows plain http). The
// check is made on the addresses the name resolves to at delivery time, and the connection goes
// to the address that was checked (the request's own `lookup`), so a name that resolves to a
// public address at registration and to 169.254.169.254 later (DNS rebinding) is refused.
// Redirects are not followed, and time and the response read are bounded.

import { lookup as dnsLookup } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { Agent, errors, type Dispatcher } from 'undici';
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
  const started = performance.now();
  const timeoutMs = options.timeoutMs ?? TIMEOUT_MS;
  return new Promise<WebhookResponse>((resolve, reject) => {
    const handler = excerptHandler((status, excerpt, err) => {
      clearTimeout(timer);
      if (err) return reject(err instanceof WebhookError ? err : webhookErrorOf(err, timeoutMs));
      resolve({ status, excerpt, latencyMs: Math.round(performance.now() - started) });
    });
    // The whole attempt is bounded, connecting and a receiver that trickles its answer included.
    const timer = setTimeout(() => handler.abort(timedOut(timeoutMs)), timeoutMs);
    agentFor(options.allowPrivate).dispatch(
      {
        origin: target.origin,
        path: `${target.pathname}${target.search}`,
        method: 'POST',
        headers,
        body,
        // The timer above alone bounds the attempt: undici's own timers tick coarsely and could
        // end it early, after the status but before the answer is complete.
        headersTimeout: 0,
        bodyTimeout: 0,
      },
      handler,
    );
  });
}

/**
 * An undici dispatch handler that keeps the status and the first EXCERPT_BYTES of the answer, then
 * stops reading (the rest is not wanted, and the connection is then not kept). `abort` ends the
 * request with `reason`, whenever it is called.
 */
function excerptHandler(
  done: (status: number, excerpt: string, err?: unknown) => void,
): Dispatcher.DispatchHandler & { abort(reason: Error): void } {
  let status = 0;
  let kept = 0;
  const chunks: Buffer[] = [];
  let controller: Dispatcher.DispatchController | undefined;
  let aborted: Error | undefined;
  let finished = false;
  const finish = (err?: unknown) => {
    if (finished) return;
    finished = true;
    // Postgres text holds no NUL, and a receiver may answer anything.
    done(status, Buffer.concat(chunks).toString('utf8').replaceAll('\0', '\uFFFD'), err);
  };
  return {
    abort(reason) {
      aborted = reason;
      finish(reason);
      controller?.abort(reason);
    },
    onRequestStart(started) {
      controller = started;
      if (aborted) started.abort(aborted);
    },
    onResponseStart(_controller, statusCode) {
      // 1xx (103 Early Hints, 102 Processing) come before the answer; they are not one.
      if (statusCode >= 200) status = statusCode;
    },
    onResponseData(_controller, chunk) {
      if (kept >= EXCERPT_BYTES) return;
      chunks.push(chunk.subarray(0, EXCERPT_BYTES - kept));
      kept += Math.min(chunk.length, EXCERPT_BYTES - kept);
      // Enough for the log: the rest is not read, and the connection is not kept.
      if (kept >= EXCERPT_BYTES) {
        finish();
        controller?.abort(new Error('the excerpt is kept; the rest of the answer is not read'));
      }
    },
    onResponseEnd() {
      finish();
    },
    onResponseError(_controller, err) {
      // With the status in hand, that is the answer; a body cut short is still an excerpt.
      finish(status !== 0 ? undefined : err);
    },
  };
}

function timedOut(timeoutMs: number): WebhookError {
  return new WebhookError('ETIMEOUT', `no answer within ${timeoutMs} ms`);
}

function webhookErrorOf(err: unknown, timeoutMs: number): WebhookError {
  const cause = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  if (
    err instanceof errors.HeadersTimeoutError ||
    err instanceof errors.BodyTimeoutError ||
    err instanceof errors.ConnectTimeoutError ||
    cause.name === 'TimeoutError'
  ) {
    return timedOut(timeoutMs);
  }
  const code = cause.code ?? cause.cause?.code;
  // Every address of a name refused: Node's AggregateError says so only in its members.
  const members =
    err instanceof AggregateError
      ? err.errors
      : cause.cause instanceof AggregateError
        ? cause.cause.errors
        : [];
  const message =
    members.length > 0
      ? (members as Error[]).map((e) => e.message).join('; ')
      : cause.code === undefined && cause.cause
        ? cause.cause.message
        : cause.message;
  return new WebhookError(code === 'EBLOCKED' ? 'EBLOCKED' : 'ENETWORK', message);
}

/**
 * One connection pool per installation policy, kept alive between attempts: a busy endpoint gets
 * its events over connections already open. A new connection resolves its name through `lookup`,
 * which refuses private addresses and connects to the address it checked.
 */
const agents = new Map<boolean, Agent>();
function agentFor(allowPrivate: boolean): Agent {
  let agent = agents.get(allowPrivate);
  if (agent === undefined) {
    agent = new Agent({
      allowH2: false,
      connect: { lookup: checkedLookup(allowPrivate), timeout: TIMEOUT_MS },
    });
    agents.set(allowPrivate, agent);
  }
  return agent;
}

function checkedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, lookupOptions, callback) => {
    dnsLookup(hostname, { ...lookupOptions, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const allowed = addresses.filter((a) => allowPrivate || isPublicAddress(a.address));
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
}
