// Which domain the state cookie is set on: the widest one the browser accepts, so every
// subdomain of the site shares the anonymous id. The browser knows the public-suffix list and
// we don't, so we try from the top down ("com", "example.com", "www.example.com") and keep
// the first that sticks. IP addresses and single-label hosts get a host-only cookie ('').

export function candidateDomains(hostname) {
  if (!hostname || hostname.indexOf('.') < 0 || hostname.indexOf(':') >= 0 || /^[\d.]+$/.test(hostname)) return [];
  const parts = hostname.split('.');
  const out = [];
  for (let i = parts.length - 1; i >= 0; i--) out.push(parts.slice(i).join('.'));
  return out;
}

// `accepts(domain)` tries to set a probe cookie on `domain` and says whether it stuck.
export function chooseCookieDomain(hostname, accepts) {
  const candidates = candidateDomains(hostname);
  for (let i = 0; i < candidates.length; i++) {
    if (accepts(candidates[i])) return candidates[i];
  }
  return '';
}
