// The API example's JSON contract over HTTP, as a mobile app sees it: every route, every error's status and body,
// the headers that keep tokens out of caches, refresh rotation and the revocation of a replayed refresh token, and
// `npm run example:api` itself (on MemoryStore, and refusing a store that cannot keep refresh tokens).
import { randomBytes } from 'node:crypto';
import { MemoryStore, PasswordlessError, type TokenStore } from 'express-passwordless';
import { decodeJwt, jwtVerify, SignJWT } from 'jose';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type ApiApp, type ApiAppOptions, createApiApp } from '../../examples/api/app.js';
import { openStore } from '../../examples/shared/store.js';
import { describeWithServer } from '../helpers/server.js';
import { freePort, newestMessage, npmRun, type RunningExample, type Script, serveExample } from './serve.js';

const SECRET = 'api-example-test-secret-of-32-bytes!';
const JWT_SECRET = 'api-example-jwt-secret-of-32-bytes!!';
const JWT_KEY = new TextEncoder().encode(JWT_SECRET);
/** High enough that only the rate-limit tests meet the limits (every request here comes from 127.0.0.1). */
const NO_LIMITS = { requestsPerIp: 10_000, requestsPerAddress: 10_000, acceptsPerIp: 10_000 };

interface Tokens {
  uid: string;
  accessToken: string;
  tokenType: string;
  expiresIn: number;
  refreshToken: string;
}

interface Harness {
  url: string;
  errors: { line: string; err: unknown }[];
  running: RunningExample<ApiApp>;
}

const opened: Harness[] = [];
const stores: TokenStore[] = [];

async function serveApi(options: Partial<ApiAppOptions> = {}, store: TokenStore = new MemoryStore()) {
  stores.push(store);
  const errors: Harness['errors'] = [];
  const running = await serveExample((appUrl) =>
    createApiApp({
      appUrl,
      store,
      secret: SECRET,
      jwtSecret: JWT_SECRET,
      log: () => {},
      logError: (line, err) => errors.push({ line, err }),
      limits: NO_LIMITS,
      ...options,
    }),
  );
  const h: Harness = { url: running.url, errors, running };
  opened.push(h);
  return h;
}

afterAll(async () => {
  for (const h of opened.splice(0)) await h.running.close();
  for (const s of stores.splice(0)) await s.close();
});

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

async function askCode(h: Harness, user: string): Promise<string> {
  await request(h.url).post('/auth/request').send({ user }).expect(202);
  return (await newestMessage(h.url)).code!;
}

async function login(h: Harness, address = 'ada@example.com'): Promise<Tokens> {
  const token = await askCode(h, address);
  const res = await request(h.url).post('/auth/accept').send({ uid: address, token }).expect(200);
  return res.body as Tokens;
}

/** Status and body together, so that a failure shows both. */
const answer = (res: request.Response) => [res.status, res.body];

/** The shape of every JSON error of the example: `{ error }`, JSON, never cached. */
function expectError(res: request.Response, status: number, error: string): void {
  expect(answer(res)).toEqual([status, { error }]);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.headers['cache-control']).toBe('no-store');
}

describe('API example: the web client', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await serveApi();
  });

  it('serves the page, its module and the stylesheet, from this site only, under a strict CSP', async () => {
    const page = await request(h.url).get('/').expect(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.text).toContain('<script type="module" src="/app.js"></script>');
    expect(page.text).not.toMatch(/(src|href)="(https?:)?\/\//);
    const csp = page.headers['content-security-policy'];
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe');
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    expect(page.headers['cache-control']).toBe('no-store');

    const script = await request(h.url).get('/app.js').expect(200);
    expect(script.headers['content-type']).toMatch(/^(text|application)\/javascript/);
    expect(script.text).not.toMatch(/localStorage\.|innerHTML|https?:\/\//);
    expect(script.text).toContain('sessionStorage');
    expect((await request(h.url).get('/assets/style.css').expect(200)).headers['content-type']).toMatch(
      /^text\/css/,
    );
  });

  it('answers 404 not_found as JSON for anything else', async () => {
    expectError(await request(h.url).get('/nothing'), 404, 'not_found');
    expectError(await request(h.url).get('/api/nothing'), 404, 'not_found');
    expectError(await request(h.url).get('/auth/refresh'), 404, 'not_found');
  });
});

