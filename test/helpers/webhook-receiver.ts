// A loopback webhook receiver: keeps every request it gets, verified with the official
// `standardwebhooks` library and with Svix's own (`svix`, which reads its `svix-*` headers or
// these `webhook-*` ones) against each secret the test knows at that moment, and answers what the
// test says.
//
//   const receiver = await startWebhookReceiver(() => [secret]);
//   … await eventually('the event', async () => receiver.received.some((r) => r.body.type === 'email.delivered'));

import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { Webhook as SvixWebhook } from 'svix';

export interface ReceivedWebhook {
  headers: Record<string, string>;
  body: { type: string; created_at: string; data: Record<string, unknown> };
  /** The secrets, of those known when it arrived, that its signature verifies with, in both libraries. */
  verifiedWith: string[];
}

export interface WebhookReceiver {
  /** http://127.0.0.1:<port>/hooks */
  url: string;
  received: ReceivedWebhook[];
  close(): Promise<void>;
}

export async function startWebhookReceiver(
  secrets: () => string[],
  status: () => number = () => 200,
): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      const verifiedWith = secrets().filter((secret) => {
        try {
          new Webhook(secret).verify(raw, headers);
          new SvixWebhook(secret).verify(raw, headers);
          return true;
        } catch {
          return false;
        }
      });
      received.push({ headers, body: JSON.parse(raw) as ReceivedWebhook['body'], verifiedWith });
      const answer = status();
      res.writeHead(answer).end(`answered ${answer}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
