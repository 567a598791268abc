// Idempotency-Key records, per tenant (the api's side is api/idempotency.ts): claim a key for a
// request, find its first answer, release a refused request's claim, purge expired keys. The
// answer of an accepted request is written by the statement that queues its emails
// (lib/send/accept.ts), so that a 202 and its record commit together.

import { sql } from 'kysely';
import type { Db } from './index.js';
import { Problem } from '../problem.js';

/** How long a key's answer is kept (then purged by the sender's purge_idempotency_keys job). */
export const KEY_TTL_HOURS = 24;
/**
 * A request in flight longer than this has died before committing, so a retry of the same request
 * may take the key over. The api cannot hold one longer: a connection is made within 5 s or fails
 * (lib/db/index.ts) and a statement runs at most API_STATEMENT_TIMEOUT_MS (api/main.ts). Short,
 * because a client retrying after a Postgres restart waits this long for a key whose first
 * attempt died with it.
 */
const IN_FLIGHT_LEASE_SECONDS = 30;

export interface IdempotentRequest {
  tenantId: string;
  key: string;
  /** Of the route and body: what makes a retry the same request. */
  fingerprint: string;
}

/** What the first request answered; written with its emails. */
export interface Receipt extends IdempotentRequest {
  status: number;
  body: unknown;
}

export type Begun = { kind: 'first' } | { kind: 'replay'; status: number; body: unknown };

/**
 * Claims the key for this request, or finds the first answer. Throws a 409 Problem when the key
 * belongs to another request or to one still in flight.
 *
 *   const begun = await beginIdempotent(db, idem);
 *   if (begun.kind === 'replay') return res.status(begun.status).json(begun.body);
 */
export async function beginIdempotent(db: Db, idem: IdempotentRequest): Promise<Begun> {
  // Taken over: an expired key (whatever the request), or the same request's stale claim.
  const { rows } = await sql<{ claimed: boolean }>`
    insert into idempotency_keys (tenant_id, key, fingerprint, expires_at)
    values (${idem.tenantId}, ${idem.key}, ${idem.fingerprint}, now() + make_interval(hours => ${KEY_TTL_HOURS}))
    on conflict (tenant_id, key) do update
      set fingerprint = excluded.fingerprint, started_at = now(), expires_at = excluded.expires_at,
          response_status = null, response_body = null
      where idempotency_keys.expires_at <= now()
         or (idempotency_keys.response_status is null and idempotency_keys.fingerprint = excluded.fingerprint
             and idempotency_keys.started_at < now() - make_interval(secs => ${IN_FLIGHT_LEASE_SECONDS}))
    returning true as claimed`.execute(db);
  if (rows.length > 0) return { kind: 'first' };

  const seen = await db
    .selectFrom('idempotency_keys')
    .select(['fingerprint', 'response_status', 'response_body'])
    .where('tenant_id', '=', idem.tenantId)
    .where('key', '=', idem.key)
    .executeTakeFirst();
  // Deleted (its request refused) between the two statements: a first request after all.
  if (!seen) return beginIdempotent(db, idem);
  if (seen.fingerprint !== idem.fingerprint) {
    throw new Problem(
      409,
      'invalid-idempotent-request',
      'This Idempotency-Key was used for a different request; use a new key for a new request.',
    );
  }
  if (seen.response_status === null) {
    throw new Problem(
      409,
      'concurrent-idempotent-requests',
      'A request with this Idempotency-Key is still being processed; retry once it has been answered.',
    );
  }
  return { kind: 'replay', status: seen.response_status, body: seen.response_body };
}

/**
 * Releases the key of a request that was refused (nothing was queued), so that a corrected retry
 * may use it; only the claim this request made, never an answered one.
 */
export async function abandonIdempotent(db: Db, idem: IdempotentRequest): Promise<void> {
  await db
    .deleteFrom('idempotency_keys')
    .where('tenant_id', '=', idem.tenantId)
    .where('key', '=', idem.key)
    .where('fingerprint', '=', idem.fingerprint)
    .where('response_status', 'is', null)
    .execute();
}

/** Records the answer of a request that queued nothing (a permissive batch with no valid email). */
export async function completeIdempotent(db: Db, receipt: Receipt): Promise<void> {
  await db
    .updateTable('idempotency_keys')
    .set({ response_status: receipt.status, response_body: JSON.stringify(receipt.body) })
    .where('tenant_id', '=', receipt.tenantId)
    .where('key', '=', receipt.key)
    .where('fingerprint', '=', receipt.fingerprint)
    .execute();
}

/**
 * Deletes expired keys, a batch at a time so that a backlog does not hold one long transaction;
 * returns how many went.
 */
export async function purgeIdempotencyKeys(db: Db, batch = 10_000): Promise<number> {
  let total = 0;
  for (;;) {
    const { numDeletedRows } = await db
      .deleteFrom('idempotency_keys')
      .where(({ eb, selectFrom }) =>
        eb(
          sql`(tenant_id, key)`,
          'in',
          selectFrom('idempotency_keys')
            .select(['tenant_id', 'key'])
            .where('expires_at', '<=', sql<Date>`now()`)
            .limit(batch),
        ),
      )
      .executeTakeFirst();
    total += Number(numDeletedRows);
    if (Number(numDeletedRows) < batch) return total;
  }
}
