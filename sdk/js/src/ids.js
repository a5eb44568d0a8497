// Distinct ids: the client-side mirror of src/idstitch/ids.py (identity-rules.md §2).
// The server refuses these too; refusing them here keeps a bad `identify` from ever leaving
// the page and says why in the console, where the site's developer looks.

export const MAX_ID_LENGTH = 200;

// Union of Heap's and PostHog's generic ids, matched case-insensitively (same list as ids.py).
export const GENERIC_IDS = [
  'anonymous', 'guest', 'distinctid', 'distinct_id', 'id', 'not_authenticated', 'email',
  'undefined', 'true', 'false', 'null', 'none', 'nan', '[object object]'
];

// The id as the server stores it, or an object {error} saying why it cannot be one.
export function normalizeId(raw) {
  let text = raw;
  if (typeof raw === 'number') {
    if (!isFinite(raw)) return { error: 'a distinct id must be a finite number' };
    text = String(raw);
  } else if (typeof raw !== 'string') {
    return { error: 'a distinct id must be a string or a number, got ' + (raw === null ? 'null' : typeof raw) };
  }
  if (!text) return { error: 'a distinct id is empty' };
  if (text.length > MAX_ID_LENGTH) {
    return { error: 'a distinct id is ' + text.length + ' characters long; at most ' + MAX_ID_LENGTH + ' are allowed' };
  }
  if (text.indexOf('\0') >= 0) return { error: 'a distinct id contains a NUL character' };
  return text;
}

// Python's whitespace (str.isspace), which differs from JavaScript's trim() by a few characters.
const BLANK = /^[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;

// True when the id must never be linked nor become a user id. Only the blank test looks past
// spaces: " guest" is a legal id, as on the server.
export function isIllegalForIdentity(id) {
  let bare = id;
  const q = id.charAt(0);
  if (id.length >= 2 && (q === '"' || q === "'") && id.charAt(id.length - 1) === q) bare = id.slice(1, -1);
  return BLANK.test(id) || BLANK.test(bare) || bare === '0' || GENERIC_IDS.indexOf(bare.toLowerCase()) >= 0;
}

// The user id identify may use, or {error}: what the console warning says.
export function checkUserId(raw) {
  const id = normalizeId(raw);
  if (typeof id !== 'string') return id;
  if (isIllegalForIdentity(id)) return { error: JSON.stringify(id) + ' is a generic id and cannot name a user' };
  return id;
}
