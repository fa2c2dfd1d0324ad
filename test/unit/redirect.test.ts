import { describe, expect, it } from 'vitest';
import { isSafeRedirect } from '../../src/redirect.js';

describe('isSafeRedirect', () => {
  it.each(['/', '/x', '/account?tab=2', '/a/b#c', '/%20space', '/caf%C3%A9'])(
    'accepts the same-site path %j',
    (path) => {
      expect(isSafeRedirect(path)).toBe(true);
    },
  );

  it.each([
    '//evil.com',
    '/\\evil.com',
    '/%2F%2Fevil.com',
    '/%2Fevil.com',
    '/%5Cevil.com',
    '/\t/evil.com',
    '/%09/evil.com',
    '/\n/evil.com',
    '/x\r\nSet-Cookie: a=b',
    '/x%0d%0aSet-Cookie:%20a=b',
    'https://evil.com',
    'http://evil.com/',
    'javascript:alert(1)',
    'JaVaScRiPt:alert(1)',
    'evil.com',
    '',
    ' /x',
    '/%E0%A4%A',
    `/${'a'.repeat(1024)}`,
  ])('refuses %j', (path) => {
    expect(isSafeRedirect(path)).toBe(false);
  });

  it.each([undefined, null, 1, ['/x'], { path: '/x' }])('refuses the non-string %j', (value) => {
    expect(isSafeRedirect(value)).toBe(false);
  });
});
