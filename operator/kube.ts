// The operator's few Kubernetes calls, on @kubernetes/client-node: server-side apply of the status
// and finalizer it owns, the Secrets it keeps keys in, Events, and the leader Lease. Every write
// is counted, so that "an unchanged object costs no write" can be seen on /metrics.

import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1Lease,
  type V1Secret,
} from '@kubernetes/client-node';
import type { Counter } from 'prom-client';
import { API_GROUP } from '../lib/resources.js';

export const API_VERSION_NAME = 'v1alpha1';
/** The field manager of everything the operator applies; `kubectl get --show-managed-fields` shows it. */
export const FIELD_MANAGER = 'mailplane-operator';

export interface ObjectRef {
  kind: string;
  plural: string;
  namespace: string;
  name: string;
}

/** A custom object as the informer caches it. */
export interface CustomObject<
  Spec = Record<string, unknown>,
  Status = Record<string, unknown>,
> extends KubernetesObject {
  metadata: NonNullable<KubernetesObject['metadata']> & { name: string; namespace: string };
  spec: Spec;
  status?: Status;
}

const applyOptions = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
const mergeOptions = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/**
 * A call to the API server that failed, said as what was being done and what the server
 * answered ("could not write Secret apps/acme-api-key-backend: secrets ... is forbidden: ..."),
 * not as the raw Status JSON. `code` is the HTTP status (0: no answer, e.g. a refused connection)
 * and `reason` the Status reason (Forbidden, NotFound, Conflict), for callers to branch on.
 */
export class KubeError extends Error {
  readonly code: number;
  readonly reason: string | undefined;
  constructor(action: string, err: unknown) {
    const { code, reason, message } = answerOf(err);
    super(`could not ${action}: ${message}`, { cause: err });
    this.name = 'KubeError';
    this.code = code;
    this.reason = reason;
  }
}

/** What the API server said, out of an ApiException's Status body (a string or parsed JSON). */
function answerOf(err: unknown): { code: number; reason?: string; message: string } {
  if (!(err instanceof ApiException)) {
    return { code: 0, message: err instanceof Error ? err.message : String(err) };
  }
  let body: unknown = err.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      // not JSON: a proxy's page, say
    }
  }
  const status = (typeof body === 'object' && body !== null ? body : {}) as {
    message?: unknown;
    reason?: unknown;
  };
  const text =
    typeof status.message === 'string' && status.message
      ? status.message
      : typeof body === 'string' && body
        ? body.slice(0, 200)
        : `HTTP ${err.code}`;
  return {
    code: err.code,
    ...(typeof status.reason === 'string' ? { reason: status.reason } : {}),
    message: text,
  };
}

/** Runs one API call, turning its failure into a KubeError that says what was being done. */
async function attempt<T>(action: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw err instanceof KubeError ? err : new KubeError(action, err);
  }
}

/** Whether an error from the API is the HTTP status `code` (404 not found, 409 conflict, ...). */
export function isStatus(err: unknown, code: number): boolean {
  return (err instanceof ApiException || err instanceof KubeError) && err.code === code;
}

/** The label every Secret the operator writes carries, and its Secret watch selects on. */
export const MANAGED_SECRETS_SELECTOR = 'app.kubernetes.io/managed-by=mailplane';

export class Kube {
  readonly custom: CustomObjectsApi;
  readonly core: CoreV1Api;
  readonly coordination: CoordinationV1Api;

  constructor(
    readonly config: KubeConfig,
    private readonly writes?: Counter<'resource' | 'verb'>,
  ) {
    this.custom = config.makeApiClient(CustomObjectsApi);
    this.core = config.makeApiClient(CoreV1Api);
    this.coordination = config.makeApiClient(CoordinationV1Api);
  }

  private wrote(resource: string, verb: string): void {
    this.writes?.inc({ resource, verb });
  }

  /** Lists a kind in every namespace (the informers' list call). */
  listAll(plural: string) {
    return this.custom.listClusterCustomObject({ group: API_GROUP, version: API_VERSION_NAME, plural });
  }

  /** Lists the Secrets the operator wrote, in one namespace or (undefined) all. */
  listManagedSecrets(namespace: string | undefined) {
    const labelSelector = MANAGED_SECRETS_SELECTOR;
    return namespace === undefined
      ? this.core.listSecretForAllNamespaces({ labelSelector })
      : this.core.listNamespacedSecret({ namespace, labelSelector });
  }

  /** Server-side applies the status subresource; fields the operator stops setting are removed. */
  async applyStatus(ref: ObjectRef, status: Record<string, unknown>): Promise<void> {
    this.wrote(`${ref.plural}/status`, 'apply');
    await attempt(`write the status of ${ref.kind} ${ref.namespace}/${ref.name}`, () =>
      this.custom.patchNamespacedCustomObjectStatus(
        {
          group: API_GROUP,
          version: API_VERSION_NAME,
          namespace: ref.namespace,
          plural: ref.plural,
          name: ref.name,
          body: this.applyBody(ref, { status }),
          fieldManager: FIELD_MANAGER,
          force: true,
        },
        applyOptions,
      ),
    );
  }

