// Sessions: one id shared by every tab (it lives in the shared state cookie), ended by 30
// minutes without activity or 24 hours in all, whichever comes first (PostHog's and
// Highlight's limits). `st` is when the session started, `t` the last activity, in ms.

export const SESSION_IDLE_MS = 30 * 60 * 1000;
export const SESSION_MAX_MS = 24 * 60 * 60 * 1000;

export function sessionExpired(state, now) {
  return !state.s || !(now - state.t < SESSION_IDLE_MS) || !(now - state.st < SESSION_MAX_MS);
}

// Record activity at `now`, starting a new session first when the old one has ended.
// Returns true when a new session started.
export function touchSession(state, now, newId) {
  const expired = sessionExpired(state, now);
  if (expired) {
    state.s = newId(now);
    state.st = now;
  }
  state.t = now;
  return expired;
}
