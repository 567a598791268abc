// What a message arriving at the inbound listener reports: a delivery status notification (DSN,
// RFC 3464: `multipart/report; report-type=delivery-status`), a complaint (ARF, RFC 5965:
// `report-type=feedback-report`), or neither (an auto-reply, an out-of-office, a person writing
// back to the return path). The machine-readable parts are read first. A bounce without them —
// sendmail's, Exim's (X-Failed-Recipients), qmail's — is read for the one thing every MTA quotes
// the same way: the SMTP reply of the server that refused (`550 5.1.1 …`, qmail's `(#5.1.1)`),
// and only when the message looks like such a bounce (readPlainBounce), so that a person writing
// back to the return path about "error 550" is not taken for one. The listener matches it by the
// signed return path it was sent to, as it does DSNs.

/** One per-recipient block of a DSN. */
export interface DsnRecipient {
  /** Final-Recipient, without its `rfc822;` type. */
  finalRecipient: string;
  /** failed | delayed | delivered | relayed | expanded (RFC 3464 §2.3.3). */
  action: string;
  /** The enhanced status code (RFC 3463), e.g. 5.1.1. */
  status: string;
  /** Diagnostic-Code without its `smtp;` type: the reply of the server that refused. */
  diagnosticCode?: string;
  /** Remote-MTA without its `dns;` type. */
  remoteMta?: string;
}

export type InboundReport =
  | {
      kind: 'dsn';
      /** Reporting-MTA, without its `dns;` type. */
      reportingMta?: string;
      recipients: DsnRecipient[];
      /** Return-Path of the original message, when the report includes its headers. */
      originalReturnPath?: string;
      /** `plain`: read from a bounce without a delivery-status part (readPlainBounce). */
      format?: 'plain';
    }
  | {
      kind: 'complaint';
      /** Feedback-Type: abuse, fraud, virus, other, not-spam (RFC 5965 §7.3). */
      feedbackType: string;
      userAgent?: string;
      /** Original-Rcpt-To: the address that complained, when the provider discloses it. */
      originalRecipient?: string;
      originalReturnPath?: string;
      /**
       * Original-Mail-From (RFC 5965 §3.2): the envelope sender of the original, which is our
       * signed return path; it names the message when the attached original lacks Return-Path.
       */
      originalMailFrom?: string;
    }
  | { kind: 'other'; subject?: string };

/** Reports nest (a report inside a forwarded message); deeper than this is not a real report. */
const MAX_DEPTH = 4;

type Fields = Map<string, string>;

interface Entity {
  headers: Fields;
  body: Buffer;
}

/**
 * Reads a raw message (as received over SMTP).
 *
 *   parseReport(raw)   // { kind: 'dsn', recipients: [{ action: 'failed', status: '5.1.1', … }], … }
 */
export function parseReport(raw: Buffer): InboundReport {
  const top = splitEntity(raw);
  return findReport(top, 0) ?? readPlainBounce(top) ?? { kind: 'other', subject: top.headers.get('subject') };
}

function findReport(entity: Entity, depth: number): InboundReport | undefined {
  if (depth > MAX_DEPTH) return undefined;
  const { type, params } = contentType(entity.headers);
  if (!type.startsWith('multipart/')) return undefined;
  const parts = multipartParts(decodeBody(entity), params.get('boundary'));
  if (type === 'multipart/report') {
    const reportType = params.get('report-type')?.toLowerCase();
    const byType = (wanted: string) => parts.find((p) => contentType(p.headers).type === wanted);
    const originalReturnPath = originalReturnPathOf(parts);
    if (reportType === 'delivery-status') {
      const status = byType('message/delivery-status') ?? byType('message/global-delivery-status');
      if (status) return { ...readDsn(decodeBody(status)), ...compact({ originalReturnPath }) };
    }
    if (reportType === 'feedback-report') {
      const feedback = byType('message/feedback-report');
      if (feedback) {
        const fields = fieldGroups(decodeBody(feedback))[0] ?? new Map();
        return {
          kind: 'complaint',
          feedbackType: (fields.get('feedback-type') ?? 'other').toLowerCase(),
          ...compact({
            userAgent: fields.get('user-agent'),
            originalRecipient: fields.get('original-rcpt-to'),
            originalReturnPath,
            originalMailFrom: fields.get('original-mail-from')?.replace(/^\s*<(.*)>\s*$/, '$1'),
          }),
        };
      }
    }
  }
  for (const part of parts) {
    const found = findReport(part, depth + 1);
    if (found) return found;
  }
  return undefined;
}

