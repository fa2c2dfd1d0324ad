import { createHash } from 'node:crypto';
import express from 'express';
import type { DeliveryContext } from 'express-passwordless';
import { PasswordlessError } from 'express-passwordless';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type DevOutboxOptions, devOutbox, type OutboxMessage } from '../../src/delivery/outbox.js';
import { deliveryApp, pathOf } from './app.js';

const BASE = 'http://localhost:3000/login';

function ctx(extra: Partial<DeliveryContext> = {}): DeliveryContext {
  return {
    token: 'Tok3nTok3nTok3nTok3nTo',
    uid: 'u1',
    recipient: 'alice@example.com',
    delivery: undefined,
    req: {} as DeliveryContext['req'],
    expiresAt: new Date(Date.now() + 15 * 60_000),
    kind: 'link',
    ...extra,
  };
}

afterEach(() => {
  vi.unstubAllEnvs();
});

describe('devOutbox() setup', () => {
  it('throws BAD_OPTIONS when NODE_ENV is production', () => {
    vi.stubEnv('NODE_ENV', 'production');
    let caught: unknown;
    try {
      devOutbox({ baseUrl: BASE });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PasswordlessError);
    expect((caught as PasswordlessError).code).toBe('BAD_OPTIONS');
    expect((caught as PasswordlessError).message).toMatch(/NODE_ENV is production/);
  });

  it.each(['PRODUCTION', 'Production', 'production ', ' production', '\tProduction\n'])(
    'throws BAD_OPTIONS when NODE_ENV is %j (trimmed, any case)',
    (value) => {
      vi.stubEnv('NODE_ENV', value);
      expect(() => devOutbox({ baseUrl: BASE })).toThrow(
        expect.objectContaining({
          code: 'BAD_OPTIONS',
          message: expect.stringMatching(/NODE_ENV is production/),
        }),
      );
    },
  );

  it.each(['development', 'test', 'preproduction', 'production-like', ''])(
    'works when NODE_ENV is %j',
    (value) => {
      vi.stubEnv('NODE_ENV', value);
      expect(() => devOutbox({ baseUrl: BASE })).not.toThrow();
    },
  );

  it('checks NODE_ENV when devOutbox() is called, not when the module was loaded', () => {
    expect(() => devOutbox({ baseUrl: BASE })).not.toThrow();
    vi.stubEnv('NODE_ENV', 'production');
    expect(() => devOutbox({ baseUrl: BASE })).toThrow(PasswordlessError);
    vi.unstubAllEnvs();
    expect(() => devOutbox({ baseUrl: BASE })).not.toThrow();
  });

  it.each<[string, unknown]>([
    ['no options', undefined],
    ['no baseUrl', {}],
    ['a relative baseUrl', { baseUrl: '/login' }],
    ['a limit of 0', { baseUrl: BASE, limit: 0 }],
    ['a fractional limit', { baseUrl: BASE, limit: 1.5 }],
    ['an infinite limit', { baseUrl: BASE, limit: Number.POSITIVE_INFINITY }],
    ['a string limit', { baseUrl: BASE, limit: '10' }],
    ['an unknown option', { baseUrl: BASE, max: 10 }],
  ])('throws BAD_OPTIONS for %s', (_what, bad) => {
    expect(() => devOutbox(bad as DevOutboxOptions)).toThrow(
      expect.objectContaining({ code: 'BAD_OPTIONS', message: expect.stringMatching(/^devOutbox\(\): /) }),
    );
  });
});

