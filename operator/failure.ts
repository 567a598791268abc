// A reconcile that threw, said in words for a condition and an Event: what was being done and
// what answered, never a raw Status JSON or a stack.

import { ApiException } from '@kubernetes/client-node';
import { isDatabaseUnavailable } from '../lib/db/index.js';
import { errorText } from './database-health.js';
import { KubeError } from './kube.js';

/** Long enough for a Status message and the action before it; conditions take 32 KiB, Events 1 KiB. */
const MAX_MESSAGE_CHARS = 900;

/**
 * The message of a Ready=False ReconcileFailed condition for `err`.
 *
 *   describeFailure(err)  // 'Postgres is unreachable: connect ECONNREFUSED 127.0.0.1:5432'
 */
export function describeFailure(err: unknown): string {
  return clip(words(err));
}

function words(err: unknown): string {
  if (err instanceof KubeError) return err.message;
  if (err instanceof ApiException) return new KubeError('talk to the API server', err).message;
  if (isDatabaseUnavailable(err)) return `Postgres is unreachable: ${errorText(err)}`;
  const code = (err as { code?: unknown } | null)?.code;
  // A SQLSTATE: five characters, digits and capitals (23503 a foreign key, 42P01 a missing table).
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    return `Postgres refused a statement: ${errorText(err)} (SQLSTATE ${code})`;
  }
  return errorText(err);
}

function clip(message: string): string {
  return message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS - 3)}...` : message;
}
