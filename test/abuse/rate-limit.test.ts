import { MemoryStore, type TokenRecord } from 'express-passwordless';
import {
  acceptLimiter,
  normaliseRecipient,
  recipientLimiter,
  requestLimiter,
} from 'express-passwordless/rate-limit';
import { Redis } from 'ioredis';
import { RedisStore as RateLimitRedisStore } from 'rate-limit-redis';
import request from 'supertest';
import { afterAll, describe, expect, it } from 'vitest';
import { createApp } from '../helpers/create-app.js';
import { describeWithServer } from '../helpers/server.js';

function spiedStore(): MemoryStore & { stored: TokenRecord[] } {
  const store = new MemoryStore() as MemoryStore & { stored: TokenRecord[] };
  store.stored = [];
  const original = store.storeOrUpdate.bind(store);
  store.storeOrUpdate = async (r) => {
    store.stored.push(r);
    return original(r);
  };
  return store;
}

/** The test app with limiters mounted the way the README shows: before requestToken / acceptToken. */
function limitedApp(
  opts: { trustProxy?: boolean; request?: number; recipient?: number; accept?: number } = {},
) {
  const store = spiedStore();
  const t = createApp({
    store,
    getUserId: (user) => user.trim().toLowerCase(),
    before: (app) => {
      if (opts.trustProxy) app.set('trust proxy', 1); // one proxy hop in front of the app
      app.use(
        '/sendtoken',
        requestLimiter({ limit: opts.request ?? 30 }),
        recipientLimiter({ limit: opts.recipient ?? 5 }),
      );
      app.use(acceptLimiter({ limit: opts.accept ?? 60 }));
    },
  });
  return { ...t, store };
}

