// The browser side: storage, sending, the public API and the drop-in shims. Everything that
// decides something without touching the browser lives in the other modules.

import { checkUserId, normalizeId } from './ids.js';
import { uuidGenerator } from './uuid.js';
import { sessionExpired, touchSession } from './session.js';
import { backoffDelay, classify, enqueue, mergeQueues, removeSent, takeBatch } from './queue.js';
import { chooseCookieDomain } from './cookie.js';
import { pageProperties } from './context.js';

const VERSION = '0.1.0';
const YEAR_S = 31536000;
// A tab that has not written its queue for this long is gone; another tab sends its messages.
const ORPHAN_MS = 90000;
// Chrome refuses keepalive bodies past 64 KiB in flight; larger batches go as plain fetches.
const KEEPALIVE_BYTES = 60000;
const REQUEST_TIMEOUT_MS = 15000;

const w = window;
const doc = document;
const script = doc.currentScript;
const uuid = uuidGenerator(function (bytes) {
  if (w.crypto && w.crypto.getRandomValues) w.crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
});

let cfg = null;
let key = '';
let qKey = '';
let domain = '';
let queue = [];
let inflight = {};
let sending = false;
let attempt = 0;
let limit = 50;
let timer = 0;
let memo = null; // the state when neither cookies nor localStorage can hold it
const waiting = [];

function warn(text) {
  if (w.console && console.warn) console.warn('[idstitch] ' + text);
}

function assign(target) {
  for (let i = 1; i < arguments.length; i++) {
    const source = arguments[i];
    if (source) for (const k in source) if (Object.prototype.hasOwnProperty.call(source, k)) target[k] = source[k];
  }
  return target;
}

function isObject(value) {
  return !!value && typeof value === 'object' && !Array.isArray(value);
}

// -- storage: one state record in a cookie on the widest domain, mirrored in localStorage ------

function lsGet(k) {
  try { return w.localStorage.getItem(k); } catch (e) { return null; }
}

function lsSet(k, v) {
  try { w.localStorage.setItem(k, v); return true; } catch (e) { return false; }
}

function lsDel(k) {
  try { w.localStorage.removeItem(k); } catch (e) { /* storage blocked */ }
}

function readCookie(name) {
  const parts = doc.cookie ? doc.cookie.split('; ') : [];
  for (let i = 0; i < parts.length; i++) {
    if (parts[i].indexOf(name + '=') === 0) return parts[i].slice(name.length + 1);
  }
  return null;
}

function writeCookie(name, value, dom, maxAge) {
  try {
    doc.cookie = name + '=' + value + '; path=/; max-age=' + maxAge + (dom ? '; domain=' + dom : '') +
      '; SameSite=Lax' + (location.protocol === 'https:' ? '; Secure' : '');
  } catch (e) { /* cookies blocked: localStorage alone keeps the state */ }
}

function probe(dom) {
  const name = key + '_probe';
  writeCookie(name, '1', dom, 60);
  const ok = readCookie(name) === '1';
  if (ok) writeCookie(name, '', dom, 0);
  return ok;
}

function decode(raw) {
  try {
    const state = raw && JSON.parse(decodeURIComponent(raw));
    return state && state.a ? state : null;
  } catch (e) {
    return null;
  }
}

// State: a = anonymous id, d = device id, u = user id, s/st/t = session id, start and last
// activity, o = opted out. The cookie wins (it is shared by subdomains); localStorage brings
// it back when the cookie was cleared or capped (Safari deletes script cookies after 7 days).
function load() {
  let state = decode(readCookie(key)) || decode(lsGet(key)) || memo;
  if (!state) {
    const id = uuid(Date.now());
    state = { a: id, d: id };
  }
  return state;
}

function save(state) {
  memo = state;
  const value = encodeURIComponent(JSON.stringify(state));
  writeCookie(key, value, domain, YEAR_S);
  lsSet(key, value);
}

function distinctId(state) {
  return state.u || state.a;
}

// The server reads browser, OS and device type from the user agent (src/idstitch/ingest/device.py).
function context(state, extra) {
  return assign(pageProperties(location.href, doc.referrer), {
    $lib: 'idstitch-js', $lib_version: VERSION, $device_id: state.d, $raw_user_agent: navigator.userAgent
  }, extra);
}

