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

/** Whether an error from the API is the HTTP status `code` (404 not found, 409 conflict, ...). */
export function isStatus(err: unknown, code: number): boolean {
  return err instanceof ApiException && err.code === code;
}

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

  /** Server-side applies the status subresource; fields the operator stops setting are removed. */
  async applyStatus(ref: ObjectRef, status: Record<string, unknown>): Promise<void> {
    this.wrote(`${ref.plural}/status`, 'apply');
    await this.custom.patchNamespacedCustomObjectStatus(
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
    );
  }

  /** Server-side applies the operator's own finalizer on, or off, the object. */
  async applyFinalizer(ref: ObjectRef, finalizer: string, present: boolean): Promise<void> {
    this.wrote(ref.plural, 'apply');
    try {
      await this.custom.patchNamespacedCustomObject(
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
      );
    } catch (err) {
      // Gone already: the finalizer was the last thing holding it.
      if (!present && isStatus(err, 404)) return;
      throw err;
    }
  }

  async readSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
    try {
      return await this.core.readNamespacedSecret({ namespace, name });
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /** Server-side applies a whole Secret the operator owns. */
  async applySecret(secret: V1Secret & { metadata: { name: string; namespace: string } }): Promise<void> {
    this.wrote('secrets', 'apply');
    await this.core.patchNamespacedSecret(
      {
        namespace: secret.metadata.namespace,
        name: secret.metadata.name,
        body: { apiVersion: 'v1', kind: 'Secret', ...secret },
        fieldManager: FIELD_MANAGER,
        force: true,
      },
      applyOptions,
    );
  }

  /** Merges `data` into an existing Secret, leaving its other keys alone. */
  async patchSecretData(namespace: string, name: string, data: Record<string, string>): Promise<void> {
    this.wrote('secrets', 'patch');
    await this.core.patchNamespacedSecret({ namespace, name, body: { data } }, mergeOptions);
  }

  /** Deletes a Secret; one that is already gone is fine. */
  async deleteSecret(namespace: string, name: string): Promise<void> {
    this.wrote('secrets', 'delete');
    try {
      await this.core.deleteNamespacedSecret({ namespace, name });
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
