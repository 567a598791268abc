// SMTP replies that refuse, as smtp-server's hooks take them: an Error whose `responseCode` is the
// reply code and whose message starts with the RFC 3463 enhanced status code, then says why in
// words a developer reading a client's log can act on. smtp-server writes only its own replies
// with enhanced codes, and only from a fixed table by reply code, which cannot tell a sender
// domain that is not the tenant's (5.7.1) from an unknown mailbox (5.1.1); so the listener does not
// announce ENHANCEDSTATUSCODES and every refusal of Mailplane's carries its code in its text, as
// the inbound listener's do (smtp/inbound-server.ts).

export interface Refusal extends Error {
  responseCode: number;
  /** `5.7.1`: the enhanced status code the text starts with. */
  status: string;
}

/**
 * A refusal for an smtp-server callback.
 *
 *   callback(refusal(553, '5.7.1', 'example.net is not a sending domain of this tenant'));
 *   // 553 5.7.1 example.net is not a sending domain of this tenant
 */
export function refusal(responseCode: number, status: string, text: string): Refusal {
  return Object.assign(new Error(`${status} ${text}`), { responseCode, status });
}

export function isRefusal(err: unknown): err is Refusal {
  return err instanceof Error && typeof (err as Partial<Refusal>).responseCode === 'number';
}
