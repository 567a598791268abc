// Open and click tracking links: whether a message is tracked, where its links point, and what
// their tokens say. The sender writes them (sender/track-html.ts), the api reads them
// (api/tracking.ts). A token is signed (lib/signed-token.ts) under its own purpose and carries the
// message and when it was sent; a click's also carries the exact URL it leads to, so that the
// redirect can go to that URL and no other — there is nothing in the request an attacker could
// change to send a person elsewhere.
//
//   https://<tracking domain>/t/o/<token>   the open pixel      token: [message id, sent at]
//   https://<tracking domain>/t/c/<token>   a tracked link      token: [message id, sent at, URL, host]

import { signToken, verifyToken } from './signed-token.js';

/** Where tracked links point and what is tracked, for one message. */
export interface Tracking {
  /** `https://<tracking domain>`, or the installation's public URL: no trailing slash. */
  base: string;
  opens: boolean;
  clicks: boolean;
}

/** A domain's tracking settings, as the domains row holds them. */
export interface DomainTracking {
  tracking_domain: string | null;
  track_opens: boolean;
  track_clicks: boolean;
}

/**
 * What a message tracks: the request's `tracking` over its domain's defaults, under the domain's
 * tracking host (else the installation's public URL). Undefined when nothing is tracked, or when
 * there is no public host to serve the links from.
 *
 *   trackingOf({ tracking_domain: 'track.example.com', track_opens: true, track_clicks: true }, { clicks: false })
 *   // { base: 'https://track.example.com', opens: true, clicks: false }
 */
export function trackingOf(
  domain: DomainTracking,
  request: { opens?: boolean; clicks?: boolean } | undefined,
  publicUrl: string | undefined,
): Tracking | undefined {
  const opens = request?.opens ?? domain.track_opens;
  const clicks = request?.clicks ?? domain.track_clicks;
  const base = domain.tracking_domain ? `https://${domain.tracking_domain}` : publicUrl;
  if (!base || (!opens && !clicks)) return undefined;
  return { base, opens, clicks };
}

/** Public paths under a tracking host: these are never rewritten into tracked links themselves. */
export const OPEN_PATH = '/t/o/';
export const CLICK_PATH = '/t/c/';

/** What a valid token says. */
export interface TrackedFetch {
  messageId: string;
  /** When the message was signed and handed over, in ms since the epoch. */
  sentAt: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Seconds are precise enough for the scanner window, and shorter in every link. */
const sentField = (sentAt: number) => Math.floor(sentAt / 1000).toString(36);

export function openUrl(secretKey: Buffer, base: string, messageId: string, sentAt: number): string {
  return `${base}${OPEN_PATH}${signToken(secretKey, 'open', [messageId, sentField(sentAt)])}`;
}

export function clickUrl(
  secretKey: Buffer,
  base: string,
  messageId: string,
  sentAt: number,
  url: string,
): string {
  const fields = [messageId, sentField(sentAt), url, new URL(base).hostname];
  return `${base}${CLICK_PATH}${signToken(secretKey, 'click', fields)}`;
}

function fetched(fields: string[] | undefined, count: number): TrackedFetch | undefined {
  if (!fields || fields.length !== count) return undefined;
  const [messageId, sent] = fields as [string, string];
  const seconds = parseInt(sent, 36);
  if (!UUID.test(messageId) || !/^[0-9a-z]{1,10}$/.test(sent) || !Number.isSafeInteger(seconds)) {
    return undefined;
  }
  return { messageId, sentAt: seconds * 1000 };
}

/** The message of an open pixel's token, or undefined for anything Mailplane did not sign. */
export function readOpenToken(secretKey: Buffer, token: string): TrackedFetch | undefined {
  return fetched(verifyToken(secretKey, 'open', token), 2);
}

/**
 * The message, URL and tracking host of a tracked link's token, or undefined for anything
 * Mailplane did not sign or a URL that is not http(s) (a token from a version that let one through
 * must still not redirect to `javascript:`). The host is the one the link was made for: one
 * tenant's token must not redirect from another tenant's tracking domain, nor from the shared
 * public host unless it was made there.
 */
export function readClickToken(
  secretKey: Buffer,
  token: string,
): (TrackedFetch & { url: string; host: string }) | undefined {
  const fields = verifyToken(secretKey, 'click', token);
  const message = fetched(fields?.slice(0, 2), 2);
  const [url, host] = fields?.length === 4 ? fields.slice(2) : [];
  if (!message || url === undefined || host === undefined || !trackableUrl(url)) return undefined;
  return { ...message, url, host };
}

/** An absolute http or https URL that parses. */
export function trackableUrl(url: string): boolean {
  if (!/^https?:\/\//i.test(url)) return false;
  return URL.canParse(url);
}
