// One Postmark message, translated into Mailplane's send request, which api/validate.ts then checks
// like any POST /v1/emails body; its faults come back named by the Postmark field they came from
// (FieldNames). Only what Postmark's shape adds is checked here: Headers and Attachments as lists
// of objects, a template named by TemplateId or TemplateAlias.
//
// What maps to what: From, To, Cc, Bcc and ReplyTo are the address strings they are in both APIs;
// Subject, HtmlBody and TextBody the subject and bodies (or a template's, with TemplateModel as its
// variables); Headers [{Name, Value}] the headers; Attachments with a ContentID inline parts (a
// `cid:` prefix left off); Tag a tag named `tag`, each Metadata key a tag of its own, MessageStream
// a tag `message_stream`, so that events and statistics carry them; TrackOpens and TrackLinks
// the email's tracking (opens, and clicks unless None or TextOnly: links are tracked in html only).
// InlineCss is accepted and does nothing.

import type { FieldError } from '../lib/problem.js';
import { FieldNames, isObject, ownMap } from './vendor-fields.js';

export interface PostmarkEmail {
  body: Record<string, unknown>;
  names: FieldNames;
}

/** A Postmark message as a Mailplane send, or the faults of its Postmark shape. */
export type Translated = { ok: true; email: PostmarkEmail } | { ok: false; errors: FieldError[] };

/** Postmark's ContentID is written as the html names it, `cid:logo.png`; the part's id is the rest. */
const CID_PREFIX = /^cid:/i;
/** Faults of one message's shape listed at once. */
const MAX_REPORTED_FAULTS = 100;

/** Postmark names a field as its members are written: `Attachments[0].Content`. */
const joinPostmark = (field: string, rest: string) => field + rest;

/**
 * Translates one message; `template` says whether the route sends with a template
 * (/email/withTemplate, /email/batchWithTemplates).
 *
 *   const t = translatePostmark({ From, To, Subject, TextBody }, { template: false });
 */
export function translatePostmark(message: unknown, options: { template: boolean }): Translated {
  const errors: FieldError[] = [];
  const fault = (field: string, message: string) => {
    if (errors.length < MAX_REPORTED_FAULTS) errors.push({ field, message });
  };
  if (!isObject(message))
    return { ok: false, errors: [{ field: '(body)', message: 'must be a JSON object' }] };
  const m = message;
  const names = new FieldNames(joinPostmark)
    .set('from', 'From')
    .set('to', 'To')
    .set('cc', 'Cc')
    .set('bcc', 'Bcc')
    .set('reply_to', 'ReplyTo')
    .set('subject', 'Subject')
    .set('html', 'HtmlBody')
    .set('text', 'TextBody')
    .set('headers', 'Headers')
    .set('attachments', 'Attachments')
    .set('tags', 'Metadata');
  const send: Record<string, unknown> = { from: m.From, to: m.To, cc: m.Cc, bcc: m.Bcc, reply_to: m.ReplyTo };

  if (options.template) {
    const ref = m.TemplateAlias ?? m.TemplateId;
    const field = m.TemplateAlias !== undefined && m.TemplateAlias !== null ? 'TemplateAlias' : 'TemplateId';
    if ((typeof ref !== 'string' || ref === '') && typeof ref !== 'number') {
      fault('TemplateId', 'TemplateId or TemplateAlias is required: the name or id of a Mailplane Template');
    }
    const model = m.TemplateModel;
    if (model !== undefined && model !== null && !isObject(model))
      fault('TemplateModel', 'must be an object');
    send.template = { id: typeof ref === 'number' ? String(ref) : ref, variables: model ?? {} };
    names.set('template.id', field).set('template.variables', 'TemplateModel');
  } else {
    send.subject = m.Subject;
    send.html = m.HtmlBody;
    send.text = m.TextBody;
  }

  send.headers = headers(m.Headers, names, fault);
  send.attachments = attachments(m.Attachments, names, fault);
  send.tags = tags(m, names, fault);
  const tracking = trackingOf(m, fault);
  if (tracking) {
    send.tracking = tracking;
    names.set('tracking.opens', 'TrackOpens').set('tracking.clicks', 'TrackLinks');
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, email: { body: send, names } };
}

