// Adds open and click tracking to an html body: each link a person could follow (the href of an
// <a> or <area>, http or https) is replaced by its tracked URL, and a 1×1 pixel is added before
// </body>. The html is parsed with htmlparser2 — never matched with patterns, which an attribute
// split across lines, an entity in a URL or an href inside a comment would fool — and only the
// attributes changed are rewritten: every other byte of the body stays as the template or the
// request wrote it, so a rendering the author tested is the one the recipient gets.
//
// Left alone: mailto:, tel:, anchors and relative links (no URL to send a person on to), links the
// caller declines (the unsubscribe link, already tracked ones), and links marked
// `data-mailplane-no-track`. Links inside comments (Outlook's conditional blocks) are not parsed
// as links, and stay as they are.

import { Parser } from 'htmlparser2';
import { clickUrl, openUrl, type Tracking } from '../lib/tracking.js';

export interface TrackHtmlOptions {
  /** The tracked URL for a link's URL, or undefined to leave the link alone. */
  link?: (url: string) => string | undefined;
  /** The open pixel's URL. */
  pixel?: string;
}

/** The attribute that keeps a link untracked, as SendGrid's clicktracking=off and Postmark's data-pm-no-track do. */
export const NO_TRACK_ATTRIBUTE = 'data-mailplane-no-track';

interface Edit {
  start: number;
  end: number;
  text: string;
}

/**
 * The html with its links tracked and the pixel added.
 *
 *   trackHtml('<a href="https://example.com/?a=1#top">x</a>', { link: (url) => tracked(url), pixel })
 */
export function trackHtml(html: string, options: TrackHtmlOptions): string {
  const edits: Edit[] = [];
  let href: { value: string; start: number; end: number } | undefined;
  let noTrack = false;
  let bodyEnd: number | undefined;
  const parser = new Parser({
    onopentagname() {
      href = undefined;
      noTrack = false;
    },
    onattribute(name, value) {
      // The first href counts, as in a browser. [startIndex, endIndex) is the whole attribute.
      if (name === 'href' && !href) href = { value, start: parser.startIndex, end: parser.endIndex };
      else if (name === NO_TRACK_ATTRIBUTE) noTrack = true;
    },
    onopentag(name) {
      if (!options.link || !href || noTrack || (name !== 'a' && name !== 'area')) return;
      const url = followedUrl(href.value);
      const tracked = url === undefined ? undefined : options.link(url);
      if (tracked !== undefined)
        edits.push({ start: href.start, end: href.end, text: `href="${attr(tracked)}"` });
    },
    onclosetag(name, isImplied) {
      if (name === 'body' && !isImplied && bodyEnd === undefined) bodyEnd = parser.startIndex;
    },
  });
  parser.write(html);
  parser.end();

  if (options.pixel) {
    // Hidden from layout but not display:none, which some clients skip fetching.
    const pixel = `<img src="${attr(options.pixel)}" width="1" height="1" alt="" style="width:1px;height:1px;border:0">`;
    const at = bodyEnd ?? html.length;
    edits.push({ start: at, end: at, text: pixel });
  }
  if (edits.length === 0) return html;
  edits.sort((a, b) => a.start - b.start);
  let out = '';
  let from = 0;
  for (const edit of edits) {
    out += html.slice(from, edit.start) + edit.text;
    from = edit.end;
  }
  return out + html.slice(from);
}

/**
 * The URL a browser would follow for an href, if it is an absolute http(s) one: the WHATWG URL
 * parser drops tabs and line breaks anywhere and spaces and controls at the ends, so an href
 * split across lines leads where its author meant.
 */
function followedUrl(value: string): string | undefined {
  // eslint-disable-next-line no-control-regex -- the characters the URL parser strips
  const url = value.replace(/[\t\n\r]/g, '').replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, '');
  if (!/^https?:\/\//i.test(url) || !URL.canParse(url)) return undefined;
  return url;
}

function attr(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
}

/**
 * A message's html with the tracking it asks for: its links through `/t/c/…` when clicks are
 * tracked, the pixel `/t/o/…` when opens are. Links to Mailplane's own public paths (the
 * unsubscribe page `/u/…`, a link tracked already) on the tracking host or the public URL stay
 * as they are: an unsubscribe must work without a detour, and counting it as a click would be
 * wrong.
 *
 *   trackMessageHtml(html, { secretKey, tracking, messageId, sentAt: Date.now(), publicUrl })
 */
export function trackMessageHtml(
  html: string,
  m: { secretKey: Buffer; tracking: Tracking; messageId: string; sentAt: number; publicUrl?: string },
): string {
  const { secretKey, tracking, messageId, sentAt } = m;
  const ours = new Set([origin(tracking.base), m.publicUrl ? origin(m.publicUrl) : undefined]);
  return trackHtml(html, {
    ...(tracking.clicks
      ? {
          link: (url) => {
            const parsed = new URL(url);
            if (ours.has(parsed.origin) && /^\/(u|t)\//.test(parsed.pathname)) return undefined;
            // A link this long would make a tracked URL past what some clients follow.
            if (url.length > MAX_TRACKED_URL) return undefined;
            return clickUrl(secretKey, tracking.base, messageId, sentAt, url);
          },
        }
      : {}),
    ...(tracking.opens ? { pixel: openUrl(secretKey, tracking.base, messageId, sentAt) } : {}),
  });
}

/** Links longer than this are left untracked: with the token's base64, the link would pass 8 KB. */
const MAX_TRACKED_URL = 4096;

function origin(url: string): string | undefined {
  return URL.canParse(url) ? new URL(url).origin : undefined;
}