  /** Server-side applies the operator's own finalizer on, or off, the object. */
  async applyFinalizer(ref: ObjectRef, finalizer: string, present: boolean): Promise<void> {
    this.wrote(ref.plural, 'apply');
    const action = `${present ? 'add' : 'remove'} the finalizer of ${ref.kind} ${ref.namespace}/${ref.name}`;
    try {
      await attempt(action, () =>
        this.custom.patchNamespacedCustomObject(
          {
            group: API_GROUP,
            version: API_VERSION_NAME,
            namespace: ref.namespace,
            plural: ref.plural,
            name: ref.name,
            body: {
              ...this.applyBody(ref, {}),
              metadata: { ...this.meta(ref), finalizers: present ? [finalizer] : [] },
            },
            fieldManager: FIELD_MANAGER,
            force: true,
          },
          applyOptions,
        ),
      );
    } catch (err) {
      // Gone already: the finalizer was the last thing holding it.
      if (!present && isStatus(err, 404)) return;
      throw err;
    }
  }

  async readSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
    try {
      return await attempt(`read Secret ${namespace}/${name}`, () =>
        this.core.readNamespacedSecret({ namespace, name }),
      );
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /** Server-side applies a whole Secret the operator owns. */
  async applySecret(secret: V1Secret & { metadata: { name: string; namespace: string } }): Promise<void> {
    this.wrote('secrets', 'apply');
    const { namespace, name } = secret.metadata;
    await attempt(`write Secret ${namespace}/${name}`, () =>
      this.core.patchNamespacedSecret(
        {
          namespace,
          name,
          body: { apiVersion: 'v1', kind: 'Secret', ...secret },
          fieldManager: FIELD_MANAGER,
          force: true,
        },
        applyOptions,
      ),
    );
  }

  /** Merges `data` into an existing Secret, leaving its other keys alone. */
  async patchSecretData(namespace: string, name: string, data: Record<string, string>): Promise<void> {
    this.wrote('secrets', 'patch');
    await attempt(`update Secret ${namespace}/${name}`, () =>
      this.core.patchNamespacedSecret({ namespace, name, body: { data } }, mergeOptions),
    );
  }

  /** Deletes a Secret; one that is already gone is fine. */
  async deleteSecret(namespace: string, name: string): Promise<void> {
    this.wrote('secrets', 'delete');
    try {
      await attempt(`delete Secret ${namespace}/${name}`, () =>
        this.core.deleteNamespacedSecret({ namespace, name }),
      );
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
  }

  /** Records an Event on an object, shown by `kubectl describe`. */
  async event(
    object: CustomObject,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
    instance: string,
  ): Promise<void> {
    this.wrote('events', 'create');
    const now = new Date();
    await this.core.createNamespacedEvent({
      namespace: object.metadata.namespace,
      body: {
        metadata: { generateName: `${object.metadata.name}.`, namespace: object.metadata.namespace },
        involvedObject: {
          apiVersion: object.apiVersion,
          kind: object.kind,
          name: object.metadata.name,
          namespace: object.metadata.namespace,
          uid: object.metadata.uid,
          resourceVersion: object.metadata.resourceVersion,
        },
        type,
        reason,
        // The API server refuses messages over 1 KiB.
        message: message.length > 1024 ? `${message.slice(0, 1021)}...` : message,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
        source: { component: FIELD_MANAGER },
        reportingComponent: `${API_GROUP}/operator`,
        reportingInstance: instance,
      },
    });
  }

  async readLease(namespace: string, name: string): Promise<V1Lease | undefined> {
    try {
      return await this.coordination.readNamespacedLease({ namespace, name });
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /** Creates the Lease, or replaces it if `lease` carries the resourceVersion last read (409 if not). */
  async writeLease(lease: V1Lease & { metadata: { name: string; namespace: string } }): Promise<V1Lease> {
    this.wrote('leases', lease.metadata.resourceVersion ? 'update' : 'create');
    const { namespace, name } = lease.metadata;
    return lease.metadata.resourceVersion
      ? this.coordination.replaceNamespacedLease({ namespace, name, body: lease })
      : this.coordination.createNamespacedLease({ namespace, body: lease });
  }

  private meta(ref: ObjectRef) {
    return { name: ref.name, namespace: ref.namespace };
  }

  private applyBody(ref: ObjectRef, rest: Record<string, unknown>) {
    return {
      apiVersion: `${API_GROUP}/${API_VERSION_NAME}`,
      kind: ref.kind,
      metadata: this.meta(ref),
      ...rest,
    };
  }
}
