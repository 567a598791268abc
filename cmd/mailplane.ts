#!/usr/bin/env -S node --no-node-snapshot
// `mailplane <command>`: one binary, one image, a command per Deployment. This file only maps a
// command to the module that runs it; each process wires itself in its own main.ts.
//
// Node runs without its startup snapshot: isolated-vm, the template sandbox, requires it.

const USAGE = `Usage: mailplane <command> [options]

Commands:
  api        serve the REST API on $PORT (default 8080)
  sender     run send jobs
  smtp       take bounces and complaints on $MAILPLANE_SMTP_PORT (default 2525)
  operator   reconcile Tenant, SendingDomain and Template resources ($KUBECONFIG or in-cluster)
  migrate    apply database migrations and exit
  apply      apply Tenant, SendingDomain and Template manifests to Postgres (apply --help)
  dev        everything on an embedded Postgres with a local inbox (development installs only)

Configuration is read from the environment; see the README.`;

type Env = Record<string, string | undefined>;

/** Long-running processes resolve once started and exit from their signal handlers. */
const PROCESSES: Record<string, () => Promise<{ main(env: Env): Promise<void> }>> = {
  api: () => import('../api/main.js'),
  sender: () => import('../sender/main.js'),
  smtp: () => import('../smtp/main.js'),
  operator: () => import('../operator/main.js'),
};

async function run(argv: string[], env: Env): Promise<number | 'running'> {
  const [command, ...rest] = argv;
  if (command && command in PROCESSES) {
    if (rest.includes('--help') || rest.includes('-h')) return help(0);
    await (await PROCESSES[command]!()).main(env);
    return 'running';
  }
  switch (command) {
    case 'migrate': {
      const { migrateCommand } = await import('../lib/runtime.js');
      return migrateCommand(env);
    }
    case 'apply': {
      const { applyCommand } = await import('../lib/reconcile/cli.js');
      return applyCommand(rest, env);
    }
    case 'dev': {
      let dev: { main(env: Env): Promise<void> };
      try {
        dev = await import('../dev/main.js');
      } catch (err) {
        // The container image leaves out dev/ and its development dependencies.
        if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
        process.stderr.write(
          'mailplane dev runs from a development install (clone the repository, then `make dev`);\n' +
            'this installation runs api, sender, smtp, operator, migrate and apply.\n',
        );
        return 2;
      }
      await dev.main(env);
      return 'running';
    }
    case undefined:
      return help(2);
    case 'help':
    case '--help':
    case '-h':
      return help(0);
    default:
      process.stderr.write(`mailplane: unknown command "${command}"\n\n${USAGE}\n`);
      return 2;
  }
}

function help(code: number): number {
  (code === 0 ? process.stdout : process.stderr).write(`${USAGE}\n`);
  return code;
}

run(process.argv.slice(2), process.env).then(
  (code) => {
    if (code !== 'running') process.exit(code);
  },
  async (err: unknown) => {
    const { isUserError } = await import('../lib/user-error.js');
    // A mistake the user can fix is one line; a bug keeps its stack trace.
    process.stderr.write(`mailplane: ${isUserError(err) ? err.message : ((err as Error)?.stack ?? String(err))}\n`);
    process.exit(1);
  },
);
