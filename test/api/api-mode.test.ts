import { generateKeyPairSync, randomBytes } from 'node:crypto';
import express from 'express';
import {
  type JwtOptions,
  MemoryStore,
  Passwordless,
  PasswordlessError,
  type TokenStore,
} from 'express-passwordless';
import { decodeJwt, decodeProtectedHeader, jwtVerify, SignJWT, UnsecuredJWT } from 'jose';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { api, bearer, type Harness, JSON_ACCEPT, KEY, login, SECRET, track } from './harness.js';

describe('JSON request and acceptance', () => {
  it('request answers 202 {} for Accept: application/json, and the same for an unknown user only with enumerationSafe', async () => {
    const h = api();
    const res = await request(h.app)
      .post('/auth/request')
      .set(JSON_ACCEPT)
      .send({ user: 'alice@example.com' });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({});
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const unknown = await request(h.app)
      .post('/auth/request')
      .set(JSON_ACCEPT)
      .send({ user: 'eve@example.com' });
    expect(unknown.status).toBe(401);
    expect(unknown.body).toEqual({ error: 'unknown_user' });
  });

  it('json: true answers JSON without an Accept header; hostile input is 400 invalid_request, nothing sent', async () => {
    const h = api();
    h.app.post(
      '/forced',
      h.pwd.requestToken((u) => u, { json: true }),
    );
    expect((await request(h.app).post('/forced').send({ user: 'carol@example.com' })).status).toBe(202);
    for (const body of [{ user: ['a', 'b'] }, { user: { $ne: null } }, {}]) {
      const res = await request(h.app).post('/forced').send(body);
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'invalid_request' });
    }
    expect(h.sent).toHaveLength(1);
  });

  it('acceptance answers { uid, accessToken, tokenType, expiresIn, refreshToken }, not cacheable, and sets no cookie', async () => {
    const h = api();
    await request(h.app).post('/auth/request').set(JSON_ACCEPT).send({ user: 'alice@example.com' });
    const { token } = h.sent[0]!;
    const res = await request(h.app)
      .post('/auth/accept')
      .set(JSON_ACCEPT)
      .send({ uid: 'alice@example.com', token })
      .expect(200);
    expect(Object.keys(res.body).sort()).toEqual([
      'accessToken',
      'expiresIn',
      'refreshToken',
      'tokenType',
      'uid',
    ]);
    expect(res.body).toMatchObject({ uid: 'alice@example.com', tokenType: 'Bearer', expiresIn: 900 });
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(res.body.refreshToken).toMatch(/^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{22}$/);
  });

  it('the access token is an HS256 at+jwt with sub, iat, exp (15 min), jti and sid, verified by jose on its own', async () => {
    const h = api({ secret: SECRET, issuer: 'https://auth.example', audience: 'mobile' });
    const { accessToken } = await login(h);
    const { payload, protectedHeader } = await jwtVerify(accessToken, KEY, {
      algorithms: ['HS256'],
      issuer: 'https://auth.example',
      audience: 'mobile',
    });
    expect(protectedHeader).toEqual({ alg: 'HS256', typ: 'at+jwt' });
    expect(payload.sub).toBe('alice@example.com');
    expect(payload.exp! - payload.iat!).toBe(900);
    expect(Math.abs(payload.iat! - Date.now() / 1000)).toBeLessThan(5);
    expect(payload.jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(payload.sid).toMatch(/^[0-9a-f]{64}$/);
    const second = await login(h);
    expect(decodeJwt(second.accessToken).jti).not.toBe(payload.jti);
  });

  it('a wrong, reused or missing-half token answers 401/400 JSON, never a redirect or HTML', async () => {
    const h = api();
    await request(h.app).post('/auth/request').set(JSON_ACCEPT).send({ user: 'alice@example.com' });
    const { token } = h.sent[0]!;
    const wrong = token === '000000' ? '000001' : '000000';
    const bad = await request(h.app)
      .post('/auth/accept')
      .set(JSON_ACCEPT)
      .send({ uid: 'alice@example.com', token: wrong });
    expect([bad.status, bad.body]).toEqual([401, { error: 'invalid_token' }]);
    await request(h.app)
      .post('/auth/accept')
      .set(JSON_ACCEPT)
      .send({ uid: 'alice@example.com', token })
      .expect(200);
    const reused = await request(h.app)
      .post('/auth/accept')
      .set(JSON_ACCEPT)
      .send({ uid: 'alice@example.com', token });
    expect([reused.status, reused.body]).toEqual([401, { error: 'invalid_token' }]);
    const half = await request(h.app).post('/auth/accept').set(JSON_ACCEPT).send({ token });
    expect([half.status, half.body]).toEqual([400, { error: 'invalid_request' }]);
    const arr = await request(h.app)
      .post('/auth/accept')
      .set(JSON_ACCEPT)
      .send({ uid: ['x'], token });
    expect([arr.status, arr.body]).toEqual([400, { error: 'invalid_request' }]);
  });

  it('a code locked by the failure budget answers 429 JSON with Retry-After', async () => {
    const h = api({ secret: SECRET }, { maxFailures: 2 });
    await request(h.app).post('/auth/request').set(JSON_ACCEPT).send({ user: 'alice@example.com' });
    for (let i = 0; i < 2; i++) {
      await request(h.app)
        .post('/auth/accept')
        .set(JSON_ACCEPT)
        .send({ uid: 'alice@example.com', token: 'nope' });
    }
    const res = await request(h.app)
      .post('/auth/request')
      .set(JSON_ACCEPT)
      .send({ user: 'alice@example.com' });
    expect([res.status, res.body]).toEqual([429, { error: 'too_many_requests' }]);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('without jwt, a JSON client of acceptToken gets the 1.x behaviour (no tokens to answer)', async () => {
    const pwd = new Passwordless();
    const store = new MemoryStore();
    track(store);
    pwd.init(store, { secret: randomBytes(32) });
    const sent: string[] = [];
    pwd.addDelivery(async (ctx) => void sent.push(ctx.token));
    const app = express();
    app.use(express.json());
    app.post(
      '/request',
      pwd.requestToken((u) => u),
      (_req, res) => void res.send('sent'),
    );
    app.get(
      '/',
      pwd.acceptToken(),
      (req, res) => void res.json({ user: (req as unknown as { user?: string }).user }),
    );
    // Without jwt nothing negotiates JSON: the app's own routes and error handler answer, as in 1.x.
    const sentRes = await request(app).post('/request').set(JSON_ACCEPT).send({ user: 'a' }).expect(200);
    expect(sentRes.text).toBe('sent');
    const res = await request(app).get('/').query({ uid: 'a', token: sent[0] }).set(JSON_ACCEPT).expect(200);
    expect(res.body).toEqual({ user: 'a' });
  });
});

describe('JSON details', () => {
  it('a JSON POST to acceptToken reads only the body: a code in the query string is not used', async () => {
    const h = api();
    await request(h.app).post('/auth/request').set(JSON_ACCEPT).send({ user: 'alice@example.com' });
    const { token } = h.sent[0]!;
    const viaQuery = await request(h.app)
      .post(`/auth/accept?uid=alice%40example.com&token=${token}`)
      .set(JSON_ACCEPT)
      .send({});
    // Neither field in the body: a negotiated acceptToken passes the request on (here: 404); nothing was consumed.
    expect(viaQuery.status).toBe(404);
    expect(viaQuery.body.accessToken).toBeUndefined();
    await request(h.app)
      .post('/auth/accept')
      .set(JSON_ACCEPT)
      .send({ uid: 'alice@example.com', token })
      .expect(200);
  });

  it('restricted() answers a JSON client 401 { error: unauthorized } with the same challenge', async () => {
    const h = api();
    const res = await request(h.app).get('/me').set(JSON_ACCEPT);
    expect([res.status, res.body]).toEqual([401, { error: 'unauthorized' }]);
    expect(res.headers['www-authenticate']).toBe('Provide a token');
    const html = await request(h.app).get('/me');
    expect([html.status, html.text]).toEqual([401, 'Unauthorized']);
  });

  it('the rate limiters answer a JSON client with { error: too_many_requests }', async () => {
    const { requestLimiter } = await import('express-passwordless/rate-limit');
    const app = express();
    app.post('/r', requestLimiter({ limit: 1 }), (_req, res) => void res.status(202).json({}));
    await request(app).post('/r').set(JSON_ACCEPT).expect(202);
    const res = await request(app).post('/r').set(JSON_ACCEPT);
    expect([res.status, res.body]).toEqual([429, { error: 'too_many_requests' }]);
    expect(res.headers['retry-after']).toBeDefined();
    const text = await request(app).post('/r');
    expect(text.status).toBe(429);
    expect(text.text).toMatch(/Too many requests/);
  });
});

describe('bearerSupport', () => {
  it('a valid bearer token logs the request in; restricted() works unchanged behind it', async () => {
    const h = api();
    const { accessToken } = await login(h);
    const res = await request(h.app).get('/me').set(bearer(accessToken)).expect(200);
    expect(res.body).toEqual({ uid: 'alice@example.com' });
    const none = await request(h.app).get('/me').expect(401);
    expect(none.headers['www-authenticate']).toBe('Provide a token');
  });

  async function refused(h: Harness, token: string) {
    const res = await request(h.app).get('/me').set(bearer(token));
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    expect(res.body).toEqual({ error: 'invalid_token' });
  }

  it('refuses alg none, another KEY, another algorithm, expiry, wrong aud/iss/typ, a refresh token, garbage', async () => {
    const h = api({ secret: SECRET, audience: 'mobile', issuer: 'https://auth.example' });
    const { accessToken, refreshToken } = await login(h);
    const claims = decodeJwt(accessToken);
    const sign = (
      payload: Record<string, unknown>,
      header: Record<string, unknown> = {},
      k: Uint8Array = KEY,
    ) =>
      new SignJWT({ ...claims, ...payload })
        .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', ...header })
        .sign(k);
    // Sanity: our own forger makes tokens that pass when nothing is changed.
    await request(h.app)
      .get('/me')
      .set(bearer(await sign({})))
      .expect(200);
    await refused(h, new UnsecuredJWT({ ...claims }).encode());
    await refused(h, await sign({}, {}, new TextEncoder().encode('another secret of 32 bytes or more!!')));
    await refused(h, await sign({}, { alg: 'HS512' }, new Uint8Array(64).fill(1)));
    const past = Math.floor(Date.now() / 1000) - 3600;
    await refused(h, await sign({ iat: past - 900, exp: past }));
    await refused(h, await sign({ aud: 'web' }));
    await refused(h, await sign({ iss: 'https://evil.example' }));
    await refused(h, await sign({}, { typ: 'JWT' }));
    await refused(h, await sign({ sid: undefined }));
    await refused(h, refreshToken);
    await refused(h, 'not.a.jwt');
    await refused(h, `${accessToken}x`);
    await refused(h, 'x'.repeat(10_000));
    const empty = await request(h.app).get('/me').set('Authorization', 'Bearer ');
    expect(empty.status).toBe(401);
  });

  it('with an ES256 key pair: tokens carry the kid; an HS256 token keyed with the public key is refused', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const h = api({ privateKey, publicKey, kid: 'k1' });
    const { accessToken } = await login(h);
    expect(decodeProtectedHeader(accessToken)).toEqual({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' });
    await jwtVerify(accessToken, publicKey, { algorithms: ['ES256'] });
    await request(h.app).get('/me').set(bearer(accessToken)).expect(200);
    const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const confused = await new SignJWT({ ...decodeJwt(accessToken) })
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: 'k1' })
      .sign(new TextEncoder().encode(pem));
    await refused(h, confused);
  });

  it('key rotation: tokens of a previous key verify by kid until they expire; an unknown kid does not', async () => {
    const old = generateKeyPairSync('ed25519');
    const oldApp = api({ privateKey: old.privateKey, publicKey: old.publicKey, kid: 'old' });
    const { accessToken } = await login(oldApp);
    const current = generateKeyPairSync('ed25519');
    const h = api({
      privateKey: current.privateKey,
      publicKey: current.publicKey,
      kid: 'new',
      previousKeys: [{ kid: 'old', publicKey: old.publicKey }],
    });
    await request(h.app).get('/me').set(bearer(accessToken)).expect(200);
    const stranger = api({ privateKey: current.privateKey, publicKey: current.publicKey, kid: 'new' });
    await refused(stranger, accessToken);
  });
});