// -- sending --------------------------------------------------------------------------------

function persist() {
  if (queue.length) lsSet(qKey, JSON.stringify({ t: Date.now(), q: queue }));
  else lsDel(qKey);
}

// Messages left in localStorage by an earlier page of this tab (a reload) or by tabs that
// are gone: their uuids make re-sending them harmless.
function adopt(previous) {
  const prefix = key + '_q_';
  const now = Date.now();
  const keys = [];
  try {
    for (let i = 0; i < w.localStorage.length; i++) keys.push(w.localStorage.key(i));
  } catch (e) { /* storage blocked */ }
  keys.forEach(function (k) {
    if (!k || k.indexOf(prefix) !== 0 || k === qKey) return;
    let left = null;
    try { left = JSON.parse(lsGet(k)); } catch (e) { /* unreadable: drop it */ }
    if (left && k !== prefix + previous && now - left.t < ORPHAN_MS) return;
    if (left && Array.isArray(left.q)) queue = mergeQueues(queue, left.q, cfg.maxQueue);
    lsDel(k);
  });
  persist();
}

function schedule(ms) {
  if (timer) {
    if (ms > 0 || attempt) return;
    clearTimeout(timer);
  }
  timer = setTimeout(function () {
    timer = 0;
    flush();
  }, ms);
}

function push(message) {
  const dropped = enqueue(queue, message, cfg.maxQueue);
  if (dropped) warn('the queue is full: dropped the ' + dropped + ' oldest message(s)');
  persist();
  schedule(queue.length >= limit ? 0 : cfg.flushInterval);
}

// POST one batch; resolves with the HTTP status, 0 when no answer came. The body is sent as
// text/plain, which needs no CORS preflight; the server decodes JSON whatever the type says.
function post(batch) {
  batch.forEach(function (m) { inflight[m.uuid] = 1; });
  const body = JSON.stringify({ token: cfg.token, sent_at: new Date().toISOString(), batch: batch });
  const url = cfg.apiHost + '/ingest/batch';
  // A server that takes the request and never answers must not stall the queue for good.
  const abort = w.AbortController ? new AbortController() : null;
  if (abort) setTimeout(function () { abort.abort(); }, REQUEST_TIMEOUT_MS);
  let answer;
  try {
    answer = fetch(url, {
      method: 'POST', body: body, credentials: 'omit', signal: abort ? abort.signal : undefined,
      keepalive: new Blob([body]).size < KEEPALIVE_BYTES
    }).then(function (r) { return r.status; }, function () { return 0; });
  } catch (e) {
    answer = Promise.resolve(0);
  }
  return answer.then(function (status) {
    batch.forEach(function (m) { delete inflight[m.uuid]; });
    const action = classify(status, batch.length);
    if (action === 'ok' || action === 'drop') {
      if (action === 'drop') warn('the server refused ' + batch.length + ' message(s) with HTTP ' + status);
      queue = removeSent(queue, batch);
      attempt = 0;
      persist();
    } else if (action === 'split') {
      limit = Math.max(1, batch.length >> 1);
    } else {
      attempt++;
    }
    return action;
  });
}

// Send the queue one batch at a time, in order; on failure wait and try again.
function flush() {
  if (!cfg || sending || !queue.length) return Promise.resolve();
  const batch = takeBatch(queue, inflight, limit);
  if (!batch.length) return Promise.resolve();
  sending = true;
  persist(); // the timestamp says this tab is alive
  return post(batch).then(function (action) {
    sending = false;
    if (action === 'retry') retry();
    else if (queue.length) return flush();
  });
}

function retry() {
  schedule(backoffDelay(attempt - 1, cfg.maxBackoff, Math.random()));
}

// The page is going away (or into the background): hand everything not yet on its way to the
// browser with keepalive, which outlives the page. The messages stay in localStorage until a
// 2xx says they arrived, so if the page dies first the next page re-sends them.
function flushNow() {
  if (!cfg || !queue.length) return;
  persist();
  const rest = takeBatch(queue, inflight, queue.length);
  for (let i = 0; i < rest.length; i += limit) {
    post(rest.slice(i, i + limit)).then(function (action) {
      if (action === 'retry') retry();
    });
  }
}

