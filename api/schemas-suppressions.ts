// What /v1/suppressions takes and answers, defined once: api/suppressions.ts parses with these and
// builds its answers as their types, api/openapi.ts describes them. An address is checked as a
// send checks one (lib/address.ts) and stored lower-cased, as the sender compares it.

import { z } from 'zod';
import { AddressError, normalizeAddress } from '../lib/address.js';
import { SUPPRESSION_REASONS, type SuppressionReason } from '../lib/db/schema.js';
import { pageFaults, pageOf, pageParams, parseRequest } from './requests.js';
import { unstorable } from './schemas-checks.js';
import type { SuppressionFilter, SuppressionPage } from '../lib/db/suppressions.js';

/** Addresses one POST adds: a list pasted from elsewhere; larger lists go through the CSV import. */
export const MAX_ADDED = 1000;
/** A note kept with the suppression (why it was added by hand): a line, not a document. */
export const MAX_DETAIL = 1000;
/** RFC 5321 4.5.3.1.3: an address is at most 254 octets. */
const MAX_ADDRESS = 254;
const LOOKS_LIKE_ADDRESS = /^[^\s@]+@[^\s@]+$/;
const REASONS = SUPPRESSION_REASONS.join(', ');

const dateTime = z.string().meta({ format: 'date-time' });

/**
 * The lower-cased address, or why it is not one.
 *
 *   suppressionAddress('Ada@Example.org')   // 'ada@example.org'
 */
export function suppressionAddress(value: string): string | { fault: string } {
  try {
    return normalizeAddress(value.trim()).toLowerCase();
  } catch (err) {
    if (err instanceof AddressError) return { fault: err.message };
    throw err;
  }
}

const address = z
  .string({ error: 'is required: an email address' })
  .max(MAX_ADDRESS, { error: `must be at most ${MAX_ADDRESS} characters` })
  .transform((value, ctx) => {
    const parsed = suppressionAddress(value);
    if (typeof parsed === 'string') return parsed;
    ctx.addIssue({ code: 'custom', message: parsed.fault });
    return z.NEVER;
  })
  .describe('An email address; compared and stored lower-cased.');

export const SuppressionReasonSchema = z
  .enum(SUPPRESSION_REASONS, { error: `must be one of ${REASONS}` })
  .describe(
    'bounce (the address does not exist), complaint (the recipient marked mail as spam), ' +
      'unsubscribe (the recipient asked for no more mail), manual (added through the API or an import).',
  );

/** One suppression to add. */
export const NewSuppression = z.strictObject({
  address,
  reason: SuppressionReasonSchema.default('manual').describe(
    'Why; manual when not given. bounce, complaint and unsubscribe carry over a list from elsewhere.',
  ),
  detail: z
    .string({ error: 'must be a string' })
    .max(MAX_DETAIL, { error: `must be at most ${MAX_DETAIL} characters` })
    .superRefine((value, ctx) => {
      const fault = unstorable(value);
      if (fault) ctx.addIssue({ code: 'custom', message: fault });
    })
    .nullish()
    .describe('A note kept with it.'),
});

const SuppressionBatch = z.strictObject({
  suppressions: z
    .array(NewSuppression, { error: 'must be a list of suppressions' })
    .min(1, { error: 'must list at least one suppression' })
    .max(MAX_ADDED, { error: `must list at most ${MAX_ADDED}; import larger lists as CSV` }),
});

/** POST /v1/suppressions: one address, or a list of them. */
export const AddSuppressions = z
  .union([NewSuppression, SuppressionBatch])
  .describe(
    `One suppression (\`{address, reason, detail}\`), or up to ${MAX_ADDED} as \`{suppressions: [...]}\`. ` +
      'An address suppressed already keeps the reason it has.',
  );

/** A suppression, as every route answers it. */
export const Suppression = z.object({
  object: z.literal('suppression'),
  address: z.string(),
  reason: SuppressionReasonSchema,
  detail: z
    .string()
    .nullable()
    .describe(
      'The bounce’s reply, the complaint’s feedback type, how an unsubscribe came, or the note given.',
    ),
  created_at: dateTime,
});

