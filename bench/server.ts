// One benchmarked app, run as a child process of bench/run.ts, which builds it (plain node, no TypeScript loader)
// beside its build of the library from the working tree's sources, as `npm run build` would: the code users run.
//
//   argv[2] variant: 'ours' (express-passwordless), 'v1' (passwordless 1.1.3), 'floor' (bare Express, the unavoidable
//                    work only)
//   argv[3] store:   'memory' | 'redis' | 'postgres' (v1: redis only, through passwordless-redisstore)
//   argv[4] namespace for the Redis keys and PostgreSQL tables of this run (cleaned up on 'close')
//   argv[5] the directory of the library's build (bench/run.ts builds the working tree's sources there with tsup)
//   argv[6] optional: a number of worker processes. This process then becomes a node:cluster primary that forks that
//           many workers running the same app on one shared port (the primary hands out connections round-robin);
//           it answers the parent's 'cpu' with the CPU time of all of them, itself included.
//
// Every app has the same routes, the shape of the README's quick start:
//   POST /login (user=…)        requestToken: store a token for uid = user, "deliver" it, answer 200 with the token
//                               (the delivery captures it in the request: the bench's outbox, so the client can follow)
//   GET  /?token=…&uid=…        acceptToken (installed with app.use, as in the README): 302 to /account + session cookie
//   GET  /account               restricted: 200 'Hello <uid>' on a logged-in session, else 401
// Sessions: express-session with its default MemoryStore, the same for every variant.
//
// IPC with the parent: the child sends { type: 'ready', port }; the parent sends 'cpu' (answered with the CPU time
// used since the previous 'cpu') and 'close' (clean up, answer { type: 'closed' }, exit).

import cluster, { type Worker } from 'node:cluster';
import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
import session from 'express-session';
import { Redis } from 'ioredis';
import pg from 'pg';

export type Variant = 'ours' | 'v1' | 'floor';
export type StoreKind = 'memory' | 'redis' | 'postgres';

const REDIS = { host: '127.0.0.1', port: 6379 };
const PG = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };
const TTL = 15 * 60_000;

const variant = process.argv[2] as Variant;
const storeKind = process.argv[3] as StoreKind;
const namespace = process.argv[4] ?? `bench:${process.pid}`;
const libDir = process.argv[5] ?? '';
const workers = Number(process.argv[6] ?? 0);

type Lib = typeof import('../src/index.js');
type RedisLib = typeof import('../stores/redis/index.js');
type PostgresLib = typeof import('../stores/postgres/index.js');
const lib = <T>(entry: string): Promise<T> => import(pathToFileURL(join(libDir, entry)).href) as Promise<T>;

type Sess = Record<string, unknown> & {
  regenerate(cb: (err?: unknown) => void): void;
  save(cb: (err?: unknown) => void): void;
};
type BenchRequest = Request & { benchToken?: string; session: Sess };

const cleanups: Array<() => Promise<unknown>> = [];

/** The same session middleware for every variant. */
function sessions() {
  return session({
    secret: 'express-passwordless bench secret',
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, sameSite: 'lax' },
  });
}

const urlencoded = express.urlencoded({ extended: false });

/** Answers the login request with the token that the delivery captured (the bench's stand-in for an inbox). */
function sendCapturedToken(req: Request, res: Response): void {
  res.send((req as BenchRequest).benchToken);
}

function hello(req: Request, res: Response): void {
  res.send(`Hello ${String((req as unknown as Record<string, unknown>).user)}`);
}

