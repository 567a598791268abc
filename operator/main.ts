// `mailplane operator`: config → database → migrate → Kubernetes client, reconcilers, controller,
// leader election and the HTTP endpoints a kubelet and Prometheus read → shutdown. startOperator
// is what tests start.

import { KubeConfig } from '@kubernetes/client-node';
import type { Config } from '../lib/config.js';
import type { Db } from '../lib/db/index.js';
import type { Logger } from '../lib/log.js';
import { startProbeServer } from '../lib/probe-server.js';
import { createResolver } from '../lib/resolver.js';
import { openRuntime, templateRenderer } from '../lib/runtime.js';
import { onShutdown } from '../lib/shutdown.js';
import type { Renderer } from '../lib/render/sandbox.js';
import { readOperatorConfig, type OperatorConfig } from './config.js';
import { startController } from './controller.js';
import { watchDatabase } from './database-health.js';
import { Kube } from './kube.js';
import { startLeaderElection } from './leader-election.js';
import { createOperatorMetrics, type OperatorMetrics } from './metrics.js';
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
  const resolver = createResolver(config.dnsServers);

  // Back from an outage, every object is reconciled at once, not at the next resync.
  const database = watchDatabase({ db: deps.db, log, onRecovered: () => controller.requeueAll() });
  const controller = startController({
    kube,
    log,
    metrics,
    resyncMs: oc.resyncMs,
    instance: oc.identity,
    secretNamespaces: oc.secretNamespaces,
    onDatabaseUnavailable: (err) => database.unavailable(err),
    reconcilers: [
      tenantReconciler({
        db: deps.db,
        kube,
        secretKey: config.secretKey,
        webhooksAllowPrivate: config.webhooksAllowPrivate,
      }),
      domainReconciler({
        db: deps.db,
        kube,
        secretKey: config.secretKey,
        resolver,
        dnsRecheckMs: oc.dnsRecheckMs,
        inboundHost: config.inboundHost,
        dns: config.dns,
        trackingTarget: config.publicUrl ? new URL(config.publicUrl).hostname : undefined,
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

  // Ready once the caches are warm and Postgres answers, leader or not: a standby is ready to
  // take over. Without Postgres no reconcile can finish, and /readyz says so.
  const probes = await startProbeServer({
    port: config.port,
    registry: metrics.registry,
    readiness: () => (controller.synced() ? database.problem() : 'caches not synced'),
  });
  const url = probes.url;
  log.info('operator started', { url, identity: oc.identity, lease: `${oc.leaseNamespace}/${oc.leaseName}` });

  return {
    url,
    isLeader: () => election.isLeader(),
    async stop() {
      // Finish what runs, then hand the Lease over so a standby need not wait for it to expire.
      await controller.stop();
      database.close();
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

export async function main(env: Record<string, string | undefined>): Promise<void> {
  const operatorConfig = readOperatorConfig(env);
  const { config, log, database } = await openRuntime('operator', env);
  const renderer = templateRenderer(config);
  const operator = await startOperator({
    config,
    operatorConfig,
    db: database.db,
    renderer,
    log,
    metrics: createOperatorMetrics({ defaults: true }),
    // Another replica may already be writing: stop at once and start again as a standby.
    onLostLeadership: () => process.exit(1),
  });
  onShutdown(log, async () => {
    await operator.stop();
    renderer.dispose();
    await database.close();
  });
}
