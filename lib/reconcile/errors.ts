// Why a resource cannot be converged; `reason` is a PascalCase condition reason the operator
// shows as-is, and `mailplane apply` prints.

export type ReconcileReason =
  'TenantNotFound' | 'DomainClaimed' | 'KeySecretNotFound' | 'KeyInvalid' | 'TemplateInvalid';

export class ReconcileError extends Error {
  readonly code = 'ERECONCILE';
  constructor(
    readonly reason: ReconcileReason,
    message: string,
  ) {
    super(message);
  }
}
