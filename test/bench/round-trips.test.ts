// One store round trip to request a token and one to accept it (issue 9), counted with counting clients: every command
// an ioredis client sends, every query a pg pool runs, every call the core makes on a MemoryStore, during a full login
// over HTTP through the real middleware, as bench/ measures it. The assertions are about counts only, never about the
// text of a command or a statement (the stores may reword them freely). No MONITOR, no server-side statistics: other
// suites share these servers.

import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { MemoryStore, Passwordless, type TokenStore } from 'express-passwordless';
import session from 'express-session';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PgQueryable, PostgresStore } from '../../stores/postgres/index.js';
import { RedisStore } from '../../stores/redis/index.js';
import { describeWithServer } from '../helpers/server.js';

const RUN = `rt${process.pid}${randomBytes(3).toString('hex')}`;
const REDIS = { host: '127.0.0.1', port: 6379 };
const PG = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };

/** What the counting clients saw, reset before each phase. */
interface Counter {
  calls: string[];
}

/**
 * The app's ioredis client behind a Proxy that records every command it sends. ioredis sends each command, whether
 * called as `client.evalsha(…)` or issued internally, through `this.sendCommand(command)`; with the Proxy as `this`
 * that lookup comes through the `get` trap. Without pipelines or MULTI (the store uses neither), one command is one
 * round trip.
 */
function countingRedis(client: Redis, counter: Counter): Redis {
  return new Proxy(client, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (prop !== 'sendCommand' || typeof value !== 'function') return value;
      return function sendCommand(this: unknown, command: { name: string }, ...rest: unknown[]) {
        counter.calls.push(command.name);
        return (value as (...args: unknown[]) => unknown).call(this, command, ...rest);
      };
    },
  });
}

/** The start of a query's text, for failure messages only: `query(text, values)` or `query({ name, text, values })`. */
function describeQuery(first: unknown): string {
  const text =
    typeof first === 'string' ? first : String((first as { text?: unknown; name?: unknown })?.text ?? first);
  return text.replace(/\s+/g, ' ').slice(0, 60);
}

/**
 * A pg pool wrapper that records every query, whatever its form (text and values, or a query config with a statement
 * name). One query is one round trip: pg sends the extended protocol's messages in one flush and waits for the answer.
 */
function countingPool(pool: pg.Pool, counter: Counter): PgQueryable {
  const counting = {
    query(...args: unknown[]) {
      counter.calls.push(describeQuery(args[0]));
      return (pool.query as (...a: unknown[]) => unknown).apply(pool, args);
    },
  };
  return counting as unknown as PgQueryable;
}

/** A MemoryStore whose every method call the core makes is recorded (it has no client: its calls are its trips). */
function countingStore(store: TokenStore, counter: Counter): TokenStore {
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        counter.calls.push(String(prop));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

interface LoginApp {
  server: http.Server;
  base: string;
  lastToken: () => string;
}

async function loginApp(store: TokenStore): Promise<LoginApp> {
  const passwordless = new Passwordless();
  passwordless.init(store);
  let token = '';
  passwordless.addDelivery((ctx) => {
    token = ctx.token;
  });
  const app = express();
  app.use(session({ secret: 'round trips', resave: false, saveUninitialized: false }));
  app.use(passwordless.sessionSupport());
  app.use(passwordless.acceptToken({ successRedirect: '/account' }));
  app.post(
    '/login',
    express.urlencoded({ extended: false }),
    passwordless.requestToken((user) => user),
    (_req, res) => {
      res.send('sent');
    },
  );
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    lastToken: () => token,
  };
}

