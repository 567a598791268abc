// The header fields of a message as a client wrote it (RFC 5322 2.2): where each field starts and
// ends, so that one can be dropped or added without touching the others or the body. SMTP
// submission keeps a client's message as it was, but for the fields Mailplane removes
// (X-Mailplane-Tags when it accepts the message, Bcc when it sends it) and those it adds when
// missing (Message-ID, Date); everything else — folding, encoding, the MIME structure — stays byte
// for byte. Reading values (addresses, encoded words) is mailparser's.
//
// Bytes are handled as latin1, which maps each byte to one character, so that 8-bit and UTF-8
// header text passes through unchanged.

/** One header field: its name and its text, continuation lines and final CRLF included. */
export interface HeaderField {
  name: string;
  /** `Name: value\r\n`, folded as the client folded it. */
  text: string;
}

export interface SplitMessage {
  fields: HeaderField[];
  /** Everything after the empty line that ends the header; empty when there is none. */
  body: Buffer;
}

/**
 * Splits a message (CRLF line endings) into its header fields and its body. A line that is not a
 * field (no colon in it) is kept with the field before it, as a receiver would read it.
 *
 *   const { fields, body } = splitHeader(Buffer.from('Subject: hi\r\nTo: a@b.c\r\n\r\nbody'));
 *   // fields: [{ name: 'Subject', … }, { name: 'To', … }]
 */
export function splitHeader(message: Buffer): SplitMessage {
  const text = message.toString('latin1');
  let end = text.startsWith('\r\n') ? 0 : text.indexOf('\r\n\r\n');
  let bodyStart: number;
  if (end < 0) {
    end = text.length;
    bodyStart = text.length;
  } else {
    bodyStart = end === 0 ? 2 : end + 4;
    if (end > 0) end += 2;
  }
  const fields: HeaderField[] = [];
  for (const line of text.slice(0, end).split(/(?<=\r\n)/)) {
    if (line === '') continue;
    const previous = fields.at(-1);
    const colon = line.indexOf(':');
    if (previous && (/^[ \t]/.test(line) || colon <= 0)) previous.text += line;
    else fields.push({ name: (colon > 0 ? line.slice(0, colon) : line).trim(), text: line });
  }
  const last = fields.at(-1);
  if (last && !last.text.endsWith('\r\n')) last.text += '\r\n';
  return { fields, body: message.subarray(Math.min(bodyStart, message.length)) };
}

/** The message again, from its fields and its body. */
export function joinHeader({ fields, body }: SplitMessage): Buffer {
  return Buffer.concat([Buffer.from(fields.map((f) => f.text).join('') + '\r\n', 'latin1'), body]);
}

/** The value of a field: after the colon, unfolded, trimmed. */
export function fieldValue(field: HeaderField): string {
  const colon = field.text.indexOf(':');
  return field.text
    .slice(colon + 1)
    .replace(/\r\n(?=[ \t])/g, '')
    .replace(/\r\n$/, '')
    .trim();
}

/** Whether the field is named `name`, in any case. */
export function isField(field: HeaderField, name: string): boolean {
  return field.name.toLowerCase() === name.toLowerCase();
}
