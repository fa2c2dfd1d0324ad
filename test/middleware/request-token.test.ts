import { createHash } from 'node:crypto';
import express from 'express';
import {
  type DeliveryContext,
  MemoryStore,
  Passwordless,
  PasswordlessError,
  type TokenRecord,
} from 'express-passwordless';
import session from 'express-session';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, knownUser, linkQuery } from '../helpers/create-app.js';

/** A MemoryStore that records every record it is given. */
function recordingStore(): MemoryStore & { records: TokenRecord[] } {
  const store = new MemoryStore() as MemoryStore & { records: TokenRecord[] };
  store.records = [];
  const original = store.storeOrUpdate.bind(store);
  store.storeOrUpdate = async (record) => {
    store.records.push(structuredClone(record));
    return original(record);
  };
  return store;
}

afterEach(() => vi.restoreAllMocks());

describe.each(EXPRESS_MAJORS)('requestToken on Express %i', (major) => {
  it('stores one token, calls send with the context, sets req.passwordless.uidToAuth, and calls next()', async () => {
    const store = recordingStore();
    const { app, outbox } = createApp({ express: major, store });
    const res = await request(app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'ann@example.com' })
      .expect(200);
    expect(res.body).toMatchObject({ sent: true, uidToAuth: 'ann@example.com' });
    expect(outbox.sent).toHaveLength(1);
    const ctx = outbox.last();
    expect(ctx).toMatchObject({
      uid: 'ann@example.com',
      recipient: 'ann@example.com',
      delivery: undefined,
      kind: 'link',
    });
    expect(ctx.expiresAt.getTime() - Date.now()).toBeGreaterThan(15 * 60_000 - 5000);
    expect(ctx.expiresAt.getTime() - Date.now()).toBeLessThanOrEqual(15 * 60_000);
    expect(store.records).toHaveLength(1);
  });

  it('reads JSON bodies too', async () => {
    const { app, outbox } = createApp({ express: major });
    await request(app).post('/sendtoken').send({ user: 'ann@example.com' }).expect(200);
    expect(outbox.sent).toHaveLength(1);
  });

  it('the store receives only SHA-256(token), never the token', async () => {
    const store = recordingStore();
    const { app, outbox } = createApp({ express: major, store });
    await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const { token } = outbox.last();
    const [record] = store.records;
    expect(record?.tokenHash).toBe(createHash('sha256').update(token).digest('hex'));
    expect(JSON.stringify(store.records)).not.toContain(token);
  });

  it('with a secret, the store receives HMAC-SHA256(secret, token), and another secret does not accept it', async () => {
    const store = recordingStore();
    const secret = 'k'.repeat(32);
    const { app, outbox } = createApp({ express: major, store, init: { secret } });
    await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const { token } = outbox.last();
    expect(store.records[0]?.tokenHash).not.toBe(createHash('sha256').update(token).digest('hex'));
    const other = createApp({ express: major, store, init: { secret: 'z'.repeat(32) } });
    expect((await request(other.app).get(`/?${linkQuery(outbox.last())}`)).body.user).toBeNull();
    expect((await request(app).get(`/?${linkQuery(outbox.last())}`)).body.user).toBe('ann@example.com');
  });

  it('a missing user gives 400; nothing stored, nothing sent', async () => {
    const store = recordingStore();
    const { app, outbox } = createApp({ express: major, store });
    await request(app).post('/sendtoken').type('form').send({ other: 'x' }).expect(400);
    expect(outbox.sent).toHaveLength(0);
    expect(store.records).toHaveLength(0);
  });

  it('an empty user gives 401 with WWW-Authenticate: Provide a valid user', async () => {
    const { app, outbox } = createApp({ express: major });
    const res = await request(app).post('/sendtoken').type('form').send({ user: '' }).expect(401);
    expect(res.headers['www-authenticate']).toBe('Provide a valid user');
    expect(outbox.sent).toHaveLength(0);
  });

  it('an unknown user calls getUserId once, then writes and sends nothing and answers 401', async () => {
    const store = recordingStore();
    const getUserId = vi.fn(knownUser);
    const { app, outbox } = createApp({ express: major, store, getUserId });
    const res = await request(app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'eve@evil.test' })
      .expect(401);
    expect(res.headers['www-authenticate']).toBe('Provide a valid user');
    expect(getUserId).toHaveBeenCalledTimes(1);
    expect(getUserId.mock.calls[0]?.slice(0, 2)).toEqual(['eve@evil.test', undefined]);
    expect(store.records).toHaveLength(0);
    expect(outbox.sent).toHaveLength(0);
  });

  it('a GET is ignored (400) unless allowGet, which reads the query', async () => {
    const plain = createApp({ express: major });
    await request(plain.app).get('/sendtoken?user=ann@example.com').expect(400);
    const get = createApp({ express: major, request: { allowGet: true } });
    await request(get.app).get('/sendtoken?user=ann@example.com').expect(200);
    expect(get.outbox.sent).toHaveLength(1);
  });

  it('failureRedirect replaces the 400 and 401 answers, with failureFlash', async () => {
    const { app } = createApp({
      express: major,
      flash: true,
      request: { failureRedirect: '/login', failureFlash: 'Unknown address' },
    });
    const agent = request.agent(app);
    const res = await agent.post('/sendtoken').type('form').send({ user: 'eve@evil.test' }).expect(302);
    expect(res.headers.location).toBe('/login');
    expect((await agent.get('/login')).body.flash).toEqual({ passwordless: ['Unknown address'] });
    await agent.post('/sendtoken').type('form').send({}).expect(302);
    await agent.post('/sendtoken').type('form').send({ user: '' }).expect(302);
  });

  it('successFlash is flashed as passwordless-success', async () => {
    const { app } = createApp({ express: major, flash: true, request: { successFlash: 'Check your inbox' } });
    const res = await request(app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'ann@example.com' })
      .expect(200);
    expect(res.body.flash).toEqual({ 'passwordless-success': ['Check your inbox'] });
  });

  it('a flash option without connect-flash forwards NO_FLASH', async () => {
    const { app, errors } = createApp({ express: major, request: { successFlash: 'x' } });
    await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(500);
    expect((errors[0] as PasswordlessError).code).toBe('NO_FLASH');
  });

  it('a new token replaces the earlier one for that uid', async () => {
    const { app, outbox } = createApp({ express: major });
    await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const first = outbox.last();
    await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const second = outbox.last();
    expect((await request(app).get(`/?${linkQuery(first)}`)).body.user).toBeNull();
    expect((await request(app).get(`/?${linkQuery(second)}`)).body.user).toBe('ann@example.com');
  });

  it('getUserId returning { uid, recipient } sends to that recipient, never to the raw input', async () => {
    const { app, outbox } = createApp({
      express: major,
      getUserId: (user) =>
        user.trim().toLowerCase() === 'ann@example.com' ? { uid: 42, recipient: 'ann@example.com' } : null,
    });
    await request(app)
      .post('/sendtoken')
      .type('form')
      .send({ user: ' ANN@example.com, eve@evil.test' })
      .expect(401);
    await request(app).post('/sendtoken').type('form').send({ user: ' ANN@Example.com ' }).expect(200);
    expect(outbox.last()).toMatchObject({ uid: '42', recipient: 'ann@example.com' });
  });

  it('getUserId is awaited and receives (user, delivery, req)', async () => {
    const getUserId = vi.fn(async (user: string, _delivery?: string, _req?: unknown) => user);
    const { app } = createApp({ express: major, getUserId, namedDeliveries: { email: {}, sms: {} } });
    await request(app).post('/sendtoken').type('form').send({ user: 'u1', delivery: 'sms' }).expect(200);
    expect(getUserId.mock.calls[0]?.[0]).toBe('u1');
    expect(getUserId.mock.calls[0]?.[1]).toBe('sms');
    expect(getUserId.mock.calls[0]?.[2]).toHaveProperty('method', 'POST');
  });

  it('named deliveries: the requested one is used; an unknown one with no default gives 400', async () => {
    const { app, outbox } = createApp({
      express: major,
      namedDeliveries: { email: {}, sms: { numberToken: { max: 1e6 } } },
    });
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    await request(app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'ann@example.com', delivery: 'sms' })
      .expect(200);
    expect(outbox.last()).toMatchObject({ delivery: 'sms', kind: 'code' });
    expect(outbox.last().token).toMatch(/^\d{6}$/);
    await request(app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'ann@example.com', delivery: 'fax' })
      .expect(400);
    await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(400);
    expect(outbox.sent).toHaveLength(1);
  });

  it('an unknown delivery name falls back to the default method (1.x)', async () => {
    const { app, outbox } = createApp({ express: major });
    await request(app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'ann@example.com', delivery: 'fax' })
      .expect(200);
    expect(outbox.last().delivery).toBeUndefined();
  });

  it('codes default to a 10-minute ttl and 5 attempts; links to 15 minutes and no limit', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    const store = recordingStore();
    const { app } = createApp({
      express: major,
      store,
      namedDeliveries: { link: {}, code: { numberToken: { max: 1e6 } } },
    });
    const before = Date.now();
    await request(app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'a@example.com', delivery: 'link' })
      .expect(200);
    await request(app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'b@example.com', delivery: 'code' })
      .expect(200);
    const [link, code] = store.records;
    expect(link?.maxAttempts).toBeUndefined();
    expect(code?.maxAttempts).toBe(5);
    expect(link!.expiresAt.getTime() - before).toBeGreaterThanOrEqual(15 * 60_000);
    expect(link!.expiresAt.getTime() - before).toBeLessThan(15 * 60_000 + 5000);
    expect(code!.expiresAt.getTime() - before).toBeGreaterThanOrEqual(10 * 60_000);
    expect(code!.expiresAt.getTime() - before).toBeLessThan(10 * 60_000 + 5000);
  });

  it('tokenAlgorithm makes the token (and may be async)', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    const { app, outbox } = createApp({
      express: major,
      delivery: { tokenAlgorithm: async () => 'ABCD-1234' },
    });
    await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    expect(outbox.last()).toMatchObject({ token: 'ABCD-1234', kind: 'code' });
  });

  it.each([
    [
      'throws',
      () => {
        throw new Error('rng');
      },
    ],
    ['returns a non-string', () => 42 as unknown as string],
    ['returns an empty string', () => ''],
  ])(
    'a tokenAlgorithm that %s forwards TOKEN_GENERATION_FAILED; nothing stored or sent',
    async (_, algorithm) => {
      vi.spyOn(console, 'warn').mockImplementation(() => {});
      const store = recordingStore();
      const { app, outbox, errors } = createApp({
        express: major,
        store,
        delivery: { tokenAlgorithm: algorithm },
      });
      await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(500);
      expect((errors[0] as PasswordlessError).code).toBe('TOKEN_GENERATION_FAILED');
      expect(store.records).toHaveLength(0);
      expect(outbox.sent).toHaveLength(0);
    },
  );

  it.each([
    ['a uid that is an object', () => ({ id: 1 })],
    ['a uid that is an array', () => ['a']],
    ['a { uid, recipient } without recipient', () => ({ uid: 'a' })],
    ['a { uid, recipient } with an empty recipient', () => ({ uid: 'a', recipient: '' })],
    ['a uid longer than 1024 characters', () => 'u'.repeat(1025)],
    ['NaN', () => Number.NaN],
  ])('getUserId returning %s forwards USER_LOOKUP_FAILED; nothing stored or sent', async (_, result) => {
    const store = recordingStore();
    const { app, outbox, errors } = createApp({ express: major, store, getUserId: result as never });
    await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(500);
    expect((errors[0] as PasswordlessError).code).toBe('USER_LOOKUP_FAILED');
    expect(store.records).toHaveLength(0);
    expect(outbox.sent).toHaveLength(0);
  });

  it('a getUserId that rejects forwards USER_LOOKUP_FAILED with the original as cause', async () => {
    const boom = new Error('db down');
    const { app, errors } = createApp({ express: major, getUserId: async () => Promise.reject(boom) });
    await request(app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(500);
    expect(errors[0]).toBeInstanceOf(PasswordlessError);
    expect((errors[0] as PasswordlessError).code).toBe('USER_LOOKUP_FAILED');
    expect((errors[0] as PasswordlessError).cause).toBe(boom);
  });
});

