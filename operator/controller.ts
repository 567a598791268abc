// Runs the reconcilers: an informer per kind feeds a keyed work queue; each key is reconciled by
// the script every kind shares (object gone → done; being deleted → finalize; otherwise converge,
// then write status only if it changed). Informers run on every replica so that a new leader
// starts with a warm cache; only the leader's queues run.

import { makeInformer, type Informer, type ObjectCache } from '@kubernetes/client-node';
import type { Logger } from '../lib/log.js';
import { findCondition, jsonEqual, setConditions, type Condition } from './conditions.js';
import { isStatus, type CustomObject, type Kube, type ObjectRef } from './kube.js';
import type { OperatorMetrics } from './metrics.js';
import type { EventNote, Reconciler } from './reconcile-types.js';
import { WorkQueue } from './work-queue.js';

/** Held on every object the operator has rows for, so that deleting it first removes them. */
export const FINALIZER = 'mailplane.io/cleanup';

/** Informer restart delays after a failed list or watch: 1 s doubling to 30 s. */
const INFORMER_RETRY_MS = 1_000;
const INFORMER_RETRY_MAX_MS = 30_000;

export interface ControllerOptions {
  kube: Kube;
  reconcilers: Reconciler[];
  log: Logger;
  metrics: OperatorMetrics;
  /** Every object is reconciled again this often, whatever the watch said. */
  resyncMs: number;
  /** Keys of one kind reconciled at once. */
  concurrency?: number;
  /** Names this process in Events. */
  instance: string;
}

interface Kind {
  reconciler: Reconciler;
  informer: Informer<CustomObject> & ObjectCache<CustomObject>;
  queue: WorkQueue;
  /** What the last watch event showed of each object, to skip events that change only status. */
  seen: Map<string, string>;
  /** The last error of each object whose reconcile is failing, so that it is reported once. */
  failing: Map<string, string>;
  synced: boolean;
  /**
   * Errors the informer has reported. Its start() resolves even when the list failed (the
   * failure goes to the 'error' handlers instead), so a start is a sync only if none came during it.
   */
  errors: number;
  /** Delay before the next restart; doubles while starts fail, reset by a start that lists. */
  retryMs: number;
}

export interface Controller {
  /** Resolves once every informer has listed its kind. */
  synced(): boolean;
  /** Starts the work queues: called when this replica becomes leader. */
  lead(): void;
  stop(): Promise<void>;
}

const keyOf = (o: CustomObject) => `${o.metadata.namespace}/${o.metadata.name}`;

/** What, besides status, makes an object worth reconciling again. */
function fingerprint(o: CustomObject): string {
  return JSON.stringify([
    o.metadata.generation,
    o.metadata.deletionTimestamp ?? null,
    o.metadata.finalizers ?? [],
  ]);
}

/**
 * Starts the informers and returns the controller; nothing is reconciled before `lead()`.
 *
 *   const controller = startController({ kube, reconcilers, log, metrics, resyncMs, instance });
 */
