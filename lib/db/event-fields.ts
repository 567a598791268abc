// What every event of an email reads of it: its recipients, its tags and the Message-ID it was
// submitted with. The statistics rollups read the tags in the sender's own statement, and the
// webhook claim reads all three for each payload. Read from `content`, each read fetched and
// decompressed the whole of it from TOAST, HTML and attachments included. So the accept statement
// copies them into `emails.event_fields`, a few hundred bytes kept in the row (migration
// 2026-12-03T16-00); an email accepted before that has none, and is read from `content`.

/** `event_fields` built from a `content` column in scope: for the accept statement. */
export const EVENT_FIELDS_SQL = `jsonb_build_object('to', coalesce(content->'to', '[]'), 'tags', coalesce(content->'tags', '[]'),
  'message_id', content->'message_id')`;

/**
 * The event fields of the email row `alias`, as a jsonb with `to`, `tags` and `message_id`.
 *
 *   `${eventFields('e')}->'tags'`
 */
export function eventFields(alias: string): string {
  return `coalesce(${alias}.event_fields, ${alias}.content)`;
}
