// Templates as the API reads and writes them: a tenant's templates a page at a time, one with its
// versions, and the statements that create one, store a new version and remove one. Every version
// is kept; the current one is what sends pin. The audit log sees each change through its triggers
// (templates created, updated to a version, renamed, deleted).

import { sql } from 'kysely';
import type { Db } from './index.js';
import { withCurrentVersion } from './templates.js';
import type { TemplateVariable } from './schema.js';
import type { Page, PageOf } from './webhooks.js';
import type { TemplateContent } from '../template-check.js';

/** A template with its current version, as the API shows it. */
export interface TemplateRow {
  id: string;
  name: string;
  source: 'resource' | 'api';
  current_version: number;
  created_at: Date;
  updated_at: Date;
  subject: string;
  html: string | null;
  text: string | null;
  variables: TemplateVariable[] | null;
  sample_data: Record<string, unknown> | null;
  /** When the current version was stored: Resend's published_at. */
  version_created_at: Date;
}

export interface VersionRow {
  version: number;
  subject: string;
  html: string | null;
  text: string | null;
  variables: TemplateVariable[] | null;
  sample_data: Record<string, unknown> | null;
  digest: string;
  created_at: Date;
}

/** A version to store: its parts, what it declares and was checked with, and its digest. */
export interface NewVersion extends TemplateContent {
  variables: TemplateVariable[] | null;
  sampleData: Record<string, unknown> | null;
  digest: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function selectTemplates(db: Db) {
  return withCurrentVersion(db).select([
    'templates.id',
    'templates.name',
    'templates.source',
    'templates.current_version',
    'templates.created_at',
    'templates.updated_at',
    'template_versions.subject',
    'template_versions.html',
    'template_versions.text',
    'template_versions.variables',
    'template_versions.sample_data',
    'template_versions.created_at as version_created_at',
  ]);
}

/**
 * The tenant's template that `ref` names, by id or by name (as a send names it), or undefined.
 *
 *   const template = await findTemplate(db, tenantId, 'welcome');
 */
export async function findTemplate(db: Db, tenantId: string, ref: string): Promise<TemplateRow | undefined> {
  return selectTemplates(db)
    .where('templates.tenant_id', '=', tenantId)
    .where(UUID.test(ref) ? 'templates.id' : 'templates.name', '=', ref)
    .executeTakeFirst();
}

/**
 * A page of the tenant's templates, newest first; `after` and `before` are template ids.
 *
 *   const { rows, hasMore } = await listTemplates(db, tenantId, { limit: 20 });
 */
export async function listTemplates(db: Db, tenantId: string, page: Page): Promise<PageOf<TemplateRow>> {
  const newer = page.before !== undefined;
  const cursor = page.before ?? page.after;
  let query = selectTemplates(db)
    .where('templates.tenant_id', '=', tenantId)
    .orderBy('templates.created_at', newer ? 'asc' : 'desc')
    .orderBy('templates.id', newer ? 'asc' : 'desc')
    .limit(page.limit + 1);
  if (cursor !== undefined) {
    query = query.where(
      sql<boolean>`(templates.created_at, templates.id) ${sql.raw(newer ? '>' : '<')} (
        select c.created_at, c.id from templates c where c.id = ${cursor} and c.tenant_id = ${tenantId})`,
    );
  }
  const rows = await query.execute();
  const kept = rows.slice(0, page.limit);
  return { rows: newer ? kept.reverse() : kept, hasMore: rows.length > page.limit };
}

/**
 * The template's versions, newest first, at most `limit` of them.
 *
 *   const versions = await listVersions(db, template.id, 50);
 */
export async function listVersions(db: Db, templateId: string, limit: number): Promise<VersionRow[]> {
  return db
    .selectFrom('template_versions')
    .select(['version', 'subject', 'html', 'text', 'variables', 'sample_data', 'digest', 'created_at'])
    .where('template_id', '=', templateId)
    .orderBy('version', 'desc')
    .limit(limit)
    .execute();
}

/** One version of the template, or undefined. */
export async function loadVersion(
  db: Db,
  templateId: string,
  version: number,
): Promise<VersionRow | undefined> {
  return db
    .selectFrom('template_versions')
    .select(['version', 'subject', 'html', 'text', 'variables', 'sample_data', 'digest', 'created_at'])
    .where('template_id', '=', templateId)
    .where('version', '=', version)
    .executeTakeFirst();
}

/** Whether the tenant is live, holding off its retirement until the caller's transaction ends. */
async function tenantLive(trx: Db, tenantId: string): Promise<boolean> {
  // Shares the lock retireTenant takes: a tenant being deleted gets no new template.
  const row = await trx
    .selectFrom('tenants')
    .select('id')
    .where('id', '=', tenantId)
    .where('deleted_at', 'is', null)
    .forShare()
    .executeTakeFirst();
  return row !== undefined;
}

function versionValues(templateId: string, version: number, v: NewVersion) {
  return {
    template_id: templateId,
    version,
    subject: v.subject,
    html: v.html,
    text: v.text,
    variables: v.variables ? JSON.stringify(v.variables) : null,
    sample_data: v.sampleData ? JSON.stringify(v.sampleData) : null,
    digest: v.digest,
  };
}

export type CreateOutcome = { id: string } | { taken: true } | { tenantGone: true };

/**
 * Creates a template made through the API with its first version; `taken` when the tenant has one
 * of that name already. Run it in the caller's audited transaction.
 *
 *   const outcome = await createTemplate(trx, tenantId, 'welcome', version);
 */
export async function createTemplate(
  trx: Db,
  tenantId: string,
  name: string,
  version: NewVersion,
): Promise<CreateOutcome> {
  if (!(await tenantLive(trx, tenantId))) return { tenantGone: true };
  const row = await trx
    .insertInto('templates')
    .values({ tenant_id: tenantId, name, current_version: 1, source: 'api' })
    .onConflict((oc) => oc.columns(['tenant_id', 'name']).doNothing())
    .returning('id')
    .executeTakeFirst();
  if (!row) return { taken: true };
  await trx
    .insertInto('template_versions')
    .values(versionValues(row.id, 1, version))
    .execute();
  return { id: row.id };
}

export type UpdateOutcome =
  { version: number; changed: boolean } | { gone: true } | { readOnly: true } | { taken: true };

/**
 * Stores `version` as the template's new current version (unless its digest is the current one's)
 * and renames it when `name` is given. A template that became a resource's meanwhile is not
 * changed. Run it in the caller's audited transaction.
 *
 *   await saveVersion(trx, tenantId, template.id, version, { name: 'welcome-v2' });
 */
export async function saveVersion(
  trx: Db,
  tenantId: string,
  templateId: string,
  version: NewVersion,
  changes: { name?: string } = {},
): Promise<UpdateOutcome> {
  const current = await withCurrentVersion(trx)
    .select(['templates.current_version', 'templates.source', 'templates.name', 'template_versions.digest'])
    .where('templates.tenant_id', '=', tenantId)
    .where('templates.id', '=', templateId)
    .forUpdate()
    .executeTakeFirst();
  if (!current) return { gone: true };
  if (current.source !== 'api') return { readOnly: true };
  const renamed = changes.name !== undefined && changes.name !== current.name;
  if (renamed) {
    const clash = await trx
      .selectFrom('templates')
      .select('id')
      .where('tenant_id', '=', tenantId)
      .where('name', '=', changes.name!)
      .executeTakeFirst();
    if (clash) return { taken: true };
  }
  const changed = current.digest !== version.digest;
  const next = changed ? current.current_version + 1 : current.current_version;
  if (changed) {
    await trx
      .insertInto('template_versions')
      .values(versionValues(templateId, next, version))
      .execute();
  }
  if (changed || renamed) {
    await trx
      .updateTable('templates')
      .set({
        current_version: next,
        ...(renamed ? { name: changes.name! } : {}),
        updated_at: sql`now()`,
      })
      .where('id', '=', templateId)
      .execute();
  }
  return { version: next, changed };
}

/**
 * Removes a template made through the API and its versions; emails still queued with it fail
 * with the reason when they come to be sent.
 *
 *   const outcome = await removeTemplate(trx, tenantId, template.id);
 */
export async function removeTemplate(
  trx: Db,
  tenantId: string,
  templateId: string,
): Promise<'deleted' | 'gone' | 'read-only'> {
  const row = await trx
    .deleteFrom('templates')
    .where('tenant_id', '=', tenantId)
    .where('id', '=', templateId)
    .where('source', '=', 'api')
    .returning('id')
    .executeTakeFirst();
  if (row) return 'deleted';
  const left = await trx
    .selectFrom('templates')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('id', '=', templateId)
    .executeTakeFirst();
  return left ? 'read-only' : 'gone';
}