describe('API example: POST /auth/request', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await serveApi();
  });

  it('answers 202 {} and sends a 6-digit code to the normalised address, whose uid it is', async () => {
    const res = await request(h.url).post('/auth/request').send({ user: '  Ada@Example.COM ' });
    expect(answer(res)).toEqual([202, {}]);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['set-cookie']).toBeUndefined();
    const message = await newestMessage(h.url);
    expect(message).toMatchObject({ to: 'ada@example.com', uid: 'ada@example.com' });
    expect(message.code).toMatch(/^\d{6}$/);
    // The link a universal link would carry: to the web client, which fills the code in.
    expect(message.link).toBe(`${h.url}/?token=${message.code}&uid=ada%40example.com`);
  });

  it('refuses what is not one address as JSON, and sends nothing', async () => {
    const before = h.running.example.outbox.messages.length;
    const post = () => request(h.url).post('/auth/request');
    for (const body of [
      {},
      { user: ['a@example.com', 'b@example.com'] },
      { user: { $ne: null } },
      { user: 42 },
    ]) {
      expectError(await post().send(body), 400, 'invalid_request');
    }
    for (const user of ['', 'not-an-address', 'a@b', '<script>@example.com']) {
      const res = await post().send({ user });
      expectError(res, 401, 'unknown_user');
      expect(res.headers['www-authenticate']).toBe('Provide a valid user');
    }
    expectError(
      await post().set('content-type', 'application/json').send('{"user":'),
      400,
      'invalid_request',
    );
    expectError(await post().send({ user: `${'a'.repeat(11_000)}@example.com` }), 413, 'invalid_request');
    expectError(await post().type('form').send({ user: 'ada@example.com' }), 415, 'invalid_request');
    expectError(
      await post().set('content-type', 'text/plain').send('ada@example.com'),
      415,
      'invalid_request',
    );
    expectError(await post(), 400, 'invalid_request'); // no body at all
    expect(h.running.example.outbox.messages.length).toBe(before);
  });
});

describe('API example: POST /auth/accept', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await serveApi();
  });

  it('answers the token pair, never cached and without a cookie; the JWT verifies on its own', async () => {
    const token = await askCode(h, 'ada@example.com');
    const res = await request(h.url).post('/auth/accept').send({ uid: 'ada@example.com', token }).expect(200);
    expect(Object.keys(res.body).sort()).toEqual([
      'accessToken',
      'expiresIn',
      'refreshToken',
      'tokenType',
      'uid',
    ]);
    expect(res.body).toMatchObject({ uid: 'ada@example.com', tokenType: 'Bearer', expiresIn: 900 });
    expect(res.body.refreshToken).toMatch(/^[\w-]{22}\.[\w-]{22}$/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['set-cookie']).toBeUndefined();
    const { payload, protectedHeader } = await jwtVerify(res.body.accessToken, JWT_KEY, {
      algorithms: ['HS256'],
    });
    expect(protectedHeader).toEqual({ alg: 'HS256', typ: 'at+jwt' });
    expect(payload.sub).toBe('ada@example.com');
    expect(payload.exp! - payload.iat!).toBe(900);
  });

  it('takes the uid as the user typed it: the server normalises it like the address', async () => {
    const token = await askCode(h, 'Grace@Example.com');
    const res = await request(h.url).post('/auth/accept').send({ uid: ' GRACE@example.com', token });
    expect(res.status).toBe(200);
    expect(res.body.uid).toBe('grace@example.com');
  });

  it('refuses a wrong, used or foreign code (401 invalid_token) and malformed input (400)', async () => {
    const token = await askCode(h, 'bob@example.com');
    const accept = (body: object | string) => request(h.url).post('/auth/accept').send(body);
    const wrong = token === '000000' ? '000001' : '000000';
    expectError(await accept({ uid: 'bob@example.com', token: wrong }), 401, 'invalid_token');
    expectError(await accept({ uid: 'carol@example.com', token }), 401, 'invalid_token');
    for (const body of [
      {},
      { uid: 'bob@example.com' },
      { token },
      { uid: 'bob@example.com', token: [token] },
      { uid: { $ne: null }, token },
      { uid: 'bob@example.com', token: '' },
    ]) {
      expectError(await accept(body), 400, 'invalid_request');
    }
    // A code never travels in a URL: a query string is refused before it is checked, so the code still works.
    const viaQuery = await request(h.url)
      .post(`/auth/accept?uid=bob%40example.com&token=${token}`)
      .send({ uid: 'bob@example.com', token });
    expectError(viaQuery, 400, 'invalid_request');
    expectError(
      await request(h.url).post('/auth/accept').type('form').send({ uid: 'bob@example.com', token }),
      415,
      'invalid_request',
    );
    expect((await accept({ uid: 'bob@example.com', token })).status).toBe(200);
    expectError(await accept({ uid: 'bob@example.com', token }), 401, 'invalid_token'); // used
  });
});

