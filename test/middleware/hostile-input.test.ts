import { MemoryStore, type TokenRecord } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery } from '../helpers/create-app.js';

function spiedApp(major: 4 | 5, extra: Parameters<typeof createApp>[0] = {}) {
  const store = new MemoryStore();
  const stored: TokenRecord[] = [];
  const original = store.storeOrUpdate.bind(store);
  store.storeOrUpdate = async (r) => {
    stored.push(r);
    return original(r);
  };
  const consume = vi.spyOn(store, 'consume');
  const getUserId = vi.fn((user: string) => (user.endsWith('@example.com') ? user : null));
  const t = createApp({ express: major, store, getUserId, request: { originField: 'origin' }, ...extra });
  return { ...t, stored, consume, getUserId };
}

describe.each(EXPRESS_MAJORS)('hostile input on Express %i', (major) => {
  describe('requestToken', () => {
    it.each<[string, string]>([
      ['user as a repeated query-style form field (array)', 'user=a%40example.com&user=b%40example.com'],
      ['user as an array with brackets', 'user[]=a%40example.com'],
      ['user as an object', 'user[$ne]=x'],
      ['delivery as an array', 'user=a%40example.com&delivery=a&delivery=b'],
      ['delivery as an object', 'user=a%40example.com&delivery[x]=y'],
      ['origin as an array', 'user=a%40example.com&origin=/a&origin=/b'],
      ['origin as an object', 'user=a%40example.com&origin[$gt]='],
      ['a user over 1024 characters', `user=${'a'.repeat(1020)}%40example.com`],
      ['a delivery over 1024 characters', `user=a%40example.com&delivery=${'d'.repeat(1025)}`],
    ])('%s (form) → 400 before getUserId; nothing stored, nothing sent', async (_, body) => {
      const t = spiedApp(major);
      await request(t.app).post('/sendtoken').type('form').send(body).expect(400);
      expect(t.getUserId).not.toHaveBeenCalled();
      expect(t.stored).toHaveLength(0);
      expect(t.outbox.sent).toHaveLength(0);
    });

    it.each<[string, unknown]>([
      ['a number', { user: 42 }],
      ['a boolean', { user: true }],
      ['null', { user: null }],
      ['an array', { user: ['a@example.com'] }],
      ['an operator object', { user: { $ne: null } }],
      ['a numeric delivery', { user: 'a@example.com', delivery: 1 }],
      ['a null origin', { user: 'a@example.com', origin: null }],
      ['an object origin', { user: 'a@example.com', origin: { toString: '/x' } }],
    ])('user/delivery/origin as %s (JSON) → 400; nothing stored, nothing sent', async (_, body) => {
      const t = spiedApp(major);
      await request(t.app)
        .post('/sendtoken')
        .send(body as object)
        .expect(400);
      expect(t.getUserId).not.toHaveBeenCalled();
      expect(t.stored).toHaveLength(0);
      expect(t.outbox.sent).toHaveLength(0);
    });

    it('a 1 MB user never reaches getUserId and never gives a 500', async () => {
      const t = spiedApp(major);
      const res = await request(t.app)
        .post('/sendtoken')
        .send({ user: 'x'.repeat(90_000) });
      expect([400, 413]).toContain(res.status);
      expect(t.getUserId).not.toHaveBeenCalled();
    });

    it('an origin over 1024 characters is dropped, the request still succeeds', async () => {
      const t = spiedApp(major);
      await request(t.app)
        .post('/sendtoken')
        .type('form')
        .send({ user: 'a@example.com', origin: `/${'o'.repeat(1100)}` })
        .expect(200);
      expect(t.stored[0]).not.toHaveProperty('origin');
    });

    it('a user field that only exists on Object.prototype is not read', async () => {
      const t = spiedApp(major, { request: { userField: 'constructor' } });
      await request(t.app).post('/sendtoken').type('form').send({}).expect(400);
      expect(t.getUserId).not.toHaveBeenCalled();
    });
  });

  describe('acceptToken', () => {
    it.each<[string, string]>([
      ['token as an array', 'token=a&token=b&uid=ann%40example.com'],
      ['token as an object', 'token[$ne]=x&uid=ann%40example.com'],
      ['uid as an array', 'token=abc&uid=a&uid=b'],
      ['uid as an object', 'token=abc&uid[$gt]='],
      ['a token over 256 characters', `token=${'t'.repeat(257)}&uid=ann%40example.com`],
      ['a uid over 1024 characters', `token=abc&uid=${'u'.repeat(1025)}`],
    ])(
      '%s → 400 (or, where Express 5 parses no object, absent); nothing consumed, nobody logged in',
      async (_, query) => {
        const t = spiedApp(major);
        await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
        const res = await request(t.app).get(`/?${query}`);
        if (res.status === 200) expect(res.body.user).toBeNull();
        else expect(res.status).toBe(400);
        expect(t.consume).not.toHaveBeenCalled();
        expect((await request(t.app).get(`/?${linkQuery(t.outbox.last())}`)).body.user).toBe(
          'ann@example.com',
        );
      },
    );

    it('the same through a JSON body with allowPost', async () => {
      const t = spiedApp(major, { accept: { allowPost: true } });
      await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
      await request(t.app)
        .post('/check')
        .send({ token: { $ne: null }, uid: 'ann@example.com' })
        .expect(400);
      await request(t.app)
        .post('/check')
        .send({ token: 'x', uid: ['ann@example.com'] })
        .expect(400);
      await request(t.app).post('/check').send({ token: 12345, uid: 'ann@example.com' }).expect(400);
      expect(t.consume).not.toHaveBeenCalled();
    });

    it('only one of token and uid present → next() untouched, nothing consumed', async () => {
      const t = spiedApp(major);
      expect((await request(t.app).get('/?token=abc').expect(200)).body.user).toBeNull();
      expect((await request(t.app).get('/?uid=ann%40example.com').expect(200)).body.user).toBeNull();
      expect((await request(t.app).get('/?token=&uid=').expect(200)).body.user).toBeNull();
      expect(t.consume).not.toHaveBeenCalled();
    });

    it('a stored origin that is not a same-site path is not followed (checked again at accept)', async () => {
      const store = new MemoryStore();
      const t = createApp({ express: major, store, accept: { enableOriginRedirect: true } });
      await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
      const ctx = t.outbox.last();
      // Simulate a record written by something else (older version, another app sharing the store).
      const { hashToken } = await import('../../src/token.js');
      await store.storeOrUpdate({
        uid: ctx.uid,
        tokenHash: hashToken(ctx.token),
        expiresAt: ctx.expiresAt,
        origin: '//evil.com',
      });
      const res = await request(t.app)
        .get(`/?${linkQuery(ctx)}`)
        .expect(200);
      expect(res.headers.location).toBeUndefined();
      expect(res.body.user).toBe('ann@example.com');
    });
  });
});