describe('refresh rotation and theft detection', () => {
  it('a refresh token rotates: new pair, new access works, uid kept, never cacheable', async () => {
    const h = api();
    const first = await login(h);
    const res = await request(h.app)
      .post('/auth/refresh')
      .send({ refreshToken: first.refreshToken })
      .expect(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body.uid).toBe('alice@example.com');
    expect(res.body.refreshToken).not.toBe(first.refreshToken);
    expect(res.body.accessToken).not.toBe(first.accessToken);
    expect(decodeJwt(res.body.accessToken).sid).toBe(decodeJwt(first.accessToken).sid);
    await request(h.app).get('/me').set(bearer(res.body.accessToken)).expect(200);
    await request(h.app).post('/auth/refresh').send({ refreshToken: res.body.refreshToken }).expect(200);
  });

  it('replaying a rotated refresh token revokes the whole login: the thief, the owner, and (checked) its access tokens', async () => {
    const h = api();
    const first = await login(h);
    const other = await login(h);
    const rotated = await request(h.app)
      .post('/auth/refresh')
      .send({ refreshToken: first.refreshToken })
      .expect(200);
    await request(h.app).get('/checked').set(bearer(rotated.body.accessToken)).expect(200);
    const replay = await request(h.app).post('/auth/refresh').send({ refreshToken: first.refreshToken });
    expect([replay.status, replay.body]).toEqual([401, { error: 'invalid_grant' }]);
    const owner = await request(h.app)
      .post('/auth/refresh')
      .send({ refreshToken: rotated.body.refreshToken });
    expect([owner.status, owner.body]).toEqual([401, { error: 'invalid_grant' }]);
    await request(h.app).get('/checked').set(bearer(rotated.body.accessToken)).expect(401);
    // Without the per-request check an access token lives until its exp (15 min): the documented trade-off.
    await request(h.app).get('/me').set(bearer(rotated.body.accessToken)).expect(200);
    // Another login of the same user is untouched.
    await request(h.app).post('/auth/refresh').send({ refreshToken: other.refreshToken }).expect(200);
  });

  it('of 20 concurrent refreshes with one token at most one succeeds', async () => {
    const h = api();
    const { refreshToken } = await login(h);
    const results = await Promise.all(
      Array.from({ length: 20 }, () => request(h.app).post('/auth/refresh').send({ refreshToken })),
    );
    expect(results.filter((r) => r.status === 200).length).toBeLessThanOrEqual(1);
    expect(results.every((r) => r.status === 200 || r.status === 401)).toBe(true);
  });

  it('a forged, malformed, query-string or missing refresh token is refused', async () => {
    const h = api();
    const { refreshToken } = await login(h);
    const [family] = refreshToken.split('.');
    const forged = await request(h.app)
      .post('/auth/refresh')
      .send({ refreshToken: `${family}.${'A'.repeat(22)}` });
    expect([forged.status, forged.body]).toEqual([401, { error: 'invalid_grant' }]);
    for (const body of [{}, { refreshToken: ['x'] }, { refreshToken: { $ne: null } }, { refreshToken: '' }]) {
      const res = await request(h.app).post('/auth/refresh').send(body);
      expect([res.status, res.body]).toEqual([400, { error: 'invalid_request' }]);
    }
    const malformed = await request(h.app).post('/auth/refresh').send({ refreshToken: 'abc' });
    expect([malformed.status, malformed.body]).toEqual([401, { error: 'invalid_grant' }]);
    const viaQuery = await request(h.app).post(`/auth/refresh?refreshToken=${refreshToken}`).send({});
    expect(viaQuery.status).toBe(400);
  });

  it('a refresh family dies refreshTtl after its last rotation', async () => {
    const h = api({ secret: SECRET, refreshTtl: 1000 });
    const { refreshToken } = await login(h);
    await new Promise((r) => setTimeout(r, 1100));
    const res = await request(h.app).post('/auth/refresh').send({ refreshToken });
    expect([res.status, res.body]).toEqual([401, { error: 'invalid_grant' }]);
  });
});

