// examples/shared/store.ts: the token store the examples use, picked by REDIS_URL, MONGODB_URL or DATABASE_URL,
// and a whole magic-link login on each. Redis and PostgreSQL as in the stores' own suites (required in CI);
// MongoDB only when MONGODB_URL is set.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createMagicLinkApp } from '../../examples/magic-link/app.js';
import { type OpenedStore, openStore } from '../../examples/shared/store.js';
import { describeWithServer } from '../helpers/server.js';
import { browse, newestMessage, serveExample } from './serve.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PG_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const MONGODB_URL = process.env.MONGODB_URL;
/** A key prefix / table / collection of this run only, so other suites' clear() never meets it. */
const NAME = `example_test_${process.pid}_${randomBytes(3).toString('hex')}`;

async function loginOn(opened: OpenedStore): Promise<void> {
  const app = await serveExample((appUrl) =>
    createMagicLinkApp({ appUrl, store: opened.store, log: () => {} }),
  );
  try {
    const go = browse(app.url);
    await go('/account'); // asks for the page first, so the origin travels through the store
    expect((await go('/login', { user: 'store@example.com', origin: '/account' })).status).toBe(302);
    const { link } = await newestMessage(app.url);
    expect((await go(link!)).headers.get('location')).toBe('/account');
    expect(await (await go('/account')).text()).toContain('Hello, store@example.com');
    expect((await go(link!)).headers.get('location')).toBe('/login'); // used once
  } finally {
    await app.close();
  }
}

describe('openStore', () => {
  it('uses MemoryStore when no URL is set', async () => {
    const opened = await openStore({ env: {} });
    expect(opened.description).toMatch(/^MemoryStore/);
    await loginOn(opened);
    await opened.close();
  });

  it('names the server without its password, and fails clearly when it is unreachable', async () => {
    await expect(openStore({ env: { DATABASE_URL: 'postgres://me:s3cret@127.0.0.1:1/db' } })).rejects.toThrow(
      /^Cannot connect to PostgreSQL at 127\.0\.0\.1:1\/db: /,
    );
    await expect(
      openStore({ env: { DATABASE_URL: 'postgres://me:s3cret@127.0.0.1:1/db' } }),
    ).rejects.not.toThrow(/s3cret/);
  });
});

const describeRedis = await describeWithServer('Redis', async () => {
  const opened = await openStore({ env: { REDIS_URL }, name: `${NAME}:` });
  await opened.close();
});
describeRedis('openStore with REDIS_URL', () => {
  it('uses RedisStore, and a login works', async () => {
    const opened = await openStore({ env: { REDIS_URL, DATABASE_URL: PG_URL }, name: `${NAME}:` });
    expect(opened.description).toBe(`RedisStore (Redis at ${new URL(REDIS_URL).host})`);
    try {
      await loginOn(opened);
    } finally {
      await opened.store.clear();
      await opened.close();
    }
  });
});

const describePg = await describeWithServer('PostgreSQL', async () => {
  const opened = await openStore({ env: { DATABASE_URL: PG_URL }, name: NAME });
  await opened.close();
});
describePg('openStore with DATABASE_URL', () => {
  let opened: OpenedStore | undefined;
  afterAll(async () => {
    if (!opened) return;
    const { Pool } = await import('pg');
    const pool = new Pool({ connectionString: PG_URL });
    await pool.query(`DROP TABLE IF EXISTS "${NAME}", "${NAME}_families"`);
    await pool.end();
  });

  it('uses PostgresStore, and a login works', async () => {
    opened = await openStore({ env: { DATABASE_URL: PG_URL }, name: NAME });
    expect(opened.description).toMatch(/^PostgresStore \(PostgreSQL at 127\.0\.0\.1:5432\/test\)$/);
    try {
      await loginOn(opened);
    } finally {
      await opened.close();
    }
  });
});

if (MONGODB_URL) {
  const describeMongo = await describeWithServer('MongoDB at MONGODB_URL', async () => {
    const opened = await openStore({ env: { MONGODB_URL }, name: NAME });
    await opened.close();
  });
  describeMongo('openStore with MONGODB_URL', () => {
    it('uses MongoStore, and a login works', async () => {
      const opened = await openStore({ env: { MONGODB_URL }, name: NAME });
      expect(opened.description).toMatch(/^MongoStore \(MongoDB at /);
      try {
        await loginOn(opened);
      } finally {
        await opened.store.clear();
        await opened.close();
      }
    });
  });
} else {
  console.warn('[skip] examples on MongoDB: MONGODB_URL is not set.');
}
