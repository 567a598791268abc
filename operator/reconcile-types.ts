// What a reconciler gives back to the controller that runs it.

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

export interface Reconciler {
  kind: 'Tenant' | 'SendingDomain' | 'Template';
  plural: string;
  /** Converges what the object asks for; a thrown error is retried with backoff. */
  reconcile(object: CustomObject): Promise<ReconcileResult>;
  /** Removes what the object owns before it is deleted. */
  finalize(object: CustomObject): Promise<void>;
}
