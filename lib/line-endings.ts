// CRLF line endings throughout, as SMTP carries a message (RFC 5321 2.3.8) and as DKIM signs it:
// what the sender composes (sender/fold.ts) and what SMTP submission takes from a client, which
// may have written bare LFs.

/**
 * Converts every bare CR and bare LF to CRLF.
 *
 *   toCrlf('a\rb\nc\r\n')   // 'a\r\nb\r\nc\r\n'
 */
export function toCrlf(text: string): string {
  return text.replace(/\r\n|\r|\n/g, '\r\n');
}

/**
 * A message with CRLF line endings throughout (a copy only when something changes).
 *
 *   const clean = normalizeLineEndings(raw);
 */
export function normalizeLineEndings(message: Buffer): Buffer {
  // latin1 maps bytes to characters one to one, so UTF-8 and binary content pass unchanged.
  const text = message.toString('latin1');
  if (!/\r(?!\n)|(?<!\r)\n/.test(text)) return message;
  return Buffer.from(toCrlf(text), 'latin1');
}
