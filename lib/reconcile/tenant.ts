// Converges a Tenant into its row, its API keys and its webhooks: a key is issued for each
// `spec.apiKeys` entry that has none, its scopes follow the spec, and a key whose entry is gone is
// revoked. Only hashes reach Postgres; the key itself goes to the key store once. A key the store
// lost (its Secret deleted or edited) cannot come back from a hash: it is revoked and issued anew.
// `spec.webhooks` becomes endpoints of source 'tenant' (./tenant-webhooks.ts), whose secrets are
// kept encrypted and so can be written back.
//
// A deleted Tenant's row is retired rather than deleted (retireTenant): its keys are revoked at
// once, and its history and suppressions stay unless its deletionPolicy is Delete. A Tenant
// created again under the same name takes the retired row back, and with it what it kept.

import { sql } from 'kysely';
import { hashApiKey, newApiKey, sameHash } from '../crypto.js';
import type { Db } from '../db/index.js';
import type { Scope } from '../db/schema.js';
import type { TenantResource } from '../resources.js';
import type { ApiKeyCheck, KeyStore, ResourceRef } from './key-store.js';
import { reconcileTenantWebhooks, type WebhooksOutcome } from './tenant-webhooks.js';

export interface TenantOutcome {
  tenantId: string;
  /** Keys issued for entries that had none. */
  keysIssued: string[];
  /** Keys the store had lost (a deleted or edited Secret): the old one revoked, a new one issued. */
  keysReissued: string[];
  keysRevoked: string[];
  /** Keys whose scopes were written back into the store, which held other ones. */
  scopesRestored: string[];
  /** Set when a retired row of the same name was taken back: what it had kept. */
  restored?: RetainedCounts;
  /** What became of spec.webhooks. */
  webhooks: WebhooksOutcome;
  /** Whether anything in Postgres changed. */
  changed: boolean;
}

/** What a tenant's row holds beside its configuration: its history and its suppression list. */
export interface RetainedCounts {
  emails: number;
  messages: number;
  events: number;
  suppressions: number;
}

/** What happens to a tenant's history and suppressions when its Tenant is deleted. */
export type DeletionPolicy = 'Retain' | 'Delete';

const sameScopes = (a: readonly string[], b: readonly string[]) =>
  [...a].sort().join() === [...b].sort().join();

/**
 * Creates or updates the tenant, its keys and its webhooks. `secretKey` encrypts webhook secrets;
 * `webhooksAllowPrivate` is MAILPLANE_WEBHOOKS_ALLOW_PRIVATE (false: https and public addresses only).
 *
 *   const { keysIssued, webhooks } = await reconcileTenant({ db, keys, secretKey }, tenant);
 */
export async function reconcileTenant(
  deps: { db: Db; keys: KeyStore; secretKey: Buffer; webhooksAllowPrivate?: boolean },
  tenant: TenantResource,
): Promise<TenantOutcome> {
  const { db, keys } = deps;
  const ref = tenant.metadata;
  const limits = JSON.stringify(tenant.spec.limits ?? {});
  const unsubscribe = tenant.spec.unsubscribe ?? false;
  const before = await db
    .selectFrom('tenants')
    .select(['id', 'deleted_at'])
    .where('namespace', '=', ref.namespace)
    .where('name', '=', ref.name)
    .executeTakeFirst();
  const row = await db
    .insertInto('tenants')
    .values({ namespace: ref.namespace, name: ref.name, limits, unsubscribe })
    .onConflict((oc) =>
      oc
        .columns(['namespace', 'name'])
        .doUpdateSet({ limits, unsubscribe, deleted_at: null, updated_at: sql`now()` })
        .where(
          sql<boolean>`tenants.limits is distinct from excluded.limits or tenants.unsubscribe is distinct from excluded.unsubscribe or tenants.deleted_at is not null`,
        ),
    )
    .returning('id')
    .executeTakeFirst();
  // No row back means the conflict update was skipped: the tenant exists and is unchanged.
  const tenantId = row?.id ?? before!.id;
  let changed = row !== undefined;
  const restored = before?.deleted_at ? await retainedCounts(db, tenantId) : undefined;

  const live = await db
    .selectFrom('api_keys')
    .select(['id', 'name', 'scopes', 'hash'])
    .where('tenant_id', '=', tenantId)
    .where('revoked_at', 'is', null)
    .execute();
  const liveByName = new Map(live.map((k) => [k.name, k]));
  const wanted = tenant.spec.apiKeys ?? [];
  const outcome: Omit<TenantOutcome, 'webhooks'> = {
    tenantId,
    keysIssued: [],
    keysReissued: [],
    keysRevoked: [],
    scopesRestored: [],
    ...(restored ? { restored } : {}),
    changed: false,
  };

  for (const { name, scopes } of wanted) {
    const current = liveByName.get(name);
    const held = current ? await checkApiKey(keys, ref, name, current.hash, scopes) : 'lost';
    if (current && held !== 'lost') {
      const rowScopesDiffer = !sameScopes(current.scopes, scopes);
      if (held === 'scopes' || rowScopesDiffer) {
        // The store first: should Postgres then fail, the next pass still sees the difference.
        await keys.updateApiKeyScopes(ref, name, scopes);
        if (!rowScopesDiffer) outcome.scopesRestored.push(name);
      }
      if (rowScopesDiffer) {
        await db.updateTable('api_keys').set({ scopes }).where('id', '=', current.id).execute();
        changed = true;
      }
      continue;
    }
    // The store lost the key (or there never was one): retire the old hash and issue anew.
    if (current) await revoke(db, current.id);
    await issue(db, keys, tenant, tenantId, name, scopes);
    (current ? outcome.keysReissued : outcome.keysIssued).push(name);
    changed = true;
  }

  const wantedNames = new Set(wanted.map((k) => k.name));
  for (const key of live) {
    if (wantedNames.has(key.name)) continue;
    await revoke(db, key.id);
    await keys.deleteApiKey(ref, key.name);
    outcome.keysRevoked.push(key.name);
    changed = true;
  }

  const webhooks = await reconcileTenantWebhooks(deps, ref, tenantId, tenant.spec.webhooks ?? []);
  return { ...outcome, webhooks, changed: changed || webhooks.changed };
}

