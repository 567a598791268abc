// Runs the reconcilers: an informer per kind feeds a keyed work queue; each key is reconciled by
// the script every kind shares (object gone → done; being deleted → finalize, or say what it
// waits for; somewhere the operator may not keep its Secrets → refuse before any finalizer;
// otherwise converge, then write status only if it changed). A reconcile that throws writes
// Ready=False ReconcileFailed with what failed, so status never goes on telling an older truth.
// Informers on the Secrets the operator wrote bring their owner back when one is deleted or
// edited. Informers run on every replica so that a new leader starts with a warm cache; only the
// leader's queues run.

import {
  makeInformer,
  type Informer,
  type KubernetesObject,
  type ObjectCache,
  type V1Secret,
} from '@kubernetes/client-node';
import { isDatabaseUnavailable } from '../lib/db/index.js';
import type { Logger } from '../lib/log.js';
import {
  failedConditions,
  findCondition,
  jsonEqual,
  setConditions,
  type Condition,
  type ConditionInput,
} from './conditions.js';
import { describeFailure } from './failure.js';
import { MANAGED_SECRETS_SELECTOR, isStatus, type CustomObject, type Kube, type ObjectRef } from './kube.js';
import type { OperatorMetrics } from './metrics.js';
import type { EventNote, ReconcileContext, Reconciler } from './reconcile-types.js';
import { LABEL_DOMAIN, LABEL_TENANT } from './secret-key-store.js';
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
  /** Namespaces where the operator may keep Secrets (its RBAC); undefined: every namespace. */
  secretNamespaces?: readonly string[];
  /** Told when a reconcile finds Postgres unreachable, so that readiness follows at once. */
  onDatabaseUnavailable?: (err: unknown) => void;
}

/** One list-and-watch, restarted with backoff when it fails. */
interface Watch<T extends KubernetesObject> {
  what: string;
  informer: Informer<T> & ObjectCache<T>;
  synced: boolean;
  /**
   * Errors the informer has reported. Its start() resolves even when the list failed (the
   * failure goes to the 'error' handlers instead), so a start is a sync only if none came during it.
   */
  errors: number;
  /** Delay before the next restart; doubles while starts fail, reset by a start that lists. */
  retryMs: number;
  log: Logger;
}

interface Kind {
  reconciler: Reconciler;
  watch: Watch<CustomObject>;
  queue: WorkQueue;
  /** What the last watch event showed of each object, to skip events that change only status. */
  seen: Map<string, string>;
  /** The last failure of each object whose reconcile is failing, so that each is one Event. */
  failing: Map<string, string>;
}

export interface Controller {
  /** Whether every informer has listed what it watches. */
  synced(): boolean;
  /** Starts the work queues, once every kind's cache has listed: called when this replica becomes leader. */
  lead(): void;
  /** Reconciles every object now, forgetting backoffs: Postgres is back. */
  requeueAll(): void;
  stop(): Promise<void>;
}

const keyOf = (o: { metadata?: { namespace?: string; name?: string } }) =>
  `${o.metadata?.namespace}/${o.metadata?.name}`;

/** What, besides status, makes an object worth reconciling again. */
function fingerprint(o: CustomObject): string {
  return JSON.stringify([
    o.metadata.generation,
    o.metadata.deletionTimestamp ?? null,
    o.metadata.finalizers ?? [],
  ]);
}

const tenantRefOf = (o: CustomObject) => (o.spec as { tenantRef?: { name?: string } }).tenantRef?.name;

/**
 * Starts the informers and returns the controller; nothing is reconciled before `lead()` and the
 * first lists of every kind's cache.
 *
 *   const controller = startController({ kube, reconcilers, log, metrics, resyncMs, instance });
 */
