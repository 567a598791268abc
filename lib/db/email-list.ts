// The tenant's emails for GET /v1/emails, newest first, a page at a time from the position
// (created_at, id) of the email the cursor names, so that a page stays where it is while new
// emails arrive. Each filter has an index (lib/db/migrations/2026-12-01T07-00-email-search.ts)
// that one walk follows, stopping at the end of the page:
//
// - recipient, status: the messages' indexes, in the messages' created_at order, which is their
//   email's: the accept statement writes an email and its messages with the same now().
// - domain, time range, none: the emails' own (tenant_id, [domain_id,] created_at) indexes.
// - tag: no index keeps a tag's emails in order (a GIN index has none), and reading them in
//   created_at order to check each would walk, for a tag used by one campaign weeks ago, every
//   email since (3 s for 400 000 in the README's figures), reading each one's content, with its
//   attachments, to find its tags. So tags are indexed with the day of their email, and a page
//   reads the tag's days back from the cursor in spans of 1, 2, 4… days, each span's emails taken
//   whole from the index and sorted: a page costs what the tag has in the days it spans.
//
// With several filters, the one whose index has the fewest rows is walked (each counted up to
// COUNT_CAP, reading the index alone) and the others are checked on each email it finds, by
// lookups on email_id; only the tag check reads the email's content, and only a walk that short
// makes it.

import { sql, type RawBuilder } from 'kysely';
import type { Db } from './index.js';
import { EMAIL_STATUS_ORDER, type EmailContent, type MessageStatus } from './schema.js';
import type { Page, PageOf } from './webhooks.js';

export interface EmailFilter {
  /** The email's status (api/emails.ts overallStatus). */
  status?: MessageStatus;
  /** An address among its messages', compared case-insensitively. */
  recipient?: string;
  /** `name:value`. */
  tag?: string;
  /** The name of its sending domain. */
  domain?: string;
  /** Created at or after. */
  from?: Date;
  /** Created before. */
  to?: Date;
}

/** What the list shows of an email. */
export interface EmailSummaryRow {
  id: string;
  from_address: string;
  subject: string;
  /** The content without its bodies, headers, attachments and template variables. */
  summary: Pick<EmailContent, 'to' | 'cc' | 'bcc' | 'reply_to' | 'tags' | 'message_id'> & {
    template?: Pick<NonNullable<EmailContent['template']>, 'id' | 'version'>;
  };
  created_at: Date;
  scheduled_at: Date | null;
  /** The distinct statuses of its messages. */
  statuses: MessageStatus[];
  /** The most telling of its recipients' engagement events, when there is one. */
  engagement: Engagement | null;
}

const DAY_MS = 86_400_000;
/** The first span of days a tag is looked for in; each next one is twice as long. */
const FIRST_SPAN_DAYS = 1;
/**
 * Rows a filter's index is counted to when several could be walked: enough to tell a rare filter
 * from a common one, few enough to count in a millisecond or two.
 */
const COUNT_CAP = 20_000;
/**
 * What the summary leaves out of an email's content: the parts that make it large (and, below,
 * a template's variables, up to 256 KiB).
 */
const LARGE_PARTS = ['html', 'text', 'headers', 'attachments', 'raw'];

/** What a recipient did with an email, the most telling first (Resend's last_event shows it). */
export const ENGAGEMENTS = ['complained', 'clicked', 'opened'] as const;
export type Engagement = (typeof ENGAGEMENTS)[number];

/** Which index a page is read along. */
type Walk = 'recipient' | 'status' | 'domain' | 'emails';

interface Search {
  tenantId: string;
  filter: EmailFilter;
  /** The sending domain's id, when filtered by domain. */
  domainId?: string;
  /** The email whose position the page starts from, not itself included. */
  cursorId?: string;
  /** Older than the cursor (after, and the first page), or newer (before). */
  older: boolean;
  /** Rows to find: the page and one more, which says whether there are more. */
  rows: number;
}

export interface ListOptions {
  /**
   * Rows a filter's index is counted to (COUNT_CAP): a test sets 0 to take the tag's spans, or the
   * first filter's walk, whatever the counts, and see every other filter checked on them.
   */
  countCap?: number;
}

/**
 * A page of the tenant's emails that pass `filter`; undefined when the cursor names no email of
 * the tenant.
 *
 *   const page = await listEmails(db, tenantId, { status: 'bounced' }, { limit: 20, after: lastId });
 */