async function checkApiKey(
  keys: KeyStore,
  ref: ResourceRef,
  name: string,
  hash: Buffer,
  scopes: Scope[],
): Promise<ApiKeyCheck> {
  if (keys.checkApiKey) return keys.checkApiKey(ref, name, hash, scopes);
  return (await keys.hasApiKey(ref, name)) ? 'held' : 'lost';
}

async function issue(
  db: Db,
  keys: KeyStore,
  tenant: TenantResource,
  tenantId: string,
  name: string,
  scopes: Scope[],
): Promise<void> {
  const issued = newApiKey();
  await keys.saveApiKey(tenant.metadata, name, issued.key, scopes);
  await db
    .insertInto('api_keys')
    .values({ tenant_id: tenantId, name, prefix: issued.prefix, hash: issued.hash, scopes })
    .execute();
}

async function revoke(db: Db, keyId: string): Promise<void> {
  await db
    .updateTable('api_keys')
    .set({ revoked_at: sql`now()` })
    .where('id', '=', keyId)
    .execute();
}

/** Whether `key` is the one whose hash is `hash`. */
export function isIssuedKey(key: string, hash: Buffer): boolean {
  return sameHash(hashApiKey(key), hash);
}

export interface RetireOutcome {
  /** False when there was no live row to retire (never reconciled, or retired already). */
  found: boolean;
  keysRevoked: number;
  /** Rows kept (Retain) or deleted (Delete). */
  rows: RetainedCounts;
}

/**
 * What deleting a Tenant does to its rows, in one transaction: its live keys are revoked, and
 * then either the row is marked deleted with everything it holds kept (Retain: emails, messages,
 * events, statistics, webhooks and their deliveries, suppressions), or everything it holds is
 * deleted table by table and the row with it (Delete). Domains and templates have
 * their own resources and finalizers; whatever rows of theirs are left without one stay with a
 * retained tenant and go with a deleted one.
 *
 *   const { rows } = await retireTenant(db, 'apps', 'acme', 'Retain');
 */
export async function retireTenant(
  db: Db,
  namespace: string,
  name: string,
  policy: DeletionPolicy,
): Promise<RetireOutcome> {
  return db.transaction().execute(async (trx) => {
    // The lock orders this against a domain or template being stored for the tenant.
    const tenant = await trx
      .selectFrom('tenants')
      .select('id')
      .where('namespace', '=', namespace)
      .where('name', '=', name)
      .where('deleted_at', 'is', null)
      .forUpdate()
      .executeTakeFirst();
    const none = { emails: 0, messages: 0, events: 0, suppressions: 0 };
    if (!tenant) return { found: false, keysRevoked: 0, rows: none };
    const id = tenant.id;
    const revoked = await trx
      .updateTable('api_keys')
      .set({ revoked_at: sql`now()` })
      .where('tenant_id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    const rows = await retainedCounts(trx, id);
    if (policy === 'Retain') {
      await trx
        .updateTable('tenants')
        .set({ deleted_at: sql`now()`, updated_at: sql`now()` })
        .where('id', '=', id)
        .execute();
    } else {
      // Children first: the foreign keys restrict, so nothing goes that is not named here.
      // The endpoints take their deliveries with them (a trigger); those an event statement
      // wrote meanwhile go after the emails, with nothing left to write more.
      await trx.deleteFrom('webhook_endpoints').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('email_stats').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('email_tag_stats').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('events').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('messages').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('emails').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('webhook_deliveries').where('tenant_id', '=', id).execute();
      // Their recipients cascade.
      await trx.deleteFrom('broadcasts').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('suppressions').where('tenant_id', '=', id).execute();
      // Memberships go with either side (segment_contacts cascades).
      await trx.deleteFrom('segments').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('contacts').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('idempotency_keys').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('api_keys').where('tenant_id', '=', id).execute();
      await trx
        .deleteFrom('template_versions')
        .where('template_id', 'in', trx.selectFrom('templates').select('id').where('tenant_id', '=', id))
        .execute();
      await trx.deleteFrom('templates').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('domains').where('tenant_id', '=', id).execute();
      await trx.deleteFrom('tenants').where('id', '=', id).execute();
      // Last: the deletes above wrote their own audit lines.
      await trx.deleteFrom('audit_log').where('tenant_id', '=', id).execute();
    }
    return { found: true, keysRevoked: Number(revoked.numUpdatedRows), rows };
  });
}

async function retainedCounts(db: Db, tenantId: string): Promise<RetainedCounts> {
  const count = async (table: 'emails' | 'messages' | 'events' | 'suppressions') =>
    Number(
      (
        await db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .where('tenant_id', '=', tenantId)
          .executeTakeFirstOrThrow()
      ).n,
    );
  return {
    emails: await count('emails'),
    messages: await count('messages'),
    events: await count('events'),
    suppressions: await count('suppressions'),
  };
}

/**
 * Finds a live tenant's id by its resource name; undefined when it has not been applied yet or
 * was deleted (a retired row is no tenant until its Tenant is created again).
 */
export async function findTenantId(db: Db, namespace: string, name: string): Promise<string | undefined> {
  const row = await db
    .selectFrom('tenants')
    .select('id')
    .where('namespace', '=', namespace)
    .where('name', '=', name)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return row?.id;
}
