// The CRDs as the schema of record outside a cluster: `mailplane apply` validates each manifest
// against the openAPIV3Schema of its kind and version in crds/*.yaml, with ajv, so that a manifest
// is refused by the same schema the API server would refuse it with, and the two cannot drift.
//
// ajv is given the schema as the API server reads it: an object with `properties` takes no other
// field unless it says x-kubernetes-preserve-unknown-fields (kubectl's strict field validation
// refuses an unknown field, a typo being the usual cause), a list marked x-kubernetes-list-type
// set or map takes no duplicate item or key, and defaults are filled in. CEL rules
// (x-kubernetes-validations) are no JSON Schema: the few forms the CRDs use are evaluated here
// (`self[.path].matches('re')`, `has(self.a) || has(self.b)`), with the rule's own message;
// transition rules (`oldSelf`) have nothing to compare on a create. A rule of another form is not
// evaluated; test/cli.test.ts fails when a CRD has one, and lib/resources.ts keeps by hand only
// what no schema here can say.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parseAllDocuments } from 'yaml';
import type { FieldError } from './problem.js';
import { UserError } from './user-error.js';

/**
 * Where the CRDs are: beside lib/ in a checkout (`crds`, the link to charts/mailplane/files/crds),
 * and beside dist/ in a build or the container image (dist/lib/… → ../../crds), which the
 * Dockerfile copies them into.
 */
const CRD_DIRS = ['../crds/', '../../crds/'].map((dir) => new URL(dir, import.meta.url));

/** A validator by kind, then by apiVersion (`mailplane.io/v1alpha1`). */
type Schemas = Map<string, Map<string, ValidateFunction>>;

let schemas: Schemas | undefined;

/**
 * The kinds the CRDs define, each with the apiVersions it is served under.
 *
 *   servedKinds(); // { Tenant: ['mailplane.io/v1alpha1'], SendingDomain: [...], Template: [...] }
 */
export function servedKinds(): Record<string, string[]> {
  return Object.fromEntries([...load()].map(([kind, versions]) => [kind, [...versions.keys()]]));
}

/**
 * Validates `object` (a manifest of a kind the CRDs define, under a served apiVersion) against
 * its CRD schema, and returns every field at fault; an empty list means valid.
 *
 *   const errors = validateAgainstCrd(manifest);   // [{ field: 'spec.domain', message: '…' }]
 */
export function validateAgainstCrd(object: Record<string, unknown>): FieldError[] {
  const validate = load().get(String(object.kind))?.get(String(object.apiVersion));
  if (!validate) throw new Error(`no CRD schema for ${String(object.apiVersion)} ${String(object.kind)}`);
  if (validate(object)) return [];
  return (validate.errors ?? []).map(fieldError);
}

function load(): Schemas {
  if (schemas) return schemas;
  const dir = CRD_DIRS.find((url) => existsSync(url));
  if (!dir) {
    throw new UserError(
      `the CRD schemas manifests are checked against are missing: looked in ${CRD_DIRS.map((u) => fileURLToPath(u)).join(' and ')}`,
    );
  }
  const ajv = new Ajv({
    allErrors: true,
    strict: true,
    // The API server fills in defaults (Tenant spec.deletionPolicy: Retain) before anyone reads it.
    useDefaults: true,
    formats: {
      // The formats the CRDs use (in status, which apply does not write but may be handed).
      int64: { type: 'number', validate: (n: number) => Number.isSafeInteger(n) },
      'date-time': /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i,
    },
  });
  ajv.addKeyword({
    keyword: 'x-kubernetes-validations',
    schemaType: 'array',
    errors: true,
    validate: celRules,
  });
  ajv.addKeyword({ keyword: 'x-kubernetes-preserve-unknown-fields' });
  ajv.addKeyword({ keyword: 'x-kubernetes-list-map-keys' });
  ajv.addKeyword({
    keyword: 'x-kubernetes-list-type',
    type: 'array',
    schemaType: 'string',
    errors: true,
    validate: uniqueItems,
  });

  const loaded: Schemas = new Map();
  for (const file of readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()) {
    for (const doc of parseAllDocuments(readFileSync(new URL(file, dir), 'utf8'))) {
      const crd = doc.toJS() as Crd | null;
      if (crd?.kind !== 'CustomResourceDefinition') continue;
      const versions = new Map<string, ValidateFunction>();
      for (const version of crd.spec.versions) {
        if (version.served) {
          versions.set(
            `${crd.spec.group}/${version.name}`,
            ajv.compile(structural(version.schema.openAPIV3Schema)),
          );
        }
      }
      loaded.set(crd.spec.names.kind, versions);
    }
  }
  schemas = loaded;
  return loaded;
}

