// The three custom resources as TypeScript sees them, and the checks `mailplane apply` makes
// before it touches Postgres. The CRDs under crds/ are the schema of record inside a cluster;
// these checks mirror them so that the same manifest fails the same way without a cluster.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { FieldError } from './problem.js';
import { UserError } from './user-error.js';
import type { Scope } from './db/schema.js';

export const API_GROUP = 'mailplane.io';
export const API_VERSION = `${API_GROUP}/v1alpha1`;

interface Meta {
  name: string;
  namespace: string;
}

export interface TenantResource {
  kind: 'Tenant';
  metadata: Meta;
  spec: {
    limits?: { maxRecipients?: number };
    apiKeys?: { name: string; scopes: Scope[] }[];
  };
}

export interface SendingDomainResource {
  kind: 'SendingDomain';
  metadata: Meta;
  spec: {
    tenantRef: { name: string };
    /** The domain mail is sent from, e.g. mail.example.com. */
    domain: string;
    dkim?: {
      selector?: string;
      algorithm?: 'rsa-2048' | 'ed25519';
      /** A Secret holding the user's own key (`tls.key` or `private.key`); operator only. */
      secretRef?: { name: string };
      /** What happens to a generated key's Secret when the resource is deleted; Retain by default. */
      deletionPolicy?: 'Retain' | 'Delete';
    };
    /** Domain of the bounce (MAIL FROM) address; a subdomain with its own MX. */
    returnPath?: string;
  };
}

export interface TemplateResource {
  kind: 'Template';
  metadata: Meta;
  spec: {
    tenantRef: { name: string };
    subject: string;
    html?: string;
    text?: string;
    /** Variables the template is rendered with to prove it works. */
    sampleData?: Record<string, unknown>;
  };
}

export type Resource = TenantResource | SendingDomainResource | TemplateResource;

export class ManifestError extends UserError {
  override readonly code = 'EMANIFEST';
  constructor(
    readonly source: string,
    readonly errors: FieldError[],
  ) {
    super(`${source}:\n${errors.map((e) => `  - ${e.field}: ${e.message}`).join('\n')}`);
  }
}

const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const SCOPES: Scope[] = ['send', 'read'];
/** ejs source of one template part; large enough for real newsletters, small enough to keep in a row. */
const MAX_TEMPLATE_BYTES = 512 * 1024;

/**
 * Parses a YAML stream (documents separated by `---`) into resources, checking each one and
 * reporting every field at fault. Documents of other kinds are returned in `skipped`.
 *
 *   const { resources } = parseManifests(readFileSync('examples/tenant.yaml', 'utf8'), 'tenant.yaml');
 */
