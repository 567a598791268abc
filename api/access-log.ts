// One access-log line and one duration sample per request, written when the response has gone out
// (or the client went away first). The line carries the route template, never the raw URL, for
// the same reason as the metric's label: ids and query strings belong to the tenant's data.

import type { NextFunction, Request, Response } from 'express';
import type { Metrics } from '../lib/metrics.js';
import { routeTemplate } from './route-template.js';

/**
 * Routes that kubelets and Prometheus call every few seconds on every replica: logged at debug,
 * so that an info-level log is the traffic of clients.
 */
const PROBE_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);
/**
 * The public pixel and tracked links, also at debug: a campaign brings millions of fetches, each
 * recorded as an event on its message's timeline already (api/tracking.ts).
 */
const TRACKING_ROUTES = new Set(['/t/o/:token', '/t/c/:token']);

/**
 * Middleware, right after requestContext: logs every request once through `req.log` and records
 * `mailplane_http_request_duration_seconds{route, status}`.
 *
 *   app.use(requestContext(log), accessLog(metrics));
 */
export function accessLog(metrics: Metrics) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    let done = false;
    const finish = (aborted: boolean) => {
      // 'close' follows 'finish' on every response; only the first of them counts.
      if (done) return;
      done = true;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = routeTemplate(req);
      const status = res.statusCode;
      // An answer the client never received is not a latency it saw.
      if (!aborted) metrics.httpDuration.observe({ route, status: String(status) }, seconds);
      const line = {
        method: req.method,
        route,
        // A request abandoned before its answer was begun has no status to report.
        ...(res.headersSent ? { status } : {}),
        durationMs: Math.round(seconds * 1e6) / 1e3,
        // Every answer goes through res.send, which sets Content-Length.
        bytes: Number(res.getHeader('content-length') ?? 0),
        tenant: req.principal?.tenant,
        userAgent: req.get('user-agent'),
        ...(aborted ? { aborted: true } : {}),
      };
      if (PROBE_ROUTES.has(route) || TRACKING_ROUTES.has(route)) req.log.debug('request', line);
      else req.log.info('request', line);
    };
    res.once('finish', () => finish(false));
    res.once('close', () => finish(!res.writableFinished));
    next();
  };
}
