import { MemoryStore, Passwordless, PasswordlessError } from 'express-passwordless';
import { afterEach, describe, expect, it, vi } from 'vitest';

const send = async () => {};

function ready(options?: Parameters<Passwordless['init']>[1]): Passwordless {
  const p = new Passwordless();
  p.init(new MemoryStore(), options);
  return p;
}

function expectCode(fn: () => unknown, code: string, message?: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PasswordlessError);
    expect((err as PasswordlessError).code).toBe(code);
    if (message) expect((err as Error).message).toMatch(message);
    return;
  }
  throw new Error('expected a throw');
}

afterEach(() => vi.restoreAllMocks());

describe('init()', () => {
  it.each([
    ['nothing', undefined],
    ['a string', 'redis://'],
    ['an object without methods', {}],
    [
      'a 1.x callback store (authenticate, no consume)',
      { authenticate() {}, storeOrUpdate() {}, invalidateUser() {} },
    ],
  ])('throws INVALID_STORE for %s', (_, store) => {
    expectCode(() => new Passwordless().init(store as never), 'INVALID_STORE');
  });

  it('names the missing store methods', () => {
    expectCode(
      () => new Passwordless().init({ storeOrUpdate() {} } as never),
      'INVALID_STORE',
      /consume\(\)/,
    );
  });

  it.each([
    [{ secret: 'short' }, /at least 32 bytes/],
    [{ secret: Buffer.alloc(31) }, /at least 32 bytes/],
    [{ secret: 42 }, /string or a Buffer/],
    [{ storeTimeout: 0 }, /storeTimeout/],
    [{ storeTimeout: '2000' }, /storeTimeout/],
    [{ deliveryTimeout: -1 }, /deliveryTimeout/],
    [{ userProperty: '' }, /userProperty/],
    [{ allowTokenReuse: 'yes' }, /allowTokenReuse/],
    [{ sucessRedirect: '/' }, /unknown option `sucessRedirect`/],
    [{ alowTokenReuse: true }, /did you mean `allowTokenReuse`/],
  ])('throws BAD_OPTIONS for %j', (options, message) => {
    expectCode(() => new Passwordless().init(new MemoryStore(), options as never), 'BAD_OPTIONS', message);
  });

  it('accepts a 32-byte secret as string or Buffer', () => {
    expect(() => ready({ secret: 'x'.repeat(32) })).not.toThrow();
    expect(() => ready({ secret: Buffer.alloc(32, 1) })).not.toThrow();
  });

  it('does not mutate the options object', () => {
    const options = Object.freeze({ userProperty: 'account', storeTimeout: 500, secret: 'y'.repeat(40) });
    const copy = { ...options };
    ready(options);
    expect(options).toEqual(copy);
  });
});

describe('addDelivery()', () => {
  it.each<[string, (p: Passwordless) => void, RegExp]>([
    ['a non-function send', (p) => p.addDelivery('email', 'nope' as never), /`send` must be a function/],
    ['an empty name', (p) => p.addDelivery('', send), /name/],
    ['a negative ttl', (p) => p.addDelivery(send, { ttl: -5 }), /ttl/],
    ['a ttl in seconds by mistake', (p) => p.addDelivery(send, { ttl: 900 }), /milliseconds/],
    [
      'tokenAlgorithm with numberToken',
      (p) => p.addDelivery(send, { tokenAlgorithm: () => 'x', numberToken: { max: 1e6 } }),
      /together/,
    ],
    ['numberToken without max', (p) => p.addDelivery(send, { numberToken: {} as never }), /numberToken.max/],
    ['numberToken max below 10', (p) => p.addDelivery(send, { numberToken: { max: 1 } }), /numberToken.max/],
    [
      'numberToken max above 2^48',
      (p) => p.addDelivery(send, { numberToken: { max: 2 ** 49 } }),
      /numberToken.max/,
    ],
    ['maxAttempts 0', (p) => p.addDelivery(send, { maxAttempts: 0 }), /maxAttempts/],
    ['an unknown option', (p) => p.addDelivery(send, { tll: 1000 } as never), /did you mean `ttl`/],
    [
      'the same name twice',
      (p) => {
        p.addDelivery('sms', send);
        p.addDelivery('sms', send);
      },
      /exists already/,
    ],
    [
      'two defaults',
      (p) => {
        p.addDelivery(send);
        p.addDelivery(send);
      },
      /default delivery/,
    ],
    [
      'a default after a named one',
      (p) => {
        p.addDelivery('sms', send);
        p.addDelivery(send);
      },
      /name this one too/,
    ],
    [
      'a named one after a default',
      (p) => {
        p.addDelivery(send);
        p.addDelivery('sms', send);
      },
      /default delivery/,
    ],
  ])('throws BAD_OPTIONS for %s', (_, act, message) => {
    expectCode(() => act(ready()), 'BAD_OPTIONS', message);
  });

  it('warns once when short codes are used without a secret, and not with one', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const p = ready();
    p.addDelivery('a', send, { numberToken: { max: 1e6 } });
    p.addDelivery('b', send, { tokenAlgorithm: () => 'code' });
    expect(warn.mock.calls.filter((c) => String(c[0]).includes('secret'))).toHaveLength(1);
    warn.mockClear();
    ready({ secret: 's'.repeat(32) }).addDelivery(send, { numberToken: { max: 1e6 } });
    expect(warn).not.toHaveBeenCalled();
  });

  it('warns at init when deliveries with codes were added before init without a secret', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const p = new Passwordless();
    p.addDelivery(send, { numberToken: { max: 1e6 } });
    expect(warn).not.toHaveBeenCalled();
    p.init(new MemoryStore());
    expect(warn).toHaveBeenCalledTimes(1);
  });

  it('warns when numberToken.max gives codes shorter than 6 digits', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    ready({ secret: 's'.repeat(32) }).addDelivery(send, { numberToken: { max: 10_000 } });
    expect(warn.mock.calls.some((c) => String(c[0]).includes('fewer than 6 digits'))).toBe(true);
  });
});

describe('middleware factories throw at creation', () => {
  it.each<[string, (p: Passwordless) => unknown, RegExp]>([
    ['requestToken without getUserId', (p) => p.requestToken(undefined as never), /getUserId/],
    [
      'requestToken failureFlash without failureRedirect',
      (p) => p.requestToken(() => 'u', { failureFlash: 'x' }),
      /failureRedirect/,
    ],
    [
      'requestToken with an unknown option',
      (p) => p.requestToken(() => 'u', { userfield: 'email' } as never),
      /did you mean `userField`/,
    ],
    [
      'requestToken with a CRLF failureRedirect',
      (p) => p.requestToken(() => 'u', { failureRedirect: '/x\r\nA: b' }),
      /control/,
    ],
    ['acceptToken with equal fields', (p) => p.acceptToken({ tokenField: 'x', uidField: 'x' }), /differ/],
    [
      'acceptToken with a non-string successRedirect',
      (p) => p.acceptToken({ successRedirect: 1 as never }),
      /successRedirect/,
    ],
    [
      'restricted failureFlash without failureRedirect',
      (p) => p.restricted({ failureFlash: 'x' }),
      /failureRedirect/,
    ],
    [
      'restricted originField without failureRedirect',
      (p) => p.restricted({ originField: 'origin' }),
      /failureRedirect/,
    ],
    ['logout with an unknown option', (p) => p.logout({ successRedirect: '/' } as never), /unknown option/],
    ['options that are not an object', (p) => p.acceptToken('/' as never), /options must be an object/],
  ])('%s', (_, act, message) => {
    expectCode(() => act(new Passwordless()), 'BAD_OPTIONS', message);
  });
});
