// Wires the operator: Kubernetes client, reconcilers, controller, leader election and the HTTP
// endpoints a kubelet and Prometheus read.

import { Resolver } from 'node:dns/promises';
import { KubeConfig } from '@kubernetes/client-node';
import type { Config } from '../lib/config.js';
import type { Db } from '../lib/db/index.js';
import type { Logger } from '../lib/log.js';
import { startProbeServer } from '../lib/probe-server.js';
import type { Renderer } from '../lib/render/sandbox.js';
import type { OperatorConfig } from './config.js';
import { startController } from './controller.js';
import { Kube } from './kube.js';
import { startLeaderElection } from './leader-election.js';
import type { OperatorMetrics } from './metrics.js';
import { domainReconciler } from './reconcilers/domain.js';
import { templateReconciler } from './reconcilers/template.js';
import { tenantReconciler } from './reconcilers/tenant.js';

export interface OperatorDeps {
  config: Readonly<Config>;
  operatorConfig: Readonly<OperatorConfig>;
  db: Db;
  renderer: Pick<Renderer, 'compile' | 'render'>;
  log: Logger;
  metrics: OperatorMetrics;
  /** In-cluster or $KUBECONFIG by default. */
  kubeConfig?: KubeConfig;
  /** Called when leadership is lost; `mailplane operator` exits so that it restarts clean. */
  onLostLeadership: () => void;
}

export interface RunningOperator {
  url: string;
  isLeader(): boolean;
  stop(): Promise<void>;
}

/**
 * Starts the operator and its HTTP endpoints on `config.port`.
 *
 *   const operator = await startOperator({ config, operatorConfig, db, renderer, log, metrics, onLostLeadership });
 */
export async function startOperator(deps: OperatorDeps): Promise<RunningOperator> {
  const { config, operatorConfig: oc, log, metrics } = deps;
  const kubeConfig = deps.kubeConfig ?? defaultKubeConfig();
  const kube = new Kube(kubeConfig, metrics.kubeWrites);
  const resolver = new Resolver({ timeout: 3000, tries: 2 });
  if (oc.dnsServers) resolver.setServers(oc.dnsServers);

  const controller = startController({
    kube,
    log,
    metrics,
    resyncMs: oc.resyncMs,
    instance: oc.identity,
    reconcilers: [
      tenantReconciler({ db: deps.db, kube }),
      domainReconciler({
        db: deps.db,
        kube,
        secretKey: config.secretKey,
        resolver,
        dnsRecheckMs: oc.dnsRecheckMs,
        inboundHost: config.inboundHost,
      }),
      templateReconciler({ db: deps.db, renderer: deps.renderer }),
    ],
  });
  const election = startLeaderElection({
    kube,
    namespace: oc.leaseNamespace,
    name: oc.leaseName,
    identity: oc.identity,
    leaseDurationMs: oc.leaseDurationMs,
    renewDeadlineMs: oc.renewDeadlineMs,
    retryPeriodMs: oc.retryPeriodMs,
    log,
    onStartedLeading: () => {
      metrics.leader.set(1);
      controller.lead();
    },
    onStoppedLeading: () => {
      metrics.leader.set(0);
      deps.onLostLeadership();
    },
  });

  // Ready once the caches are warm, leader or not: a standby is ready to take over.
  const probes = await startProbeServer({
    port: config.port,
    registry: metrics.registry,
    readiness: () => (controller.synced() ? undefined : 'caches not synced'),
  });
  const url = probes.url;
  log.info('operator started', { url, identity: oc.identity, lease: `${oc.leaseNamespace}/${oc.leaseName}` });

  return {
    url,
    isLeader: () => election.isLeader(),
    async stop() {
      // Finish what runs, then hand the Lease over so a standby need not wait for it to expire.
      await controller.stop();
      await election.stop();
      metrics.leader.set(0);
      await probes.close();
    },
  };
}

function defaultKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}
