// The ceiling the api is measured against: express parsing a JSON body, one row inserted and its
// job queued, grouped the same way the api groups — and nothing else (no auth, validation,
// domain check or per-recipient rows). Run as its own process by bench/run.ts.

import { randomUUID } from 'node:crypto';
import express from 'express';
import pg from 'pg';
import { createGroupCommitter } from '../lib/group-commit.js';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 20 });
await pool.query('create table if not exists bench_rows (id uuid primary key, body jsonb not null)');

const committer = createGroupCommitter<{ id: string; body: unknown }>(
  async (rows) => {
    await pool.query(
      `with r as (insert into bench_rows select * from jsonb_to_recordset($1::jsonb) as x(id uuid, body jsonb) returning id)
       select count(*) from graphile_worker.add_jobs((select array_agg(row('bench_noop', json_build_object('id', id),
         null, null, 10, null, null, null)::graphile_worker.job_spec) from r))`,
      [JSON.stringify(rows)],
    );
  },
  { maxInFlight: 4, maxGroup: 500 },
);

const app = express();
app.use(express.json());
app.post('/send', async (req, res) => {
  const id = randomUUID();
  await committer.write([{ id, body: req.body }]);
  res.status(202).json({ id });
});
// The ceiling of a tracked-link redirect (bench/tracking.ts): express answering a 302, nothing more.
app.get('/redirect', (_req, res) =>
  res.redirect(302, 'https://shop.example.com/products/1?utm_source=newsletter#reviews'),
);
const server = app.listen(Number(process.env.PORT ?? 0), () => {
  process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`);
});
