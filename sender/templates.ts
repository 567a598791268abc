// Template versions for rendering, read once per process: a version never changes after it is
// written (a changed template is a new version), so a bulk send of one template costs one query.

import type { Db } from '../lib/db/index.js';
import { fallbacksOf } from '../lib/template-check.js';
import { loadTemplateVersion } from './queries.js';

/** Versions kept in memory; each is a few kilobytes of ejs. */
const DEFAULT_CACHE_SIZE = 500;

export interface TemplateBody {
  subject: string;
  html: string | null;
  text: string | null;
  /** What the version's declared variables fall back to when an email leaves them out. */
  fallbacks: Record<string, unknown>;
}

export interface TemplateVersions {
  get(tenantId: string, templateId: string, version: number): Promise<TemplateBody | undefined>;
}

/**
 * A cached reader of template versions, scoped by tenant.
 *
 *   const body = await createTemplateVersions(db).get(tenantId, templateId, 3);
 */
export function createTemplateVersions(db: Db, options: { cacheSize?: number } = {}): TemplateVersions {
  const cacheSize = options.cacheSize ?? DEFAULT_CACHE_SIZE;
  const cache = new Map<string, TemplateBody>();
  return {
    async get(tenantId, templateId, version) {
      const key = `${tenantId}/${templateId}@${version}`;
      const cached = cache.get(key);
      if (cached) return cached;
      const row = await loadTemplateVersion(db, tenantId, templateId, version);
      const body = row && {
        subject: row.subject,
        html: row.html,
        text: row.text,
        fallbacks: fallbacksOf(row.variables),
      };
      // A miss is not cached: the version may be written a moment later.
      if (body) {
        if (cache.size >= cacheSize) cache.delete(cache.keys().next().value as string);
        cache.set(key, body);
      }
      return body;
    },
  };
}
