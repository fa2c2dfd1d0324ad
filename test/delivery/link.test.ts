import querystring from 'node:querystring';
import { PasswordlessError } from 'express-passwordless';
import qs from 'qs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildLink, linkTarget } from '../../src/delivery/link.js';

const target = (baseUrl: string, fields: Record<string, unknown> = {}) =>
  linkTarget('test()', { baseUrl, ...fields });

afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

describe('buildLink', () => {
  it.each([
    ['https://app.example/login', 'https://app.example/login?token=T&uid=U'],
    ['https://app.example', 'https://app.example/?token=T&uid=U'],
    ['https://app.example/login?', 'https://app.example/login?token=T&uid=U'],
    ['https://app.example/login?lang=en', 'https://app.example/login?lang=en&token=T&uid=U'],
    ['https://app.example/login?a=%20b&c', 'https://app.example/login?a=%20b&c&token=T&uid=U'],
    ['http://localhost:3000/auth/accept', 'http://localhost:3000/auth/accept?token=T&uid=U'],
    ['https://APP.example:443/x', 'https://app.example/x?token=T&uid=U'],
  ])('appends token and uid to %s', (baseUrl, expected) => {
    expect(buildLink(target(baseUrl), 'T', 'U')).toBe(expected);
  });

  it.each([
    'a&uid=admin',
    'a#fragment',
    'a b+c',
    '<script>"\'',
    '../../etc/passwd',
    'ünïcødé 😀',
    'x\r\nSet-Cookie: a=b',
    'a?b=c',
    '%41%00',
  ])('encodes the uid %j so it comes back unchanged as one field', (uid) => {
    const link = buildLink(target('https://app.example/login?lang=en'), 'tok/+=', uid);
    const url = new URL(link);
    expect(url.origin).toBe('https://app.example');
    expect(url.pathname).toBe('/login');
    expect(url.hash).toBe('');
    expect([...url.searchParams.keys()]).toEqual(['lang', 'token', 'uid']);
    expect(url.searchParams.get('uid')).toBe(uid);
    expect(url.searchParams.get('token')).toBe('tok/+=');
    // Printable ASCII only, and nothing that could end an HTML attribute or open a tag.
    expect(link).toMatch(/^[!-~]+$/);
    expect(link).not.toMatch(/[<>"']/);
  });

  it("round-trips token and uid through Express 5's query parser (node:querystring) and Express 4's (qs)", () => {
    const uid = 'a&uid=b#c+d%e [f]=g?h/ü😀';
    const token = 'x&token=y#+%';
    const url = new URL(buildLink(target('https://app.example/login?a=1'), token, uid));
    expect(url.hash).toBe('');
    const query = url.search.slice(1);
    expect(querystring.parse(query)).toEqual({ a: '1', token, uid });
    expect(qs.parse(query, { allowPrototypes: true })).toEqual({ a: '1', token, uid });
  });

  it('uses the configured field names', () => {
    expect(buildLink(target('https://app.example/', { tokenField: 't', uidField: 'u' }), '1', '2')).toBe(
      'https://app.example/?t=1&u=2',
    );
  });
});

describe('linkTarget', () => {
  it.each([
    ['a number', 42],
    ['an empty string', ''],
    ['a relative path', '/login'],
    ['a protocol-relative URL', '//app.example/login'],
    ['a mailto: URL', 'mailto:a@app.example'],
    ['a data: URL', 'data:text/html,hi'],
    ['user and password', 'https://u:p@app.example/'],
    ['a user name only', 'https://u@app.example/'],
    ['a fragment', 'https://app.example/login#top'],
    ['an empty fragment', 'https://app.example/login#'],
    ['a tab', 'https://app.example/lo\tgin'],
    ['a leading space', ' https://app.example/login'],
    ['a uid field already in the query', 'https://app.example/login?uid=1'],
  ])('refuses %s with BAD_OPTIONS', (_what, baseUrl) => {
    expect(() => linkTarget('test()', { baseUrl })).toThrow(
      expect.objectContaining({ code: 'BAD_OPTIONS', message: expect.stringMatching(/^test\(\): /) }),
    );
  });

  it('refuses equal or empty field names', () => {
    expect(() => target('https://app.example/', { tokenField: 'a', uidField: 'a' })).toThrow(
      PasswordlessError,
    );
    expect(() => target('https://app.example/', { uidField: '' })).toThrow(PasswordlessError);
    expect(() => target('https://app.example/', { tokenField: 7 })).toThrow(PasswordlessError);
  });

  it('warns once when a non-loopback http baseUrl is used with NODE_ENV=production', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    vi.stubEnv('NODE_ENV', 'production');
    target('http://plain.example/login');
    target('http://plain.example/other');
    target('http://localhost:3000/login');
    target('https://secure.example/login');
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toMatch(/http: with NODE_ENV=production/);
  });

  it('reads NODE_ENV trimmed and in any case, as devOutbox() does', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    vi.stubEnv('NODE_ENV', ' Production\n');
    target('http://another-plain.example/login');
    expect(warn).toHaveBeenCalledTimes(1);
  });

  it('does not warn about http outside production', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    target('http://dev.example/login');
    expect(warn).not.toHaveBeenCalled();
  });
});
