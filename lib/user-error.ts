// An error the person running Mailplane can fix (a setting, a file, a port): the command prints
// its message, without a stack trace, and exits 1. Anything else is a bug and keeps its stack.

export class UserError extends Error {
  readonly code: string = 'EUSER';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UserError';
  }
}

/** Whether `err` is the user's to fix: a UserError, or one of the older classes that are. */
export function isUserError(err: unknown): err is Error {
  return err instanceof UserError;
}
