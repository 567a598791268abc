// The DKIM keys of a domain besides the one its row signs with, and how they change: rotation
// (spec.dkim.rotateEvery, or a spec that asks for another algorithm or selector) and the second,
// RSA signature of an Ed25519 domain (spec.dkim.alsoRsa; RFC 8463 recommends signing with both
// while receivers that verify only RSA remain).
//
// A rotation never puts another key under a published selector and never signs with a key that
// receivers cannot find yet: it generates the next key under a new selector and lists its record
// (state `next`); the switch waits until DNS shows that record; then, in one transaction, the
// domain signs with the new key and the old one becomes `retiring`: it signs nothing more but
// stays listed (and should stay published) for spec.dkim.retireAfter, for mail signed with it
// that is still in flight; then it is deleted. Every step is a row change in dkim_keys or domains,
// so that an operator restarted mid-rotation carries on where the last one stopped. One rotation
// per slot at a time: the next starts once the key replaced by the last one is retired.

import { sql } from 'kysely';
import { decrypt, dkimPublicKey, encrypt, generateDkimKey, type DkimAlgorithm } from '../crypto.js';
import type { Db } from '../db/index.js';
import type { DkimKey } from '../db/schema.js';
import { checkDnsRecords, type TxtMxResolver } from '../dns-check.js';
import { dkimRecord, type DnsRecord } from '../dns-records.js';
import { parseDuration } from '../duration.js';
import type { SendingDomainResource } from '../resources.js';

/** The selector when the spec names none; rotated keys take it as the stem of theirs. */
export const DEFAULT_SELECTOR = 'mailplane';

/**
 * How long a replaced key stays published by default: longer than a relay keeps a message it
 * cannot deliver (Postfix's maximal_queue_lifetime is 5 days), so that mail signed just before a
 * switch still verifies when it finally arrives.
 */
export const DEFAULT_RETIRE_AFTER = '7d';

/** How often a key waiting for DNS is looked up again, at most. */
export const NEXT_KEY_RECHECK_MS = 60_000;

export type { KeyState, ListedRecord } from '../dns-records.js';

/** The domain row's own key, as this module reads and switches it. */
export interface PrimaryKey {
  id: string;
  name: string;
  selector: string;
  dkim_algorithm: DkimAlgorithm;
  dkim_public_key: string;
  dkim_private_key: string;
  dkim_activated_at: Date;
}

