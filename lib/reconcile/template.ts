// Converges a Template into a row and its versions: the ejs must compile in the sandbox and render
// its sample data before a version is stored (lib/template-check.ts, the check the API's templates
// pass too); an unchanged template makes no new version. A template of the same name made through
// the API is taken over: from then on the resource is its source of truth, its versions kept.

import { sql } from 'kysely';
import { withCurrentVersion } from '../db/templates.js';
import type { Db } from '../db/index.js';
import { RenderError, type Renderer } from '../render/sandbox.js';
import type { TemplateResource } from '../resources.js';
import { MAX_SAMPLE_DATA_BYTES, checkTemplate, templateDigest } from '../template-check.js';
import { ReconcileError } from './errors.js';
import { findTenantId } from './tenant.js';

export { MAX_SAMPLE_DATA_BYTES };

export interface TemplateOutcome {
  templateId: string;
  version: number;
  changed: boolean;
}

/**
 * Checks the template in the sandbox and stores a new version when its content changed.
 *
 *   const { version } = await reconcileTemplate({ db, renderer }, template);
 */
export async function reconcileTemplate(
  deps: { db: Db; renderer: Pick<Renderer, 'compile' | 'render'> },
  template: TemplateResource,
): Promise<TemplateOutcome> {
  const { db, renderer } = deps;
  const ref = template.metadata;
  const { subject, html = null, text = null, sampleData } = template.spec;
  const tenantId = await findTenantId(db, ref.namespace, template.spec.tenantRef.name);
  if (!tenantId) {
    throw new ReconcileError(
      'TenantNotFound',
      `Tenant ${ref.namespace}/${template.spec.tenantRef.name} does not exist yet`,
    );
  }
  const sampleBytes = sampleData === undefined ? 0 : Buffer.byteLength(JSON.stringify(sampleData));
  if (sampleBytes > MAX_SAMPLE_DATA_BYTES) {
    throw new ReconcileError(
      'SampleDataTooLarge',
      `Template ${ref.namespace}/${ref.name}: spec.sampleData is ${sampleBytes} bytes as JSON, more than ` +
        `the ${MAX_SAMPLE_DATA_BYTES} a message's variables may be`,
    );
  }
  const digest = templateDigest({ subject, html, text });
  try {
    await checkTemplate(renderer, { subject, html, text }, sampleData);
  } catch (err) {
    if (!(err instanceof RenderError)) throw err;
    const where = err.line ? `${err.part}, line ${err.line}` : err.part;
    throw new ReconcileError(
      'TemplateInvalid',
      `Template ${ref.namespace}/${ref.name} (${where}): ${err.message}`,
    );
  }

  return db.transaction().execute(async (trx) => {
    // Shares the lock retireTenant takes: a tenant being deleted gets no new template.
    const live = await trx
      .selectFrom('tenants')
      .select('id')
      .where('id', '=', tenantId)
      .where('deleted_at', 'is', null)
      .forShare()
      .executeTakeFirst();
    if (!live) {
      throw new ReconcileError(
        'TenantNotFound',
        `Tenant ${ref.namespace}/${template.spec.tenantRef.name} does not exist yet`,
      );
    }
    const current = await withCurrentVersion(trx)
      .select(['templates.id', 'templates.current_version', 'templates.source', 'template_versions.digest'])
      .where('templates.tenant_id', '=', tenantId)
      .where('templates.name', '=', ref.name)
      .forUpdate()
      .executeTakeFirst();
    if (current?.digest === digest && current.source === 'resource') {
      return { templateId: current.id, version: current.current_version, changed: false };
    }
    if (current?.digest === digest) {
      // Made through the API with this very content: taken over without a new version.
      await trx.updateTable('templates').set({ source: 'resource' }).where('id', '=', current.id).execute();
      return { templateId: current.id, version: current.current_version, changed: false };
    }
    const version = (current?.current_version ?? 0) + 1;
    const row = await trx
      .insertInto('templates')
      .values({ tenant_id: tenantId, name: ref.name, current_version: version })
      .onConflict((oc) =>
        oc
          .columns(['tenant_id', 'name'])
          .doUpdateSet({ current_version: version, source: 'resource', updated_at: sql`now()` }),
      )
      .returning('id')
      .executeTakeFirstOrThrow();
    await trx
      .insertInto('template_versions')
      // The sample is kept with the version, for a preview through the API to render with.
      .values({
        template_id: row.id,
        version,
        subject,
        html,
        text,
        digest,
        sample_data: sampleData ? JSON.stringify(sampleData) : null,
      })
      .execute();
    return { templateId: row.id, version, changed: true };
  });
}

/** Removes the template and its versions; messages still queued with it fail with the reason. */
export async function deleteTemplate(
  db: Db,
  namespace: string,
  tenantName: string,
  name: string,
): Promise<boolean> {
  const tenantId = await findTenantId(db, namespace, tenantName);
  if (!tenantId) return false;
  const result = await db
    .deleteFrom('templates')
    .where('tenant_id', '=', tenantId)
    .where('name', '=', name)
    // A resource that never reconciled does not take one made through the API with it.
    .where('source', '=', 'resource')
    .executeTakeFirst();
  return result.numDeletedRows > 0n;
}
