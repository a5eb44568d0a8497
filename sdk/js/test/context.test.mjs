import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CAMPAIGN_KEYS, pageProperties } from '../src/context.js';

test('page, referrer, UTM and click-id properties for first-touch attributes', () => {
  const props = pageProperties(
    'https://shop.example.com:8443/pricing?utm_source=news&utm_campaign=spring%20sale&gclid=abc&other=1&fbclid=',
    'https://www.google.com/search?q=x'
  );
  assert.deepEqual(props, {
    $current_url: 'https://shop.example.com:8443/pricing?utm_source=news&utm_campaign=spring%20sale&gclid=abc&other=1&fbclid=',
    $host: 'shop.example.com:8443',
    $pathname: '/pricing',
    utm_source: 'news',
    utm_campaign: 'spring sale',
    gclid: 'abc',
    fbclid: '',
    $referrer: 'https://www.google.com/search?q=x',
    $referring_domain: 'www.google.com'
  });
});

test('no referrer is "$direct", so a later internal referrer never becomes the initial one', () => {
  const props = pageProperties('https://example.com/', '');
  assert.equal(props.$referrer, '$direct');
  assert.equal(props.$referring_domain, '$direct');
});

test('the campaign keys are the ones the server reads', () => {
  for (const key of ['utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term', 'gclid', 'fbclid', 'msclkid']) {
    assert.ok(CAMPAIGN_KEYS.includes(key), key);
  }
});
