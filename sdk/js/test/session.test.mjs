import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SESSION_IDLE_MS, SESSION_MAX_MS, sessionExpired, touchSession } from '../src/session.js';

const MINUTE = 60 * 1000;
let counter = 0;
const newId = () => 'session-' + ++counter;

test('the limits are 30 minutes idle and 24 hours in all', () => {
  assert.equal(SESSION_IDLE_MS, 30 * MINUTE);
  assert.equal(SESSION_MAX_MS, 24 * 60 * MINUTE);
});

test('no session yet: one starts', () => {
  const state = {};
  assert.equal(touchSession(state, 1000, newId), true);
  assert.deepEqual(state, { s: state.s, st: 1000, t: 1000 });
});

test('activity within 30 minutes keeps the session and moves its last activity', () => {
  const state = { s: 'kept', st: 0, t: 0 };
  assert.equal(touchSession(state, 29 * MINUTE, newId), false);
  assert.deepEqual(state, { s: 'kept', st: 0, t: 29 * MINUTE });
});

test('30 minutes without activity end the session', () => {
  const state = { s: 'old', st: 0, t: 0 };
  assert.equal(sessionExpired(state, 30 * MINUTE - 1), false);
  assert.equal(sessionExpired(state, 30 * MINUTE), true);
  touchSession(state, 30 * MINUTE, newId);
  assert.notEqual(state.s, 'old');
  assert.equal(state.st, 30 * MINUTE);
});

test('24 hours end a session however active it is', () => {
  const state = { s: 'busy', st: 0, t: 0 };
  for (let now = 20 * MINUTE; now < SESSION_MAX_MS; now += 20 * MINUTE) touchSession(state, now, newId);
  assert.equal(state.s, 'busy');
  touchSession(state, SESSION_MAX_MS, newId);
  assert.notEqual(state.s, 'busy');
});

test('garbage in the stored state starts a new session', () => {
  assert.equal(sessionExpired({ s: 'x', st: 'soon', t: 0 }, 5), true);
  assert.equal(sessionExpired({ s: 'x' }, 5), true);
});
