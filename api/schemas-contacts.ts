// What /v1/contacts, /v1/segments and the older /v1/audiences take and answer, in Resend's names
// (its SDK's contacts.create, list, get, update, remove, contacts.segments.add, list, remove, and
// segments.create, list, get, update, remove send and read these), defined once: api/contacts.ts
// and api/segments.ts parse with them and build their answers as their types, api/openapi.ts
// describes them. An address is checked as a send checks one (lib/address.ts: an international
// domain is kept in A-labels) and stored lower-cased, as suppressions are, so that an unsubscribe
// finds its contact. Members a request does not have are refused, each named.

import { z } from 'zod';
import type { ContactPropertyValue } from '../lib/db/contacts.js';
import type { Page } from '../lib/db/webhooks.js';
import type { FieldError } from '../lib/problem.js';
import { pageFaults, pageOf, pageParams, parseRequest } from './requests.js';
import { unstorable } from './schemas-checks.js';
import { suppressionAddress } from './schemas-suppressions.js';

/** RFC 5321 4.5.3.1.3: an address is at most 254 octets. */
const MAX_ADDRESS = 254;
/** A first or last name, a segment's name: a line a person reads, not a document. */
export const MAX_NAME = 256;
/** Custom fields of one contact: what a mail merge uses, few enough to show on one screen. */
export const MAX_PROPERTIES = 50;
/** A property's key (Resend's bound) and its value as text. */
const MAX_PROPERTY_KEY = 50;
export const MAX_PROPERTY_VALUE = 2000;
/** Segments one create puts the contact in. */
export const MAX_SEGMENTS_GIVEN = 100;

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PROPERTY_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const CONTROL = /[\u0000-\u001f\u007f]/;

const dateTime = z.string().meta({ format: 'date-time' });

const requiredAnd = (wrongType: string) => (issue: { input: unknown }) =>
  issue.input === undefined ? 'is required' : wrongType;

/**
 * The lower-cased address, or why it is not one; what a path's `idOrEmail` is read as when it is
 * not an id.
 *
 *   contactAddress('Ada@Bücher.Example')   // 'ada@xn--bcher-kva.example'
 */
export const contactAddress = suppressionAddress;

const email = z
  .string({ error: requiredAnd('must be a string: an email address') })
  .max(MAX_ADDRESS, { error: `must be at most ${MAX_ADDRESS} characters` })
  .transform((value, ctx) => {
    const stored = unstorable(value);
    const parsed = stored ? { fault: stored } : contactAddress(value);
    if (typeof parsed === 'string') return parsed;
    ctx.addIssue({ code: 'custom', message: parsed.fault });
    return z.NEVER;
  })
  .describe('The contact’s address, unique in the tenant; compared and stored lower-cased.');

/** A line of text: no control characters (which also keeps out what Postgres cannot store). */
const line = (what: string) =>
  z
    .string({ error: 'must be a string' })
    .max(MAX_NAME, { error: `must be at most ${MAX_NAME} characters` })
    .refine((s) => !CONTROL.test(s) && unstorable(s) === undefined, {
      error: 'must be one line of text, without control characters',
    })
    .describe(what);

const personName = (what: string) =>
  line(`The contact’s ${what} name; null clears it.`).nullable().optional();

/** Why a property's value is not one, or undefined. */
function propertyValueFault(value: unknown): string | undefined {
  if (value === null || typeof value === 'boolean') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : 'must be a finite number';
  if (typeof value !== 'string') return 'must be a string, a number, true, false or null';
  return unstorable(value);
}

// A fault says what is wrong with the value given, not only that no member of the union took it.
const propertyValue = z
  .union(
    [
      z.string().max(MAX_PROPERTY_VALUE, { error: `must be at most ${MAX_PROPERTY_VALUE} characters` }),
      z.number(),
      z.boolean(),
      z.null(),
    ],
    {
      error: (issue) => propertyValueFault(issue.input) ?? 'must be a string, a number, true, false or null',
    },
  )
  .superRefine((value, ctx) => {
    const fault = propertyValueFault(value);
    if (fault) ctx.addIssue({ code: 'custom', message: fault });
  })
  .describe('A string, a number or a boolean; null leaves the property out (removes it on update).');

/** Why a property's name is not one, or undefined. */
function propertyKeyFault(key: string): string | undefined {
  if (key.length > MAX_PROPERTY_KEY) return `must be at most ${MAX_PROPERTY_KEY} characters`;
  if (!PROPERTY_KEY.test(key)) return 'must be letters, digits and underscores, not starting with a digit';
  return undefined;
}

