// What /v1/broadcasts takes and answers, defined once, in Resend's shapes: api/broadcasts.ts parses
// with these and builds its answers as their types, api/openapi.ts describes them. From, subject,
// bodies and reply_to are checked by the very members a send is checked by (api/schemas-send.ts),
// so a broadcast takes what an email takes; `audience_id` is Resend's older name of `segment_id`.

import { z } from 'zod';
import { formatMailbox, type Mailbox } from '../lib/address.js';
import { BROADCAST_STATUSES } from '../lib/db/schema.js';
import type { FieldError } from '../lib/problem.js';
import { oneLineFault, unstorable } from './schemas-checks.js';
import {
  DEFAULT_MAX_RECIPIENTS,
  scheduledAtInstant,
  scheduleWindowFault,
  sendEmailSchema,
} from './schemas-send.js';
import { pageFaults, pageOf, pageParams, parseRequest } from './requests.js';
import type { Page } from '../lib/db/webhooks.js';
import type { BroadcastDraft } from '../lib/db/broadcasts.js';

/** A name is for the tenant's own lists: a line, not a document. */
const MAX_NAME = 256;
/** The line a mail client shows beside the subject: far less is ever shown. */
const MAX_PREVIEW_TEXT = 1000;
/**
 * A broadcast's html or text, in characters: it is copied once per contact, a chunk of copies at a
 * time, so it stays far below an email's own limit (Gmail clips an html past about 100 KB anyway).
 */
export const MAX_BROADCAST_BODY = 512 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Why a name or preview text is not a storable line (as a subject is checked), or undefined. */
const lineFault = (s: string): string | undefined => unstorable(s) ?? oneLineFault(s);
const aLine = { error: (issue: { input: unknown }) => lineFault(String(issue.input)) };

/** The members of a send a broadcast shares, as a send checks them. */
const send = sendEmailSchema(DEFAULT_MAX_RECIPIENTS).shape;
const bounded = <T extends z.ZodType<string | null | undefined>>(body: T) =>
  body.refine((value) => value === null || value === undefined || value.length <= MAX_BROADCAST_BODY, {
    error: `must be at most ${MAX_BROADCAST_BODY} characters`,
  });
const dateTime = z.string().meta({ format: 'date-time' });

const segmentId = z
  .string({ error: 'must be the id of a segment' })
  .regex(UUID, { error: 'must be the id of a segment' })
  .nullish()
  .describe('The segment whose contacts receive it; those who unsubscribed are left out.');

const members = {
  name: z
    .string({ error: 'must be a string' })
    .max(MAX_NAME, { error: `must be at most ${MAX_NAME} characters` })
    .refine((s) => lineFault(s) === undefined, aLine)
    .nullish()
    .describe('For the tenant’s own lists; recipients never see it.'),
  segment_id: segmentId,
  audience_id: segmentId.describe('Resend’s older name of segment_id; either may be given.'),
  from: send.from,
  subject: send.subject.describe(
    'Required. {{{FIRST_NAME|fallback}}}, {{{LAST_NAME}}}, {{{EMAIL}}} and {{{<property key>}}} are ' +
      'each contact’s own.',
  ),
  reply_to: send.reply_to,
  html: bounded(send.html).describe(
    'html or text is required. Placeholders as in the subject, each value escaped; ' +
      '{{{RESEND_UNSUBSCRIBE_URL}}} becomes the message’s own one-click unsubscribe link.',
  ),
  text: bounded(send.text).describe('Placeholders as in the html, {{{RESEND_UNSUBSCRIBE_URL}}} included.'),
  preview_text: z
    .string({ error: 'must be a string' })
    .max(MAX_PREVIEW_TEXT, { error: `must be at most ${MAX_PREVIEW_TEXT} characters` })
    .refine((s) => lineFault(s) === undefined, aLine)
    .nullish()
    .describe('The line mail clients show beside the subject, hidden at the top of the html.'),
  topic_id: z
    .null({ error: 'topics are not supported: leave topic_id out' })
    .optional()
    .describe('Resend’s topics are not supported; only null is taken.'),
};

