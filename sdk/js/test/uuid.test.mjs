import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { test } from 'node:test';
import { uuidGenerator } from '../src/uuid.js';

const SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('a UUIDv7 carries its millisecond time, version 7 and the RFC 9562 variant', () => {
  const uuid = uuidGenerator(randomFillSync);
  const now = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
  const id = uuid(now);
  assert.match(id, SHAPE);
  assert.equal(parseInt(id.replace(/-/g, '').slice(0, 12), 16), now);
});

test('ids are strictly increasing within a page, even when the clock stalls or steps back', () => {
  const uuid = uuidGenerator(randomFillSync);
  const times = [1000, 1000, 1000, 999, 2000, 2000, 1500];
  const ids = times.map((t) => uuid(t));
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, ids.length);
  ids.forEach((id) => assert.match(id, SHAPE));
});

test('the counter rolls over into the next millisecond', () => {
  const uuid = uuidGenerator((bytes) => bytes.fill(0xff));
  const ids = Array.from({ length: 5000 }, () => uuid(5000));
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(parseInt(ids.at(-1).replace(/-/g, '').slice(0, 12), 16), 5001);
});

test('a fixed random source gives a fixed id (no hidden randomness)', () => {
  assert.equal(uuidGenerator((b) => b.fill(0))(0), '00000000-0000-7000-8000-000000000000');
});
