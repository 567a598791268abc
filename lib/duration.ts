// Durations in spec fields, written as Kubernetes users write them: Go duration strings
// (cert-manager's `2160h`, `1h30m`) plus `d` for days (`90d`), since a key rotation period is
// naturally counted in days. The CRDs check the form with DURATION_PATTERN; this reads the value.

/** The form the CRDs accept: one or more numbers each with a unit of d, h, m or s. */
export const DURATION_PATTERN = /^([0-9]+(\.[0-9]+)?(d|h|m|s))+$/;

const UNIT_MS: Record<string, number> = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 };

/**
 * Milliseconds of a duration such as `90d`, `2160h` or `36h30m`; undefined when it is not one.
 *
 *   parseDuration('90d')   // 7776000000
 *   parseDuration('1h30m') // 5400000
 */
export function parseDuration(text: string): number | undefined {
  if (!DURATION_PATTERN.test(text)) return undefined;
  let ms = 0;
  for (const [, value, , unit] of text.matchAll(/([0-9]+(\.[0-9]+)?)(d|h|m|s)/g)) {
    ms += Number(value) * UNIT_MS[unit!]!;
  }
  return Math.round(ms);
}
