// The inbound SMTP listener (`mailplane smtp`): the MX of every return-path domain. It takes the
// bounces (DSN) and complaints (ARF) that come back after a message was handed over, matches each
// to its message by the signed VERP return path (lib/verp.ts), and records it: an asynchronous
// bounce makes the message `bounced`, and suppresses the address only when sender/outcome.ts
// classifies it `hard` (5.1.x: the address is wrong) — a full mailbox or a content refusal
// reported later is the same verdict as it would have been at RCPT TO. A complaint suppresses.
//
// The mailto address of a one-click unsubscribe (lib/unsubscribe.ts) lands here too: any message
// to it suppresses the recipient of the message it names, as the link does (RFC 8058 §3.2).
//
// A report is answered 250 only once what it says is committed; when Postgres cannot be reached the
// answer is 451, and the reporting MTA keeps the report and tries again later. Nothing else is
// accepted for delivery: a recipient that is not a signed return path or unsubscribe address, the feedback-loop address
// or postmaster is refused at RCPT, so the listener is no open relay nor a spam trap.

import type { AddressInfo } from 'node:net';
import { Counter, type Registry } from 'prom-client';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Db } from '../lib/db/index.js';
import { listen } from '../lib/listen.js';
import type { Logger } from '../lib/log.js';
import { messageIdOfBounceAddress } from '../lib/verp.js';
import { messageIdOfUnsubscribeAddress } from '../lib/unsubscribe.js';
import { withAuditContext } from '../lib/db/audit.js';
import { bounceMessage, recordComplaint, recordDelay, recordUnsubscribes } from '../lib/db/transitions.js';
import { classifyRefusal, enhancedStatus } from '../lib/bounce-class.js';
import { compact, parseReport, type DsnRecipient, type InboundReport } from './report.js';

/**
 * The address to register with mailbox providers' feedback loops (`fbl@<return-path domain>`):
 * their reports carry the original message, whose Return-Path names it.
 */
export const FEEDBACK_LOCAL_PART = 'fbl';
/** The largest message taken at all, so that nobody can stream gigabytes at the listener. */
const MAX_MESSAGE_BYTES = 50 * 1024 * 1024;
/**
 * How much of a message is kept and read. The machine-readable part of a DSN or an ARF report
 * comes before the original message it returns, which may carry attachments; the rest is read from
 * the socket and dropped, so that a bounce of a large message is still taken.
 */
const KEPT_BYTES = 1024 * 1024;
/**
 * Connections served at once per process. Reports come from MTAs that retry, so refusing one
 * over the limit delays it; this keeps a flood from exhausting the pod's memory first.
 */
const MAX_CLIENTS = 500;
/** Connections still open this long after close() are cut; a report is a few kilobytes. */
const CLOSE_TIMEOUT_MS = 10_000;

/** What became of one report, as counted in `mailplane_inbound_reports_total`. */
export type InboundOutcome =
  /** A failed delivery: the message is now `bounced` (and the address suppressed when permanent). */
  | 'bounced'
  /** A server down the line is still trying: an event, nothing else. */
  | 'delayed'
  | 'complained'
  /** A mail to a message's unsubscribe address: its recipient is suppressed. */
  | 'unsubscribed'
  /** A report about a message that is here and already settled so (the same report again). */
  | 'duplicate'
  /** Not a report (an auto-reply, a person writing back), or one that says nothing went wrong. */
  | 'ignored'
  /**
   * A report naming no message this installation has: a complaint without its original, or a
   * return path whose tag is valid for a message that is gone (deleted by retention, or sent from
   * another database under the same key). Never `duplicate`: nothing here was settled twice.
   */
  | 'unmatched';

export interface InboundServer {
  port: number;
  close(): Promise<void>;
}

export interface InboundDeps {
  db: Db;
  /** The installation's key, which signs return paths. */
  secretKey: Buffer;
  log: Logger;
  registry: Registry;
  /** Name announced in the greeting. */
  hostname: string;
}

/** A recipient the listener takes mail for. */
export interface Recipient {
  kind: 'return-path' | 'feedback' | 'postmaster' | 'unsubscribe';
  messageId?: string;
}

/**
 * Starts the listener on `port` (0: any free port) and resolves once it is listening.
 *
 *   const inbound = await startInboundServer({ db, secretKey, log, registry, hostname }, { port: 2525 });
 */