async function requestToken(app: LoginApp, uid: string): Promise<void> {
  const res = await fetch(`${app.base}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `user=${encodeURIComponent(uid)}`,
  });
  expect(res.status).toBe(200);
}

async function acceptToken(app: LoginApp, uid: string): Promise<void> {
  const res = await fetch(
    `${app.base}/?token=${encodeURIComponent(app.lastToken())}&uid=${encodeURIComponent(uid)}`,
    { redirect: 'manual' },
  );
  expect(res.status).toBe(302);
  expect(res.headers.get('location')).toBe('/account');
  expect(res.headers.get('set-cookie')).toMatch(/^connect\.sid=/);
}

/** Counts the store calls of one login: the request phase and the accept phase separately. */
async function countLogin(app: LoginApp, counter: Counter, uid: string): Promise<[string[], string[]]> {
  counter.calls = [];
  await requestToken(app, uid);
  const requested = counter.calls;
  counter.calls = [];
  await acceptToken(app, uid);
  const accepted = counter.calls;
  counter.calls = [];
  return [requested, accepted];
}

async function close(server: http.Server | undefined): Promise<void> {
  if (!server?.listening) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

describe('MemoryStore: store calls of one login', () => {
  const counter: Counter = { calls: [] };
  const store = new MemoryStore();
  let app: LoginApp;

  beforeAll(async () => {
    app = await loginApp(countingStore(store, counter));
  });

  afterAll(async () => {
    await close(app?.server);
    await store.close();
  });

  it('requestToken makes one store call and acceptToken one', async () => {
    for (const uid of ['ada@example.com', 'grace@example.com']) {
      const [requested, accepted] = await countLogin(app, counter, uid);
      expect(requested, `requestToken called ${requested.join(', ')}`).toHaveLength(1);
      expect(accepted, `acceptToken called ${accepted.join(', ')}`).toHaveLength(1);
    }
  });
});

const describeRedis = await describeWithServer('Redis', async () => {
  const probe = new Redis({
    ...REDIS,
    lazyConnect: true,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  probe.on('error', () => {});
  try {
    await probe.connect();
    return await probe.ping();
  } finally {
    probe.disconnect();
  }
});

describeRedis('RedisStore: store round trips of one login', () => {
  const counter: Counter = { calls: [] };
  let client: Redis;
  let app: LoginApp;

  beforeAll(async () => {
    client = new Redis({ ...REDIS, lazyConnect: true, maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    await client.connect();
    const store = new RedisStore({ client: countingRedis(client, counter), prefix: `${RUN}:` });
    app = await loginApp(store);
  });

  afterAll(async () => {
    await close(app?.server);
    const keys = await client.keys(`${RUN}:*`);
    if (keys.length > 0) await client.del(...keys);
    client.disconnect();
  });

  it('requestToken sends one command and acceptToken one (steady state: the Lua scripts are cached)', async () => {
    // The first call on a server that has not seen a script yet is EVALSHA, NOSCRIPT, then EVAL: warm up first.
    await countLogin(app, counter, 'warmup@example.com');
    for (const uid of ['ada@example.com', 'grace@example.com']) {
      const [requested, accepted] = await countLogin(app, counter, uid);
      expect(requested, `requestToken sent ${requested.join(', ')}`).toHaveLength(1);
      expect(accepted, `acceptToken sent ${accepted.join(', ')}`).toHaveLength(1);
    }
  });

  it('the counting Proxy sees every command, internal ones included', async () => {
    counter.calls = [];
    await countingRedis(client, counter).ping();
    await countingRedis(client, counter).get(`${RUN}:nothing`);
    expect(counter.calls).toEqual(['ping', 'get']);
  });
});

const describePostgres = await describeWithServer('PostgreSQL', async () => {
  const probe = new pg.Client({ ...PG, connectionTimeoutMillis: 2000 });
  probe.on('error', () => {});
  try {
    await probe.connect();
    return await probe.query('SELECT 1');
  } finally {
    await probe.end().catch(() => undefined);
  }
});

describePostgres('PostgresStore: store round trips of one login', () => {
  const counter: Counter = { calls: [] };
  const table = `${RUN}_tokens`;
  let pool: pg.Pool;
  let store: PostgresStore;
  let app: LoginApp;

  beforeAll(async () => {
    pool = new pg.Pool({ ...PG, max: 4 });
    pool.on('error', () => {});
    // The purge timer must not fire during a count: an hour between purges.
    store = new PostgresStore({ pool: countingPool(pool, counter), table, sweepInterval: 3_600_000 });
    app = await loginApp(store);
  });

  afterAll(async () => {
    await close(app?.server);
    await store?.close();
    // The store's table and any it adds beside it (`<table>_families`).
    const tables = await pool?.query<{ name: string }>(
      'SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, $1)',
      [table],
    );
    for (const { name } of tables?.rows ?? []) await pool.query(`DROP TABLE IF EXISTS "${name}"`);
    await pool?.end();
  });

  it('requestToken runs one query and acceptToken one (after the first call created the table)', async () => {
    // The store's first call creates the table (one more query, once per store): warm up first.
    await countLogin(app, counter, 'warmup@example.com');
    for (const uid of ['ada@example.com', 'grace@example.com']) {
      const [requested, accepted] = await countLogin(app, counter, uid);
      expect(requested, `requestToken ran: ${requested.join(' | ')}`).toHaveLength(1);
      expect(accepted, `acceptToken ran: ${accepted.join(' | ')}`).toHaveLength(1);
    }
  });
});
