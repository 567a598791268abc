// Applies Mailplane's migrations and graphile-worker's own, under a Postgres advisory lock so that
// replicas starting together apply them once. Run by `mailplane migrate` and at every start-up.

import { Migrator, type Migration, type MigrationProvider } from 'kysely/migration';
import { runMigrations as runWorkerMigrations } from 'graphile-worker';
import type pg from 'pg';
import type { Db } from './index.js';
import type { Logger } from '../log.js';
import * as core from './migrations/2026-11-23T00-00-core.js';
import * as reliability from './migrations/2026-12-01T00-00-reliability.js';
import * as installation from './migrations/2026-12-01T01-00-installation.js';
import * as webhooks from './migrations/2026-12-01T03-00-webhooks.js';
import * as stats from './migrations/2026-12-01T04-00-stats.js';
import * as eventsByTime from './migrations/2026-12-01T05-00-events-by-time.js';
import * as tenantRetention from './migrations/2026-12-01T06-00-tenant-retention.js';
import * as emailSearch from './migrations/2026-12-01T07-00-email-search.js';
import * as auditLog from './migrations/2026-12-01T08-00-audit-log.js';
import * as dkimRotation from './migrations/2026-12-02T05-00-dkim-rotation.js';
import * as templateVersions from './migrations/2026-12-02T01-00-template-versions.js';
import * as unsubscribe from './migrations/2026-12-02T02-00-unsubscribe.js';
import * as tracking from './migrations/2026-12-02T03-00-tracking.js';
import * as uniqueEngagement from './migrations/2026-12-02T10-00-unique-engagement.js';
import * as webhookAttempts from './migrations/2026-12-02T11-00-webhook-attempts.js';
import * as broadcasts from './migrations/2026-12-02T07-00-broadcasts.js';
import * as contacts from './migrations/2026-12-02T06-00-contacts.js';
import * as recentClicks from './migrations/2026-12-02T09-00-recent-clicks.js';
import * as webhookOutbox from './migrations/2026-12-02T08-00-webhook-outbox.js';
import * as webhookLeaseHolder from './migrations/2026-12-03T07-00-webhook-lease-holder.js';
import * as webhookPause from './migrations/2026-12-03T08-00-webhook-pause.js';
import * as webhookDeliveriesUnlocked from './migrations/2026-12-03T15-00-webhook-deliveries-unlocked.js';
import * as emailEventFields from './migrations/2026-12-03T16-00-email-event-fields.js';

/** Listed here rather than read from a folder, so that a bundled or compiled build finds them. */
const MIGRATIONS: Record<string, Migration> = {
  '2026-11-23T00-00-core': core,
  '2026-12-01T00-00-reliability': reliability,
  '2026-12-01T01-00-installation': installation,
  '2026-12-01T03-00-webhooks': webhooks,
  '2026-12-01T04-00-stats': stats,
  '2026-12-01T05-00-events-by-time': eventsByTime,
  '2026-12-01T06-00-tenant-retention': tenantRetention,
  '2026-12-01T07-00-email-search': emailSearch,
  '2026-12-01T08-00-audit-log': auditLog,
  '2026-12-02T05-00-dkim-rotation': dkimRotation,
  '2026-12-02T01-00-template-versions': templateVersions,
  '2026-12-02T02-00-unsubscribe': unsubscribe,
  '2026-12-02T03-00-tracking': tracking,
  '2026-12-02T10-00-unique-engagement': uniqueEngagement,
  '2026-12-02T11-00-webhook-attempts': webhookAttempts,
  '2026-12-02T07-00-broadcasts': broadcasts,
  '2026-12-02T06-00-contacts': contacts,
  '2026-12-02T09-00-recent-clicks': recentClicks,
  '2026-12-02T08-00-webhook-outbox': webhookOutbox,
  '2026-12-03T07-00-webhook-lease-holder': webhookLeaseHolder,
  '2026-12-03T08-00-webhook-pause': webhookPause,
  '2026-12-03T15-00-webhook-deliveries-unlocked': webhookDeliveriesUnlocked,
  '2026-12-03T16-00-email-event-fields': emailEventFields,
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/** Arbitrary but fixed: every Mailplane process contends for the same lock. */
const MIGRATION_LOCK_ID = 0x6d61696c; // "mail"

/**
 * Brings the database up to date; safe to call from every process at start-up.
 *
 *   await migrate(db, pool, log);
 */
export async function migrate(db: Db, pool: pg.Pool, log: Logger): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
    const { error, results } = await new Migrator({ db, provider }).migrateToLatest();
    for (const result of results ?? []) {
      if (result.status === 'Success') log.info('migration applied', { migration: result.migrationName });
      if (result.status === 'Error') log.error('migration failed', { migration: result.migrationName });
    }
    if (error) throw error;
    await runWorkerMigrations({ pgPool: pool, logger: undefined });
  } finally {
    await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]).catch(() => {});
    client.release();
  }
}
