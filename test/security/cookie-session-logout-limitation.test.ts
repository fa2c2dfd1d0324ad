// A documented limitation, not a defect (README "Sessions"): with cookie-session the whole session lives in the
// signed cookie, so logout() can only hand the browser a new cookie; a copy of the logged-in cookie taken before
// logout stays valid until it expires. This test pins today's behaviour so that a change to it is noticed; apps that
// need logout to end every copy use express-session (see the regeneration tests in test/middleware/sessions.test.ts).
import request from 'supertest';
import { expect, it } from 'vitest';
import { createApp, linkQuery } from '../helpers/create-app.js';

function cookiesOf(res: request.Response): string {
  return ([] as string[])
    .concat(res.headers['set-cookie'] ?? [])
    .map((c) => c.split(';')[0])
    .join('; ');
}

it('cookie-session: a copied pre-logout cookie still works — inherent, documented', async () => {
  const t = createApp({ session: 'cookie-session' });
  await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
  const login = await request(t.app)
    .get(`/?${linkQuery(t.outbox.last())}`)
    .expect(200);
  const copied = cookiesOf(login);
  const logout = await request(t.app).get('/logout').set('Cookie', copied).expect(200);
  // The browser that logged out is logged out: the cookie logout() set is not logged in.
  await request(t.app).get('/restricted').set('Cookie', cookiesOf(logout)).expect(401);
  // A copy of the pre-logout cookie is still logged in (inherent to cookie-session; documented in README).
  const replay = await request(t.app).get('/restricted').set('Cookie', copied);
  expect(replay.status).toBe(200);
  expect(replay.body.user).toBe('ann@example.com');
});