/** What happened, for an Event. */
export interface KeyNote {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface KeysOutcome {
  /** The keys besides the row's, with their states: what lib/dns-records.ts domainRecords lists. */
  others: DkimKey[];
  /** The KeyCurrent condition: False while a new key waits for DNS or a rotation waits its turn. */
  current: { status: 'True' | 'False'; reason: string; message: string };
  notes: KeyNote[];
  /** When something is due (a key to retire, a rotation), to look again then. */
  nextCheckAt?: Date;
  /** The row's key as it is now: another one after a switch. */
  primary: PrimaryKey;
  /** The RSA key signing beside the row's, for a dual-signing domain. */
  rsa?: { selector: string; algorithm: DkimAlgorithm };
}

export interface RotationDeps {
  /** Where the next key's record is looked up before the switch. */
  resolver: TxtMxResolver;
  now?: () => Date;
}

/** The whole set of a domain's keys, as a store that keeps them (the operator's Secret) holds them. */
export interface DkimKeySet {
  /** PKCS#8 PEM of the key the row signs with. */
  signing: string;
  selector: string;
  /** Every other key by selector: the RSA key, a next key, keys being retired. */
  others: Record<string, string>;
  /** Which of `others` is the RSA key a dual-signing domain signs with. */
  rsaSelector?: string;
}

/** One convergence of a domain's keys: what it reads, what it has changed so far, and what it found. */
interface Run {
  db: Db;
  secretKey: Buffer;
  rotation?: RotationDeps;
  now: Date;
  dkim: NonNullable<SendingDomainResource['spec']['dkim']>;
  /** rotateEvery in milliseconds. */
  every?: number;
  /** When a key replaced now stops being published. */
  retireAt: Date;
  primary: PrimaryKey;
  rows: DkimKey[];
  notes: KeyNote[];
  /** Next keys whose records DNS does not show yet: what to publish. */
  pending: string[];
  /** Rotations asked for that wait for an earlier key's retirement. */
  waiting: string[];
}

/**
 * Converges the keys besides the row's: retires those whose time has come, starts, checks and
 * finishes rotations (with `rotation`, the operator's; without it no rotation runs and a key for
 * the RSA signature signs at once), and lists their records.
 *
 *   const keys = await convergeKeys({ db, secretKey, rotation: { resolver } }, domain, primary, { fresh });
 */
export async function convergeKeys(
  deps: { db: Db; secretKey: Buffer; rotation?: RotationDeps },
  domain: SendingDomainResource,
  primary: PrimaryKey,
  options: { fresh: boolean; keptRsa?: { selector: string; pem: string } },
): Promise<KeysOutcome> {
  const now = deps.rotation?.now?.() ?? new Date();
  const dkim = domain.spec.dkim ?? {};
  const every = dkim.rotateEvery ? parseDuration(dkim.rotateEvery) : undefined;
  const run: Run = {
    ...deps,
    now,
    dkim,
    ...(every !== undefined ? { every } : {}),
    retireAt: new Date(now.getTime() + parseDuration(dkim.retireAfter ?? DEFAULT_RETIRE_AFTER)!),
    primary,
    rows: await loadKeys(deps.db, primary.id),
    notes: [],
    pending: [],
    waiting: [],
  };
  await retireDue(run);
  // The row's key is rotated by the operator only, which checks DNS before the switch.
  if (run.rotation) await rotatePrimary(run);
  await convergeRsa(run, options);

  const rsa = run.rows.find((r) => r.slot === 'rsa' && r.state === 'active');
  return {
    others: run.rows,
    current: currentCondition(run, rsa),
    notes: run.notes,
    ...nextCheck(run, rsa),
    primary: run.primary,
    ...(rsa ? { rsa: { selector: rsa.selector, algorithm: rsa.algorithm } } : {}),
  };
}

async function reload(run: Run): Promise<void> {
  run.rows = await loadKeys(run.db, run.primary.id);
}

function recordOf(
  run: Run,
  key: { selector: string; algorithm: DkimAlgorithm; public_key: string },
): DnsRecord {
  return dkimRecord(run.primary.name, key);
}

/** The selectors the domain uses, which no new key may take. */
function taken(run: Run): Set<string> {
  return new Set([run.primary.selector, ...run.rows.map((r) => r.selector)]);
}

/** Undefined when DNS shows `row`'s record; what is wrong otherwise (a failed lookup too: wait). */
async function unpublished(run: Run, row: DkimKey): Promise<string | undefined> {
  try {
    const [check] = await checkDnsRecords(run.rotation!.resolver, [recordOf(run, row)]);
    return check!.found ? undefined : (check!.problem ?? 'not found');
  } catch (err) {
    return `lookup failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
}

/** Deletes the keys whose grace is over: nothing signed with them can still be in flight. */
async function retireDue(run: Run): Promise<void> {
  const due = run.rows.filter((r) => r.state === 'retiring' && r.retire_at && r.retire_at <= run.now);
  for (const row of due) {
    await run.db.deleteFrom('dkim_keys').where('id', '=', row.id).execute();
    run.notes.push({
      type: 'Normal',
      reason: 'KeyRetired',
      message: `the ${row.algorithm} key under selector ${row.selector} is retired: its TXT record ${recordOf(run, row).name} may be removed from DNS`,
    });
  }
  if (due.length > 0) await reload(run);
}

/** Why the row's key should give way to a new one now, if it should, in words. */
function rotationReason(run: Run): string | undefined {
  const { dkim, primary } = run;
  // A key of your own is yours to rotate, by a new Secret under a new selector.
  if (dkim.secretRef) return undefined;
  const wanted: DkimAlgorithm = dkim.algorithm ?? 'rsa-2048';
  if (primary.dkim_algorithm !== wanted) return `spec.dkim.algorithm asks for ${wanted}`;
  const stem = dkim.selector ?? DEFAULT_SELECTOR;
  if (!derivesFrom(primary.selector, stem)) return `spec.dkim.selector is ${stem}`;
  if (run.every !== undefined && primary.dkim_activated_at.getTime() + run.every <= run.now.getTime()) {
    return `spec.dkim.rotateEvery is ${dkim.rotateEvery} and the key has signed since ${stamp(primary.dkim_activated_at)}`;
  }
  return undefined;
}

/** Generate → publish → verify → switch for the row's key; the old key is kept as retiring. */
async function rotatePrimary(run: Run): Promise<void> {
  const { db, dkim } = run;
  const wanted: DkimAlgorithm = dkim.algorithm ?? 'rsa-2048';
  const stem = dkim.selector ?? DEFAULT_SELECTOR;
  const why = rotationReason(run);
  let next = run.rows.find((r) => r.slot === 'primary' && r.state === 'next');
  if (next && (!why || next.algorithm !== wanted || !derivesFrom(next.selector, stem))) {
    await db.deleteFrom('dkim_keys').where('id', '=', next.id).execute();
    run.notes.push({
      type: 'Normal',
      reason: 'RotationCanceled',
      message: `the next key under selector ${next.selector} was discarded before it signed anything: the spec no longer asks for it; mail stays signed with the ${run.primary.dkim_algorithm} key under selector ${run.primary.selector}`,
    });
    next = undefined;
    await reload(run);
  }
  if (!next && why) {
    const retiring = run.rows.find((r) => r.slot === 'primary' && r.state === 'retiring');
    if (retiring) {
      run.waiting.push(
        `${why}; the rotation starts once the key under selector ${retiring.selector} is retired, at ${stamp(retiring.retire_at!)}`,
      );
      return;
    }
    // A selector the spec newly names is taken as it is; any other rotation makes a new one, never
    // one used before, whose old record may still be in DNS.
    const renamed = !derivesFrom(run.primary.selector, stem) && !taken(run).has(stem);
    const selector = renamed ? stem : newSelector(stem, run.now, taken(run));
    next = await addKey(run, 'primary', 'next', wanted, selector);
    run.notes.push({
      type: 'Normal',
      reason: 'NextKeyGenerated',
      message: `${why}: generated the next ${wanted} key under selector ${selector}. Publish TXT ${recordOf(run, next).name}; mail stays signed with the key under selector ${run.primary.selector} until DNS shows the new one`,
    });
  }
  if (!next) return;
  const problem = await unpublished(run, next);
  if (problem) {
    run.pending.push(
      `publish TXT ${recordOf(run, next).name} (${problem}) for the next ${next.algorithm} key`,
    );
    return;
  }
  const old = run.primary;
  run.primary = await switchPrimary(db, old, next, run.now, run.retireAt);
  await reload(run);
  run.notes.push({
    type: 'Normal',
    reason: 'KeySwitched',
    message: `DNS shows selector ${next.selector}: mail is now signed with its ${next.algorithm} key. The key under selector ${old.selector} signs nothing more and stays published until ${stamp(run.retireAt)} (spec.dkim.retireAfter), for mail in flight`,
  });
}

/** The second, RSA signature of an Ed25519 domain: added, rotated, or stopped. */
async function convergeRsa(
  run: Run,
  options: { fresh: boolean; keptRsa?: { selector: string; pem: string } },
): Promise<void> {
  const { db, dkim } = run;
  const active = run.rows.find((r) => r.slot === 'rsa' && r.state === 'active');
  let next = run.rows.find((r) => r.slot === 'rsa' && r.state === 'next');
  // An RSA key signs with RSA already: a second RSA signature would add nothing.
  if (!(dkim.alsoRsa === true && run.primary.dkim_algorithm === 'ed25519')) {
    if (next) await db.deleteFrom('dkim_keys').where('id', '=', next.id).execute();
    if (active) {
      await db
        .updateTable('dkim_keys')
        .set({ state: 'retiring', retire_at: run.retireAt })
        .where('id', '=', active.id)
        .execute();
      run.notes.push({
        type: 'Normal',
        reason: 'RsaSigningStopped',
        message: `${dkim.alsoRsa ? 'the key signing is an RSA one now' : 'spec.dkim.alsoRsa is off'}: mail is no longer signed with the RSA key under selector ${active.selector}, which stays published until ${stamp(run.retireAt)}`,
      });
    }
    if (next || active) await reload(run);
    return;
  }

  const stem = `${(dkim.selector ?? DEFAULT_SELECTOR).slice(0, 47)}-rsa`;
  if (!active && !next) {
    // A new domain signs at once, as with its first key; so does one without the operator's DNS
    // check. An RSA key added to a domain in use waits for DNS like any next key.
    const atOnce = options.fresh || !run.rotation;
    const selector =
      options.keptRsa?.selector ?? (taken(run).has(stem) ? newSelector(stem, run.now, taken(run)) : stem);
    const added = await addKey(
      run,
      'rsa',
      atOnce ? 'active' : 'next',
      'rsa-2048',
      selector,
      options.keptRsa?.pem,
    );
    run.notes.push({
      type: 'Normal',
      reason: atOnce ? 'KeyGenerated' : 'NextKeyGenerated',
      message: atOnce
        ? `rsa-2048 DKIM key ${options.keptRsa ? 'taken up from the Secret' : 'generated'} for the second signature, selector ${selector}`
        : `spec.dkim.alsoRsa: generated an rsa-2048 key under selector ${selector} for a second signature. Publish TXT ${recordOf(run, added).name}; mail is signed with it too once DNS shows it`,
    });
    if (atOnce) return;
    next = added;
  } else if (run.rotation && active && !next && run.every !== undefined) {
    const due = (active.activated_at ?? active.created_at).getTime() + run.every <= run.now.getTime();
    const retiring = run.rows.find((r) => r.slot === 'rsa' && r.state === 'retiring');
    if (due && !retiring) {
      next = await addKey(run, 'rsa', 'next', 'rsa-2048', newSelector(stem, run.now, taken(run)));
      run.notes.push({
        type: 'Normal',
        reason: 'NextKeyGenerated',
        message: `spec.dkim.rotateEvery is ${dkim.rotateEvery}: generated the next rsa-2048 key under selector ${next.selector} for the second signature. Publish TXT ${recordOf(run, next).name}; mail stays signed with the key under selector ${active.selector} until DNS shows the new one`,
      });
    }
  }
  if (!next || !run.rotation) return;
  const problem = await unpublished(run, next);
  if (problem) {
    run.pending.push(`publish TXT ${recordOf(run, next).name} (${problem}) for the RSA key`);
    return;
  }
  const activated = next;
  await db.transaction().execute(async (trx) => {
    if (active) {
      await trx
        .updateTable('dkim_keys')
        .set({ state: 'retiring', retire_at: run.retireAt })
        .where('id', '=', active.id)
        .execute();
    }
    await trx
      .updateTable('dkim_keys')
      .set({ state: 'active', activated_at: run.now })
      .where('id', '=', activated.id)
      .execute();
  });
  await reload(run);
  run.notes.push({
    type: 'Normal',
    reason: 'KeySwitched',
    message: active
      ? `DNS shows selector ${activated.selector}: the RSA signature now uses its key. The key under selector ${active.selector} stays published until ${stamp(run.retireAt)}, for mail in flight`
      : `DNS shows selector ${activated.selector}: mail is now signed with its RSA key too`,
  });
}

/** KeyCurrent: False while a next key waits for DNS or a rotation waits its turn. */
function currentCondition(run: Run, rsa: DkimKey | undefined): KeysOutcome['current'] {
  const { primary, dkim } = run;
  const signing = `the ${primary.dkim_algorithm} key under selector ${primary.selector}${rsa ? ` and the RSA key under selector ${rsa.selector}` : ''}`;
  const retiring = run.rows.filter((r) => r.state === 'retiring');
  if (run.pending.length > 0) {
    return {
      status: 'False',
      reason: 'NextKeyNotPublished',
      message: `${run.pending.join('; ')}. Mail stays signed with ${signing} until DNS shows it`,
    };
  }
  if (run.waiting.length > 0)
    return { status: 'False', reason: 'RotationWaiting', message: run.waiting.join('; ') };
  if (retiring.length > 0) {
    return {
      status: 'True',
      reason: 'OldKeyRetiring',
      message: `signing with ${signing}; ${retiring
        .map((r) => `the key under selector ${r.selector} stays published until ${stamp(r.retire_at!)}`)
        .join('; ')}, for mail in flight`,
    };
  }
  if (run.rotation && run.every !== undefined && !dkim.secretRef) {
    return {
      status: 'True',
      reason: 'RotationScheduled',
      message: `signing with ${signing}; the next rotation is due at ${stamp(new Date(primary.dkim_activated_at.getTime() + run.every))}`,
    };
  }
  return {
    status: 'True',
    reason: 'KeyInUse',
    message: `signing with ${signing}${dkim.secretRef ? ' (your own key, from spec.dkim.secretRef, which Mailplane does not rotate)' : '; spec.dkim.rotateEvery is unset, so it is rotated only when the spec asks for another algorithm or selector'}`,
  };
}

/** The earliest time something is due: a key to retire, a rotation. */
function nextCheck(run: Run, rsa: DkimKey | undefined): { nextCheckAt?: Date } {
  const every = run.rotation ? run.every : undefined;
  const times = [
    ...run.rows.filter((r) => r.state === 'retiring').map((r) => r.retire_at!.getTime()),
    ...(every !== undefined && !run.dkim.secretRef ? [run.primary.dkim_activated_at.getTime() + every] : []),
    ...(every !== undefined && rsa ? [(rsa.activated_at ?? rsa.created_at).getTime() + every] : []),
  ].filter((t) => t > run.now.getTime());
  return times.length > 0 ? { nextCheckAt: new Date(Math.min(...times)) } : {};
}

/** Every key of the domain besides its row's, oldest first. */
export async function loadKeys(db: Db, domainId: string): Promise<DkimKey[]> {
  return db
    .selectFrom('dkim_keys')
    .selectAll()
    .where('domain_id', '=', domainId)
    .orderBy('created_at')
    .orderBy('selector')
    .execute();
}

/**
 * The key set a store keeps for the domain, as the rows hold it.
 *
 *   await keys.saveDkimKeySet(ref, await keySetOf(db, secretKey, primary));
 */
export async function keySetOf(db: Db, secretKey: Buffer, primary: PrimaryKey): Promise<DkimKeySet> {
  const rows = await loadKeys(db, primary.id);
  const rsa = rows.find((r) => r.slot === 'rsa' && r.state === 'active');
  return {
    signing: decrypt(secretKey, primary.dkim_private_key),
    selector: primary.selector,
    others: Object.fromEntries(rows.map((r) => [r.selector, decrypt(secretKey, r.private_key)])),
    ...(rsa ? { rsaSelector: rsa.selector } : {}),
  };
}

/** Whether a store's set holds the same keys as `want` (the signing key's selector aside, which older Secrets lack). */
export function sameKeys(have: DkimKeySet | undefined, want: DkimKeySet): boolean {
  if (!have || have.signing !== want.signing) return false;
  const a = Object.entries(have.others).sort(([x], [y]) => x.localeCompare(y));
  const b = Object.entries(want.others).sort(([x], [y]) => x.localeCompare(y));
  return a.length === b.length && a.every(([k, v], i) => k === b[i]![0] && v === b[i]![1]);
}

/**
 * A selector for a new key: the stem and the date, e.g. mailplane-20261202 (with -2, -3, … when a
 * domain rotates twice a day), within the 63 characters of a DNS label.
 */
export function newSelector(stem: string, now: Date, taken: Set<string>): string {
  const date = now.toISOString().slice(0, 10).replace(/-/g, '');
  const base = `${stem.slice(0, 63 - 13).replace(/-+$/, '')}-${date}`;
  for (let n = 1; ; n++) {
    const selector = n === 1 ? base : `${base}-${n}`;
    if (!taken.has(selector)) return selector;
  }
}

/** Whether `selector` is `stem` or one newSelector made from it. */
export function derivesFrom(selector: string, stem: string): boolean {
  if (selector === stem) return true;
  const prefix = `${stem.slice(0, 63 - 13).replace(/-+$/, '')}-`;
  return selector.startsWith(prefix) && /^\d{8}(-\d+)?$/.test(selector.slice(prefix.length));
}

function stamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

async function addKey(
  run: Run,
  slot: 'primary' | 'rsa',
  state: 'next' | 'active',
  algorithm: DkimAlgorithm,
  selector: string,
  pem?: string,
): Promise<DkimKey> {
  const key = pem
    ? { privateKeyPem: pem, publicKeyDns: dkimPublicKey(pem).publicKeyDns }
    : generateDkimKey(algorithm);
  const row = await run.db
    .insertInto('dkim_keys')
    .values({
      domain_id: run.primary.id,
      slot,
      state,
      selector,
      algorithm,
      private_key: encrypt(run.secretKey, key.privateKeyPem),
      public_key: key.publicKeyDns,
      ...(state === 'active' ? { activated_at: run.now } : {}),
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await reload(run);
  return row;
}

/**
 * The switch, in one transaction: the row signs with `next` from now on, and its old key is kept
 * as retiring until `retireAt`. Guarded by the old selector, so that two reconciles racing switch once.
 */
async function switchPrimary(
  db: Db,
  primary: PrimaryKey,
  next: DkimKey,
  now: Date,
  retireAt: Date,
): Promise<PrimaryKey> {
  return db.transaction().execute(async (trx) => {
    const switched = await trx
      .updateTable('domains')
      .set({
        selector: next.selector,
        dkim_algorithm: next.algorithm,
        dkim_public_key: next.public_key,
        dkim_private_key: next.private_key,
        dkim_activated_at: now,
        updated_at: sql<Date>`now()`,
      })
      .where('id', '=', primary.id)
      .where('selector', '=', primary.selector)
      .returning([
        'id',
        'name',
        'selector',
        'dkim_algorithm',
        'dkim_public_key',
        'dkim_private_key',
        'dkim_activated_at',
      ])
      .executeTakeFirst();
    if (!switched) throw new Error(`the key of ${primary.name} changed while it was being switched`);
    await trx.deleteFrom('dkim_keys').where('id', '=', next.id).execute();
    await trx
      .insertInto('dkim_keys')
      .values({
        domain_id: primary.id,
        slot: 'primary',
        state: 'retiring',
        selector: primary.selector,
        algorithm: primary.dkim_algorithm,
        private_key: primary.dkim_private_key,
        public_key: primary.dkim_public_key,
        activated_at: primary.dkim_activated_at,
        retire_at: retireAt,
      })
      .execute();
    return switched as PrimaryKey;
  });
}