describe('logout in API mode', () => {
  it("revokes this login's family at once: its refresh token and (checked) access token stop working", async () => {
    const h = api();
    const mine = await login(h);
    const other = await login(h);
    await request(h.app).post('/auth/logout').set(bearer(mine.accessToken)).expect(204);
    await request(h.app).post('/auth/refresh').send({ refreshToken: mine.refreshToken }).expect(401);
    await request(h.app).get('/checked').set(bearer(mine.accessToken)).expect(401);
    await request(h.app).get('/checked').set(bearer(other.accessToken)).expect(200);
  });

  it('also by the refresh token in the body, without an access token', async () => {
    const h = api();
    const mine = await login(h);
    await request(h.app).post('/auth/logout').send({ refreshToken: mine.refreshToken }).expect(204);
    await request(h.app).post('/auth/refresh').send({ refreshToken: mine.refreshToken }).expect(401);
  });

  it('a hostile refreshToken in the logout body (array, operator object, forged, huge) revokes nothing', async () => {
    const h = api();
    const mine = await login(h);
    const [family] = mine.refreshToken.split('.');
    for (const refreshToken of [
      [mine.refreshToken],
      { $ne: null },
      `${family}.${'A'.repeat(22)}x`,
      'x'.repeat(100_000),
    ]) {
      const res = await request(h.app).post('/auth/logout').send({ refreshToken });
      expect(res.status).toBe(204);
    }
    const everywhere = await request(h.app)
      .post('/auth/logout-everywhere')
      .send({ refreshToken: { $gt: '' } });
    expect(everywhere.status).toBe(204);
    await request(h.app).post('/auth/refresh').send({ refreshToken: mine.refreshToken }).expect(200);
  });

  it('everywhere: every login of the uid is revoked, other users stay', async () => {
    const h = api();
    const a1 = await login(h);
    const a2 = await login(h);
    const b = await login(h, 'bob@example.com');
    await request(h.app).post('/auth/logout-everywhere').set(bearer(a1.accessToken)).expect(204);
    await request(h.app).post('/auth/refresh').send({ refreshToken: a2.refreshToken }).expect(401);
    await request(h.app).get('/checked').set(bearer(a2.accessToken)).expect(401);
    await request(h.app).post('/auth/refresh').send({ refreshToken: b.refreshToken }).expect(200);
  });
});

