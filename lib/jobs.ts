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

