// What a reconciler gives back to the controller that runs it, and what the controller lends it.

import type { ConditionInput } from './conditions.js';
import type { CustomObject } from './kube.js';

export interface EventNote {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface ReconcileResult {
  /** Conditions in the order they are shown; the controller stamps times and generations. */
  conditions: ConditionInput[];
  /** The rest of the status (conditions and observedGeneration are added by the controller). */
  status?: Record<string, unknown>;
  /** Events for what was done (a key issued); condition changes make their own. */
  events?: EventNote[];
  /** Look again after this long even if nothing changes (DNS re-check, a missing dependency). */
  requeueAfterMs?: number;
}

/**
 * What finalizing came to: done (the finalizer comes off), or not yet, with the conditions that
 * say why (dependents left, a cleanup refused), shown while the object waits.
 */
export type FinalizeResult =
  | { done: true; events?: EventNote[] }
  | { done: false; conditions: ConditionInput[]; events?: EventNote[]; requeueAfterMs?: number };

/** What a reconciler may ask the controller about other objects, from its caches. */
export interface ReconcileContext {
  /** The Tenant `name` in `namespace`, as the cache holds it. */
  tenant(namespace: string, name: string): CustomObject | undefined;
  /** The SendingDomains and Templates in `namespace` whose spec.tenantRef names `tenant`. */
  dependents(namespace: string, tenant: string): CustomObject[];
  /** Whether the operator may keep, and so clean up, Secrets in `namespace`. */
  maySecrets(namespace: string): boolean;
}

export interface Reconciler {
  kind: 'Tenant' | 'SendingDomain' | 'Template';
  plural: string;
  /**
   * Whether objects of this kind keep keys in Secrets. Where the operator may not keep Secrets,
   * they are refused before a finalizer is added, since it could never be removed cleanly.
   */
  keepsSecrets: boolean;
  /** Converges what the object asks for; a thrown error is retried with backoff. */
  reconcile(object: CustomObject, context: ReconcileContext): Promise<ReconcileResult>;
  /** Removes what the object owns before it is deleted, or says what it waits for. */
  finalize(object: CustomObject, context: ReconcileContext): Promise<FinalizeResult>;
}
