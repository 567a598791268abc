// The OpenAPI 3.1 document served at /v1/openapi.json. Written by hand next to the routes it
// describes; test/api.test.ts checks that every route the app serves is in it.

const addressList = {
  oneOf: [
    { type: 'string', description: 'One address, or several joined by commas.' },
    { type: 'array', items: { type: 'string' }, maxItems: 50 },
  ],
};

const problem = {
  description: 'An application/problem+json document',
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
};

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Mailplane API',
    version: 'v1',
    description:
      'Send email from applications in the cluster. The email endpoints take and return the shapes of ' +
      "Resend's API, so the `resend` SDK works with its base URL pointed here.",
  },
  servers: [{ url: '/' }],
  security: [{ apiKey: [] }],
  paths: {
    '/v1/emails': {
      post: {
        summary: 'Send an email',
        description: 'Answers 202 once the email is durably queued. Needs the `send` scope.',
        parameters: [
          {
            name: 'Idempotency-Key',
            in: 'header',
            required: false,
            schema: { type: 'string', maxLength: 256 },
            description: 'A retry with the same key returns the first id (200) and sends nothing more.',
          },
        ],
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { $ref: '#/components/schemas/SendEmail' } } },
        },
        responses: {
          '202': {
            description: 'Queued',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Id' } } },
          },
          '200': { description: 'Already accepted under this Idempotency-Key' },
          '401': problem,
          '403': problem,
          '413': problem,
          '422': problem,
        },
      },
    },
    '/v1/emails/batch': {
      post: {
        summary: 'Send up to 100 emails in one request',
        parameters: [
          {
            name: 'x-batch-validation',
            in: 'header',
            schema: { enum: ['strict', 'permissive'] },
            description:
              'strict (default): any invalid email refuses the batch; permissive: valid ones are sent.',
          },
        ],
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: { type: 'array', maxItems: 100, items: { $ref: '#/components/schemas/SendEmail' } },
            },
          },
        },
        responses: {
          '202': {
            description: 'Queued',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: { data: { type: 'array', items: { $ref: '#/components/schemas/Id' } } },
                },
              },
            },
          },
          '401': problem,
          '403': problem,
          '413': problem,
          '422': problem,
        },
      },
    },
    '/v1/emails/{id}': {
      get: {
        summary: 'Read an email: its status, recipients and event timeline',
        description: 'Needs the `read` scope. Another tenant’s email is a 404.',
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } }],
        responses: {
          '200': {
            description: 'The email',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Email' } } },
          },
          '401': problem,
          '403': problem,
          '404': problem,
        },
      },
    },
    '/v1/emails/{id}/cancel': {
      post: {
        summary: 'Cancel the recipients of an email that have not been sent yet',
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } }],
        responses: { '200': { description: 'Canceled' }, '404': problem, '409': problem },
      },
    },
    '/v1/domains': {
      get: {
        summary: "List the tenant's sending domains and the DNS records to publish",
        responses: { '200': { description: 'Domains' }, '401': problem, '403': problem },
      },
    },
    '/v1/openapi.json': {
      get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI' } } },
    },
    '/healthz': {
      get: { summary: 'Liveness', security: [], responses: { '200': { description: 'Alive' } } },
    },
    '/readyz': {
      get: {
        summary: 'Readiness: Postgres answers',
        security: [],
        responses: { '200': { description: 'Ready' }, '503': problem },
      },
    },
    '/metrics': {
      get: { summary: 'Prometheus metrics', security: [], responses: { '200': { description: 'Metrics' } } },
    },
  },
  components: {
    securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An API key, mp_live_…' } },
    schemas: {
      Id: { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] },
      SendEmail: {
        type: 'object',
        required: ['from', 'to'],
        properties: {
          from: {
            type: 'string',
            description: '"Name <you@your-domain>"; the domain must be one of the tenant’s.',
          },
          to: addressList,
          cc: addressList,
          bcc: addressList,
          reply_to: addressList,
          subject: { type: 'string', maxLength: 998, description: 'Required unless a template gives one.' },
          html: { type: 'string' },
          text: { type: 'string' },
          headers: { type: 'object', additionalProperties: { type: 'string' } },
          attachments: {
            type: 'array',
            items: {
              type: 'object',
              required: ['filename', 'content'],
              properties: {
                filename: { type: 'string', maxLength: 255 },
                content: { type: 'string', contentEncoding: 'base64' },
                content_type: { type: 'string' },
              },
            },
          },
          tags: {
            type: 'array',
            items: { type: 'object', properties: { name: { type: 'string' }, value: { type: 'string' } } },
          },
          scheduled_at: { type: 'string', format: 'date-time' },
          template: {
            type: 'object',
            required: ['id'],
            properties: {
              id: { type: 'string', description: 'Template name or id' },
              variables: { type: 'object' },
            },
          },
        },
      },
      Email: {
        type: 'object',
        properties: {
          object: { const: 'email' },
          id: { type: 'string', format: 'uuid' },
          from: { type: 'string' },
          to: { type: 'array', items: { type: 'string' } },
          subject: { type: 'string' },
          status: { $ref: '#/components/schemas/Status' },
          last_event: {
            description: 'The status, or `complained` once a recipient has reported the email as spam.',
            anyOf: [{ $ref: '#/components/schemas/Status' }, { const: 'complained' }],
          },
          created_at: { type: 'string', format: 'date-time' },
          recipients: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                address: { type: 'string' },
                status: { $ref: '#/components/schemas/Status' },
                attempts: { type: 'integer' },
                last_reply: { type: ['string', 'null'] },
              },
            },
          },
          events: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                type: {
                  type: 'string',
                  description:
                    'queued, sending, delivered, deferred, bounced, failed, suppressed, canceled; and from the inbound listener: bounced (with async: true), delayed, complained.',
                },
                recipient: { type: 'string' },
                at: { type: 'string' },
                reply: { type: 'string' },
              },
            },
          },
        },
      },
      Status: {
        enum: ['queued', 'sending', 'delivered', 'deferred', 'bounced', 'failed', 'suppressed', 'canceled'],
      },
      Problem: {
        type: 'object',
        properties: {
          type: { type: 'string', format: 'uri' },
          title: { type: 'string' },
          status: { type: 'integer' },
          detail: { type: 'string' },
          errors: {
            type: 'array',
            items: { type: 'object', properties: { field: { type: 'string' }, message: { type: 'string' } } },
          },
        },
      },
    },
  },
} as const;
