// A Tenant's spec.webhooks converged into webhook_endpoints rows of source 'tenant', one per entry
// by name. The URL and events follow the spec; a URL the installation refuses (lib/net-policy.ts)
// is not taken, and an endpoint that had one keeps delivering to the URL it last took. Each
// endpoint's signing secret is generated once and kept in the row, encrypted under the
// installation's key, so that unlike an API key it can be written back exactly into a store that
// lost it (a deleted or edited Secret). An entry removed from the spec takes its row, its log of
// deliveries and its Secret with it.
//
// The reconciler enables or disables an endpoint only as the spec says: `enabled: false` disables
// it, and omitted or true enables again one that the spec had disabled, or one whose URL changed.
// One the sender disabled (410 Gone, days of failures) stays disabled on a re-apply of the same
// spec, because nothing says the receiver is back; its status says how to enable it again.

import { sql, type Updateable } from 'kysely';
import { decrypt, encrypt } from '../crypto.js';
import type { Db } from '../db/index.js';
import type { WebhookEndpointTable } from '../db/schema.js';
import { webhookUrlFault } from '../net-policy.js';
import type { TenantWebhook } from '../resources.js';
import { newWebhookSecret } from '../webhooks.js';
import type { KeyStore, ResourceRef } from './key-store.js';

/** Why an endpoint is disabled when its entry in spec.webhooks says `enabled: false`. */
export const DISABLED_IN_TENANT = 'disabled in the Tenant (spec.webhooks enabled: false)';

/** A registered endpoint as the Tenant's status shows it. */
export interface WebhookState {
  name: string;
  /** Its id in /v1/webhooks. */
  id: string;
  /** The URL events go to: the spec's, or the one last taken when the spec's is refused. */
  url: string;
  enabled: boolean;
  disabledReason?: string;
}

/** An entry whose URL the installation does not take. */
export interface RefusedWebhook {
  /** Its place in spec.webhooks, so that a message can name it: spec.webhooks[1] (audit). */
  index: number;
  name: string;
  url: string;
  /** What is wrong with it, in words that follow "url": "must be an https URL". */
  fault: string;
  /** The URL still in use, for an endpoint registered before; absent: no endpoint at all. */
  kept?: string;
}

export interface WebhooksOutcome {
  /** Endpoints created, each with a new secret handed to the store once. */
  registered: string[];
  /** Endpoints whose URL or events were changed to the spec's. */
  updated: string[];
  /** Enabled again: the spec no longer disables it, or its URL changed. */
  enabled: string[];
  /** Disabled because the spec says `enabled: false`. */
  disabled: string[];
  /** Endpoints whose entry is gone: deleted with their deliveries, and their secret dropped from the store. */
  removed: string[];
  /** The store had lost the secret (`deleted`) or held another (`altered`): written back, the same one. */
  restored: { name: string; how: 'deleted' | 'altered' }[];
  refused: RefusedWebhook[];
  /** Every endpoint of the spec that is registered, in the spec's order. */
  endpoints: WebhookState[];
  /** Whether anything in Postgres changed. */
  changed: boolean;
}

interface EndpointRow {
  id: string;
  name: string | null;
  url: string;
  events: string[];
  enabled: boolean;
  disabled_reason: string | null;
  secret: string;
}

const sameSet = (a: readonly string[], b: readonly string[]) => [...a].sort().join() === [...b].sort().join();

/**
 * Converges the tenant's declared endpoints (rows of source 'tenant') to `wanted`, and the store's
 * secrets to the rows'.
 *
 *   const { endpoints, refused } = await reconcileTenantWebhooks(deps, tenant.metadata, tenantId, tenant.spec.webhooks ?? []);
 */
