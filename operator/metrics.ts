// The operator's Prometheus metrics: reconciles, errors and durations per kind, writes to the
// Kubernetes API, and whether this replica leads; beside them, Node's process metrics.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface OperatorMetrics {
  registry: Registry;
  reconciles: Counter<'kind' | 'result'>;
  errors: Counter<'kind'>;
  duration: Histogram<'kind'>;
  kubeWrites: Counter<'resource' | 'verb'>;
  leader: Gauge<never>;
}

export function createOperatorMetrics(options: { defaults?: boolean } = {}): OperatorMetrics {
  const registry = new Registry();
  // Under their standard names, as in lib/metrics.ts: what stock Node.js dashboards query.
  if (options.defaults) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    reconciles: new Counter({
      name: 'mailplane_operator_reconciles_total',
      help: 'Reconciles that finished, by kind and result: changed, unchanged, deleted.',
      labelNames: ['kind', 'result'],
      registers,
    }),
    errors: new Counter({
      name: 'mailplane_operator_reconcile_errors_total',
      help: 'Reconciles that failed and were queued again with backoff, by kind.',
      labelNames: ['kind'],
      registers,
    }),
    duration: new Histogram({
      name: 'mailplane_operator_reconcile_duration_seconds',
      help: 'Time one reconcile takes, by kind.',
      labelNames: ['kind'],
      // Most reconciles are a few queries; a DKIM key generation or DNS lookup takes longer.
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    kubeWrites: new Counter({
      name: 'mailplane_operator_kube_writes_total',
      help: 'Writes to the Kubernetes API, by resource and verb.',
      labelNames: ['resource', 'verb'],
      registers,
    }),
    leader: new Gauge({
      name: 'mailplane_operator_leader',
      help: '1 while this replica holds the leader Lease.',
      registers,
    }),
  };
}
