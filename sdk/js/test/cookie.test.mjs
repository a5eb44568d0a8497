import assert from 'node:assert/strict';
import { test } from 'node:test';
import { candidateDomains, chooseCookieDomain } from '../src/cookie.js';

test('candidates go from the top-level domain down to the full host', () => {
  assert.deepEqual(candidateDomains('a.shop.idstitch.test'), ['test', 'idstitch.test', 'shop.idstitch.test', 'a.shop.idstitch.test']);
  assert.deepEqual(candidateDomains('www.example.co.uk'), ['uk', 'co.uk', 'example.co.uk', 'www.example.co.uk']);
});

test('IP addresses and single-label hosts get a host-only cookie', () => {
  for (const host of ['localhost', '127.0.0.1', '::1', '[::1]', '']) assert.deepEqual(candidateDomains(host), [], host);
  assert.equal(chooseCookieDomain('localhost', () => true), '');
});

test('the widest domain the browser accepts wins (it knows the public-suffix list)', () => {
  const publicSuffixes = new Set(['uk', 'co.uk', 'test']);
  const tried = [];
  const accepts = (domain) => {
    tried.push(domain);
    return !publicSuffixes.has(domain);
  };
  assert.equal(chooseCookieDomain('www.example.co.uk', accepts), 'example.co.uk');
  assert.deepEqual(tried, ['uk', 'co.uk', 'example.co.uk']);
  assert.equal(chooseCookieDomain('a.shop.idstitch.test', accepts), 'idstitch.test');
});

test('when no domain sticks the cookie is host-only', () => {
  assert.equal(chooseCookieDomain('app.example.com', () => false), '');
});