describe('API example: GET /api/me', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await serveApi();
  });

  it('answers the uid for a valid bearer token', async () => {
    const { accessToken } = await login(h);
    const res = await request(h.url).get('/api/me').set(bearer(accessToken)).expect(200);
    expect(res.body).toEqual({ uid: 'ada@example.com' });
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('without a token: restricted() answers 401 with WWW-Authenticate, as JSON to a JSON client', async () => {
    const res = await request(h.url).get('/api/me').set('Accept', 'application/json');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Provide a token');
    expect(res.body).toEqual({ error: 'unauthorized' });
    const plain = await request(h.url).get('/api/me');
    expect([plain.status, plain.text]).toEqual([401, 'Unauthorized']);
  });

  it('a bad bearer token: 401 invalid_token with WWW-Authenticate: Bearer error="invalid_token"', async () => {
    const { accessToken } = await login(h);
    const claims = decodeJwt(accessToken);
    const otherKey = new TextEncoder().encode('not the key of this api, 32 bytes or more');
    const forged = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
      .sign(otherKey);
    const past = Math.floor(Date.now() / 1000) - 3600;
    const expired = await new SignJWT({ ...claims, iat: past - 900, exp: past })
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
      .sign(JWT_KEY);
    const [header, payload] = accessToken.split('.');
    const unsigned = `${header}.${payload}.`;
    for (const token of [forged, expired, unsigned, `${accessToken}x`, 'garbage', 'a.b.c']) {
      const res = await request(h.url).get('/api/me').set(bearer(token));
      expectError(res, 401, 'invalid_token');
      expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    }
    // The refresh token is no access token.
    const { refreshToken } = await login(h);
    expectError(await request(h.url).get('/api/me').set(bearer(refreshToken)), 401, 'invalid_token');
  });

  it('an access token expires after 15 minutes; a refresh brings a working one', async () => {
    const first = await login(h);
    await request(h.url).get('/api/me').set(bearer(first.accessToken)).expect(200);
    // Only Date is faked (and keeps running): 16 minutes later, for jose and the store alike.
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    try {
      vi.setSystemTime(Date.now() + 16 * 60_000);
      expectError(await request(h.url).get('/api/me').set(bearer(first.accessToken)), 401, 'invalid_token');
      const next = await request(h.url).post('/auth/refresh').send({ refreshToken: first.refreshToken });
      expect(next.status).toBe(200);
      await request(h.url).get('/api/me').set(bearer(next.body.accessToken)).expect(200);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('API example: POST /auth/refresh', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await serveApi();
  });

  it('rotates: a new pair for the same uid, never cached; the new access token works', async () => {
    const first = await login(h);
    const res = await request(h.url).post('/auth/refresh').send({ refreshToken: first.refreshToken });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual([
      'accessToken',
      'expiresIn',
      'refreshToken',
      'tokenType',
      'uid',
    ]);
    expect(res.body).toMatchObject({ uid: 'ada@example.com', tokenType: 'Bearer', expiresIn: 900 });
    expect(res.body.refreshToken).not.toBe(first.refreshToken);
    expect(res.body.accessToken).not.toBe(first.accessToken);
    expect(res.headers['cache-control']).toBe('no-store');
    await request(h.url).get('/api/me').set(bearer(res.body.accessToken)).expect(200);
    // The next rotation takes the new refresh token.
    await request(h.url).post('/auth/refresh').send({ refreshToken: res.body.refreshToken }).expect(200);
  });

  it('refuses a missing or malformed token (400) and an unknown one (401 invalid_grant)', async () => {
    const refresh = () => request(h.url).post('/auth/refresh');
    for (const body of [{}, { refreshToken: '' }, { refreshToken: ['x'] }, { refreshToken: { $ne: null } }]) {
      expectError(await refresh().send(body), 400, 'invalid_request');
    }
    expectError(await refresh(), 400, 'invalid_request'); // no body at all
    expectError(await refresh().send({ refreshToken: 'abc' }), 401, 'invalid_grant');
    const made = `${randomBytes(16).toString('base64url')}.${randomBytes(16).toString('base64url')}`;
    expectError(await refresh().send({ refreshToken: made }), 401, 'invalid_grant');
    // From the body only: a refresh token in the query string is not read.
    const { refreshToken } = await login(h);
    expectError(await refresh().query({ refreshToken }).send({}), 400, 'invalid_request');
    expectError(await refresh().type('form').send({ refreshToken }), 415, 'invalid_request');
    await refresh().send({ refreshToken }).expect(200);
  });

  it('a replayed (already rotated) refresh token is refused and revokes that whole login, not the others', async () => {
    const mine = await login(h);
    const other = await login(h);
    const rotated = await request(h.url).post('/auth/refresh').send({ refreshToken: mine.refreshToken });
    expect(rotated.status).toBe(200);
    await request(h.url).get('/api/me').set(bearer(rotated.body.accessToken)).expect(200);

    // A thief replays the old copy: refused...
    expectError(
      await request(h.url).post('/auth/refresh').send({ refreshToken: mine.refreshToken }),
      401,
      'invalid_grant',
    );
    // ...and the login is gone: the owner's current refresh token and access token stop working at once.
    expectError(
      await request(h.url).post('/auth/refresh').send({ refreshToken: rotated.body.refreshToken }),
      401,
      'invalid_grant',
    );
    expectError(
      await request(h.url).get('/api/me').set(bearer(rotated.body.accessToken)),
      401,
      'invalid_token',
    );
    expectError(await request(h.url).get('/api/me').set(bearer(mine.accessToken)), 401, 'invalid_token');
    // Another login of the same user is untouched.
    await request(h.url).get('/api/me').set(bearer(other.accessToken)).expect(200);
    await request(h.url).post('/auth/refresh').send({ refreshToken: other.refreshToken }).expect(200);
  });

  it('of concurrent refreshes with one token at most one gets a pair', async () => {
    const { refreshToken } = await login(h);
    const results = await Promise.all(
      Array.from({ length: 10 }, () => request(h.url).post('/auth/refresh').send({ refreshToken })),
    );
    expect(results.filter((r) => r.status === 200).length).toBeLessThanOrEqual(1);
    for (const r of results.filter((r) => r.status !== 200)) expectError(r, 401, 'invalid_grant');
  });
});

describe('API example: POST /auth/logout and /auth/logout-everywhere', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await serveApi();
  });

  const refused = async (tokens: Tokens) => {
    expectError(await request(h.url).get('/api/me').set(bearer(tokens.accessToken)), 401, 'invalid_token');
    expectError(
      await request(h.url).post('/auth/refresh').send({ refreshToken: tokens.refreshToken }),
      401,
      'invalid_grant',
    );
  };
  const works = async (tokens: Tokens) => {
    await request(h.url).get('/api/me').set(bearer(tokens.accessToken)).expect(200);
  };

  it('with the bearer token: 204, and that login is refused from then on; another one stays', async () => {
    const mine = await login(h);
    const other = await login(h);
    const res = await request(h.url).post('/auth/logout').set(bearer(mine.accessToken)).send({});
    expect(res.status).toBe(204);
    expect(res.text).toBe('');
    await refused(mine);
    await works(other);
  });

  it('with the refresh token alone (no Authorization header): 204, that login revoked', async () => {
    const mine = await login(h);
    await request(h.url).post('/auth/logout').send({ refreshToken: mine.refreshToken }).expect(204);
    await refused(mine);
  });

  it('with nothing: 204 and nothing revoked; with a bad bearer token: 401 invalid_token', async () => {
    const mine = await login(h);
    await request(h.url).post('/auth/logout').send({}).expect(204);
    await request(h.url).post('/auth/logout').expect(204);
    await works(mine);
    const res = await request(h.url).post('/auth/logout').set(bearer('garbage')).send({});
    expectError(res, 401, 'invalid_token');
  });

  it('everywhere: every login of the user is revoked, other users stay; it needs a bearer token', async () => {
    const a1 = await login(h);
    const a2 = await login(h);
    const b = await login(h, 'bob@example.com');
    const none = await request(h.url).post('/auth/logout-everywhere').send({ refreshToken: a2.refreshToken });
    expect(none.status).toBe(401);
    await works(a2);
    await request(h.url).post('/auth/logout-everywhere').set(bearer(a1.accessToken)).send({}).expect(204);
    await refused(a1);
    await refused(a2);
    await works(b);
    // A revoked login's access token cannot log everybody out again.
    expectError(
      await request(h.url).post('/auth/logout-everywhere').set(bearer(a1.accessToken)).send({}),
      401,
      'invalid_token',
    );
  });
});

