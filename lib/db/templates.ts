// Templates joined to their current version: the api pins it at accept time, the reconciler
// compares against it before storing a new one.

import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

/**
 * Starts a query over templates and their current version; callers add the select and where.
 *
 *   await withCurrentVersion(db).select(['templates.id', 'template_versions.subject'])
 *     .where('templates.name', '=', 'welcome').executeTakeFirst();
 */
export function withCurrentVersion(db: Kysely<Database>) {
  return db
    .selectFrom('templates')
    .innerJoin('template_versions', (join) =>
      join
        .onRef('template_versions.template_id', '=', 'templates.id')
        .onRef('template_versions.version', '=', 'templates.current_version'),
    );
}
