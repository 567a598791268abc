// The sender's reads that are not state changes (those are lib/db/transitions.ts): the body of a
// template version, for rendering.

import type { Db } from '../lib/db/index.js';
import type { TemplateVariable } from '../lib/db/schema.js';

/** The body of a template version, for rendering; versions never change once written. */
export async function loadTemplateVersion(
  db: Db,
  tenantId: string,
  templateId: string,
  version: number,
): Promise<
  | { subject: string; html: string | null; text: string | null; variables: TemplateVariable[] | null }
  | undefined
> {
  return db
    .selectFrom('template_versions as v')
    .innerJoin('templates as t', 't.id', 'v.template_id')
    .select(['v.subject', 'v.html', 'v.text', 'v.variables'])
    .where('t.tenant_id', '=', tenantId)
    .where('v.template_id', '=', templateId)
    .where('v.version', '=', version)
    .executeTakeFirst();
}
