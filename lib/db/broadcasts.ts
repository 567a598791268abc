// A tenant's broadcasts: the drafts the api writes and changes, sending and canceling them (each
// with its send_broadcast job in the same transaction), and the fan-out the sender runs a chunk at
// a time (sender/broadcast-task.ts).
//
// The fan-out's guarantee: a chunk's emails (through the accept path's own statement,
// lib/send/accept.ts) and the advance of the broadcast's cursor past their contacts commit in one
// transaction, under a lock on the broadcast row. A fan-out killed at any point has either written
// a chunk and moved past it, or neither; the next attempt starts after the last contact that has its
// email. broadcast_recipients (broadcast_id, address) is the key besides, written in the same
// transaction, so that nothing can ever send one address two emails of one broadcast.

import { sql } from 'kysely';
import type pg from 'pg';
import { broadcastJobKey, SEND_BROADCAST, SEND_BROADCAST_MAX_ATTEMPTS } from '../jobs.js';
import { insertEmails, type PreparedEmail } from '../send/accept.js';
import type { Db } from './index.js';
import type { Broadcast, BroadcastStatus } from './schema.js';
import { pageOf, type Page, type PageOf } from './webhooks.js';

export interface BroadcastKey {
  tenantId: string;
  id: string;
}

/** What a draft is made of; each member of a change may be left out. */
export interface BroadcastDraft {
  name: string | null;
  segmentId: string;
  from: string;
  subject: string;
  replyTo: string[];
  html: string | null;
  text: string | null;
  previewText: string | null;
}

/** Statuses a send may leave for the fan-out, and those it may be canceled in. */
const CANCELABLE: BroadcastStatus[] = ['scheduled', 'queued', 'sending'];
const DELETABLE: BroadcastStatus[] = ['draft', 'scheduled'];
/** Statuses a fan-out runs in: a job that finds another one has nothing to do. */
const FANNING_OUT: BroadcastStatus[] = ['scheduled', 'queued', 'sending'];

/**
 * Writes a draft.
 *
 *   const row = await createBroadcast(trx, tenantId, { name: 'November', segmentId, from, subject, … });
 */
