// SECURITY 33 / API.md: if `send` fails, the token just stored is invalidated — only that token: a token a concurrent
// request for the same uid stored and delivered meanwhile keeps working. When that clean-up fails too, the
// DELIVERY_FAILED message says so instead of claiming the token was invalidated.
import { MemoryStore, PasswordlessError } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery } from '../helpers/create-app.js';

describe.each(EXPRESS_MAJORS)('Express %i', (major) => {
  it('a failing send does not void the token a concurrent, successful request delivered', async () => {
    const t = createApp({ express: major });
    let failFirst: ((err: Error) => void) | undefined;
    let firstIsSending: () => void = () => {};
    const firstSending = new Promise<void>((resolve) => {
      firstIsSending = resolve;
    });
    t.outbox.after = () => {
      if (t.outbox.sent.length > 1) return undefined; // the second request's provider succeeds at once
      firstIsSending();
      return new Promise((_, reject) => {
        failFirst = reject;
      });
    };
    const first = request(t.app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'ann@example.com' })
      .then((r) => r);
    await firstSending;
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    failFirst!(new Error('smtp 451'));
    const failed = await first;
    expect(failed.status).toBe(500);
    expect(failed.body).toEqual({ error: 'DELIVERY_FAILED' });
    const [unsent, delivered] = t.outbox.sent;
    expect((await request(t.app).get(`/?${linkQuery(unsent!)}`)).body.user).toBeNull();
    expect((await request(t.app).get(`/?${linkQuery(delivered!)}`)).body.user).toBe('ann@example.com');
  });

  it('a failing send invalidates its own token, and the message says so', async () => {
    const t = createApp({ express: major });
    t.outbox.after = () => Promise.reject(new Error('smtp 451'));
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(500);
    const err = t.errors[0] as PasswordlessError;
    expect(err).toBeInstanceOf(PasswordlessError);
    expect(err.code).toBe('DELIVERY_FAILED');
    expect(err.message).toMatch(/the unsent token was invalidated/);
    expect((err.cause as Error).message).toBe('smtp 451');
    expect((await request(t.app).get(`/?${linkQuery(t.outbox.last())}`)).body.user).toBeNull();
  });

  it('send fails and invalidateUser rejects: DELIVERY_FAILED says the invalidation failed', async () => {
    const store = new MemoryStore();
    const t = createApp({ express: major, store });
    t.outbox.after = () => Promise.reject(new Error('smtp timeout, message may still be queued'));
    vi.spyOn(store, 'invalidateUser').mockRejectedValueOnce(new Error('ECONNRESET'));
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(500);
    const err = t.errors[0] as PasswordlessError;
    expect(err.code).toBe('DELIVERY_FAILED');
    expect(err.message).toMatch(/so did invalidating the unsent token \(ECONNRESET\)/);
    expect(err.message).not.toMatch(/token was invalidated/);
    expect((err.cause as Error).message).toBe('smtp timeout, message may still be queued');
  });

  it('send past deliveryTimeout and a hanging invalidateUser: DELIVERY_FAILED within deliveryTimeout + storeTimeout, saying the invalidation failed', async () => {
    const store = new MemoryStore();
    const t = createApp({ express: major, store, init: { deliveryTimeout: 100, storeTimeout: 100 } });
    t.outbox.after = () => new Promise(() => {});
    vi.spyOn(store, 'invalidateUser').mockImplementation(() => new Promise(() => {}));
    const started = Date.now();
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(500);
    expect(Date.now() - started).toBeLessThan(100 + 100 + 800);
    const err = t.errors[0] as PasswordlessError;
    expect(err.code).toBe('DELIVERY_FAILED');
    expect(err.message).toMatch(/so did invalidating the unsent token/);
    expect(err.message).not.toMatch(/token was invalidated/);
  });
});
