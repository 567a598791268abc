#!/usr/bin/env -S node --no-node-snapshot
// `mailplane <command>`: one binary, one image, a command per Deployment. This file only maps a
// command to the module that runs it (each process wires itself in its own main.ts) and says,
// for `mailplane <command> --help`, which settings each one reads.
//
// Node runs without its startup snapshot: isolated-vm, the template sandbox, requires it.

const USAGE = `Usage: mailplane <command> [options]

Commands:
  api        serve the REST API on $PORT (default 8080)
  sender     run send jobs
  smtp       take bounces and complaints on $MAILPLANE_SMTP_PORT (default 2525)
  submission take mail from applications over authenticated SMTP on 587 (STARTTLS) and 465 (TLS)
  operator   reconcile Tenant, SendingDomain and Template resources ($KUBECONFIG or in-cluster)
  migrate    apply database migrations and exit
  apply      apply Tenant, SendingDomain and Template manifests to Postgres
  suppressions  import or export a tenant's suppression list as CSV, through the API
  dev        everything on an embedded Postgres with a local inbox (development installs only)

\`mailplane <command> --help\` lists a command's settings. Configuration is read from the
environment; see the README.`;

/** Every process needs these; each help lists them first. */
const COMMON = `  DATABASE_URL                        Postgres connection string (required)
  MAILPLANE_SECRET_KEY                the installation's key, 32+ characters (required); DKIM
                                      keys are stored encrypted under it
  LOG_LEVEL                           debug, info, warn or error (info); JSON lines on stdout
  MAILPLANE_DATABASE_POOL_SIZE        Postgres connections this process may open (10)`;

const RENDER = `  MAILPLANE_RENDER_TIMEOUT_MS         time limit of one template render (250)
  MAILPLANE_RENDER_MEMORY_MB          memory limit of one template isolate (32)
  MAILPLANE_RENDER_ISOLATES           template isolates, shared fairly between tenants (2)`;

const help = (usage: string, about: string, settings: string) =>
  `Usage: ${usage}\n\n${about}\n\nSettings (environment):\n${COMMON}\n${settings}`;

