// SMTP submission throughput: single-recipient messages over 10 pooled, authenticated STARTTLS
// connections (nodemailer's pool, as an application would hold one) against the real submission
// process (dist/cmd/mailplane.js submission), and the time each waits from the end of its DATA to
// the 250 — the check, the commit of the email, its message and its job, and the reply. That time
// is taken from nodemailer's own log of each connection: the end of the message it wrote, then the
// server's reply on the same connection.

import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { openDatabase } from '../lib/db/index.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { applyExamples } from '../test/helpers/platform.js';
import { startChild, stopChild } from './child.js';

const CONNECTIONS = 10;
/** Messages handed to the pool at once: enough to keep all 10 connections busy. */
const IN_FLIGHT = 40;

export interface SubmissionFigures {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  sent: number;
  failed: number;
}

type Meta = { sid?: string; tnx?: string };

/** nodemailer's logger interface, keeping only the two entries the timing needs. */
function timingLogger(latencies: number[]) {
  const dataEnd = new Map<string, bigint>();
  const ignore = () => {};
  return {
    level: ignore,
    trace: ignore,
    debug(meta: Meta, message: string) {
      if (meta.tnx !== 'server' || !meta.sid) return;
      const start = dataEnd.get(meta.sid);
      if (start === undefined || !message.startsWith('250 ')) return;
      dataEnd.delete(meta.sid);
      latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
    },
    info(meta: Meta, message: string) {
      // Logged as the last byte of the message (and its final dot) is written.
      if (meta.tnx === 'message' && meta.sid && message.includes('bytes encoded mime message')) {
        dataEnd.set(meta.sid, process.hrtime.bigint());
      }
    },
    warn: ignore,
    error: ignore,
    fatal: ignore,
  };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * Measures for `seconds` after a two-second warm-up.
 *
 *   const figures = await benchSubmission(secret, 10);
 */
export async function benchSubmission(secret: string, seconds: number): Promise<SubmissionFigures> {
  const testDb = await createTestDatabase();
  const dir = await mkdtemp(join(tmpdir(), 'mailplane-bench-tls-'));
  try {
    const database = openDatabase(testDb.url);
    const keys = await applyExamples(database.db, secret);
    await database.close();
    const key = keys.get('default/acme/backend')!;

    const cert = join(dir, 'tls.crt');
    const tlsKey = join(dir, 'tls.key');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost'].concat([
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout',
        tlsKey,
        '-out',
        cert,
      ]),
      { stdio: 'ignore' },
    );
    const { child, match } = await startChild(
      ['dist/cmd/mailplane.js', 'submission'],
      {
        DATABASE_URL: testDb.url,
        MAILPLANE_SECRET_KEY: secret,
        PORT: '0',
        MAILPLANE_SUBMISSION_PORT: '0',
        MAILPLANE_SUBMISSIONS_PORT: '0',
        MAILPLANE_TLS_CERT_FILE: cert,
        MAILPLANE_TLS_KEY_FILE: tlsKey,
        LOG_LEVEL: 'info',
      },
      /"port":(\d+),"securePort":(\d+)/,
    );
    try {
      const latencies: number[] = [];
      const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port: Number(match[1]),
        secure: false,
        requireTLS: true,
        pool: true,
        maxConnections: CONNECTIONS,
        maxMessages: Infinity,
        auth: { user: 'bench', pass: key },
        tls: { ca: await readFile(cert), servername: 'localhost' },
        logger: timingLogger(latencies) as never,
        // The server's replies are logged only in debug mode; the timing needs them.
        debug: true,
      });
      let sent = 0;
      let failed = 0;
      const run = async (ms: number) => {
        const until = Date.now() + ms;
        const worker = async () => {
          while (Date.now() < until) {
            await transport
              .sendMail({
                from: 'Acme <hello@example.com>',
                to: 'ada@example.org',
                subject: 'Your receipt',
                html: '<p>Thanks for your order.</p>',
              })
              .then(
                () => sent++,
                () => failed++,
              );
          }
        };
        await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      };
      await run(2000);
      sent = 0;
      failed = 0;
      latencies.length = 0;
      const started = process.hrtime.bigint();
      await run(seconds * 1000);
      const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
      transport.close();
      const sorted = [...latencies].sort((a, b) => a - b);
      return {
        perSecond: sent / elapsed,
        p50Ms: percentile(sorted, 50),
        p99Ms: percentile(sorted, 99),
        sent,
        failed,
      };
    } finally {
      await stopChild(child);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
    await testDb.drop();
  }
}

export const submissionConnections = CONNECTIONS;
