// Attacks on API mode that held when tried in review; kept as regression guards.
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { MemoryStore, type TokenStore } from 'express-passwordless';
import { decodeJwt, exportJWK, SignJWT } from 'jose';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { api, bearer, type Harness, JSON_ACCEPT, KEY, login, SECRET } from '../harness.js';

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
/** A hand-made HS256 JWT (jose refuses to sign some of these headers). */
function rawHs256(header: Record<string, unknown>, payload: Record<string, unknown>, key: Uint8Array = KEY) {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`;
}

async function status(h: Harness, token: string, path = '/me') {
  return (await request(h.app).get(path).set(bearer(token))).status;
}

describe('JWT header and claim tricks', () => {
  it('crit, jwk/jku/x5u embedded keys, b64:false, kid injection, kid missing with previousKeys', async () => {
    const h = api({ secret: SECRET });
    const claims = decodeJwt((await login(h)).accessToken);
    const base = { alg: 'HS256', typ: 'at+jwt' };
    expect(await status(h, rawHs256(base, claims))).toBe(200); // sanity
    expect(await status(h, rawHs256({ ...base, crit: ['exp'], exp: 1 }, claims))).toBe(401);
    expect(await status(h, rawHs256({ ...base, crit: ['b64'], b64: false }, claims))).toBe(401);
    expect(await status(h, rawHs256({ ...base, kid: '__proto__' }, claims))).toBe(401);
    expect(await status(h, rawHs256({ ...base, kid: '../../../dev/null' }, claims))).toBe(401);
    // An attacker's own key embedded in the header is never used.
    const evil = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = await exportJWK(evil.publicKey);
    for (const extra of [{ jwk }, { jku: 'https://evil.example/jwks' }, { x5u: 'https://evil.example/c' }]) {
      const t = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', ...extra })
        .sign(evil.privateKey);
      expect(await status(h, t)).toBe(401);
    }
  });

  it('kid of a previous HS secret used with the current asymmetric alg, and kid missing, are refused', async () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const h = api({
      privateKey: pair.privateKey,
      publicKey: pair.publicKey,
      kid: 'cur',
      previousKeys: [{ kid: 'old-hs', secret: SECRET }],
    });
    const claims = decodeJwt((await login(h)).accessToken);
    // ES256 signed by the right private key but naming the HS kid.
    const wrongKid = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'old-hs' })
      .sign(pair.privateKey);
    expect(await status(h, wrongKid)).toBe(401);
    // HS256 with the current kid, keyed by the old secret.
    expect(await status(h, rawHs256({ alg: 'HS256', typ: 'at+jwt', kid: 'cur' }, claims))).toBe(401);
    // No kid at all, signed by the current key or the old secret.
    const noKid = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' })
      .sign(pair.privateKey);
    expect(await status(h, noKid)).toBe(401);
    expect(await status(h, rawHs256({ alg: 'HS256', typ: 'at+jwt' }, claims))).toBe(401);
    // The previous HS secret with its own kid does verify (rotation works).
    expect(await status(h, rawHs256({ alg: 'HS256', typ: 'at+jwt', kid: 'old-hs' }, claims))).toBe(200);
  });

  it('sub not a string, nbf in the future, sid malformed; aud array containing ours is standard', async () => {
    const h = api({ secret: SECRET, audience: 'mobile' });
    const claims = decodeJwt((await login(h)).accessToken);
    const base = { alg: 'HS256', typ: 'at+jwt' };
    const now = Math.floor(Date.now() / 1000);
    expect(await status(h, rawHs256(base, { ...claims, sub: 42 }))).toBe(401);
    expect(await status(h, rawHs256(base, { ...claims, sub: ['alice@example.com'] }))).toBe(401);
    expect(await status(h, rawHs256(base, { ...claims, sub: '' }))).toBe(401);
    expect(await status(h, rawHs256(base, { ...claims, nbf: now + 600 }))).toBe(401);
    expect(await status(h, rawHs256(base, { ...claims, sid: 'A'.repeat(64) }))).toBe(401);
    expect(await status(h, rawHs256(base, { ...claims, aud: ['web'] }))).toBe(401);
    expect(await status(h, rawHs256(base, { ...claims, aud: ['web', 'mobile'] }))).toBe(200);
  });

  it('a token over 4096 characters and a non-Bearer scheme never reach jose; Basic passes through', async () => {
    const h = api();
    const { accessToken } = await login(h);
    expect(await status(h, `${accessToken}${'A'.repeat(5000)}`)).toBe(401);
    expect((await request(h.app).get('/me').set('Authorization', 'Basic Zm9vOmJhcg==')).status).toBe(401);
    expect((await request(h.app).get('/me').set('Authorization', `bearer   ${accessToken}  `)).status).toBe(
      200,
    );
  });
});

describe('refresh races and replays', () => {
  it('refresh racing logout: afterwards no refresh token of the family works, checked access refused', async () => {
    for (let round = 0; round < 10; round++) {
      const h = api();
      const t = await login(h);
      const [rot] = await Promise.all([
        request(h.app).post('/auth/refresh').send({ refreshToken: t.refreshToken }),
        request(h.app).post('/auth/logout').set(bearer(t.accessToken)),
      ]);
      if (rot.status === 200) {
        expect(
          (await request(h.app).post('/auth/refresh').send({ refreshToken: rot.body.refreshToken })).status,
        ).toBe(401);
        expect(await status(h, rot.body.accessToken, '/checked')).toBe(401);
      }
      expect((await request(h.app).post('/auth/refresh').send({ refreshToken: t.refreshToken })).status).toBe(
        401,
      );
    }
  });

  it('replay after logout, forged family ids, an access token as refresh token: 401 invalid_grant', async () => {
    const h = api();
    const t = await login(h);
    const other = await login(h, 'bob@example.com');
    await request(h.app).post('/auth/logout').set(bearer(t.accessToken)).expect(204);
    const replay = await request(h.app).post('/auth/refresh').send({ refreshToken: t.refreshToken });
    expect([replay.status, replay.body]).toEqual([401, { error: 'invalid_grant' }]);
    const [, bobSecret] = other.refreshToken.split('.');
    const forged = await request(h.app)
      .post('/auth/refresh')
      .send({ refreshToken: `${'B'.repeat(22)}.${bobSecret}` });
    expect(forged.status).toBe(401);
    expect(
      (await request(h.app).post('/auth/refresh').send({ refreshToken: other.refreshToken })).status,
    ).toBe(200);
    expect(
      (await request(h.app).post('/auth/refresh').send({ refreshToken: other.accessToken })).status,
    ).toBe(400);
  });

  it('prototype keys and arrays in JSON bodies are not read as fields', async () => {
    const h = api();
    const t = await login(h);
    const body = `{"__proto__":{"refreshToken":"${t.refreshToken}"}}`;
    const res = await request(h.app).post('/auth/refresh').set('Content-Type', 'application/json').send(body);
    expect(res.status).toBe(400);
    const arr = await request(h.app)
      .post('/auth/refresh')
      .send([{ refreshToken: t.refreshToken }]);
    expect(arr.status).toBe(400);
    expect(({} as Record<string, unknown>).refreshToken).toBeUndefined();
    expect((await request(h.app).post('/auth/refresh').send({ refreshToken: t.refreshToken })).status).toBe(
      200,
    );
  });
});

describe('negotiation and leakage', () => {
  it('Accept tricks: */*, html-first, +json and a missing header never answer tokens from a negotiated acceptToken', async () => {
    const h = api();
    h.app.post('/auth/accept', (_req, res) => void res.status(299).json({ next: true }));
    for (const accept of ['*/*', 'text/html, application/json', 'application/problem+json', undefined]) {
      await request(h.app).post('/auth/request').set(JSON_ACCEPT).send({ user: 'alice@example.com' });
      const { token } = h.sent.at(-1)!;
      const req = request(h.app).post('/auth/accept');
      if (accept) req.set('Accept', accept);
      const res = await req.send({ uid: 'alice@example.com', token });
      expect(res.body.accessToken).toBeUndefined();
    }
  });

  it('token answers are no-store; failures are JSON with only an error code; no token in any header', async () => {
    const h = api();
    const t = await login(h);
    const r = await request(h.app).post('/auth/refresh').send({ refreshToken: t.refreshToken });
    expect(r.headers['cache-control']).toBe('no-store');
    expect(JSON.stringify(r.headers)).not.toContain(r.body.refreshToken);
    const bad = await request(h.app)
      .get('/me')
      .set(bearer(`${t.accessToken}x`));
    expect(bad.body).toEqual({ error: 'invalid_token' });
    expect(bad.headers['cache-control']).toBe('no-store');
  });
});

describe('store outages', () => {
  const hang = () => new Promise<never>(() => {});
  it('accept, refresh and a checked bearer answer 503 within storeTimeout; an unchecked bearer never calls the store', async () => {
    const store = new MemoryStore();
    const h = api({ secret: SECRET }, { storeTimeout: 300 }, store);
    const t = await login(h);
    await request(h.app).post('/auth/request').set(JSON_ACCEPT).send({ user: 'alice@example.com' });
    const pending = h.sent.at(-1)!;
    for (const m of ['consume', 'rotateFamily', 'hasFamily', 'createFamily', 'storeOrUpdate'] as const) {
      vi.spyOn(store as Required<TokenStore>, m).mockImplementation(hang);
    }
    const started = Date.now();
    const results = await Promise.all([
      request(h.app).post('/auth/accept').set(JSON_ACCEPT).send({ uid: pending.uid, token: pending.token }),
      request(h.app).post('/auth/refresh').send({ refreshToken: t.refreshToken }),
      request(h.app).get('/checked').set(bearer(t.accessToken)),
      request(h.app).post('/auth/request').set(JSON_ACCEPT).send({ user: 'alice@example.com' }),
    ]);
    expect(Date.now() - started).toBeLessThan(800);
    expect(results.map((r) => r.status)).toEqual([503, 503, 503, 503]);
    expect(await status(h, t.accessToken)).toBe(200);
  });
});
