// Template → a new version in Postgres once it compiles in the sandbox and renders its sample
// data; a template that does not compile keeps serving its last good version. Nothing is stored
// for a Template whose Tenant is being deleted.
//
// RBAC:
//   mailplane.io   templates             get list watch patch
//   mailplane.io   templates/status      patch
//   ""             events                create

import type { Db } from '../../lib/db/index.js';
import { deleteTemplate, reconcileTemplate } from '../../lib/reconcile/template.js';
import type { Renderer } from '../../lib/render/sandbox.js';
import type { TemplateResource } from '../../lib/resources.js';
import type { CustomObject } from '../kube.js';
import type { FinalizeResult, ReconcileResult, Reconciler } from '../reconcile-types.js';
import { DEPENDENCY_RETRY_MS, asResource, notReady, previousStatus, tenantDeleting } from './shared.js';

export function templateReconciler(deps: {
  db: Db;
  renderer: Pick<Renderer, 'compile' | 'render'>;
}): Reconciler {
  const { db } = deps;
  return {
    kind: 'Template',
    plural: 'templates',
    keepsSecrets: false,

    async reconcile(object, context): Promise<ReconcileResult> {
      const { resource, invalid } = asResource<TemplateResource>(object);
      if (!resource) return { conditions: invalid };
      const deleting = tenantDeleting(object, context);
      if (deleting) {
        return {
          conditions: [
            { type: 'Compiled', status: 'Unknown', reason: deleting.reason, message: deleting.message },
            deleting,
          ],
          status: previousStatus(object),
        };
      }
      try {
        const outcome = await reconcileTemplate(deps, resource);
        const rendered = resource.spec.sampleData ? ' and renders its sample data' : '';
        return {
          conditions: [
            { type: 'Compiled', status: 'True', reason: 'Compiled', message: `compiles${rendered}` },
            {
              type: 'Ready',
              status: 'True',
              reason: 'VersionStored',
              message: `version ${outcome.version} in use`,
            },
          ],
          status: { version: outcome.version },
        };
      } catch (err) {
        const ready = notReady(err);
        const compiled =
          ready.reason === 'TemplateInvalid' || ready.reason === 'SampleDataTooLarge'
            ? { ...ready, type: 'Compiled' }
            : { type: 'Compiled', status: 'Unknown' as const, reason: ready.reason, message: ready.message };
        const previous = (object.status as { version?: number } | undefined)?.version;
        return {
          conditions: [compiled, ready],
          ...(previous ? { status: { version: previous } } : {}),
          ...(ready.reason === 'TenantNotFound' ? { requeueAfterMs: DEPENDENCY_RETRY_MS } : {}),
        };
      }
    },

    async finalize(object: CustomObject): Promise<FinalizeResult> {
      const spec = object.spec as TemplateResource['spec'];
      await deleteTemplate(db, object.metadata.namespace, spec.tenantRef.name, object.metadata.name);
      return { done: true };
    },
  };
}
