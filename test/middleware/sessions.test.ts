import express from 'express';
import { MemoryStore, Passwordless, type PasswordlessError } from 'express-passwordless';
import session from 'express-session';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createApp, EXPRESS_MAJORS, knownUser, linkQuery, type TestApp } from '../helpers/create-app.js';

function cookieOf(res: request.Response, name: string): string | undefined {
  const cookies = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
  return cookies.find((c) => c.startsWith(`${name}=`))?.split(';')[0];
}

/** A test app with a /cart route that puts app data into the session. */
function appWithCart(major: 4 | 5, extra: Parameters<typeof createApp>[0] = {}): TestApp {
  return createApp({
    express: major,
    ...extra,
    before: (app) => {
      app.get('/cart', (req, res) => {
        (req.session as unknown as Record<string, unknown>).cart = ['book'];
        res.json({ ok: true });
      });
    },
  });
}

describe.each(EXPRESS_MAJORS)('sessions on Express %i', (major) => {
  it('login regenerates the session id: the pre-login cookie is not logged in, the new one is, app data survives', async () => {
    const t = appWithCart(major, { accept: { successRedirect: '/done' } });
    const before = await request(t.app).get('/cart').expect(200);
    const oldCookie = cookieOf(before, 'connect.sid');
    expect(oldCookie).toBeDefined();
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const login = await request(t.app)
      .get(`/?${linkQuery(t.outbox.last())}`)
      .set('Cookie', oldCookie!)
      .expect(302);
    const newCookie = cookieOf(login, 'connect.sid');
    expect(newCookie).toBeDefined();
    expect(newCookie).not.toBe(oldCookie);
    const asNew = await request(t.app).get('/restricted').set('Cookie', newCookie!).expect(200);
    expect(asNew.body.user).toBe('ann@example.com');
    const probe = await request(t.app).get('/probe').set('Cookie', newCookie!).expect(200);
    expect(probe.body.session).toEqual({ passwordless: 'ann@example.com', cart: ['book'] });
    await request(t.app).get('/restricted').set('Cookie', oldCookie!).expect(401);
  });

  it('an attacker-planted session id is worthless after the victim logs in (fixation)', async () => {
    const t = appWithCart(major);
    const planted = cookieOf(await request(t.app).get('/cart'), 'connect.sid')!;
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    await request(t.app)
      .get(`/?${linkQuery(t.outbox.last())}`)
      .set('Cookie', planted)
      .expect(200);
    await request(t.app).get('/restricted').set('Cookie', planted).expect(401);
  });

  it('the session is saved before the redirect, so the uid survives it', async () => {
    const t = createApp({ express: major, accept: { successRedirect: '/restricted' } });
    const agent = request.agent(t.app);
    await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const res = await agent
      .get(`/?${linkQuery(t.outbox.last())}`)
      .redirects(1)
      .expect(200);
    expect(res.body.user).toBe('ann@example.com');
  });

  it('cookie-session (no regenerate, no save) logs in with skipForceSessionSave, and logs out', async () => {
    const t = createApp({
      express: major,
      session: 'cookie-session',
      init: { skipForceSessionSave: true },
      accept: { successRedirect: '/restricted' },
    });
    const agent = request.agent(t.app);
    await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const res = await agent
      .get(`/?${linkQuery(t.outbox.last())}`)
      .redirects(1)
      .expect(200);
    expect(res.body.user).toBe('ann@example.com');
    await agent.get('/logout').expect(200);
    await agent.get('/restricted').expect(401);
  });

  it('cookie-session works even without skipForceSessionSave (it has no save())', async () => {
    const t = createApp({
      express: major,
      session: 'cookie-session',
      accept: { successRedirect: '/restricted' },
    });
    const agent = request.agent(t.app);
    await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    expect((await agent.get(`/?${linkQuery(t.outbox.last())}`).redirects(1)).body.user).toBe(
      'ann@example.com',
    );
  });

  it('sessionSupport restores req.user from the session on later requests', async () => {
    const t = createApp({ express: major });
    const agent = request.agent(t.app);
    await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    await agent.get(`/?${linkQuery(t.outbox.last())}`).expect(200);
    expect((await agent.get('/anything')).body.user).toBe('ann@example.com');
  });
});

function failingSessionApp(failOn: 'regenerate' | 'save'): {
  app: express.Express;
  errors: PasswordlessError[];
  p: Passwordless;
  sent: string[];
} {
  const p = new Passwordless();
  p.init(new MemoryStore());
  const sent: string[] = [];
  p.addDelivery(async (ctx) => {
    sent.push(`token=${ctx.token}&uid=${encodeURIComponent(ctx.uid)}`);
  });
  const app = express();
  app.use(session({ secret: 's'.repeat(32), resave: false, saveUninitialized: true }));
  type Cb = (err?: Error) => void;
  type S = Record<string, (cb: Cb) => void>;
  app.use((req, _res, next) => {
    const s = req.session as unknown as S;
    const fail = (cb: Cb) => cb(new Error(`${failOn} failed`));
    if (failOn === 'regenerate') s.regenerate = fail;
    else {
      // The session object is replaced by regenerate(); make the new one's save() fail.
      const regenerate = s.regenerate!;
      s.regenerate = (cb) =>
        regenerate.call(s, (err) => {
          (req.session as unknown as S).save = fail;
          cb(err);
        });
    }
    next();
  });
  app.use(express.urlencoded({ extended: false }));
  app.use(p.sessionSupport());
  app.use(p.acceptToken({ successRedirect: '/done' }));
  app.post('/sendtoken', p.requestToken(knownUser), (_req, res) => res.send('ok'));
  app.use((req, res) => res.json({ user: (req as unknown as { user?: string }).user ?? null }));
  const errors: PasswordlessError[] = [];
  app.use(
    (err: PasswordlessError, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      errors.push(err);
      res.status(500).json({ error: err.code });
    },
  );
  return { app, errors, p, sent };
}

describe('session failures', () => {
  it.each(['regenerate', 'save'] as const)(
    'if %s fails: next(err) SESSION_ERROR, no redirect, nobody logged in',
    async (failOn) => {
      const { app, errors, sent } = failingSessionApp(failOn);
      const agent = request.agent(app);
      await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
      const res = await agent.get(`/?${sent[0]}`).expect(500);
      expect(res.headers.location).toBeUndefined();
      expect(errors[0]?.code).toBe('SESSION_ERROR');
      if (failOn === 'regenerate') expect((await agent.get('/x')).body.user).toBeNull();
    },
  );

  it('sessionSupport without a session forwards NO_SESSION', async () => {
    const t = createApp({ session: 'none' });
    const p = new Passwordless();
    const app = express();
    app.use(p.sessionSupport());
    const errors: PasswordlessError[] = [];
    app.use(
      (err: PasswordlessError, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
        errors.push(err);
        res.status(500).end();
      },
    );
    await request(app).get('/').expect(500);
    expect(errors[0]?.code).toBe('NO_SESSION');
    expect(errors[0]?.message).toMatch(/express-session/);
    expect(t).toBeDefined();
  });
});