export function startController(options: ControllerOptions): Controller {
  const { kube, log, metrics } = options;
  const kinds = new Map<string, Kind>();
  let leading = false;
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();

  for (const reconciler of options.reconcilers) {
    const clog = log.child({ controller: reconciler.kind });
    const informer = makeInformer<CustomObject>(
      kube.config,
      `/apis/mailplane.io/v1alpha1/${reconciler.plural}`,
      () => kube.listAll(reconciler.plural) as never,
    );
    const kind: Kind = {
      reconciler,
      informer,
      seen: new Map(),
      failing: new Map(),
      synced: false,
      errors: 0,
      retryMs: INFORMER_RETRY_MS,
      queue: new WorkQueue({
        concurrency: options.concurrency ?? 2,
        log: clog,
        handler: (key) => reconcileKey(kind, key, clog),
        onError: (key, err) => {
          // A conflict is another writer having been first: a requeue, not an error.
          if (isStatus(err, 409)) return;
          metrics.errors.inc({ kind: reconciler.kind });
          const error = describe(err);
          clog.error('reconcile failed', { key, error });
          reportFailure(kind, key, error, clog);
        },
      }),
    };
    kinds.set(reconciler.kind, kind);

    const onChange = (o: CustomObject) => {
      const key = keyOf(o);
      const print = fingerprint(o);
      if (kind.seen.get(key) !== print) {
        kind.seen.set(key, print);
        kind.queue.add(key);
      }
      if (reconciler.kind === 'Tenant') enqueueDependents(o);
    };
    informer.on('add', onChange);
    informer.on('update', onChange);
    informer.on('delete', (o) => {
      kind.seen.delete(keyOf(o));
      kind.failing.delete(keyOf(o));
      if (reconciler.kind === 'Tenant') enqueueDependents(o);
    });
    informer.on('error', (err: unknown) => {
      kind.errors++;
      if (stopped) return;
      const retryMs = kind.retryMs;
      clog.warn('watch failed; restarting the informer', { error: describe(err), retryMs });
      const timer = setTimeout(() => {
        timers.delete(timer);
        startInformer(kind, clog);
      }, retryMs);
      timers.add(timer);
      kind.retryMs = Math.min(retryMs * 2, INFORMER_RETRY_MAX_MS);
    });
    startInformer(kind, clog);
  }

  function startInformer(kind: Kind, clog: Logger): void {
    if (stopped) return;
    const errorsBefore = kind.errors;
    kind.informer.start().then(
      () => {
        if (kind.errors !== errorsBefore) return; // the list failed; the 'error' handler retries
        kind.retryMs = INFORMER_RETRY_MS;
        if (!kind.synced) clog.info('cache synced', { objects: kind.informer.list().length });
        kind.synced = true;
      },
      // A failed list also reaches the 'error' handler, which schedules the retry.
      (err: unknown) => clog.debug('informer start failed', { error: describe(err) }),
    );
  }

  /** Domains and templates wait on their Tenant: look at them again when it changes. */
  function enqueueDependents(tenant: CustomObject): void {
    for (const kind of kinds.values()) {
      if (kind.reconciler.kind === 'Tenant') continue;
      for (const o of kind.informer.list(tenant.metadata.namespace)) {
        if ((o.spec as { tenantRef?: { name?: string } }).tenantRef?.name === tenant.metadata.name) {
          kind.queue.add(keyOf(o));
        }
      }
    }
  }

  /**
   * A reconcile that throws (a refusal by RBAC, Postgres out of reach) writes no condition, so
   * without this `kubectl describe` would show nothing and only the operator's log would say why.
   * Retries back off and fail the same way: each distinct error is one Warning Event.
   */
  function reportFailure(kind: Kind, key: string, error: string, clog: Logger): void {
    if (kind.failing.get(key) === error) return;
    kind.failing.set(key, error);
    const [namespace, name] = key.split('/') as [string, string];
    const object = kind.informer.get(name, namespace);
    if (!object) return;
    kube
      .event(object, 'Warning', 'ReconcileFailed', error, options.instance)
      .catch((err: unknown) =>
        clog.warn('could not record an event', { key, reason: 'ReconcileFailed', error: describe(err) }),
      );
  }

  async function reconcileKey(kind: Kind, key: string, clog: Logger) {
    const [namespace, name] = key.split('/') as [string, string];
    const object = kind.informer.get(name, namespace);
    if (!object) return;
    const { reconciler } = kind;
    const ref: ObjectRef = { kind: reconciler.kind, plural: reconciler.plural, namespace, name };
    const olog = clog.child({ namespace, name });
    const end = metrics.duration.startTimer({ kind: reconciler.kind });
    try {
      if (object.metadata.deletionTimestamp) {
        if (object.metadata.finalizers?.includes(FINALIZER)) {
          await reconciler.finalize(object);
          await kube.applyFinalizer(ref, FINALIZER, false);
          olog.info('cleaned up before deletion');
        }
        metrics.reconciles.inc({ kind: reconciler.kind, result: 'deleted' });
        return;
      }
      if (!object.metadata.finalizers?.includes(FINALIZER)) await kube.applyFinalizer(ref, FINALIZER, true);

      const result = await reconciler.reconcile(object);
      const old = (object.status ?? {}) as { conditions?: Condition[] };
      const generation = object.metadata.generation;
      const conditions = setConditions(old.conditions, generation, result.conditions);
      const status = { ...result.status, observedGeneration: generation, conditions };
      const changed = !jsonEqual(status, object.status ?? {});
      if (changed) await kube.applyStatus(ref, status);
      for (const note of [...(result.events ?? []), ...transitions(old.conditions, conditions)]) {
        await kube
          .event(object, note.type, note.reason, note.message, options.instance)
          .catch((err: unknown) =>
            olog.warn('could not record an event', { reason: note.reason, error: describe(err) }),
          );
      }
      kind.failing.delete(key);
      const ready = findCondition(conditions, 'Ready');
      if (changed) olog.info('reconciled', { ready: ready?.status, reason: ready?.reason });
      metrics.reconciles.inc({ kind: reconciler.kind, result: changed ? 'changed' : 'unchanged' });
      return result.requeueAfterMs ? { requeueAfterMs: result.requeueAfterMs } : undefined;
    } finally {
      end();
    }
  }

  const resync = setInterval(() => {
    if (!leading) return;
    for (const kind of kinds.values()) for (const o of kind.informer.list()) kind.queue.add(keyOf(o));
  }, options.resyncMs);
  resync.unref();

  return {
    synced: () => [...kinds.values()].every((k) => k.synced),
    lead() {
      if (leading || stopped) return;
      leading = true;
      for (const kind of kinds.values()) {
        // Whatever the cache holds now; later events add the rest.
        for (const o of kind.informer.list()) kind.queue.add(keyOf(o));
        kind.queue.start();
      }
    },
    async stop() {
      stopped = true;
      clearInterval(resync);
      for (const timer of timers) clearTimeout(timer);
      await Promise.all([...kinds.values()].map((k) => k.queue.stop()));
      await Promise.all([...kinds.values()].map((k) => k.informer.stop()));
    },
  };
}

/**
 * Events for conditions that just went wrong (a Warning with the condition's reason) and for an
 * object that just became Ready; an unchanged condition makes none, so a resync is silent.
 */
function transitions(before: Condition[] | undefined, after: Condition[]): EventNote[] {
  const notes: EventNote[] = [];
  const reasons = new Set<string>();
  for (const c of after) {
    const old = findCondition(before, c.type);
    if (old && old.status === c.status && old.reason === c.reason) continue;
    if (c.status === 'False' && !reasons.has(c.reason)) {
      reasons.add(c.reason);
      notes.push({ type: 'Warning', reason: c.reason, message: c.message });
    } else if (c.type === 'Ready' && c.status === 'True' && old?.status !== 'True') {
      notes.push({ type: 'Normal', reason: c.reason, message: c.message });
    }
  }
  return notes;
}

function describe(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && 'body' in err) {
    const body = (err as { body: unknown }).body;
    const message = typeof body === 'string' ? body : JSON.stringify(body);
    return `HTTP ${(err as { code: number }).code}: ${message.slice(0, 500)}`;
  }
  return err instanceof Error ? err.message : String(err);
}
