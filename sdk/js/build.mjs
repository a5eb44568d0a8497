// Builds the browser SDK into one file the server ships: src/idstitch/web/static/idstitch.js.
//
//   node sdk/js/build.mjs            write the file
//   node sdk/js/build.mjs --check    exit 1 if the committed file is not what the sources build
//
// No dependencies: the modules of src/ are concatenated in MODULES order (their import lines
// dropped, `export` removed) inside one function, then comments and whitespace are stripped by
// a small tokenizer that copies strings, template-free code and regular expressions verbatim.
// The sources end every statement with a semicolon, so no line break is ever needed. The
// output is a pure function of the sources: the same bytes on every machine.

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const HERE = dirname(fileURLToPath(import.meta.url));
export const OUTPUT = join(HERE, '..', '..', 'src', 'idstitch', 'web', 'static', 'idstitch.js');
export const MODULES = ['ids.js', 'uuid.js', 'session.js', 'queue.js', 'cookie.js', 'context.js', 'client.js'];

const IDENT = /[A-Za-z0-9_$]/;
// After these a `/` starts a regular expression; after anything else it divides.
const REGEX_AFTER_WORD = new Set(['return', 'typeof', 'case', 'do', 'else', 'in', 'of', 'new', 'delete', 'void', 'throw']);
const KEYWORDS = new Set(('break case catch class const continue debugger default delete do else export extends false ' +
  'finally for function if import in instanceof let new null of return super switch this throw true try typeof var ' +
  'void while with yield async await static get set arguments eval undefined NaN Infinity').split(' '));
// Globals the sources use: a declared name equal to one of these is never renamed. Renaming is
// by name, not by scope, so a source must not declare a name it also uses as a browser global
// elsewhere; add such a global here if one is ever needed (the browser tests would catch it).
const GLOBALS = new Set(('window document location console fetch Blob URL JSON Math Object Array Promise String ' +
  'Number Date Uint8Array setTimeout clearTimeout isFinite parseInt AbortController crypto navigator ' +
  'localStorage sessionStorage').split(' '));

// Split JavaScript into tokens {kind: 'word' | 'string' | 'regex' | 'punct', text}, dropping
// comments and whitespace (recorded as `space` on the next token).
export function tokenize(source, name = 'input') {
  const tokens = [];
  let i = 0;
  let space = false;
  const push = (kind, text) => {
    tokens.push({ kind, text, space });
    space = false;
  };
  const last = () => tokens[tokens.length - 1];
  while (i < source.length) {
    const c = source[i];
    const next = source[i + 1];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      space = true;
      i++;
    } else if (c === '/' && next === '/') {
      while (i < source.length && source[i] !== '\n') i++;
      space = true;
    } else if (c === '/' && next === '*') {
      const end = source.indexOf('*/', i + 2);
      if (end < 0) throw new Error(`${name}: unterminated comment`);
      i = end + 2;
      space = true;
    } else if (c === '`') {
      throw new Error(`${name}: template literals are not supported by this minifier; use strings`);
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < source.length && source[j] !== c) {
        if (source[j] === '\\') j++;
        if (source[j] === '\n') throw new Error(`${name}: unterminated string at ${i}`);
        j++;
      }
      push('string', source.slice(i, j + 1));
      i = j + 1;
    } else if (c === '/' && isRegexStart(last())) {
      let j = i + 1;
      let inClass = false;
      while (j < source.length && (inClass || source[j] !== '/')) {
        if (source[j] === '\\') j++;
        else if (source[j] === '[') inClass = true;
        else if (source[j] === ']') inClass = false;
        if (source[j] === '\n') throw new Error(`${name}: unterminated regular expression at ${i}`);
        j++;
      }
      j++;
      while (j < source.length && /[a-z]/.test(source[j])) j++;
      push('regex', source.slice(i, j));
      i = j;
    } else if (IDENT.test(c)) {
      let j = i;
      while (j < source.length && IDENT.test(source[j])) j++;
      push('word', source.slice(i, j));
      i = j;
    } else {
      push('punct', c);
      i++;
    }
  }
  return tokens;
}

function isRegexStart(previous) {
  if (!previous) return true;
  if (previous.kind === 'string' || previous.kind === 'regex') return false;
  if (previous.kind === 'word') return REGEX_AFTER_WORD.has(previous.text);
  return !(previous.text === ')' || previous.text === ']' || previous.text === '}');
}