describe('devOutbox() messages', () => {
  it('records to, delivery, subject, text, link, uid and sentAt for a link', async () => {
    const box = devOutbox({ baseUrl: BASE });
    const before = Date.now();
    await box.send(ctx());
    const [m] = box.messages;
    expect(m).toEqual({
      to: 'alice@example.com',
      delivery: null,
      subject: 'Your sign-in link',
      text: expect.stringContaining(`${BASE}?token=Tok3nTok3nTok3nTok3nTo&uid=u1`),
      link: `${BASE}?token=Tok3nTok3nTok3nTok3nTo&uid=u1`,
      uid: 'u1',
      sentAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    });
    expect(m).not.toHaveProperty('code');
    expect(Date.parse(m!.sentAt)).toBeGreaterThanOrEqual(before);
  });

  it('records the code for a code, and the delivery name', async () => {
    const box = devOutbox({ baseUrl: BASE });
    await box.send(ctx({ kind: 'code', token: '004217', delivery: 'email' }));
    expect(box.messages[0]).toMatchObject({
      code: '004217',
      delivery: 'email',
      subject: 'Your sign-in code',
      link: `${BASE}?token=004217&uid=u1`,
    });
  });

  it('keeps the last `limit` messages, newest first', async () => {
    const box = devOutbox({ baseUrl: BASE, limit: 3 });
    for (let i = 1; i <= 5; i++) await box.send(ctx({ uid: `u${i}` }));
    expect(box.messages.map((m) => m.uid)).toEqual(['u5', 'u4', 'u3']);
  });

  it('keeps 50 by default', async () => {
    const box = devOutbox({ baseUrl: BASE });
    for (let i = 0; i < 60; i++) await box.send(ctx({ uid: `u${i}` }));
    expect(box.messages).toHaveLength(50);
    expect(box.messages[0]!.uid).toBe('u59');
  });

  it('clear() forgets every message', async () => {
    const box = devOutbox({ baseUrl: BASE });
    await box.send(ctx());
    box.clear();
    expect(box.messages).toEqual([]);
  });

  it('hands out a copy that callers cannot use to change what is kept', async () => {
    const box = devOutbox({ baseUrl: BASE });
    await box.send(ctx());
    const list = box.messages;
    list.pop();
    expect(box.messages).toHaveLength(1);
    expect(() => {
      (box.messages[0] as { link?: string }).link = 'https://evil.example/';
    }).toThrow(TypeError);
  });

  it('appends to a query that baseUrl already has, with tokenField and uidField', async () => {
    const box = devOutbox({
      baseUrl: 'https://app.example/auth?next=%2Fhome',
      tokenField: 't',
      uidField: 'u',
    });
    await box.send(ctx({ uid: 'a b&c=d' }));
    expect(box.messages[0]!.link).toBe(
      'https://app.example/auth?next=%2Fhome&t=Tok3nTok3nTok3nTok3nTo&u=a+b%26c%3Dd',
    );
  });
});

