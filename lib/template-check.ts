// The check every template version passes before it is stored, however it comes (a Template
// resource through the operator or `mailplane apply`, or the API): each part compiles in the
// sandbox and, with sample data, renders. And the bounds both ways in share: a part's size, the
// sample's, and the digest that tells an unchanged version from a new one.

import { createHash } from 'node:crypto';
import type { TemplateVariable } from './db/schema.js';
import type { Renderer, TemplateSource } from './render/sandbox.js';

/** ejs source of one template part; large enough for real newsletters, small enough to keep in a row. */
export const MAX_TEMPLATE_BYTES = 512 * 1024;

/**
 * Sample data as JSON, at most: variables for one message, not a data set. A Template resource's
 * lives in etcd, whose objects stay small; the API takes no more.
 */
export const MAX_SAMPLE_DATA_BYTES = 64 * 1024;

export interface TemplateContent {
  subject: string;
  html: string | null;
  text: string | null;
}

/**
 * SHA-256 of a version's content; a version with the same digest as the current one is not
 * stored again. Only the parts count for a Template resource's (`extra` absent), as they always
 * have; the API's versions add their variables and sample data.
 *
 *   templateDigest({ subject, html, text })
 */
export function templateDigest(content: TemplateContent, extra?: unknown[]): string {
  const parts: unknown[] = [content.subject, content.html, content.text];
  return createHash('sha256')
    .update(JSON.stringify(extra ? [...parts, ...extra] : parts))
    .digest('hex');
}

/**
 * Compiles every part and renders the sample when there is one; throws the sandbox's RenderError
 * (with the part and line at fault) for a template that would fail its sends.
 *
 *   await checkTemplate(renderer, { subject, html, text }, sampleData, tenantId);
 */
export async function checkTemplate(
  renderer: Pick<Renderer, 'compile' | 'render'>,
  content: TemplateContent,
  sampleData: Record<string, unknown> | undefined,
  tenant?: string,
): Promise<void> {
  const source: TemplateSource = { key: `check:${templateDigest(content)}`, ...content };
  renderer.compile(source);
  if (sampleData) await renderer.render(source, sampleData, tenant ? { tenant } : {});
}

/**
 * The values a version's declared variables fall back to (Resend's fallback_value), for a send or
 * a preview whose variables leave one out.
 *
 *   renderer.render(source, { ...fallbacksOf(version.variables), ...variables });
 */
export function fallbacksOf(
  variables: readonly TemplateVariable[] | null | undefined,
): Record<string, unknown> {
  return Object.fromEntries(
    (variables ?? []).filter((v) => v.fallback_value !== null).map((v) => [v.key, v.fallback_value]),
  );
}