export async function reconcileTenantWebhooks(
  deps: { db: Db; keys: KeyStore; secretKey: Buffer; webhooksAllowPrivate?: boolean },
  tenant: ResourceRef,
  tenantId: string,
  wanted: readonly TenantWebhook[],
): Promise<WebhooksOutcome> {
  const outcome: WebhooksOutcome = {
    registered: [],
    updated: [],
    enabled: [],
    disabled: [],
    removed: [],
    restored: [],
    refused: [],
    endpoints: [],
    changed: false,
  };
  if (wanted.length === 0 && (await declaredEndpoints(deps.db, tenantId)).length === 0) return outcome;
  const converged = await deps.db
    .transaction()
    .execute((trx) => convergeRows({ ...deps, db: trx }, tenantId, wanted, outcome));
  outcome.changed =
    outcome.registered.length +
      outcome.updated.length +
      outcome.enabled.length +
      outcome.disabled.length +
      outcome.removed.length >
    0;
  await convergeStore(deps, tenant, tenantId, wanted, converged, outcome);
  return outcome;
}

/** What one pass did to the rows that the store must hear of. */
interface Converged {
  /** Secrets generated in this pass, by endpoint name. */
  fresh: Map<string, string>;
  /** Endpoints whose URL this pass changed: the store's old URL is no edit of anyone's. */
  moved: Set<string>;
}

function declaredEndpoints(db: Db, tenantId: string): Promise<EndpointRow[]> {
  return db
    .selectFrom('webhook_endpoints')
    .select(['id', 'name', 'url', 'events', 'enabled', 'disabled_reason', 'secret'])
    .where('tenant_id', '=', tenantId)
    .where('source', '=', 'tenant')
    .execute();
}

/** The rows brought to the spec, in the caller's transaction. */
async function convergeRows(
  deps: { db: Db; secretKey: Buffer; webhooksAllowPrivate?: boolean },
  tenantId: string,
  wanted: readonly TenantWebhook[],
  outcome: WebhooksOutcome,
): Promise<Converged> {
  const { db, secretKey } = deps;
  const converged: Converged = { fresh: new Map(), moved: new Set() };
  // The lock createEndpoint (lib/db/webhooks.ts) takes to count a tenant's endpoints: an endpoint
  // registered through the API at the same moment counts these.
  await sql`select pg_advisory_xact_lock(hashtextextended(${`webhook_endpoints/${tenantId}`}, 0))`.execute(
    db,
  );
  const rows = await declaredEndpoints(db, tenantId);
  const byName = new Map(rows.map((r) => [r.name, r]));
  for (const [index, entry] of wanted.entries()) {
    const row = byName.get(entry.name);
    const fault = webhookUrlFault(entry.url, { allowPrivate: deps.webhooksAllowPrivate ?? false });
    if (fault) {
      const kept = row ? { kept: row.url } : {};
      outcome.refused.push({ index, name: entry.name, url: entry.url, fault, ...kept });
    }
    if (!row) {
      if (fault) continue;
      const secret = newWebhookSecret();
      const enabled = entry.enabled !== false;
      await db
        .insertInto('webhook_endpoints')
        .values({
          tenant_id: tenantId,
          name: entry.name,
          url: entry.url,
          events: entry.events ?? [],
          enabled,
          disabled_reason: enabled ? null : DISABLED_IN_TENANT,
          secret: encrypt(secretKey, secret),
          source: 'tenant',
        })
        .execute();
      converged.fresh.set(entry.name, secret);
      outcome.registered.push(entry.name);
      continue;
    }

    const change = endpointChange(row, entry, fault === undefined);
    if (change.moved) converged.moved.add(entry.name);
    if (change.updated) outcome.updated.push(entry.name);
    if (change.enabled) outcome.enabled.push(entry.name);
    if (change.disabled) outcome.disabled.push(entry.name);
    if (Object.keys(change.set).length === 0) continue;
    await db
      .updateTable('webhook_endpoints')
      .set({ ...change.set, updated_at: sql<Date>`now()` })
      .where('id', '=', row.id)
      .execute();
  }

  const names = new Set(wanted.map((w) => w.name));
  const gone = rows.filter((r) => !names.has(r.name ?? ''));
  if (gone.length > 0) {
    // Their deliveries go with them (a trigger on webhook_endpoints): the log of an endpoint that is no more.
    await db
      .deleteFrom('webhook_endpoints')
      .where(
        'id',
        'in',
        gone.map((r) => r.id),
      )
      .execute();
    outcome.removed.push(...gone.map((r) => r.name ?? r.id));
  }
  return converged;
}