describe('store failures answer JSON 503, reported to onError', () => {
  function failing(): TokenStore {
    const fail = () => Promise.reject(new Error('connection refused'));
    const s = new MemoryStore();
    return Object.assign(s, {
      storeOrUpdate: fail,
      consume: fail,
      rotateFamily: fail,
      hasFamily: fail,
      revokeFamily: fail,
    }) as TokenStore;
  }

  it('request, accept, refresh, checked bearer and logout', async () => {
    const good = api();
    const { accessToken, refreshToken } = await login(good);
    const h = api({ secret: SECRET }, {}, failing());
    const calls = [
      request(h.app).post('/auth/request').set(JSON_ACCEPT).send({ user: 'alice@example.com' }),
      request(h.app)
        .post('/auth/accept')
        .set(JSON_ACCEPT)
        .send({ uid: 'alice@example.com', token: '123456' }),
      request(h.app).post('/auth/refresh').send({ refreshToken }),
      request(h.app).get('/checked').set(bearer(accessToken)),
      request(h.app).post('/auth/logout').set(bearer(accessToken)),
    ];
    for (const res of await Promise.all(calls)) {
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ error: 'temporarily_unavailable' });
      expect(res.headers['content-type']).toMatch(/^application\/json/);
    }
    expect(h.errors.map((e) => e.code)).toEqual(Array(5).fill('STORE_ERROR'));
    expect(h.errors.every((e) => e instanceof PasswordlessError)).toBe(true);
  });
});

