// The tables as kysely sees them. Migrations (lib/db/migrations) are the schema of record; these
// interfaces follow them.

import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';
import type { DnsRecord } from '../dns-records.js';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T> = ColumnType<T, string, string>;

export interface TenantLimits {
  /** Recipients (to + cc + bcc) in one send; the installation's default when unset. */
  maxRecipients?: number;
}

export interface TenantTable {
  id: Generated<string>;
  namespace: string;
  name: string;
  limits: Json<TenantLimits>;
  /** Whether an email that does not say carries List-Unsubscribe (the Tenant's spec.unsubscribe). */
  unsubscribe: Generated<boolean>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  /** Set when its Tenant resource was deleted with its rows retained; a re-created Tenant clears it. */
  deleted_at: Timestamp | null;
}

export type Scope = 'send' | 'read';

export interface ApiKeyTable {
  id: Generated<string>;
  tenant_id: string;
  name: string;
  prefix: string;
  hash: Buffer;
  scopes: Scope[];
  created_at: Generated<Date>;
  revoked_at: Timestamp | null;
}

export interface DomainTable {
  id: Generated<string>;
  tenant_id: string;
  name: string;
  selector: string;
  dkim_algorithm: 'rsa-2048' | 'ed25519';
  /** Encrypted envelope (lib/crypto encrypt) of the PKCS#8 PEM. */
  dkim_private_key: string;
  dkim_public_key: string;
  return_path_domain: string | null;
  /** When the row's key started signing; a rotation is due spec.dkim.rotateEvery after it. */
  dkim_activated_at: Generated<Date>;
  /** The host tracked links and the open pixel are served under (spec.tracking.domain). */
  tracking_domain: string | null;
  /** Whether opens, and clicks, are tracked for an email that does not say. */
  track_opens: Generated<boolean>;
  track_clicks: Generated<boolean>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  /** The last DNS check of each record (lib/db/dns-findings.ts), by the operator or the api. */
  dns_findings: Json<DnsFinding[]> | null;
  dns_checked_at: Timestamp | null;
}

/**
 * A DKIM key besides the one its domain row signs with: the next key of a rotation, a key being
 * retired, or the RSA key an Ed25519 domain also signs with (slot `rsa`).
 */
export interface DkimKeyTable {
  id: Generated<string>;
  domain_id: string;
  slot: 'primary' | 'rsa';
  state: 'next' | 'active' | 'retiring';
  selector: string;
  algorithm: 'rsa-2048' | 'ed25519';
  /** Encrypted envelope (lib/crypto encrypt) of the PKCS#8 PEM. */
  private_key: string;
  public_key: string;
  created_at: Generated<Date>;
  activated_at: Timestamp | null;
  /** For a retiring key: when it stops being published. */
  retire_at: Timestamp | null;
}

/** What one DNS check found for one record to publish. */
export interface DnsFinding {
  purpose: DnsRecord['purpose'];
  type: DnsRecord['type'];
  name: string;
  /** The value checked for: a finding about another key or host says nothing of the current one. */
  value: string;
  /** verified: found as published; pending: absent; failed: present but wrong; temporary_failure: the lookup failed. */
  status: 'verified' | 'pending' | 'failed' | 'temporary_failure';
  /** What was wrong, as the operator's DNSVerified condition says it. */
  problem?: string;
}