// -- the public API ------------------------------------------------------------------------

// Build a message from the current state and queue it; `build` may change the state.
function emit(build) {
  if (!cfg) return;
  const state = load();
  if (state.o) return;
  const now = Date.now();
  touchSession(state, now, uuid);
  const message = build(state);
  save(state);
  if (!message) return;
  push(assign({ uuid: uuid(now), timestamp: new Date(now).toISOString(), session_id: state.s }, message));
}

function attributes(op, values) {
  if (op === 'unset' ? !Array.isArray(values) : !isObject(values)) {
    return warn(op === 'unset' ? 'unsetAttributes needs a key or a list of keys' : 'attributes must be an object');
  }
  emit(function (state) {
    const message = { type: 'attributes', distinct_id: distinctId(state) };
    message[op] = values;
    return message;
  });
}

function track(event, properties) {
  if (typeof event !== 'string' || !event) return warn('track needs an event name');
  if (properties != null && !isObject(properties)) return warn('track: properties must be an object');
  emit(function (state) {
    return { type: 'track', distinct_id: distinctId(state), event: event, properties: context(state, properties) };
  });
}

function page(name, properties) {
  if (isObject(name)) {
    properties = name;
    name = null;
  }
  track('$pageview', assign({ $title: doc.title }, name ? { $page_name: name } : null, properties));
}

// Heap: an identity never changes. Identifying as someone else while identified starts a new
// anonymous visitor and session first, so the two users are never merged.
function identify(userId, values) {
  if (values != null && !isObject(values)) return warn('identify: attributes must be an object');
  if (userId == null) {
    // Hotjar's identify(null, attributes): attributes for the visitor as they are.
    emit(function (state) {
      return { type: 'identify', user_id: null, anonymous_id: distinctId(state), set: values, properties: context(state) };
    });
    return true;
  }
  const id = checkUserId(userId);
  if (typeof id !== 'string') {
    warn('identify refused: ' + id.error);
    return false;
  }
  const current = load().u;
  if (current === id) {
    if (values) attributes('set', values);
    return true;
  }
  if (current) reset();
  emit(function (state) {
    const message = { type: 'identify', user_id: id, anonymous_id: state.a, set: values, properties: context(state) };
    state.u = id;
    return message;
  });
  return true;
}

function alias(aliasId, original) {
  const source = checkUserId(aliasId);
  const target = original == null ? null : checkUserId(original);
  const bad = typeof source !== 'string' ? source : target && typeof target !== 'string' ? target : null;
  if (bad) return warn('alias refused: ' + bad.error);
  emit(function (state) {
    return { type: 'alias', distinct_id: target || distinctId(state), alias: source };
  });
}

// Logout: a new anonymous id and a new session, nothing merged; `all` also renews the device id.
function reset(all) {
  if (!cfg) return;
  const state = load();
  const now = Date.now();
  state.a = uuid(now);
  if (all) state.d = uuid(now);
  delete state.u;
  state.s = uuid(now);
  state.st = state.t = now;
  save(state);
}

function increment(name, by) {
  const values = isObject(name) ? name : {};
  if (typeof name === 'string') values[name] = by == null ? 1 : by;
  attributes('add', values);
}

function optOut() {
  const state = load();
  state.o = 1;
  save(state);
  queue = [];
  persist();
}

function optIn() {
  const state = load();
  delete state.o;
  save(state);
}

function getter(field) {
  return function () {
    const state = load();
    if (field === 's' && sessionExpired(state, Date.now())) return null; // the next message starts one
    return field === 'distinct' ? distinctId(state) : state[field] || null;
  };
}

