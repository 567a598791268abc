// The answer to a request no route took. A path the API has, asked with a method it does not
// take, is a 405 whose `Allow` lists the methods it does (RFC 9110 §15.5.6), read from the OpenAPI
// document the api serves; anything else is a 404. Where an SDK call has no route because the
// resource is declared in Kubernetes rather than through the API (Resend's `domains.create`,
// `apiKeys.*`), the answer says where it is declared.

import type { NextFunction, Request, Response } from 'express';
import { Problem } from '../lib/problem.js';

/** Resources the cluster declares, by the path templates an SDK reaches them at. */
const DECLARED: { path: RegExp; detail: string }[] = [
  {
    path: /^\/v1\/domains(\/[^/]+)?\/?$/,
    detail:
      'Sending domains are declared as SendingDomain resources (kubectl apply); the API lists them, ' +
      'shows their DNS records and checks them.',
  },
  {
    path: /^\/v1\/api-keys(\/[^/]+)?\/?$/,
    detail:
      "API keys are declared in a Tenant's spec.apiKeys (kubectl apply); the operator writes each key " +
      'to a Secret, and removing the entry revokes it.',
  },
];

/**
 * The last route of the app: 405 with `Allow` for a documented path asked with another method,
 * otherwise 404, each saying where a declared resource is managed.
 *
 *   app.use(unrouted(document.paths));
 */
export function unrouted(paths: Record<string, Record<string, unknown>>) {
  const templates = Object.entries(paths).map(([template, methods]) => ({
    pattern: new RegExp(
      `^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}/]+\}/g, '[^/]+')}/?$`,
    ),
    methods: Object.keys(methods).map((m) => m.toUpperCase()),
  }));
  const allowedOn = (path: string): string[] => {
    const methods = new Set<string>();
    for (const t of templates) if (t.pattern.test(path)) for (const m of t.methods) methods.add(m);
    if (methods.has('GET')) methods.add('HEAD');
    return [...methods];
  };
  return (req: Request, res: Response, next: NextFunction): void => {
    const declared = DECLARED.find((d) => d.path.test(req.path));
    const also = declared ? ` ${declared.detail}` : '';
    const allowed = allowedOn(req.path);
    if (allowed.length > 0 && !allowed.includes(req.method)) {
      res.set('Allow', allowed.join(', '));
      const detail = `${req.method} is not a method of ${req.path}; it takes ${allowed.join(', ')}.${also}`;
      next(new Problem(405, 'method-not-allowed', detail));
      return;
    }
    next(new Problem(404, 'not-found', `No route for ${req.method} ${req.path}.${also}`));
  };
}
