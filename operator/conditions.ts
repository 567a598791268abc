// Status conditions in the metav1.Condition shape. A condition keeps its lastTransitionTime while
// its status stays the same, so that re-reconciling an unchanged object yields an identical
// status and nothing is written.

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: string;
  status: ConditionStatus;
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/**
 * Returns `existing` with each of `updates` set, in the order of `updates`, each stamped with
 * `generation`; a condition whose status did not flip keeps its lastTransitionTime.
 *
 *   status.conditions = setConditions(old.conditions, gen, [{ type: 'Ready', status: 'True', ... }]);
 */
export function setConditions(
  existing: readonly Condition[] | undefined,
  generation: number | undefined,
  updates: ConditionInput[],
  now: Date = new Date(),
): Condition[] {
  const byType = new Map((existing ?? []).map((c) => [c.type, c]));
  return updates.map((update) => {
    const old = byType.get(update.type);
    // Kubernetes stores times to the second (RFC 3339 without fractions).
    const stamp = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
    return {
      type: update.type,
      status: update.status,
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
      lastTransitionTime: old && old.status === update.status ? old.lastTransitionTime : stamp,
      reason: update.reason,
      message: update.message,
    };
  });
}

/** The reason of a Ready condition written for a reconcile that threw (Postgres away, a refusal). */
export const RECONCILE_FAILED = 'ReconcileFailed';

/**
 * The conditions after a reconcile of `generation` that could not finish: Ready turns False
 * with reason ReconcileFailed and what failed, stamped with the generation that was tried; the
 * other conditions stay as they were, with the generation they were last found true for.
 *
 *   status.conditions = failedConditions(old.conditions, gen, 'Postgres is unreachable: ...');
 */
export function failedConditions(
  existing: readonly Condition[] | undefined,
  generation: number | undefined,
  message: string,
  now: Date = new Date(),
): Condition[] {
  const [ready] = setConditions(
    existing,
    generation,
    [{ type: 'Ready', status: 'False', reason: RECONCILE_FAILED, message }],
    now,
  );
  const others = existing ?? [];
  return others.some((c) => c.type === 'Ready')
    ? others.map((c) => (c.type === 'Ready' ? ready! : c))
    : [...others, ready!];
}

/** The condition of a type, if present. */
export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/**
 * Deep equality of JSON values, ignoring key order; what decides whether a status write is needed.
 *
 *   jsonEqual({ a: 1, b: [2] }, { b: [2], a: 1 })  // true
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  }
  const ka = Object.keys(a as object).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b as object).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return (
    ka.length === kb.length &&
    ka.every((k) => jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
  );
}