interface Crd {
  kind: string;
  spec: {
    group: string;
    names: { kind: string };
    versions: { name: string; served: boolean; schema: { openAPIV3Schema: Record<string, unknown> } }[];
  };
}

/** The schema with what the API server implies made explicit: no unknown fields. */
function structural(schema: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...schema };
  if (out.properties && typeof out.properties === 'object') {
    out.properties = Object.fromEntries(
      Object.entries(out.properties as Record<string, Record<string, unknown>>).map(([k, v]) => [
        k,
        structural(v),
      ]),
    );
    if (out.additionalProperties === undefined && out['x-kubernetes-preserve-unknown-fields'] !== true) {
      out.additionalProperties = false;
    }
  }
  if (out.items && typeof out.items === 'object')
    out.items = structural(out.items as Record<string, unknown>);
  return out;
}

/** x-kubernetes-list-type: `set` items are unique, `map` items unique by their map keys. */
function uniqueItems(listType: string, items: unknown[], parentSchema?: Record<string, unknown>): boolean {
  if (listType !== 'set' && listType !== 'map') return true;
  const keys = (parentSchema?.['x-kubernetes-list-map-keys'] as string[] | undefined) ?? [];
  const identify = (item: unknown) =>
    listType === 'set' ? item : keys.map((k) => (item as Record<string, unknown> | null)?.[k]);
  const seen = new Set<string>();
  for (const [index, item] of items.entries()) {
    const identity = JSON.stringify(identify(item));
    if (seen.has(identity)) {
      const value = identify(item);
      uniqueItems.errors = [
        {
          keyword: 'x-kubernetes-list-type',
          params:
            listType === 'map' && keys.length === 1
              ? { index, key: keys[0], value: (value as unknown[])[0] }
              : { index, value },
        },
      ];
      return false;
    }
    seen.add(identity);
  }
  return true;
}
uniqueItems.errors = [] as Partial<ErrorObject>[];

interface CelRule {
  rule: string;
  message?: string;
}

type CelCheck = (self: unknown) => { ok: true } | { ok: false; path: string };

/** `self.a.b.matches('re')`, the regex in a CEL single-quoted string (RE2, which JS reads alike). */
const MATCHES = /^self((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\.matches\('((?:[^'\\]|\\.)*)'\)$/;
/** `has(self.a) || has(self.b) || …` */
const HAS_ANY = /^has\(self\.[A-Za-z_][A-Za-z0-9_]*\)(\s*\|\|\s*has\(self\.[A-Za-z_][A-Za-z0-9_]*\))*$/;

const compiledRules = new Map<string, CelCheck | 'transition' | undefined>();

/**
 * The CEL rules this module cannot evaluate, `kind: rule`, among those of the CRDs loaded: empty
 * as long as every rule is of a form above or a transition rule.
 */
export function unevaluatedRules(): string[] {
  load();
  return [...compiledRules].filter(([, check]) => check === undefined).map(([rule]) => rule);
}