// Names the sources declare: after let/const/var/function, function parameters, catch (e).
// A name missed here is simply not renamed, which is always safe.
function declaredNames(tokens) {
  const names = new Set();
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i].text;
    if ((t === 'let' || t === 'const' || t === 'var' || t === 'function') && tokens[i + 1]?.kind === 'word') {
      names.add(tokens[i + 1].text);
    }
    if (t === 'function' || t === 'catch') {
      let j = i + 1;
      while (j < tokens.length && tokens[j].text !== '(') j++;
      for (j++; j < tokens.length && tokens[j].text !== ')'; j++) {
        if (tokens[j].kind === 'word' && (tokens[j + 1].text === ',' || tokens[j + 1].text === ')')) names.add(tokens[j].text);
      }
    }
  }
  return [...names].filter((n) => !KEYWORDS.has(n) && !GLOBALS.has(n) && !/^\d/.test(n));
}

function* shortNames() {
  const first = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$';
  const rest = first + '0123456789';
  for (const a of first) yield a;
  for (const a of first) for (const b of rest) yield a + b;
}

// A token that names a property, never a variable: `x.name` and the key in `{name: ...}`.
function isProperty(tokens, i) {
  const before = tokens[i - 1]?.text;
  return before === '.' || ((before === '{' || before === ',') && tokens[i + 1]?.text === ':');
}

// Give every declared name a short one, most used first. The renaming is one-to-one and the
// new names appear nowhere in the sources, so no name can capture another.
export function mangle(tokens) {
  const declared = new Set(declaredNames(tokens));
  const counts = new Map();
  tokens.forEach((t, i) => {
    if (t.kind === 'word' && declared.has(t.text) && !isProperty(tokens, i)) counts.set(t.text, (counts.get(t.text) || 0) + 1);
  });
  const taken = new Set(tokens.filter((t) => t.kind === 'word').map((t) => t.text));
  const fresh = shortNames();
  const renames = new Map();
  [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).forEach(([original]) => {
    let candidate = fresh.next().value;
    while (taken.has(candidate) || KEYWORDS.has(candidate) || GLOBALS.has(candidate)) candidate = fresh.next().value;
    if (candidate.length < original.length) renames.set(original, candidate);
  });
  return tokens.map((t, i) =>
    t.kind === 'word' && renames.has(t.text) && !isProperty(tokens, i) ? { ...t, text: renames.get(t.text) } : t
  );
}

export function render(tokens) {
  let out = '';
  for (const t of tokens) {
    if (t.space && out) {
      const a = out[out.length - 1];
      const b = t.text[0];
      // Keep a space only where joining would change the meaning: two words, `a + +b`, `a - -b`.
      if ((IDENT.test(a) && IDENT.test(b)) || ((a === '+' || a === '-') && a === b)) out += ' ';
    }
    out += t.text;
  }
  return out;
}

export function minify(source, { name = 'input', rename = true } = {}) {
  const tokens = tokenize(source, name);
  return render(rename ? mangle(tokens) : tokens);
}

// One module's code inside the bundle: its imports are the bundle's own names.
export function unwrapModule(text, name) {
  return text
    .split('\n')
    .filter((line) => !/^import\s/.test(line))
    .map((line) => {
      if (/^export\s+default\b/.test(line)) throw new Error(`${name}: default exports are not supported`);
      return line.replace(/^export\s+/, '');
    })
    .join('\n');
}

export function build() {
  const version = JSON.parse(readFileSync(join(HERE, 'package.json'), 'utf8')).version;
  const body = MODULES.map((name) => unwrapModule(readFileSync(join(HERE, 'src', name), 'utf8'), name)).join('\n');
  const banner = `/*! idstitch.js ${version} | built by sdk/js/build.mjs from sdk/js/src; do not edit */\n`;
  return banner + minify(`(function () { 'use strict'; ${body} })();`) + '\n';
}

export function sizes(code) {
  return { minified: Buffer.byteLength(code), gzipped: gzipSync(Buffer.from(code), { level: 9 }).length };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const code = build();
  const { minified, gzipped } = sizes(code);
  if (process.argv.includes('--check')) {
    let committed = '';
    try { committed = readFileSync(OUTPUT, 'utf8'); } catch { /* missing counts as stale */ }
    if (committed !== code) {
      console.error(`${OUTPUT} is out of date: run \`node sdk/js/build.mjs\` and commit the result`);
      process.exit(1);
    }
    console.log(`${OUTPUT} is up to date (${minified} bytes, ${gzipped} gzipped)`);
  } else {
    writeFileSync(OUTPUT, code);
    console.log(`wrote ${OUTPUT}: ${minified} bytes, ${gzipped} gzipped`);
  }
}