describe('requestToken setup errors at request time', () => {
  it('forwards NOT_INITIALIZED when init() was never called', async () => {
    const p = new Passwordless();
    p.addDelivery(async () => {});
    const app = express();
    app.use(express.urlencoded({ extended: false }));
    app.post('/sendtoken', p.requestToken(knownUser), (_req, res) => res.send('ok'));
    const errors: unknown[] = [];
    app.use((err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      errors.push(err);
      res.status(500).end();
    });
    await request(app).post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(500);
    expect((errors[0] as PasswordlessError).code).toBe('NOT_INITIALIZED');
  });

  it('forwards NO_DELIVERY when no delivery was added, and NO_BODY without a body parser', async () => {
    const p = new Passwordless();
    p.init(new MemoryStore());
    const app = express();
    app.post('/nobody', p.requestToken(knownUser), (_req, res) => res.send('ok'));
    const errors: PasswordlessError[] = [];
    app.use(
      (err: PasswordlessError, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
        errors.push(err);
        res.status(500).end();
      },
    );
    await request(app).post('/nobody').type('form').send({ user: 'a@example.com' }).expect(500);
    expect(errors[0]?.code).toBe('NO_DELIVERY');
    p.addDelivery(async () => {});
    await request(app).post('/nobody').type('form').send({ user: 'a@example.com' }).expect(500);
    expect(errors[1]?.code).toBe('NO_BODY');
  });

  it('a session is not needed to request a token', async () => {
    const { app, outbox } = createApp({ session: 'none' });
    await request(app).post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(200);
    expect(outbox.sent).toHaveLength(1);
  });
});

