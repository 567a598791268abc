// The pure part of a Tenant's webhooks: what a row needs to be as its spec.webhooks entry says,
// and above all when the reconciler enables or disables an endpoint (only as the spec says).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DISABLED_IN_TENANT,
  describeRefusedWebhook,
  endpointChange,
} from '../lib/reconcile/tenant-webhooks.js';
import type { TenantWebhook } from '../lib/resources.js';

const row = {
  url: 'https://hooks.example.com/mail',
  events: ['email.bounced', 'email.delivered'],
  enabled: true,
  disabled_reason: null,
};
const entry: TenantWebhook = {
  name: 'events',
  url: 'https://hooks.example.com/mail',
  events: ['email.delivered', 'email.bounced'],
};

test('a row as its entry says needs nothing, whatever the order of its events', () => {
  const change = endpointChange(row, entry, true);
  assert.deepEqual(change, { set: {}, moved: false, updated: false, enabled: false, disabled: false });
});

test('a new URL is written with a fresh start, and a refused one is not written at all', () => {
  const moved = endpointChange(row, { ...entry, url: 'https://new.example.com/' }, true);
  assert.deepEqual(moved.set, { url: 'https://new.example.com/', failing_since: null });
  assert.equal(moved.updated, true);
  const refused = endpointChange(row, { ...entry, url: 'http://10.0.0.1/' }, false);
  assert.deepEqual(refused.set, {});
});

test('an endpoint the sender disabled stays disabled on the same spec, and is enabled again by a new URL', () => {
  const gone = { ...row, enabled: false, disabled_reason: 'the endpoint answered 410 Gone' };
  assert.deepEqual(endpointChange(gone, entry, true).set, {});
  assert.deepEqual(endpointChange(gone, { ...entry, enabled: true }, true).set, {});
  const moved = endpointChange(gone, { ...entry, url: 'https://new.example.com/' }, true);
  assert.equal(moved.enabled, true);
  assert.deepEqual(moved.set, {
    url: 'https://new.example.com/',
    failing_since: null,
    enabled: true,
    disabled_reason: null,
  });
});

test('enabled: false disables it with the spec as the reason, and then true enables it again', () => {
  const off = endpointChange(row, { ...entry, enabled: false }, true);
  assert.equal(off.disabled, true);
  assert.deepEqual(off.set, { enabled: false, disabled_reason: DISABLED_IN_TENANT });
  // A sender's reason is replaced by the spec's, so that true afterwards enables it.
  const gone = { ...row, enabled: false, disabled_reason: 'the endpoint answered 410 Gone' };
  assert.deepEqual(endpointChange(gone, { ...entry, enabled: false }, true).set, {
    enabled: false,
    disabled_reason: DISABLED_IN_TENANT,
  });
  const spec = { ...row, enabled: false, disabled_reason: DISABLED_IN_TENANT };
  assert.deepEqual(endpointChange(spec, { ...entry, enabled: false }, true).set, {});
  const on = endpointChange(spec, entry, true);
  assert.equal(on.enabled, true);
  assert.deepEqual(on.set, { enabled: true, disabled_reason: null, failing_since: null });
});

test('a refused URL is said naming the entry, and what became of it', () => {
  const base = { index: 1, name: 'audit', url: 'http://10.0.0.1/hooks', fault: 'must be an https URL' };
  assert.equal(
    describeRefusedWebhook(base),
    'spec.webhooks[1] (audit): url http://10.0.0.1/hooks must be an https URL; not registered',
  );
  assert.equal(
    describeRefusedWebhook({ ...base, kept: 'https://audit.example.com/' }),
    'spec.webhooks[1] (audit): url http://10.0.0.1/hooks must be an https URL; events still go to https://audit.example.com/, the URL it last took',
  );
});
