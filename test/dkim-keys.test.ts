// The pure parts of DKIM rotation: the durations spec.dkim takes, the selectors new keys get, and
// when a Secret holds the keys the rows hold. The walk through a rotation is dkim-rotation.test.ts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration } from '../lib/duration.js';
import { derivesFrom, newSelector, sameKeys } from '../lib/reconcile/dkim-keys.js';
import { ManifestError, parseManifests } from '../lib/resources.js';

const manifest = (dkim: Record<string, unknown>) => `
apiVersion: mailplane.io/v1alpha1
kind: SendingDomain
metadata: { name: example-com }
spec:
  tenantRef: { name: acme }
  domain: example.com
  dkim: ${JSON.stringify(dkim)}
`;

test('durations read as Kubernetes users write them, with days: 90d, 2160h, 36h30m', () => {
  assert.equal(parseDuration('90d'), 90 * 86_400_000);
  assert.equal(parseDuration('2160h'), parseDuration('90d'));
  assert.equal(parseDuration('36h30m'), 36.5 * 3_600_000);
  assert.equal(parseDuration('1.5h'), 90 * 60_000);
  for (const bad of ['90 days', '90', 'd', '-1h', '1w', '']) assert.equal(parseDuration(bad), undefined, bad);
});

test('spec.dkim.rotateEvery and retireAfter are refused in words unless they are durations, and rotateEvery under 1m too', () => {
  assert.doesNotThrow(() => parseManifests(manifest({ rotateEvery: '90d', retireAfter: '168h' }), 'ok.yaml'));
  const refused = (dkim: Record<string, unknown>) => {
    try {
      parseManifests(manifest(dkim), 'bad.yaml');
    } catch (err) {
      assert.ok(err instanceof ManifestError);
      return err.errors.map((e) => `${e.field}: ${e.message}`);
    }
    assert.fail('accepted');
  };
  assert.deepEqual(refused({ rotateEvery: '90 days' }), [
    'spec.dkim.rotateEvery: must be a duration such as 90d, 2160h or 36h30m (units d, h, m, s)',
  ]);
  assert.deepEqual(refused({ retireAfter: 'a week' }), [
    'spec.dkim.retireAfter: must be a duration such as 7d, 168h or 36h30m (units d, h, m, s)',
  ]);
  assert.deepEqual(refused({ rotateEvery: '30s' }), ['spec.dkim.rotateEvery: must be at least 1m']);
  assert.deepEqual(refused({ alsoRsa: 'yes' }), ['spec.dkim.alsoRsa: must be true or false']);
});

test('a new key gets a selector of its own: the stem and the date, never one the domain has', () => {
  const now = new Date('2027-03-02T10:00:00Z');
  assert.equal(newSelector('mailplane', now, new Set(['mailplane'])), 'mailplane-20270302');
  assert.equal(
    newSelector('mailplane', now, new Set(['mailplane', 'mailplane-20270302'])),
    'mailplane-20270302-2',
  );
  const long = newSelector('s'.repeat(63), now, new Set());
  assert.ok(long.length <= 63 && /^s+-20270302$/.test(long), long);
  for (const selector of ['mailplane', 'mailplane-20270302', 'mailplane-20270302-2']) {
    assert.ok(derivesFrom(selector, 'mailplane'), selector);
  }
  for (const selector of ['mailplane-rsa', 'mp-20270302', 'other', 'mailplane-2027']) {
    assert.ok(!derivesFrom(selector, 'mailplane'), selector);
  }
  assert.ok(derivesFrom(long, 's'.repeat(63)));
});

test('a Secret holds the rows’ keys when every key matches, whatever its selector entry says', () => {
  const want = { signing: 'A', selector: 'mailplane-20270302', others: { mailplane: 'B' } };
  assert.ok(sameKeys({ ...want, selector: '' }, want), 'an older Secret without the selector entry');
  assert.ok(!sameKeys(undefined, want));
  assert.ok(!sameKeys({ ...want, signing: 'X' }, want));
  assert.ok(!sameKeys({ ...want, others: {} }, want), 'a key missing');
  assert.ok(!sameKeys({ ...want, others: { mailplane: 'X' } }, want), 'a key changed');
  assert.ok(!sameKeys({ ...want, others: { mailplane: 'B', extra: 'C' } }, want), 'a key added');
});