describe('API example: abuse limits answer 429 too_many_requests with Retry-After', () => {
  const expectTooMany = (res: request.Response) => {
    expectError(res, 429, 'too_many_requests');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
  };

  it('code requests per address, then per IP', async () => {
    const h = await serveApi({ limits: { ...NO_LIMITS, requestsPerAddress: 2, requestsPerIp: 4 } });
    const ask = (user: string) => request(h.url).post('/auth/request').send({ user });
    await ask('ada@example.com').expect(202);
    await ask(' ADA@example.com').expect(202);
    expectTooMany(await ask('Ada@Example.com'));
    await ask('bob@example.com').expect(202);
    expectTooMany(await ask('carol@example.com'));
  });

  it('code submissions per IP', async () => {
    const h = await serveApi({ limits: { ...NO_LIMITS, acceptsPerIp: 2 } });
    const token = await askCode(h, 'ada@example.com');
    const wrong = token === '000000' ? '000001' : '000000';
    const accept = (t: string) =>
      request(h.url).post('/auth/accept').send({ uid: 'ada@example.com', token: t });
    expectError(await accept(wrong), 401, 'invalid_token');
    expectError(await accept(wrong), 401, 'invalid_token');
    expectTooMany(await accept(token));
  });

  it('too many wrong codes for one user: no new code until the window passes (the failure budget)', async () => {
    const h = await serveApi({ limits: { ...NO_LIMITS, failuresPerUser: 3 } });
    const token = await askCode(h, 'ada@example.com');
    const wrong = token === '000000' ? '000001' : '000000';
    for (let i = 0; i < 3; i++) {
      const res = await request(h.url).post('/auth/accept').send({ uid: 'ada@example.com', token: wrong });
      expectError(res, 401, 'invalid_token');
    }
    expectTooMany(await request(h.url).post('/auth/request').send({ user: 'ada@example.com' }));
    await request(h.url).post('/auth/request').send({ user: 'bob@example.com' }).expect(202);
  });
});