export const SuppressionList = z.object({
  object: z.literal('list'),
  has_more: z.boolean().describe('More suppressions lie beyond this page, in the direction it was read.'),
  data: z.array(Suppression).describe('The suppressions, in address order.'),
});

/** POST /v1/suppressions. */
export const AddedSuppressions = z.object({
  object: z.literal('list'),
  data: z
    .array(
      Suppression.extend({
        added: z.boolean().describe('false: the address was suppressed already, and keeps its reason.'),
      }),
    )
    .describe('Each address given, as it is now suppressed, in the order given.'),
});

/** DELETE /v1/suppressions/{address}. */
export const LiftedSuppression = z.object({
  object: z.literal('suppression'),
  address: z.string(),
  reason: SuppressionReasonSchema.describe('The reason it had.'),
  deleted: z.literal(true),
});

/** POST /v1/suppressions/import. */
export const SuppressionImport = z.object({
  object: z.literal('suppression_import'),
  added: z.int().min(0).describe('Rows whose address was not suppressed, and now is.'),
  existing: z.int().min(0).describe('Rows whose address was suppressed already (it keeps its reason).'),
  rejected: z.int().min(0).describe('Rows that were not taken; the first of them are listed in errors.'),
  errors: z
    .array(z.object({ line: z.int().min(1), message: z.string() }))
    .describe('Why each rejected row was not taken, by its line in the file, up to the first 100.'),
});

const cursor = /^[^\s@]+@[^\s@]+$/;
const filters = {
  reason: SuppressionReasonSchema.optional().describe('Only suppressions for this reason.'),
  address: z
    .string({ error: 'must be an email address' })
    .max(MAX_ADDRESS, { error: `must be at most ${MAX_ADDRESS} characters` })
    .regex(LOOKS_LIKE_ADDRESS, { error: 'must be an email address, such as ada@example.org' })
    .optional()
    .describe('Only this address, in any case: whether it is suppressed, and why.'),
};

/** GET /v1/suppressions. */
export const ListSuppressionsQuery = z.strictObject({
  ...pageParams('an address', cursor),
  ...filters,
});

/** GET /v1/suppressions/export. */
export const ExportSuppressionsQuery = z.strictObject({ reason: filters.reason });

/** DELETE /v1/suppressions/{address}. */
export const LiftSuppressionQuery = z.strictObject({
  lift_complaint: z
    .enum(['true', 'false'], { error: 'must be true or false' })
    .optional()
    .describe(
      'true lifts a suppression that came from a complaint (the recipient marked the mail as spam); ' +
        'without it such a suppression is a 409 and stays.',
    ),
});

/**
 * POST /v1/suppressions's body, its faults named by their field: a body with `suppressions` is a
 * list, any other one suppression.
 *
 *   parseAdd({ address: 'ada@example.org' })   // [{ address: 'ada@example.org', reason: 'manual' }]
 */
export function parseAdd(body: unknown): z.output<typeof NewSuppression>[] {
  if (typeof body === 'object' && body !== null && 'suppressions' in body) {
    return parseRequest(SuppressionBatch, body).suppressions;
  }
  return [parseRequest(NewSuppression, body)];
}

/**
 * GET /v1/suppressions's query, as lib/db/suppressions.ts reads it.
 *
 *   parseListQuery({ reason: 'bounce', limit: '50' })   // { filter: { reason: 'bounce' }, page: { limit: 50 } }
 */
export function parseListQuery(query: unknown): { filter: SuppressionFilter; page: SuppressionPage } {
  const q = parseRequest(ListSuppressionsQuery, query, { more: pageFaults });
  return {
    filter: filterOf(q),
    page: {
      ...pageOf(q),
      ...(q.after === undefined ? {} : { after: q.after.toLowerCase() }),
      ...(q.before === undefined ? {} : { before: q.before.toLowerCase() }),
    },
  };
}

export function parseExportQuery(query: unknown): SuppressionFilter {
  return filterOf(parseRequest(ExportSuppressionsQuery, query));
}

function filterOf(q: { reason?: SuppressionReason | undefined; address?: string | undefined }) {
  return {
    ...(q.reason === undefined ? {} : { reason: q.reason }),
    ...(q.address === undefined ? {} : { address: q.address.trim().toLowerCase() }),
  };
}
