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
      purge_idempotency_keys: Record<string, unknown>;
    }
  }
}