export function parseManifests(
  text: string,
  source: string,
  defaultNamespace = 'default',
): { resources: Resource[]; skipped: string[] } {
  const resources: Resource[] = [];
  const skipped: string[] = [];
  parseAllDocuments(text).forEach((doc, index) => {
    const where = `${source}#${index + 1}`;
    if (doc.errors.length > 0) {
      throw new ManifestError(where, [{ field: '(yaml)', message: doc.errors[0]!.message }]);
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    const obj = value as Record<string, unknown>;
    const kind = String(obj.kind ?? '');
    if (obj.apiVersion !== API_VERSION || !['Tenant', 'SendingDomain', 'Template'].includes(kind)) {
      skipped.push(`${where}: ${String(obj.apiVersion)} ${kind}`);
      return;
    }
    resources.push(checkResource(obj, where, defaultNamespace));
  });
  return { resources, skipped };
}

/**
 * Checks one object of a Mailplane kind and returns it typed; throws ManifestError listing every
 * field at fault. The operator runs objects from the API server through it as well.
 *
 *   const tenant = checkResource(object, 'tenant acme', 'default') as TenantResource;
 */
export function checkResource(
  obj: Record<string, unknown>,
  where: string,
  defaultNamespace: string,
): Resource {
  const errors: FieldError[] = [];
  const fail = (field: string, message: string) => errors.push({ field, message });
  const meta = (obj.metadata ?? {}) as Record<string, unknown>;
  const name = String(meta.name ?? '');
  const namespace = String(meta.namespace ?? defaultNamespace);
  if (!NAME.test(name)) fail('metadata.name', 'must be a DNS label: lower-case letters, digits and -');
  if (!NAME.test(namespace)) fail('metadata.namespace', 'must be a DNS label');
  const spec = (obj.spec ?? {}) as Record<string, unknown>;
  if (typeof obj.spec !== 'object' || obj.spec === null) fail('spec', 'is required');
  const kind = obj.kind as Resource['kind'];

  const tenantRef = () => {
    const ref = spec.tenantRef as { name?: unknown } | undefined;
    if (typeof ref?.name !== 'string' || !NAME.test(ref.name)) {
      fail('spec.tenantRef.name', 'is required: the name of a Tenant in the same namespace');
    }
  };
  const text = (field: string, value: unknown, required: boolean) => {
    if (value === undefined && !required) return;
    if (typeof value !== 'string' || (required && value.length === 0))
      fail(field, 'must be a non-empty string');
    else if (Buffer.byteLength(value) > MAX_TEMPLATE_BYTES)
      fail(field, `must be at most ${MAX_TEMPLATE_BYTES} bytes`);
  };

  if (kind === 'Tenant') {
    const limits = spec.limits as Record<string, unknown> | undefined;
    if (limits?.maxRecipients !== undefined) {
      const n = limits.maxRecipients;
      if (!Number.isInteger(n) || (n as number) < 1 || (n as number) > 1000) {
        fail('spec.limits.maxRecipients', 'must be an integer from 1 to 1000');
      }
    }
    const keys = spec.apiKeys ?? [];
    if (!Array.isArray(keys)) fail('spec.apiKeys', 'must be a list of {name, scopes}');
    else {
      const seen = new Set<string>();
      keys.forEach((key: { name?: unknown; scopes?: unknown }, i) => {
        if (typeof key?.name !== 'string' || !NAME.test(key.name))
          fail(`spec.apiKeys[${i}].name`, 'must be a DNS label');
        else if (seen.has(key.name)) fail(`spec.apiKeys[${i}].name`, `"${key.name}" is listed twice`);
        else seen.add(key.name);
        const scopes = key?.scopes;
        if (
          !Array.isArray(scopes) ||
          scopes.length === 0 ||
          !scopes.every((s) => SCOPES.includes(s as Scope))
        ) {
          fail(`spec.apiKeys[${i}].scopes`, `must list one or more of ${SCOPES.join(', ')}`);
        }
      });
    }
  } else if (kind === 'SendingDomain') {
    tenantRef();
    if (typeof spec.domain !== 'string' || !DOMAIN.test(spec.domain)) {
      fail('spec.domain', 'must be a lower-case domain name such as mail.example.com');
    }
    const dkim = (spec.dkim ?? {}) as Record<string, unknown>;
    if (dkim.selector !== undefined && (typeof dkim.selector !== 'string' || !NAME.test(dkim.selector))) {
      fail('spec.dkim.selector', 'must be a DNS label');
    }
    if (dkim.algorithm !== undefined && dkim.algorithm !== 'rsa-2048' && dkim.algorithm !== 'ed25519') {
      fail('spec.dkim.algorithm', 'must be rsa-2048 or ed25519');
    }
    if (
      dkim.deletionPolicy !== undefined &&
      dkim.deletionPolicy !== 'Retain' &&
      dkim.deletionPolicy !== 'Delete'
    ) {
      fail('spec.dkim.deletionPolicy', 'must be Retain or Delete');
    }
    if (
      spec.returnPath !== undefined &&
      (typeof spec.returnPath !== 'string' || !DOMAIN.test(spec.returnPath))
    ) {
      fail('spec.returnPath', 'must be a domain name');
    }
  } else {
    tenantRef();
    text('spec.subject', spec.subject, true);
    text('spec.html', spec.html, false);
    text('spec.text', spec.text, false);
    if (spec.html === undefined && spec.text === undefined) fail('spec', 'needs html, text or both');
    if (
      spec.sampleData !== undefined &&
      (typeof spec.sampleData !== 'object' || Array.isArray(spec.sampleData))
    ) {
      fail('spec.sampleData', 'must be an object');
    }
  }

  if (errors.length > 0) throw new ManifestError(`${where} (${kind} ${namespace}/${name})`, errors);
  return { kind, metadata: { name, namespace }, spec } as Resource;
}

/**
 * Reads manifests from a file, or from every .yaml, .yml and .json file of a directory in name order.
 *
 *   const resources = readManifests('examples/', 'default');
 */
export function readManifests(path: string, defaultNamespace: string): Resource[] {
  const files = statSync(path).isDirectory()
    ? readdirSync(path)
        .filter((f) => /\.(ya?ml|json)$/.test(f))
        .sort()
        .map((f) => join(path, f))
    : [path];
  return files.flatMap(
    (file) => parseManifests(readFileSync(file, 'utf8'), file, defaultNamespace).resources,
  );
}
