// The api's express app. createApp takes every dependency as an argument and starts nothing, so
// a test can listen on port 0 against its own database. Every request gets an X-Request-Id, a
// logger scoped to it, one access-log line and a duration sample under its route template.

import express from 'express';
import { sql } from 'kysely';
import type { Db } from '../lib/db/index.js';
import type { Logger } from '../lib/log.js';
import type { DnsSettings } from '../lib/dns-settings.js';
import type { Metrics } from '../lib/metrics.js';
import type { Acceptor } from '../lib/send/accept.js';
import { accessLog } from './access-log.js';
import { authenticate } from './auth.js';
import { domainsRouter } from './domains.js';
import { templatesRouter } from './templates.js';
import type { TxtMxResolver } from '../lib/dns-check.js';
import type { Renderer } from '../lib/render/sandbox.js';
import { auditLogRouter } from './audit-log.js';
import { broadcastsRouter } from './broadcasts.js';
import { statsRouter } from './stats.js';
import { suppressionsImportRouter, suppressionsRouter } from './suppressions.js';
import { unsubscribeRouter } from './unsubscribe.js';
import type { EngagementRecorder } from './engagement-recorder.js';
import { trackingRouter } from './tracking.js';
import type { TrustProxy } from '../lib/tracking-config.js';
import { emailsRouter } from './emails.js';
import { jsonBody } from './json-body.js';
import { buildOpenApiDocument } from './openapi.js';
import { unrouted } from './unrouted.js';
import { postmarkRouter } from './postmark.js';
import { databaseUnavailable, problemHandler, sendProblem } from './problems.js';
import { requestContext } from './request-context.js';
import { recordRouteTemplates } from './route-template.js';
import { sendgridRouter } from './sendgrid.js';
import type { Limits } from './validate.js';
import { webhooksRouter, type WebhooksDeps } from './webhooks.js';
import { contactsRouter } from './contacts.js';
import { segmentsRouter } from './segments.js';

export interface AppDeps {
  db: Db;
  acceptor: Acceptor;
  log: Logger;
  metrics: Metrics;
  limits: Limits;
  /** Public name of the inbound SMTP service, listed as the MX of return-path domains. */
  inboundHost?: string;
  /** What each domain's SPF record authorises and where DMARC reports go (config.dns). */
  dns?: DnsSettings;
  /** The template sandbox, for the checks and previews of /v1/templates (lib/runtime.ts templateRenderer). */
  renderer: Pick<Renderer, 'compile' | 'render'>;
  /** Where the api's own DNS checks of domains look (lib/resolver.ts createResolver). */
  resolver: TxtMxResolver;
  /** The key that encrypts webhook secrets, and whether webhook URLs may be private. */
  webhooks: Omit<WebhooksDeps, 'db'>;
  /** The installation's key, which signs the unsubscribe links (config.secretKey). */
  secretKey: Buffer;
  /** Where opens and clicks go (api/engagement-recorder.ts); without it /t/ answers 404. */
  recorder?: EngagementRecorder;
  /** The public base URL of /t/ and /u/ (config.publicUrl): tracking domains are CNAMEs of its host. */
  publicUrl?: string;
  /** The proxies whose X-Forwarded-For names the client (config.tracking.trustProxy); none by default. */
  trustProxy?: TrustProxy;
}

/** JSON carries attachments as base64: 4 bytes for every 3, plus room for the rest of the body. */
const BASE64_OVERHEAD = 4 / 3;
const JSON_ENVELOPE_BYTES = 64 * 1024;

/**
 * Builds the api.
 *
 *   const server = createApp(deps).listen(config.port);
 */
export function createApp(deps: AppDeps): express.Express {
  const { db, log, metrics } = deps;
  const app = express();
  app.disable('x-powered-by');
  // Only the proxies the installation names: otherwise any client could say where it is.
  app.set('trust proxy', deps.trustProxy ?? false);

  // First, so that every answer (refusals by middleware included) carries its request id, is
  // logged once and is timed under its full route template.
  recordRouteTemplates(app);
  app.use(requestContext(log), accessLog(metrics));

  app.get('/healthz', (_req, res) => void res.json({ status: 'ok' }));
  app.get('/readyz', async (req, res) => {
    try {
      await sql`select 1`.execute(db);
      res.json({ status: 'ok' });
    } catch {
      sendProblem(req, res, databaseUnavailable());
    }
  });
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  // Built once, stating this installation's recipient limit.
  const document = buildOpenApiDocument({ maxRecipients: deps.limits.maxRecipients });
  app.get('/v1/openapi.json', (_req, res) => void res.json(document));

  const jsonLimit = Math.ceil(deps.limits.maxMessageBytes * BASE64_OVERHEAD) + JSON_ENVELOPE_BYTES;
  // Public: a recipient's one-click unsubscribe carries a signed token, not an API key.
  app.use(unsubscribeRouter({ db, secretKey: deps.secretKey }));
  // Public too: the open pixel and tracked links, signed the same way (api/tracking.ts).
  if (deps.recorder) app.use(trackingRouter({ secretKey: deps.secretKey, recorder: deps.recorder }));

  const v1 = express.Router();
  // A streamed CSV body, read before the JSON parser would refuse it; it authenticates itself.
  v1.use(suppressionsImportRouter(db));
  v1.use(jsonBody({ limit: jsonLimit }));
  v1.use(authenticate(db));
  v1.use(emailsRouter({ db, acceptor: deps.acceptor, metrics, limits: deps.limits }));
  v1.use(
    domainsRouter({
      db,
      inboundHost: deps.inboundHost,
      resolver: deps.resolver,
      dns: deps.dns,
      trackingTarget: deps.publicUrl ? new URL(deps.publicUrl).hostname : undefined,
    }),
  );
  v1.use(templatesRouter({ db, renderer: deps.renderer }));
  v1.use(webhooksRouter({ db, ...deps.webhooks }));
  v1.use(statsRouter(db));
  v1.use(auditLogRouter(db));
  v1.use(suppressionsRouter(db));
  v1.use(contactsRouter(db));
  v1.use(segmentsRouter(db));
  v1.use(broadcastsRouter({ db, publicUrl: deps.publicUrl }));
  app.use('/v1', v1);

  // SendGrid's and Postmark's send routes, for applications on their clients: outside /v1, where
  // their clients send, each route with its own parser, key and error shape (api/sendgrid.ts,
  // api/postmark.ts).
  const send = { db, acceptor: deps.acceptor, metrics, limits: deps.limits, maxBodyBytes: jsonLimit };
  app.use(sendgridRouter(send));
  app.use(postmarkRouter(send));

  app.use(unrouted(document.paths));
  app.use(problemHandler());
  return app;
}