export async function createBroadcast(db: Db, tenantId: string, draft: BroadcastDraft): Promise<Broadcast> {
  return db
    .insertInto('broadcasts')
    .values({
      tenant_id: tenantId,
      name: draft.name,
      segment_id: draft.segmentId,
      from_address: draft.from,
      subject: draft.subject,
      reply_to: draft.replyTo,
      html: draft.html,
      text: draft.text,
      preview_text: draft.previewText,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The tenant's broadcast, or undefined (another tenant's is as absent). */
export async function getBroadcast(db: Db, key: BroadcastKey): Promise<Broadcast | undefined> {
  return db
    .selectFrom('broadcasts')
    .selectAll()
    .where('id', '=', key.id)
    .where('tenant_id', '=', key.tenantId)
    .executeTakeFirst();
}

/** The columns a list shows: not the bodies, which may be megabytes each. */
const SUMMARY_COLUMNS = [
  'id',
  'name',
  'segment_id',
  'status',
  'created_at',
  'scheduled_at',
  'sent_at',
] as const;
export type BroadcastSummaryRow = Pick<Broadcast, (typeof SUMMARY_COLUMNS)[number]>;

/**
 * A page of the tenant's broadcasts, newest first, without their bodies; `after` or `before` is
 * the id of a broadcast of the previous page. Undefined when that id names no broadcast of the tenant.
 *
 *   const page = await listBroadcasts(db, tenantId, { limit: 20 });
 */
export async function listBroadcasts(
  db: Db,
  tenantId: string,
  page: Page,
): Promise<PageOf<BroadcastSummaryRow> | undefined> {
  const newer = page.before !== undefined;
  const cursor = page.before ?? page.after;
  if (cursor !== undefined) {
    const known = await db
      .selectFrom('broadcasts')
      .select('id')
      .where('id', '=', cursor)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    if (!known) return undefined;
  }
  let query = db
    .selectFrom('broadcasts')
    .select(SUMMARY_COLUMNS)
    .where('tenant_id', '=', tenantId)
    .orderBy('created_at', newer ? 'asc' : 'desc')
    .orderBy('id', newer ? 'asc' : 'desc')
    .limit(page.limit + 1);
  if (cursor !== undefined) {
    query = query.where(
      sql<boolean>`(created_at, id) ${sql.raw(newer ? '>' : '<')} (
        select c.created_at, c.id from broadcasts c where c.id = ${cursor} and c.tenant_id = ${tenantId})`,
    );
  }
  return pageOf(await query.execute(), page);
}

/**
 * Changes a draft; undefined when the broadcast is not (or no longer) a draft, or not the tenant's.
 *
 *   const row = await updateDraft(trx, key, { subject: 'November, again' });
 */
export async function updateDraft(
  db: Db,
  key: BroadcastKey,
  changes: Partial<BroadcastDraft>,
): Promise<Broadcast | undefined> {
  return db
    .updateTable('broadcasts')
    .set({
      ...(changes.name === undefined ? {} : { name: changes.name }),
      ...(changes.segmentId === undefined ? {} : { segment_id: changes.segmentId }),
      ...(changes.from === undefined ? {} : { from_address: changes.from }),
      ...(changes.subject === undefined ? {} : { subject: changes.subject }),
      ...(changes.replyTo === undefined ? {} : { reply_to: changes.replyTo }),
      ...(changes.html === undefined ? {} : { html: changes.html }),
      ...(changes.text === undefined ? {} : { text: changes.text }),
      ...(changes.previewText === undefined ? {} : { preview_text: changes.previewText }),
      updated_at: sql`now()`,
    })
    .where('id', '=', key.id)
    .where('tenant_id', '=', key.tenantId)
    .where('status', '=', 'draft')
    .returningAll()
    .executeTakeFirst();
}

/**
 * A draft → scheduled (due at `at`) or queued (due now), with its send_broadcast job at that time,
 * in the caller's transaction; undefined when it is not a draft. The job has the broadcast's key,
 * so there is one per broadcast, and cancel and delete can take it back.
 *
 *   const row = await queueBroadcast(trx, key, null);   // send now
 */
export async function queueBroadcast(
  db: Db,
  key: BroadcastKey,
  at: Date | null,
): Promise<Broadcast | undefined> {
  const row = await db
    .updateTable('broadcasts')
    .set({
      status: at ? 'scheduled' : 'queued',
      scheduled_at: at,
      updated_at: sql`now()`,
    })
    .where('id', '=', key.id)
    .where('tenant_id', '=', key.tenantId)
    .where('status', '=', 'draft')
    .returningAll()
    .executeTakeFirst();
  if (!row) return undefined;
  await addBroadcastJob(db, row.id, at);
  return row;
}

export type Refusal = 'not-found' | BroadcastStatus;

/**
 * Deletes a draft or a scheduled broadcast (and its job); answers the status that refused it, or
 * 'not-found'. A broadcast that has begun to go out stays: its emails name it.
 *
 *   const outcome = await deleteBroadcast(trx, key);   // 'deleted' | 'not-found' | 'sent' | …
 */
export async function deleteBroadcast(db: Db, key: BroadcastKey): Promise<'deleted' | Refusal> {
  const row = await db
    .deleteFrom('broadcasts')
    .where('id', '=', key.id)
    .where('tenant_id', '=', key.tenantId)
    .where('status', 'in', DELETABLE)
    .returning(['id', 'status'])
    .executeTakeFirst();
  if (row) {
    if (row.status === 'scheduled') await removeJob(db, row.id);
    return 'deleted';
  }
  return (await getBroadcast(db, key))?.status ?? 'not-found';
}

/**
 * A scheduled, queued or sending broadcast → canceled: its job is taken back, and a fan-out under
 * way stops before its next chunk. Emails created already are not touched (each can be canceled
 * through /v1/emails/{id}/cancel). Answers the canceled row, or the status that refused it.
 *
 *   const outcome = await cancelBroadcast(trx, key);
 */
export async function cancelBroadcast(db: Db, key: BroadcastKey): Promise<Broadcast | Refusal> {
  const row = await db
    .updateTable('broadcasts')
    .set({ status: 'canceled', canceled_at: sql`now()`, updated_at: sql`now()` })
    .where('id', '=', key.id)
    .where('tenant_id', '=', key.tenantId)
    .where('status', 'in', CANCELABLE)
    .returningAll()
    .executeTakeFirst();
  if (row) {
    await removeJob(db, row.id);
    return row;
  }
  return (await getBroadcast(db, key))?.status ?? 'not-found';
}

/**
 * graphile-worker's remove_job takes a job no worker holds; one held (the fan-out under way) stays
 * and sees the new status at its next chunk.
 */
async function removeJob(db: Db, broadcastId: string): Promise<void> {
  await sql`select graphile_worker.remove_job(${broadcastJobKey(broadcastId)}::text)`.execute(db);
}

/**
 * A broadcast going out (or due to) to the segment, if any: api/segments.ts refuses to delete a
 * segment under one. A fan-out that finds its segment gone anyway fails, saying so.
 *
 *   const id = await broadcastUsing(db, tenantId, segmentId);   // '…' | undefined
 */
export async function broadcastUsing(
  db: Db,
  tenantId: string,
  segmentId: string,
): Promise<string | undefined> {
  const row = await db
    .selectFrom('broadcasts')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('segment_id', '=', segmentId)
    .where('status', 'in', FANNING_OUT)
    .limit(1)
    .executeTakeFirst();
  return row?.id;
}

/** What the fan-out reads of a contact. */
export interface FanOutContact {
  id: string;
  email: string;
  first_name: string | null;
  last_name: string | null;
  properties: Record<string, unknown>;
}

/** What a chunk did: emails created, or the broadcast's status that ended the fan-out. */
export type ChunkOutcome =
  | { kind: 'created'; count: number }
  | { kind: 'finished'; count: number }
  | { kind: 'stopped'; status: BroadcastStatus | 'not-found' };

/**
 * How large a chunk may be: at most `contacts` contacts, and no more than `bytes` of prepared
 * subjects and bodies (at least one contact, whatever its size), so that a large html never makes
 * a statement past V8's string or Postgres's value limits.
 */
export interface ChunkLimit {
  contacts: number;
  bytes: number;
}

/**
 * Errors a chunk is tried again for, at once and in-process: a deadlock (40P01), a serialization
 * failure (40001), and a foreign key violation (23503) from a row deleted under the chunk.
 */
const TRANSIENT = new Set(['23503', '40P01', '40001']);
const CHUNK_TRIES = 3;

/**
 * One chunk of a broadcast's fan-out, in one transaction, tried up to three times on a transient
 * error (TRANSIENT): takes a key-share lock on the tenant first (the order a tenant's deletion
 * takes, lib/reconcile/tenant.ts), locks the broadcast, reads the next contacts of its segment
 * after its cursor (in id order, unsubscribed ones left out), has `prepare` make each one's email
 * up to `limit`, records each address in broadcast_recipients (an address it mailed already,
 * whatever its contact, gets nothing), writes the new emails through the accept path, and moves
 * the cursor and created_count past them; with none left, the broadcast is `sent`. The first chunk
 * turns a scheduled or queued broadcast `sending`. A broadcast canceled meanwhile is left as it
 * is; one whose segment or tenant was deleted → `failed`, with why.
 *
 *   let outcome;
 *   do outcome = await fanOutChunk(pool, id, { contacts: 500, bytes: 8 << 20 }, prepare);
 *   while (outcome.kind === 'created');
 */
export async function fanOutChunk(
  pool: pg.Pool,
  broadcastId: string,
  limit: ChunkLimit,
  prepare: (broadcast: Broadcast, contact: FanOutContact) => PreparedEmail,
): Promise<ChunkOutcome> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await chunkOnce(pool, broadcastId, limit, prepare);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (attempt >= CHUNK_TRIES || typeof code !== 'string' || !TRANSIENT.has(code)) throw err;
    }
  }
}