export async function listEmails(
  db: Db,
  tenantId: string,
  filter: EmailFilter,
  page: Page,
  options: ListOptions = {},
): Promise<PageOf<EmailSummaryRow> | undefined> {
  const cursorId = page.after ?? page.before;
  let cursorAt: Date | undefined;
  if (cursorId !== undefined) {
    const cursor = await db
      .selectFrom('emails')
      .select('created_at')
      .where('id', '=', cursorId)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    if (!cursor) return undefined;
    cursorAt = cursor.created_at;
  }
  const search: Search = {
    tenantId,
    filter,
    ...(cursorId === undefined ? {} : { cursorId }),
    older: page.before === undefined,
    rows: page.limit + 1,
  };
  if (filter.domain !== undefined) {
    const domain = await db
      .selectFrom('domains')
      .select('id')
      .where('tenant_id', '=', tenantId)
      .where('name', '=', filter.domain)
      .executeTakeFirst();
    if (!domain) return { rows: [], hasMore: false };
    search.domainId = domain.id;
  }
  const by = await chooseWalk(db, search, options.countCap ?? COUNT_CAP);
  const ids = by === 'tag' ? await byTag(db, search, filter.tag!, cursorAt) : await walk(db, search, by);
  const kept = ids.slice(0, page.limit);
  const rows = await summaries(db, tenantId, kept);
  // Read backwards from the cursor, a newer page is turned round: every page is newest first.
  if (!search.older) rows.reverse();
  return { rows, hasMore: ids.length > page.limit };
}

/**
 * The walk that finds the fewest emails: each filter that has one counts its rows in its index, up
 * to COUNT_CAP (a read of the index alone). With a tag, whose count would cost a read of every
 * email it has, a walk under COUNT_CAP rows is taken before the tag's spans, each of its rows
 * checked for the tag.
 */
