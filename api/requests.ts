// How a query or a body other than a send's is read: parsed by its zod schema (the one the OpenAPI
// document describes), every fault reported at once as a 422 naming its field, as api/validate.ts
// does for sends; and Resend's page parameters (`limit`, `after`, `before`), which every list takes.

import { z } from 'zod';
import { Problem, type FieldError } from '../lib/problem.js';
import type { Page } from '../lib/db/webhooks.js';
import { describeFaults } from './validate.js';

/** Resend's page sizes: 1 to 100 items, 20 when not asked. */
export const MAX_PAGE = 100;
export const DEFAULT_PAGE = 20;

/** The field a zod path names, as api/validate.ts spells fields: `events[2]`, `(body)` for the whole. */
function fieldOf(path: readonly PropertyKey[]): string {
  let field = '';
  for (const key of path)
    field += typeof key === 'number' ? `[${key}]` : field ? `.${String(key)}` : String(key);
  return field || '(body)';
}

/** What to tell a caller who sent a member the request does not have, by its name. */
export type UnknownMemberHint = (key: string) => string | undefined;

function faultsOf(error: z.ZodError, hint: UnknownMemberHint): FieldError[] {
  return error.issues.flatMap((issue): FieldError[] => {
    if (issue.code !== 'unrecognized_keys') return [{ field: fieldOf(issue.path), message: issue.message }];
    return issue.keys.map((key) => ({
      field: fieldOf([...issue.path, key]),
      message: hint(key) ?? 'is not a member of this request',
    }));
  });
}

/** A 422 listing every fault, the first in its detail (what Resend's SDK shows as the message). */
export function refuse(errors: FieldError[]): never {
  throw new Problem(422, 'validation-error', describeFaults(errors), errors);
}

/**
 * A body (or a query) parsed by `schema`, or a 422 listing its faults and those `more` finds in
 * what parsed.
 *
 *   const { scheduled_at } = parseRequest(UpdateEmail, req.body);
 */
export function parseRequest<T extends z.ZodType>(
  schema: T,
  body: unknown,
  options: { more?: (value: z.output<T>) => FieldError[]; hint?: UnknownMemberHint } = {},
): z.output<T> {
  const parsed = schema.safeParse(body ?? {}, { reportInput: false });
  if (!parsed.success) {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      refuse([{ field: '(body)', message: 'must be a JSON object' }]);
    }
    refuse(faultsOf(parsed.error, options.hint ?? (() => undefined)));
  }
  const errors = options.more?.(parsed.data) ?? [];
  if (errors.length > 0) refuse(errors);
  return parsed.data;
}

/**
 * Resend's PaginationOptions as query parameters, for a list whose cursors are ids matching
 * `pattern`; `what` names such an id in a fault ("must be an email id").
 */
export function pageParams(what: string, pattern: RegExp) {
  const cursor = z.string({ error: `must be ${what}` }).regex(pattern, { error: `must be ${what}` });
  return {
    limit: z.coerce
      .number({ error: `must be a number from 1 to ${MAX_PAGE}` })
      .int({ error: `must be a whole number from 1 to ${MAX_PAGE}` })
      .min(1, { error: `must be from 1 to ${MAX_PAGE}` })
      .max(MAX_PAGE, { error: `must be from 1 to ${MAX_PAGE}` })
      .optional()
      .describe(`Items on the page: 1 to ${MAX_PAGE}, ${DEFAULT_PAGE} when not given.`),
    after: cursor.optional().describe('The id of the last item of the previous page: the next, older items.'),
    before: cursor.optional().describe('The id of the first item of a page: the newer items before it.'),
  };
}

/** The parsed page parameters as a Page; `before` with `after` is a fault (pageFaults). */
export function pageOf(q: {
  limit?: number | undefined;
  after?: string | undefined;
  before?: string | undefined;
}): Page {
  return {
    limit: q.limit ?? DEFAULT_PAGE,
    ...(q.after === undefined ? {} : { after: q.after }),
    ...(q.before === undefined ? {} : { before: q.before }),
  };
}

/** One cursor at most: a page is read one way from one item. */
export function pageFaults(q: { after?: string | undefined; before?: string | undefined }): FieldError[] {
  return q.after !== undefined && q.before !== undefined
    ? [{ field: 'before', message: 'cannot be given with after' }]
    : [];
}
