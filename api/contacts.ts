// /v1/contacts in Resend's shapes, so that its SDK's contacts.create, list, get, update, remove and
// contacts.segments.add, list, remove work unchanged; and the older /v1/audiences/{id}/contacts
// paths the SDK still calls when given an audienceId (an audience is a segment). A contact is
// named in a path by its id or by its address. Another tenant's contact or segment is as absent
// as one that never existed. Every change runs under the key that made it, so the audit log
// (written by the triggers on contacts and segment_contacts) names it and the request.
//
// Reading needs `read`: contacts are people's names and addresses. Changing needs `send`, as a
// suppression does, because it changes who a broadcast mails.

import { Router, type Request } from 'express';
import { withAuditContext } from '../lib/db/audit.js';
import {
  createContact,
  deleteContact,
  getContact,
  isMember,
  listContacts,
  listSegments,
  setMembership,
  updateContact,
  type ContactChanges,
  type ContactRef,
  type ContactRow,
  type NewContact,
  type CreateContactOutcome,
} from '../lib/db/contacts.js';
import type { Db } from '../lib/db/index.js';
import type { PageOf } from '../lib/db/webhooks.js';
import { Problem } from '../lib/problem.js';
import { principalOf, requireScope } from './auth.js';
import { hasNoBody } from './json-body.js';
import { refuse } from './requests.js';
import {
  contactAddress,
  missingSegmentFaults,
  parseCreateContact,
  parseListPage,
  parseUpdateContact,
  UUID,
  type ContactSummaryView,
  type ContactView,
  type CreateContactRequest,
  type ListOf,
  type UpdateContactRequest,
} from './schemas-contacts.js';
import { segmentOf, segmentSummaryView } from './segments.js';

/** Runs a change under the key that makes it (see the opening paragraph). */
function audited<T>(db: Db, req: Request, fn: (trx: Db) => Promise<T>): Promise<T> {
  return withAuditContext(db, { actor: `api_key:${principalOf(req).keyName}`, requestId: req.id }, fn);
}

/**
 * What a path's `idOrEmail` names: an id, or an address (lower-cased); anything else names no
 * contact, a 404.
 *
 *   contactRefOf('Ada@Example.org')   // { email: 'ada@example.org' }
 */
export function contactRefOf(raw: string): ContactRef {
  if (UUID.test(raw)) return { id: raw.toLowerCase() };
  const address = raw.includes('@') ? contactAddress(raw) : undefined;
  if (typeof address === 'string') return { email: address };
  throw contactNotFound(raw);
}

const contactNotFound = (raw: string) =>
  new Problem(404, 'not-found', `No contact ${raw.slice(0, 254)} in this tenant.`);

/** The tenant's contact that `:idOrEmail` names, or a 404. */
async function contactOf(db: Db, req: Request): Promise<ContactRow> {
  const raw = String(req.params.idOrEmail);
  const row = await getContact(db, principalOf(req).tenantId, contactRefOf(raw));
  if (!row) throw contactNotFound(raw);
  return row;
}

/** PATCH is not among the verbs jsonBody reads as {} without a body; one that is not JSON is a 415. */
function requireJson(req: Request): void {
  if (req.body === undefined && !hasNoBody(req)) {
    throw new Problem(415, 'unsupported-media-type', 'Send the body as application/json.');
  }
}

/** GET /v1/contacts/{idOrEmail}: the contact, its properties each with its type (Resend's shape). */
export function contactView(row: ContactRow): ContactView {
  const properties: ContactView['properties'] = {};
  for (const [key, value] of Object.entries(row.properties)) {
    properties[key] =
      typeof value === 'string'
        ? { type: 'string', value }
        : typeof value === 'number'
          ? { type: 'number', value }
          : { type: 'boolean', value };
  }
  return {
    object: 'contact',
    ...contactSummaryView(row),
    properties,
    updated_at: row.updated_at.toISOString(),
  };
}

/** A contact in a list (Resend's Contact). */
export function contactSummaryView(row: ContactRow): ContactSummaryView {
  return {
    id: row.id,
    email: row.email,
    first_name: row.first_name,
    last_name: row.last_name,
    unsubscribed: row.unsubscribed,
    created_at: row.created_at.toISOString(),
  };
}

export function listView<R, T>(page: PageOf<R>, view: (row: R) => T): ListOf<T> {
  return { object: 'list', has_more: page.hasMore, data: page.rows.map(view) };
}