async function chooseWalk(db: Db, s: Search, cap: number): Promise<Walk | 'tag'> {
  const { filter, tenantId } = s;
  // In the order a tie goes by: a recipient has few emails, a domain is a part of the mail, and
  // delivered is most emails' status.
  const delivered = filter.status === 'delivered';
  const candidates: Walk[] = [
    ...(filter.recipient !== undefined ? (['recipient'] as const) : []),
    ...(filter.status !== undefined && !delivered ? (['status'] as const) : []),
    ...(s.domainId !== undefined ? (['domain'] as const) : []),
    ...(delivered ? (['status'] as const) : []),
  ];
  const tag = filter.tag !== undefined;
  if (candidates.length === 0) return tag ? 'tag' : 'emails';
  if (candidates.length === 1 && !tag) return candidates[0]!;
  const counted = await Promise.all(
    candidates.map(async (by) => {
      const [table, match] =
        by === 'recipient'
          ? ['messages', sql`lower(recipient) = lower(${filter.recipient})`]
          : by === 'status'
            ? ['messages', sql`status = ${filter.status}`]
            : ['emails', sql`domain_id = ${s.domainId}`];
      const where = [sql`tenant_id = ${tenantId}`, match, ...rangeOf(sql.ref('created_at'), filter)];
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from (
          select 1 from ${sql.table(table)} where ${sql.join(where, sql` and `)} limit ${cap}
        ) c`.execute(db);
      return { by, n: rows[0]?.n ?? 0 };
    }),
  );
  // The first of the fewest: reduce keeps the earlier of two equal counts.
  const fewest = counted.reduce((a, b) => (b.n < a.n ? b : a));
  return tag && fewest.n >= cap ? 'tag' : fewest.by;
}

/** The ids of one walk's page, in the walk's order, every other filter checked on each email. */
async function walk(db: Db, s: Search, by: Walk): Promise<string[]> {
  const { filter, tenantId } = s;
  const onMessages = by === 'recipient' || by === 'status';
  // The walk's position columns, and the email each row is of.
  const at = sql.ref(onMessages ? 'm.created_at' : 'e.created_at');
  const id = sql.ref(onMessages ? 'm.email_id' : 'e.id');
  const where: RawBuilder<unknown>[] = [];
  if (by === 'recipient') {
    where.push(sql`m.tenant_id = ${tenantId}`, sql`lower(m.recipient) = lower(${filter.recipient})`);
  } else if (by === 'status') {
    where.push(sql`m.tenant_id = ${tenantId}`, sql`m.status = ${filter.status}`);
  } else {
    where.push(sql`e.tenant_id = ${tenantId}`);
    if (by === 'domain') where.push(sql`e.domain_id = ${s.domainId}`);
  }
  where.push(...rangeOf(at, filter), ...cursorOf(at, id, s));
  where.push(...checks(id, s, by));
  // The emails row, when a check reads it.
  const joined = onMessages && (s.domainId !== undefined || filter.tag !== undefined);
  const order = s.older ? sql`desc` : sql`asc`;
  // A message walk meets an email once per message that matches: the first meeting is kept.
  const { rows } = await sql<{ id: string }>`
    select ${onMessages ? sql`distinct on (${at}, ${id})` : sql``} ${id} as id
    from ${onMessages ? sql`messages m` : sql`emails e`}
    ${joined ? sql`join emails e on e.id = m.email_id and e.tenant_id = ${tenantId}` : sql``}
    where ${sql.join(where, sql` and `)}
    order by ${at} ${order}, ${id} ${order}
    limit ${s.rows}`.execute(db);
  return rows.map((r) => r.id);
}

/**
 * The filters a walk along `by` does not itself apply, checked on the email `id` (and its emails
 * row `e`, for the domain and the tag). The tag is read from the content, the one check that reads
 * it: only walks under COUNT_CAP rows make it (chooseWalk).
 */
function checks(id: RawBuilder<unknown>, s: Search, by: Walk | 'tag'): RawBuilder<unknown>[] {
  const { filter } = s;
  const out: RawBuilder<unknown>[] = [];
  if (filter.recipient !== undefined && by !== 'recipient') {
    out.push(
      sql`exists (select 1 from messages r where r.email_id = ${id} and lower(r.recipient) = lower(${filter.recipient}))`,
    );
  }
  if (filter.status !== undefined) out.push(...statusChecks(id, filter.status, by === 'status'));
  if (s.domainId !== undefined && by !== 'domain') out.push(sql`e.domain_id = ${s.domainId}`);
  if (filter.tag !== undefined && by !== 'tag') {
    const [name, value] = splitTag(filter.tag);
    out.push(sql`e.content -> 'tags' @> ${JSON.stringify([{ name, value }])}::jsonb`);
  }
  return out;
}

/** `name:value` as its two halves (neither holds a colon: api/email-requests.ts). */
function splitTag(tag: string): [string, string] {
  const at = tag.indexOf(':');
  return [tag.slice(0, at), tag.slice(at + 1)];
}

/**
 * The ids of a page of a tag's emails: spans of days from the cursor (or the newest email), one
 * day, then twice as many each time, each span's emails with the tag read whole from the tag-day
 * index, checked against the other filters and sorted, until the page is full or no email is left.
 */
async function byTag(db: Db, s: Search, tag: string, cursorAt: Date | undefined): Promise<string[]> {
  const { filter, tenantId } = s;
  const { rows: ends } = await sql<{ first: Date | null; last: Date | null }>`
    select min(created_at) as first, max(created_at) as last from emails where tenant_id = ${tenantId}`.execute(
    db,
  );
  const first = ends[0]?.first;
  const last = ends[0]?.last;
  if (!first || !last) return [];
  // The days there can be emails in: the tenant's first to its last, within the range asked. The
  // JavaScript dates are to the millisecond and created_at to the microsecond: they only choose
  // days, widened by a millisecond, and the precise bounds are in SQL (rangeOf, cursorOf).
  const lowest = Math.max(first.getTime(), filter.from?.getTime() ?? -Infinity);
  const highest = Math.min(last.getTime() + 1, filter.to?.getTime() ?? Infinity);
  const found: string[] = [];
  let edge = cursorAt ? cursorAt.getTime() + (s.older ? 1 : 0) : s.older ? highest : lowest;
  for (let days = FIRST_SPAN_DAYS; s.older ? edge > lowest : edge < highest; days *= 2) {
    // [lo, hi): the days of the span, the first one the cursor's own; each after it starts and
    // ends at midnight, UTC.
    const lo = s.older ? dayStart(edge - 1) - (days - 1) * DAY_MS : edge;
    const hi = s.older ? edge : dayStart(edge) + days * DAY_MS;
    found.push(...(await tagSpan(db, s, tag, lo, hi, s.rows - found.length)));
    if (found.length >= s.rows) break;
    edge = s.older ? lo : hi;
  }
  return found;
}

/** The first `rows` ids, in the page's order, of the emails in [lo, hi) with the tag and the other filters. */
async function tagSpan(
  db: Db,
  s: Search,
  tag: string,
  lo: number,
  hi: number,
  rows: number,
): Promise<string[]> {
  const { filter, tenantId } = s;
  const keys: string[] = [];
  for (let day = Math.floor(lo / DAY_MS); day * DAY_MS < hi; day++) keys.push(tagKey(tenantId, day, tag));
  const at = sql.ref('e.created_at');
  const id = sql.ref('e.id');
  const where: RawBuilder<unknown>[] = [
    sql`e.tenant_id = ${tenantId}`,
    // The span's days, whole: its ends within a day are the cursor's, compared below. (No range on
    // created_at as well: Postgres would read that range in its index to intersect it with these
    // keys, every email of a busy day for a few of them.)
    sql`mailplane_email_tag_days(e.tenant_id, e.created_at, e.content -> 'tags') && ${keys}::text[]`,
    ...rangeOf(at, filter),
    ...cursorOf(at, id, s),
  ];
  where.push(...checks(id, s, 'tag'));
  const order = s.older ? sql`desc` : sql`asc`;
  // Materialized, so that every match of the span is taken from the index and sorted: without it
  // Postgres may walk created_at and check each email, the walk this avoids.
  const { rows: found } = await sql<{ id: string }>`
    with span as materialized (
      select ${at} as created_at, ${id} as id from emails e where ${sql.join(where, sql` and `)}
    )
    select id from span order by created_at ${order}, id ${order} limit ${rows}`.execute(db);
  return found.map((r) => r.id);
}

/**
 * A tag's key in emails_tenant_tag_days: the tenant, the day of the email (days since 1970-01-01,
 * UTC) and `name:value`, as mailplane_email_tag_days writes them.
 */
export function tagKey(tenantId: string, day: number, tag: string): string {
  return `${tenantId}/${day}/${tag}`;
}

const dayStart = (ms: number) => Math.floor(ms / DAY_MS) * DAY_MS;

function rangeOf(at: RawBuilder<unknown>, f: EmailFilter): RawBuilder<unknown>[] {
  return [...(f.from ? [sql`${at} >= ${f.from}`] : []), ...(f.to ? [sql`${at} < ${f.to}`] : [])];
}

/** Beyond the cursor email, compared in SQL, where created_at keeps its microseconds. */
function cursorOf(at: RawBuilder<unknown>, id: RawBuilder<unknown>, s: Search): RawBuilder<unknown>[] {
  if (s.cursorId === undefined) return [];
  return [
    sql`(${at}, ${id}) ${sql.raw(s.older ? '<' : '>')} (select c.created_at, c.id from emails c where c.id = ${s.cursorId})`,
  ];
}

/**
 * The email `id` has `status`: one of its messages has it (known already when the walk is on
 * that status), and none has a status that comes first in EMAIL_STATUS_ORDER.
 */
function statusChecks(
  id: RawBuilder<unknown>,
  status: MessageStatus,
  walked: boolean,
): RawBuilder<unknown>[] {
  const before = EMAIL_STATUS_ORDER.slice(0, EMAIL_STATUS_ORDER.indexOf(status));
  return [
    ...(walked
      ? []
      : [sql`exists (select 1 from messages h where h.email_id = ${id} and h.status = ${status})`]),
    ...(before.length > 0
      ? [
          sql`not exists (select 1 from messages h where h.email_id = ${id} and h.status in (${sql.join(before)}))`,
        ]
      : []),
  ];
}

/** What the list shows of each email, in the order of `ids`. */
async function summaries(db: Db, tenantId: string, ids: string[]): Promise<EmailSummaryRow[]> {
  if (ids.length === 0) return [];
  // The content is read once per email, as one value (it is stored whole, attachments included),
  // and only its small parts leave Postgres.
  const { rows } = await sql<EmailSummaryRow>`
    select e.id, e.from_address, e.subject,
      (e.content - ${LARGE_PARTS}::text[]) #- '{template,variables}' as summary,
      e.created_at, e.scheduled_at,
      array(select distinct m.status from messages m where m.email_id = e.id) as statuses,
      (select v.type from events v where v.email_id = e.id and v.type in ('complained', 'clicked', 'opened')
        order by array_position(${ENGAGEMENTS}::text[], v.type) limit 1) as engagement
    from emails e
    where e.tenant_id = ${tenantId} and e.id = any(${ids}::uuid[])`.execute(db);
  const byId = new Map(rows.map((r) => [r.id, r]));
  // An email gone since the walk (a tenant's data removed) is left out.
  return ids.flatMap((id) => byId.get(id) ?? []);
}
