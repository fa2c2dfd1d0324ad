import flash from 'connect-flash';
import express from 'express';
import { MemoryStore, Passwordless, type PasswordlessError } from 'express-passwordless';
import session from 'express-session';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery } from '../helpers/create-app.js';

afterEach(() => vi.restoreAllMocks());

function restrictedApp(options: Parameters<Passwordless['restricted']>[0], withFlash = false) {
  const p = new Passwordless();
  const app = express();
  app.use(session({ secret: 's'.repeat(32), resave: false, saveUninitialized: false }));
  if (withFlash) app.use(flash());
  app.use(p.sessionSupport());
  app.get('/login', (req, res) =>
    res.json({ flash: (req as unknown as { flash: () => unknown }).flash?.() ?? null }),
  );
  app.use('/admin', p.restricted(options), (_req, res) => res.send('secret'));
  return app;
}

describe('restricted()', () => {
  it('answers 401 with WWW-Authenticate: Provide a token when nobody is logged in', async () => {
    const res = await request(restrictedApp(undefined)).get('/admin').expect(401);
    expect(res.headers['www-authenticate']).toBe('Provide a token');
  });

  it('failureRedirect redirects instead', async () => {
    const res = await request(restrictedApp({ failureRedirect: '/login' }))
      .get('/admin')
      .expect(302);
    expect(res.headers.location).toBe('/login');
  });

  it('originField appends ?origin=<encoded originalUrl>, or &origin= when the target has a query', async () => {
    const res = await request(restrictedApp({ failureRedirect: '/login', originField: 'origin' })).get(
      '/admin/x?a=1&b=2',
    );
    expect(res.headers.location).toBe(`/login?origin=${encodeURIComponent('/admin/x?a=1&b=2')}`);
    const res2 = await request(
      restrictedApp({ failureRedirect: '/login?lang=en', originField: 'origin' }),
    ).get('/admin');
    expect(res2.headers.location).toBe('/login?lang=en&origin=%2Fadmin');
  });

  it('failureFlash flashes as passwordless', async () => {
    const agent = request.agent(
      restrictedApp({ failureRedirect: '/login', failureFlash: 'Log in first' }, true),
    );
    await agent.get('/admin').expect(302);
    expect((await agent.get('/login')).body.flash).toEqual({ passwordless: ['Log in first'] });
  });

  it('never calls the token store: logged-in users keep working during a store outage', async () => {
    const store = new MemoryStore();
    const t = createApp({ store });
    const agent = request.agent(t.app);
    await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    await agent.get(`/?${linkQuery(t.outbox.last())}`).expect(200);
    for (const method of [
      'storeOrUpdate',
      'consume',
      'invalidateUser',
      'clear',
      'length',
      'close',
    ] as const) {
      vi.spyOn(store, method).mockRejectedValue(new Error('store down'));
    }
    expect((await agent.get('/restricted').expect(200)).body.user).toBe('ann@example.com');
    expect(store.consume).not.toHaveBeenCalled();
  });
});

describe.each(EXPRESS_MAJORS)('logout() on Express %i', (major) => {
  it('clears the uid from the session and the request, renews the session id and voids pending tokens', async () => {
    const t = createApp({ express: major });
    const agent = request.agent(t.app);
    await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const loginRes = await agent.get(`/?${linkQuery(t.outbox.last())}`).expect(200);
    const loggedInCookie = ([] as string[]).concat(loginRes.headers['set-cookie'] ?? [])[0]!.split(';')[0]!;
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const pending = t.outbox.last();
    await agent.get('/logout').expect(200);
    await agent.get('/restricted').expect(401);
    // The pre-logout cookie is not logged in either (the session id was renewed and the old session destroyed).
    await request(t.app).get('/restricted').set('Cookie', loggedInCookie).expect(401);
    expect((await request(t.app).get(`/?${linkQuery(pending)}`)).body.user).toBeNull();
  });

  it('keeps the app session data', async () => {
    const t = createApp({
      express: major,
      before: (app) =>
        app.get('/cart', (req, res) => {
          (req.session as unknown as Record<string, unknown>).cart = ['pen'];
          res.end();
        }),
    });
    const agent = request.agent(t.app);
    await agent.get('/cart');
    await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    await agent.get(`/?${linkQuery(t.outbox.last())}`).expect(200);
    await agent.get('/logout').expect(200);
    expect((await agent.get('/probe')).body.session).toEqual({ passwordless: null, cart: ['pen'] });
  });

  it('with the store down the session is still cleared, and the error goes to next(err) as STORE_ERROR', async () => {
    const store = new MemoryStore();
    const t = createApp({ express: major, store });
    const agent = request.agent(t.app);
    await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    await agent.get(`/?${linkQuery(t.outbox.last())}`).expect(200);
    vi.spyOn(store, 'invalidateUser').mockRejectedValue(new Error('down'));
    await agent.get('/logout').expect(500);
    expect((t.errors[0] as PasswordlessError).code).toBe('STORE_ERROR');
    await agent.get('/restricted').expect(401);
  });

  it('successFlash is flashed after logout', async () => {
    const p = new Passwordless();
    p.init(new MemoryStore());
    const app = express();
    app.use(session({ secret: 's'.repeat(32), resave: false, saveUninitialized: true }));
    app.use(flash());
    app.use((req, _res, next) => {
      (req.session as unknown as Record<string, unknown>).passwordless = 'ann';
      next();
    });
    app.use(p.sessionSupport());
    app.get('/logout', p.logout({ successFlash: 'Bye' }), (req, res) =>
      res.json({
        flash: (req as unknown as { flash: () => unknown }).flash(),
        user: (req as unknown as { user?: string }).user ?? null,
      }),
    );
    const res = await request(app).get('/logout').expect(200);
    expect(res.body).toEqual({ flash: { 'passwordless-success': ['Bye'] }, user: null });
  });

  it('when nobody is logged in it just calls next()', async () => {
    const t = createApp({ express: major });
    await request(t.app).get('/logout').expect(200);
  });
});
