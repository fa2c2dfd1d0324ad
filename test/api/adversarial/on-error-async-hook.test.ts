// Regression test of a defect found in review (now fixed). The JSON error path reports to init({ onError }) inside try/catch "so a throwing hook must not become an unhandled
// rejection" (src/passwordless.ts:752-758). An async hook (an async logger, `async (err) => { await sentry... }`) that
// rejects is not caught: the rejection is unhandled, and Node's default --unhandled-rejections=throw kills the process.
// A client can trigger it at will whenever the store is slow or down (every refresh then answers 503 and reports).
import { MemoryStore } from 'express-passwordless';
import request from 'supertest';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { api, login, SECRET } from '../harness.js';

const unhandled: unknown[] = [];
const listener = (reason: unknown) => void unhandled.push(reason);
beforeEach(() => void process.on('unhandledRejection', listener));
afterEach(() => void process.off('unhandledRejection', listener));

it('a rejecting async onError hook leaves no unhandled rejection', async () => {
  const store = new MemoryStore();
  const onError = async () => {
    throw new Error('log shipper down');
  };
  const h = api({ secret: SECRET }, { onError }, store);
  const { refreshToken } = await login(h);
  vi.spyOn(store, 'rotateFamily').mockRejectedValue(new Error('connection refused'));
  const res = await request(h.app).post('/auth/refresh').send({ refreshToken });
  expect(res.status).toBe(503);
  await new Promise((r) => setTimeout(r, 50));
  expect(unhandled).toEqual([]);
});
