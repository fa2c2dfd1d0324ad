import { MemoryStore, type PasswordlessError } from 'express-passwordless';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery, type TestApp } from '../helpers/create-app.js';

async function requestFor(t: TestApp, user = 'ann@example.com') {
  await request(t.app).post('/sendtoken').type('form').send({ user }).expect(200);
  return t.outbox.last();
}

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe.each(EXPRESS_MAJORS)('acceptToken on Express %i', (major) => {
  it('with neither token nor uid calls next() untouched, with no extra headers', async () => {
    const t = createApp({ express: major });
    const res = await request(t.app).get('/page').expect(200);
    expect(res.body.user).toBeNull();
    expect(res.headers['referrer-policy']).toBeUndefined();
  });

  it('a valid token sets req.user and the session, then next() (no successRedirect)', async () => {
    const t = createApp({ express: major });
    const ctx = await requestFor(t);
    const res = await request(t.app)
      .get(`/page?${linkQuery(ctx)}`)
      .expect(200);
    expect(res.body).toMatchObject({ user: 'ann@example.com', session: { passwordless: 'ann@example.com' } });
  });

  it('successRedirect redirects after login, and the Location never carries the token or uid', async () => {
    const t = createApp({ express: major, accept: { successRedirect: '/welcome' } });
    const ctx = await requestFor(t);
    const res = await request(t.app)
      .get(`/?${linkQuery(ctx)}`)
      .expect(302);
    expect(res.headers.location).toBe('/welcome');
    expect(res.headers.location).not.toContain(ctx.token);
    expect(res.headers.location).not.toContain(encodeURIComponent(ctx.uid));
  });

  it('every response to a request carrying a token has Cache-Control: no-store and Referrer-Policy: no-referrer', async () => {
    const t = createApp({ express: major, accept: { successRedirect: '/welcome' } });
    const ctx = await requestFor(t);
    for (const path of [
      `/?token=wrong&uid=${ctx.uid}`,
      `/?${linkQuery(ctx)}`,
      '/?token=only',
      `/?token[]=a&uid=b`,
    ]) {
      const res = await request(t.app).get(path);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
    }
  });

  it('a single-use token logs in once; the second use is refused', async () => {
    const t = createApp({ express: major });
    const ctx = await requestFor(t);
    expect((await request(t.app).get(`/?${linkQuery(ctx)}`)).body.user).toBe('ann@example.com');
    expect((await request(t.app).get(`/?${linkQuery(ctx)}`)).body.user).toBeNull();
  });

  it('of 20 concurrent requests with one single-use token exactly one logs in', async () => {
    const t = createApp({ express: major });
    for (let round = 0; round < 3; round++) {
      const ctx = await requestFor(t);
      const results = await Promise.all(
        Array.from({ length: 20 }, () => request(t.app).get(`/?${linkQuery(ctx)}`)),
      );
      expect(results.filter((r) => r.body.user === 'ann@example.com')).toHaveLength(1);
    }
  });

  it('of 50 concurrent requests with one single-use token exactly one logs in, 20 rounds', async () => {
    const t = createApp({ express: major, session: 'none' });
    for (let round = 0; round < 20; round++) {
      const ctx = await requestFor(t);
      const results = await Promise.all(
        Array.from({ length: 50 }, () => request(t.app).get(`/?${linkQuery(ctx)}`)),
      );
      expect(results.filter((r) => r.body.user === 'ann@example.com')).toHaveLength(1);
    }
  });

  it('wrong, unknown-uid, used and expired tokens all give the same outcome: next() with nothing set, failureFlash', async () => {
    const t = createApp({ express: major, flash: true, accept: { failureFlash: 'Invalid link' } });
    const ctx = await requestFor(t);
    const used = await requestFor(t, 'bob@example.com');
    await request(t.app).get(`/?${linkQuery(used)}`);
    const bodies = [];
    for (const path of [
      `/?token=wrong&uid=${encodeURIComponent(ctx.uid)}`,
      `/?token=${ctx.token}&uid=nobody%40example.com`,
      `/?${linkQuery(used)}`,
    ]) {
      const res = await request(t.app).get(path).expect(200);
      bodies.push({
        user: res.body.user,
        passwordless: res.body.session?.passwordless ?? null,
        flash: res.body.flash,
      });
    }
    expect(bodies[0]).toEqual({ user: null, passwordless: null, flash: { passwordless: ['Invalid link'] } });
    expect(bodies[1]).toEqual(bodies[0]);
    expect(bodies[2]).toEqual(bodies[0]);
  });

  it('a valid token sent with another uid logs nobody in and stays valid for its own uid', async () => {
    const t = createApp({ express: major });
    const ctx = await requestFor(t);
    await requestFor(t, 'bob@example.com');
    expect((await request(t.app).get(`/?token=${ctx.token}&uid=bob%40example.com`)).body.user).toBeNull();
    expect((await request(t.app).get(`/?${linkQuery(ctx)}`)).body.user).toBe('ann@example.com');
  });

  it('a token works at ttl - 1 ms and fails at ttl (injected clock)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t = createApp({ express: major, delivery: { ttl: 60_000 } });
    const ctx = await requestFor(t);
    const start = ctx.expiresAt.getTime() - 60_000;
    vi.setSystemTime(start + 60_000 - 1);
    expect((await request(t.app).get(`/?${linkQuery(ctx)}`)).body.user).toBe('ann@example.com');
    const again = await requestFor(t);
    vi.setSystemTime(again.expiresAt.getTime());
    expect((await request(t.app).get(`/?${linkQuery(again)}`)).body.user).toBeNull();
  });

  it('HEAD and OPTIONS are not checked: nothing consumed, nothing counted, nobody logged in', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    const store = new MemoryStore();
    const consume = vi.spyOn(store, 'consume');
    const t = createApp({ express: major, store, delivery: { numberToken: { max: 1e6 } } });
    const ctx = await requestFor(t);
    for (let i = 0; i < 10; i++) {
      await request(t.app).head(`/?token=000000&uid=${encodeURIComponent(ctx.uid)}`);
      await request(t.app).head(`/?${linkQuery(ctx)}`);
      await request(t.app).options(`/?${linkQuery(ctx)}`);
    }
    expect(consume).not.toHaveBeenCalled();
    expect((await request(t.app).get(`/?${linkQuery(ctx)}`)).body.user).toBe('ann@example.com');
  });

  it('allowPost reads token and uid from the body; without it the body is ignored', async () => {
    const plain = createApp({ express: major });
    const ctx1 = await requestFor(plain);
    expect(
      (await request(plain.app).post('/check').type('form').send({ token: ctx1.token, uid: ctx1.uid })).body
        .user,
    ).toBeNull();
    const post = createApp({ express: major, accept: { allowPost: true } });
    const ctx2 = await requestFor(post);
    expect(
      (await request(post.app).post('/check').type('form').send({ token: ctx2.token, uid: ctx2.uid })).body
        .user,
    ).toBe('ann@example.com');
  });

  it('custom tokenField and uidField', async () => {
    const t = createApp({ express: major, accept: { tokenField: 't', uidField: 'u' } });
    const ctx = await requestFor(t);
    const res = await request(t.app).get(`/?t=${ctx.token}&u=${encodeURIComponent(ctx.uid)}`);
    expect(res.body.user).toBe('ann@example.com');
  });

  it('successFlash is flashed as passwordless-success', async () => {
    const t = createApp({ express: major, flash: true, accept: { successFlash: 'Welcome!' } });
    const ctx = await requestFor(t);
    const res = await request(t.app).get(`/?${linkQuery(ctx)}`);
    expect(res.body.flash).toEqual({ 'passwordless-success': ['Welcome!'] });
  });

  it('a store error forwards STORE_ERROR with the cause, and nobody is logged in', async () => {
    const store = new MemoryStore();
    const t = createApp({ express: major, store });
    const ctx = await requestFor(t);
    const boom = new Error('connection reset');
    vi.spyOn(store, 'consume').mockRejectedValueOnce(boom);
    await request(t.app)
      .get(`/?${linkQuery(ctx)}`)
      .expect(500);
    const err = t.errors[0] as PasswordlessError;
    expect(err.code).toBe('STORE_ERROR');
    expect(err.cause).toBe(boom);
    expect(err.message).not.toContain(ctx.token);
  });
});

