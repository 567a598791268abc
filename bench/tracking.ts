// Tracked-link redirects: GET /t/c/<token> at 50 concurrent connections against the real api
// process, each request a different link of one of a few messages (as a scanner fetching every
// link of every message at once), every click recorded; and a bare express 302 (bench/bare-api.ts)
// as the ceiling. The api is started with the tracking burst signal on, its default.

import autocannon from 'autocannon';
import pg from 'pg';
import { readConfig } from '../lib/config.js';
import { clickUrl } from '../lib/tracking.js';
import { loadConnections, startServer } from './api.js';
import { stopChild } from './child.js';

/** Enough that a link comes round again only after the recorder's 2 s repeat window: each click is written. */
const LINKS = 20_000;
const TRACKING_HOST = 'track.example.com';

async function get(url: string, paths: string[], seconds: number) {
  // One counter for every connection: each request the next link, not each connection the same list.
  let next = 0;
  const options = {
    url,
    connections: loadConnections,
    requests: [
      {
        method: 'GET' as const,
        // A tracked link redirects only under the host it was made for, as a person's click comes.
        headers: { host: TRACKING_HOST },
        setupRequest: (request: autocannon.Request) => ({ ...request, path: paths[next++ % paths.length]! }),
      },
    ],
  };
  await autocannon({ ...options, duration: 2 });
  const result = await autocannon({ ...options, duration: seconds });
  return {
    perSecond: result.requests.average,
    p99: result.latency.p99,
    non3xx: result.non2xx - (result['3xx'] ?? 0),
    errors: result.errors,
  };
}

/**
 * The figures, as label and value lines. `apiKey` sends the messages whose links are clicked.
 *
 *   const { lines } = await benchTracking(env, apiKey, 10);
 */
export async function benchTracking(
  env: Record<string, string>,
  apiKey: string,
  seconds: number,
): Promise<{ lines: [string, string][] }> {
  const config = readConfig(env);
  // The bench clicks thousands of links of four messages, far past a message's hourly cap of
  // stored events (MAILPLANE_TRACKING_EVENTS_PER_HOUR): off here, so that every click is written.
  const api = await startServer(['dist/cmd/mailplane.js', 'api'], {
    ...env,
    MAILPLANE_TRACKING_EVENTS_PER_HOUR: '0',
  });
  const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
  try {
    const base = `http://127.0.0.1:${api.port}`;
    const sent = await fetch(`${base}/v1/emails/batch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(
        Array.from({ length: 4 }, (_, i) => ({
          from: 'hello@example.com',
          to: `reader-${i}@example.org`,
          subject: 'Links',
          html: '<p>x</p>',
        })),
      ),
    });
    const ids = ((await sent.json()) as { data: { id: string }[] }).data.map((e) => e.id);
    const { rows } = await pool.query<{ id: string }>(
      'select id from messages where email_id = any($1::uuid[])',
      [ids],
    );
    const { count: before } = (
      await pool.query<{ count: string }>(`select count(*) from events where type = 'clicked'`)
    ).rows[0]!;
    const paths = Array.from({ length: LINKS }, (_, i) => {
      const url = clickUrl(
        config.secretKey,
        `https://${TRACKING_HOST}`,
        rows[i % rows.length]!.id,
        Date.now() - 3600_000,
        `https://shop.example.com/products/${i}?utm_source=newsletter&utm_medium=email#reviews`,
      );
      return new URL(url).pathname;
    });
    const tracked = await get(base, paths, seconds);
    await stopChild(api.child);
    const { count: after } = (
      await pool.query<{ count: string }>(`select count(*) from events where type = 'clicked'`)
    ).rows[0]!;

    const bare = await startServer(['--import', 'tsx', 'bench/bare-api.ts'], env);
    const ceiling = await get(`http://127.0.0.1:${bare.port}`, ['/redirect'], seconds);
    await stopChild(bare.child);
    return {
      lines: [
        [
          'redirects/s',
          `${tracked.perSecond.toFixed(0)}   p99 ${tracked.p99} ms, ${tracked.non3xx} not 302, ${tracked.errors} errors`,
        ],
        ['clicks recorded', `${Number(after) - Number(before)}   (repeats within 2 s of one client are one)`],
        ['bare ceiling (express 302), req/s', `${ceiling.perSecond.toFixed(0)}   p99 ${ceiling.p99} ms`],
        ['ratio', (tracked.perSecond / ceiling.perSecond).toFixed(2)],
      ],
    };
  } finally {
    await stopChild(api.child);
    await pool.end();
  }
}
