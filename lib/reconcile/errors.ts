// Why a resource cannot be converged; `reason` is a PascalCase condition reason the operator
// shows as-is, and `mailplane apply` prints.

import { UserError } from '../user-error.js';

export type ReconcileReason =
  | 'TenantNotFound'
  | 'DomainClaimed'
  | 'KeySecretNotFound'
  | 'KeyInvalid'
  | 'TemplateInvalid'
  /** The spec asks for another DKIM key under a selector that publishes the one in use. */
  | 'KeyChangeRefused'
  /** spec.sampleData is larger than a template's variables may be. */
  | 'SampleDataTooLarge'
  /** A URL of spec.webhooks that the installation does not post to (lib/net-policy.ts). */
  | 'WebhookURLRefused';

export class ReconcileError extends UserError {
  override readonly code = 'ERECONCILE';
  constructor(
    readonly reason: ReconcileReason,
    message: string,
  ) {
    super(message);
  }
}