async function redisClient(): Promise<Redis> {
  const client = new Redis({ ...REDIS, lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', (err: Error) => console.error(`bench server: redis: ${err.message}`));
  await client.connect();
  cleanups.push(async () => {
    // Whatever the run left (tokens requested in the last milliseconds and never accepted).
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${namespace}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await client.unlink(...keys);
    } while (cursor !== '0');
    client.disconnect();
  });
  return client;
}

function pgPool(): pg.Pool {
  const pool = new pg.Pool({ ...PG, max: 10 });
  pool.on('error', (err: Error) => console.error(`bench server: pg: ${err.message}`));
  return pool;
}

/** A table name of this run: lower-case letters, digits and underscores only. */
function tableName(kind: string): string {
  return `bench_${createHash('sha256').update(namespace).digest('hex').slice(0, 12)}_${kind}`;
}

/** Drops `table` and every table whose name starts with it (PostgresStore adds `<table>_families`, for one). */
async function dropTables(pool: pg.Pool, table: string): Promise<void> {
  const { rows } = await pool.query<{ name: string }>(
    'SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, $1)',
    [table],
  );
  for (const { name } of rows) await pool.query(`DROP TABLE IF EXISTS "${name}"`);
}

// ---------------------------------------------------------------------------------------------------------------
// express-passwordless, from the sources
// ---------------------------------------------------------------------------------------------------------------
async function oursApp(): Promise<express.Express> {
  const { MemoryStore, Passwordless } = await lib<Lib>('index.js');
  const pl = new Passwordless();
  if (storeKind === 'memory') {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    pl.init(store);
  } else if (storeKind === 'redis') {
    const { RedisStore } = await lib<RedisLib>('stores/redis.js');
    pl.init(new RedisStore({ client: await redisClient(), prefix: `${namespace}:ours:` }));
  } else {
    const { PostgresStore } = await lib<PostgresLib>('stores/postgres.js');
    const pool = pgPool();
    const table = tableName('ours');
    const store = new PostgresStore({ pool, table });
    cleanups.push(async () => {
      await store.close();
      await dropTables(pool, table);
      await pool.end();
    });
    pl.init(store);
  }
  pl.addDelivery(({ token, req }) => {
    (req as BenchRequest).benchToken = token;
  });
  const app = express();
  app.use(sessions());
  app.use(pl.sessionSupport());
  app.use(pl.acceptToken({ successRedirect: '/account' }));
  app.post(
    '/login',
    urlencoded,
    pl.requestToken((user) => user),
    sendCapturedToken,
  );
  app.get('/account', pl.restricted(), hello);
  return app;
}

// ---------------------------------------------------------------------------------------------------------------
// passwordless 1.1.3 + passwordless-redisstore 1.0.2 (bcrypt, cost 10), the module users migrate from
// ---------------------------------------------------------------------------------------------------------------
async function v1App(): Promise<express.Express> {
  if (storeKind !== 'redis') throw new Error('bench server: passwordless 1.x runs on Redis only');
  const { default: passwordless } = await import('passwordless');
  const { default: V1RedisStore } = await import('passwordless-redisstore');
  const store = new V1RedisStore(REDIS.port, REDIS.host, { redisstore: { tokenkey: `${namespace}:v1:` } });
  await redisClient(); // only to clean up this run's keys at the end (the v1 store's client is redis 2.x)
  cleanups.push(() => new Promise<void>((resolve) => store._client.quit(() => resolve())));
  passwordless.init(store);
  passwordless.addDelivery((token, _uid, _recipient, callback, req) => {
    (req as BenchRequest).benchToken = token;
    callback();
  });
  const app = express();
  app.use(sessions());
  app.use(passwordless.sessionSupport());
  app.use(passwordless.acceptToken({ successRedirect: '/account' }));
  app.post(
    '/login',
    urlencoded,
    passwordless.requestToken((user, _delivery, callback) => callback(null, user)),
    sendCapturedToken,
  );
  app.get('/account', passwordless.restricted(), hello);
  return app;
}

// ---------------------------------------------------------------------------------------------------------------
// The floor: only the unavoidable work. A random token stored as is (no hash, no checks of the input beyond its type),
// an atomic check-and-delete that also honours the expiry, then a new session id with the uid in it, saved before the
// redirect (what any login that resists session fixation has to do). One store round trip each way, in the cheapest
// form the store offers: a Map; SET PX and a cached Lua script (EVALSHA); prepared INSERT … ON CONFLICT and DELETE.
// ---------------------------------------------------------------------------------------------------------------
interface FloorStore {
  put(uid: string, token: string, ttl: number): Promise<unknown> | undefined;
  take(uid: string, token: string): Promise<boolean> | boolean;
}

/** Compare-and-delete in one step (GETDEL would delete on a wrong guess too, letting anyone void a pending login). */
const TAKE_LUA =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

async function floorStore(): Promise<FloorStore> {
  if (storeKind === 'memory') {
    const tokens = new Map<string, { token: string; expiresAt: number }>();
    return {
      put(uid, token, ttl) {
        tokens.set(uid, { token, expiresAt: Date.now() + ttl });
        return undefined;
      },
      take(uid, token) {
        const entry = tokens.get(uid);
        if (!entry || entry.token !== token || entry.expiresAt <= Date.now()) return false;
        tokens.delete(uid);
        return true;
      },
    };
  }
  if (storeKind === 'redis') {
    const client = await redisClient();
    const prefix = `${namespace}:floor:`;
    const sha = createHash('sha1').update(TAKE_LUA).digest('hex');
    await client.script('LOAD', TAKE_LUA);
    return {
      put: (uid, token, ttl) => client.set(prefix + uid, token, 'PX', ttl),
      take: async (uid, token) => (await client.evalsha(sha, 1, prefix + uid, token)) === 1,
    };
  }
  const pool = pgPool();
  const table = tableName('floor');
  await pool.query(
    `CREATE TABLE IF NOT EXISTS ${table} (uid text PRIMARY KEY, token text NOT NULL, expires_at timestamptz NOT NULL)`,
  );
  cleanups.push(async () => {
    await dropTables(pool, table);
    await pool.end();
  });
  const put = `INSERT INTO ${table} (uid, token, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (uid) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at`;
  const take = `DELETE FROM ${table} WHERE uid = $1 AND token = $2 AND expires_at > $3 RETURNING 1`;
  // Named (prepared) statements: each connection parses and plans them once.
  return {
    put: (uid, token, ttl) =>
      pool.query({ name: `${table}_put`, text: put, values: [uid, token, new Date(Date.now() + ttl)] }),
    take: async (uid, token) =>
      (await pool.query({ name: `${table}_take`, text: take, values: [uid, token, new Date()] })).rowCount ===
      1,
  };
}

async function floorApp(): Promise<express.Express> {
  const store = await floorStore();
  const app = express();
  app.use(sessions());
  app.use((req: Request, res: Response, next: NextFunction) => {
    const { token, uid } = req.query;
    if (typeof token !== 'string' || typeof uid !== 'string') return next();
    const login = (ok: boolean) => {
      if (!ok) return next();
      const r = req as BenchRequest;
      r.session.regenerate((err) => {
        if (err) return next(err);
        r.session.passwordless = uid;
        r.session.save((saveErr) => (saveErr ? next(saveErr) : res.redirect('/account')));
      });
    };
    const taken = store.take(uid, token);
    if (typeof taken === 'boolean') login(taken);
    else taken.then(login, next);
  });
  app.post('/login', urlencoded, (req: Request, res: Response, next: NextFunction) => {
    const user = (req.body as Record<string, unknown> | undefined)?.user;
    if (typeof user !== 'string' || user.length === 0) return void res.status(400).send('Bad Request');
    const token = randomBytes(16).toString('base64url');
    const stored = store.put(user, token, TTL);
    if (stored === undefined) res.send(token);
    else stored.then(() => res.send(token), next);
  });
  // express-session alone: the check restricted() makes, written inline.
  app.get('/account', (req: Request, res: Response) => {
    const uid = (req as BenchRequest).session.passwordless;
    if (typeof uid === 'string' && uid.length > 0) res.send(`Hello ${uid}`);
    else res.status(401).send('Unauthorized');
  });
  return app;
}

async function main(): Promise<void> {
  const app = variant === 'ours' ? await oursApp() : variant === 'v1' ? await v1App() : await floorApp();
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    console.error(`bench server (${variant}/${storeKind}):`, err);
    res.status(500).send('Internal Server Error');
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  let cpu = process.cpuUsage();
  let closing = false;
  const close = async () => {
    if (closing) return;
    closing = true;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((err: unknown) => console.error('bench server: cleanup failed:', err));
    }
  };
  process.on('message', (message: unknown) => {
    if (message === 'cpu') {
      const used = process.cpuUsage(cpu);
      cpu = process.cpuUsage();
      process.send?.({ type: 'cpu', micros: used.user + used.system });
    } else if (message === 'close') {
      void close().then(() => {
        process.send?.({ type: 'closed' }, () => process.exit(0));
      });
    }
  });
  // The parent went away (Ctrl-C, crash): clean up and leave.
  process.on('disconnect', () => {
    void close().then(() => process.exit(0));
  });
  process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port });
}