export interface TemplateTable {
  id: Generated<string>;
  tenant_id: string;
  name: string;
  current_version: number;
  /** A Template resource's (read-only through the API), or one made through the API. */
  source: ColumnType<'resource' | 'api', 'resource' | 'api' | undefined, 'resource' | 'api'>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface TemplateVersionTable {
  template_id: string;
  version: number;
  subject: string;
  html: string | null;
  text: string | null;
  /** SHA-256 of the content: re-applying an unchanged template makes no new version. */
  digest: string;
  /** Resend's variable declarations ({key, type, fallback_value}), for versions made through the API. */
  variables: ColumnType<TemplateVariable[] | null, string | null | undefined, string | null>;
  /** The variables the version was checked with (and a preview renders without its own). */
  sample_data: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>;
  created_at: Generated<Date>;
}

export interface TemplateVariable {
  key: string;
  type: 'string' | 'number';
  fallback_value: string | number | null;
}

export interface Attachment {
  filename: string;
  /** base64 */
  content: string;
  content_type?: string;
}

/** What was accepted, everything but the envelope recipients. */
export interface EmailContent {
  to: string[];
  cc: string[];
  bcc: string[];
  reply_to: string[];
  subject: string;
  html?: string;
  text?: string;
  headers: Record<string, string>;
  attachments: Attachment[];
  tags: { name: string; value: string }[];
  template?: { id: string; version: number; variables: Record<string, unknown> };
  /**
   * The whole message as an SMTP client submitted it, base64 (8-bit MIME need not be UTF-8), without
   * X-Mailplane-Tags: sent as it is (sender/raw-message.ts) instead of composed from the fields
   * above, which then only describe it (its addresses and subject, for the API's views).
   */
  raw?: string;
  /** A submitted message's own Message-ID (with its angle brackets), which it is sent with. */
  message_id?: string;
  /**
   * Whether its messages carry List-Unsubscribe and List-Unsubscribe-Post (RFC 8058), as the
   * request said; absent, the tenant's default (tenants.unsubscribe) when each message is sent, so
   * that every way in (REST, SendGrid, Postmark, SMTP) gets the Tenant's setting.
   */
  unsubscribe?: boolean;
  /** The request's `tracking`: what it turns on or off against its sending domain's defaults. */
  tracking?: { opens?: boolean; clicks?: boolean };
}

export interface EmailTable {
  id: Generated<string>;
  tenant_id: string;
  domain_id: string;
  from_address: string;
  subject: string;
  content: Json<EmailContent>;
  /** What its events read of `content` (lib/db/event-fields.ts); null for an email from before. */
  event_fields: Json<Pick<EmailContent, 'to' | 'tags' | 'message_id'>> | null;
  idempotency_key: string | null;
  scheduled_at: Timestamp | null;
  created_at: Generated<Date>;
}

export const MESSAGE_STATUSES = [
  'queued',
  'sending',
  'delivered',
  'deferred',
  'bounced',
  'failed',
  'suppressed',
  'canceled',
] as const;
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];
/**
 * An email's status is the first of these that one of its messages has: the least advanced while
 * any is pending, else the worst outcome (api/emails.ts overallStatus, lib/db/email-list.ts).
 */
export const EMAIL_STATUS_ORDER: readonly MessageStatus[] = [
  'sending',
  'deferred',
  'queued',
  'bounced',
  'failed',
  'suppressed',
  'canceled',
  'delivered',
];
/** Statuses nothing moves a message out of, but a bounce that comes back after delivery. */
export const FINAL_STATUSES: readonly MessageStatus[] = [
  'delivered',
  'bounced',
  'failed',
  'suppressed',
  'canceled',
];

/** One row per recipient: each is delivered, retried, bounced or suppressed on its own. */
export interface MessageTable {
  id: Generated<string>;
  email_id: string;
  tenant_id: string;
  recipient: string;
  status: MessageStatus;
  attempts: Generated<number>;
  last_reply: string | null;
  next_attempt_at: Timestamp | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  /** When it was first opened and clicked, by anything and by a person (set once: unique counts). */
  first_open_at: Generated<Date | null>;
  first_human_open_at: Generated<Date | null>;
  first_click_at: Generated<Date | null>;
  first_human_click_at: Generated<Date | null>;
}

export interface EventTable {
  id: Generated<string>;
  tenant_id: string;
  email_id: string;
  message_id: string | null;
  type: string;
  detail: Json<Record<string, unknown>>;
  created_at: Generated<Date>;
}

/** Why an address is suppressed: a hard bounce, a complaint, an unsubscribe, or by hand (API, CSV). */
export const SUPPRESSION_REASONS = ['bounce', 'complaint', 'unsubscribe', 'manual'] as const;
export type SuppressionReason = (typeof SUPPRESSION_REASONS)[number];

export interface SuppressionTable {
  tenant_id: string;
  /** Lower-cased. */
  address: string;
  reason: SuppressionReason;
  detail: string | null;
  created_at: Generated<Date>;
}

/** A live sender's worker pool (sender/heartbeat.ts). */
export interface SenderHeartbeatTable {
  worker_id: string;
  host: string;
  started_at: Generated<Date>;
  beat_at: Generated<Date>;
}

