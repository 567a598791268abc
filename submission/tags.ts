// The X-Mailplane-Tags header: how a message submitted over SMTP carries the tags a REST send
// gives in `tags` — `X-Mailplane-Tags: category=welcome, campaign=spring` — by the same rule for
// names and values (lib/send/tags.ts). The header is taken off the message before it is stored.

import { MAX_TAG, MAX_TAGS, TAG_CHAR } from '../lib/send/tags.js';

export const TAGS_HEADER = 'X-Mailplane-Tags';

const ENTRY = new RegExp(`^(${TAG_CHAR}{1,${MAX_TAG}})\\s*=\\s*(${TAG_CHAR}{1,${MAX_TAG}})$`);

export type TagsResult = { tags: { name: string; value: string }[] } | { fault: string };

/**
 * The tags of every X-Mailplane-Tags field of a message (a message may carry several), or why
 * they are refused.
 *
 *   parseTags(['category=welcome, campaign=spring'])
 *   // { tags: [{ name: 'category', value: 'welcome' }, { name: 'campaign', value: 'spring' }] }
 */
export function parseTags(values: string[]): TagsResult {
  const tags: { name: string; value: string }[] = [];
  for (const value of values) {
    for (const entry of value.split(',')) {
      const text = entry.trim();
      if (text === '') continue;
      const match = ENTRY.exec(text);
      if (!match) {
        return {
          fault: `${TAGS_HEADER}: "${text.slice(0, 80)}" is not name=value, each of letters, digits, _ or - (at most ${MAX_TAG})`,
        };
      }
      tags.push({ name: match[1]!, value: match[2]! });
    }
  }
  if (tags.length > MAX_TAGS)
    return { fault: `${TAGS_HEADER}: ${tags.length} tags; the limit is ${MAX_TAGS}` };
  return { tags };
}
