// Which unsubscribe a message offers (RFC 8058, lib/unsubscribe.ts): whether it carries one at
// all (the email's `unsubscribe`, else its tenant's default), and then the link and the mailto
// address its installation and domain can serve:
// - the link under the domain's tracking domain (spec.tracking.domain, which the chart's Ingress
//   serves over https), else under MAILPLANE_PUBLIC_URL; none without either;
// - the mailto address on the domain's return-path domain, once the installation has an inbound
//   host (MAILPLANE_INBOUND_HOST), the MX that domain publishes; none before.

import type { Config } from '../lib/config.js';
import type { Db } from '../lib/db/index.js';
import type { MessageToSend } from '../lib/db/transitions.js';
import { isField, joinHeader, splitHeader } from '../lib/message-header.js';
import { TtlCache } from '../lib/ttl-cache.js';
import {
  listUnsubscribeHeaders,
  unsubscribeBase,
  unsubscribeMailbox,
  unsubscribeUrl,
} from '../lib/unsubscribe.js';
import { foldHeaders } from './fold.js';

/** A Tenant's default changes with a reconcile; a few seconds of staleness is harmless. */
const TENANT_DEFAULT_MS = 5000;
const TENANT_DEFAULTS = 10_000;

export type UnsubscribeOffer = (message: MessageToSend) => Promise<{ key: string; value: string }[]>;

/**
 * The header fields of a message's unsubscribe, none when it offers none.
 *
 *   const offer = createUnsubscribeOffer({ db, config });
 *   const headers = await offer(message);   // [{ key: 'List-Unsubscribe', value: '<https://…>, <mailto:…>' }, …]
 */
export function createUnsubscribeOffer(deps: {
  db: Db;
  config: Pick<Config, 'secretKey' | 'publicUrl' | 'inboundHost'>;
}): UnsubscribeOffer {
  const { db, config } = deps;
  const defaults = new TtlCache<string, boolean>(TENANT_DEFAULT_MS, TENANT_DEFAULTS);

  const tenantDefault = async (tenantId: string): Promise<boolean> => {
    let on = defaults.get(tenantId);
    if (on === undefined) {
      const row = await db
        .selectFrom('tenants')
        .select('unsubscribe')
        .where('id', '=', tenantId)
        .executeTakeFirst();
      on = row?.unsubscribe ?? false;
      defaults.set(tenantId, on);
    }
    return on;
  };

  return async (message) => {
    const on = message.content.unsubscribe ?? (await tenantDefault(message.tenantId));
    if (!on || !message.domain) return [];
    const { tracking_domain: trackingDomain, return_path_domain: returnPath } = message.domain;
    const target = {
      tenantId: message.tenantId,
      messageId: message.id,
      address: message.recipient.toLowerCase(),
    };
    const base = unsubscribeBase(trackingDomain, config.publicUrl);
    return listUnsubscribeHeaders({
      ...(base ? { url: unsubscribeUrl(config.secretKey, base, target) } : {}),
      ...(returnPath && config.inboundHost
        ? { mailto: unsubscribeMailbox(config.secretKey, message.id, returnPath) }
        : {}),
    });
  };
}

/**
 * A whole message as a client submitted it over SMTP, with the offer's fields in place of any
 * List-Unsubscribe and List-Unsubscribe-Post of the client's; the client's other fields stay as
 * they were written, and only the added ones are folded.
 *
 *   const signed = withOfferedHeaders(prepareRawMessage(input), await offer(message));
 */
export function withOfferedHeaders(message: Buffer, headers: { key: string; value: string }[]): Buffer {
  if (headers.length === 0) return message;
  const { fields, body } = splitHeader(message);
  const kept = fields.filter((f) => !isField(f, 'list-unsubscribe') && !isField(f, 'list-unsubscribe-post'));
  const added = headers.map(({ key, value }) => ({
    name: key,
    text: foldHeaders(Buffer.from(`${key}: ${value}\r\n`, 'latin1')).toString('latin1'),
  }));
  return joinHeader({ fields: [...kept, ...added], body });
}

/**
 * Resend's placeholder for the message's own unsubscribe link, which a broadcast's html or text
 * places where it wants a visible link (a footer); spaces inside the braces are allowed.
 */
const UNSUBSCRIBE_PLACEHOLDER = /\{\{\{\s*RESEND_UNSUBSCRIBE_URL\s*\}\}\}/g;

/**
 * The bodies with each {{{RESEND_UNSUBSCRIBE_URL}}} replaced by the link the offer's
 * List-Unsubscribe carries, the very URL a one-click POST goes to (escaped in the html); left as
 * they are when the message offers no link.
 *
 *   withUnsubscribeLink({ subject, html: '<a href="{{{RESEND_UNSUBSCRIBE_URL}}}">Unsubscribe</a>' }, headers)
 *   // { subject, html: '<a href="https://mail.example.com/u/…">Unsubscribe</a>' }
 */
export function withUnsubscribeLink<T extends { html?: string | undefined; text?: string | undefined }>(
  rendered: T,
  headers: { key: string; value: string }[],
): T {
  const field = headers.find((h) => h.key.toLowerCase() === 'list-unsubscribe');
  const link = field && /<(https?:\/\/[^>]+)>/.exec(field.value)?.[1];
  if (!link) return rendered;
  const html = link
    .replace(/&/g, '&amp;')
    .replace(/"/g, '&quot;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');
  return {
    ...rendered,
    ...(rendered.html === undefined
      ? {}
      : { html: rendered.html.replace(UNSUBSCRIBE_PLACEHOLDER, () => html) }),
    ...(rendered.text === undefined
      ? {}
      : { text: rendered.text.replace(UNSUBSCRIBE_PLACEHOLDER, () => link) }),
  };
}