function readDsn(body: Buffer): Extract<InboundReport, { kind: 'dsn' }> {
  const [perMessage, ...perRecipient] = fieldGroups(body);
  const recipients: DsnRecipient[] = [];
  for (const fields of perRecipient) {
    const action = fields.get('action')?.toLowerCase();
    const status = /\d\.\d{1,3}\.\d{1,3}/.exec(fields.get('status') ?? '')?.[0];
    if (!action || !status) continue; // both are required by RFC 3464; a block without them says nothing
    recipients.push({
      finalRecipient: typedField(fields, 'final-recipient') ?? typedField(fields, 'original-recipient') ?? '',
      action,
      status,
      ...compact({
        diagnosticCode: typedField(fields, 'diagnostic-code'),
        remoteMta: typedField(fields, 'remote-mta'),
      }),
    });
  }
  return {
    kind: 'dsn',
    recipients,
    ...compact({ reportingMta: perMessage && typedField(perMessage, 'reporting-mta') }),
  };
}

/**
 * What says a message is an MTA's bounce although it has no delivery-status part: Exim's header,
 * qmail's and sendmail's fixed sentences, or a mailer-daemon sender with a bounce subject.
 */
const PLAIN_BOUNCE_BODY =
  /qmail-send program|I'm afraid I wasn't able to deliver|Transcript of session follows|could not be delivered to one or more of its\s+recipients/i;
const BOUNCE_SENDER = /^(?:.*<)?\s*(?:mailer-daemon|postmaster)@/i;
const BOUNCE_SUBJECT =
  /undeliver|returned mail|delivery (?:status notification|failure|failed|has failed)|failure notice|mail delivery failed|could not be delivered/i;
/** A delay warning, which some MTAs send in the same plain format: the delivery is still tried. */
const WARNING_SUBJECT = /\bwarning\b|\bdelayed\b/i;
/**
 * A quoted SMTP reply at the start of a line, after the prefixes these formats put before it:
 * sendmail's `<<< `, qmail's `Remote host said: `, Exim's `host mx.example [192.0.2.1]: `.
 */
const QUOTED_REPLY = /^\s*(?:<<<\s*|Remote host said:\s*|host\s+\S+\s+\[[^\]]*\]:\s*)?([45]\d\d)[ -](\S.*)$/;
const QMAIL_STATUS = /\(#([245]\.\d{1,3}\.\d{1,3})\)/;
const ENHANCED = /^([245]\.\d{1,3}\.\d{1,3})(?!\d)/;
/** A recipient in the formats above: qmail's `<a@b>:` line, sendmail's `a@b... `, `RCPT To:<a@b>`. */
const QMAIL_RECIPIENT = /^<([^<>\s]+@[^<>\s]+)>:\s*$/;
const RCPT_RECIPIENT = /RCPT TO:\s*<([^<>\s]+@[^<>\s]+)>/i;

/**
 * A bounce without a delivery-status part, as one DSN recipient block: the failed recipient when
 * it is named, the first quoted SMTP reply as the Diagnostic-Code, its enhanced code (or X.0.0
 * from the reply code) as the Status. Undefined when the message does not look like a bounce or
 * quotes no reply.
 */
function readPlainBounce(top: Entity): Extract<InboundReport, { kind: 'dsn' }> | undefined {
  const subject = top.headers.get('subject') ?? '';
  const failedRecipients = top.headers.get('x-failed-recipients');
  const text = plainText(top);
  if (text === undefined) return undefined;
  const looksLikeBounce =
    failedRecipients !== undefined ||
    PLAIN_BOUNCE_BODY.test(text) ||
    (BOUNCE_SENDER.test(top.headers.get('from') ?? '') && BOUNCE_SUBJECT.test(subject));
  if (!looksLikeBounce) return undefined;

  let reply: string | undefined;
  let status: string | undefined;
  let recipient = failedRecipients?.split(',')[0]?.trim();
  for (const line of text.split(/\r?\n/)) {
    recipient ??= QMAIL_RECIPIENT.exec(line.trim())?.[1] ?? RCPT_RECIPIENT.exec(line)?.[1];
    const quoted = QUOTED_REPLY.exec(line);
    if (quoted) {
      reply = `${quoted[1]} ${quoted[2]!.trim()}`;
      status = ENHANCED.exec(quoted[2]!)?.[1] ?? QMAIL_STATUS.exec(line)?.[1] ?? `${quoted[1]![0]}.0.0`;
      break;
    }
    const qmail = QMAIL_STATUS.exec(line);
    if (qmail) {
      reply = line.trim();
      status = qmail[1];
      break;
    }
  }
  if (!reply || !status) return undefined;
  return {
    kind: 'dsn',
    format: 'plain',
    recipients: [
      {
        finalRecipient: recipient ?? '',
        action: WARNING_SUBJECT.test(subject) ? 'delayed' : 'failed',
        status,
        diagnosticCode: reply,
      },
    ],
  };
}

/** The text of a plain message, or of the first text/plain part of a multipart one. */
function plainText(entity: Entity): string | undefined {
  const { type, params } = contentType(entity.headers);
  if (type === 'text/plain') return decodeBody(entity).toString('utf8');
  if (!type.startsWith('multipart/')) return undefined;
  const part = multipartParts(decodeBody(entity), params.get('boundary')).find(
    (p) => contentType(p.headers).type === 'text/plain',
  );
  return part ? decodeBody(part).toString('utf8') : undefined;
}

/** The original message's Return-Path, from its headers (message/rfc822 or text/rfc822-headers). */
function originalReturnPathOf(parts: Entity[]): string | undefined {
  for (const part of parts) {
    const { type } = contentType(part.headers);
    if (
      type !== 'message/rfc822' &&
      type !== 'text/rfc822-headers' &&
      type !== 'message/global' &&
      type !== 'message/global-headers'
    )
      continue;
    const original = splitEntity(decodeBody(part));
    const returnPath = original.headers.get('return-path');
    if (returnPath) return returnPath.replace(/^\s*<(.*)>\s*$/, '$1');
  }
  return undefined;
}

/** A DSN field without its type: `rfc822; ada@example.org` → `ada@example.org`, `smtp; 550 …` → `550 …`. */
function typedField(fields: Fields, name: string): string | undefined {
  const value = fields.get(name);
  if (value === undefined) return undefined;
  const semicolon = value.indexOf(';');
  return (semicolon >= 0 ? value.slice(semicolon + 1) : value).trim();
}

/** The fields that have a value: optional properties stay absent instead of being undefined or ''. */
export function compact<T extends Record<string, unknown>>(fields: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(fields).filter(([, v]) => v !== undefined && v !== ''),
  ) as Partial<T>;
}