/** POST /v1/broadcasts. */
export const CreateBroadcast = z
  .strictObject({
    ...members,
    send: z
      .boolean({ error: 'must be true or false' })
      .nullish()
      .describe('true sends it at once (or at scheduled_at); otherwise it is kept as a draft.'),
    scheduled_at: scheduledAtInstant
      .nullish()
      .describe(
        'With send: true, when to send: an RFC 3339 date-time with a time zone, at most 30 days ahead.',
      ),
  })
  .describe(
    'A broadcast in Resend’s shape: one email to every contact of a segment who has not unsubscribed.',
  );

/** PATCH /v1/broadcasts/{id}: a draft's members to change. */
export const UpdateBroadcast = z
  .strictObject({ ...members, from: members.from.optional() })
  .describe('The members of a draft to change; the others stay as they are.');

/** POST /v1/broadcasts/{id}/send. */
export const SendBroadcast = z.strictObject({
  scheduled_at: scheduledAtInstant
    .nullish()
    .describe(
      'When to send: an RFC 3339 date-time with a time zone, at most 30 days ahead; now when left out.',
    ),
});

export const ListBroadcastsQuery = z.strictObject(pageParams('a broadcast id', UUID));

const id = z.guid();
const status = z
  .enum(BROADCAST_STATUSES)
  .describe(
    'draft (editable); scheduled (due at scheduled_at) or queued (due now); sending (its emails being ' +
      'created); sent (every contact has its email); canceled; failed (`failure` says why).',
  );

/** A broadcast as GET answers it. */
export const Broadcast = z.object({
  object: z.literal('broadcast'),
  id,
  name: z.string().nullable(),
  segment_id: z.string().nullable().describe('Null once its segment was deleted.'),
  audience_id: z.string().nullable().describe('segment_id again, under Resend’s older name.'),
  from: z.string(),
  subject: z.string(),
  reply_to: z.array(z.string()).nullable(),
  preview_text: z.string().nullable(),
  html: z.string().nullable(),
  text: z.string().nullable(),
  topic_id: z.null(),
  status,
  created_at: dateTime,
  scheduled_at: dateTime.nullable(),
  sent_at: dateTime.nullable().describe('When every contact had its email.'),
  failure: z.string().nullable().describe('Why a failed broadcast did not go out.'),
  progress: z
    .object({
      emails: z.int().min(0).describe('Emails created so far, one per address.'),
    })
    .describe(
      'Its emails so far, as the fan-out counts them. Its messages by status: GET /v1/stats ' +
        '?group_by=tag, under the tag broadcast_id:<id>.',
    ),
});

/** An item of GET /v1/broadcasts: Resend's list shows these members. */
export const BroadcastSummary = Broadcast.pick({
  id: true,
  name: true,
  audience_id: true,
  segment_id: true,
  status: true,
  created_at: true,
  scheduled_at: true,
  sent_at: true,
});

export const BroadcastList = z.object({
  object: z.literal('list'),
  has_more: z.boolean().describe('More broadcasts lie beyond this page, in the direction it was read.'),
  data: z.array(BroadcastSummary).describe('The tenant’s broadcasts, newest first.'),
});

/** POST /v1/broadcasts, PATCH and POST …/send answer with the id, as Resend does. */
export const BroadcastId = z.object({ id });
export const CanceledBroadcast = z.object({ object: z.literal('broadcast'), id });
export const DeletedBroadcast = z.object({ object: z.literal('broadcast'), id, deleted: z.literal(true) });

export type Broadcast = z.infer<typeof Broadcast>;
export type BroadcastSummary = z.infer<typeof BroadcastSummary>;
export type BroadcastList = z.infer<typeof BroadcastList>;

type Members = {
  name?: string | null | undefined;
  segment_id?: string | null | undefined;
  audience_id?: string | null | undefined;
  from?: Mailbox | undefined;
  subject?: string | null | undefined;
  reply_to?: Mailbox[] | null | undefined;
  html?: string | null | undefined;
  text?: string | null | undefined;
  preview_text?: string | null | undefined;
};