describe('setup errors', () => {
  const store = () => {
    return track(new MemoryStore());
  };
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(PasswordlessError);
      return (err as PasswordlessError).code;
    }
    return 'no error';
  };

  it.each<[string, unknown]>([
    ['a short secret', { secret: 'short' }],
    ['no key at all', {}],
    ['a secret and a key pair', { secret: SECRET, ...generateKeyPairSync('ed25519'), kid: 'k' }],
    ['a key pair without kid', { ...generateKeyPairSync('ed25519') }],
    [
      'a public key of another pair',
      {
        privateKey: generateKeyPairSync('ed25519').privateKey,
        publicKey: generateKeyPairSync('ed25519').publicKey,
        kid: 'k',
      },
    ],
    ['an RSA key under 2048 bits', { ...generateKeyPairSync('rsa', { modulusLength: 1024 }), kid: 'k' }],
    ['an accessTtl in seconds by mistake', { secret: SECRET, accessTtl: 900 }],
    ['an unknown option', { secret: SECRET, expiresIn: '15m' }],
    [
      'previousKeys without a kid for the current key',
      { secret: SECRET, previousKeys: [{ kid: 'a', secret: SECRET }] },
    ],
  ])('init with jwt of %s throws BAD_OPTIONS', (_, jwt) => {
    expect(code(() => new Passwordless().init(store(), { jwt: jwt as JwtOptions }))).toBe('BAD_OPTIONS');
  });

  it('a store without the refresh-family methods is refused with jwt (INVALID_STORE), accepted without', () => {
    const s = store();
    const plain = {
      storeOrUpdate: s.storeOrUpdate.bind(s),
      consume: s.consume.bind(s),
      invalidateUser: s.invalidateUser.bind(s),
      clear: s.clear.bind(s),
      length: s.length.bind(s),
      close: s.close.bind(s),
    };
    expect(code(() => new Passwordless().init(plain, { jwt: { secret: SECRET } }))).toBe('INVALID_STORE');
    expect(code(() => new Passwordless().init(plain))).toBe('no error');
  });

  it('bearerSupport(), refresh() and acceptToken({ json: true }) after init without jwt throw BAD_OPTIONS', () => {
    const pwd = new Passwordless();
    pwd.init(store());
    expect(code(() => pwd.bearerSupport())).toBe('BAD_OPTIONS');
    expect(code(() => pwd.refresh())).toBe('BAD_OPTIONS');
    expect(code(() => pwd.acceptToken({ json: true }))).toBe('BAD_OPTIONS');
    expect(code(() => pwd.bearerSupport({ checkRevocation: 'yes' } as never))).toBe('BAD_OPTIONS');
  });

  it('accepts PEM strings and derives the algorithm from the key', async () => {
    const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const h = api({
      privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      publicKey: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string,
      kid: 'rsa-1',
    });
    const { accessToken } = await login(h);
    expect(decodeProtectedHeader(accessToken).alg).toBe('RS256');
  });

  it('the store only ever receives hashes of refresh tokens, never a token or either of its parts', async () => {
    const store = new MemoryStore();
    const seen: string[] = [];
    const create = store.createFamily.bind(store);
    const rotate = store.rotateFamily.bind(store);
    store.createFamily = async (record) => {
      seen.push(JSON.stringify(record));
      return create(record);
    };
    store.rotateFamily = async (family, tokenHash, next) => {
      seen.push(JSON.stringify([family, tokenHash, next]));
      return rotate(family, tokenHash, next);
    };
    const h = api({ secret: SECRET }, {}, store);
    const first = await login(h);
    const second = (
      await request(h.app).post('/auth/refresh').send({ refreshToken: first.refreshToken }).expect(200)
    ).body as { refreshToken: string };
    expect(seen).toHaveLength(2);
    const parts = [first.refreshToken, second.refreshToken].flatMap((t) => [t, ...t.split('.')]);
    for (const record of seen) for (const part of parts) expect(record).not.toContain(part);
  });

  it('the refresh secret is 128 bits: two logins never share a family or secret', async () => {
    const h = api({ secret: randomBytes(32) });
    const a = await login(h);
    const b = await login(h);
    const [fa, sa] = a.refreshToken.split('.');
    const [fb, sb] = b.refreshToken.split('.');
    expect(Buffer.from(sa!, 'base64url')).toHaveLength(16);
    expect(fa).not.toBe(fb);
    expect(sa).not.toBe(sb);
  });
});
