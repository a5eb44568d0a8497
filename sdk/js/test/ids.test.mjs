import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkUserId, isIllegalForIdentity, normalizeId } from '../src/ids.js';

test('generic ids are illegal in any case, quoted or not (identity-rules.md §2)', () => {
  for (const id of ['anonymous', 'Guest', 'DISTINCT_ID', 'distinctid', 'id', 'not_authenticated', 'email',
    'undefined', 'True', 'false', 'null', 'None', 'NaN', '[object Object]', '0', '"null"', "'guest'", '""', '  ', '" "']) {
    assert.equal(isIllegalForIdentity(id), true, id);
  }
});

test('ordinary ids are legal, and only the blank test trims', () => {
  for (const id of ['user-42', ' guest', 'guest ', '00', '0.0', 'null-user', '"null', 'ids', '42']) {
    assert.equal(isIllegalForIdentity(id), false, id);
  }
});

test('numbers become their decimal text; other types, empty and long ids are refused', () => {
  assert.equal(normalizeId(42), '42');
  assert.equal(normalizeId(1.5), '1.5');
  assert.equal(normalizeId('Ada'), 'Ada');
  assert.match(normalizeId(true).error, /got boolean/);
  assert.match(normalizeId(null).error, /got null/);
  assert.match(normalizeId({}).error, /got object/);
  assert.match(normalizeId(Infinity).error, /finite/);
  assert.match(normalizeId('').error, /empty/);
  assert.equal(normalizeId('x'.repeat(200)), 'x'.repeat(200));
  assert.match(normalizeId('x'.repeat(201)).error, /201 characters long; at most 200/);
  assert.match(normalizeId('a\0b').error, /NUL/);
});

test('checkUserId names the generic id it refuses', () => {
  assert.equal(checkUserId('user-1'), 'user-1');
  assert.equal(checkUserId(7), '7');
  assert.deepEqual(checkUserId('undefined'), { error: '"undefined" is a generic id and cannot name a user' });
  assert.deepEqual(checkUserId(0), { error: '"0" is a generic id and cannot name a user' });
});