export function startController(options: ControllerOptions): Controller {
  const { kube, log, metrics } = options;
  const kinds = new Map<string, Kind>();
  const watches: Watch<KubernetesObject>[] = [];
  let leading = false;
  /** Whether the work queues run: leading, with every kind's cache synced. */
  let working = false;
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  const allowed = options.secretNamespaces ? new Set(options.secretNamespaces) : undefined;
  const maySecrets = (namespace: string) => !allowed || allowed.has(namespace);

  const context: ReconcileContext = {
    tenant: (namespace, name) => kinds.get('Tenant')?.watch.informer.get(name, namespace),
    dependents: (namespace, tenant) =>
      [...kinds.values()]
        .filter((k) => k.reconciler.kind !== 'Tenant')
        .flatMap((k) => k.watch.informer.list(namespace).filter((o) => tenantRefOf(o) === tenant)),
    maySecrets,
  };

  function startWatch<T extends KubernetesObject>(watch: Watch<T>): void {
    watch.informer.on('error', (err: unknown) => {
      watch.errors++;
      if (stopped) return;
      const retryMs = watch.retryMs;
      watch.log.warn('watch failed; restarting the informer', { error: describeFailure(err), retryMs });
      const timer = setTimeout(() => {
        timers.delete(timer);
        startInformer(watch);
      }, retryMs);
      timers.add(timer);
      watch.retryMs = Math.min(retryMs * 2, INFORMER_RETRY_MAX_MS);
    });
    watches.push(watch as unknown as Watch<KubernetesObject>);
    startInformer(watch);
  }

  function startInformer<T extends KubernetesObject>(watch: Watch<T>): void {
    if (stopped) return;
    const errorsBefore = watch.errors;
    watch.informer.start().then(
      () => {
        if (watch.errors !== errorsBefore) return; // the list failed; the 'error' handler retries
        watch.retryMs = INFORMER_RETRY_MS;
        if (!watch.synced) watch.log.info('cache synced', { objects: watch.informer.list().length });
        watch.synced = true;
        startWorkers();
      },
      // A failed list also reaches the 'error' handler, which schedules the retry.
      (err: unknown) => watch.log.debug('informer start failed', { error: describeFailure(err) }),
    );
  }

  for (const reconciler of options.reconcilers) {
    const clog = log.child({ controller: reconciler.kind });
    const informer = makeInformer<CustomObject>(
      kube.config,
      `/apis/mailplane.io/v1alpha1/${reconciler.plural}`,
      () => kube.listAll(reconciler.plural) as never,
    );
    const kind: Kind = {
      reconciler,
      watch: {
        what: reconciler.kind,
        informer,
        synced: false,
        errors: 0,
        retryMs: INFORMER_RETRY_MS,
        log: clog,
      },
      seen: new Map(),
      failing: new Map(),
      queue: new WorkQueue({
        concurrency: options.concurrency ?? 2,
        log: clog,
        handler: (key) => reconcileKey(kind, key, clog),
        onError: (key, err) => {
          // A conflict is another writer having been first: a requeue, not an error.
          if (isStatus(err, 409)) return;
          metrics.errors.inc({ kind: reconciler.kind });
          clog.error('reconcile failed', { key, error: describeFailure(err) });
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
      // A Tenant being deleted waits for its dependents: one going may let it go.
      const tenant = tenantRefOf(o);
      if (tenant) kinds.get('Tenant')?.queue.add(`${o.metadata.namespace}/${tenant}`);
    });
    startWatch(kind.watch);
  }

  // The Secrets the operator wrote, where it may keep them: a change brings their owner back.
  for (const namespace of allowed ? [...allowed] : [undefined]) {
    const path = namespace ? `/api/v1/namespaces/${namespace}/secrets` : '/api/v1/secrets';
    const informer = makeInformer<V1Secret>(
      kube.config,
      path,
      () => kube.listManagedSecrets(namespace) as never,
      // The watch selects as the list does: only what the operator wrote, not the namespace's all.
      MANAGED_SECRETS_SELECTOR,
    );
    const onSecret = (secret: V1Secret) => {
      const labels = secret.metadata?.labels ?? {};
      const ns = secret.metadata?.namespace;
      if (labels[LABEL_TENANT]) kinds.get('Tenant')?.queue.add(`${ns}/${labels[LABEL_TENANT]}`);
      if (labels[LABEL_DOMAIN]) kinds.get('SendingDomain')?.queue.add(`${ns}/${labels[LABEL_DOMAIN]}`);
    };
    for (const verb of ['add', 'update', 'delete'] as const) informer.on(verb, onSecret);
    startWatch({
      what: 'Secret',
      informer,
      synced: false,
      errors: 0,
      retryMs: INFORMER_RETRY_MS,
      log: log.child({ controller: 'Secret', ...(namespace ? { namespace } : {}) }),
    });
  }

  /** Domains and templates wait on their Tenant: look at them again when it changes. */
  function enqueueDependents(tenant: CustomObject): void {
    for (const kind of kinds.values()) {
      if (kind.reconciler.kind === 'Tenant') continue;
      for (const o of kind.watch.informer.list(tenant.metadata.namespace)) {
        if (tenantRefOf(o) === tenant.metadata.name) kind.queue.add(keyOf(o));
      }
    }
  }

  async function reconcileKey(kind: Kind, key: string, clog: Logger) {
    const [namespace, name] = key.split('/') as [string, string];
    const object = kind.watch.informer.get(name, namespace);
    if (!object) return;
    const { reconciler } = kind;
    const ref: ObjectRef = { kind: reconciler.kind, plural: reconciler.plural, namespace, name };
    const olog = clog.child({ namespace, name });
    const end = metrics.duration.startTimer({ kind: reconciler.kind });
    try {
      if (object.metadata.deletionTimestamp) {
        if (!object.metadata.finalizers?.includes(FINALIZER)) return;
        const result = await reconciler.finalize(object, context);
        if (!result.done) {
          await writeStatus(kind, object, ref, result.conditions, undefined, result.events ?? [], olog);
          return result.requeueAfterMs ? { requeueAfterMs: result.requeueAfterMs } : undefined;
        }
        for (const note of result.events ?? []) await recordEvent(object, note, olog);
        await kube.applyFinalizer(ref, FINALIZER, false);
        olog.info('cleaned up before deletion');
        metrics.reconciles.inc({ kind: reconciler.kind, result: 'deleted' });
        return;
      }
      if (reconciler.keepsSecrets && !maySecrets(namespace)) {
        // A finalizer here could never finish its work: refuse the object, and add none.
        const refusal: ConditionInput = {
          type: 'Ready',
          status: 'False',
          reason: 'NamespaceNotAllowed',
          message:
            `the operator may not keep Secrets in namespace ${namespace} (the chart's ` +
            `operator.secretNamespaces lists ${[...allowed!].join(', ') || 'none'}): add it there ` +
            'and upgrade the release; until then nothing is stored for this object',
        };
        await writeStatus(kind, object, ref, [refusal], {}, [], olog);
        return;
      }
      if (!object.metadata.finalizers?.includes(FINALIZER)) await kube.applyFinalizer(ref, FINALIZER, true);

      const result = await reconciler.reconcile(object, context);
      await writeStatus(kind, object, ref, result.conditions, result.status ?? {}, result.events ?? [], olog);
      kind.failing.delete(key);
      return result.requeueAfterMs ? { requeueAfterMs: result.requeueAfterMs } : undefined;
    } catch (err) {
      if (!isStatus(err, 409)) {
        if (isDatabaseUnavailable(err)) options.onDatabaseUnavailable?.(err);
        await writeFailure(kind, object, ref, describeFailure(err), olog).catch((failure: unknown) =>
          olog.warn('could not record the failure in status', { error: describeFailure(failure) }),
        );
      }
      throw err;
    } finally {
      end();
    }
  }

  /**
   * Writes status if it changed: `inputs` as the conditions, `rest` as the other fields
   * (undefined keeps the ones there). Then the Events: those given, and those of conditions
   * that just went wrong or became Ready.
   */
  async function writeStatus(
    kind: Kind,
    object: CustomObject,
    ref: ObjectRef,
    inputs: ConditionInput[],
    rest: Record<string, unknown> | undefined,
    events: EventNote[],
    olog: Logger,
  ): Promise<void> {
    const old = (object.status ?? {}) as { conditions?: Condition[] } & Record<string, unknown>;
    const generation = object.metadata.generation;
    const conditions = setConditions(old.conditions, generation, inputs);
    const status = { ...(rest ?? others(old)), observedGeneration: generation, conditions };
    const changed = !jsonEqual(status, object.status ?? {});
    if (changed) await kube.applyStatus(ref, status);
    for (const note of [...events, ...transitions(old.conditions, conditions)]) {
      await recordEvent(object, note, olog);
    }
    const ready = findCondition(conditions, 'Ready');
    if (changed) olog.info('reconciled', { ready: ready?.status, reason: ready?.reason });
    metrics.reconciles.inc({ kind: kind.reconciler.kind, result: changed ? 'changed' : 'unchanged' });
  }

  /** Ready=False ReconcileFailed for the generation tried, and one Warning Event per distinct failure. */
  async function writeFailure(
    kind: Kind,
    object: CustomObject,
    ref: ObjectRef,
    message: string,
    olog: Logger,
  ): Promise<void> {
    const old = (object.status ?? {}) as { conditions?: Condition[] } & Record<string, unknown>;
    const generation = object.metadata.generation;
    const conditions = failedConditions(old.conditions, generation, message);
    const status = { ...others(old), observedGeneration: generation, conditions };
    const key = keyOf(object);
    if (kind.failing.get(key) !== message) {
      kind.failing.set(key, message);
      await recordEvent(object, { type: 'Warning', reason: 'ReconcileFailed', message }, olog);
    }
    if (!jsonEqual(status, object.status ?? {})) await kube.applyStatus(ref, status);
  }

  async function recordEvent(object: CustomObject, note: EventNote, olog: Logger): Promise<void> {
    await kube
      .event(object, note.type, note.reason, note.message, options.instance)
      .catch((err: unknown) =>
        olog.warn('could not record an event', { reason: note.reason, error: describeFailure(err) }),
      );
  }

  const everything = (resetBackoff: boolean) => {
    for (const kind of kinds.values()) {
      for (const o of kind.watch.informer.list()) {
        if (resetBackoff) kind.queue.forget(keyOf(o));
        kind.queue.add(keyOf(o));
      }
    }
  };

  /**
   * Starts the work queues once this replica leads and the caches of every kind have listed, as
   * client-go's WaitForCacheSync: a reconcile before then would judge from half a cache (a
   * Template whose Tenant is not listed yet is not a Template without a Tenant; a Tenant being
   * deleted whose dependents are not listed yet is not one without dependents). The Secret caches
   * are not waited for: no reconcile reads them, they only bring an owner back when its Secret
   * changes, so a Secret list refused in one namespace stops that healing (and /readyz says so),
   * not every reconcile.
   */
  function startWorkers(): void {
    if (!leading || working || stopped) return;
    if (![...kinds.values()].every((k) => k.watch.synced)) return;
    working = true;
    // Whatever the caches hold now; later events add the rest.
    everything(false);
    for (const kind of kinds.values()) kind.queue.start();
  }

  const resync = setInterval(() => {
    if (working) everything(false);
  }, options.resyncMs);
  resync.unref();

  return {
    synced: () => watches.every((w) => w.synced),
    lead() {
      if (leading || stopped) return;
      leading = true;
      startWorkers();
    },
    requeueAll() {
      if (working && !stopped) everything(true);
    },
    async stop() {
      stopped = true;
      clearInterval(resync);
      for (const timer of timers) clearTimeout(timer);
      await Promise.all([...kinds.values()].map((k) => k.queue.stop()));
      await Promise.all(watches.map((w) => w.informer.stop()));
    },
  };
}

/** A status without the fields the controller writes itself. */
function others(status: Record<string, unknown>): Record<string, unknown> {
  const { conditions: _conditions, observedGeneration: _generation, ...rest } = status;
  return rest;
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
