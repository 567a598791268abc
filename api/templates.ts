// /v1/templates in Resend's shapes, so that its SDK's templates.create, get, list, update, remove,
// publish and duplicate work unchanged, and a preview of Mailplane's own (POST …/render) shows
// what a send would render, in the sandbox the sender renders in. A template made here passes the
// check a Template resource passes (lib/template-check.ts) before a version is stored, and each
// change is a new version that sends pin from then on. Templates declared as Template resources
// are listed and renderable, and read-only here: the resource is their source of truth.
//
// Reading and previewing need `read`. Changing needs `send` and `read` both, as webhooks do: a
// template is what every email of the tenant that names it says, more than one send.

import { Router, type Request } from 'express';
import { withAuditContext } from '../lib/db/audit.js';
import type { Db } from '../lib/db/index.js';
import type { TemplateVariable as StoredVariable } from '../lib/db/schema.js';
import {
  createTemplate,
  findTemplate,
  listTemplates,
  listVersions,
  loadVersion,
  removeTemplate,
  saveVersion,
  type NewVersion,
  type TemplateRow,
  type VersionRow,
} from '../lib/db/template-store.js';
import { Problem, type ProblemType } from '../lib/problem.js';
import { RenderError, type Renderer, type TemplatePart } from '../lib/render/sandbox.js';
import { checkTemplate, fallbacksOf, templateDigest, type TemplateContent } from '../lib/template-check.js';
import { principalOf, requireScope } from './auth.js';
import { hasNoBody } from './json-body.js';
import { unstorable } from './schemas-checks.js';
import {
  MAX_TEMPLATE_NAME,
  VERSIONS_LISTED,
  parseCreateTemplate,
  parseRenderTemplate,
  parseTemplatePage,
  parseUpdateTemplate,
  type RenderedTemplate,
  type Template,
  type TemplateList,
  type TemplateSummary,
} from './schemas-templates.js';

export interface TemplatesDeps {
  db: Db;
  /** The sandbox the sender renders in (lib/runtime.ts templateRenderer). */
  renderer: Pick<Renderer, 'compile' | 'render'>;
}

/** Changing a template: see the opening paragraph. */
const MANAGE = [requireScope('send'), requireScope('read')];
/** Names a duplicate tries (`welcome (copy)`, `welcome (copy 2)`, …) before giving up. */
const DUPLICATE_NAMES = 10;

/** A template's fault, with the part and line at fault as members of the problem. */
export class TemplateProblem extends Problem {
  constructor(
    type: ProblemType,
    detail: string,
    readonly part: TemplatePart,
    readonly line?: number,
  ) {
    super(422, type, detail, [{ field: part, message: detail }]);
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), part: this.part, ...(this.line ? { line: this.line } : {}) };
  }
}

/** A RenderError as the problem answered: what failed, in which part, at which line. */
function renderProblem(err: RenderError, type: ProblemType, doing: string): TemplateProblem {
  // The sandbox's message names the part and the line already ("html line 3: TypeError: …").
  return new TemplateProblem(type, `The template ${doing}: ${err.message}`, err.part, err.line);
}

/** What a version is checked with: a placeholder of each declared variable's type, its fallback, the sample. */
function sampleOf(
  variables: StoredVariable[] | null,
  sampleData: Record<string, unknown> | null,
): Record<string, unknown> | undefined {
  if (!variables?.length && !sampleData) return undefined;
  const declared = Object.fromEntries(
    (variables ?? []).map((v) => [v.key, v.fallback_value ?? (v.type === 'number' ? 0 : '')]),
  );
  return { ...declared, ...sampleData };
}

