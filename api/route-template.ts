// The route a request matched, as its full template (`/v1/emails/:id`): the label of the api's
// duration histogram and the `route` of its access log, where raw paths would put an id in every
// series and every line.
//
// Express keeps `req.route.path` relative to the router that matched and restores `req.baseUrl`
// when an error leaves that router, so by the time a failed request finishes, `baseUrl + path`
// has lost its `/v1`. The template is therefore taken at the moment the route matches, when
// `req.baseUrl` is still the mount path of the router holding it, whatever the nesting.

import type { Express, Request } from 'express';

/** The label of a request no route matched: unknown paths, and refusals by middleware before routing. */
export const UNMATCHED = 'unmatched';

const ROUTE = Symbol('mailplane.route');
const TEMPLATE = Symbol('mailplane.routeTemplate');

interface Recorded {
  [ROUTE]?: unknown;
  [TEMPLATE]?: string;
}

/**
 * Makes the app's requests remember the full template of each route they match. Express's router
 * assigns `req.route` on every request it dispatches to a route; an accessor on the app's request
 * prototype sees that assignment and still answers `req.route` as before.
 *
 *   recordRouteTemplates(app);
 *   res.on('finish', () => histogram.observe({ route: routeTemplate(req) }, seconds));
 */
export function recordRouteTemplates(app: Express): void {
  Object.defineProperty(app.request, 'route', {
    configurable: true,
    get(this: Request & Recorded): unknown {
      return this[ROUTE];
    },
    set(this: Request & Recorded, route: { path?: unknown } | undefined) {
      this[ROUTE] = route;
      this[TEMPLATE] = route?.path === undefined ? undefined : `${this.baseUrl}${String(route.path)}`;
    },
  });
}

/** The full template of the last route the request matched, or `unmatched`. */
export function routeTemplate(req: Request): string {
  return (req as Request & Recorded)[TEMPLATE] ?? UNMATCHED;
}
