// One-click unsubscribes: POST /u/<token> (RFC 8058's `List-Unsubscribe=One-Click`) at 50
// concurrent connections against the real api process, from the recipients of 1000 messages, as a
// campaign's readers pressing the button at once, and again (a second press changes nothing).
// Each first press must leave its suppression and its one `unsubscribed` event.

import autocannon from 'autocannon';
import pg from 'pg';
import { readConfig } from '../lib/config.js';
import { unsubscribeToken } from '../lib/unsubscribe.js';
import { loadConnections, startServer } from './api.js';
import { stopChild } from './child.js';

const MESSAGES = 1000;
const BATCH = 100;

/**
 * The figures, as label and value lines. `apiKey` sends the messages whose links are pressed;
 * `command` starts the api (the build by default).
 *
 *   const { lines } = await benchUnsubscribe(env, apiKey, 10);
 */
export async function benchUnsubscribe(
  env: Record<string, string>,
  apiKey: string,
  seconds: number,
  command: string[] = ['dist/cmd/mailplane.js', 'api'],
): Promise<{ lines: [string, string][] }> {
  const config = readConfig(env);
  const api = await startServer(command, env);
  const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
  try {
    const base = `http://127.0.0.1:${api.port}`;
    const ids: string[] = [];
    for (let b = 0; b < MESSAGES / BATCH; b++) {
      const sent = await fetch(`${base}/v1/emails/batch`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(
          Array.from({ length: BATCH }, (_, i) => ({
            from: 'hello@example.com',
            to: `reader-${b * BATCH + i}@example.org`,
            subject: 'News',
            html: '<p>x</p>',
            unsubscribe: true,
          })),
        ),
      });
      ids.push(...((await sent.json()) as { data: { id: string }[] }).data.map((e) => e.id));
    }
    const { rows } = await pool.query<{ id: string; tenant_id: string; recipient: string }>(
      'select id, tenant_id, recipient from messages where email_id = any($1::uuid[])',
      [ids],
    );
    const paths = rows.map(
      (m) =>
        `/u/${unsubscribeToken(config.secretKey, { tenantId: m.tenant_id, messageId: m.id, address: m.recipient })}`,
    );
    // Every connection takes the next link, so that the first 1000 presses are 1000 recipients.
    let next = 0;
    const result = await autocannon({
      url: base,
      connections: loadConnections,
      duration: seconds,
      requests: [
        {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: 'List-Unsubscribe=One-Click',
          setupRequest: (request) => ({ ...request, path: paths[next++ % paths.length]! }),
        },
      ],
    });
    const counted = async (query: string) =>
      Number((await pool.query<{ n: string }>(query, [rows.map((m) => m.id)])).rows[0]!.n);
    const events = await counted(
      `select count(*) as n from events where type = 'unsubscribed' and message_id = any($1::uuid[])`,
    );
    const suppressed = await counted(
      `select count(*) as n from suppressions s join messages m on m.tenant_id = s.tenant_id
       and lower(m.recipient) = s.address where m.id = any($1::uuid[]) and s.reason = 'unsubscribe'`,
    );
    return {
      lines: [
        [
          'unsubscribes/s',
          `${result.requests.average.toFixed(0)}   p99 ${result.latency.p99} ms, ${result.non2xx} non-2xx, ${result.errors} errors`,
        ],
        ['recipients suppressed / events', `${suppressed} / ${events} of ${rows.length}   (each once)`],
      ],
    };
  } finally {
    await stopChild(api.child);
    await pool.end();
  }
}