describe('API example: a store that fails answers 503 temporarily_unavailable, and is reported', () => {
  function failingStore(): TokenStore {
    const fail = () => Promise.reject(new Error('connection refused'));
    return Object.assign(new MemoryStore(), {
      storeOrUpdate: fail,
      consume: fail,
      invalidateUser: fail,
      createFamily: fail,
      rotateFamily: fail,
      hasFamily: fail,
      revokeFamily: fail,
      revokeFamilies: fail,
    }) as TokenStore;
  }

  it('on every route', async () => {
    const good = await serveApi();
    const tokens = await login(good);
    const h = await serveApi({}, failingStore());
    const calls = [
      request(h.url).post('/auth/request').send({ user: 'ada@example.com' }),
      request(h.url).post('/auth/accept').send({ uid: 'ada@example.com', token: '123456' }),
      request(h.url).post('/auth/refresh').send({ refreshToken: tokens.refreshToken }),
      request(h.url).get('/api/me').set(bearer(tokens.accessToken)),
      request(h.url).post('/auth/logout').set(bearer(tokens.accessToken)).send({}),
      request(h.url).post('/auth/logout').send({ refreshToken: tokens.refreshToken }),
      request(h.url).post('/auth/logout-everywhere').set(bearer(tokens.accessToken)).send({}),
    ];
    for (const res of await Promise.all(calls)) expectError(res, 503, 'temporarily_unavailable');
    expect(h.errors).toHaveLength(calls.length);
    for (const { err } of h.errors) {
      expect(err).toBeInstanceOf(PasswordlessError);
      expect((err as PasswordlessError).code).toBe('STORE_ERROR');
    }
  });
});

describe('API example: a store without refresh-token families', () => {
  it('is refused when the app is made (INVALID_STORE)', async () => {
    const memory = new MemoryStore();
    stores.push(memory);
    // The session methods only, as a store written before API mode has them.
    const plain: TokenStore = {
      storeOrUpdate: memory.storeOrUpdate.bind(memory),
      consume: memory.consume.bind(memory),
      invalidateUser: memory.invalidateUser.bind(memory),
      clear: memory.clear.bind(memory),
      length: memory.length.bind(memory),
      close: memory.close.bind(memory),
    };
    const make = () => createApiApp({ appUrl: 'http://localhost:3000', store: plain, log: () => {} });
    expect(make).toThrow(PasswordlessError);
    expect(make).toThrow(/createFamily\(\)/);
    try {
      make();
    } catch (err) {
      expect((err as PasswordlessError).code).toBe('INVALID_STORE');
    }
  });
});

