// Pieces every reconciler uses: the custom object as a checked lib/resources type, a
// ReconcileError turned into conditions, and the refusal to write for a Tenant being deleted.

import { ReconcileError } from '../../lib/reconcile/errors.js';
import { ManifestError, checkResource, type Resource } from '../../lib/resources.js';
import type { ConditionInput } from '../conditions.js';
import type { CustomObject } from '../kube.js';
import type { ReconcileContext } from '../reconcile-types.js';

/** How soon to look again at an object waiting on another (its Tenant), besides the watch event. */
export const DEPENDENCY_RETRY_MS = 30_000;

/**
 * The object as lib/resources types it, or the conditions saying what is wrong with it. The API
 * server's schema already refuses most mistakes; this catches the rest (a key listed twice).
 */
export function asResource<R extends Resource>(
  object: CustomObject,
): { resource: R; invalid?: undefined } | { resource?: undefined; invalid: ConditionInput[] } {
  try {
    const resource = checkResource(
      object as unknown as Record<string, unknown>,
      object.kind ?? '',
      object.metadata.namespace,
    );
    return { resource: resource as R };
  } catch (err) {
    if (!(err instanceof ManifestError)) throw err;
    const message = err.errors.map((e) => `${e.field}: ${e.message}`).join('; ');
    return { invalid: [{ type: 'Ready', status: 'False', reason: 'InvalidSpec', message }] };
  }
}

/** The Ready condition for a ReconcileError; anything else is rethrown for a retry. */
export function notReady(err: unknown): ConditionInput {
  if (!(err instanceof ReconcileError)) throw err;
  return { type: 'Ready', status: 'False', reason: err.reason, message: err.message };
}

/**
 * Why an object naming a Tenant that is being deleted is not converged, or undefined when its
 * Tenant is not being deleted. Nothing is written for such an object (no key, no row): the
 * Tenant waits for it to be deleted, and it only says so.
 */
export function tenantDeleting(object: CustomObject, context: ReconcileContext): ConditionInput | undefined {
  const tenantName = (object.spec as { tenantRef?: { name?: string } }).tenantRef?.name;
  if (!tenantName) return undefined;
  const tenant = context.tenant(object.metadata.namespace, tenantName);
  if (!tenant?.metadata.deletionTimestamp) return undefined;
  return {
    type: 'Ready',
    status: 'False',
    reason: 'TenantDeleting',
    message:
      `Tenant ${tenantName} is being deleted and waits for this ${object.kind} to be deleted first; ` +
      'nothing is written for it meanwhile',
  };
}

/** The status an object had, without what the controller writes itself: kept as it was. */
export function previousStatus(object: CustomObject): Record<string, unknown> {
  const {
    conditions: _c,
    observedGeneration: _g,
    ...rest
  } = (object.status ?? {}) as Record<string, unknown>;
  return rest;
}
