// API.md (acceptToken): store errors → next(err) with STORE_ERROR. A consume() that resolves anything but
// { ok: boolean } (e.g. MongoDB's raw { ok: 1, value: null }) must fail closed: nobody logged in, STORE_ERROR.
import { type ConsumeResult, MemoryStore, PasswordlessError, type TokenStore } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createApp, EXPRESS_MAJORS } from '../helpers/create-app.js';

/** A MemoryStore whose consume() resolves `value` whatever it is asked. */
function storeReturning(value: unknown): TokenStore {
  const inner = new MemoryStore();
  return {
    storeOrUpdate: (r) => inner.storeOrUpdate(r),
    consume: async () => value as ConsumeResult,
    invalidateUser: (u, h) => inner.invalidateUser(u, h),
    clear: () => inner.clear(),
    length: () => inner.length(),
    close: () => inner.close(),
  };
}

describe.each(EXPRESS_MAJORS)('Express %i', (major) => {
  it.each([
    ['{ ok: 1, value: null } (a raw MongoDB result)', { ok: 1, value: null }],
    ["{ ok: 'false' }", { ok: 'false' }],
    ['{ ok: {} }', { ok: {} }],
    ['undefined', undefined],
    ['null', null],
  ])('a consume() resolving %s logs nobody in and ends in next(STORE_ERROR)', async (_, value) => {
    const t = createApp({ express: major, store: storeReturning(value) });
    const agent = request.agent(t.app);
    const res = await agent.get('/?token=totally-wrong&uid=admin%40example.com');
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'STORE_ERROR' });
    expect(t.errors).toHaveLength(1);
    expect(t.errors[0]).toBeInstanceOf(PasswordlessError);
    expect((t.errors[0] as PasswordlessError).code).toBe('STORE_ERROR');
    // Nothing of a login reached the session either.
    await agent.get('/restricted').expect(401);
    expect((await agent.get('/probe')).body.user).toBeNull();
  });

  it('the same wrapper with the documented shapes: { ok: true } logs in, { ok: false } does not', async () => {
    const yes = createApp({ express: major, store: storeReturning({ ok: true }) });
    expect((await request(yes.app).get('/?token=t&uid=ann%40example.com').expect(200)).body.user).toBe(
      'ann@example.com',
    );
    const no = createApp({ express: major, store: storeReturning({ ok: false, reason: 'mismatch' }) });
    expect((await request(no.app).get('/?token=t&uid=ann%40example.com').expect(200)).body.user).toBeNull();
    expect(no.errors).toEqual([]);
  });
});
