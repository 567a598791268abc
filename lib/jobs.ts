// Job names and payloads, declared once for whoever queues them (api) and whoever runs them
// (sender). Tasks still assert their payload: a job queued by an older version may carry an
// older shape.

export const SEND_MESSAGE = 'send_message';

/** Queued once per recipient row; everything else is read from Postgres when the job runs. */
export interface SendMessagePayload {
  messageId: string;
}

export function isSendMessagePayload(value: unknown): value is SendMessagePayload {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { messageId?: unknown }).messageId === 'string'
  );
}

/**
 * graphile-worker attempts of one send_message job. The task settles every delivery outcome itself
 * (deferrals are new jobs on Mailplane's schedule), so these retries only cover what it cannot
 * settle, such as the database going away mid-job; graphile-worker's e^n-second backoff makes 10
 * attempts span about three hours of such trouble.
 */
export const SEND_MESSAGE_MAX_ATTEMPTS = 10;

/**
 * Queued once per broadcast sent (by the api, with the broadcast's change, under the job key
 * `broadcast:<id>`, at its scheduled time): creates one email per contact of its segment, a chunk at
 * a time (sender/broadcast-task.ts).
 */
export const SEND_BROADCAST = 'send_broadcast';

export interface SendBroadcastPayload {
  broadcastId: string;
}

export function isSendBroadcastPayload(value: unknown): value is SendBroadcastPayload {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { broadcastId?: unknown }).broadcastId === 'string'
  );
}

/**
 * graphile-worker attempts of one send_broadcast job: each attempt resumes from the last chunk that
 * committed, so retries only cover the database going away mid-fan-out, as for send_message.
 */
export const SEND_BROADCAST_MAX_ATTEMPTS = 10;

/**
 * Cron job: gives a send_broadcast job again to each broadcast that should be going out but has
 * none (lib/db/broadcasts.ts requeueStrandedBroadcasts). Its payload is graphile-worker's cron
 * payload, which it does not read.
 */
export const REQUEUE_BROADCASTS = 'requeue_broadcasts';

/** The job key of a broadcast's fan-out: one job per broadcast, which cancel and delete remove. */
export const broadcastJobKey = (broadcastId: string): string => `broadcast:${broadcastId}`;

/**
 * Hourly cron job: deletes Idempotency-Key records past their 24 hours. Its payload is
 * graphile-worker's cron payload (`_cron`), which it does not read.
 */
export const PURGE_IDEMPOTENCY_KEYS = 'purge_idempotency_keys';

// Typed addJob('send_message', …) for whoever queues it.
declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace -- graphile-worker's task map is a global namespace
  namespace GraphileWorker {
    interface Tasks {
      send_message: SendMessagePayload;
      send_broadcast: SendBroadcastPayload;
      requeue_broadcasts: Record<string, unknown>;
      purge_idempotency_keys: Record<string, unknown>;
    }
  }
}
