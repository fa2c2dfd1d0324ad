import { MemoryStore, type PasswordlessError, type TokenRecord } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery } from '../helpers/create-app.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function spied() {
  const store = new MemoryStore();
  const stored: TokenRecord[] = [];
  const original = store.storeOrUpdate.bind(store);
  store.storeOrUpdate = async (r) => {
    stored.push(r);
    return original(r);
  };
  return { store, stored };
}

/** Everything a client can see of a response, minus the Date header. */
function visible(res: request.Response) {
  const headers = { ...res.headers };
  delete headers.date;
  return { status: res.status, headers, body: res.text };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

describe.each(EXPRESS_MAJORS)('enumerationSafe on Express %i', (major) => {
  it('known and unknown users get byte-identical answers; only the known one is stored and sent', async () => {
    const { store, stored } = spied();
    const getUserId = vi.fn((user: string) => (user === 'known@example.com' ? 'u-1' : null));
    const t = createApp({ express: major, store, getUserId, request: { enumerationSafe: true } });
    const known = await request(t.app).post('/sendtoken').type('form').send({ user: 'known@example.com' });
    const unknown = await request(t.app).post('/sendtoken').type('form').send({ user: 'nobody@example.com' });
    expect(visible(unknown)).toEqual(visible(known));
    expect(known.status).toBe(200);
    await sleep(20);
    expect(stored.map((r) => r.uid)).toEqual(['u-1']);
    expect(t.outbox.sent.map((c) => c.recipient)).toEqual(['known@example.com']);
    expect(getUserId).toHaveBeenCalledTimes(2);
    // The delivered link works.
    expect((await request(t.app).get(`/?${linkQuery(t.outbox.last())}`)).body.user).toBe('u-1');
  });

  it('a forged device cookie for a guessed uid gets the same answer for known and unknown users', async () => {
    const { createHash } = await import('node:crypto');
    const tag = (uid: string) => createHash('sha256').update(uid).digest('hex').slice(0, 16);
    const t = createApp({
      express: major,
      getUserId: (user: string) => (user === 'known@example.com' ? 'known@example.com' : null),
      request: { enumerationSafe: true },
    });
    const nonce = 'A'.repeat(22);
    const known = await request(t.app)
      .post('/sendtoken')
      .set('Cookie', `pwdless-device=${tag('known@example.com')}.${nonce}`)
      .type('form')
      .send({ user: 'known@example.com' });
    const unknown = await request(t.app)
      .post('/sendtoken')
      .set('Cookie', `pwdless-device=${tag('nobody@example.com')}.${nonce}`)
      .type('form')
      .send({ user: 'nobody@example.com' });
    expect(visible(unknown)).toEqual(visible(known));
  });

  it('with failureRedirect and flashes, unknown users get the success answer too (same redirect, same flash)', async () => {
    const t = createApp({
      express: major,
      flash: true,
      getUserId: (u) => (u === 'known@example.com' ? 'u-1' : null),
      request: {
        enumerationSafe: true,
        failureRedirect: '/login',
        failureFlash: 'unknown',
        successFlash: 'Check your inbox',
      },
    });
    const known = await request(t.app).post('/sendtoken').type('form').send({ user: 'known@example.com' });
    const unknown = await request(t.app).post('/sendtoken').type('form').send({ user: 'nobody@example.com' });
    expect(unknown.body).toEqual(known.body);
    expect(unknown.body.flash).toEqual({ 'passwordless-success': ['Check your inbox'] });
    expect(unknown.status).toBe(known.status);
  });

  it('median latency of known and unknown users differs by < 25 ms over 200 requests each, with a 200 ms send', async () => {
    const t = createApp({
      express: major,
      getUserId: (u) => (u.startsWith('known') ? u : null),
      request: { enumerationSafe: true },
    });
    t.outbox.after = () => sleep(200);
    const timings: Record<'known' | 'unknown', number[]> = { known: [], unknown: [] };
    for (let i = 0; i < 200; i++) {
      for (const kind of ['known', 'unknown'] as const) {
        const started = performance.now();
        await request(t.app)
          .post('/sendtoken')
          .type('form')
          .send({ user: `${kind}${i}@example.com` })
          .expect(200);
        timings[kind].push(performance.now() - started);
      }
    }
    expect(Math.abs(median(timings.known) - median(timings.unknown))).toBeLessThan(25);
    expect(median(timings.known)).toBeLessThan(150); // the response never waits for the 200 ms send
  });

  it('store and delivery failures after the response go to onBackgroundError, never to the client', async () => {
    const store = new MemoryStore();
    const reported: PasswordlessError[] = [];
    const t = createApp({
      express: major,
      store,
      request: { enumerationSafe: true, onBackgroundError: (err) => reported.push(err) },
    });
    t.outbox.after = () => Promise.reject(new Error('smtp down'));
    await request(t.app).post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(200);
    vi.spyOn(store, 'storeOrUpdate').mockRejectedValueOnce(new Error('redis down'));
    await request(t.app).post('/sendtoken').type('form').send({ user: 'b@example.com' }).expect(200);
    await sleep(30);
    expect(reported.map((e) => e.code).sort()).toEqual(['DELIVERY_FAILED', 'STORE_ERROR']);
    expect(await store.length()).toBe(0);
  });

  it('req.passwordless.uidToAuth is not set, for anyone (it would tell them apart)', async () => {
    const t = createApp({ express: major, request: { enumerationSafe: true } });
    const res = await request(t.app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'a@example.com' })
      .expect(200);
    expect(res.body.uidToAuth).toBeNull();
  });

  it('without enumerationSafe an unknown user still gets 401 (the documented default)', async () => {
    const t = createApp({ express: major });
    await request(t.app).post('/sendtoken').type('form').send({ user: 'nobody@elsewhere.test' }).expect(401);
  });
});
