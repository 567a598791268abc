// Moved to dev/inbox.ts.
export * from '../../dev/inbox.js';
