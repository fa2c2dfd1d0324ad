import { MemoryStore, type PasswordlessError } from 'express-passwordless';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, type Outbox } from '../helpers/create-app.js';

afterEach(() => vi.restoreAllMocks());

const never = () => new Promise<never>(() => {});

/** Makes the test outbox fail as told, after it has recorded the token it was given. */
function failingDelivery(box: Outbox, how: 'throw' | 'reject' | 'hang'): void {
  box.after = (): unknown => {
    if (how === 'throw') throw new Error('smtp 550');
    if (how === 'reject') return Promise.reject(new Error('smtp 550'));
    return never();
  };
}

describe.each(EXPRESS_MAJORS)('delivery failures on Express %i', (major) => {
  it.each(['throw', 'reject', 'hang'] as const)(
    'a send that %ss ends in next(err) DELIVERY_FAILED with cause, within deliveryTimeout, and leaves no valid token',
    async (how) => {
      const store = new MemoryStore();
      const t = createApp({
        express: major,
        store,
        init: { deliveryTimeout: 200 },
        flash: true,
        request: { successFlash: 'sent' },
      });
      failingDelivery(t.outbox, how);
      const started = Date.now();
      const res = await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' });
      expect(res.status).toBe(500);
      expect(Date.now() - started).toBeLessThan(2000);
      const err = t.errors[0] as PasswordlessError;
      expect(err.code).toBe('DELIVERY_FAILED');
      expect(err.cause).toBeInstanceOf(Error);
      expect(await store.length()).toBe(0);
      const ctx = t.outbox.last();
      expect(err.message).not.toContain(ctx.token);
      const login = await request(t.app).get(`/?token=${ctx.token}&uid=${encodeURIComponent(ctx.uid)}`);
      expect(login.body.user).toBeNull();
    },
  );
});

describe('store failures and timeouts', () => {
  it.each(['storeOrUpdate', 'consume'] as const)(
    'a %s that hangs fails after storeTimeout with STORE_ERROR',
    async (method) => {
      const store = new MemoryStore();
      const t = createApp({ store, init: { storeTimeout: 150 } });
      if (method === 'consume') {
        await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
      }
      vi.spyOn(store, method).mockImplementation(never);
      const started = Date.now();
      const res =
        method === 'consume'
          ? await request(t.app).get(`/?token=${t.outbox.last().token}&uid=ann%40example.com`)
          : await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' });
      expect(res.status).toBe(500);
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(140);
      expect(elapsed).toBeLessThan(1500);
      const err = t.errors[0] as PasswordlessError;
      expect(err.code).toBe('STORE_ERROR');
      expect(err.message).toMatch(/storeTimeout/);
      if (method === 'storeOrUpdate') expect(t.outbox.sent).toHaveLength(0);
    },
  );

  it('a store that rejects in storeOrUpdate: STORE_ERROR with cause, nothing sent, the app keeps serving', async () => {
    const store = new MemoryStore();
    const t = createApp({ store });
    const boom = new Error('READONLY');
    vi.spyOn(store, 'storeOrUpdate').mockRejectedValueOnce(boom);
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(500);
    expect((t.errors[0] as PasswordlessError).cause).toBe(boom);
    expect(t.outbox.sent).toHaveLength(0);
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
  });

  it('a store whose method throws synchronously is handled the same way', async () => {
    const store = new MemoryStore();
    const t = createApp({ store });
    vi.spyOn(store, 'storeOrUpdate').mockImplementation(() => {
      throw new Error('sync');
    });
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(500);
    expect((t.errors[0] as PasswordlessError).code).toBe('STORE_ERROR');
  });

  it('no unhandled rejection when a timed-out store call rejects later', async () => {
    const unhandled = vi.fn();
    process.on('unhandledRejection', unhandled);
    try {
      const store = new MemoryStore();
      const t = createApp({ store, init: { storeTimeout: 50 } });
      vi.spyOn(store, 'storeOrUpdate').mockImplementation(
        () => new Promise((_, reject) => setTimeout(() => reject(new Error('late')), 120)),
      );
      await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(500);
      await new Promise((r) => setTimeout(r, 150));
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });
});

describe('a send that throws synchronously', () => {
  it('is a delivery failure like any other: DELIVERY_FAILED and no valid token', async () => {
    const express = (await import('express')).default;
    const { Passwordless } = await import('express-passwordless');
    const store = new MemoryStore();
    const p = new Passwordless();
    p.init(store);
    p.addDelivery(() => {
      throw new Error('sync failure');
    });
    const app = express();
    app.use(express.urlencoded({ extended: false }));
    app.post(
      '/sendtoken',
      p.requestToken((u) => u),
      (_req, res) => res.send('ok'),
    );
    const errors: PasswordlessError[] = [];
    app.use(
      (
        err: PasswordlessError,
        _req: unknown,
        res: { status: (n: number) => { end: () => void } },
        _next: unknown,
      ) => {
        errors.push(err);
        res.status(500).end();
      },
    );
    await request(app).post('/sendtoken').type('form').send({ user: 'x' }).expect(500);
    expect(errors[0]?.code).toBe('DELIVERY_FAILED');
    expect(await store.length()).toBe(0);
  });
});