describe('code attempts', () => {
  it('maxAttempts (5 by default for codes): 4 wrong tries leave the code valid, the 5th voids it', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    const t = createApp({ delivery: { numberToken: { max: 1e6 } }, init: { secret: 's'.repeat(32) } });
    const wrongFor = (code: string) => (code === '000000' ? '000001' : '000000');
    const first = await requestFor(t);
    for (let i = 0; i < 4; i++)
      await request(t.app).get(`/?token=${wrongFor(first.token)}&uid=${encodeURIComponent(first.uid)}`);
    expect((await request(t.app).get(`/?${linkQuery(first)}`)).body.user).toBe('ann@example.com');
    const second = await requestFor(t);
    for (let i = 0; i < 5; i++)
      await request(t.app).get(`/?token=${wrongFor(second.token)}&uid=${encodeURIComponent(second.uid)}`);
    expect((await request(t.app).get(`/?${linkQuery(second)}`)).body.user).toBeNull();
  });

  it('20 concurrent wrong codes void the code after the 5th; the right one then fails', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    const t = createApp({ delivery: { numberToken: { max: 1e6 } }, init: { secret: 's'.repeat(32) } });
    const ctx = await requestFor(t);
    const wrongs = Array.from({ length: 20 }, (_, i) =>
      String((Number(ctx.token) + i + 1) % 1e6).padStart(6, '0'),
    );
    const results = await Promise.all(
      wrongs.map((w) => request(t.app).get(`/?token=${w}&uid=${encodeURIComponent(ctx.uid)}`)),
    );
    expect(results.every((r) => r.body.user === null)).toBe(true);
    expect((await request(t.app).get(`/?${linkQuery(ctx)}`)).body.user).toBeNull();
  });

  it('custom maxAttempts applies to default link tokens too', async () => {
    const t = createApp({ delivery: { maxAttempts: 2 } });
    const ctx = await requestFor(t);
    for (let i = 0; i < 2; i++) await request(t.app).get(`/?token=nope&uid=${encodeURIComponent(ctx.uid)}`);
    expect((await request(t.app).get(`/?${linkQuery(ctx)}`)).body.user).toBeNull();
  });

  it('default link tokens have no attempt limit', async () => {
    const t = createApp();
    const ctx = await requestFor(t);
    for (let i = 0; i < 30; i++) await request(t.app).get(`/?token=nope&uid=${encodeURIComponent(ctx.uid)}`);
    expect((await request(t.app).get(`/?${linkQuery(ctx)}`)).body.user).toBe('ann@example.com');
  });
});

describe('allowTokenReuse (stateless)', () => {
  it('a token works repeatedly without a session, but dies at invalidateUser and at expiry', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const store = new MemoryStore();
    const t = createApp({ session: 'none', store, init: { allowTokenReuse: true } });
    const ctx = await requestFor(t);
    for (let i = 0; i < 3; i++) {
      const res = await request(t.app)
        .get(`/api?${linkQuery(ctx)}`)
        .expect(200);
      expect(res.body).toMatchObject({ user: 'ann@example.com', session: null });
    }
    vi.setSystemTime(ctx.expiresAt.getTime());
    expect((await request(t.app).get(`/api?${linkQuery(ctx)}`)).body.user).toBeNull();
    vi.useRealTimers();
    const second = await requestFor(t);
    expect((await request(t.app).get(`/api?${linkQuery(second)}`)).body.user).toBe('ann@example.com');
    await store.invalidateUser(second.uid);
    expect((await request(t.app).get(`/api?${linkQuery(second)}`)).body.user).toBeNull();
  });
});