/** `mailplane <command> --help` for the commands that take no options of their own. */
const HELP: Record<string, string> = {
  api: help(
    'mailplane api',
    'Serves the REST API (Resend-compatible /v1/emails, /v1/domains), /healthz, /readyz and\n/metrics. Applies pending migrations at start.',
    `  PORT                                HTTP port (8080)
  MAILPLANE_MAX_MESSAGE_BYTES         largest body plus attachments of one email (10485760)
  MAILPLANE_MAX_RECIPIENTS            recipients per email unless the Tenant sets its own (50)
  MAILPLANE_INBOUND_HOST              public name of the inbound smtp service, listed as the
                                      return-path MX in /v1/domains (unset: none listed)
  MAILPLANE_SPF_INCLUDE               the relay's SPF domains, each an include: in SPF records
  MAILPLANE_EGRESS_IPS                addresses or CIDR ranges mail leaves from, each ip4:/ip6:
  MAILPLANE_DMARC_RUA                 addresses DMARC aggregate reports go to (rua=mailto:)
  MAILPLANE_PUBLIC_URL                public base URL of /t/ and /u/: tracking domains are CNAMEs
                                      of its host
  MAILPLANE_TRUST_PROXY               proxies whose X-Forwarded-For names a tracking fetch's
                                      client: a hop count or CIDRs (unset: none)
  MAILPLANE_TRACKING_SCAN_SECONDS     a click sooner after sending is a link scanner's (5)
  MAILPLANE_TRACKING_BURST_LINKS      links of a message clicked at once that are a scanner's (3)
  MAILPLANE_TRACKING_BURST_SECONDS    the window of those clicks (2)
  MAILPLANE_TRACKING_EVENTS_PER_HOUR  opens, and clicks, stored per message per hour (200; 0: all)
  MAILPLANE_TRACKING_SIGNALS_FILE     JSON of machine networks and user agents (the shipped list)`,
  ),
  sender: help(
    'mailplane sender',
    'Runs the send jobs: renders, builds MIME, DKIM-signs and delivers each message, retrying 4xx\nand bouncing on 5xx. Serves /healthz, /readyz and /metrics on $PORT.',
    `  PORT                                HTTP port of the probes and metrics (8080)
  MAILPLANE_RELAY_URL                 smtp(s)://user:pass@host:port to relay all mail through
                                      (unset: direct MX delivery)
  MAILPLANE_HELO_NAME                 the name given in EHLO (the host name)
  MAILPLANE_PUBLIC_URL                public https base URL of the api's /u/ (unsubscribe) and
                                      /t/ (tracking) links (unset: mailto unsubscribe only)
  MAILPLANE_DNS_SERVERS               resolvers for MX, A/AAAA and MTA-STS lookups, IP[:port]
                                      comma-separated (the system's)
  MAILPLANE_MX_PORT                   port of direct delivery (25; another for tests only)
  MAILPLANE_DELIVERY_ALLOW_PRIVATE    deliver to MX hosts at private addresses (false; tests only)
  MAILPLANE_MTA_STS_PORT              HTTPS port of MTA-STS policy hosts (443; for tests only)
  MAILPLANE_SENDER_CONCURRENCY        send jobs run at once (32)
  MAILPLANE_MESSAGE_LIFETIME_SECONDS  how long a deferred message is retried (432000)
  MAILPLANE_MAX_MESSAGE_BYTES         largest rendered message (10485760)
  MAILPLANE_WEBHOOK_CONCURRENCY       webhook deliveries run at once, apart from sends (32)
  MAILPLANE_WEBHOOKS_ALLOW_PRIVATE    let webhooks reach private addresses and plain http
                                      (false; for tests and make dev)
${RENDER}`,
  ),
  smtp: help(
    'mailplane smtp',
    'Takes bounces (DSNs) and complaints (ARF reports) addressed to return paths, and records\nthem. Serves /healthz, /readyz and /metrics on $PORT.',
    `  PORT                                HTTP port of the probes and metrics (8080)
  MAILPLANE_SMTP_PORT                 SMTP port to listen on (2525)
  MAILPLANE_HELO_NAME                 the name given in the SMTP greeting (the host name)`,
  ),
  submission: help(
    'mailplane submission',
    'Takes mail from applications over SMTP: STARTTLS on one port, implicit TLS on the other,\nAUTH PLAIN or LOGIN with an API key (send scope) as the password. Each message is checked\nas POST /v1/emails checks a send and queued before the 250. Serves /healthz, /readyz and\n/metrics on $PORT.',
    `  PORT                                HTTP port of the probes and metrics (8080)
  MAILPLANE_SUBMISSION_PORT           SMTP port with STARTTLS (587)
  MAILPLANE_SUBMISSIONS_PORT          SMTP port with implicit TLS (465)
  MAILPLANE_TLS_CERT_FILE             PEM certificate chain (required; re-read when it changes)
  MAILPLANE_TLS_KEY_FILE              PEM private key of that certificate (required)
  MAILPLANE_MAX_MESSAGE_BYTES         largest body plus attachments, as in the api (10485760)
  MAILPLANE_MAX_RECIPIENTS            recipients per message unless the Tenant sets its own (50)
  MAILPLANE_HELO_NAME                 the name given in the SMTP greeting (the host name)`,
  ),
  operator: help(
    'mailplane operator',
    'Reconciles Tenant, SendingDomain and Template resources into Postgres and Secrets, one\nreplica leading through a Lease. Serves /healthz, /readyz and /metrics on $PORT.',
    `  PORT                                HTTP port of the probes and metrics (8080)
  KUBECONFIG                          the cluster to watch (unset: in-cluster credentials)
  MAILPLANE_OPERATOR_NAMESPACE        namespace of the leader Lease (the pod's own)
  MAILPLANE_LEASE_NAME                name of the leader Lease (mailplane-operator)
  MAILPLANE_LEASE_DURATION_SECONDS    how long a Lease holds without renewal (15)
  POD_NAME                            this replica's name in the Lease (the host name)
  MAILPLANE_SECRET_NAMESPACES         namespaces where key Secrets may be kept, comma-separated
                                      (unset or *: every one)
  MAILPLANE_RESYNC_SECONDS            seconds between full resyncs (600)
  MAILPLANE_DNS_RECHECK_SECONDS       seconds between DNS checks of a verified domain (300)
  MAILPLANE_DNS_SERVERS               resolvers for those checks, host[:port] comma-separated
                                      (the system's)
  MAILPLANE_INBOUND_HOST              public name of the inbound smtp service, the return-path MX
  MAILPLANE_PUBLIC_URL                public base URL of /t/ and /u/: tracking domains are listed
                                      as CNAMEs of its host
  MAILPLANE_SPF_INCLUDE               the relay's SPF domains, each an include: in SPF records
  MAILPLANE_EGRESS_IPS                addresses or CIDR ranges mail leaves from, each ip4:/ip6:
  MAILPLANE_DMARC_RUA                 addresses DMARC aggregate reports go to (rua=mailto:)
  MAILPLANE_WEBHOOKS_ALLOW_PRIVATE    let Tenant webhooks point at private addresses and plain http
${RENDER}`,
  ),
  migrate: help(
    'mailplane migrate',
    "Applies pending database migrations (under an advisory lock, so replicas starting together\napply them once), checks the installation's secret key, and exits.",
    '',
  ).trimEnd(),
};