/** A create's fields as lib/db/contacts.ts takes them. */
function newContact(given: CreateContactRequest, segmentIds: string[]): NewContact {
  return {
    email: given.email,
    firstName: given.first_name ?? null,
    lastName: given.last_name ?? null,
    unsubscribed: given.unsubscribed ?? false,
    ...(given.properties ? { properties: given.properties } : {}),
    segmentIds,
  };
}

/** An update's fields as lib/db/contacts.ts takes them: a member not given is left as it is. */
function contactChanges(changes: UpdateContactRequest): ContactChanges {
  return {
    ...(changes.first_name === undefined ? {} : { firstName: changes.first_name }),
    ...(changes.last_name === undefined ? {} : { lastName: changes.last_name }),
    ...(changes.unsubscribed === undefined ? {} : { unsubscribed: changes.unsubscribed }),
    ...(changes.properties === undefined ? {} : { properties: changes.properties }),
  };
}

/** The answer to a create that found the address taken, or segments that are not the tenant's. */
function refusal(
  outcome: Exclude<CreateContactOutcome, { outcome: 'created' }>,
  given: CreateContactRequest,
) {
  if (outcome.outcome === 'segment-not-found')
    refuse(missingSegmentFaults(given.segments, outcome.segmentIds));
  const { contact } = outcome;
  return new Problem(
    409,
    'contact-exists',
    `This tenant has a contact for ${contact.email} already (${contact.id}); change it with ` +
      `PATCH /v1/contacts/${encodeURIComponent(contact.email)}.`,
  );
}

/**
 * The JSON routes, under /v1 after its body parser and authentication.
 *
 *   v1.use(contactsRouter(db));
 */
