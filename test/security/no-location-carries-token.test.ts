// SECURITY 20: no Location header ever contains a token or uid — not the origin restricted({ originField }) builds
// from a refused, used or scanned link, and not an origin stored at requestToken and followed after login.
import express from 'express';
import { MemoryStore, Passwordless } from 'express-passwordless';
import session from 'express-session';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createApp, EXPRESS_MAJORS, knownUser, linkQuery } from '../helpers/create-app.js';

type ExpressFactory = typeof express;

async function expressOf(major: 4 | 5): Promise<ExpressFactory> {
  return major === 5 ? express : ((await import('express4')).default as unknown as ExpressFactory);
}

/** README-style: the magic link points at a restricted page that accepts the token. */
async function accountApp(major: 4 | 5) {
  const e = await expressOf(major);
  const p = new Passwordless();
  p.init(new MemoryStore());
  const sent: { token: string; uid: string }[] = [];
  p.addDelivery(async (ctx) => void sent.push({ token: ctx.token, uid: ctx.uid }));
  const app = e();
  app.use(session({ secret: 's'.repeat(32), resave: false, saveUninitialized: false }));
  app.use(e.urlencoded({ extended: false }));
  app.use(p.sessionSupport());
  app.post('/sendtoken', p.requestToken(knownUser), (_q, r) => void r.send('ok'));
  app.get(
    '/account',
    p.acceptToken(),
    p.restricted({ failureRedirect: '/login', originField: 'origin' }),
    (_q, r) => void r.send('account'),
  );
  await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
  const link = sent[0]!;
  return { app, token: link.token, query: `token=${link.token}&uid=ann%40example.com` };
}

/** The origin carried by a `/login?origin=…` Location, after checking that Location names neither token nor uid. */
function originIn(location: unknown, token: string): string | null {
  expect(typeof location).toBe('string');
  const loc = location as string;
  for (const form of [loc, decodeURIComponent(loc), decodeURIComponent(decodeURIComponent(loc))]) {
    expect(form).not.toContain(token);
    expect(form).not.toMatch(/[?&]uid=/);
    expect(form).not.toMatch(/[?&]token=/);
  }
  const url = new URL(loc, 'https://app.example');
  expect(url.pathname).toBe('/login');
  return url.searchParams.get('origin');
}

describe.each(EXPRESS_MAJORS)(
  'Express %i: restricted({ failureRedirect, originField }) behind acceptToken',
  (major) => {
    it('a used link: the origin in Location keeps the page but not token or uid', async () => {
      const { app, token, query } = await accountApp(major);
      await request(app).get(`/account?${query}`).expect(200); // first click logs in
      const res = await request(app).get(`/account?tab=2&${query}`).expect(302); // second click: used token
      expect(originIn(res.headers.location, token)).toBe('/account?tab=2');
    });

    it('a wrong (mistyped) link: the origin in Location has no token or uid', async () => {
      const { app } = await accountApp(major);
      const res = await request(app).get('/account?token=WRONGTOKEN123&uid=ann%40example.com').expect(302);
      expect(originIn(res.headers.location, 'WRONGTOKEN123')).toBe('/account');
    });

    it('a HEAD (link scanner) with a valid link: the origin has no token or uid, and the link still works after', async () => {
      const { app, token, query } = await accountApp(major);
      const res = await request(app).head(`/account?${query}`).expect(302);
      expect(originIn(res.headers.location, token)).toBe('/account');
      const get = await request(app).get(`/account?${query}`).expect(200);
      expect(get.text).toBe('account');
    });
  },
);

describe.each(EXPRESS_MAJORS)('Express %i: origin stored at requestToken', (major) => {
  it('an origin carrying token/uid fields is followed after login without them', async () => {
    const t = createApp({
      express: major,
      request: { originField: 'origin' },
      accept: { enableOriginRedirect: true },
    });
    await request(t.app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'ann@example.com', origin: '/account?token=OLDTOKEN123&uid=ann%40example.com&tab=2' })
      .expect(200);
    const res = await request(t.app)
      .get(`/?${linkQuery(t.outbox.last())}`)
      .expect(302);
    expect(res.headers.location).toBe('/account?tab=2');
  });

  it('qs spellings of the fields (token[]=, uid[x]=, percent-encoded names) are dropped too', async () => {
    const t = createApp({
      express: major,
      request: { originField: 'origin' },
      accept: { enableOriginRedirect: true },
    });
    await request(t.app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'ann@example.com', origin: '/a?token[]=X1&uid[x]=Y1&%74oken=X2&keep=1#frag' })
      .expect(200);
    const res = await request(t.app)
      .get(`/?${linkQuery(t.outbox.last())}`)
      .expect(302);
    expect(res.headers.location).toBe('/a?keep=1#frag');
  });
});