type Env = Record<string, string | undefined>;

/** Long-running processes resolve once started and exit from their signal handlers. */
const PROCESSES: Record<string, () => Promise<{ main(env: Env): Promise<void> }>> = {
  api: () => import('../api/main.js'),
  sender: () => import('../sender/main.js'),
  smtp: () => import('../smtp/main.js'),
  submission: () => import('../submission/main.js'),
  operator: () => import('../operator/main.js'),
};

async function run(argv: string[], env: Env): Promise<number | 'running'> {
  const [command, ...rest] = argv;
  if (command && command in HELP) {
    if (rest.includes('--help') || rest.includes('-h')) return print(HELP[command]!, 0);
    if (rest.length > 0) {
      return print(
        `mailplane ${command}: takes no arguments (got ${rest.join(' ')}); its settings come from the ` +
          `environment, see mailplane ${command} --help`,
        2,
      );
    }
  }
  if (command && command in PROCESSES) {
    await (await PROCESSES[command]!()).main(env);
    return 'running';
  }
  switch (command) {
    case 'migrate': {
      const { migrateCommand } = await import('../lib/runtime.js');
      return migrateCommand(env);
    }
    case 'suppressions': {
      const { suppressionsCommand } = await import('../lib/suppressions-cli.js');
      return suppressionsCommand(rest, env);
    }
    case 'apply': {
      const { applyCommand } = await import('../lib/reconcile/cli.js');
      return applyCommand(rest, env);
    }
    case 'dev': {
      let dev: { devCommand(args: string[], env: Env): Promise<number | 'running'> };
      try {
        dev = await import('../dev/main.js');
      } catch (err) {
        // The container image leaves out dev/ and its development dependencies.
        if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
        return print(
          'mailplane dev runs from a development install (clone the repository, then `make dev`);\n' +
            'this installation runs api, sender, smtp, submission, operator, migrate and apply.',
          2,
        );
      }
      return dev.devCommand(rest, env);
    }
    case undefined:
      return print(USAGE, 2);
    case 'help':
    case '--help':
    case '-h':
      return print(USAGE, 0);
    default:
      return print(`mailplane: unknown command "${command}"\n\n${USAGE}`, 2);
  }
}

/** Help asked for goes to stdout; help after a mistake to stderr. */
function print(text: string, code: number): number {
  (code === 0 ? process.stdout : process.stderr).write(`${text}\n`);
  return code;
}

run(process.argv.slice(2), process.env).then(
  (code) => {
    // Writes to pipes and files are synchronous on Linux and macOS: exiting loses nothing.
    if (code !== 'running') process.exit(code);
  },
  async (err: unknown) => {
    const { isUserError } = await import('../lib/user-error.js');
    // A mistake the user can fix is one line; a bug keeps its stack trace.
    process.stderr.write(
      `mailplane: ${isUserError(err) ? err.message : ((err as Error)?.stack ?? String(err))}\n`,
    );
    process.exit(1);
  },
);