/** Postmark's TrackLinks values; Mailplane tracks the links of the html part. */
const TRACK_LINKS: Record<string, boolean> = {
  None: false,
  TextOnly: false,
  HtmlOnly: true,
  HtmlAndText: true,
};

/** TrackOpens and TrackLinks as the email's tracking, or undefined when neither is given. */
function trackingOf(
  m: Record<string, unknown>,
  fault: (f: string, m: string) => void,
): { opens?: unknown; clicks?: boolean } | undefined {
  const opens = m.TrackOpens;
  const links = m.TrackLinks;
  const given = (v: unknown) => v !== undefined && v !== null;
  if (!given(opens) && !given(links)) return undefined;
  let clicks: boolean | undefined;
  if (given(links)) {
    if (typeof links === 'string' && Object.hasOwn(TRACK_LINKS, links)) clicks = TRACK_LINKS[links];
    else fault('TrackLinks', `must be one of ${Object.keys(TRACK_LINKS).join(', ')}`);
  }
  // A TrackOpens that is not a boolean is the send check's to refuse, named TrackOpens.
  return { ...(given(opens) ? { opens } : {}), ...(clicks !== undefined ? { clicks } : {}) };
}

/** Headers [{Name, Value}] as a map; a name given twice keeps its last value, as a map would. */
function headers(value: unknown, names: FieldNames, fault: (f: string, m: string) => void): unknown {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) {
    fault('Headers', 'must be a list of {Name, Value}');
    return undefined;
  }
  const map = ownMap<unknown>();
  value.forEach((header: unknown, i) => {
    if (!isObject(header) || typeof header.Name !== 'string') {
      return fault(`Headers[${i}].Name`, 'is required: a header name');
    }
    map[header.Name] = header.Value;
    names.set(`headers.${header.Name}`, `Headers[${i}].Value`);
  });
  return map;
}

/** Attachments [{Name, Content, ContentType, ContentID}]; one with a ContentID is inline. */
function attachments(value: unknown, names: FieldNames, fault: (f: string, m: string) => void): unknown {
  if (!Array.isArray(value)) return value; // absent, or the send check's to refuse as not a list
  return value.map((file: unknown, k) => {
    const at = `Attachments[${k}]`;
    names
      .set(`attachments[${k}]`, at)
      .set(`attachments[${k}].filename`, `${at}.Name`)
      .set(`attachments[${k}].content`, `${at}.Content`)
      .set(`attachments[${k}].content_type`, `${at}.ContentType`)
      .set(`attachments[${k}].content_id`, `${at}.ContentID`);
    if (!isObject(file)) {
      fault(at, 'must be an object {Name, Content, ContentType, ContentID}');
      return {};
    }
    const id = file.ContentID;
    return {
      filename: file.Name,
      content: file.Content,
      ...(file.ContentType !== undefined && file.ContentType !== null
        ? { content_type: file.ContentType }
        : {}),
      ...(id !== undefined && id !== null && id !== ''
        ? { content_id: typeof id === 'string' ? id.replace(CID_PREFIX, '') : id }
        : {}),
    };
  });
}

/** Tag, Metadata and MessageStream as tags, each named by its Postmark field. */
function tags(
  m: Record<string, unknown>,
  names: FieldNames,
  fault: (f: string, m: string) => void,
): unknown[] {
  const list: { name: string; value: unknown; field: string }[] = [];
  if (m.Tag !== undefined && m.Tag !== null && m.Tag !== '')
    list.push({ name: 'tag', value: m.Tag, field: 'Tag' });
  if (m.Metadata !== undefined && m.Metadata !== null) {
    if (!isObject(m.Metadata)) fault('Metadata', 'must be an object of names to strings');
    else {
      for (const key of Object.keys(m.Metadata)) {
        list.push({ name: key, value: m.Metadata[key], field: `Metadata.${key}` });
      }
    }
  }
  if (m.MessageStream !== undefined && m.MessageStream !== null) {
    list.push({ name: 'message_stream', value: m.MessageStream, field: 'MessageStream' });
  }
  list.forEach(({ field }, k) => names.set(`tags[${k}].name`, field).set(`tags[${k}].value`, field));
  return list.map(({ name, value }) => ({ name, value }));
}