async function chunkOnce(
  pool: pg.Pool,
  broadcastId: string,
  limit: ChunkLimit,
  prepare: (broadcast: Broadcast, contact: FanOutContact) => PreparedEmail,
): Promise<ChunkOutcome> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const stop = async (status: BroadcastStatus | 'not-found', failure?: string): Promise<ChunkOutcome> => {
      if (failure) {
        await client.query(
          `update broadcasts set status = 'failed', failure = $2, updated_at = now() where id = $1`,
          [broadcastId, failure],
        );
        await client.query('commit');
        return { kind: 'stopped', status: 'failed' };
      }
      await client.query('rollback');
      return { kind: 'stopped', status };
    };
    // The tenant before the broadcast: its deletion locks the tenant, then deletes its broadcasts.
    const tenant = await client.query<{ deleted: boolean }>(
      `select t.deleted_at is not null as deleted from tenants t
       where t.id = (select tenant_id from broadcasts where id = $1) for key share`,
      [broadcastId],
    );
    const { rows } = await client.query<Broadcast>('select * from broadcasts where id = $1 for update', [
      broadcastId,
    ]);
    const broadcast = rows[0];
    if (!broadcast || tenant.rows.length === 0) return await stop(broadcast?.status ?? 'not-found');
    if (!FANNING_OUT.includes(broadcast.status)) return await stop(broadcast.status);
    if (tenant.rows[0]!.deleted) return await stop('failed', 'its tenant was deleted');
    if (!broadcast.segment_id) return await stop('failed', 'its segment was deleted');
    const contacts = await client.query<FanOutContact>(
      `select c.id, c.email, c.first_name, c.last_name, c.properties
       from segment_contacts sc join contacts c on c.id = sc.contact_id
       where sc.segment_id = $1 and c.tenant_id = $2 and not c.unsubscribed
         and ($3::uuid is null or sc.contact_id > $3::uuid)
       order by sc.contact_id
       limit $4`,
      [broadcast.segment_id, broadcast.tenant_id, broadcast.cursor, limit.contacts],
    );
    if (contacts.rows.length === 0) {
      await client.query(
        `update broadcasts set status = 'sent', sent_at = now(), started_at = coalesce(started_at, now()),
         updated_at = now() where id = $1`,
        [broadcastId],
      );
      await client.query('commit');
      return { kind: 'finished', count: broadcast.created_count };
    }
    const prepared: { contact: FanOutContact; email: PreparedEmail }[] = [];
    let bytes = 0;
    for (const contact of contacts.rows) {
      const email = prepare(broadcast, contact);
      bytes += preparedBytes(email);
      if (prepared.length > 0 && bytes > limit.bytes) break;
      prepared.push({ contact, email });
    }
    const recorded = await client.query<{ email_id: string }>(
      `insert into broadcast_recipients (broadcast_id, address, contact_id, email_id)
       select $1, lower(r.address), r.contact_id, r.email_id
       from jsonb_to_recordset($2::jsonb) as r(address text, contact_id uuid, email_id uuid)
       on conflict do nothing
       returning email_id`,
      [
        broadcastId,
        JSON.stringify(
          prepared.map(({ contact, email }) => ({
            address: contact.email,
            contact_id: contact.id,
            email_id: email.id,
          })),
        ),
      ],
    );
    const fresh = new Set(recorded.rows.map((r) => r.email_id));
    const emails = prepared.map((p) => p.email).filter((e) => fresh.has(e.id));
    if (emails.length > 0) await insertEmails(client, emails);
    await client.query(
      `update broadcasts set status = 'sending', started_at = coalesce(started_at, now()), cursor = $2,
       created_count = created_count + $3, updated_at = now() where id = $1`,
      [broadcastId, prepared.at(-1)!.contact.id, emails.length],
    );
    await client.query('commit');
    return { kind: 'created', count: emails.length };
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** What an email adds to the chunk's statement: its subject and bodies, in UTF-8. */
function preparedBytes(email: PreparedEmail): number {
  const { html, text } = email.content;
  return (
    Buffer.byteLength(email.subject) +
    (typeof html === 'string' ? Buffer.byteLength(html) : 0) +
    (typeof text === 'string' ? Buffer.byteLength(text) : 0)
  );
}

