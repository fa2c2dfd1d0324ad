// Regression test of a defect found in review (now fixed). SECURITY 39 / issue 8 item 4: logout({ everywhere: true }) revokes every login of the uid. A mobile client whose
// 15-minute access token has expired (bearerSupport would 401 it) logs out with its refresh token in the body — the
// documented way ("or of a refreshToken in the body"). "Log out on all devices" (phone stolen) then answers 204 but
// only revokes the presenting login: the thief's login keeps refreshing. The uid's pending tokens are not voided either.
// Cause: src/passwordless.ts:603-606 — with no uid on the request, `everywhere` is ignored and invalidateUser skipped.
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { api, JSON_ACCEPT, login } from '../harness.js';

describe('logout({ everywhere }) with only a refresh token', () => {
  it('revokes every login of the uid, or refuses — never a silent partial logout', async () => {
    const h = api();
    const phone = await login(h); // the owner's device, access token expired, refresh token still held
    const thief = await login(h); // another login of the same uid (stolen device)
    const res = await request(h.app)
      .post('/auth/logout-everywhere')
      .set(JSON_ACCEPT)
      .send({ refreshToken: phone.refreshToken });
    if (res.status === 204) {
      // A success answer must mean what it says: the other login is gone too.
      const after = await request(h.app).post('/auth/refresh').send({ refreshToken: thief.refreshToken });
      expect(after.status).toBe(401);
    } else {
      expect(res.status).toBe(401);
    }
  });

  it("voids the uid's pending login code too (SECURITY 10), as logout with a bearer does", async () => {
    const h = api();
    const phone = await login(h);
    await request(h.app)
      .post('/auth/request')
      .set(JSON_ACCEPT)
      .send({ user: 'alice@example.com' })
      .expect(202);
    const pending = h.sent.at(-1)!;
    await request(h.app)
      .post('/auth/logout-everywhere')
      .set(JSON_ACCEPT)
      .send({ refreshToken: phone.refreshToken });
    const res = await request(h.app)
      .post('/auth/accept')
      .set(JSON_ACCEPT)
      .send({ uid: pending.uid, token: pending.token });
    expect(res.status).toBe(401);
  });
});