const properties = z
  .record(z.string(), propertyValue, { error: 'must be an object of property names and values' })
  .superRefine((p, ctx) => {
    const keys = Object.keys(p);
    if (keys.length > MAX_PROPERTIES) {
      ctx.addIssue({ code: 'custom', message: `must have at most ${MAX_PROPERTIES} properties` });
      return;
    }
    for (const key of keys) {
      const fault = propertyKeyFault(key);
      // The name is the path: a 422 says `properties.<name>: must be …`.
      if (fault) ctx.addIssue({ code: 'custom', path: [key], message: `its name ${fault}` });
    }
  })
  .optional()
  .describe(`Custom fields, at most ${MAX_PROPERTIES}: names of letters, digits and underscores.`);

const segmentId = z.string({ error: 'must be a segment id' }).regex(UUID, { error: 'must be a segment id' });

const unsubscribed = z
  .boolean({ error: 'must be true or false' })
  .optional()
  .describe('The contact asked for no more bulk mail: broadcasts leave it out.');

const contactFields = {
  email,
  first_name: personName('first'),
  last_name: personName('last'),
  unsubscribed,
  properties,
};

/** POST /v1/audiences/{id}/contacts: a contact, into that audience. */
export const CreateAudienceContact = z.strictObject(contactFields);

/** POST /v1/contacts. */
export const CreateContact = z.strictObject({
  ...contactFields,
  segments: z
    .array(z.union([segmentId, z.strictObject({ id: segmentId })]), {
      error: 'must be a list of segment ids',
    })
    .max(MAX_SEGMENTS_GIVEN, { error: `must list at most ${MAX_SEGMENTS_GIVEN} segments` })
    .optional()
    .describe('Segments to put the contact in: ids, or `{id}` as Resend’s SDK sends them.'),
});

/** PATCH /v1/contacts/{idOrEmail}. */
export const UpdateContact = z.strictObject({
  first_name: personName('first'),
  last_name: personName('last'),
  unsubscribed,
  properties: properties.describe('Merged into the contact’s: a property given null is removed.'),
});

const segmentName = line('What the segment is called; names need not be unique.').refine(
  (s) => s.trim().length > 0,
  { error: 'must not be empty' },
);

/** POST /v1/segments, PATCH /v1/segments/{id}, POST /v1/audiences. */
export const SegmentInput = z.strictObject({
  name: z.string({ error: requiredAnd('must be a string') }).pipe(segmentName),
});

/** GET lists: Resend's page parameters, the cursor a contact's or a segment's id. */
export const ContactListQuery = z.strictObject(pageParams('a contact id', UUID));
export const SegmentListQuery = z.strictObject(pageParams('a segment id', UUID));

// Resend's members Mailplane's contacts do not have: each told why.
const HINTS: Record<string, string> = {
  topics: 'is not supported: Mailplane has no topics; use segments and `unsubscribed`',
  audience_id: 'is not a member: name the audience in the path, /v1/audiences/{id}/contacts',
  audienceId: 'is not a member: name the audience in the path, /v1/audiences/{id}/contacts',
  firstName: 'is not a member: the name is first_name',
  lastName: 'is not a member: the name is last_name',
  email: 'cannot be changed: delete the contact and create one with the new address',
};
const hint = (key: string) => (Object.hasOwn(HINTS, key) ? HINTS[key] : undefined);

export type CreateContactRequest = Omit<z.output<typeof CreateContact>, 'segments' | 'properties'> & {
  segments: string[];
  properties?: Record<string, ContactPropertyValue>;
};

/** Properties without the ones given null: on a create, null is no value. */
function present(p: Record<string, ContactPropertyValue | null> | undefined) {
  if (!p) return undefined;
  return Object.fromEntries(Object.entries(p).filter(([, v]) => v !== null)) as Record<
    string,
    ContactPropertyValue
  >;
}

/**
 * POST /v1/contacts (with segments) or /v1/audiences/{id}/contacts (without), every fault at once.
 *
 *   parseCreateContact({ email: 'Ada@example.org', segments: [{ id }] }, true)   // { email: 'ada@example.org', segments: [id] }
 */
export function parseCreateContact(body: unknown, withSegments: boolean): CreateContactRequest {
  if (!withSegments) {
    const parsed = parseRequest(CreateAudienceContact, body, { hint });
    return { ...parsed, segments: [], properties: present(parsed.properties) };
  }
  const { segments, ...parsed } = parseRequest(CreateContact, body, { hint });
  return {
    ...parsed,
    segments: (segments ?? []).map((s) => (typeof s === 'string' ? s : s.id).toLowerCase()),
    properties: present(parsed.properties),
  };
}

export type UpdateContactRequest = z.output<typeof UpdateContact>;

