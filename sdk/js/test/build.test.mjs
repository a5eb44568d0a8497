import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { OUTPUT, build, minify, sizes, tokenize } from '../build.mjs';

test('comments and whitespace go; strings and regular expressions stay as written', () => {
  const source = "// note\nconst a = 'x // y' ; /* z */ const b = /[/\\]]+/g.test(a) ? 1 / 2 : a - -1 ;\n";
  assert.equal(minify(source, { rename: false }), "const a='x // y';const b=/[/\\]]+/g.test(a)?1/2:a- -1;");
});

test('a regular expression may follow return and other keywords; division follows values', () => {
  const kinds = (src) => tokenize(src).filter((t) => t.kind === 'regex').map((t) => t.text);
  assert.deepEqual(kinds('function f(x){return /ab+/.test(x);}'), ['/ab+/']);
  assert.deepEqual(kinds('x = a / b / c; y = (a) / 2; z = [1] / 3;'), []);
  assert.deepEqual(kinds('f(/x/i, typeof /y/)'), ['/x/i', '/y/']);
});

test('declared names are renamed; properties, object keys and globals are not', () => {
  const source = 'function longName(state, value) { const other = { state: state, value: value.state }; ' +
    'return window.longName + other.state + Math.max(1, 2); } return longName(1, 2);';
  const out = minify(source);
  const run = new Function('window', out);
  assert.ok(!out.includes('longName('), out);
  assert.ok(out.includes('window.longName'), out);
  assert.ok(out.includes('{state:') && out.includes(',value:') && out.includes('.state'), out);
  assert.ok(out.includes('Math.max'), out);
  assert.equal(run({ longName: 'w' }), 'w12');
});

test('template literals are refused rather than mangled', () => {
  assert.throws(() => minify('const a = `x`;'), /template literals/);
});

test('the committed build is what the sources produce, and it is small', () => {
  const code = build();
  assert.equal(readFileSync(OUTPUT, 'utf8'), code, 'run `node sdk/js/build.mjs` and commit the result');
  new Function(code); // it parses
  const { gzipped } = sizes(code);
  assert.ok(gzipped < 6 * 1024, `the SDK is ${gzipped} bytes gzipped; the budget is 6 KiB`);
});