function compileRule(rule: string): CelCheck | 'transition' | undefined {
  if (compiledRules.has(rule)) return compiledRules.get(rule);
  let check: CelCheck | 'transition' | undefined;
  const matches = MATCHES.exec(rule.trim());
  if (/\boldSelf\b/.test(rule)) check = 'transition';
  else if (matches) {
    const path = matches[1]!.split('.').slice(1);
    const re = new RegExp(matches[2]!.replace(/\\(.)/g, '$1'));
    check = (self) => {
      let value: unknown = self;
      for (const key of path) value = (value as Record<string, unknown> | null)?.[key];
      // A value of another type is the `type` keyword's to report.
      return (value !== undefined && typeof value !== 'string') ||
        (typeof value === 'string' && re.test(value))
        ? { ok: true }
        : { ok: false, path: path.join('.') };
    };
  } else if (HAS_ANY.test(rule.trim())) {
    const fields = [...rule.matchAll(/has\(self\.([A-Za-z_][A-Za-z0-9_]*)\)/g)].map((m) => m[1]!);
    check = (self) =>
      fields.some((f) => (self as Record<string, unknown> | null)?.[f] !== undefined)
        ? { ok: true }
        : { ok: false, path: '' };
  }
  compiledRules.set(rule, check);
  return check;
}

/** x-kubernetes-validations, for the rules of the forms above. */
function celRules(rules: CelRule[], self: unknown): boolean {
  const errors: Partial<ErrorObject>[] = [];
  for (const { rule, message } of rules) {
    const check = compileRule(rule);
    if (check === undefined || check === 'transition') continue;
    const result = check(self);
    if (!result.ok) {
      errors.push({
        keyword: 'x-kubernetes-validations',
        params: { rule, path: result.path, message: message ?? `failed rule: ${rule}` },
      });
    }
  }
  celRules.errors = errors;
  return errors.length === 0;
}
celRules.errors = [] as Partial<ErrorObject>[];

/** An ajv error as the field it is about (`spec.apiKeys[0].scopes`) and what is wrong with it. */
function fieldError(error: ErrorObject): FieldError {
  const path = error.instancePath
    .split('/')
    .slice(1)
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((at, part) => (/^\d+$/.test(part) ? `${at}[${part}]` : at ? `${at}.${part}` : part), '');
  const child = (name: string) => (path ? `${path}.${name}` : name);
  const p = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return { field: child(String(p.missingProperty)), message: 'is required' };
    case 'additionalProperties':
      return { field: child(String(p.additionalProperty)), message: 'is not a field of this kind (a typo?)' };
    case 'enum':
      return { field: path, message: `must be one of ${(p.allowedValues as unknown[]).join(', ')}` };
    case 'pattern':
      return { field: path, message: `must match ${String(p.pattern)}` };
    case 'x-kubernetes-validations': {
      const field = p.path ? child(String(p.path)) : path || '(document)';
      // A rule that reads a field names it first ("metadata.name must be …", "spec needs …").
      const message = String(p.message);
      return { field, message: message.startsWith(`${field} `) ? message.slice(field.length + 1) : message };
    }
    case 'type':
      return { field: path, message: `must be ${TYPE_WORDS[String(p.type)] ?? String(p.type)}` };
    case 'minimum':
      return { field: path, message: `must be at least ${String(p.limit)}` };
    case 'maximum':
      return { field: path, message: `must be at most ${String(p.limit)}` };
    case 'minLength':
      return {
        field: path,
        message:
          Number(p.limit) === 1 ? 'must not be empty' : `must be at least ${String(p.limit)} characters`,
      };
    case 'maxLength':
      return { field: path, message: `must be at most ${String(p.limit)} characters` };
    case 'minItems':
      return { field: path, message: `must list at least ${String(p.limit)}` };
    case 'maxItems':
      return { field: path, message: `must list at most ${String(p.limit)}` };
    case 'maxProperties':
      return { field: path, message: `must have at most ${String(p.limit)} entries` };
    case 'x-kubernetes-list-type':
      return {
        field: `${path}[${String(p.index)}]${p.key ? `.${String(p.key)}` : ''}`,
        message: `${JSON.stringify(p.value)} is listed twice`,
      };
    default:
      return { field: path || '(document)', message: error.message ?? error.keyword };
  }
}

const TYPE_WORDS: Record<string, string> = {
  object: 'an object (a mapping)',
  array: 'a list',
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
};