describe('requestLimiter', () => {
  it('allows 30 requests per IP per 15 minutes, then 429 with Retry-After; nothing stored or sent', async () => {
    const t = limitedApp({ recipient: 1000 });
    for (let i = 0; i < 30; i++) {
      await request(t.app)
        .post('/sendtoken')
        .type('form')
        .send({ user: `u${i}@example.com` })
        .expect(200);
    }
    const res = await request(t.app)
      .post('/sendtoken')
      .type('form')
      .send({ user: 'x@example.com' })
      .expect(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(t.store.stored).toHaveLength(30);
    expect(t.outbox.sent).toHaveLength(30);
  });

  it('is keyed by req.ip: a forged X-Forwarded-For changes nothing while trust proxy is off', async () => {
    const t = limitedApp({ request: 3, recipient: 1000 });
    for (let i = 0; i < 3; i++) {
      await request(t.app)
        .post('/sendtoken')
        .set('X-Forwarded-For', `10.0.0.${i}`)
        .type('form')
        .send({ user: `u${i}` });
    }
    await request(t.app)
      .post('/sendtoken')
      .set('X-Forwarded-For', '10.9.9.9')
      .type('form')
      .send({ user: 'z' })
      .expect(429);
  });

  it('with trust proxy on, each client IP has its own counter', async () => {
    const t = limitedApp({ request: 2, recipient: 1000, trustProxy: true });
    for (const ip of ['203.0.113.1', '203.0.113.1', '198.51.100.7', '198.51.100.7']) {
      await request(t.app)
        .post('/sendtoken')
        .set('X-Forwarded-For', ip)
        .type('form')
        .send({ user: `${ip}@x` })
        .expect(200);
    }
    await request(t.app)
      .post('/sendtoken')
      .set('X-Forwarded-For', '203.0.113.1')
      .type('form')
      .send({ user: 'q@x' })
      .expect(429);
  });
});

describe('recipientLimiter', () => {
  it('allows 5 requests per recipient from any number of IPs, then 429 for known and unknown users alike', async () => {
    const t = limitedApp({ trustProxy: true });
    for (let i = 0; i < 5; i++) {
      await request(t.app)
        .post('/sendtoken')
        .set('X-Forwarded-For', `192.0.2.${i}`)
        .type('form')
        .send({ user: 'victim@example.com' })
        .expect(200);
    }
    const res = await request(t.app)
      .post('/sendtoken')
      .set('X-Forwarded-For', '192.0.2.99')
      .type('form')
      .send({ user: 'victim@example.com' });
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBeDefined();
    expect(t.outbox.sent).toHaveLength(5);
  });

  it.each([' Victim@Example.com', 'VICTIM@EXAMPLE.COM ', 'ｖｉｃｔｉｍ@example.com'])(
    'the variant %j shares the counter of victim@example.com',
    async (variant) => {
      const t = limitedApp({ trustProxy: true, recipient: 2 });
      await request(t.app)
        .post('/sendtoken')
        .set('X-Forwarded-For', '192.0.2.1')
        .type('form')
        .send({ user: 'victim@example.com' })
        .expect(200);
      await request(t.app)
        .post('/sendtoken')
        .set('X-Forwarded-For', '192.0.2.2')
        .type('form')
        .send({ user: 'victim@example.com' })
        .expect(200);
      await request(t.app)
        .post('/sendtoken')
        .set('X-Forwarded-For', '192.0.2.3')
        .type('form')
        .send({ user: variant })
        .expect(429);
    },
  );

  it('does not count requests without a usable user field (requestToken answers those)', async () => {
    const t = limitedApp({ recipient: 1 });
    for (let i = 0; i < 3; i++)
      await request(t.app).post('/sendtoken').type('form').send('user[]=a').expect(400);
    await request(t.app).post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(200);
  });

  it('normaliseRecipient trims, lower-cases and NFKC-normalises; refuses non-strings and empty values', () => {
    expect(normaliseRecipient(' A@B.C ')).toBe('a@b.c');
    expect(normaliseRecipient('ＡＢ@x')).toBe('ab@x');
    expect(normaliseRecipient(['a'])).toBeUndefined();
    expect(normaliseRecipient('   ')).toBeUndefined();
  });
});

describe('acceptLimiter', () => {
  it('counts only requests that carry a token (not page views, not HEAD), and answers 429 after 60', async () => {
    const t = limitedApp({ accept: 3 });
    for (let i = 0; i < 10; i++) await request(t.app).get('/page').expect(200);
    for (let i = 0; i < 10; i++) await request(t.app).head('/?token=abc&uid=a');
    for (let i = 0; i < 3; i++) await request(t.app).get(`/?token=guess${i}&uid=a%40example.com`).expect(200);
    const res = await request(t.app).get('/?token=guess&uid=a%40example.com').expect(429);
    expect(res.headers['retry-after']).toBeDefined();
    await request(t.app).get('/page').expect(200);
  });

  it('uses the documented defaults: 60 token submissions per IP per 15 minutes', async () => {
    const t = limitedApp();
    for (let i = 0; i < 60; i++) await request(t.app).get(`/?token=g${i}&uid=a`).expect(200);
    await request(t.app).get('/?token=g&uid=a').expect(429);
  });

  it('rejects a bad tokenField at setup', () => {
    expect(() => acceptLimiter({ tokenField: '' })).toThrow(/tokenField/);
  });
});

const redis = new Redis({
  host: '127.0.0.1',
  port: 6379,
  lazyConnect: true,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
});
afterAll(() => redis.disconnect());
const withRedis = await describeWithServer('Redis (shared rate-limit store)', async () => {
  await redis.connect();
  await redis.ping();
});

withRedis('limits shared across instances with rate-limit-redis', () => {
  it('two app instances with one Redis-backed store share the recipient counter', async () => {
    const prefix = `rl-test:${process.pid}:${Date.now()}:`;
    const make = () =>
      createApp({
        getUserId: (u) => u,
        before: (app) =>
          app.use(
            '/sendtoken',
            recipientLimiter({
              limit: 3,
              store: new RateLimitRedisStore({
                prefix,
                sendCommand: (command: string, ...args: string[]) => redis.call(command, ...args) as never,
              }),
            }),
          ),
      });
    const a = make();
    const b = make();
    await request(a.app).post('/sendtoken').type('form').send({ user: 'shared@example.com' }).expect(200);
    await request(b.app).post('/sendtoken').type('form').send({ user: 'shared@example.com' }).expect(200);
    await request(a.app).post('/sendtoken').type('form').send({ user: 'Shared@example.com' }).expect(200);
    await request(b.app).post('/sendtoken').type('form').send({ user: 'shared@example.com' }).expect(429);
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
  });
});
