// Pieces every reconciler uses: the custom object as a checked lib/resources type, and a
// ReconcileError turned into conditions.

import { ReconcileError } from '../../lib/reconcile/errors.js';
import { ManifestError, checkResource, type Resource } from '../../lib/resources.js';
import type { ConditionInput } from '../conditions.js';
import type { CustomObject } from '../kube.js';

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
