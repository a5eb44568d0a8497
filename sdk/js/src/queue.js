// The send queue: plain arrays of messages, each carrying its uuid. Nothing here does I/O.

// Append, dropping the oldest messages past `max`; returns how many were dropped.
export function enqueue(queue, message, max) {
  queue.push(message);
  const dropped = Math.max(0, queue.length - max);
  if (dropped) queue.splice(0, dropped);
  return dropped;
}

// The first `size` messages that are not already on their way.
export function takeBatch(queue, inflight, size) {
  const out = [];
  for (let i = 0; i < queue.length && out.length < size; i++) {
    if (!inflight[queue[i].uuid]) out.push(queue[i]);
  }
  return out;
}

export function removeSent(queue, batch) {
  const sent = {};
  batch.forEach(function (m) { sent[m.uuid] = 1; });
  return queue.filter(function (m) { return !sent[m.uuid]; });
}

// Join queues left by other tabs or an earlier page: each uuid once, in uuid (= time) order.
export function mergeQueues(a, b, max) {
  const seen = {};
  const all = a.concat(b).filter(function (m) {
    if (!m || !m.uuid || seen[m.uuid]) return false;
    seen[m.uuid] = 1;
    return true;
  });
  all.sort(function (x, y) { return x.uuid < y.uuid ? -1 : x.uuid > y.uuid ? 1 : 0; });
  return all.slice(Math.max(0, all.length - max));
}

// What to do with a batch after the server answered `status` (0: no answer at all).
// 5xx, 408, 429 and network errors are retried; 413 halves the batch; any other 4xx can never
// succeed (a bad token or a malformed body), so the batch is dropped with a warning.
export function classify(status, size) {
  if (status >= 200 && status < 300) return 'ok';
  if (!status || status >= 500 || status === 408 || status === 429) return 'retry';
  if (status === 413 && size > 1) return 'split';
  return 'drop';
}

// Exponential back-off with jitter: attempt 0 waits 0.5-1 s, doubling up to `maxMs`.
export function backoffDelay(attempt, maxMs, random) {
  const base = Math.min(maxMs, 1000 * Math.pow(2, attempt));
  return Math.round(base / 2 + (random * base) / 2);
}
