// Prometheus metrics: one registry per process, every name of ours prefixed `mailplane_`. Created
// by main.ts and passed down, so that tests read the counters of the app they started.

import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  /** Messages (recipients) accepted by the api, by tenant. */
  accepted: Counter<'tenant'>;
  /** Delivery outcomes in the sender: delivered, deferred, bounced, failed, suppressed. */
  outcomes: Counter<'outcome'>;
  /** Seconds from acceptance to the final SMTP reply of a delivered message. */
  sendLatency: Histogram<never>;
  /** Jobs a sender took over from senders that stopped beating (sender/heartbeat.ts). */
  recoveredJobs: Counter<never>;
  /**
   * Webhook attempts by outcome: `delivered` (2xx), `refused` (another status), `gone` (410, the
   * endpoint disabled), `timeout`, `network`, `blocked` (a private address, a URL not allowed),
   * `paused` (not sent: the endpoint timed out lately), `abandoned` (the endpoint disabled before
   * the attempt).
   */
  webhookAttempts: Counter<'outcome'>;
  /** Seconds from a webhook's request to its receiver's answer, for attempts that got one. */
  webhookLatency: Histogram<never>;
  /** Webhook deliveries whose lease was ended because the sender holding them stopped beating. */
  recoveredWebhooks: Counter<never>;
  /** Seconds the api spends answering, by route template (`/v1/emails/:id`, or `unmatched`) and status. */
  httpDuration: Histogram<'route' | 'status'>;
  /**
   * Direct delivery's SMTP sessions that negotiated TLS, by destination domain and policy type
   * (`sts`, `no-policy-found`), as TLS-RPT (RFC 8460) counts them; sender/tls-report.ts bounds the
   * domains.
   */
  tlsSessions: Counter<'domain' | 'policy_type'>;
  /** Sessions and policy fetches that failed, by domain, policy type and RFC 8460 result type. */
  tlsFailures: Counter<'domain' | 'policy_type' | 'result_type'>;
  /** Opens and clicks the api classified (`opened`, `clicked`), a machine's or a person's (`true`, `false`). */
  trackingEvents: Counter<'type' | 'machine'>;
  /** Opens and clicks not recorded: more waiting than the api holds, or a write that failed. */
  trackingLost: Counter<'reason'>;
  /** Opens and clicks not stored because their message had its hour's worth (MAILPLANE_TRACKING_EVENTS_PER_HOUR). */
  trackingCapped: Counter<'type'>;
  /**
   * Clicks whose burst was judged on what this api replica saw alone, the other replicas' clicks
   * out of reach: `timeout` (Postgres slow), `error` (Postgres refused or down), `busy` (lookups
   * already waiting on it).
   */
  trackingBurstLocal: Counter<'reason'>;
}

/**
 * Creates a process's registry and the metrics every component records into.
 *
 *   const metrics = createMetrics({ defaults: true });
 *   metrics.accepted.inc({ tenant: 'acme' });
 */
export function createMetrics(options: { defaults?: boolean } = {}): Metrics {
  const registry = new Registry();
  // Node's process metrics keep their standard names (process_cpu_seconds_total,
  // nodejs_heap_size_used_bytes, …): those are what stock Node.js dashboards and alerts query.
  if (options.defaults) collectDefaultMetrics({ register: registry });
  return {
    registry,
    accepted: new Counter({
      name: 'mailplane_messages_accepted_total',
      help: 'Messages (one per recipient) accepted and queued by the api.',
      labelNames: ['tenant'],
      registers: [registry],
    }),
    outcomes: new Counter({
      name: 'mailplane_messages_total',
      help: 'Delivery attempts by outcome: delivered, deferred, bounced, failed, suppressed.',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    sendLatency: new Histogram({
      name: 'mailplane_send_latency_seconds',
      help: 'Seconds from acceptance to delivery of a message.',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
      registers: [registry],
    }),
    recoveredJobs: new Counter({
      name: 'mailplane_sender_recovered_jobs_total',
      help: 'Jobs taken over from sender processes that stopped beating (crashed or cut off).',
      registers: [registry],
    }),
    webhookAttempts: new Counter({
      name: 'mailplane_webhook_attempts_total',
      help: 'Webhook attempts by outcome: delivered, refused, gone (410), timeout, network, blocked (a private address or a URL not allowed), paused (not sent: the endpoint timed out lately), abandoned (not sent: the endpoint disabled, or gone as the event was written).',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    webhookLatency: new Histogram({
      name: 'mailplane_webhook_latency_seconds',
      help: 'Seconds from a webhook request to the answer of its receiver.',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    recoveredWebhooks: new Counter({
      name: 'mailplane_webhook_recovered_leases_total',
      help: 'Webhook deliveries taken over from sender processes that stopped beating.',
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'mailplane_http_request_duration_seconds',
      help: 'Seconds the api spends on a request, by route template (or unmatched) and status.',
      labelNames: ['route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    tlsSessions: new Counter({
      name: 'mailplane_tls_sessions_total',
      help: 'Direct-delivery SMTP sessions that negotiated TLS, by destination domain and policy type.',
      labelNames: ['domain', 'policy_type'],
      registers: [registry],
    }),
    tlsFailures: new Counter({
      name: 'mailplane_tls_failures_total',
      help: 'Direct-delivery TLS failures by destination domain, policy type and RFC 8460 result type.',
      labelNames: ['domain', 'policy_type', 'result_type'],
      registers: [registry],
    }),
    trackingEvents: new Counter({
      name: 'mailplane_tracking_events_total',
      help: 'Opens and clicks classified by the api, by event type and whether a machine made them.',
      labelNames: ['type', 'machine'],
      registers: [registry],
    }),
    trackingLost: new Counter({
      name: 'mailplane_tracking_lost_total',
      help: 'Opens and clicks not recorded, by reason: overflow (too many waiting) or write (the database refused).',
      labelNames: ['reason'],
      registers: [registry],
    }),
    trackingCapped: new Counter({
      name: 'mailplane_tracking_capped_total',
      help: 'Opens and clicks not stored because their message reached the hourly cap, by event type.',
      labelNames: ['type'],
      registers: [registry],
    }),
    trackingBurstLocal: new Counter({
      name: 'mailplane_tracking_burst_local_total',
      help: 'Clicks judged for a burst on what this api replica saw alone, by reason: timeout, error or busy.',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
}
