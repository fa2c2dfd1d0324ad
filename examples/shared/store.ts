// Picks the token store from the environment: Redis (REDIS_URL), MongoDB (MONGODB_URL), PostgreSQL (DATABASE_URL),
// else the in-process MemoryStore. Each driver is loaded only when it is used.
import { MemoryStore, type TokenStore } from 'express-passwordless';

export interface OpenedStore {
  store: TokenStore;
  /** What to tell the person who started the app, e.g. `Redis (127.0.0.1:6379)`; never a password. */
  description: string;
  /** Closes the store and the client opened for it. */
  close(): Promise<void>;
}

export interface OpenStoreOptions {
  /** Where to read REDIS_URL, MONGODB_URL and DATABASE_URL. Default: `process.env`. */
  env?: Record<string, string | undefined>;
  /** Key prefix (Redis), table (PostgreSQL) or collection (MongoDB). Default: each store's own. */
  name?: string;
}

/** Host and port of a connection URL, without user name or password. */
function where(url: string): string {
  try {
    const { host, pathname } = new URL(url);
    return `${host}${pathname.length > 1 ? pathname : ''}`;
  } catch {
    return 'the configured server';
  }
}

async function openRedis(url: string, name: string | undefined): Promise<OpenedStore> {
  const { Redis } = await import('ioredis');
  const { RedisStore } = await import('express-passwordless/stores/redis');
  // enableOfflineQueue: false makes calls fail at once while Redis is down, instead of queueing.
  const client = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
  // ioredis reconnects by itself; say once that Redis is gone, and again once it is back.
  let connected = false;
  let lastError: Error | undefined;
  client.on('error', (err: Error) => {
    if (connected) console.error(`Redis: ${err.message} (reconnecting; logins fail until it is back)`);
    connected = false;
    lastError = err;
  });
  client.on('ready', () => {
    if (lastError) console.error('Redis: connected again');
    connected = true;
  });
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    throw new Error(`Cannot connect to Redis at ${where(url)}: ${(lastError ?? (err as Error)).message}`);
  }
  lastError = undefined;
  const store = new RedisStore(name === undefined ? { client } : { client, prefix: name });
  return {
    store,
    description: `RedisStore (Redis at ${where(url)})`,
    async close() {
      await store.close();
      await client.quit();
    },
  };
}

async function openMongo(url: string, name: string | undefined): Promise<OpenedStore> {
  const { MongoClient } = await import('mongodb');
  const { MongoStore } = await import('express-passwordless/stores/mongo');
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 5000 });
  try {
    await client.connect();
  } catch (err) {
    await client.close().catch(() => {});
    throw new Error(`Cannot connect to MongoDB at ${where(url)}: ${(err as Error).message}`);
  }
  const store = new MongoStore(name === undefined ? { client } : { client, collection: name });
  return {
    store,
    description: `MongoStore (MongoDB at ${where(url)})`,
    async close() {
      await store.close();
      await client.close();
    },
  };
}

async function openPostgres(url: string, name: string | undefined): Promise<OpenedStore> {
  const { Pool } = await import('pg');
  const { PostgresStore } = await import('express-passwordless/stores/postgres');
  const pool = new Pool({ connectionString: url, connectionTimeoutMillis: 5000, max: 5 });
  // An idle client that loses its connection emits 'error' on the pool; without a listener that ends the process.
  pool.on('error', (err: Error) => console.error(`PostgreSQL: ${err.message}`));
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => {});
    throw new Error(`Cannot connect to PostgreSQL at ${where(url)}: ${(err as Error).message}`);
  }
  const store = new PostgresStore(name === undefined ? { pool } : { pool, table: name });
  return {
    store,
    description: `PostgresStore (PostgreSQL at ${where(url)})`,
    async close() {
      await store.close();
      await pool.end();
    },
  };
}

/** The first of REDIS_URL, MONGODB_URL, DATABASE_URL that is set picks the store; none → MemoryStore. */
export async function openStore(options: OpenStoreOptions = {}): Promise<OpenedStore> {
  const env = options.env ?? process.env;
  if (env.REDIS_URL) return openRedis(env.REDIS_URL, options.name);
  if (env.MONGODB_URL) return openMongo(env.MONGODB_URL, options.name);
  if (env.DATABASE_URL) return openPostgres(env.DATABASE_URL, options.name);
  const store = new MemoryStore();
  return {
    store,
    description:
      'MemoryStore (in this process; set REDIS_URL, MONGODB_URL or DATABASE_URL for a shared store)',
    close: () => store.close(),
  };
}