/** Headers and body of one entity; header names lower-cased, folded lines joined, first one kept. */
function splitEntity(raw: Buffer): Entity {
  let end = raw.indexOf('\r\n\r\n');
  let gap = 4;
  const lfEnd = raw.indexOf('\n\n');
  if (lfEnd >= 0 && (end < 0 || lfEnd < end)) {
    end = lfEnd;
    gap = 2;
  }
  if (end < 0) return { headers: parseFields(raw.toString('latin1')), body: Buffer.alloc(0) };
  return { headers: parseFields(raw.subarray(0, end).toString('latin1')), body: raw.subarray(end + gap) };
}

function parseFields(text: string): Fields {
  const fields: Fields = new Map();
  for (const line of text.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!fields.has(name)) fields.set(name, line.slice(colon + 1).trim());
  }
  return fields;
}

/** A DSN or ARF body: groups of header-style fields separated by blank lines. */
function fieldGroups(body: Buffer): Fields[] {
  return body
    .toString('utf8')
    .split(/\r?\n(?:[ \t]*\r?\n)+/)
    .map(parseFields)
    .filter((fields) => fields.size > 0);
}

function contentType(headers: Fields): { type: string; params: Map<string, string> } {
  const value = headers.get('content-type') ?? 'text/plain';
  const [type = '', ...rest] = splitParams(value);
  const params = new Map<string, string>();
  for (const param of rest) {
    const eq = param.indexOf('=');
    if (eq <= 0) continue;
    const raw = param.slice(eq + 1).trim();
    params.set(
      param.slice(0, eq).trim().toLowerCase(),
      raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw,
    );
  }
  return { type: type.trim().toLowerCase(), params };
}

/** Splits on semicolons outside quotes. */
function splitParams(value: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && quoted) {
      current += c + (value[++i] ?? '');
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === ';' && !quoted) {
      out.push(current);
      current = '';
    } else current += c;
  }
  out.push(current);
  return out;
}

function multipartParts(body: Buffer, boundary: string | undefined): Entity[] {
  if (!boundary) return [];
  const text = body.toString('latin1');
  const delimiter = `--${boundary}`;
  const parts: Entity[] = [];
  const part = (from: number, to: number) =>
    parts.push(splitEntity(Buffer.from(text.slice(from, Math.max(from, to)), 'latin1')));
  let start = -1;
  for (let at = text.indexOf(delimiter); at >= 0; at = text.indexOf(delimiter, at + delimiter.length)) {
    // A delimiter counts only at the start of a line.
    if (at > 0 && text[at - 1] !== '\n') continue;
    if (start >= 0) part(start, text[at - 2] === '\r' ? at - 2 : at - 1);
    start = -1;
    if (text.startsWith('--', at + delimiter.length)) return parts; // the close delimiter
    const lineEnd = text.indexOf('\n', at);
    if (lineEnd < 0) return parts;
    start = lineEnd + 1;
  }
  // No close delimiter: the message was cut short (the listener keeps only its first megabyte),
  // and the last part is read as far as it goes.
  if (start >= 0) part(start, text.length);
  return parts;
}

function decodeBody(entity: Entity): Buffer {
  const encoding = entity.headers.get('content-transfer-encoding')?.toLowerCase();
  if (encoding === 'base64') return Buffer.from(entity.body.toString('latin1'), 'base64');
  if (encoding === 'quoted-printable') {
    const text = entity.body
      .toString('latin1')
      .replace(/=\r?\n/g, '')
      .replace(/=([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    return Buffer.from(text, 'latin1');
  }
  return entity.body;
}
