// A SendGrid or Postmark request is translated into Mailplane's send shape and checked by the same
// code as POST /v1/emails, whose faults name Mailplane's fields (`to[2]`, `attachments[0].content`).
// The caller wrote other fields (`personalizations.0.to.2`, `Attachments[0].Content`): each
// translation records where every member it wrote came from, and a fault is named by the caller's
// field it came from, with the rest of its path after it.

import type { FieldError } from '../lib/problem.js';

/** The last segment of a field path: `.name` or `[3]`. */
const LAST_SEGMENT = /(?:\.[^.[\]]*|\[\d+\])$/;

export class FieldNames {
  private readonly names = new Map<string, string>();

  /** `join` writes the caller's field and the rest of a Mailplane path (`[1].name`) in its style. */
  constructor(private readonly join: (field: string, rest: string) => string) {}

  /**
   * Records that Mailplane's `field` (and what is below it) came from the caller's `from`.
   *
   *   names.set('to', 'personalizations.0.to').set('to[1]', 'personalizations.0.to.1');
   */
  set(field: string, from: string): this {
    this.names.set(field, from);
    return this;
  }

  /** The caller's name of a Mailplane field: the nearest recorded field above it, and the rest. */
  name(field: string): string {
    for (let at = field; at.length > 0;) {
      const from = this.names.get(at);
      if (from !== undefined) return this.join(from, field.slice(at.length));
      const shorter = at.replace(LAST_SEGMENT, '');
      if (shorter === at) break;
      at = shorter;
    }
    return field;
  }

  /** The faults renamed, without duplicates (members shared by several emails fail once). */
  rename(errors: readonly FieldError[]): FieldError[] {
    return uniqueFaults(errors.map((e) => ({ field: this.name(e.field), message: e.message })));
  }
}

/** The faults without repeats, in their order. */
export function uniqueFaults(errors: readonly FieldError[]): FieldError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const key = `${e.field}\n${e.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** A non-null, non-list object: the only thing a JSON member named as an object may be. */
export const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * An object without a prototype, for members named by the caller (headers, arguments): a key
 * `__proto__` is then a key like any other, not a prototype to set.
 */
export function ownMap<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}