// Neither run may pick a database up from the developer's environment unless it says so.
const NO_STORE = { REDIS_URL: undefined, MONGODB_URL: undefined, DATABASE_URL: undefined };

/** What the README's curl walkthrough does, against a running `npm run example:api`. */
async function walkthrough(base: string, script: Script, email: string): Promise<void> {
  await request(base).post('/auth/request').send({ user: email }).expect(202);
  const { code } = await newestMessage(base);
  await script.waitFor(`Login code for ${email}: ${code}`, 5000);
  const login = await request(base).post('/auth/accept').send({ uid: email, token: code }).expect(200);
  const me = await request(base).get('/api/me').set(bearer(login.body.accessToken)).expect(200);
  expect(me.body).toEqual({ uid: email });
  const pair = await request(base).post('/auth/refresh').send({ refreshToken: login.body.refreshToken });
  expect(pair.status).toBe(200);
  await request(base).get('/api/me').set(bearer(pair.body.accessToken)).expect(200);
  // The spent refresh token, replayed: refused, and the login revoked.
  expectError(
    await request(base).post('/auth/refresh').send({ refreshToken: login.body.refreshToken }),
    401,
    'invalid_grant',
  );
  expectError(
    await request(base).post('/auth/refresh').send({ refreshToken: pair.body.refreshToken }),
    401,
    'invalid_grant',
  );
  expectError(await request(base).get('/api/me').set(bearer(pair.body.accessToken)), 401, 'invalid_token');
  // Log in again, and out.
  await request(base).post('/auth/request').send({ user: email }).expect(202);
  const again = await request(base)
    .post('/auth/accept')
    .send({ uid: email, token: (await newestMessage(base)).code })
    .expect(200);
  await request(base).post('/auth/logout').set(bearer(again.body.accessToken)).send({}).expect(204);
  expectError(await request(base).get('/api/me').set(bearer(again.body.accessToken)), 401, 'invalid_token');
  expectError(
    await request(base).post('/auth/refresh').send({ refreshToken: again.body.refreshToken }),
    401,
    'invalid_grant',
  );
}

describe('npm run example:api', () => {
  let script: Script;
  let base: string;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://localhost:${port}`;
    script = npmRun('example:api', {
      ...NO_STORE,
      PORT: String(port),
      APP_URL: undefined,
      JWT_SECRET: undefined,
      PASSWORDLESS_SECRET: undefined,
      NODE_ENV: 'development',
    });
    await script.waitFor(`open ${base} in your browser`);
  }, 30_000);

  afterAll(() => script?.stop());

  it('prints the store, the URL and the code; the curl walkthrough of its README works', async () => {
    expect(script.output()).toContain('token store: MemoryStore');
    expect(script.output()).toContain('JWT_SECRET is not set');
    expect((await fetch(`${base}/`)).status).toBe(200);
    await walkthrough(base, script, 'newcomer@example.com');
  });
});

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const describeRedis = await describeWithServer('Redis', async () => {
  const store = await openStore({ env: { REDIS_URL } });
  await store.close();
});

describeRedis('npm run example:api with REDIS_URL', () => {
  let script: Script | undefined;
  afterEach(() => script?.stop());

  it('runs on RedisStore when it keeps refresh tokens; otherwise says clearly why not, and which variable chose it', async () => {
    const { RedisStore } = await import('express-passwordless/stores/redis');
    const port = await freePort();
    script = npmRun('example:api', { ...NO_STORE, REDIS_URL, PORT: String(port), NODE_ENV: 'development' });
    if (typeof (RedisStore.prototype as Partial<TokenStore>).createFamily === 'function') {
      const base = `http://localhost:${port}`;
      await script.waitFor(`open ${base} in your browser`);
      expect(script.output()).toContain('token store: RedisStore');
      await walkthrough(base, script, `redis-${randomBytes(4).toString('hex')}@example.com`);
      return;
    }
    await script.waitFor('The store was chosen by REDIS_URL');
    expect(script.output()).toContain(
      'The API example cannot start: this token store cannot keep refresh tokens.',
    );
    expect(script.output()).toContain('createFamily()');
    expect(script.output()).not.toContain('open http');
  }, 30_000);
});