export function templatesRouter(deps: TemplatesDeps): Router {
  const { db, renderer } = deps;
  const router = Router();

  const audited = <T>(req: Request, fn: (trx: Db) => Promise<T>): Promise<T> =>
    withAuditContext(db, { actor: `api_key:${principalOf(req).keyName}`, requestId: req.id }, fn);

  /** The tenant's template `:id` names (its id or its name), or a 404. */
  const templateOf = async (req: Request): Promise<TemplateRow> => {
    const ref = String(req.params.id);
    // A ref no template could have (too long, or a NUL Postgres cannot compare) is looked up nowhere.
    const row =
      ref.length <= MAX_TEMPLATE_NAME && unstorable(ref) === undefined
        ? await findTemplate(db, principalOf(req).tenantId, ref)
        : undefined;
    if (!row) throw new Problem(404, 'not-found', `No template ${JSON.stringify(ref)} in this tenant.`);
    return row;
  };

  const readOnly = (req: Request, row: TemplateRow) => {
    const namespace = principalOf(req).tenant.split('/')[0];
    return new Problem(
      403,
      'template-read-only',
      `Template "${row.name}" is declared as the Template resource ${namespace}/${row.name}, its source ` +
        'of truth: change it there (kubectl apply or mailplane apply), not through the API.',
    );
  };

  /** As templateOf, for a change: one declared as a resource is a 403. */
  const changeableOf = async (req: Request): Promise<TemplateRow> => {
    const row = await templateOf(req);
    if (row.source !== 'api') throw readOnly(req, row);
    return row;
  };

  /** Checks a version as a manifest's is checked, and gives it its digest. */
  const prepare = async (
    req: Request,
    content: TemplateContent,
    variables: StoredVariable[] | null,
    sampleData: Record<string, unknown> | null,
  ): Promise<NewVersion> => {
    try {
      await checkTemplate(renderer, content, sampleOf(variables, sampleData), principalOf(req).tenantId);
    } catch (err) {
      if (err instanceof RenderError) {
        throw renderProblem(
          err,
          'template-invalid',
          err.code === 'ETEMPLATE_COMPILE' ? 'does not compile' : 'does not render its sample',
        );
      }
      throw err;
    }
    return { ...content, variables, sampleData, digest: templateDigest(content, [variables, sampleData]) };
  };

  const nameTaken = (name: string) =>
    new Problem(409, 'template-exists', `This tenant has a template named ${JSON.stringify(name)} already.`);

  router.get('/templates', requireScope('read'), async (req, res) => {
    const page = parseTemplatePage(req.query);
    const { rows, hasMore } = await listTemplates(db, principalOf(req).tenantId, page);
    res.json({ object: 'list', has_more: hasMore, data: rows.map(summaryView) } satisfies TemplateList);
  });

  router.post('/templates', ...MANAGE, async (req, res) => {
    const principal = principalOf(req);
    const request = parseCreateTemplate(req.body);
    const version = await prepare(
      req,
      { subject: request.subject, html: request.html || null, text: request.text || null },
      storedVariables(request.variables),
      request.sample_data ?? null,
    );
    const outcome = await audited(req, (trx) =>
      createTemplate(trx, principal.tenantId, request.name, version),
    );
    if ('taken' in outcome) throw nameTaken(request.name);
    if ('tenantGone' in outcome) throw new Problem(401, 'invalid-api-key', 'The tenant is being deleted.');
    res.status(201).location(`/v1/templates/${outcome.id}`).json({ object: 'template', id: outcome.id });
  });

  router.get('/templates/:id', requireScope('read'), async (req, res) => {
    const row = await templateOf(req);
    res.json(templateView(row, await listVersions(db, row.id, VERSIONS_LISTED)));
  });

  router.patch('/templates/:id', ...MANAGE, async (req, res) => {
    // PATCH is not among the verbs jsonBody reads as {} without a body; one that is not JSON is a 415.
    if (req.body === undefined && !hasNoBody(req)) {
      throw new Problem(415, 'unsupported-media-type', 'Send the body as application/json.');
    }
    const principal = principalOf(req);
    const request = parseUpdateTemplate(req.body);
    const row = await changeableOf(req);
    // A member not given keeps what the current version has; a part given as null is removed.
    const keep = <T>(given: T | null | undefined, current: T | null): T | null =>
      given === undefined ? current : given;
    const content: TemplateContent = {
      subject: request.subject ?? row.subject,
      html: keep(request.html, row.html) || null,
      text: keep(request.text, row.text) || null,
    };
    if (!content.html && !content.text) {
      throw new Problem(422, 'validation-error', 'html: a template keeps html, text or both', [
        { field: 'html', message: 'a template keeps html, text or both' },
      ]);
    }
    const version = await prepare(
      req,
      content,
      request.variables === undefined ? row.variables : storedVariables(request.variables),
      keep(request.sample_data, row.sample_data),
    );
    const name = request.name ?? row.name;
    const outcome = await uniquely(name, () =>
      audited(req, (trx) => saveVersion(trx, principal.tenantId, row.id, version, { name })),
    );
    if ('gone' in outcome)
      throw new Problem(404, 'not-found', `No template ${JSON.stringify(row.name)} in this tenant.`);
    if ('readOnly' in outcome) throw readOnly(req, row);
    if ('taken' in outcome) throw nameTaken(name);
    res.json({ object: 'template', id: row.id });
  });

  router.delete('/templates/:id', ...MANAGE, async (req, res) => {
    const row = await changeableOf(req);
    const outcome = await audited(req, (trx) => removeTemplate(trx, principalOf(req).tenantId, row.id));
    if (outcome === 'read-only') throw readOnly(req, row);
    if (outcome === 'gone')
      throw new Problem(404, 'not-found', `No template ${JSON.stringify(row.name)} in this tenant.`);
    res.json({ object: 'template', id: row.id, deleted: true });
  });

  // Every stored version is in use at once, so publishing has nothing left to do; it answers as
  // Resend's does, for code that creates and publishes in one go (templates.create(…).publish()).
  router.post('/templates/:id/publish', ...MANAGE, async (req, res) => {
    const row = await templateOf(req);
    res.json({ object: 'template', id: row.id });
  });

  router.post('/templates/:id/duplicate', ...MANAGE, async (req, res) => {
    const principal = principalOf(req);
    const row = await templateOf(req);
    // The copy is the API's, whoever owned the original: a starting point to change.
    const version: NewVersion = {
      subject: row.subject,
      html: row.html,
      text: row.text,
      variables: row.variables,
      sampleData: row.sample_data,
      digest: templateDigest(row, [row.variables, row.sample_data]),
    };
    for (let n = 1; n <= DUPLICATE_NAMES; n++) {
      const suffix = n === 1 ? ' (copy)' : ` (copy ${n})`;
      const name = row.name.slice(0, MAX_TEMPLATE_NAME - suffix.length) + suffix;
      const outcome = await audited(req, (trx) => createTemplate(trx, principal.tenantId, name, version));
      if ('taken' in outcome) continue;
      if ('tenantGone' in outcome) throw new Problem(401, 'invalid-api-key', 'The tenant is being deleted.');
      res.status(201).location(`/v1/templates/${outcome.id}`).json({ object: 'template', id: outcome.id });
      return;
    }
    throw nameTaken(`${row.name} (copy ${DUPLICATE_NAMES})`);
  });

  router.post('/templates/:id/render', requireScope('read'), async (req, res) => {
    const request = parseRenderTemplate(req.body);
    const row = await templateOf(req);
    const version: VersionRow | TemplateRow | undefined =
      request.version === undefined || request.version === row.current_version
        ? row
        : await loadVersion(db, row.id, request.version);
    if (!version) {
      throw new Problem(404, 'not-found', `Template "${row.name}" has no version ${request.version}.`);
    }
    const number = 'version' in version ? version.version : row.current_version;
    // As a send renders: its variables over the declared fallbacks; without any, the sample.
    const variables = request.variables
      ? { ...fallbacksOf(version.variables), ...request.variables }
      : (sampleOf(version.variables, version.sample_data) ?? {});
    try {
      const rendered = await renderer.render(
        { key: `${row.id}@${number}`, subject: version.subject, html: version.html, text: version.text },
        variables,
        { tenant: principalOf(req).tenantId },
      );
      res.json({
        object: 'rendered_template',
        template_id: row.id,
        version: number,
        subject: rendered.subject,
        html: rendered.html ?? null,
        text: rendered.text ?? null,
      } satisfies RenderedTemplate);
    } catch (err) {
      if (err instanceof RenderError) throw renderProblem(err, 'template-render-failed', 'does not render');
      throw err;
    }
  });

  return router;
}