/** segment_id and audience_id name one segment when both are given. */
function segmentFaults(m: Members): FieldError[] {
  return m.segment_id && m.audience_id && m.segment_id.toLowerCase() !== m.audience_id.toLowerCase()
    ? [{ field: 'audience_id', message: 'names another segment than segment_id; give one of them' }]
    : [];
}

function draftOf(m: Members): Partial<BroadcastDraft> {
  const segment = m.segment_id ?? m.audience_id;
  return {
    ...(m.name === undefined ? {} : { name: m.name }),
    ...(segment ? { segmentId: segment.toLowerCase() } : {}),
    ...(m.from === undefined ? {} : { from: formatMailbox(m.from) }),
    ...(m.subject ? { subject: m.subject } : {}),
    ...(m.reply_to === undefined ? {} : { replyTo: (m.reply_to ?? []).map(formatMailbox) }),
    ...(m.html === undefined ? {} : { html: m.html }),
    ...(m.text === undefined ? {} : { text: m.text }),
    ...(m.preview_text === undefined ? {} : { previewText: m.preview_text }),
  };
}

/**
 * POST /v1/broadcasts's body: the draft, and whether (and when) to send it.
 *
 *   parseCreate(req.body, Date.now())   // { draft: { segmentId, from, subject, … }, send: false, at: null }
 */
export function parseCreate(
  body: unknown,
  now: number,
): { draft: BroadcastDraft; send: boolean; at: Date | null } {
  const b = parseRequest(CreateBroadcast, body, {
    more: (m) => [
      ...(m.segment_id || m.audience_id
        ? []
        : [{ field: 'segment_id', message: 'is required: the id of the segment to send to' }]),
      ...segmentFaults(m),
      ...(m.subject ? [] : [{ field: 'subject', message: 'is required' }]),
      ...(m.html || m.text ? [] : [{ field: 'html', message: 'html or text is required' }]),
      ...(m.scheduled_at !== undefined && m.scheduled_at !== null && m.send !== true
        ? [{ field: 'scheduled_at', message: 'can only be given with send: true' }]
        : []),
      ...scheduleFaults(m.scheduled_at, now),
    ],
  });
  const draft = draftOf(b);
  return {
    draft: {
      name: null,
      replyTo: [],
      html: null,
      text: null,
      previewText: null,
      ...draft,
    } as BroadcastDraft,
    send: b.send === true,
    at: dueAt(b.scheduled_at, now),
  };
}

/**
 * PATCH /v1/broadcasts/{id}'s body; `current` is the draft as it is, for the rules between members
 * (html or text must remain).
 */
export function parseUpdate(
  body: unknown,
  current: { html: string | null; text: string | null },
): Partial<BroadcastDraft> {
  const b = parseRequest(UpdateBroadcast, body, {
    more: (m) => {
      const html = m.html === undefined ? current.html : m.html;
      const text = m.text === undefined ? current.text : m.text;
      return [
        ...segmentFaults(m),
        ...(m.subject === null || m.subject === '' ? [{ field: 'subject', message: 'cannot be empty' }] : []),
        ...(html || text ? [] : [{ field: 'html', message: 'html or text must remain' }]),
      ];
    },
  });
  return draftOf(b);
}

/** POST /v1/broadcasts/{id}/send's body: when, null for now. */
export function parseSend(body: unknown, now: number): Date | null {
  const b = parseRequest(SendBroadcast, body, { more: (m) => scheduleFaults(m.scheduled_at, now) });
  return dueAt(b.scheduled_at, now);
}

export function parseListQuery(query: unknown): Page {
  return pageOf(parseRequest(ListBroadcastsQuery, query, { more: pageFaults }));
}

function scheduleFaults(at: number | null | undefined, now: number): FieldError[] {
  const fault = typeof at === 'number' ? scheduleWindowFault(at, now) : undefined;
  return fault ? [{ field: 'scheduled_at', message: fault }] : [];
}

/** A time already past sends now, as for an email. */
function dueAt(at: number | null | undefined, now: number): Date | null {
  return typeof at === 'number' && at > now ? new Date(at) : null;
}
