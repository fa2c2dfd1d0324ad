// With saveUninitialized: false the app opts out of storing anonymous sessions. A failure redirect that changed
// nothing in the session (restricted({ failureRedirect }), unknown user at requestToken({ failureRedirect })) must not
// force-save an empty session into the session store; one that set a flash must save it, so the flash survives.
import flash from 'connect-flash';
import express from 'express';
import { MemoryStore, Passwordless } from 'express-passwordless';
import session from 'express-session';
import request from 'supertest';
import { describe, expect, it } from 'vitest';

function app(withFlash: boolean) {
  const p = new Passwordless();
  p.init(new MemoryStore());
  p.addDelivery(async () => {});
  const sessions = new session.MemoryStore();
  const a = express();
  a.use(session({ secret: 's'.repeat(32), resave: false, saveUninitialized: false, store: sessions }));
  if (withFlash) a.use(flash());
  a.use(express.urlencoded({ extended: false }));
  a.use(p.sessionSupport());
  const failureFlash = withFlash ? { failureFlash: 'Please log in' } : {};
  a.get(
    '/account',
    p.restricted({ failureRedirect: '/login', ...failureFlash }),
    (_q, r) => void r.send('x'),
  );
  a.post(
    '/sendtoken',
    p.requestToken(() => null, { failureRedirect: '/login', ...failureFlash }),
    (_q, r) => void r.send('x'),
  );
  a.get('/login', (req, res) => {
    const r = req as unknown as { flash?: (t: string) => string[] };
    res.json({ flash: r.flash ? r.flash('passwordless') : null });
  });
  const count = () =>
    new Promise<number>((resolve, reject) =>
      sessions.length((e, n) => (e ? reject(e) : resolve(n as number))),
    );
  return { a, count };
}

function setCookie(res: request.Response): string | undefined {
  return ([] as string[]).concat(res.headers['set-cookie'] ?? [])[0]?.split(';')[0];
}

describe('without a flash', () => {
  it('anonymous hits on restricted() and unknown-user requestToken() store no session and set no cookie', async () => {
    const { a, count } = app(false);
    for (let i = 0; i < 10; i++) {
      const r = await request(a).get('/account').expect(302);
      const s = await request(a).post('/sendtoken').type('form').send({ user: 'nobody' }).expect(302);
      expect(r.headers.location).toBe('/login');
      expect(s.headers.location).toBe('/login');
      expect(setCookie(r)).toBeUndefined();
      expect(setCookie(s)).toBeUndefined();
    }
    expect(await count()).toBe(0);
  });
});

describe('with failureFlash', () => {
  it.each([
    ['restricted()', (a: express.Express) => request(a).get('/account')],
    [
      'requestToken() for an unknown user',
      (a: express.Express) => request(a).post('/sendtoken').type('form').send({ user: 'nobody' }),
    ],
  ])('%s stores the session, and the flash survives the redirect', async (_, hit) => {
    const { a, count } = app(true);
    const res = await hit(a).expect(302);
    expect(res.headers.location).toBe('/login');
    expect(await count()).toBe(1);
    const cookie = setCookie(res);
    expect(cookie).toBeDefined();
    const login = await request(a).get('/login').set('Cookie', cookie!).expect(200);
    expect(login.body.flash).toEqual(['Please log in']);
  });
});