/** The first answer to a request under an Idempotency-Key (api/idempotency.ts). */
export interface IdempotencyKeyTable {
  tenant_id: string;
  key: string;
  /** SHA-256 of the route and body: the same key for another request is refused. */
  fingerprint: string;
  started_at: Generated<Date>;
  /** Null while the first request is in flight. */
  response_status: number | null;
  response_body: Json<unknown> | null;
  expires_at: Timestamp;
}

/** The one row of the installation (lib/installation.ts). */
export interface InstallationTable {
  id: Generated<boolean>;
  /** HMAC of a fixed label under MAILPLANE_SECRET_KEY. */
  key_check: string;
  created_at: Generated<Date>;
}

/** Where a tenant's events are posted (lib/webhooks). */
export interface WebhookEndpointTable {
  id: Generated<string>;
  tenant_id: string;
  name: string | null;
  url: string;
  /** Webhook event types; empty: every one. */
  events: ColumnType<string[], string[] | undefined, string[]>;
  enabled: Generated<boolean>;
  disabled_reason: string | null;
  /** Encrypted envelope of the whsec_… secret. */
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Timestamp | null;
  source: ColumnType<'api' | 'tenant', 'api' | 'tenant' | undefined, 'api' | 'tenant'>;
  failing_since: Timestamp | null;
  /** After a timeout: attempts due before this are recorded as not sent (lib/db/webhooks.ts). */
  paused_until: Timestamp | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export type WebhookDeliveryStatus = 'pending' | 'delivered' | 'failed';

/** One event to one endpoint, with its attempts. */
export interface WebhookDeliveryTable {
  id: Generated<string>;
  endpoint_id: string;
  tenant_id: string;
  event_id: string;
  type: string;
  status: ColumnType<WebhookDeliveryStatus, WebhookDeliveryStatus | undefined, WebhookDeliveryStatus>;
  attempts: Generated<number>;
  next_attempt_at: Timestamp | null;
  /** While a dispatcher holds it; past this, another may take it. */
  locked_until: Timestamp | null;
  /** The send pool of the sender whose dispatcher holds it (its heartbeat's worker id). */
  locked_by: string | null;
  response_status: number | null;
  response_excerpt: string | null;
  error: string | null;
  latency_ms: number | null;
  replay: Generated<boolean>;
  created_at: Generated<Date>;
  delivered_at: Timestamp | null;
  /** When its last attempt was sent. */
  last_attempt_at: Timestamp | null;
}

/** A failed attempt of a delivery, before its last (lib/db/webhooks.ts). */
export interface WebhookAttemptTable {
  delivery_id: string;
  attempt: number;
  response_status: number | null;
  response_excerpt: string | null;
  error: string | null;
  latency_ms: number | null;
  sent_at: Generated<Date>;
}

/** Events counted per hour, sending domain and type, in shards (lib/db/stats.ts). */
export interface EmailStatsTable {
  tenant_id: string;
  bucket: Date;
  domain_id: string;
  type: string;
  shard: number;
  count: ColumnType<string, number, number>;
}

/** The same per tag (`name:value`). */
export interface EmailTagStatsTable {
  tenant_id: string;
  bucket: Date;
  tag: string;
  type: string;
  shard: number;
  count: ColumnType<string, number, number>;
}

/** Who changed what (lib/db/audit.ts; written by triggers). */
export interface AuditLogTable {
  id: Generated<string>;
  tenant_id: string;
  at: Generated<Date>;
  actor: string;
  action: string;
  target: string;
  detail: Json<Record<string, unknown>>;
  request_id: string | null;
}

/** A click of the last seconds, seen by every api replica (lib/db/recent-clicks.ts; UNLOGGED). */
export interface RecentClickTable {
  message_id: string;
  /** The first 64 bits of the link's SHA-256 (linkHash). */
  link_hash: ColumnType<string, string | number, string | number>;
  at: ColumnType<Date, Date | string, Date | string>;
}

/** Opens or clicks of a message in one clock hour, the count the cap is held to (UNLOGGED). */
export interface EngagementCountTable {
  message_id: string;
  type: 'opened' | 'clicked';
  hour: ColumnType<Date, Date | string, Date | string>;
  fetches: ColumnType<string, number, number>;
}

/** A person a tenant mails in bulk (lib/db/contacts.ts); Resend's contact. */
export interface ContactTable {
  id: Generated<string>;
  tenant_id: string;
  /** Lower-cased, as suppressions.address is; unique per tenant. */
  email: string;
  first_name: string | null;
  last_name: string | null;
  /** The contact's own consent: set by the API, or by an unsubscribe from the tenant's mail. */
  unsubscribed: Generated<boolean>;
  /** Custom fields, as the API was given them. */
  properties: ColumnType<Record<string, unknown>, string | undefined, string>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

/** A named group of a tenant's contacts; Resend's segment (and its older audience). */
export interface SegmentTable {
  id: Generated<string>;
  tenant_id: string;
  name: string;
  created_at: Generated<Date>;
}

/** Who is in which segment; goes with either side. */
export interface SegmentContactTable {
  segment_id: string;
  contact_id: string;
  created_at: Generated<Date>;
}

/**
 * Where a broadcast is: draft (editable) → scheduled (due later) | queued (due now) → sending (the
 * fan-out under way) → sent (every contact has its email); canceled by the tenant, failed when the
 * fan-out could not start (`failure` says why). Resend's own are draft, scheduled, queued and sent.
 */
export const BROADCAST_STATUSES = [
  'draft',
  'scheduled',
  'queued',
  'sending',
  'sent',
  'canceled',
  'failed',
] as const;
export type BroadcastStatus = (typeof BROADCAST_STATUSES)[number];

/** One email to every contact of a segment who has not unsubscribed (lib/db/broadcasts.ts). */
export interface BroadcastTable {
  id: Generated<string>;
  tenant_id: string;
  name: string | null;
  segment_id: string | null;
  /** The formatted From mailbox. */
  from_address: string;
  subject: string;
  reply_to: ColumnType<string[], string[] | undefined, string[]>;
  html: string | null;
  text: string | null;
  preview_text: string | null;
  status: ColumnType<BroadcastStatus, BroadcastStatus | undefined, BroadcastStatus>;
  scheduled_at: Timestamp | null;
  /** When the fan-out began, and when every contact had its email. */
  started_at: Timestamp | null;
  sent_at: Timestamp | null;
  canceled_at: Timestamp | null;
  /** Why a failed broadcast did not go out. */
  failure: string | null;
  /** The last contact id (in id order) that has its email. */
  cursor: string | null;
  created_count: Generated<number>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

/** An address a broadcast has mailed: never mailed by it again (lib/db/broadcasts.ts). */
export interface BroadcastRecipientTable {
  broadcast_id: string;
  /** Lower-cased. */
  address: string;
  contact_id: string | null;
  email_id: string;
}

export interface Database {
  tenants: TenantTable;
  api_keys: ApiKeyTable;
  domains: DomainTable;
  dkim_keys: DkimKeyTable;
  templates: TemplateTable;
  template_versions: TemplateVersionTable;
  emails: EmailTable;
  messages: MessageTable;
  events: EventTable;
  suppressions: SuppressionTable;
  sender_heartbeats: SenderHeartbeatTable;
  idempotency_keys: IdempotencyKeyTable;
  installation: InstallationTable;
  webhook_endpoints: WebhookEndpointTable;
  webhook_deliveries: WebhookDeliveryTable;
  webhook_attempts: WebhookAttemptTable;
  email_stats: EmailStatsTable;
  email_tag_stats: EmailTagStatsTable;
  audit_log: AuditLogTable;
  recent_clicks: RecentClickTable;
  engagement_counts: EngagementCountTable;
  contacts: ContactTable;
  segments: SegmentTable;
  segment_contacts: SegmentContactTable;
  broadcasts: BroadcastTable;
  broadcast_recipients: BroadcastRecipientTable;
}

export type Tenant = Selectable<TenantTable>;
export type ApiKey = Selectable<ApiKeyTable>;
export type Domain = Selectable<DomainTable>;
export type DkimKey = Selectable<DkimKeyTable>;
export type Template = Selectable<TemplateTable>;
export type TemplateVersion = Selectable<TemplateVersionTable>;
export type Email = Selectable<EmailTable>;
export type NewEmail = Insertable<EmailTable>;
export type Message = Selectable<MessageTable>;
export type MessageUpdate = Updateable<MessageTable>;
export type Event = Selectable<EventTable>;
export type Broadcast = Selectable<BroadcastTable>;
