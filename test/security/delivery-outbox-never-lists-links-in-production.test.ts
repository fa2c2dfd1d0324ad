// SECURITY 36: the dev outbox never lists live sign-in links in production — whatever the case or spacing of NODE_ENV,
// and also when the outbox was created before NODE_ENV was set; its page answers only loopback or baseUrl's host.
import express from 'express';
import { type DeliveryContext, PasswordlessError } from 'express-passwordless';
import request from 'supertest';
import { afterEach, expect, it, vi } from 'vitest';
import { devOutbox } from '../../src/delivery/outbox.js';

const BASE = 'http://localhost:3000/login';
const ctx: DeliveryContext = {
  token: 'LiveTokenLiveTokenLive',
  uid: 'u1',
  recipient: 'alice@example.com',
  delivery: undefined,
  req: {} as DeliveryContext['req'],
  expiresAt: new Date(Date.now() + 15 * 60_000),
  kind: 'link',
};

afterEach(() => {
  vi.unstubAllEnvs();
});

it.each(['production', 'PRODUCTION', 'Production', 'production ', ' production'])(
  'devOutbox() refuses NODE_ENV=%j',
  (value) => {
    vi.stubEnv('NODE_ENV', value);
    expect(() => devOutbox({ baseUrl: BASE })).toThrow(PasswordlessError);
  },
);

it('an outbox made before NODE_ENV became production records and serves nothing', async () => {
  vi.stubEnv('NODE_ENV', 'development');
  const outbox = devOutbox({ baseUrl: BASE });
  const app = express();
  app.use('/outbox', outbox.router());
  app.use((_err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).send('error');
  });
  await outbox.send(ctx);
  vi.stubEnv('NODE_ENV', 'Production');
  expect(() => outbox.send(ctx)).toThrow(expect.objectContaining({ code: 'BAD_OPTIONS' }));
  expect(() => outbox.router()).toThrow(expect.objectContaining({ code: 'BAD_OPTIONS' }));
  for (const path of ['/outbox', '/outbox/messages.json']) {
    const res = await request(app).get(path);
    expect(res.status).toBe(500);
    expect(res.text).not.toContain('LiveToken');
  }
});

it('a page rebound to 127.0.0.1 under another host name reads no link', async () => {
  const outbox = devOutbox({ baseUrl: BASE });
  await outbox.send(ctx);
  const app = express();
  app.use('/outbox', outbox.router());
  for (const path of ['/outbox', '/outbox/messages.json']) {
    const res = await request(app).get(path).set('Host', 'rebind.attacker.example');
    expect(res.status).toBe(403);
    expect(res.text).not.toContain('LiveToken');
  }
});
