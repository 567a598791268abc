// Errors a client can act on, rendered as RFC 9457 application/problem+json by the API.
// `type` is stable (clients branch on it); `detail` is for humans; `errors` lists every
// field at fault when validation fails. The api adds the request's `request_id` when it answers
// (api/problems.ts), since a problem can be made before, or without, a request.

export interface FieldError {
  /** JSON pointer-ish path of the field, e.g. `to[2]` or `headers.X-Foo`. */
  field: string;
  message: string;
}

/**
 * Every problem type the API answers with. Where Resend has the same error, the name is Resend's
 * (its SDK's callers branch on `name`, the type with underscores): validation_error,
 * missing_api_key, invalid_api_key, restricted_api_key, not_found, rate_limit_exceeded,
 * invalid_idempotency_key, invalid_idempotent_request, concurrent_idempotent_requests,
 * internal_server_error.
 */
export type ProblemType =
  | 'validation-error'
  | 'missing-api-key'
  | 'invalid-api-key'
  | 'restricted-api-key'
  | 'not-found'
  | 'method-not-allowed'
  | 'domain-not-owned'
  | 'message-too-large'
  | 'body-too-large'
  | 'malformed-json'
  | 'bad-request'
  | 'unsupported-media-type'
  | 'unsupported-encoding'
  | 'invalid-idempotency-key'
  | 'invalid-idempotent-request'
  | 'concurrent-idempotent-requests'
  | 'not-cancelable'
  | 'not-reschedulable'
  | 'webhook-read-only'
  | 'webhook-disabled'
  | 'template-read-only'
  | 'template-exists'
  | 'template-invalid'
  | 'template-render-failed'
  | 'suppression-from-complaint'
  | 'contact-exists'
  | 'broadcast-not-changeable'
  | 'segment-in-use'
  | 'unsubscribe-unavailable'
  | 'rate-limit-exceeded'
  | 'service-unavailable'
  | 'internal-server-error';

/**
 * Bounds on what a problem says, in UTF-16 units: a reason quotes what the client sent (an unknown
 * member's name, a path's id), and the answer should not carry a 100 KB key back three times.
 */
const MAX_DETAIL = 2_000;
export const MAX_FIELD = 200;
export const MAX_FIELD_MESSAGE = 1_000;

/** `text` cut to `max` units, an ellipsis saying so; a surrogate pair is not split. */
export function clipped(text: string, max: number): string {
  // Whatever a caller passed by mistake, a problem is still made (a problem that throws is a 500).
  if (typeof text !== 'string') return String(text);
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}…`;
}

export class Problem extends Error {
  readonly detail: string;
  readonly errors?: FieldError[];

  constructor(
    readonly status: number,
    readonly type: ProblemType,
    detail: string,
    errors?: FieldError[],
  ) {
    const bounded = clipped(detail, MAX_DETAIL);
    super(bounded);
    this.name = 'Problem';
    this.detail = bounded;
    if (errors) {
      this.errors = errors.map((e) => ({
        ...e,
        field: clipped(e.field, MAX_FIELD),
        message: clipped(e.message, MAX_FIELD_MESSAGE),
      }));
    }
  }

  get title(): string {
    return TITLES[this.status] ?? 'Error';
  }

  /**
   * RFC 9457 members, plus `statusCode`, `name` and `message`: the members Resend's SDK reads
   * from an error, so that its callers see our reason and not a generic one.
   */
  toJSON(): Record<string, unknown> {
    return {
      type: `https://mailplane.io/problems/${this.type}`,
      title: this.title,
      status: this.status,
      detail: this.detail,
      ...(this.errors ? { errors: this.errors } : {}),
      statusCode: this.status,
      name: this.type.replace(/-/g, '_'),
      message: this.detail,
    };
  }
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};
