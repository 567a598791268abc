// Leader election on a coordination.k8s.io Lease, as client-go does it: the holder renews every
// retry period; a candidate takes the Lease only once it has seen the same record unchanged for a
// whole lease duration (measured on its own clock, so clocks need not agree); every write carries
// the resourceVersion it read, so two candidates can never both win the same term.
//
// A standby first sees a renewal at most one retry period after it was made, and tries again the
// moment the lease it saw expires rather than at its next tick: it takes over at most a lease
// duration plus a retry period after the leader's last renewal (17 s with the defaults).
//
// RBAC (in the operator's own namespace):
//   coordination.k8s.io   leases                           create
//   coordination.k8s.io   leases (the Lease of its name)   get update

import { V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../lib/log.js';
import { isStatus, type Kube } from './kube.js';

export interface LeaderElectionOptions {
  kube: Kube;
  namespace: string;
  name: string;
  /** Unique per process: pod name plus a random suffix. */
  identity: string;
  /** How long a Lease holds without renewal. 15 s, as client-go. */
  leaseDurationMs: number;
  /** The holder gives up leading if it cannot renew for this long; less than the lease duration. */
  renewDeadlineMs: number;
  /** Pause between attempts to acquire or renew. */
  retryPeriodMs: number;
  log: Logger;
  onStartedLeading: () => void;
  /** Called once if leadership is lost (renewal failed past the deadline); the process should exit. */
  onStoppedLeading: () => void;
}

export interface LeaderElection {
  isLeader(): boolean;
  /** Stops competing; a leader releases the Lease so that another replica takes over at once. */
  stop(): Promise<void>;
}

/**
 * Starts competing for the Lease.
 *
 *   const election = startLeaderElection({ kube, namespace, name: 'mailplane-operator', ... });
 */
export function startLeaderElection(options: LeaderElectionOptions): LeaderElection {
  const { kube, namespace, name, identity, log } = options;
  let leading = false;
  let stopped = false;
  let lastRenew = 0;
  let observed: { holder: string; renew: string; at: number } | undefined;
  let current: V1Lease | undefined;
  let timer: NodeJS.Timeout | undefined;
  let attempt: Promise<void> = Promise.resolve();
  /** When the Lease another holds expires, as this candidate measures it; undefined if none does. */
  let expiresAt: number | undefined;
  const leaseSeconds = Math.max(1, Math.round(options.leaseDurationMs / 1000));

  const tryAcquireOrRenew = async (): Promise<boolean> => {
    const now = Date.now();
    const lease = await kube.readLease(namespace, name);
    const spec = lease?.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const renew = spec.renewTime ? new Date(spec.renewTime).toISOString() : '';
    if (!observed || observed.holder !== holder || observed.renew !== renew) {
      observed = { holder, renew, at: now };
    }
    const expiry = observed.at + (spec.leaseDurationSeconds ?? leaseSeconds) * 1000;
    const heldByOther = holder !== '' && holder !== identity && now < expiry;
    expiresAt = heldByOther ? expiry : undefined;
    if (heldByOther) return false;

    const taking = holder !== identity;
    const stamp = new V1MicroTime(now);
    const body: V1Lease & { metadata: { name: string; namespace: string } } = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name,
        namespace,
        ...(lease?.metadata?.resourceVersion ? { resourceVersion: lease.metadata.resourceVersion } : {}),
      },
      spec: {
        holderIdentity: identity,
        leaseDurationSeconds: leaseSeconds,
        acquireTime: taking ? stamp : (spec.acquireTime ?? stamp),
        renewTime: stamp,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (taking && lease ? 1 : 0),
      },
    };
    try {
      current = await kube.writeLease(body);
    } catch (err) {
      // Another candidate wrote first: it won this round.
      if (isStatus(err, 409)) return false;
      throw err;
    }
    observed = { holder: identity, renew: stamp.toISOString(), at: now };
    return true;
  };

  const loop = async () => {
    if (stopped) return;
    let ok = false;
    try {
      ok = await tryAcquireOrRenew();
    } catch (err) {
      log.warn('lease update failed', { lease: `${namespace}/${name}`, error: (err as Error).message });
    }
    if (stopped) return;
    const now = Date.now();
    if (ok) {
      lastRenew = now;
      if (!leading) {
        leading = true;
        log.info('became leader', { lease: `${namespace}/${name}`, identity });
        options.onStartedLeading();
      }
    } else if (leading && now - lastRenew > options.renewDeadlineMs) {
      leading = false;
      stopped = true;
      log.error('lost leadership: could not renew the lease in time', { lease: `${namespace}/${name}` });
      options.onStoppedLeading();
      return;
    }
    // A few milliseconds past the expiry, so that the next attempt does not come a hair early.
    const untilExpiry = expiresAt === undefined ? Infinity : expiresAt - Date.now() + 5;
    const delay = Math.max(0, Math.min(options.retryPeriodMs, untilExpiry));
    timer = setTimeout(() => (attempt = loop()), delay);
  };
  attempt = loop();

  return {
    isLeader: () => leading,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await attempt;
      if (!leading || !current?.metadata) return;
      leading = false;
      try {
        // Released as client-go releases: no holder, and a lease that expires at once.
        await kube.writeLease({
          ...current,
          metadata: { ...current.metadata, name, namespace },
          spec: { ...current.spec, holderIdentity: '', leaseDurationSeconds: 1 },
        });
        log.info('released the lease', { lease: `${namespace}/${name}` });
      } catch (err) {
        log.warn('could not release the lease', { error: (err as Error).message });
      }
    },
  };
}