describe('devOutbox() router', () => {
  const hostile = {
    uid: '<script>alert(1)</script>',
    recipient: '"><img src=x onerror=alert(1)>',
    delivery: "<b>it's</b>",
  };

  function mounted() {
    const box = devOutbox({ baseUrl: BASE });
    const app = express();
    app.use('/outbox', box.router());
    return { box, app };
  }

  function expectSecureHeaders(res: request.Response): void {
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    const csp = res.headers['content-security-policy'] as string;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:|\*/);
  }

  it('GET /messages.json answers the messages newest first, not cacheable', async () => {
    const { box, app } = mounted();
    await box.send(ctx({ uid: 'first' }));
    await box.send(ctx({ uid: 'second', kind: 'code', token: '123456' }));
    const res = await request(app).get('/outbox/messages.json').expect(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expectSecureHeaders(res);
    const body = res.body as OutboxMessage[];
    expect(body.map((m) => m.uid)).toEqual(['second', 'first']);
    expect(body[0]).toMatchObject({ code: '123456', link: `${BASE}?token=123456&uid=second` });
    expect(Object.keys(body[1]!).sort()).toEqual([
      'delivery',
      'link',
      'sentAt',
      'subject',
      'text',
      'to',
      'uid',
    ]);
  });

  it('GET / lists the messages newest first as a self-contained page with clickable links and codes', async () => {
    const { box, app } = mounted();
    await box.send(ctx({ uid: 'first' }));
    await box.send(ctx({ uid: 'second', kind: 'code', token: '123456' }));
    const res = await request(app).get('/outbox/').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expectSecureHeaders(res);
    const html = res.text;
    expect(html.indexOf('uid second')).toBeLessThan(html.indexOf('uid first'));
    expect(html).toContain(`<a href="${BASE}?token=123456&amp;uid=second" rel="noreferrer">`);
    expect(html).toContain('<p class="code">123456</p>');
    expect(html).not.toMatch(/<script|<img|<link|src=|url\(|@import/i);
    // The only inline style is the one the CSP hash allows.
    const styles = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!);
    expect(styles).toHaveLength(1);
    const hash = createHash('sha256').update(styles[0]!).digest('base64');
    expect(res.headers['content-security-policy']).toContain(`style-src 'sha256-${hash}'`);
    expect(html).not.toMatch(/ style="/);
  });

  it('escapes every value on the page', async () => {
    const { box, app } = mounted();
    await box.send(ctx(hostile));
    const res = await request(app).get('/outbox/').expect(200);
    expect(res.text).not.toContain('<script>alert');
    expect(res.text).not.toContain('<img');
    expect(res.text).not.toContain('<b>it');
    expect(res.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(res.text).toContain('&quot;&gt;&lt;img src=x onerror=alert(1)&gt;');
    expect(res.text).toContain('&lt;b&gt;it&#39;s&lt;/b&gt;');
    // In the link the uid is URL-encoded, then escaped for the attribute.
    expect(res.text).toContain('uid=%3Cscript%3Ealert%281%29%3C%2Fscript%3E');
    const json = (await request(app).get('/outbox/messages.json').expect(200)).body as OutboxMessage[];
    expect(json[0]).toMatchObject({ uid: hostile.uid, to: hostile.recipient, delivery: hostile.delivery });
  });

  it('says so when there is nothing yet', async () => {
    const { app } = mounted();
    expect((await request(app).get('/outbox/').expect(200)).text).toContain('No messages yet.');
    expect((await request(app).get('/outbox/messages.json').expect(200)).body).toEqual([]);
  });
});

describe('devOutbox() made before NODE_ENV became production', () => {
  // e.g. created at module top level, before dotenv.config() set NODE_ENV.
  function madeInDevelopment() {
    vi.stubEnv('NODE_ENV', 'development');
    const box = devOutbox({ baseUrl: BASE });
    const app = express();
    const errors: unknown[] = [];
    app.use('/outbox', box.router());
    app.use((err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      errors.push(err);
      res.status(500).send('error');
    });
    return { box, app, errors };
  }

  it.each(['production', 'Production '])(
    'send() refuses to record a message once NODE_ENV is %j',
    async (value) => {
      const { box } = madeInDevelopment();
      vi.stubEnv('NODE_ENV', value);
      let caught: unknown;
      try {
        await box.send(ctx());
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(PasswordlessError);
      expect(caught).toMatchObject({
        code: 'BAD_OPTIONS',
        message: expect.stringMatching(/^devOutbox\(\): /),
      });
      expect(box.messages).toEqual([]);
    },
  );

  it('a request for a token then ends in DELIVERY_FAILED and leaves no token', async () => {
    vi.stubEnv('NODE_ENV', 'development');
    const box = devOutbox({ baseUrl: BASE });
    const { app, store, errors } = deliveryApp({ send: box.send });
    vi.stubEnv('NODE_ENV', 'PRODUCTION');
    const res = await request(app).post('/sendtoken').type('form').send({ user: 'alice@example.com' });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'DELIVERY_FAILED' });
    expect(((errors[0] as PasswordlessError).cause as PasswordlessError).code).toBe('BAD_OPTIONS');
    expect(await store.length()).toBe(0);
    expect(box.messages).toEqual([]);
  });

  it('its routes pass BAD_OPTIONS to next() instead of listing messages recorded earlier', async () => {
    const { box, app, errors } = madeInDevelopment();
    await box.send(ctx());
    vi.stubEnv('NODE_ENV', 'production');
    for (const path of ['/outbox/', '/outbox/messages.json']) {
      const res = await request(app).get(path).expect(500);
      expect(res.text).not.toContain('Tok3nTok3n');
    }
    expect(errors).toHaveLength(2);
    for (const err of errors) {
      expect(err).toBeInstanceOf(PasswordlessError);
      expect(err).toMatchObject({
        code: 'BAD_OPTIONS',
        message: expect.stringMatching(/NODE_ENV is production/),
      });
    }
  });

  it('router() throws BAD_OPTIONS once NODE_ENV is production', () => {
    const { box } = madeInDevelopment();
    vi.stubEnv('NODE_ENV', ' production');
    expect(() => box.router()).toThrow(expect.objectContaining({ code: 'BAD_OPTIONS' }));
  });
});

describe('devOutbox() router and the Host header', () => {
  async function mountedWithMessage(baseUrl = BASE) {
    const box = devOutbox({ baseUrl });
    await box.send(ctx());
    const app = express();
    app.set('trust proxy', true);
    app.use('/outbox', box.router());
    return app;
  }

  // DNS rebinding: attacker.example re-resolved to 127.0.0.1 reads the page same-origin, but sends its own Host.
  it.each([
    'rebind.attacker.example',
    'attacker.example:3000',
    'localhost.attacker.example',
    '127.0.0.1.nip.io',
  ])('answers 403, without the messages, to Host %j', async (host) => {
    const app = await mountedWithMessage();
    for (const path of ['/outbox/', '/outbox/messages.json']) {
      const res = await request(app).get(path).set('Host', host).expect(403);
      expect(res.text).not.toContain('Tok3nTok3n');
      expect(res.text).toMatch(/^devOutbox\(\): this page answers only requests addressed to localhost/);
      expect(res.headers['cache-control']).toBe('no-store');
    }
  });

  it('ignores X-Forwarded-Host, which a rebinding page can set itself', async () => {
    const app = await mountedWithMessage();
    await request(app)
      .get('/outbox/messages.json')
      .set('Host', 'attacker.example')
      .set('X-Forwarded-Host', 'localhost')
      .expect(403);
  });

  it.each([
    'localhost',
    'localhost:3000',
    'LOCALHOST:3000',
    '127.0.0.1:8080',
    '127.1.2.3',
    '[::1]:3000',
    'app.localhost',
  ])('lists the messages for the loopback Host %j', async (host) => {
    const app = await mountedWithMessage();
    const res = await request(app).get('/outbox/messages.json').set('Host', host).expect(200);
    expect(res.body[0].link).toContain('token=Tok3nTok3nTok3nTok3nTo');
  });

  it("lists the messages for baseUrl's host", async () => {
    const app = await mountedWithMessage('https://dev.app.example/login');
    await request(app).get('/outbox/messages.json').set('Host', 'dev.app.example').expect(200);
    await request(app).get('/outbox/messages.json').set('Host', 'app.example').expect(403);
  });

  it("mounted at '/', leaves the app's other routes alone", async () => {
    const box = devOutbox({ baseUrl: BASE });
    const app = express();
    app.use(box.router());
    app.get('/hello', (_req, res) => {
      res.send('hi');
    });
    const res = await request(app).get('/hello').set('Host', 'www.example.com').expect(200);
    expect(res.text).toBe('hi');
    expect(res.headers['content-security-policy']).toBeUndefined();
  });
});

describe('devOutbox() end to end', () => {
  it('shows a link that logs in, built from baseUrl whatever Host and X-Forwarded-Host say', async () => {
    const box = devOutbox({ baseUrl: 'https://app.example/login' });
    const { app } = deliveryApp({ send: box.send, before: (a) => a.use('/outbox', box.router()) });
    const agent = request.agent(app);
    await agent
      .post('/sendtoken')
      .set('Host', 'evil.example')
      .set('X-Forwarded-Host', 'evil.example')
      .type('form')
      .send({ user: 'alice@example.com' })
      .expect(200);
    const [m] = (await agent.get('/outbox/messages.json').expect(200)).body as OutboxMessage[];
    expect(m!.to).toBe('alice@example.com');
    expect(m!.link!.startsWith('https://app.example/login?token=')).toBe(true);
    expect(JSON.stringify(m)).not.toContain('evil');
    expect((await agent.get(pathOf(m!.link!)).expect(200)).body.user).toBe('alice@example.com');
  });
});