export async function startInboundServer(
  deps: InboundDeps,
  options: { port: number; host?: string },
): Promise<InboundServer> {
  const { log } = deps;
  const reports = new Counter({
    name: 'mailplane_inbound_reports_total',
    help: 'Messages taken by the inbound SMTP listener, by what became of them.',
    labelNames: ['outcome'],
    registers: [deps.registry],
  });

  const server = new SMTPServer({
    name: deps.hostname,
    size: MAX_MESSAGE_BYTES,
    maxClients: MAX_CLIENTS,
    // Reports arrive from other MTAs, which never authenticate to an MX. STARTTLS needs a
    // certificate, which this listener does not have yet; senders fall back to plain text.
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    closeTimeout: CLOSE_TIMEOUT_MS,
    onRcptTo(address, _session, callback) {
      if (!classifyRecipient(deps.secretKey, address.address)) {
        return callback(
          Object.assign(new Error(`5.1.1 <${address.address}>: no such recipient here`), {
            responseCode: 550,
          }),
        );
      }
      callback();
    },
    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback) {
      const chunks: Buffer[] = [];
      let kept = 0;
      stream.on('data', (chunk: Buffer) => {
        if (kept >= KEPT_BYTES) return;
        chunks.push(chunk.subarray(0, KEPT_BYTES - kept));
        kept += chunk.length;
      });
      stream.on('end', () => {
        if (stream.sizeExceeded) {
          return callback(
            Object.assign(new Error(`5.3.4 message exceeds ${MAX_MESSAGE_BYTES} bytes`), {
              responseCode: 552,
            }),
          );
        }
        // Only recipients onRcptTo took are in the envelope.
        const recipients = session.envelope.rcptTo.flatMap(
          (r) => classifyRecipient(deps.secretKey, r.address) ?? [],
        );
        const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
        handleReport(deps, Buffer.concat(chunks), recipients).then(
          (outcomes) => {
            for (const outcome of outcomes) reports.inc({ outcome });
            log.info('inbound message', { from, outcomes, client: session.remoteAddress });
            callback(null, 'report recorded');
          },
          (err: unknown) => {
            log.error('cannot record an inbound report; asking the sender to retry', {
              err: err as Error,
              from,
            });
            callback(
              Object.assign(new Error('4.3.0 cannot record this report now; try again later'), {
                responseCode: 451,
              }),
            );
          },
        );
      });
    },
  });
  // A client that goes away mid-session must not take the process with it.
  server.on('error', (err) => log.debug('inbound SMTP session error', { err }));

  // SMTPServer.listen is net.Server's own; this one says which setting moves a taken port.
  await listen(server.server, { port: options.port, host: options.host, setting: 'MAILPLANE_SMTP_PORT' });
  return {
    port: (server.server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function classifyRecipient(secretKey: Buffer, address: string): Recipient | undefined {
  const messageId = messageIdOfBounceAddress(secretKey, address);
  if (messageId) return { kind: 'return-path', messageId };
  const unsubscribing = messageIdOfUnsubscribeAddress(secretKey, address);
  if (unsubscribing) return { kind: 'unsubscribe', messageId: unsubscribing };
  const local = address.slice(0, address.lastIndexOf('@')).toLowerCase();
  if (local === FEEDBACK_LOCAL_PART) return { kind: 'feedback' };
  // RFC 5321 §4.5.1: every SMTP server accepts mail for postmaster.
  if (local === 'postmaster' || address.toLowerCase() === 'postmaster') return { kind: 'postmaster' };
  return undefined;
}

/**
 * Reads one message and records what it reports about each message it names; answers one
 * outcome per message named (or one `ignored`/`unmatched` when it names none).
 */
export async function handleReport(
  deps: Pick<InboundDeps, 'db' | 'secretKey'>,
  raw: Buffer,
  recipients: readonly Recipient[],
): Promise<InboundOutcome[]> {
  // Whatever the message says: mail to the address is the request (RFC 8058 §3.2).
  const unsubscribing = recipients.filter((r) => r.kind === 'unsubscribe');
  const reported = recipients.filter((r) => r.kind !== 'unsubscribe');
  const unsubscribed = await recordMailtoUnsubscribes(deps.db, unsubscribing);
  if (unsubscribing.length > 0 && reported.length === 0) return unsubscribed;

  const report = parseReport(raw);
  if (report.kind === 'other') return [...unsubscribed, 'ignored'];

  const messageIds = new Set<string>();
  for (const r of reported) if (r.messageId) messageIds.add(r.messageId);
  // A feedback loop writes to its registered address, not the return path; the original it
  // returns still has the signed return path, which is as good as receiving at it.
  // An ARF report whose attached original lacks Return-Path still names the envelope sender in
  // its Original-Mail-From field.
  const originals = [
    report.originalReturnPath,
    report.kind === 'complaint' ? report.originalMailFrom : undefined,
  ];
  for (const original of originals) {
    const id = original && messageIdOfBounceAddress(deps.secretKey, original);
    if (id) messageIds.add(id);
  }
  if (messageIds.size === 0) return [...unsubscribed, 'unmatched'];

  const outcomes: InboundOutcome[] = [...unsubscribed];
  for (const messageId of messageIds) outcomes.push(await record(deps.db, messageId, report));
  return outcomes;
}

/**
 * Suppresses the recipient of each message named by an unsubscribe address, for its tenant, with
 * an `unsubscribed` event; a message no longer there (trimmed by retention) is unmatched.
 */
async function recordMailtoUnsubscribes(db: Db, recipients: readonly Recipient[]): Promise<InboundOutcome[]> {
  const ids = [...new Set(recipients.flatMap((r) => (r.messageId ? [r.messageId] : [])))];
  if (ids.length === 0) return [];
  const messages = await db
    .selectFrom('messages')
    .select(['id', 'tenant_id', 'recipient'])
    .where('id', 'in', ids)
    .execute();
  if (messages.length > 0) {
    await withAuditContext(db, { actor: 'recipient:unsubscribe-mailto' }, (trx) =>
      recordUnsubscribes(
        trx,
        messages.map((m) => ({
          tenantId: m.tenant_id,
          messageId: m.id,
          address: m.recipient.toLowerCase(),
          detail: { method: 'mailto' },
        })),
      ),
    );
  }
  return ids.map((id) => (messages.some((m) => m.id === id) ? 'unsubscribed' : 'unmatched'));
}

async function record(
  db: Db,
  messageId: string,
  report: Exclude<InboundReport, { kind: 'other' }>,
): Promise<InboundOutcome> {
  if (report.kind === 'complaint') {
    // "not-spam" is a recipient taking back a spam verdict: nothing to suppress.
    if (report.feedbackType === 'not-spam') return 'ignored';
    const detail = compact({
      feedback_type: report.feedbackType,
      user_agent: report.userAgent,
      original_recipient: report.originalRecipient,
    });
    if (await recordComplaint(db, { messageId, feedbackType: report.feedbackType, detail }))
      return 'complained';
    return (await messageExists(db, messageId)) ? 'duplicate' : 'unmatched';
  }

  // One recipient per envelope: a DSN with several blocks (an alias expanded down the line) is
  // as bad as its worst block.
  const failed = report.recipients.find((r) => r.action === 'failed');
  const delayed = report.recipients.find((r) => r.action === 'delayed');
  const block = failed ?? delayed;
  if (!block) return 'ignored';
  const detail = dsnDetail(block, report);
  if (failed) {
    const reply =
      failed.diagnosticCode ?? `${failed.status} (reported by ${report.reportingMta ?? 'a remote MTA'})`;
    // The same verdict as a reply at RCPT TO would get; 4.x.x with action failed means a server
    // gave up retrying (soft). The remote MTA is done retrying either way, so the message becomes
    // `bounced` (even from `delivered`); only a `hard` failure suppresses the address.
    const verdict = classifyDsn(failed);
    detail.class = verdict.class;
    const late = { messageId, reply, detail, suppress: verdict.kind === 'bounce', late: true };
    if (await bounceMessage(db, late)) return 'bounced';
    // A valid tag for a message that is gone (deleted by retention) is not a repeat.
    return (await messageExists(db, messageId)) ? 'duplicate' : 'unmatched';
  }
  return (await recordDelay(db, { messageId, detail })) ? 'delayed' : 'unmatched';
}

/**
 * A DSN block's verdict: its Status, or when that is undefined (X.0.0, as plain bounces and some
 * MTAs give) the enhanced code of the Diagnostic-Code reply; the reply code for the rest.
 */
function classifyDsn(block: DsnRecipient) {
  const diagnostic = block.diagnosticCode;
  const replyCode = /^[245]\d\d(?=[ -]|$)/.exec(diagnostic ?? '')?.[0];
  const fromReply = enhancedStatus(diagnostic);
  const undefinedStatus = /^\d\.0\.0$/.test(block.status);
  return classifyRefusal({
    status: undefinedStatus && fromReply ? fromReply : block.status,
    replyCode: replyCode ? Number(replyCode) : undefined,
    reply: diagnostic,
  });
}

async function messageExists(db: Db, messageId: string): Promise<boolean> {
  const row = await db.selectFrom('messages').select('id').where('id', '=', messageId).executeTakeFirst();
  return row !== undefined;
}

function dsnDetail(
  block: DsnRecipient,
  report: Extract<InboundReport, { kind: 'dsn' }>,
): Record<string, unknown> {
  const reportingMta = report.reportingMta;
  return compact({
    async: true,
    format: report.format,
    action: block.action,
    status: block.status,
    reply: block.diagnosticCode,
    // Not `recipient`: the API shows each event with its message's recipient under that name.
    final_recipient: block.finalRecipient,
    remote_mta: block.remoteMta,
    reporting_mta: reportingMta,
  });
}