/** A message of the given type from a cluster worker. */
function fromWorker<T>(worker: Worker, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: unknown) => {
      if (typeof msg === 'object' && msg !== null && (msg as { type?: unknown }).type === type) {
        cleanup();
        resolve(msg as T);
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`bench cluster worker exited (${code}) before '${type}'`));
    };
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('exit', onExit);
  });
}

/**
 * The cluster primary: forks `workers` copies of this app (each runs main(), as a cluster worker: its listen() shares
 * the primary's socket), then speaks the same protocol to the parent as a single app does, for all of them together.
 */
async function primary(): Promise<void> {
  cluster.setupPrimary({ args: process.argv.slice(2, 6), silent: false });
  const forked = Array.from({ length: workers }, () => cluster.fork());
  const ports = await Promise.all(forked.map((w) => fromWorker<{ port: number }>(w, 'ready')));
  const port = ports[0]!.port;
  if (ports.some((p) => p.port !== port))
    throw new Error('bench cluster: the workers listen on different ports');
  let cpu = process.cpuUsage();
  let closing = false;
  const close = async () => {
    if (closing) return;
    closing = true;
    await Promise.all(
      forked.map(async (w) => {
        if (!w.isConnected()) return;
        const closed = fromWorker(w, 'closed').catch(() => undefined);
        w.send('close');
        await closed;
      }),
    );
  };
  process.on('message', (message: unknown) => {
    if (message === 'cpu') {
      const own = process.cpuUsage(cpu);
      cpu = process.cpuUsage();
      const replies = forked.map((w) => {
        const reply = fromWorker<{ micros: number }>(w, 'cpu');
        w.send('cpu');
        return reply;
      });
      void Promise.all(replies).then((all) => {
        const micros = all.reduce((sum, r) => sum + r.micros, own.user + own.system);
        process.send?.({ type: 'cpu', micros });
      });
    } else if (message === 'close') {
      void close().then(() => {
        process.send?.({ type: 'closed' }, () => process.exit(0));
      });
    }
  });
  process.on('disconnect', () => {
    void close().then(() => process.exit(0));
  });
  process.send?.({ type: 'ready', port });
}

(workers > 0 && cluster.isPrimary ? primary() : main()).catch((err: unknown) => {
  console.error(`bench server (${variant}/${storeKind}) failed to start:`, err);
  process.exit(1);
});
