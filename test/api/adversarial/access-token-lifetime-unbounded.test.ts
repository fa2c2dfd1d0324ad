// Regression test of a defect found in review (now fixed). SECURITY 37 / docs/api-mode.md ("tokens of the old one verify until they expire (at most accessTtl)"):
// verifyAccessToken (src/api-mode.ts:317-330) checks exp but not the token's age: no maxTokenAge, no bound on
// exp - iat, iat in the future accepted. A token under a verify key (e.g. a previousKeys key, or one minted by a
// deployment with a 24 h accessTtl) with exp years ahead is accepted for years. RFC 8725 §3.10 / ASVS 9.2.1.
import { decodeJwt, SignJWT } from 'jose';
import request from 'supertest';
import { expect, it } from 'vitest';
import { api, bearer, KEY, login } from '../harness.js';

it('an access token older than accessTtl, or dated in the future, is refused', async () => {
  const h = api();
  const claims = decodeJwt((await login(h)).accessToken);
  const now = Math.floor(Date.now() / 1000);
  const sign = (iat: number, exp: number) =>
    new SignJWT({ ...claims, iat, exp }).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' }).sign(KEY);
  // Issued 2 days ago, valid for 10 years: far beyond accessTtl (15 min).
  const old = await request(h.app)
    .get('/me')
    .set(bearer(await sign(now - 2 * 86_400, now + 10 * 365 * 86_400)));
  // Issued a year in the future.
  const future = await request(h.app)
    .get('/me')
    .set(bearer(await sign(now + 365 * 86_400, now + 366 * 86_400)));
  expect([old.status, future.status]).toEqual([401, 401]);
});
