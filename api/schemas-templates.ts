// What /v1/templates takes and answers, in Resend's names (its SDK's templates.create, get, list,
// update, remove, publish and duplicate send and read these), defined once as zod schemas that
// api/openapi.ts describes and api/templates.ts parses with. The parts are ejs, as a Template
// resource's, and bounded as a manifest's are: each part at most MAX_TEMPLATE_BYTES in UTF-8, the
// sample data at most MAX_SAMPLE_DATA_BYTES as JSON.

import { z } from 'zod';
import type { FieldError } from '../lib/problem.js';
import { MAX_SAMPLE_DATA_BYTES, MAX_TEMPLATE_BYTES } from '../lib/template-check.js';
import { pageFaults, pageOf, pageParams, parseRequest } from './requests.js';
import { unstorable, variablesFaults } from './schemas-checks.js';
import type { Page } from '../lib/db/webhooks.js';

/** A name is what a send names the template by (template.id), and a path segment of these routes. */
export const MAX_TEMPLATE_NAME = 253;
/** Declared variables: far more than a message's template uses, few enough to list on a page. */
export const MAX_TEMPLATE_VARIABLES = 64;
/** Versions a template's view lists, newest first; older ones stay stored and renderable. */
export const VERSIONS_LISTED = 50;
/** A fallback stands in for one value of a message, a name or an amount: not a document. */
const MAX_FALLBACK = 1024;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const NAME_FORBIDDEN = /[\u0000-\u001f\u007f/\\?#%]/;
const VARIABLE_KEY = /^[A-Za-z_$][\w$]{0,63}$/;

const requiredAnd = (wrongType: string) => (issue: { input: unknown }) =>
  issue.input === undefined ? 'is required' : wrongType;

const storable = (schema: z.ZodString) =>
  schema.refine((s) => unstorable(s) === undefined, { error: (issue) => unstorable(String(issue.input)) });

function nameFault(name: string): string | undefined {
  if (name.trim() !== name) return 'must not start or end with white space';
  if (NAME_FORBIDDEN.test(name)) return 'must not contain control characters, /, \\, ?, # or %';
  if (UUID.test(name)) return 'must not look like a template id (a UUID)';
  return undefined;
}

const name = storable(
  z
    .string({ error: requiredAnd('must be a string') })
    .min(1, { error: 'must not be empty' })
    .max(MAX_TEMPLATE_NAME, { error: `must be at most ${MAX_TEMPLATE_NAME} characters` }),
)
  .refine((s) => nameFault(s) === undefined, { error: (issue) => nameFault(String(issue.input)) })
  .describe('What a send names the template by (`template.id`), unique in the tenant.');

const part = (what: string) =>
  storable(z.string({ error: requiredAnd('must be a string') }))
    .refine((s) => Buffer.byteLength(s) <= MAX_TEMPLATE_BYTES, {
      error: `must be at most ${MAX_TEMPLATE_BYTES} bytes`,
    })
    .describe(`ejs source of the ${what}, at most ${MAX_TEMPLATE_BYTES} bytes in UTF-8.`);

const subject = part('subject').refine((s) => s.length > 0, { error: 'must not be empty' });

/** One declared variable, Resend's {key, type, fallback_value}. */
const TemplateVariableInput = z
  .strictObject({
    key: z
      .string({ error: requiredAnd('must be a string') })
      .regex(VARIABLE_KEY, { error: 'must be a name ejs can read: letters, digits, _ and $, at most 64' }),
    type: z.enum(['string', 'number'], { error: 'must be "string" or "number"' }),
    fallback_value: z
      .union(
        [
          storable(z.string().max(MAX_FALLBACK, { error: `must be at most ${MAX_FALLBACK} characters` })),
          z.number(),
        ],
        { error: 'must be a string, a number or null' },
      )
      .nullish()
      .describe('Rendered when an email (or the sample data of the check) does not give the variable.'),
  })
  .refine(
    (v) => v.fallback_value === null || v.fallback_value === undefined || typeof v.fallback_value === v.type,
    { error: 'must be of the variable’s type', path: ['fallback_value'] },
  );

const variables = z
  .array(TemplateVariableInput, { error: 'must be a list of {key, type, fallback_value}' })
  .max(MAX_TEMPLATE_VARIABLES, { error: `must list at most ${MAX_TEMPLATE_VARIABLES} variables` })
  .describe(
    'The variables the template uses: an email that leaves one out renders with its fallback, and the ' +
      'check renders with each (an empty string or 0 without one).',
  );

const sampleData = z
  .record(z.string(), z.unknown(), { error: 'must be an object' })
  .describe(
    `Variables the template must render with before it is stored (as a Template’s spec.sampleData), ` +
      `at most ${MAX_SAMPLE_DATA_BYTES} bytes as JSON.`,
  );

/** POST /v1/templates: Resend's CreateTemplateOptions, in ejs. */
export const CreateTemplate = z.strictObject({
  name,
  subject,
  html: part('HTML part').nullish(),
  text: part('plain-text part').nullish(),
  variables: variables.nullish(),
  sample_data: sampleData.nullish(),
});

/** PATCH /v1/templates/{id}: what changes; a part set to null is removed. */
export const UpdateTemplate = z.strictObject({
  name: name.optional(),
  subject: subject.optional(),
  html: part('HTML part').nullish(),
  text: part('plain-text part').nullish(),
  variables: variables.nullish(),
  sample_data: sampleData.nullish(),
});

/** POST /v1/templates/{id}/render: a preview. */
export const RenderTemplate = z.strictObject({
  variables: z
    .record(z.string(), z.unknown(), { error: 'must be an object' })
    .nullish()
    .describe(
      'As a send’s template.variables, over the declared fallbacks; the version’s sample when not given.',
    ),
  version: z
    .int({ error: 'must be a version number' })
    .min(1, { error: 'must be a version number' })
    .max(2_147_483_647, { error: 'must be a version number' })
    .optional()
    .describe('A stored version; the current one when not given.'),
});

/** GET /v1/templates. */
export const TemplateListQuery = z.object(
  pageParams(
    'a template id',
    /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/,
  ),
);

// Resend's members Mailplane's templates do not have: each told where it belongs instead.
const HINTS: Record<string, string> = {
  alias: 'is not a member: a template’s name is what a send names it by',
  from: 'is not a member: a send gives its from',
  reply_to: 'is not a member: a send gives its reply_to',
  react: 'is not a member: give the rendered html',
};
const hint = (key: string) => (Object.hasOwn(HINTS, key) ? HINTS[key] : undefined);

/** The faults of variables no schema can see: their size and depth, as a send's are checked. */
function dataFaults(field: string, data: Record<string, unknown> | null | undefined, maxBytes?: number) {
  if (!data) return [];
  const faults: FieldError[] = variablesFaults(data).map((f) => ({
    field: `${field}${f.at}`,
    message: f.message,
  }));
  if (faults.length === 0 && maxBytes !== undefined && Buffer.byteLength(JSON.stringify(data)) > maxBytes) {
    faults.push({ field, message: `must be at most ${maxBytes} bytes as JSON` });
  }
  return faults;
}

function duplicateKeys(list: { key: string }[] | null | undefined): FieldError[] {
  const seen = new Set<string>();
  return (list ?? []).flatMap((v, i) => {
    if (!seen.has(v.key)) return (seen.add(v.key), []);
    return [{ field: `variables[${i}].key`, message: `declares ${JSON.stringify(v.key)} again` }];
  });
}

export type CreateTemplateRequest = z.output<typeof CreateTemplate>;
export type UpdateTemplateRequest = z.output<typeof UpdateTemplate>;

/** POST /v1/templates, every fault at once; html, text or both. */
export function parseCreateTemplate(body: unknown): CreateTemplateRequest {
  return parseRequest(CreateTemplate, body, {
    hint,
    more: (r) => [
      ...(absentPart(r.html) && absentPart(r.text)
        ? [{ field: 'html', message: 'html, text or both are required' }]
        : []),
      ...duplicateKeys(r.variables),
      ...dataFaults('sample_data', r.sample_data, MAX_SAMPLE_DATA_BYTES),
    ],
  });
}

/** PATCH /v1/templates/{id}. */
export function parseUpdateTemplate(body: unknown): UpdateTemplateRequest {
  return parseRequest(UpdateTemplate, body, {
    hint,
    more: (r) => [
      ...duplicateKeys(r.variables),
      ...dataFaults('sample_data', r.sample_data, MAX_SAMPLE_DATA_BYTES),
    ],
  });
}

/** POST /v1/templates/{id}/render. */
export function parseRenderTemplate(body: unknown): z.output<typeof RenderTemplate> {
  return parseRequest(RenderTemplate, body, { more: (r) => dataFaults('variables', r.variables) });
}

/** GET /v1/templates' page. */
export function parseTemplatePage(query: unknown): Page {
  return pageOf(parseRequest(TemplateListQuery, query, { more: pageFaults }));
}

const absentPart = (value: string | null | undefined) =>
  value === undefined || value === null || value === '';

// --- answers ---------------------------------------------------------------------------------

const id = z.guid();
const dateTime = z.string().meta({ format: 'date-time' });

export const TemplateVariable = z.object({
  key: z.string(),
  type: z.enum(['string', 'number']),
  fallback_value: z.union([z.string().max(MAX_FALLBACK), z.number()]).nullable(),
  created_at: dateTime,
  updated_at: dateTime,
});

export const TemplateVersionSummary = z.object({
  version: z.int().min(1),
  created_at: dateTime,
  current: z.boolean().describe('The version sends pin now.'),
});

const source = z
  .enum(['api', 'resource'])
  .describe('`resource`: declared as a Template resource, its source of truth, read-only here.');

export const Template = z
  .object({
    object: z.literal('template'),
    id,
    name: z.string(),
    subject: z.string(),
    html: z.string().nullable(),
    text: z.string().nullable(),
    status: z.literal('published').describe('Every stored version is in use at once.'),
    variables: z.array(TemplateVariable).nullable(),
    sample_data: z.record(z.string(), z.unknown()).nullable(),
    alias: z.null(),
    from: z.null(),
    reply_to: z.null(),
    published_at: dateTime.describe('When the current version was stored.'),
    created_at: dateTime,
    updated_at: dateTime,
    has_unpublished_versions: z.literal(false),
    current_version_id: z.string().describe('The current version’s number, as a string.'),
    version: z.int().min(1).describe('The current version, which sends pin.'),
    source,
    versions: z
      .array(TemplateVersionSummary)
      .describe(`The ${VERSIONS_LISTED} newest versions, newest first.`),
  })
  .describe('A template with its current version and its versions.');

export const TemplateSummary = z.object({
  object: z.literal('template'),
  id,
  name: z.string(),
  status: z.literal('published'),
  published_at: dateTime,
  alias: z.null(),
  created_at: dateTime,
  updated_at: dateTime,
  version: z.int().min(1),
  source,
});

export const TemplateList = z
  .object({ object: z.literal('list'), has_more: z.boolean(), data: z.array(TemplateSummary) })
  .describe('A page of the tenant’s templates, newest first, those declared as resources included.');

export const TemplateRef = z.object({ object: z.literal('template'), id });
export const DeletedTemplate = z.object({ object: z.literal('template'), id, deleted: z.literal(true) });

export const RenderedTemplate = z
  .object({
    object: z.literal('rendered_template'),
    template_id: id,
    version: z.int().min(1),
    subject: z.string(),
    html: z.string().nullable(),
    text: z.string().nullable(),
  })
  .describe('The version rendered in the sandbox the sender renders in, as a message would be.');

export type Template = z.infer<typeof Template>;
export type TemplateSummary = z.infer<typeof TemplateSummary>;
export type TemplateList = z.infer<typeof TemplateList>;
export type RenderedTemplate = z.infer<typeof RenderedTemplate>;
