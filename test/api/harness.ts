// Shared harness of the API-mode tests: a JSON API in the shape of examples/api (request, accept, refresh, logout,
// a protected route, and one behind the per-request revocation check).
import { randomBytes } from 'node:crypto';
import express, { type Express } from 'express';
import {
  type InitOptions,
  type JwtOptions,
  MemoryStore,
  Passwordless,
  type PasswordlessError,
  type TokenStore,
} from 'express-passwordless';
import request from 'supertest';
import { afterEach } from 'vitest';

export const SECRET = 'an HS256 secret of at least 32 bytes!!';
export const KEY = new TextEncoder().encode(SECRET);
export const JSON_ACCEPT = { Accept: 'application/json' };
export const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });

export interface Harness {
  app: Express;
  store: TokenStore;
  sent: { uid: string; token: string }[];
  errors: PasswordlessError[];
  pwd: Passwordless;
}

const stores: TokenStore[] = [];

/** Closes `store` after the current test. */
export function track<S extends TokenStore>(store: S): S {
  stores.push(store);
  return store;
}

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

export function api(
  jwt: JwtOptions = { secret: SECRET },
  init: InitOptions = {},
  store: TokenStore = new MemoryStore(),
): Harness {
  stores.push(store);
  const pwd = new Passwordless();
  const errors: PasswordlessError[] = [];
  pwd.init(store, { jwt, secret: randomBytes(32), onError: (err) => errors.push(err), ...init });
  const sent: { uid: string; token: string }[] = [];
  pwd.addDelivery(
    async (ctx) => {
      sent.push({ uid: ctx.uid, token: ctx.token });
    },
    { numberToken: { max: 1_000_000 } },
  );
  const app = express();
  app.use(express.json());
  app.use(pwd.bearerSupport());
  const users = new Set(['alice@example.com', 'bob@example.com']);
  app.post(
    '/auth/request',
    pwd.requestToken((user) => (users.has(user) ? user : null)),
  );
  app.post('/auth/accept', pwd.acceptToken());
  app.post('/auth/refresh', pwd.refresh());
  app.post('/auth/logout', pwd.logout(), (_req, res) => void res.status(204).end());
  app.post(
    '/auth/logout-everywhere',
    pwd.logout({ everywhere: true }),
    (_req, res) => void res.status(204).end(),
  );
  app.get(
    '/me',
    pwd.restricted(),
    (req, res) => void res.json({ uid: (req as unknown as { user: string }).user }),
  );
  const checked = express.Router();
  checked.use(pwd.bearerSupport({ checkRevocation: true }));
  checked.get(
    '/',
    pwd.restricted(),
    (req, res) => void res.json({ uid: (req as unknown as { user: string }).user }),
  );
  app.use('/checked', checked);
  return { app, store, sent, errors, pwd };
}

export interface Tokens {
  uid: string;
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  tokenType: string;
}

export async function login(h: Harness, uid = 'alice@example.com'): Promise<Tokens> {
  await request(h.app).post('/auth/request').set(JSON_ACCEPT).send({ user: uid }).expect(202);
  const { token } = h.sent.at(-1)!;
  const res = await request(h.app).post('/auth/accept').set(JSON_ACCEPT).send({ uid, token }).expect(200);
  return res.body as Tokens;
}