export function contactsRouter(db: Db): Router {
  const router = Router();

  router.post('/contacts', requireScope('send'), async (req, res) => {
    const given = parseCreateContact(req.body, true);
    const outcome = await audited(db, req, (trx) =>
      createContact(trx, principalOf(req).tenantId, newContact(given, given.segments)),
    );
    if (outcome.outcome !== 'created') throw refusal(outcome, given);
    res
      .status(201)
      .location(`/v1/contacts/${outcome.contact.id}`)
      .json({ object: 'contact', id: outcome.contact.id });
  });

  router.get('/contacts', requireScope('read'), async (req, res) => {
    const page = parseListPage(req.query, 'contacts');
    res.json(listView(await listContacts(db, principalOf(req).tenantId, page), contactSummaryView));
  });

  router.get('/contacts/:idOrEmail', requireScope('read'), async (req, res) => {
    res.json(contactView(await contactOf(db, req)));
  });

  router.patch('/contacts/:idOrEmail', requireScope('send'), async (req, res) => {
    requireJson(req);
    const raw = String(req.params.idOrEmail);
    const ref = contactRefOf(raw);
    const changes = parseUpdateContact(req.body);
    const row = await audited(db, req, (trx) =>
      updateContact(trx, principalOf(req).tenantId, ref, contactChanges(changes)),
    );
    if (!row) throw contactNotFound(raw);
    res.json({ object: 'contact', id: row.id });
  });

  router.delete('/contacts/:idOrEmail', requireScope('send'), async (req, res) => {
    const raw = String(req.params.idOrEmail);
    const ref = contactRefOf(raw);
    const id = await audited(db, req, (trx) => deleteContact(trx, principalOf(req).tenantId, ref));
    if (!id) throw contactNotFound(raw);
    res.json({ object: 'contact', contact: id, deleted: true });
  });

  // contacts.list({ segmentId }).
  router.get('/segments/:id/contacts', requireScope('read'), async (req, res) => {
    const segment = await segmentOf(db, req, 'id');
    const page = parseListPage(req.query, 'contacts');
    const contacts = await listContacts(db, principalOf(req).tenantId, page, { segmentId: segment.id });
    res.json(listView(contacts, contactSummaryView));
  });

  // contacts.segments.list, add and remove.
  router.get('/contacts/:idOrEmail/segments', requireScope('read'), async (req, res) => {
    const page = parseListPage(req.query, 'segments');
    const contact = await contactOf(db, req);
    const segments = await listSegments(db, principalOf(req).tenantId, page, { contactId: contact.id });
    res.json(listView(segments, segmentSummaryView));
  });

  const membership = (member: boolean) =>
    async function (req: Request): Promise<string> {
      const raw = String(req.params.idOrEmail);
      const ref = contactRefOf(raw);
      const segment = String(req.params.segmentId);
      const segmentId = UUID.test(segment) ? segment.toLowerCase() : undefined;
      const { outcome } = segmentId
        ? await audited(db, req, (trx) =>
            setMembership(trx, principalOf(req).tenantId, ref, segmentId, member),
          )
        : { outcome: 'segment-not-found' as const };
      if (outcome === 'contact-not-found') throw contactNotFound(raw);
      if (outcome === 'segment-not-found')
        throw new Problem(404, 'not-found', `No segment ${segment.slice(0, 64)} in this tenant.`);
      return outcome;
    };

  router.post('/contacts/:idOrEmail/segments/:segmentId', requireScope('send'), async (req, res) => {
    await membership(true)(req);
    res.json({ id: String(req.params.segmentId).toLowerCase() });
  });

  router.delete('/contacts/:idOrEmail/segments/:segmentId', requireScope('send'), async (req, res) => {
    const outcome = await membership(false)(req);
    res.json({ id: String(req.params.segmentId).toLowerCase(), deleted: outcome === 'removed' });
  });

  // The older paths: an audience's contacts are its segment's members. A contact is one per
  // address in the tenant, whatever audiences it is in: creating one an audience does not hold
  // yet puts the tenant's contact there, and removing one takes it out of the audience only.
  router.post('/audiences/:audienceId/contacts', requireScope('send'), async (req, res) => {
    const segment = await segmentOf(db, req, 'audienceId');
    const given = parseCreateContact(req.body, false);
    const tenantId = principalOf(req).tenantId;
    const id = await audited(db, req, async (trx) => {
      const outcome = await createContact(trx, tenantId, newContact(given, [segment.id]));
      if (outcome.outcome === 'created') return outcome.contact.id;
      if (outcome.outcome === 'segment-not-found') throw audienceNotFound(segment.id);
      const added = await setMembership(trx, tenantId, { id: outcome.contact.id }, segment.id, true);
      if (added.outcome === 'added') return outcome.contact.id;
      throw new Problem(
        409,
        'contact-exists',
        `Audience ${segment.id} holds a contact for ${given.email} already (${outcome.contact.id}).`,
      );
    });
    res.status(201).location(`/v1/contacts/${id}`).json({ object: 'contact', id });
  });

  router.get('/audiences/:audienceId/contacts', requireScope('read'), async (req, res) => {
    const segment = await segmentOf(db, req, 'audienceId');
    const page = parseListPage(req.query, 'contacts');
    const contacts = await listContacts(db, principalOf(req).tenantId, page, { segmentId: segment.id });
    res.json(listView(contacts, contactSummaryView));
  });

  /** The contact `:idOrEmail` names, when the audience holds it; else a 404. */
  const memberOf = async (req: Request): Promise<{ contact: ContactRow; segmentId: string }> => {
    const segment = await segmentOf(db, req, 'audienceId');
    const raw = String(req.params.idOrEmail);
    const contact = await getContact(db, principalOf(req).tenantId, contactRefOf(raw));
    if (!contact || !(await isMember(db, segment.id, contact.id))) {
      throw new Problem(404, 'not-found', `No contact ${raw.slice(0, 254)} in audience ${segment.id}.`);
    }
    return { contact, segmentId: segment.id };
  };

  router.get('/audiences/:audienceId/contacts/:idOrEmail', requireScope('read'), async (req, res) => {
    res.json(contactView((await memberOf(req)).contact));
  });

  router.patch('/audiences/:audienceId/contacts/:idOrEmail', requireScope('send'), async (req, res) => {
    requireJson(req);
    const changes = parseUpdateContact(req.body);
    const { contact } = await memberOf(req);
    const row = await audited(db, req, (trx) =>
      updateContact(trx, principalOf(req).tenantId, { id: contact.id }, contactChanges(changes)),
    );
    if (!row) throw contactNotFound(contact.id);
    res.json({ object: 'contact', id: row.id });
  });

  router.delete('/audiences/:audienceId/contacts/:idOrEmail', requireScope('send'), async (req, res) => {
    const { contact, segmentId } = await memberOf(req);
    await audited(db, req, (trx) =>
      setMembership(trx, principalOf(req).tenantId, { id: contact.id }, segmentId, false),
    );
    res.json({ object: 'contact', contact: contact.id, deleted: true });
  });

  return router;
}

const audienceNotFound = (id: string) => new Problem(404, 'not-found', `No audience ${id} in this tenant.`);
