// The three custom resources as TypeScript sees them, and how `mailplane apply` reads them. The CRDs
// under crds/ are the schema of record, in a cluster and out of it: parseManifests validates each
// manifest against its CRD's schema (lib/crd-schema.ts), and checkResource adds by hand only what
// no CRD schema can say.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { servedKinds, validateAgainstCrd } from './crd-schema.js';
import { parseDuration } from './duration.js';
import type { FieldError } from './problem.js';
import { MAX_TEMPLATE_BYTES } from './template-check.js';
import { UserError } from './user-error.js';
import type { Scope } from './db/schema.js';
import type { WebhookEventType } from './webhooks.js';

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
    /** Endpoints the tenant's events are posted to; read-only through the API. */
    webhooks?: TenantWebhook[];
    /** One-click unsubscribe headers on email that does not say (POST /v1/emails `unsubscribe`). */
    unsubscribe?: boolean;
  };
}

export interface TenantWebhook {
  /** A DNS label, unique in the list; its Secret is `<tenant>-webhook-<name>`. */
  name: string;
  url: string;
  /** Webhook event types (lib/webhooks.ts); omitted or empty: every one. */
  events?: WebhookEventType[];
  /** False disables the endpoint; true (the default) re-enables only one the spec disabled. */
  enabled?: boolean;
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
      /** How often the generated key is rotated, as a duration (`90d`, `2160h`); never when unset. */
      rotateEvery?: string;
      /** How long a replaced key stays published for mail in flight; 7d by default. */
      retireAfter?: string;
      /** An Ed25519 domain signs with an RSA key as well (RFC 8463), for receivers that verify only RSA; nothing for an RSA one. */
      alsoRsa?: boolean;
    };
    /** Domain of the bounce (MAIL FROM) address; a subdomain with its own MX. */
    returnPath?: string;
    /** Open and click tracking: the host tracked links are served under, and what is tracked. */
    tracking?: { domain?: string; opens?: boolean; clicks?: boolean };
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

/** The kinds apply takes, in the order they are applied; each has its CRD in crds/. */
const KINDS: Resource['kind'][] = ['Tenant', 'SendingDomain', 'Template'];
const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * Parses a YAML stream (documents separated by `---`) into resources, each validated against its
 * CRD, reporting every field at fault. A document of a kind or apiVersion the CRDs do not serve is
 * an error naming the file and the document, as kubectl's would be.
 *
 *   const resources = parseManifests(readFileSync('examples/tenant.yaml', 'utf8'), 'examples/tenant.yaml');
 */
export function parseManifests(text: string, source: string, defaultNamespace = 'default'): Resource[] {
  const resources: Resource[] = [];
  parseAllDocuments(text).forEach((doc, index) => {
    const where = `${source} document ${index + 1}`;
    if (doc.errors.length > 0) {
      throw new ManifestError(where, [{ field: '(yaml)', message: doc.errors[0]!.message }]);
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw new ManifestError(where, [
        { field: '(document)', message: 'must be a mapping with apiVersion and kind' },
      ]);
    }
    const obj = value as Record<string, unknown>;
    const served = servedKinds();
    const versions = KINDS.includes(obj.kind as Resource['kind']) ? served[String(obj.kind)] : undefined;
    if (!versions) {
      const takes = `${KINDS.join(', ')} (${API_VERSION})`;
      throw new ManifestError(where, [
        {
          field: 'kind',
          message:
            obj.kind === undefined
              ? `is required: one of ${takes}`
              : `${JSON.stringify(obj.kind)} is not a kind mailplane apply takes: ${takes}`,
        },
      ]);
    }
    if (!versions.includes(String(obj.apiVersion))) {
      throw new ManifestError(where, [
        {
          field: 'apiVersion',
          message: `${obj.apiVersion === undefined ? 'is required' : `${JSON.stringify(obj.apiVersion)} does not serve ${String(obj.kind)}`}: use ${versions.join(' or ')}`,
        },
      ]);
    }
    resources.push(checkResource(obj, where, defaultNamespace, validateAgainstCrd(obj)));
  });
  return resources;
}

/**
 * Checks one object of a Mailplane kind for what its CRD's schema cannot say, and returns it typed;
 * throws ManifestError listing every field at fault, `schemaErrors` (from its CRD) first. The
 * operator runs objects from the API server, which validated them against the CRD, through it.
 *
 * By hand, because no CRD schema can say it: the namespace is a DNS label (ObjectMeta is the API
 * server's, a CRD may not describe it), and a template part is at most 512 KiB in UTF-8 (the
 * CRD's maxLength counts characters, Postgres stores bytes).
 *
 *   const tenant = checkResource(object, 'tenant acme', 'default') as TenantResource;
 */
export function checkResource(
  obj: Record<string, unknown>,
  where: string,
  defaultNamespace: string,
  schemaErrors: FieldError[] = [],
): Resource {
  const errors: FieldError[] = [...schemaErrors];
  const fail = (field: string, message: string) => errors.push({ field, message });
  const meta = (obj.metadata ?? {}) as Record<string, unknown>;
  const name = String(meta.name ?? '');
  const namespace = String(meta.namespace ?? defaultNamespace);
  if (!NAME.test(namespace)) fail('metadata.namespace', 'must be a DNS label');
  const spec = (obj.spec ?? {}) as Record<string, unknown>;
  const kind = obj.kind as Resource['kind'];

  if (kind === 'Template') {
    for (const part of ['subject', 'html', 'text']) {
      const value = spec[part];
      if (typeof value === 'string' && Buffer.byteLength(value) > MAX_TEMPLATE_BYTES) {
        fail(`spec.${part}`, `must be at most ${MAX_TEMPLATE_BYTES} bytes`);
      }
    }
  }

  if (kind === 'SendingDomain') checkDkim(spec.dkim as SendingDomainResource['spec']['dkim'], fail);

  if (errors.length > 0) throw new ManifestError(`${where} (${kind} ${namespace}/${name})`, errors);
  return { kind, metadata: { name, namespace }, spec } as Resource;
}

/** Shortest rotation period: shorter ones would outrun the DNS check that gates each switch. */
const MIN_ROTATE_EVERY_MS = 60_000;

/** What the CRD's schema checks of spec.dkim only by form: the value of a duration. */
function checkDkim(
  dkim: SendingDomainResource['spec']['dkim'],
  fail: (field: string, message: string) => void,
): void {
  if (typeof dkim?.rotateEvery !== 'string') return;
  const ms = parseDuration(dkim.rotateEvery);
  if (ms !== undefined && ms < MIN_ROTATE_EVERY_MS) fail('spec.dkim.rotateEvery', 'must be at least 1m');
}

/**
 * Reads manifests from a file, or from every .yaml, .yml and .json file of a directory in name
 * order. A path that cannot be read is a UserError saying so.
 *
 *   const resources = readManifests('examples/', 'default');
 */
export function readManifests(path: string, defaultNamespace: string): Resource[] {
  try {
    const files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((f) => /\.(ya?ml|json)$/.test(f))
          .sort()
          .map((f) => join(path, f))
      : [path];
    return files.flatMap((file) => parseManifests(readFileSync(file, 'utf8'), file, defaultNamespace));
  } catch (err) {
    const { code, path: at = path } = err as NodeJS.ErrnoException;
    if (code === 'ENOENT') throw new UserError(`${at}: no such file or directory`);
    if (code === 'EACCES') throw new UserError(`${at}: permission denied`);
    throw err;
  }
}