/** Broadcasts left without their job this long are given one again (requeueStrandedBroadcasts). */
const STRANDED_AFTER = '10 minutes';

/**
 * Gives a job again to each broadcast that should be going out but has none (or only one whose
 * attempts ran out and that no worker holds): queued or sending, or scheduled and due, and
 * untouched for STRANDED_AFTER (a fan-out under way touches it at every chunk).
 * The sender runs it as a cron task (requeue_broadcasts); answers how many it re-added.
 *
 *   const requeued = await requeueStrandedBroadcasts(db);
 */
export async function requeueStrandedBroadcasts(db: Db): Promise<number> {
  const { rows } = await sql<{ id: string }>`
    select b.id from broadcasts b
    where (b.status in ('queued', 'sending') or (b.status = 'scheduled' and b.scheduled_at <= now()))
      and b.updated_at < now() - ${STRANDED_AFTER}::interval
      and not exists (
        select 1 from graphile_worker.jobs j
        where j.key = 'broadcast:' || b.id::text
          and (j.attempts < j.max_attempts or j.locked_at is not null))`.execute(db);
  for (const { id } of rows) await addBroadcastJob(db, id, null);
  return rows.length;
}

/**
 * The broadcast's send_broadcast job, due at `at` (now when null), under its job key: one held by a
 * worker keeps running and this one waits (graphile-worker's replace), so the fan-out under way can
 * hand on to it.
 *
 *   await addBroadcastJob(db, id, null);
 */
export async function addBroadcastJob(db: Db, broadcastId: string, at: Date | null): Promise<void> {
  await sql`select graphile_worker.add_job(${SEND_BROADCAST}, json_build_object('broadcastId', ${broadcastId}::text),
    run_at => ${at}::timestamptz, max_attempts => ${SEND_BROADCAST_MAX_ATTEMPTS}::int,
    job_key => ${broadcastJobKey(broadcastId)}::text)`.execute(db);
}

/**
 * A broadcast that cannot go out → failed, with why; only while it was to go out (a cancel wins).
 *
 *   await failBroadcast(db, id, 'the sending domain example.com is no longer the tenant's');
 */
export async function failBroadcast(db: Db, broadcastId: string, failure: string): Promise<boolean> {
  const row = await db
    .updateTable('broadcasts')
    .set({ status: 'failed', failure, updated_at: sql`now()` })
    .where('id', '=', broadcastId)
    .where('status', 'in', FANNING_OUT)
    .returning('id')
    .executeTakeFirst();
  return row !== undefined;
}