export interface EndpointChange {
  /** The columns to write; empty: the row is as the spec says. */
  set: Updateable<WebhookEndpointTable>;
  moved: boolean;
  updated: boolean;
  enabled: boolean;
  disabled: boolean;
}

/**
 * What an existing row needs to be as its entry says: the entry's URL (when `urlTaken`) and
 * events, and its enabled state only as the spec says. The sender's disabling (a 410, days of
 * failures) stands until the spec disables the endpoint itself or gives it another URL.
 *
 *   endpointChange(row, { name: 'events', url: 'https://new.example/hooks' }, true).set  // { url, failing_since: null, … }
 */
export function endpointChange(
  row: Pick<EndpointRow, 'url' | 'events' | 'enabled' | 'disabled_reason'>,
  entry: TenantWebhook,
  urlTaken: boolean,
): EndpointChange {
  const set: Updateable<WebhookEndpointTable> = {};
  const moved = urlTaken && entry.url !== row.url;
  // Days of failures at the old URL say nothing of the new one.
  if (moved) Object.assign(set, { url: entry.url, failing_since: null });
  const events = entry.events ?? [];
  if (!sameSet(row.events, events)) set.events = events;
  const updated = moved || set.events !== undefined;
  let enabled = false;
  let disabled = false;
  if (entry.enabled === false) {
    disabled = row.enabled || row.disabled_reason !== DISABLED_IN_TENANT;
    if (disabled) Object.assign(set, { enabled: false, disabled_reason: DISABLED_IN_TENANT });
  } else if (!row.enabled && (row.disabled_reason === DISABLED_IN_TENANT || moved)) {
    enabled = true;
    Object.assign(set, { enabled: true, disabled_reason: null, failing_since: null });
  }
  return { set, moved, updated, enabled, disabled };
}

/**
 * The store brought to the committed rows: a new secret handed over once, a lost or edited one
 * written back. After the commit, so that a store that fails midway is brought to them again on
 * the next pass; the rows are the record. Fills in the endpoints of the outcome, in spec order.
 */
async function convergeStore(
  deps: { db: Db; keys: KeyStore; secretKey: Buffer },
  tenant: ResourceRef,
  tenantId: string,
  wanted: readonly TenantWebhook[],
  converged: Converged,
  outcome: WebhooksOutcome,
): Promise<void> {
  const { keys, secretKey } = deps;
  const rows = new Map((await declaredEndpoints(deps.db, tenantId)).map((r) => [r.name, r]));
  for (const entry of wanted) {
    const row = rows.get(entry.name);
    if (!row) continue;
    const fresh = converged.fresh.get(entry.name);
    const webhook = { secret: fresh ?? decrypt(secretKey, row.secret), url: row.url };
    if (fresh !== undefined) {
      await keys.saveWebhookSecret?.(tenant, entry.name, webhook);
    } else if (keys.loadWebhookSecret) {
      const held = await keys.loadWebhookSecret(tenant, entry.name);
      if (!held || held.secret !== webhook.secret || held.url !== webhook.url) {
        await keys.saveWebhookSecret?.(tenant, entry.name, webhook);
        if (!held) outcome.restored.push({ name: entry.name, how: 'deleted' });
        else if (held.secret !== webhook.secret || !converged.moved.has(entry.name)) {
          outcome.restored.push({ name: entry.name, how: 'altered' });
        }
      }
    }
    outcome.endpoints.push({
      name: entry.name,
      id: row.id,
      url: row.url,
      enabled: row.enabled,
      ...(row.disabled_reason ? { disabledReason: row.disabled_reason } : {}),
    });
  }
  for (const name of outcome.removed) await keys.deleteWebhookSecret?.(tenant, name);
}

/**
 * A refused entry in words, naming it as the spec does.
 *
 *   describeRefusedWebhook(r)  // 'spec.webhooks[1] (audit): url http://10.0.0.1/ must be an https URL; not registered'
 */
export function describeRefusedWebhook(r: RefusedWebhook): string {
  const consequence =
    r.kept === undefined
      ? 'not registered'
      : r.kept === r.url
        ? 'the sender refuses it too'
        : `events still go to ${r.kept}, the URL it last took`;
  return `spec.webhooks[${r.index}] (${r.name}): url ${r.url} ${r.fault}; ${consequence}`;
}
