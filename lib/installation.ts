// Detects a wrong MAILPLANE_SECRET_KEY when a process starts. The key encrypts the DKIM private
// keys in Postgres; with another key nothing can be signed, and before this check that showed
// only as every message deferring with "cannot sign". The first process of an installation
// stores an HMAC of a fixed label under the key; every later one compares. An installation from
// before the check proves its key by decrypting a stored DKIM key before the check is stored.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { decrypt } from './crypto.js';
import type { Db } from './db/index.js';
import { UserError } from './user-error.js';

const LABEL = 'mailplane/v1/secret-key-check';

const WRONG_KEY =
  'MAILPLANE_SECRET_KEY is not the key this database was set up with, so its DKIM keys cannot be ' +
  'read. Start with the installation\'s key (the Helm chart keeps it in the Secret "<release>-secret-key").';

function keyCheck(secretKey: Buffer): string {
  return createHmac('sha256', secretKey).update(LABEL).digest('base64url');
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Throws a UserError when `secretKey` is not the installation's; records it on first use.
 *
 *   await verifySecretKey(database.db, config.secretKey);
 */
export async function verifySecretKey(db: Db, secretKey: Buffer): Promise<void> {
  const check = keyCheck(secretKey);
  const stored = await db.selectFrom('installation').select('key_check').executeTakeFirst();
  if (stored) {
    if (!same(stored.key_check, check)) throw new UserError(WRONG_KEY);
    return;
  }
  const domain = await db
    .selectFrom('domains')
    .select(['name', 'dkim_private_key'])
    .limit(1)
    .executeTakeFirst();
  if (domain) {
    try {
      decrypt(secretKey, domain.dkim_private_key);
    } catch (err) {
      throw new UserError(`${WRONG_KEY} (the key of ${domain.name} does not decrypt)`, { cause: err });
    }
  }
  await db
    .insertInto('installation')
    .values({ key_check: check })
    .onConflict((c) => c.doNothing())
    .execute();
  // Two processes starting at once with different keys: the first row wins, the other is told.
  const winner = await db.selectFrom('installation').select('key_check').executeTakeFirstOrThrow();
  if (!same(winner.key_check, check)) throw new UserError(WRONG_KEY);
}
