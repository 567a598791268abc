// DKIM keys besides the one a domain's row signs with: the next key of a rotation (published,
// waiting for DNS to show it), keys being retired (no longer signing, still published for mail
// in flight), and the RSA key an Ed25519 domain also signs with. The rotation's progress lives
// here, not in the operator's memory, so that a restarted operator carries on where it was.
//
// `slot` says which signature a key belongs to: `primary` (the row's, in spec.dkim.algorithm) or
// `rsa` (the second signature of a dual-signing domain); `state` where it is in its life. A slot
// has at most one next key, and the rsa slot at most one active key.

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  // When the row's key started signing: a rotation is due rotateEvery after it.
  await db.schema
    .alterTable('domains')
    .addColumn('dkim_activated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`update domains set dkim_activated_at = updated_at`.execute(db);

  await db.schema
    .createTable('dkim_keys')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('domain_id', 'uuid', (c) => c.notNull().references('domains.id').onDelete('cascade'))
    .addColumn('slot', 'text', (c) => c.notNull().check(sql`slot in ('primary', 'rsa')`))
    .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('next', 'active', 'retiring')`))
    .addColumn('selector', 'text', (c) => c.notNull())
    .addColumn('algorithm', 'text', (c) => c.notNull().check(sql`algorithm in ('rsa-2048', 'ed25519')`))
    .addColumn('private_key', 'text', (c) => c.notNull())
    .addColumn('public_key', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('activated_at', 'timestamptz')
    .addColumn('retire_at', 'timestamptz')
    .addUniqueConstraint('dkim_keys_domain_selector', ['domain_id', 'selector'])
    .execute();
  await sql`create unique index dkim_keys_one_next on dkim_keys (domain_id, slot) where state = 'next'`.execute(
    db,
  );
  await sql`create unique index dkim_keys_one_active on dkim_keys (domain_id, slot) where state = 'active'`.execute(
    db,
  );
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('dkim_keys').execute();
  await db.schema.alterTable('domains').dropColumn('dkim_activated_at').execute();
}
