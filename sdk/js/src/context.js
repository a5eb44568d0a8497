// The page properties every event carries: they fill the person's first-touch attributes on
// the server (src/idstitch/first_touch.py reads the same names).

export const CAMPAIGN_KEYS = [
  'utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term', 'utm_name',
  'gclid', 'gad_source', 'gclsrc', 'dclid', 'gbraid', 'wbraid', 'fbclid', 'msclkid',
  'twclid', 'li_fat_id', 'mc_cid', 'igshid', 'ttclid', 'rdt_cid', 'irclid', '_kx',
  'epik', 'qclid', 'sccid', 'oppref', 'bfcid'
];

// "$direct" rather than nothing: a later page's internal referrer must not become the
// person's initial referrer (PostHog does the same).
export const DIRECT = '$direct';

export function pageProperties(href, referrer) {
  const props = { $current_url: href };
  let url = null;
  try { url = new URL(href); } catch (e) { /* not a URL: keep $current_url only */ }
  if (url) {
    props.$host = url.host;
    props.$pathname = url.pathname;
    CAMPAIGN_KEYS.forEach(function (key) {
      const value = url.searchParams.get(key);
      if (value !== null) props[key] = value;
    });
  }
  props.$referrer = referrer || DIRECT;
  let domain = DIRECT;
  try { if (referrer) domain = new URL(referrer).host || DIRECT; } catch (e) { /* keep $direct */ }
  props.$referring_domain = domain;
  return props;
}
