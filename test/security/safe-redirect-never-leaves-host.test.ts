// SECURITY 18: every origin isSafeRedirect accepts resolves (WHATWG URL, as browsers do) to the app's own host — as
// sent, as Express encodes it into Location, and after one or two more percent-decodings (only double-encoded
// input, '%25…', may escape after a second decode, which no browser or Express performs).
import { createRequire } from 'node:module';
import { expect, it } from 'vitest';
import { isSafeRedirect } from '../../src/redirect.js';

// Express's own Location encoder (res.location → encodeurl)
const encodeUrl = createRequire(import.meta.url)('encodeurl') as (url: string) => string;

const parts = [
  '/',
  '\\',
  '%2F',
  '%2f',
  '%5C',
  '%5c',
  '%252F',
  '%255C',
  '%25',
  '\t',
  '%09',
  '%0a',
  '%0D',
  ' ',
  '%20',
  '.',
  '..',
  '@',
  ':',
  'evil.com',
  '%00',
  '\u3002',
  '\uFF0F',
  '\uFF3C',
  '%EF%BC%8F',
  'http:',
  'javascript:',
  '%2e',
  '?',
  '#',
  '\u00a0',
  '\u2028',
  '%E2%80%A8',
  '%C2%85',
  'x',
  '%',
  '%%32%46',
  '\u0085',
  '%u002F',
];

function hostOf(u: string): string | undefined {
  try {
    return new URL(u, 'https://app.example/base/').host;
  } catch {
    return undefined;
  }
}

it('no origin isSafeRedirect accepts leaves the host, as sent, as encoded by Express, or decoded once', () => {
  let accepted = 0;
  const bad: string[] = [];
  for (const a of parts)
    for (const b of parts)
      for (const c of parts) {
        const s = `/${a}${b}${c}`;
        if (!isSafeRedirect(s)) continue;
        accepted += 1;
        const variants = [encodeUrl(s), s];
        try {
          const d1 = decodeURIComponent(s);
          variants.push(d1);
          variants.push(decodeURIComponent(d1));
        } catch {}
        for (const v of variants) {
          const h = hostOf(v);
          if (h !== undefined && h !== 'app.example')
            bad.push(`${JSON.stringify(s)} -> ${JSON.stringify(v)} -> ${h}`);
        }
      }
  expect(accepted).toBeGreaterThan(1000);
  expect(bad.filter((b) => !b.includes('%25'))).toEqual([]);
});

it.each([
  '//evil.com',
  '/\\evil.com',
  '/%2F%2Fevil.com',
  '/%5Cevil.com',
  '/\t/evil.com',
  'https://evil.com',
  'javascript:alert(1)',
])('the SECURITY 18 examples are refused: %j', (origin) => {
  expect(isSafeRedirect(origin)).toBe(false);
});
