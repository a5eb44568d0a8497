import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay, classify, enqueue, mergeQueues, removeSent, takeBatch } from '../src/queue.js';

const msg = (uuid) => ({ uuid });

test('the queue is bounded: the oldest messages go first', () => {
  const queue = [msg('1'), msg('2')];
  assert.equal(enqueue(queue, msg('3'), 3), 0);
  assert.equal(enqueue(queue, msg('4'), 3), 1);
  assert.deepEqual(queue.map((m) => m.uuid), ['2', '3', '4']);
});

test('a batch skips messages already on their way', () => {
  const queue = ['a', 'b', 'c', 'd'].map(msg);
  assert.deepEqual(takeBatch(queue, { a: 1, c: 1 }, 5).map((m) => m.uuid), ['b', 'd']);
  assert.deepEqual(takeBatch(queue, {}, 2).map((m) => m.uuid), ['a', 'b']);
});

test('sent messages leave the queue by uuid', () => {
  const queue = ['a', 'b', 'c'].map(msg);
  assert.deepEqual(removeSent(queue, [msg('a'), msg('c')]).map((m) => m.uuid), ['b']);
});

test('queues left by other tabs merge: each uuid once, in uuid order, bounded', () => {
  const merged = mergeQueues(['b', 'd'].map(msg), ['a', 'b', 'c', null, {}].map((u) => (typeof u === 'string' ? msg(u) : u)), 10);
  assert.deepEqual(merged.map((m) => m.uuid), ['a', 'b', 'c', 'd']);
  assert.deepEqual(mergeQueues(['c'].map(msg), ['a', 'b'].map(msg), 2).map((m) => m.uuid), ['b', 'c']);
});

test('answers: 2xx sent, network errors, 5xx, 408 and 429 retried, 413 split, other 4xx dropped', () => {
  assert.equal(classify(200, 3), 'ok');
  assert.equal(classify(0, 3), 'retry');
  assert.equal(classify(500, 3), 'retry');
  assert.equal(classify(503, 3), 'retry');
  assert.equal(classify(408, 3), 'retry');
  assert.equal(classify(429, 3), 'retry');
  assert.equal(classify(413, 3), 'split');
  assert.equal(classify(413, 1), 'drop');
  assert.equal(classify(400, 3), 'drop');
  assert.equal(classify(401, 3), 'drop');
});

test('back-off doubles from about a second up to the cap, with jitter', () => {
  assert.equal(backoffDelay(0, 30000, 0), 500);
  assert.equal(backoffDelay(0, 30000, 1), 1000);
  assert.equal(backoffDelay(3, 30000, 1), 8000);
  assert.equal(backoffDelay(20, 30000, 1), 30000);
  assert.equal(backoffDelay(20, 30000, 0), 15000);
});