function init(token, options) {
  if (cfg) return warn('init was called twice; the first call wins');
  if (!token || typeof token !== 'string') return warn('init needs the project\'s ingest token');
  cfg = assign({
    apiHost: script && script.src ? new URL(script.src).origin : '',
    flushInterval: 300, batchSize: 50, maxBackoff: 30000, maxQueue: 1000, pageview: true, shims: true
  }, options, { token: token });
  cfg.apiHost = String(cfg.apiHost).replace(/\/+$/, '');
  limit = cfg.batchSize;
  key = 'idstitch_' + token.replace(/[^\w-]/g, '_');
  domain = cfg.cookieDomain != null ? cfg.cookieDomain : chooseCookieDomain(location.hostname, probe);
  let previous = null;
  let tab = uuid(Date.now());
  try {
    previous = w.sessionStorage.getItem(key + '_tab');
    w.sessionStorage.setItem(key + '_tab', tab);
  } catch (e) { /* no sessionStorage: orphans are adopted by age only */ }
  qKey = key + '_q_' + tab;
  save(load());
  adopt(previous);
  w.addEventListener('pagehide', flushNow);
  doc.addEventListener('visibilitychange', function () {
    if (doc.visibilityState === 'hidden') flushNow();
  });
  w.addEventListener('online', function () {
    attempt = 0;
    clearTimeout(timer);
    timer = 0;
    flush();
  });
  if (cfg.shims) shims();
  if (cfg.pageview) page();
  waiting.splice(0).forEach(function (args) { call(args[0], args[1]); });
  if (queue.length) schedule(0);
}

const api = {
  init: init,
  identify: identify,
  track: track,
  page: page,
  alias: alias,
  setAttributes: function (values) { attributes('set', values); },
  setAttributesOnce: function (values) { attributes('set_once', values); },
  unsetAttributes: function (keys) {
    attributes('unset', typeof keys === 'string' ? [keys] : Array.isArray(keys) ? keys.concat() : null);
  },
  increment: increment,
  reset: reset,
  opt_out: optOut,
  opt_in: optIn,
  flush: function () { return flush(); },
  getDistinctId: getter('distinct'),
  getAnonymousId: getter('a'),
  getUserId: getter('u'),
  getDeviceId: getter('d'),
  getSessionId: getter('s')
};
api.addUserProperties = api.setAttributes;

function call(name, args) {
  const fn = api[name];
  if (typeof fn !== 'function') return warn('unknown method ' + JSON.stringify(name));
  if (!cfg && name !== 'init') {
    waiting.push([name, args]);
    return;
  }
  return fn.apply(null, args);
}

const slice = Array.prototype.slice;
const idstitch = function () {
  return call(arguments[0], slice.call(arguments, 1));
};
Object.keys(api).forEach(function (name) {
  idstitch[name] = function () { return call(name, slice.call(arguments)); };
});

// Drop-in shims for sites moving from Hotjar, Heap or Highlight: installed when the name is
// free or holds only that tool's loader stub, whose queued calls are replayed.
function shims() {
  const hj = w.hj;
  if (!hj || hj.q) {
    w.hj = function (command, a, b) {
      if (command === 'identify') identify(a, b);
      else if (command === 'event') track(a);
    };
    (hj && hj.q || []).forEach(function (args) { w.hj.apply(null, slice.call(args)); });
  }
  const heap = w.heap;
  if (!heap || (Array.isArray(heap) && !heap.loaded)) {
    w.heap = {
      identify: function (id) { identify(id); },
      addUserProperties: api.setAttributes,
      resetIdentity: function () { reset(); },
      track: track
    };
    (heap || []).forEach(function (args) {
      const fn = w.heap[args[0]];
      if (fn) fn.apply(null, slice.call(args, 1));
    });
  }
  if (!w.H) {
    // Highlight's page calls H.init(projectId, options) first; idstitch is set up by its own
    // init, so that call (and H.start / H.stop, which control its recorder) does nothing.
    const nothing = function () {};
    w.H = { init: nothing, start: nothing, stop: nothing, identify: function (id, metadata) { identify(id, metadata); }, track: track };
  }
}

const stub = w.idstitch;
if (!stub || !stub.loaded) {
  idstitch.loaded = true;
  w.idstitch = idstitch;
  const queued = (stub && stub.q) || [];
  // init first, whatever order the page called things in; then the rest in order.
  queued.forEach(function (args) { if (args[0] === 'init') call('init', slice.call(args, 1)); });
  queued.forEach(function (args) { if (args[0] !== 'init') call(args[0], slice.call(args, 1)); });
}