/** A name another request took between our check and our write is a 409 too, not a 500. */
async function uniquely<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if ((err as { code?: string }).code === '23505') {
      throw new Problem(
        409,
        'template-exists',
        `This tenant has a template named ${JSON.stringify(name)} already.`,
      );
    }
    throw err;
  }
}

function storedVariables(
  variables:
    | { key: string; type: 'string' | 'number'; fallback_value?: string | number | null | undefined }[]
    | null
    | undefined,
): StoredVariable[] | null {
  if (!variables?.length) return null;
  return variables.map((v) => ({ key: v.key, type: v.type, fallback_value: v.fallback_value ?? null }));
}

function summaryView(row: TemplateRow): TemplateSummary {
  return {
    object: 'template',
    id: row.id,
    name: row.name,
    status: 'published',
    published_at: row.version_created_at.toISOString(),
    alias: null,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    version: row.current_version,
    source: row.source,
  };
}

/** GET /v1/templates/:id: Resend's Template, with the version, the source and the versions. */
export function templateView(row: TemplateRow, versions: VersionRow[]): Template {
  const at = row.version_created_at.toISOString();
  return {
    object: 'template',
    id: row.id,
    name: row.name,
    subject: row.subject,
    html: row.html,
    text: row.text,
    status: 'published',
    variables: row.variables?.map((v) => ({ ...v, created_at: at, updated_at: at })) ?? null,
    sample_data: row.sample_data,
    alias: null,
    from: null,
    reply_to: null,
    published_at: at,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    has_unpublished_versions: false,
    current_version_id: String(row.current_version),
    version: row.current_version,
    source: row.source,
    versions: versions.map((v) => ({
      version: v.version,
      created_at: v.created_at.toISOString(),
      current: v.version === row.current_version,
    })),
  };
}
