// The rule for a tag's name and value, for every way a send carries tags: the API's `tags` member
// (api/schemas-send.ts) and SMTP submission's X-Mailplane-Tags header (submission/tags.ts).

/** One character of a tag's name or value (Resend's rule). */
export const TAG_CHAR = '[A-Za-z0-9_-]';
/** Resend's bound on a tag's name and value. */
export const MAX_TAG = 256;
/**
 * Tags of one email, as many as Amazon SES allows (Resend documents no count); they are stored with
 * the email and copied into its events.
 */
export const MAX_TAGS = 50;
