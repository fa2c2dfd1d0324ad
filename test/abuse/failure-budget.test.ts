import { MemoryStore } from 'express-passwordless';
import { acceptLimiter, recipientLimiter } from 'express-passwordless/rate-limit';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApp, linkQuery } from '../helpers/create-app.js';

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

const secret = 's'.repeat(32);

function codeApp(init: Record<string, unknown> = {}) {
  vi.spyOn(console, 'warn').mockImplementation(() => {});
  return createApp({
    init: { secret, ...init },
    namedDeliveries: { code: { numberToken: { max: 1e6 } }, link: {} },
  });
}

async function requestCode(t: ReturnType<typeof codeApp>, delivery = 'code') {
  return request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com', delivery });
}

/** A code that is surely wrong for the pending one. */
const wrongFor = (code: string) => (code === '000000' ? '000001' : '000000');

describe('maxFailures / failureWindow', () => {
  it("a new code does not reset the uid's failures: after maxFailures wrong codes, codes are refused and requestToken answers 429", async () => {
    const t = codeApp({ maxFailures: 12, failureWindow: 3_600_000 });
    for (let round = 0; round < 3; round++) {
      await requestCode(t).then((r) => expect(r.status).toBe(200));
      const ctx = t.outbox.last();
      for (let i = 0; i < 4; i++)
        await request(t.app).get(`/?token=${wrongFor(ctx.token)}&uid=${encodeURIComponent(ctx.uid)}`);
    }
    // 12 failures: the uid is locked for codes.
    const locked = await requestCode(t);
    expect(locked.status).toBe(429);
    const retryAfter = Number(locked.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(3500);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(t.outbox.sent).toHaveLength(3);
    // A link still works: the owner is not locked out, and a success resets the count.
    await requestCode(t, 'link').then((r) => expect(r.status).toBe(200));
    expect((await request(t.app).get(`/?${linkQuery(t.outbox.last())}`)).body.user).toBe('ann@example.com');
    await requestCode(t).then((r) => expect(r.status).toBe(200));
  });

  it('a code pending when the budget runs out is refused even when right', async () => {
    const t = codeApp({ maxFailures: 3 });
    await requestCode(t);
    const ctx = t.outbox.last();
    for (let i = 0; i < 3; i++)
      await request(t.app).get(`/?token=${wrongFor(ctx.token)}&uid=${encodeURIComponent(ctx.uid)}`);
    // maxAttempts (5) is not reached, but the uid's budget (3) is.
    expect((await request(t.app).get(`/?${linkQuery(ctx)}`)).body.user).toBeNull();
  });

  it('the lock ends failureWindow after the last failure (injected clock)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t = codeApp({ maxFailures: 2, failureWindow: 60_000 });
    await requestCode(t);
    const ctx = t.outbox.last();
    for (let i = 0; i < 2; i++)
      await request(t.app).get(`/?token=${wrongFor(ctx.token)}&uid=${encodeURIComponent(ctx.uid)}`);
    expect((await requestCode(t)).status).toBe(429);
    vi.setSystemTime(Date.now() + 60_001);
    expect((await requestCode(t)).status).toBe(200);
    expect((await request(t.app).get(`/?${linkQuery(t.outbox.last())}`)).body.user).toBe('ann@example.com');
  });

  it('defaults: 100 failures, 1 hour', async () => {
    const t = codeApp();
    for (let round = 0; round < 20; round++) {
      await requestCode(t).then((r) => expect(r.status).toBe(200));
      const ctx = t.outbox.last();
      for (let i = 0; i < 5; i++)
        await request(t.app).get(`/?token=${wrongFor(ctx.token)}&uid=${encodeURIComponent(ctx.uid)}`);
    }
    const locked = await requestCode(t);
    expect(locked.status).toBe(429);
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(3500);
  });

  it.each([
    [{ maxFailures: 0 }, /maxFailures/],
    [{ maxFailures: 1.5 }, /maxFailures/],
    [{ failureWindow: -1 }, /failureWindow/],
  ])('init(%j) throws BAD_OPTIONS', (options, message) => {
    expect(() => createApp({ init: options as never })).toThrow(message);
  });

  it('10,000 scripted guesses against one uid, re-requesting codes in between, give 0 logins', async () => {
    const t = codeApp();
    let logins = 0;
    let guesses = 0;
    let refusedRequests = 0;
    let guess = 0;
    while (guesses < 10_000) {
      const res = await requestCode(t);
      if (res.status === 429) refusedRequests += 1;
      const batch = Array.from({ length: 50 }, () => String(guess++ % 1e6).padStart(6, '0'));
      const results = await Promise.all(
        batch.map((code) => request(t.app).get(`/?token=${code}&uid=ann%40example.com`)),
      );
      guesses += batch.length;
      logins += results.filter((r) => r.body.user).length;
    }
    expect(logins).toBe(0);
    expect(refusedRequests).toBeGreaterThan(0);
  }, 60_000);

  it('with the limiters on, floods of guesses and code requests see 429s and log nobody in', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    const t = createApp({
      init: { secret },
      delivery: { numberToken: { max: 1e6 } },
      before: (app) => {
        app.use('/sendtoken', recipientLimiter());
        app.use(acceptLimiter());
      },
    });
    const statuses = new Set<number>();
    let logins = 0;
    for (let round = 0; round < 10; round++) {
      statuses.add(
        (await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' })).status,
      );
      for (let i = 0; i < 10; i++) {
        const res = await request(t.app).get(
          `/?token=${String(round * 10 + i).padStart(6, '0')}&uid=ann%40example.com`,
        );
        statuses.add(res.status);
        if (res.body?.user) logins += 1;
      }
    }
    expect(statuses.has(429)).toBe(true);
    expect(logins).toBe(0);
  });
});

describe('a store without budget support still works (it just never locks)', () => {
  it('storeOrUpdate resolving void and consume ignoring budget keep logins working', async () => {
    const inner = new MemoryStore();
    const legacy = {
      storeOrUpdate: (r: Parameters<MemoryStore['storeOrUpdate']>[0]) => inner.storeOrUpdate(r),
      consume: (u: string, h: string, o: { keep: boolean }) => inner.consume(u, h, { keep: o.keep }),
      invalidateUser: (u: string) => inner.invalidateUser(u),
      clear: () => inner.clear(),
      length: () => inner.length(),
      close: () => inner.close(),
    };
    const t = createApp({ store: legacy });
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    expect((await request(t.app).get(`/?${linkQuery(t.outbox.last())}`)).body.user).toBe('ann@example.com');
  });
});
