// SECURITY 22: if the session save before the login redirect fails, the request ends in next(err) (SESSION_ERROR),
// nobody is logged in and no redirect is sent — not by the error handler's view of req, and not by the cookie of
// that 500 (express-session saves the session again at the end of the response).
import express from 'express';
import { MemoryStore, Passwordless } from 'express-passwordless';
import session from 'express-session';
import request from 'supertest';
import { expect, it } from 'vitest';
import { knownUser } from '../helpers/create-app.js';

type Cb = (err?: Error) => void;

it('a save() that fails once after login: 500 SESSION_ERROR, no Location, its Set-Cookie is not logged in', async () => {
  const p = new Passwordless();
  p.init(new MemoryStore());
  const sent: string[] = [];
  p.addDelivery(async (ctx) => void sent.push(`token=${ctx.token}&uid=${encodeURIComponent(ctx.uid)}`));
  const app = express();
  app.use(session({ secret: 's'.repeat(32), resave: false, saveUninitialized: false }));
  let failures = 1;
  app.use((req, _res, next) => {
    const s = req.session as unknown as Record<string, (cb: Cb) => void>;
    const regenerate = s.regenerate!;
    s.regenerate = (cb) =>
      regenerate.call(s, (err) => {
        const fresh = req.session as unknown as Record<string, (cb: Cb) => void>;
        const save = fresh.save!;
        // Fails once (e.g. a session-store timeout), then works again.
        fresh.save = (cb2) => (failures-- > 0 ? cb2(new Error('redis timeout')) : save.call(fresh, cb2));
        cb(err);
      });
    next();
  });
  app.use(express.urlencoded({ extended: false }));
  app.use(p.sessionSupport());
  app.use(p.acceptToken({ successRedirect: '/done' }));
  app.post('/sendtoken', p.requestToken(knownUser), (_req, res) => void res.send('ok'));
  app.get(
    '/restricted',
    p.restricted(),
    (req, res) => void res.json({ user: (req as unknown as { user?: string }).user }),
  );
  const seenByErrorHandler: { user: unknown; session: unknown }[] = [];
  app.use((err: { code?: string }, req: express.Request, res: express.Response, _n: express.NextFunction) => {
    seenByErrorHandler.push({
      user: (req as unknown as { user?: string }).user,
      session: (req.session as unknown as { passwordless?: unknown } | undefined)?.passwordless,
    });
    res.status(500).json({ error: err.code });
  });

  await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
  const login = await request(app).get(`/?${sent[0]}`);
  expect(login.status).toBe(500);
  expect(login.body).toEqual({ error: 'SESSION_ERROR' });
  expect(login.headers.location).toBeUndefined();
  expect(seenByErrorHandler).toEqual([{ user: undefined, session: undefined }]);
  const cookie = ([] as string[]).concat(login.headers['set-cookie'] ?? [])[0]?.split(';')[0];
  if (cookie !== undefined) {
    const after = await request(app).get('/restricted').set('Cookie', cookie);
    expect(after.status).toBe(401);
  }
  expect(failures).toBeLessThanOrEqual(0); // the failing save was really hit
});