/** PATCH /v1/contacts/{idOrEmail}. */
export function parseUpdateContact(body: unknown): UpdateContactRequest {
  return parseRequest(UpdateContact, body, { hint });
}

/** POST /v1/segments, PATCH /v1/segments/{id}, POST /v1/audiences: the name, trimmed. */
export function parseSegmentInput(body: unknown): string {
  return parseRequest(SegmentInput, body).name.trim();
}

/** A list's page parameters. */
export function parseListPage(query: unknown, of: 'contacts' | 'segments'): Page {
  const q = parseRequest(of === 'contacts' ? ContactListQuery : SegmentListQuery, query, {
    more: pageFaults,
  });
  const page = pageOf(q);
  return {
    ...page,
    ...(page.after === undefined ? {} : { after: page.after.toLowerCase() }),
    ...(page.before === undefined ? {} : { before: page.before.toLowerCase() }),
  };
}

/** The fault of each segment given that names none of the tenant's. */
export function missingSegmentFaults(given: readonly string[], missing: readonly string[]): FieldError[] {
  const absent = new Set(missing);
  return given.flatMap((id, i) =>
    absent.has(id) ? [{ field: `segments[${i}]`, message: 'names no segment of this tenant' }] : [],
  );
}

// -- answers -----------------------------------------------------------------------------------

const id = z.guid();

/** A property as Resend's contacts.get reads it: its type beside its value. */
const PropertyView = z.union([
  z.object({ type: z.literal('string'), value: z.string() }),
  z.object({ type: z.literal('number'), value: z.number() }),
  z.object({ type: z.literal('boolean'), value: z.boolean() }),
]);

/** A contact in a list (Resend's Contact). */
export const ContactSummary = z.object({
  id,
  email: z.string(),
  first_name: z.string().nullable(),
  last_name: z.string().nullable(),
  unsubscribed: z.boolean(),
  created_at: dateTime,
});

/** GET /v1/contacts/{idOrEmail}. */
export const Contact = ContactSummary.extend({
  object: z.literal('contact'),
  properties: z.record(z.string(), PropertyView).describe('The custom fields, each with its type.'),
  updated_at: dateTime,
});

export const ContactList = z.object({
  object: z.literal('list'),
  has_more: z.boolean().describe('More contacts lie beyond this page, in the direction it was read.'),
  data: z.array(ContactSummary).describe('The contacts, in id order.'),
});

/** POST /v1/contacts, PATCH /v1/contacts/{idOrEmail}: the contact's id. */
export const ContactRef = z.object({ object: z.literal('contact'), id });

/** DELETE /v1/contacts/{idOrEmail}. */
export const DeletedContact = z.object({
  object: z.literal('contact'),
  contact: id.describe('The id of the contact deleted.'),
  deleted: z.literal(true),
});

/** A segment in a list (Resend's Segment). */
export const SegmentSummary = z.object({ id, name: z.string(), created_at: dateTime });

export const Segment = SegmentSummary.extend({ object: z.literal('segment') });

export const SegmentList = z.object({
  object: z.literal('list'),
  has_more: z.boolean().describe('More segments lie beyond this page, in the direction it was read.'),
  data: z.array(SegmentSummary).describe('The segments, in id order.'),
});

/** POST /v1/segments. */
export const CreatedSegment = z.object({ object: z.literal('segment'), id, name: z.string() });

/** PATCH /v1/segments/{id}. */
export const UpdatedSegment = z.object({ object: z.literal('segment'), id });

export const DeletedSegment = z.object({ object: z.literal('segment'), id, deleted: z.literal(true) });

/** The older names: an audience is a segment. */
export const Audience = SegmentSummary.extend({ object: z.literal('audience') });
export const CreatedAudience = z.object({ object: z.literal('audience'), id, name: z.string() });
export const DeletedAudience = z.object({ object: z.literal('audience'), id, deleted: z.literal(true) });

/** POST /v1/contacts/{idOrEmail}/segments/{segmentId}: the segment's id. */
export const ContactSegmentAdded = z.object({ id: id.describe('The segment’s id.') });

/** DELETE /v1/contacts/{idOrEmail}/segments/{segmentId}. */
export const ContactSegmentRemoved = z.object({
  id: id.describe('The segment’s id.'),
  deleted: z.boolean().describe('false: the contact was not in the segment.'),
});

export type ContactView = z.infer<typeof Contact>;
export type ContactSummaryView = z.infer<typeof ContactSummary>;
export type SegmentSummaryView = z.infer<typeof SegmentSummary>;
export type ListOf<T> = { object: 'list'; has_more: boolean; data: T[] };
