// Indexes for GET /v1/emails (lib/db/email-list.ts), each led by tenant_id as the first migration's
// partitioning note asks, each read in the list's order (created_at, then id) where it can be:
//
// - messages_tenant_status (tenant_id, status, created_at, email_id): the emails with a message in a
//   status, newest first, without reading a message row. A message's created_at is its email's (the
//   accept statement writes both with one now()), so this order is the list's. No column of emails
//   holds the email's status: every transition would have to write it, on the sender's hot path.
// - messages_tenant_recipient (tenant_id, lower(recipient), created_at, email_id): the emails sent to
//   an address, the same way.
// - emails_tenant_domain_created (tenant_id, domain_id, created_at): from one sending domain.
// - emails_tenant_tag_days, GIN over mailplane_email_tag_days(tenant_id, created_at, tags): each tag
//   of an email as `<tenant id>/<day>/<name>:<value>`, the day counted from 1970-01-01 in UTC, so
//   that the emails of a tag are found a few days at a time (a GIN index keeps no order, and one
//   key per tag would make a page sort every email the tag has). The tenant is inside each key
//   because a GIN index cannot lead with a uuid column without the btree_gin extension, which a
//   managed Postgres may not offer.
//
// A time range and the unfiltered list use emails_tenant_created (tenant_id, created_at) from the
// first migration. The README (Find emails) has the figures that chose these.

import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index messages_tenant_status on messages (tenant_id, status, created_at, email_id)`.execute(
    db,
  );
  await sql`create index messages_tenant_recipient on messages (tenant_id, lower(recipient), created_at, email_id)`.execute(
    db,
  );
  await sql`create index emails_tenant_domain_created on emails (tenant_id, domain_id, created_at)`.execute(
    db,
  );
  // Immutable, as an index expression must be: the same email always gives the same keys (the
  // day is arithmetic on the instant, not a calendar in the session's time zone). In PL/pgSQL,
  // whose plans last for the connection: as a SQL function it cost a quarter of the insert rate
  // of emails, against a tenth.
  await sql`
    create function mailplane_email_tag_days(tenant_id uuid, created_at timestamptz, tags jsonb)
    returns text[] language plpgsql immutable parallel safe as $$
    declare
      prefix text := tenant_id::text || '/' || floor(extract(epoch from created_at - to_timestamp(0)) / 86400)::int || '/';
      keys text[] := '{}';
      tag jsonb;
    begin
      if jsonb_typeof(tags) = 'array' then
        for tag in select value from jsonb_array_elements(tags) loop
          keys := keys || (prefix || (tag->>'name') || ':' || (tag->>'value'));
        end loop;
      end if;
      return keys;
    end $$`.execute(db);
  // fastupdate off: new entries go straight into the index rather than into a pending list that
  // every search reads whole (up to 4 MB, 2 to 25 ms a span while emails arrived), for about 5% of
  // the insert rate of emails.
  await sql`
    create index emails_tenant_tag_days on emails
    using gin (mailplane_email_tag_days(tenant_id, created_at, content -> 'tags')) with (fastupdate = off)`.execute(
    db,
  );
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen in time
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists emails_tenant_tag_days`.execute(db);
  await sql`drop function if exists mailplane_email_tag_days(uuid, timestamptz, jsonb)`.execute(db);
  await sql`drop index if exists emails_tenant_domain_created`.execute(db);
  await sql`drop index if exists messages_tenant_recipient`.execute(db);
  await sql`drop index if exists messages_tenant_status`.execute(db);
}
