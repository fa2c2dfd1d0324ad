// Regression test of a defect found in review (now fixed). SECURITY 34: with the store hanging, every middleware answers within storeTimeout. In API mode logout() makes two
// sequential store calls, each with its own full storeTimeout (src/passwordless.ts:616-623: invalidateUser, then
// revokeFamily / revokeFamilies), so it answers only after 2 × storeTimeout.
import { MemoryStore } from 'express-passwordless';
import request from 'supertest';
import { expect, it, vi } from 'vitest';
import { api, bearer, JSON_ACCEPT, login, SECRET } from '../harness.js';

const STORE_TIMEOUT = 400;
const hang = () => new Promise<never>(() => {});

it.each([
  ['/auth/logout', 'revokeFamily'],
  ['/auth/logout-everywhere', 'revokeFamilies'],
] as const)('%s with a hanging store answers 503 within storeTimeout', async (path, revoke) => {
  const store = new MemoryStore();
  const h = api({ secret: SECRET }, { storeTimeout: STORE_TIMEOUT }, store);
  const { accessToken } = await login(h);
  vi.spyOn(store, 'invalidateUser').mockImplementation(hang);
  vi.spyOn(store, revoke).mockImplementation(hang);
  const started = Date.now();
  const res = await request(h.app).post(path).set(JSON_ACCEPT).set(bearer(accessToken));
  const elapsed = Date.now() - started;
  expect([res.status, res.body]).toEqual([503, { error: 'temporarily_unavailable' }]);
  expect(elapsed).toBeLessThan(STORE_TIMEOUT + 250);
});
