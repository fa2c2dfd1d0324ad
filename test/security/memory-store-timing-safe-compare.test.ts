// SECURITY 4: where the core compares hashes it uses crypto.timingSafeEqual; a length mismatch returns false and
// never throws (timingSafeEqual itself throws on buffers of different lengths).
import { timingSafeEqual } from 'node:crypto';
import { MemoryStore } from 'express-passwordless';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { hashToken, safeEqual } from '../../src/token.js';

vi.mock('node:crypto', async (importOriginal) => {
  const m = await importOriginal<typeof import('node:crypto')>();
  return { ...m, timingSafeEqual: vi.fn(m.timingSafeEqual) };
});

const spy = vi.mocked(timingSafeEqual);
let store: MemoryStore;

beforeEach(async () => {
  store = new MemoryStore();
  await store.storeOrUpdate({
    uid: 'ann',
    tokenHash: hashToken('the-token'),
    expiresAt: new Date(Date.now() + 60_000),
  });
  spy.mockClear();
});
afterEach(() => store.close());

it('consume() compares a wrong hash with timingSafeEqual', async () => {
  expect(await store.consume('ann', hashToken('wrong'), { keep: false })).toEqual({
    ok: false,
    reason: 'mismatch',
  });
  expect(spy).toHaveBeenCalledTimes(1);
  const [a, b] = spy.mock.calls[0]!;
  expect(a.byteLength).toBe(64);
  expect(b.byteLength).toBe(64);
});

it('consume() compares the right hash with timingSafeEqual', async () => {
  expect(await store.consume('ann', hashToken('the-token'), { keep: false })).toEqual({ ok: true });
  expect(spy).toHaveBeenCalledTimes(1);
});

it('invalidateUser(uid, tokenHash) compares with timingSafeEqual', async () => {
  await store.invalidateUser('ann', hashToken('other'));
  expect(spy).toHaveBeenCalledTimes(1);
  expect(await store.length()).toBe(1);
  await store.invalidateUser('ann', hashToken('the-token'));
  expect(spy).toHaveBeenCalledTimes(2);
  expect(await store.length()).toBe(0);
});

it('a length-mismatched comparison returns false without throwing', () => {
  // What safeEqual guards against: timingSafeEqual throws on different byte lengths.
  expect(() => timingSafeEqual(Buffer.from('é'), Buffer.from('e'))).toThrow();
  spy.mockClear();
  expect(safeEqual('a', 'ab')).toBe(false);
  expect(safeEqual(hashToken('x'), hashToken('x').slice(1))).toBe(false);
  // Same JavaScript length, different UTF-8 byte length.
  expect(safeEqual('é', 'e')).toBe(false);
  expect(spy).not.toHaveBeenCalled();
  expect(safeEqual('abc', 'abc')).toBe(true);
  expect(spy).toHaveBeenCalledTimes(1);
});