describe('origin', () => {
  const makeApp = () => {
    const store = recordingStore();
    const t = createApp({
      store,
      request: { originField: 'origin' },
      accept: { enableOriginRedirect: true, successRedirect: '/home' },
    });
    return { ...t, store };
  };

  it('a same-site origin is stored and followed after login', async () => {
    const { app, store, outbox } = makeApp();
    await request(app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'a@example.com', origin: '/account?tab=2' })
      .expect(200);
    expect(store.records[0]?.origin).toBe('/account?tab=2');
    const res = await request(app)
      .get(`/?${linkQuery(outbox.last())}`)
      .expect(302);
    expect(res.headers.location).toBe('/account?tab=2');
  });

  it.each([
    '//evil.com',
    '/\\evil.com',
    '/%2F%2Fevil.com',
    '/%5Cevil.com',
    '/\t/evil.com',
    'https://evil.com',
    'javascript:alert(1)',
    `/${'x'.repeat(1100)}`,
  ])(
    'the unsafe origin %j is dropped at requestToken and login falls back to successRedirect',
    async (origin) => {
      const { app, store, outbox } = makeApp();
      await request(app).post('/sendtoken').type('form').send({ user: 'a@example.com', origin }).expect(200);
      expect(store.records[0]).not.toHaveProperty('origin');
      const res = await request(app)
        .get(`/?${linkQuery(outbox.last())}`)
        .expect(302);
      expect(res.headers.location).toBe('/home');
    },
  );
});

describe('a send that sees the stored record', () => {
  it('send is called after the token is stored (it can already be used)', async () => {
    let seen = -1;
    const store = new MemoryStore();
    const p = new Passwordless();
    p.init(store);
    p.addDelivery(async (_ctx: DeliveryContext) => {
      seen = await store.length();
    });
    const app = express();
    app.use(session({ secret: 's'.repeat(32), resave: false, saveUninitialized: false }));
    app.use(express.urlencoded({ extended: false }));
    app.post('/sendtoken', p.requestToken(knownUser), (_req, res) => res.send('ok'));
    await request(app).post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(200);
    expect(seen).toBe(1);
  });
});
