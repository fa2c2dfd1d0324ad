// SECURITY 31 (CWE-113): CR, LF, NUL or other control characters in an origin are dropped at requestToken (and
// checked again at acceptToken); no header is ever split, no header injected, and res.setHeader never throws.
import { MemoryStore, type TokenRecord } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery } from '../helpers/create-app.js';

function noInjectedHeader(res: request.Response): void {
  const cookies = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
  expect(cookies.some((c) => c.startsWith('a='))).toBe(false);
  for (const [name, value] of Object.entries(res.headers)) {
    expect(name).not.toMatch(/^a$/i);
    expect(String(value)).not.toMatch(/[\r\n\0]/);
  }
}

describe.each(EXPRESS_MAJORS)('Express %i', (major) => {
  it('a JSON origin "/x\\r\\nSet-Cookie: a=b" is dropped: not stored, Location is successRedirect, no injected header', async () => {
    const store = new MemoryStore();
    const stored = vi.spyOn(store, 'storeOrUpdate');
    const t = createApp({
      express: major,
      store,
      request: { originField: 'origin' },
      accept: { enableOriginRedirect: true, successRedirect: '/home' },
    });
    await request(t.app)
      .post('/sendtoken')
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ user: 'ann@example.com', origin: '/x\r\nSet-Cookie: a=b' }))
      .expect(200);
    expect((stored.mock.calls[0]![0] as TokenRecord).origin).toBeUndefined();
    const res = await request(t.app).get(`/?${linkQuery(t.outbox.last())}`);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/home');
    noInjectedHeader(res);
    expect(t.errors).toEqual([]);
  });

  it('without successRedirect the dropped origin means next(): logged in, no Location', async () => {
    const t = createApp({
      express: major,
      request: { originField: 'origin' },
      accept: { enableOriginRedirect: true },
    });
    await request(t.app)
      .post('/sendtoken')
      .send({ user: 'ann@example.com', origin: '/x\r\nSet-Cookie: a=b' })
      .expect(200);
    const res = await request(t.app).get(`/?${linkQuery(t.outbox.last())}`);
    expect(res.status).toBe(200);
    expect(res.body.user).toBe('ann@example.com');
    expect(res.headers.location).toBeUndefined();
    noInjectedHeader(res);
  });

  it.each([
    ['form', true],
    ['JSON', false],
  ])(
    'control characters in a %s origin (raw or percent-encoded) fall back to successRedirect',
    async (_, form) => {
      const t = createApp({
        express: major,
        request: { originField: 'origin' },
        accept: { enableOriginRedirect: true, successRedirect: '/home' },
      });
      for (const origin of ['/x\r\nSet-Cookie: a=b', '/x%0d%0aSet-Cookie:%20a=b', '/x\u0000y', '/x\u0085y']) {
        const req = request(t.app).post('/sendtoken');
        await (form ? req.type('form') : req).send({ user: 'ann@example.com', origin }).expect(200);
        const res = await request(t.app).get(`/?${linkQuery(t.outbox.last())}`);
        expect(res.status).toBe(302);
        expect(res.headers.location).toBe('/home');
        noInjectedHeader(res);
      }
      expect(t.errors).toEqual([]);
    },
  );

  it('a U+2028 in an origin (not a control character) is percent-encoded in Location, never raw', async () => {
    const t = createApp({
      express: major,
      request: { originField: 'origin' },
      accept: { enableOriginRedirect: true, successRedirect: '/home' },
    });
    await request(t.app)
      .post('/sendtoken')
      .send({ user: 'ann@example.com', origin: '/x\u2028y' })
      .expect(200);
    const res = await request(t.app).get(`/?${linkQuery(t.outbox.last())}`);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/x%E2%80%A8y');
    noInjectedHeader(res);
  });
});
