import { createHash } from 'node:crypto';
import { MemoryStore, type TokenRecord } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery } from '../helpers/create-app.js';

function setCookies(res: request.Response): string[] {
  return ([] as string[]).concat(res.headers['set-cookie'] ?? []);
}

describe.each(EXPRESS_MAJORS)('bindToDevice on Express %i', (major) => {
  it('sets an HttpOnly, SameSite=Lax cookie that expires with the token; only that browser can use the link', async () => {
    const t = createApp({
      express: major,
      session: 'none',
      request: { bindToDevice: true },
      delivery: { ttl: 600_000 },
    });
    const laptop = request.agent(t.app);
    const res = await laptop.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const cookie = setCookies(res).find((c) => c.startsWith('pwdless-device='));
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    expect(cookie).toMatch(/Path=\//);
    expect(cookie).toMatch(/Max-Age=600/);
    const ctx = t.outbox.last();
    // Another device (no cookie): nobody logged in.
    expect((await request(t.app).get(`/?${linkQuery(ctx)}`)).body.user).toBeNull();
    // The requesting browser: logged in, and the cookie is cleared.
    const login = await laptop.get(`/?${linkQuery(ctx)}`);
    expect(login.body.user).toBe('ann@example.com');
    expect(setCookies(login).some((c) => /^pwdless-device=;/.test(c))).toBe(true);
  });

  it('works for codes too: a code typed in another browser logs nobody in', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    const t = createApp({
      express: major,
      init: { secret: 's'.repeat(32) },
      delivery: { numberToken: { max: 1e6 } },
      request: { bindToDevice: true },
    });
    const phone = request.agent(t.app);
    await phone.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const ctx = t.outbox.last();
    expect((await request(t.app).get(`/?${linkQuery(ctx)}`)).body.user).toBeNull();
    expect((await phone.get(`/?${linkQuery(ctx)}`)).body.user).toBe('ann@example.com');
    vi.restoreAllMocks();
  });

  it('the store never sees the nonce or the bare token hash', async () => {
    const store = new MemoryStore();
    const stored: TokenRecord[] = [];
    const original = store.storeOrUpdate.bind(store);
    store.storeOrUpdate = async (r) => {
      stored.push(r);
      return original(r);
    };
    const t = createApp({ express: major, store, request: { bindToDevice: true } });
    const res = await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' });
    const nonce = /pwdless-device=[0-9a-f]{16}\.([^;]+)/.exec(setCookies(res).join(';'))?.[1];
    expect(nonce).toBeDefined();
    const sha = (v: string) => createHash('sha256').update(v).digest('hex');
    expect(stored[0]?.tokenHash).not.toBe(sha(t.outbox.last().token));
    expect(JSON.stringify(stored)).not.toContain(nonce!);
  });

  it('over HTTPS the cookie is __Host-pwdless-device, Secure', async () => {
    const t = createApp({
      express: major,
      request: { bindToDevice: true },
      before: (app) => app.set('trust proxy', 1),
    });
    const res = await request(t.app)
      .post('/sendtoken')
      .set('X-Forwarded-Proto', 'https')
      .type('form')
      .send({ user: 'ann@example.com' });
    const cookie = setCookies(res).find((c) => c.startsWith('__Host-pwdless-device='));
    expect(cookie).toMatch(/Secure/);
    expect(cookie).toMatch(/Path=\//);
    expect(cookie).not.toMatch(/Domain=/i);
  });

  it('without bindToDevice, request on a laptop and click on a phone works', async () => {
    const t = createApp({ express: major });
    const res = await request.agent(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' });
    expect(setCookies(res).some((c) => c.startsWith('pwdless-device'))).toBe(false);
    expect((await request(t.app).get(`/?${linkQuery(t.outbox.last())}`)).body.user).toBe('ann@example.com');
  });

  it('an unbound request clears an earlier device cookie of that uid, so its link works in this browser', async () => {
    const bound = createApp({
      express: major,
      request: { bindToDevice: true },
      // The same app also offers an unbound route (e.g. another form).
      before: (app, passwordless) =>
        app.post(
          '/sendtoken-unbound',
          passwordless.requestToken((u) => u),
          (_req, res) => {
            res.json({ ok: true });
          },
        ),
    });
    const browser = request.agent(bound.app);
    await browser.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const unbound = await browser.post('/sendtoken-unbound').type('form').send({ user: 'ann@example.com' });
    expect(setCookies(unbound).some((c) => /^pwdless-device=;/.test(c))).toBe(true);
  });

  it('with enumerationSafe, unknown users get the cookie too (the same headers)', async () => {
    const t = createApp({
      express: major,
      getUserId: (u) => (u === 'known@example.com' ? u : null),
      request: { bindToDevice: true, enumerationSafe: true },
    });
    const known = await request(t.app).post('/sendtoken').type('form').send({ user: 'known@example.com' });
    const unknown = await request(t.app).post('/sendtoken').type('form').send({ user: 'nobody@example.com' });
    const shape = (r: request.Response) =>
      setCookies(r).map((c) => c.replace(/=[^;]*/, '=…').replace(/Expires=[^;]*/, ''));
    expect(shape(unknown)).toEqual(shape(known));
  });
});
