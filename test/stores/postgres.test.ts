import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import express from 'express';
import { Passwordless, PasswordlessError } from 'express-passwordless';
import { tokenStoreContract } from 'express-passwordless/testing';
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashToken } from '../../src/token.js';
import type { RefreshFamily, TokenRecord } from '../../src/types.js';
import { type PgQueryable, PostgresStore, schemaSql } from '../../stores/postgres/index.js';
import {
  escapeIdentifier,
  familyNames,
  purgeIndexName,
  quoteFamilyTable,
  quoteTable,
  tokenSchemaSql,
} from '../../stores/postgres/schema.js';
import { createApp, linkQuery } from '../helpers/create-app.js';
import { describeWithServer, withTimeout } from '../helpers/server.js';

const PG_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const PG_HOST = '127.0.0.1';
const PG_PORT = 5432;

// Every table and schema of this run carries the pid and a random part, so parallel runs and leftovers never collide.
const runId = `${process.pid}_${randomBytes(4).toString('hex')}`;
const createdTables: string[] = [];
const createdSchemas: string[] = [];
function newTable(label: string): string {
  const table = `pwl_test_${runId}_${label}`;
  createdTables.push(table);
  return table;
}

const newHash = () => hashToken(randomBytes(16).toString('hex'));
const inFuture = (ms = 60_000) => new Date(Date.now() + ms);
/** A refresh family (API mode) as the core makes it: hashes only. */
const newFamily = (uid = 'alice', ms = 60_000): RefreshFamily => ({
  family: newHash(),
  uid,
  tokenHash: newHash(),
  expiresAt: inFuture(ms),
});

/** A pool whose `query` calls are recorded, delegating to `inner`. */
function recording(inner: PgQueryable): PgQueryable & { texts: string[] } {
  const texts: string[] = [];
  return {
    texts,
    query: (text: string, values?: unknown[]) => {
      texts.push(text);
      return values === undefined ? inner.query(text) : inner.query(text, values);
    },
  };
}

const ddlCount = (texts: string[]) => texts.filter((t) => t.startsWith('CREATE TABLE')).length;

/** Milliseconds `work` takes, with its result. */
async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const start = performance.now();
  const result = await work();
  return { ms: performance.now() - start, result };
}

/** Collects unhandled rejections while `work` runs (and one macrotask after it). */
async function noUnhandledRejection(work: () => Promise<void>): Promise<void> {
  const seen: unknown[] = [];
  const listener = (reason: unknown) => seen.push(reason);
  process.on('unhandledRejection', listener);
  try {
    await work();
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    process.off('unhandledRejection', listener);
  }
  expect(seen).toEqual([]);
}

/** A TCP proxy to PostgreSQL that can be stopped (every connection cut, port closed) and started again on its port. */
function tcpProxy() {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  return {
    get port() {
      return port;
    },
    async start(): Promise<void> {
      const s = net.createServer((client) => {
        const upstream = net.connect(PG_PORT, PG_HOST);
        sockets.add(client);
        sockets.add(upstream);
        const cut = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on('error', cut).on('close', cut);
        upstream.on('error', cut).on('close', cut);
        client.pipe(upstream).pipe(client);
      });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, PG_HOST, () => resolve());
      });
      server = s;
      port = (s.address() as net.AddressInfo).port;
    },
    async stop(): Promise<void> {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      const s = server;
      server = undefined;
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
}

describe('PostgresStore without a server', () => {
  const fakePool = () => ({ query: vi.fn(async () => ({ rows: [] })) });

  it.each<[string, unknown, RegExp]>([
    ['no options', undefined, /options object/],
    ['a missing pool', {}, /`pool`.*`pg` package.*got undefined/],
    ['a pool without query()', { pool: { connect() {} } }, /`pool`.*`pg` package/],
    // The message never echoes the string: a connection string may hold a password.
    [
      'a connection string as pool',
      { pool: 'postgres://u:hunter2@db' },
      /`pool`.*`pg` package.*got string\.$/,
    ],
    ['an unknown option', { pool: { query() {} }, tabel: 'x' }, /unknown option `tabel`/],
    ['a table that is not a string', { pool: { query() {} }, table: 5 }, /`table` must be a string/],
    ['an empty table', { pool: { query() {} }, table: '' }, /not usable.*empty/],
    ['a table with two dots', { pool: { query() {} }, table: 'a.b.c' }, /not usable.*one dot/],
    ['a table with NUL', { pool: { query() {} }, table: 'a\0b' }, /not usable.*NUL/],
    ['a table over 63 bytes', { pool: { query() {} }, table: 'x'.repeat(64) }, /not usable.*63 bytes/],
    ['a createTable that is not boolean', { pool: { query() {} }, createTable: 'yes' }, /`createTable`/],
    ['a sweepInterval of 0', { pool: { query() {} }, sweepInterval: 0 }, /`sweepInterval`.*milliseconds/],
  ])('the constructor rejects %s with BAD_OPTIONS', (_, options, message) => {
    let error: unknown;
    try {
      new PostgresStore(options as never);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PasswordlessError);
    expect((error as PasswordlessError).code).toBe('BAD_OPTIONS');
    expect((error as Error).message).toMatch(message);
  });

  it('accepts a pg Pool, Client or PoolClient, and undefined for every optional option', async () => {
    const pool = new pg.Pool({ connectionString: PG_URL });
    const client = new pg.Client({ connectionString: PG_URL });
    // Type-checked only (a PoolClient needs a connection): the compiler accepts pg's own types as `pool`.
    const withPoolClient = (poolClient: pg.PoolClient) => new PostgresStore({ pool: poolClient });
    expect(withPoolClient).toBeTypeOf('function');
    const stores = [
      new PostgresStore({ pool }),
      new PostgresStore({ pool: client }),
      new PostgresStore({ pool, table: undefined, createTable: undefined, sweepInterval: undefined }),
    ];
    for (const store of stores) await store.close();
    await pool.end();
  });

  it('quotes identifiers exactly as pg does, including hostile ones', () => {
    for (const name of ['plain', 'a"; DROP TABLE x; --', '""', 'Zoë 🙂', 'a.b', "o'neil"]) {
      expect(escapeIdentifier(name)).toBe(pg.escapeIdentifier(name));
    }
    expect(quoteTable('auth.tokens')).toBe('"auth"."tokens"');
    expect(quoteTable('a"b.c"d')).toBe('"a""b"."c""d"');
  });

  it('names the purge index within 63 bytes, distinctly for long table names', () => {
    expect(purgeIndexName('passwordless_tokens')).toBe('passwordless_tokens_purge_idx');
    const a = purgeIndexName(`${'x'.repeat(60)}a`);
    const b = purgeIndexName(`${'x'.repeat(60)}b`);
    expect(Buffer.byteLength(a)).toBeLessThanOrEqual(63);
    expect(a).not.toBe(b);
    expect(Buffer.byteLength(purgeIndexName('é'.repeat(31)))).toBeLessThanOrEqual(63);
  });

  it('names the family table and its indexes within 63 bytes, distinctly for long table names', () => {
    expect(familyNames('passwordless_tokens')).toEqual({
      table: 'passwordless_tokens_families',
      uidIndex: 'passwordless_tokens_families_uid_idx',
      purgeIndex: 'passwordless_tokens_families_purge_idx',
    });
    const a = familyNames(`${'x'.repeat(62)}a`);
    const b = familyNames(`${'x'.repeat(62)}b`);
    const c = familyNames('é'.repeat(31));
    for (const names of [a, b, c]) {
      for (const name of Object.values(names)) expect(Buffer.byteLength(name)).toBeLessThanOrEqual(63);
      expect(new Set(Object.values(names)).size).toBe(3);
    }
    expect(a.table).not.toBe(b.table);
    expect(a.uidIndex).not.toBe(b.uidIndex);
    expect(a.purgeIndex).not.toBe(b.purgeIndex);
    // The family table lives in the token table's schema, quoted as the token table is.
    expect(quoteFamilyTable('auth.tokens')).toBe('"auth"."tokens_families"');
    expect(quoteFamilyTable('a"b.c"d')).toBe('"a""b"."c""d_families"');
    // schemaSql creates both tables; the family part never touches the token table.
    const ddl = schemaSql('auth.tokens');
    expect(ddl.startsWith(tokenSchemaSql('auth.tokens'))).toBe(true);
    expect(ddl).toMatch(/CREATE TABLE IF NOT EXISTS "auth"."tokens_families" \(/);
    expect(ddl).toMatch(
      /CREATE INDEX IF NOT EXISTS "tokens_families_uid_idx" ON "auth"."tokens_families" \(uid\);/,
    );
    expect(ddl).toMatch(
      /CREATE INDEX IF NOT EXISTS "tokens_families_purge_idx" ON "auth"."tokens_families" \(expires_at\);/,
    );
  });

  it('validates arguments before any query is sent', async () => {
    const pool = fakePool();
    const store = new PostgresStore({ pool });
    const record = { uid: 'alice', tokenHash: newHash(), expiresAt: inFuture() };
    await expect(store.storeOrUpdate({ ...record, uid: { $ne: null } } as never)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(store.storeOrUpdate({ ...record, tokenHash: 'raw-token' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(store.consume('alice', '.*', { keep: false })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(store.consume(['alice'] as never, newHash(), { keep: false })).rejects.toThrow();
    await expect(store.invalidateUser('' as string)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // PostgreSQL text cannot hold NUL, and a lone surrogate would be rewritten to U+FFFD (two uids, one row).
    await expect(store.storeOrUpdate({ ...record, uid: 'a\0b' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(store.storeOrUpdate({ ...record, uid: 'a\uD800' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(store.storeOrUpdate({ ...record, origin: '/\0' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(store.consume('a\0b', newHash(), { keep: false })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(store.invalidateUser('a\uDC00')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const family = newFamily();
    const op = { $ne: null } as never;
    const next = { tokenHash: newHash(), expiresAt: inFuture() };
    for (const bad of [
      () => store.createFamily({ ...family, family: op }),
      () => store.createFamily({ ...family, family: family.family.toUpperCase() }),
      () => store.createFamily({ ...family, uid: 'a\0b' }),
      () => store.createFamily({ ...family, uid: 'a\uD800' }),
      () => store.createFamily({ ...family, tokenHash: [newHash()] as never }),
      () => store.createFamily({ ...family, expiresAt: new Date(Number.NaN) }),
      () => store.rotateFamily(op, family.tokenHash, next),
      () => store.rotateFamily(family.family, `${family.tokenHash.slice(1)}%`, next),
      () => store.rotateFamily(family.family, family.tokenHash, { ...next, tokenHash: op }),
      () => store.rotateFamily(family.family, family.tokenHash, { ...next, expiresAt: Date.now() as never }),
      () => store.rotateFamily(family.family, family.tokenHash, null as never),
      () => store.revokeFamily('%'),
      () => store.revokeFamilies(op),
      () => store.revokeFamilies(''),
      () => store.revokeFamilies('a\u0000'),
      () => store.hasFamily('.*'),
    ]) {
      await expect(bad()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    await expect(store.storeOrUpdate({ ...record, lockable: 1 as never })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(store.storeOrUpdate(record, { max: 0, window: 1000 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(
      store.consume('alice', newHash(), { keep: false, budget: { max: 3, window: 1.5 } }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(pool.query).not.toHaveBeenCalled();
    await store.close();
  });

  it('the sweep creates nothing and queries nothing before the store is first used', async () => {
    const pool = fakePool();
    const store = new PostgresStore({ pool, sweepInterval: 10 });
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(pool.query).not.toHaveBeenCalled();
    await store.close();
  });

  it('retries the CREATE when another process won the race for the catalog (23505 / 42710 / 42P07)', async () => {
    const calls: string[] = [];
    const raceCodes = ['23505', '42710', '42P07'];
    const pool: PgQueryable = {
      query: async (text: string) => {
        calls.push(text);
        const code = text.startsWith('CREATE TABLE') ? raceCodes.shift() : undefined;
        if (code) throw Object.assign(new Error('duplicate key value violates unique constraint'), { code });
        return { rows: [{ n: '0' }] };
      },
    };
    const store = new PostgresStore({ pool });
    expect(await store.length()).toBe(0);
    expect(ddlCount(calls)).toBe(4);
    await store.close();
  });

  it('forgets a failed CREATE, so the next call tries again', async () => {
    let down = true;
    const calls: string[] = [];
    const pool: PgQueryable = {
      query: async (text: string) => {
        calls.push(text);
        if (down && text.startsWith('CREATE')) {
          throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        }
        return { rows: [{ n: '0' }] };
      },
    };
    const store = new PostgresStore({ pool });
    await expect(Promise.all([store.length(), store.length()])).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
    expect(ddlCount(calls)).toBe(1);
    down = false;
    expect(await store.length()).toBe(0);
    expect(await store.length()).toBe(0);
    expect(ddlCount(calls)).toBe(2);
    await store.close();
  });

  it('forgets a failed existence check too, so the next call checks again', async () => {
    let down = true;
    const calls: string[] = [];
    const pool: PgQueryable = {
      query: async (text: string) => {
        calls.push(text);
        if (down) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        return { rows: [{ has_tokens: true, has_families: true, n: '0' }] };
      },
    };
    const store = new PostgresStore({ pool });
    await expect(store.length()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    down = false;
    expect(await store.length()).toBe(0);
    expect(calls.map((t) => t.split(/\s/)[0])).toEqual(['SELECT', 'SELECT', 'SELECT']);
    expect(ddlCount(calls)).toBe(0);
    await store.close();
  });

  it('rejects with the driver error itself (the core wraps it as STORE_ERROR)', async () => {
    const driverError = Object.assign(new Error('relation does not exist'), { code: '42P01' });
    const store = new PostgresStore({
      pool: {
        query: async () => {
          throw driverError;
        },
      },
      createTable: false,
    });
    await expect(store.consume('alice', newHash(), { keep: false })).rejects.toBe(driverError);
    const next = { tokenHash: newHash(), expiresAt: inFuture() };
    await expect(store.rotateFamily(newHash(), newHash(), next)).rejects.toBe(driverError);
    await expect(store.createFamily(newFamily())).rejects.toBe(driverError);
    await expect(store.hasFamily(newHash())).rejects.toBe(driverError);
    await expect(store.revokeFamily(newHash())).rejects.toBe(driverError);
    await expect(store.revokeFamilies('alice')).rejects.toBe(driverError);
    await store.close();
  });

  it("maps the rotate statement's row to the result, and no row to missing", async () => {
    const answers: unknown[][] = [
      [{ reason: 'ok', uid: 'alice' }],
      [{ reason: 'reused', uid: 'alice' }],
      [{ reason: 'expired', uid: 'alice' }],
      [],
    ];
    const store = new PostgresStore({
      pool: { query: async () => ({ rows: answers.shift() ?? [] }) },
      createTable: false,
    });
    const rotate = () =>
      store.rotateFamily(newHash(), newHash(), { tokenHash: newHash(), expiresAt: inFuture() });
    expect(await rotate()).toEqual({ ok: true, uid: 'alice' });
    expect(await rotate()).toEqual({ ok: false, reason: 'reused' });
    expect(await rotate()).toEqual({ ok: false, reason: 'expired' });
    expect(await rotate()).toEqual({ ok: false, reason: 'missing' });
    await store.close();
  });
});

const JWT_SECRET = 'an HS256 secret of at least 32 bytes!!';

/** A JSON API in API mode (init `jwt`) on `store`: request, accept, refresh, logout everywhere, a checked route. */
function apiApp(store: PostgresStore) {
  const pwd = new Passwordless();
  const errors: PasswordlessError[] = [];
  pwd.init(store, {
    jwt: { secret: JWT_SECRET },
    secret: randomBytes(32),
    onError: (err) => errors.push(err),
  });
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
  app.post(
    '/auth/request',
    pwd.requestToken((user) => user, { json: true }),
  );
  app.post('/auth/accept', pwd.acceptToken({ json: true }));
  app.post('/auth/refresh', pwd.refresh());
  app.post(
    '/auth/logout-everywhere',
    pwd.logout({ everywhere: true, json: true }),
    (_req, res) => void res.status(204).end(),
  );
  const checked = express.Router();
  checked.use(pwd.bearerSupport({ checkRevocation: true }));
  checked.get('/', pwd.restricted(), (_req, res) => void res.json({ ok: true }));
  app.use('/checked', checked);
  return { app, sent, errors };
}

const describePg = await describeWithServer('PostgreSQL', async () => {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2000 });
  await client.connect();
  try {
    await client.query('SELECT 1');
  } finally {
    await client.end();
  }
});

describePg('PostgresStore on PostgreSQL', () => {
  let pool: pg.Pool;
  const poolErrors: unknown[] = [];

  beforeAll(() => {
    pool = new pg.Pool({ connectionString: PG_URL, max: 10, connectionTimeoutMillis: 5000 });
    // An idle connection that dies makes the pool emit 'error'; without a listener that would crash the process.
    pool.on('error', (err) => poolErrors.push(err));
  });

  afterAll(async () => {
    for (const table of createdTables) {
      await pool.query(`DROP TABLE IF EXISTS ${quoteTable(table)}, ${quoteFamilyTable(table)}`);
    }
    for (const schema of createdSchemas)
      await pool.query(`DROP SCHEMA IF EXISTS ${escapeIdentifier(schema)} CASCADE`);
    await pool.end();
  });

  const rowsOf = async (table: string) => (await pool.query(`SELECT * FROM ${quoteTable(table)}`)).rows;
  const tableExists = async (qualified: string) =>
    (await pool.query('SELECT to_regclass($1) IS NOT NULL AS ok', [qualified])).rows[0].ok as boolean;

  const contractTable = newTable('contract');
  tokenStoreContract('PostgresStore', () => new PostgresStore({ pool, table: contractTable }));

  describe('what the server holds', () => {
    it('a row holds the 64-hex hash of the token and never the raw token', async () => {
      const table = newTable('hash');
      const store = new PostgresStore({ pool, table });
      const { app, outbox } = createApp({ store });
      await request(app).post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(200);
      const { token } = outbox.last();
      const rows = await pool.query(`SELECT t.*, row_to_json(t)::text AS json FROM ${quoteTable(table)} t`);
      expect(rows.rows).toHaveLength(1);
      const row = rows.rows[0];
      expect(row.uid).toBe('a@example.com');
      expect(row.token_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(row.token_hash).toBe(createHash('sha256').update(token).digest('hex'));
      expect(row.json).not.toContain(token);
      expect(row.attempts).toBe(0);
      await store.close();
    });

    it('a login costs one statement at request and one at accept, plus one CREATE on first use', async () => {
      const table = newTable('trips');
      const spy = recording(pool);
      const store = new PostgresStore({ pool: spy, table });
      const { app, outbox } = createApp({ store });
      const kinds = () => spy.texts.map((t) => t.split(/\s/)[0]);
      for (let i = 0; i < 2; i++) {
        await request(app).post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(200);
        const res = await request(app)
          .get(`/?${linkQuery(outbox.last())}`)
          .expect(200);
        expect(res.body.user).toBe('a@example.com');
      }
      // First use: one existence check, then the CREATE, as the table is new.
      expect(kinds()).toEqual(['SELECT', 'CREATE', 'INSERT', 'WITH', 'INSERT', 'WITH']);
      await store.close();

      // Another instance on the existing table: the check finds table and index, and no DDL runs.
      const again = recording(pool);
      const second = new PostgresStore({ pool: again, table });
      const t2 = createApp({ store: second });
      await request(t2.app).post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(200);
      await request(t2.app)
        .get(`/?${linkQuery(t2.outbox.last())}`)
        .expect(200);
      expect(again.texts.map((t) => t.split(/\s/)[0])).toEqual(['SELECT', 'INSERT', 'WITH']);
      expect(again.texts[0]).toMatch(/to_regclass/);
      await second.close();
    });

    it('creates the table with the documented columns and the purge index', async () => {
      const table = newTable('schema');
      const store = new PostgresStore({ pool, table });
      await store.length();
      const columns = await pool.query(
        `SELECT column_name, data_type, is_nullable FROM information_schema.columns
         WHERE table_name = $1 ORDER BY ordinal_position`,
        [table],
      );
      expect(columns.rows).toEqual([
        { column_name: 'uid', data_type: 'text', is_nullable: 'NO' },
        { column_name: 'token_hash', data_type: 'text', is_nullable: 'YES' },
        { column_name: 'expires_at', data_type: 'timestamp with time zone', is_nullable: 'NO' },
        { column_name: 'origin', data_type: 'text', is_nullable: 'YES' },
        { column_name: 'attempts', data_type: 'integer', is_nullable: 'NO' },
        { column_name: 'max_attempts', data_type: 'integer', is_nullable: 'YES' },
        { column_name: 'lockable', data_type: 'boolean', is_nullable: 'NO' },
        { column_name: 'failures', data_type: 'integer', is_nullable: 'NO' },
        { column_name: 'failures_until', data_type: 'timestamp with time zone', is_nullable: 'YES' },
      ]);
      const indexes = await pool.query(
        'SELECT indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname',
        [table],
      );
      expect(indexes.rows.map((r) => r.indexdef).join('\n')).toMatch(
        /_purge_idx ON .* USING btree \(GREATEST\(expires_at, failures_until\)\)/,
      );
      expect(indexes.rows.map((r) => r.indexdef).join('\n')).toMatch(/UNIQUE INDEX .* USING btree \(uid\)/);
      // API mode's refresh families: a second table beside it, with its own indexes.
      const names = familyNames(table);
      const familyColumns = await pool.query(
        `SELECT column_name, data_type, is_nullable FROM information_schema.columns
         WHERE table_name = $1 ORDER BY ordinal_position`,
        [names.table],
      );
      expect(familyColumns.rows).toEqual([
        { column_name: 'family', data_type: 'text', is_nullable: 'NO' },
        { column_name: 'uid', data_type: 'text', is_nullable: 'NO' },
        { column_name: 'token_hash', data_type: 'text', is_nullable: 'NO' },
        { column_name: 'expires_at', data_type: 'timestamp with time zone', is_nullable: 'NO' },
      ]);
      const familyIndexes = await pool.query(
        'SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1',
        [names.table],
      );
      const defs = Object.fromEntries(familyIndexes.rows.map((r) => [r.indexname, r.indexdef]));
      expect(Object.keys(defs)).toHaveLength(3);
      expect(defs[names.uidIndex]).toMatch(/USING btree \(uid\)$/);
      expect(defs[names.purgeIndex]).toMatch(/USING btree \(expires_at\)$/);
      expect(Object.values(defs).join('\n')).toMatch(/UNIQUE INDEX .* USING btree \(family\)/);
      await store.close();
    });

    it('judges expiry by the app clock that computed expiresAt, not by the server clock', async () => {
      const table = newTable('clock');
      const store = new PostgresStore({ pool, table });
      const tokenHash = newHash();
      await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture(60_000) });
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        vi.setSystemTime(Date.now() + 60_000);
        expect(await store.length()).toBe(0);
        expect(await store.consume('alice', tokenHash, { keep: false })).toEqual({
          ok: false,
          reason: 'expired',
        });
      } finally {
        vi.useRealTimers();
      }
      await store.close();
    });

    it('reports every consume outcome with its reason', async () => {
      const table = newTable('reasons');
      const store = new PostgresStore({ pool, table });
      const tokenHash = newHash();
      await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture(), maxAttempts: 2 });
      expect(await store.consume('alice', newHash(), { keep: false })).toEqual({
        ok: false,
        reason: 'mismatch',
      });
      expect((await rowsOf(table))[0].attempts).toBe(1);
      expect(await store.consume('alice', newHash(), { keep: false })).toEqual({
        ok: false,
        reason: 'exhausted',
      });
      expect(await rowsOf(table)).toEqual([]);
      expect(await store.consume('alice', tokenHash, { keep: false })).toEqual({
        ok: false,
        reason: 'missing',
      });
      await store.storeOrUpdate({ uid: 'bob', tokenHash, expiresAt: new Date(Date.now() - 1) });
      expect(await store.consume('bob', tokenHash, { keep: false })).toEqual({
        ok: false,
        reason: 'expired',
      });
      expect(await rowsOf(table)).toEqual([]);
      await store.close();
    });

    it('keeps two uids apart that differ only in case or trailing space (exact text equality)', async () => {
      const table = newTable('exact');
      const store = new PostgresStore({ pool, table });
      const a = newHash();
      const b = newHash();
      await store.storeOrUpdate({ uid: 'Alice', tokenHash: a, expiresAt: inFuture() });
      await store.storeOrUpdate({ uid: 'alice ', tokenHash: b, expiresAt: inFuture() });
      expect(await store.length()).toBe(2);
      expect((await store.consume('alice', a, { keep: false })).ok).toBe(false);
      expect((await store.consume('Alice', a, { keep: false })).ok).toBe(true);
      expect((await store.consume('alice ', b, { keep: false })).ok).toBe(true);
      await store.close();
    });
  });

  describe('failure budget', () => {
    const budget = { max: 3, window: 60_000 };
    const code = (tokenHash = newHash(), extra: Partial<TokenRecord> = {}): TokenRecord => ({
      uid: 'alice',
      tokenHash,
      expiresAt: inFuture(),
      lockable: true,
      ...extra,
    });
    const guess = (store: PostgresStore, b = budget) =>
      store.consume('alice', newHash(), { keep: false, budget: b });
    const rowOf = async (table: string) =>
      (
        await pool.query(
          `SELECT token_hash, expires_at = '-infinity' AS no_expiry, attempts, lockable, failures,
             failures_until FROM ${quoteTable(table)} WHERE uid = 'alice'`,
        )
      ).rows[0];

    it('a token voided at maxAttempts leaves the row with the failures only, and a new code stays locked', async () => {
      const table = newTable('voided');
      const store = new PostgresStore({ pool, table });
      await store.storeOrUpdate(code(newHash(), { maxAttempts: 2 }), budget);
      expect(await guess(store)).toEqual({ ok: false, reason: 'mismatch' });
      expect(await guess(store)).toEqual({ ok: false, reason: 'exhausted' });
      const row = await rowOf(table);
      expect(row).toMatchObject({
        token_hash: null,
        no_expiry: true,
        attempts: 0,
        lockable: false,
        failures: 2,
      });
      expect(row.failures_until.getTime()).toBeGreaterThan(Date.now());
      expect(await store.length()).toBe(0);
      // Nothing is pending: guesses find nothing and are not counted.
      expect(await guess(store)).toEqual({ ok: false, reason: 'missing' });
      expect((await rowOf(table)).failures).toBe(2);
      const next = newHash();
      expect(await store.storeOrUpdate(code(next), budget)).toBeUndefined();
      expect(await guess(store)).toEqual({ ok: false, reason: 'mismatch' });
      expect(await store.consume('alice', next, { keep: false, budget })).toEqual({
        ok: false,
        reason: 'locked',
      });
      expect(await store.storeOrUpdate(code(), budget)).toEqual({ lockedUntil: expect.any(Date) });
      await store.close();
    });

    it('a refused store leaves the row exactly as it was, and lockedUntil is the end of the window', async () => {
      const table = newTable('refused');
      const store = new PostgresStore({ pool, table });
      const link = newHash();
      await store.storeOrUpdate(
        { uid: 'alice', tokenHash: link, expiresAt: inFuture(), origin: '/a' },
        budget,
      );
      // Wrong tries against a link count for the uid too; the link itself is not lockable.
      for (let i = 0; i < 3; i++) expect(await guess(store)).toEqual({ ok: false, reason: 'mismatch' });
      const before = await rowOf(table);
      const refused = await store.storeOrUpdate(code(), budget);
      expect(refused).toEqual({ lockedUntil: before.failures_until });
      expect(await rowOf(table)).toEqual(before);
      expect(await store.consume('alice', link, { keep: false, budget })).toEqual({ ok: true, origin: '/a' });
      expect(await rowsOf(table)).toEqual([]);
      await store.close();
    });

    it('without a budget nothing is counted, refused or reset, and the failures are kept', async () => {
      const table = newTable('nobudget');
      const store = new PostgresStore({ pool, table });
      await store.storeOrUpdate(code(), budget);
      for (let i = 0; i < 3; i++) await guess(store);
      const token = newHash();
      expect(await store.storeOrUpdate(code(token))).toBeUndefined();
      expect(await store.consume('alice', newHash(), { keep: false })).toEqual({
        ok: false,
        reason: 'mismatch',
      });
      expect((await rowOf(table)).failures).toBe(3);
      expect(await store.consume('alice', token, { keep: false })).toEqual({ ok: true });
      // The token is gone, the uid's failures are not.
      expect(await rowOf(table)).toMatchObject({ token_hash: null, failures: 3 });
      expect(await store.storeOrUpdate(code(), budget)).toEqual({ lockedUntil: expect.any(Date) });
      await store.close();
    });

    it('with keep, a match resets the failures and leaves the token in place', async () => {
      const table = newTable('keep');
      const store = new PostgresStore({ pool, table });
      const token = newHash();
      await store.storeOrUpdate(code(token), budget);
      await guess(store);
      expect(await store.consume('alice', token, { keep: true, budget })).toEqual({ ok: true });
      expect(await rowOf(table)).toMatchObject({ token_hash: token, failures: 0, failures_until: null });
      expect(await store.consume('alice', token, { keep: true, budget })).toEqual({ ok: true });
      await store.close();
    });

    it('invalidateUser and expiry remove the token only while the failures are live', async () => {
      const table = newTable('invalidate');
      const store = new PostgresStore({ pool, table });
      const token = newHash();
      await store.storeOrUpdate(code(token), budget);
      for (let i = 0; i < 3; i++) await guess(store);
      await store.invalidateUser('alice', token);
      expect(await rowOf(table)).toMatchObject({ token_hash: null, no_expiry: true, failures: 3 });
      expect(await store.consume('alice', token, { keep: false, budget })).toEqual({
        ok: false,
        reason: 'missing',
      });
      expect(await store.storeOrUpdate(code(), budget)).toEqual({ lockedUntil: expect.any(Date) });
      const expired = newHash();
      await store.storeOrUpdate({ uid: 'alice', tokenHash: expired, expiresAt: new Date(Date.now() - 1) });
      expect(await store.consume('alice', expired, { keep: false, budget })).toEqual({
        ok: false,
        reason: 'expired',
      });
      expect(await rowOf(table)).toMatchObject({ token_hash: null, failures: 3 });
      // clear() removes the failures too.
      await store.clear();
      expect(await rowsOf(table)).toEqual([]);
      await store.close();
    });

    it('judges the failure window by the app clock', async () => {
      const table = newTable('window_clock');
      const store = new PostgresStore({ pool, table });
      await store.storeOrUpdate(code(newHash(), { expiresAt: inFuture(600_000) }), budget);
      for (let i = 0; i < 3; i++) await guess(store);
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        vi.setSystemTime(Date.now() + budget.window - 1000);
        expect(await store.storeOrUpdate(code(newHash(), { expiresAt: inFuture(600_000) }), budget)).toEqual({
          lockedUntil: expect.any(Date),
        });
        vi.setSystemTime(Date.now() + 1000);
        const token = newHash();
        expect(
          await store.storeOrUpdate(code(token, { expiresAt: inFuture(600_000) }), budget),
        ).toBeUndefined();
        // The forgotten failures start again from zero.
        await guess(store);
        expect((await rowOf(table)).failures).toBe(1);
        expect(await store.consume('alice', token, { keep: false, budget })).toEqual({ ok: true });
      } finally {
        vi.useRealTimers();
      }
      await store.close();
    });

    it('one statement per call, refused or not', async () => {
      const table = newTable('budget_trips');
      const spy = recording(pool);
      const store = new PostgresStore({ pool: spy, table });
      await store.length();
      spy.texts.length = 0;
      await store.storeOrUpdate(code(), budget);
      for (let i = 0; i < 4; i++) await guess(store);
      await store.storeOrUpdate(code(), budget);
      await store.invalidateUser('alice');
      expect(spy.texts.map((t) => t.split(/\s/)[0])).toEqual([
        'INSERT',
        'WITH',
        'WITH',
        'WITH',
        'WITH',
        'INSERT',
        'WITH',
      ]);
      await store.close();
    });

    it('20 concurrent wrong tries racing stores of new codes: every try is counted once', async () => {
      const table = newTable('budget_race');
      const store = new PostgresStore({ pool, table });
      const big = { max: 1000, window: 60_000 };
      await store.storeOrUpdate(code(newHash(), { maxAttempts: 1000 }), big);
      const ops: Promise<unknown>[] = [];
      for (let i = 0; i < 20; i++) {
        if (i % 5 === 0) ops.push(store.storeOrUpdate(code(newHash(), { maxAttempts: 1000 }), big));
        ops.push(guess(store, big));
      }
      const results = await Promise.all(ops);
      const mismatches = results.filter((r) => (r as { reason?: string } | undefined)?.reason === 'mismatch');
      expect(mismatches).toHaveLength(20);
      expect((await rowOf(table)).failures).toBe(20);
      await store.close();
    });

    it('the purge keeps a row while its failures are live, and deletes it once they are not', async () => {
      const table = newTable('budget_purge');
      const spy = recording(pool);
      const store = new PostgresStore({ pool: spy, table, sweepInterval: 20 });
      const window = { max: 3, window: 1500 };
      // Tables first: their creation must not eat the 40 ms the token lives.
      await store.length();
      await store.storeOrUpdate(code(newHash(), { expiresAt: inFuture(40) }), window);
      await guess(store, window);
      await store.storeOrUpdate({ uid: 'bob', tokenHash: newHash(), expiresAt: inFuture(40) });
      const { failures_until: until } = await rowOf(table);
      const purges = () => spy.texts.filter((t) => t.startsWith('DELETE') && t.includes('<=')).length;
      // Two purges after both tokens expired: bob's row (no failures) is gone, alice's (live failures) is kept.
      await new Promise((resolve) => setTimeout(resolve, 60));
      const seen = purges();
      await vi.waitFor(() => expect(purges()).toBeGreaterThanOrEqual(seen + 2), {
        timeout: 5000,
        interval: 10,
      });
      const uids = (await rowsOf(table)).map((r) => r.uid);
      if (Date.now() < until.getTime()) expect(uids).toEqual(['alice']);
      expect(await store.length()).toBe(0);
      await vi.waitFor(async () => expect(await rowsOf(table)).toEqual([]), { timeout: 8000, interval: 50 });
      await store.close();
    });

    it('the purge and length() find rows through the purge index', async () => {
      const table = newTable('budget_plan');
      const spy = recording(pool);
      const store = new PostgresStore({ pool: spy, table, sweepInterval: 10 });
      await store.length();
      await vi.waitFor(() => expect(spy.texts.some((t) => t.startsWith('DELETE'))).toBe(true), {
        timeout: 5000,
        interval: 10,
      });
      await store.close();
      const purge = spy.texts.find((t) => t.startsWith('DELETE'))!;
      const length = spy.texts.find((t) => t.startsWith('SELECT count'))!;
      const client = await pool.connect();
      try {
        // An empty table: without this the planner would rightly prefer a sequential scan.
        await client.query('SET enable_seqscan = off');
        const explain = async (sql: string) =>
          (await client.query(`EXPLAIN ${sql}`, [new Date().toISOString()])).rows
            .map((r) => r['QUERY PLAN'])
            .join('\n');
        expect(await explain(purge)).toMatch(/_purge_idx/);
        expect(await explain(length)).toMatch(/_purge_idx/);
      } finally {
        await client.query('RESET enable_seqscan');
        client.release();
      }
    });
  });

  describe('refresh families (API mode)', () => {
    const familyRow = async (table: string, family: string) =>
      (
        await pool.query(
          `SELECT f.*, row_to_json(f)::text AS json FROM ${quoteFamilyTable(table)} f WHERE family = $1`,
          [family],
        )
      ).rows[0];
    const familyRows = async (table: string) =>
      (await pool.query(`SELECT family, uid FROM ${quoteFamilyTable(table)} ORDER BY uid, family`)).rows;
    const next = (ms = 60_000) => ({ tokenHash: newHash(), expiresAt: inFuture(ms) });

    it('through the core: a family row holds hashes only, moves at refresh, and goes at reuse and logout', async () => {
      const table = newTable('fam_core');
      const store = new PostgresStore({ pool, table });
      const { app, sent, errors } = apiApp(store);
      const login = async () => {
        await request(app).post('/auth/request').send({ user: 'alice@example.com' }).expect(202);
        const res = await request(app)
          .post('/auth/accept')
          .send({ uid: 'alice@example.com', token: sent.at(-1)!.token })
          .expect(200);
        return res.body as { accessToken: string; refreshToken: string };
      };
      const first = await login();
      const second = await login();
      const rows = await pool.query(
        `SELECT f.*, row_to_json(f)::text AS json FROM ${quoteFamilyTable(table)} f`,
      );
      expect(rows.rows).toHaveLength(2);
      for (const row of rows.rows) {
        expect(row.family).toMatch(/^[0-9a-f]{64}$/);
        expect(row.token_hash).toMatch(/^[0-9a-f]{64}$/);
        expect(row.uid).toBe('alice@example.com');
        for (const part of [...first.refreshToken.split('.'), ...second.refreshToken.split('.')]) {
          expect(row.json).not.toContain(part);
        }
      }
      const before = (
        await pool.query(`SELECT family, token_hash, expires_at FROM ${quoteFamilyTable(table)}`)
      ).rows;
      const rotated = await request(app)
        .post('/auth/refresh')
        .send({ refreshToken: first.refreshToken })
        .expect(200);
      const after = (
        await pool.query(`SELECT family, token_hash, expires_at FROM ${quoteFamilyTable(table)}`)
      ).rows;
      const moved = after.filter((a) => !before.some((b) => b.token_hash === a.token_hash));
      expect(moved).toHaveLength(1);
      expect(moved[0].expires_at.getTime()).toBeGreaterThan(
        before.find((b) => b.family === moved[0].family).expires_at.getTime(),
      );
      // The rotated-away token again: theft. Its login is revoked, also for the per-request revocation check.
      await request(app).post('/auth/refresh').send({ refreshToken: first.refreshToken }).expect(401);
      await request(app).post('/auth/refresh').send({ refreshToken: rotated.body.refreshToken }).expect(401);
      await request(app)
        .get('/checked')
        .set('Authorization', `Bearer ${rotated.body.accessToken}`)
        .expect(401);
      await request(app).get('/checked').set('Authorization', `Bearer ${second.accessToken}`).expect(200);
      expect((await familyRows(table)).length).toBe(1);
      // Log out everywhere: every family of the uid goes; pending tokens are not families.
      const third = await login();
      await request(app)
        .post('/auth/logout-everywhere')
        .set('Authorization', `Bearer ${third.accessToken}`)
        .expect(204);
      expect(await familyRows(table)).toEqual([]);
      await request(app).get('/checked').set('Authorization', `Bearer ${second.accessToken}`).expect(401);
      expect(errors).toEqual([]);
      await store.close();
    });

    it('reports every rotate outcome and leaves the row accordingly', async () => {
      const table = newTable('fam_reasons');
      const store = new PostgresStore({ pool, table });
      const record = newFamily('alice');
      await store.createFamily(record);
      const moved = next(120_000);
      expect(await store.rotateFamily(record.family, record.tokenHash, moved)).toEqual({
        ok: true,
        uid: 'alice',
      });
      const row = await familyRow(table, record.family);
      expect(row).toMatchObject({ uid: 'alice', token_hash: moved.tokenHash });
      expect(row.expires_at.getTime()).toBe(moved.expiresAt.getTime());
      // The earlier hash: reused, and the family is deleted.
      expect(await store.rotateFamily(record.family, record.tokenHash, next())).toEqual({
        ok: false,
        reason: 'reused',
      });
      expect(await familyRow(table, record.family)).toBeUndefined();
      expect(await store.rotateFamily(record.family, moved.tokenHash, next())).toEqual({
        ok: false,
        reason: 'missing',
      });
      // An expired family is deleted by the rotation that finds it, whatever hash it was given.
      for (const presented of ['own', 'other'] as const) {
        const old = newFamily('bob', -1);
        await store.createFamily(old);
        const hash = presented === 'own' ? old.tokenHash : newHash();
        expect(await store.rotateFamily(old.family, hash, next())).toEqual({ ok: false, reason: 'expired' });
        expect(await familyRow(table, old.family)).toBeUndefined();
      }
      // createFamily with a family already stored replaces it (as MemoryStore's Map#set does).
      const again = newFamily('carol');
      await store.createFamily(again);
      await store.createFamily({ ...again, uid: 'dave' });
      expect(await store.rotateFamily(again.family, again.tokenHash, next())).toEqual({
        ok: true,
        uid: 'dave',
      });
      await store.close();
    });

    it('judges family expiry by the app clock, not the server clock', async () => {
      const table = newTable('fam_clock');
      const store = new PostgresStore({ pool, table });
      const record = newFamily('alice', 60_000);
      const other = newFamily('alice', 60_000);
      await store.createFamily(record);
      await store.createFamily(other);
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        vi.setSystemTime(Date.now() + 60_000);
        expect(await store.hasFamily(record.family)).toBe(false);
        expect(await store.revokeFamily(other.family)).toBeUndefined();
        expect(await store.rotateFamily(record.family, record.tokenHash, next())).toEqual({
          ok: false,
          reason: 'expired',
        });
      } finally {
        vi.useRealTimers();
      }
      expect(await familyRows(table)).toEqual([]);
      await store.close();
    });

    it.each([
      ['a family hex string', 'family'],
      ['a pattern', '%'],
      ['a glob', '*'],
      ['a regexp', '.*'],
      ['SQL', "x'; DELETE FROM passwordless_tokens_families; --"],
      ['the family table name', 'passwordless_tokens_families'],
    ])('families and token rows never meet, with a uid that is %s', async (_, kind) => {
      const table = newTable(`fam_uid_${randomBytes(3).toString('hex')}`);
      const store = new PostgresStore({ pool, table });
      const key = newFamily('alice');
      const uid = kind === 'family' ? key.family : kind;
      // A pending token of that uid, the family whose key equals it, a family of that uid, and a bystander's.
      const token = newHash();
      await store.storeOrUpdate({ uid, tokenHash: token, expiresAt: inFuture() });
      await store.createFamily(key);
      const owned = newFamily(uid);
      await store.createFamily(owned);
      const bystander = newFamily('bob');
      await store.createFamily(bystander);
      expect(await store.length()).toBe(1);
      await store.invalidateUser(uid);
      expect(await store.length()).toBe(0);
      for (const f of [key, owned, bystander]) expect(await store.hasFamily(f.family)).toBe(true);
      await store.storeOrUpdate({ uid, tokenHash: token, expiresAt: inFuture() });
      // Patterns revoke nothing: only the exact uid.
      for (const pattern of ['%', '*', '.*', '_'].filter((p) => p !== uid))
        await store.revokeFamilies(pattern);
      expect(await familyRows(table)).toHaveLength(3);
      await store.revokeFamilies(uid);
      expect(await store.hasFamily(owned.family)).toBe(false);
      expect(await store.hasFamily(key.family)).toBe(true);
      expect(await store.hasFamily(bystander.family)).toBe(true);
      expect(await store.consume(uid, token, { keep: false })).toEqual({ ok: true });
      expect(await store.revokeFamily(key.family)).toBe('alice');
      expect(await familyRows(table)).toEqual([{ family: bystander.family, uid: 'bob' }]);
      await store.close();
    });

    it('one statement per family call (plus the existence check on first use)', async () => {
      const table = newTable('fam_trips');
      const spy = recording(pool);
      const store = new PostgresStore({ pool: spy, table });
      const record = newFamily();
      await store.createFamily(record);
      await store.hasFamily(record.family);
      await store.rotateFamily(record.family, record.tokenHash, next());
      await store.revokeFamily(record.family);
      await store.revokeFamilies('alice');
      await store.clear();
      expect(spy.texts.map((t) => t.split(/\s/)[0])).toEqual([
        'SELECT', // to_regclass: the tables are new
        'CREATE',
        'INSERT',
        'SELECT',
        'WITH',
        'DELETE',
        'DELETE',
        'WITH',
      ]);
      await store.close();
    });

    it('purges expired families by itself, keeping live ones; the purge and revokeFamilies use their indexes', async () => {
      const table = newTable('fam_purge');
      const spy = recording(pool);
      const store = new PostgresStore({ pool: spy, table, sweepInterval: 30 });
      await store.createFamily(newFamily('old', -1000));
      await store.createFamily(newFamily('soon', 40));
      const live = newFamily('live');
      await store.createFamily(live);
      // Nothing but the purge deletes families here: both expired ones must go.
      await vi.waitFor(async () => expect((await familyRows(table)).map((r) => r.uid)).toEqual(['live']), {
        timeout: 5000,
        interval: 20,
      });
      await store.close();
      const purge = spy.texts.find((t) => t.startsWith('DELETE') && t.includes(familyNames(table).table))!;
      expect(purge).toMatch(/expires_at <= \$1/);
      const names = familyNames(table);
      const client = await pool.connect();
      try {
        await client.query('SET enable_seqscan = off');
        const explain = async (sql: string, values: unknown[]) =>
          (await client.query(`EXPLAIN ${sql}`, values)).rows.map((r) => r['QUERY PLAN']).join('\n');
        expect(await explain(purge, [new Date().toISOString()])).toContain(names.purgeIndex);
        expect(
          await explain(`DELETE FROM ${quoteFamilyTable(table)} WHERE uid = $1::text`, ['alice']),
        ).toContain(names.uidIndex);
      } finally {
        await client.query('RESET enable_seqscan');
        client.release();
      }
    });

    it('a rotation that waited for a racing change decides on the row version that change committed', async () => {
      const table = newTable('fam_lock');
      const store = new PostgresStore({ pool, table });
      await store.length();
      const f = quoteFamilyTable(table);
      const holder = await pool.connect();
      // `change` runs in an open transaction holding the family's row lock; the rotation starts, must wait for the
      // lock, and only then is the change committed.
      const whileLocked = async <T>(
        change: string,
        values: unknown[],
        work: () => Promise<T>,
      ): Promise<T> => {
        await holder.query('BEGIN');
        try {
          await holder.query(change, values);
          const pending = work();
          await vi.waitFor(
            async () => {
              const { rows } = await pool.query(
                `SELECT count(*)::int AS n FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND position($1 in query) > 0 AND pid <> $2`,
                [familyNames(table).table, (holder as unknown as { processID: number }).processID],
              );
              expect(rows[0].n).toBe(1);
            },
            { timeout: 3000, interval: 10 },
          );
          await holder.query('COMMIT');
          return await pending;
        } catch (err) {
          await holder.query('ROLLBACK');
          throw err;
        }
      };
      try {
        // A racing rotation moved H1 to H2: the waiting rotation with H1 is a reuse, and revokes the family.
        const a = newFamily();
        await store.createFamily(a);
        const h2 = newHash();
        const reused = await whileLocked(
          `UPDATE ${f} SET token_hash = $2 WHERE family = $1`,
          [a.family, h2],
          () => store.rotateFamily(a.family, a.tokenHash, next()),
        );
        expect(reused).toEqual({ ok: false, reason: 'reused' });
        expect(await familyRow(table, a.family)).toBeUndefined();
        // The waiting rotation presents H2, which is current once it has the lock: it succeeds (an UPDATE/DELETE
        // pair without the FOR UPDATE would have decided on the old version and revoked the family).
        const b = newFamily();
        await store.createFamily(b);
        const h3 = newHash();
        const b2 = next();
        const ok = await whileLocked(
          `UPDATE ${f} SET token_hash = $2 WHERE family = $1`,
          [b.family, h3],
          () => store.rotateFamily(b.family, h3, b2),
        );
        expect(ok).toEqual({ ok: true, uid: 'alice' });
        expect((await familyRow(table, b.family)).token_hash).toBe(b2.tokenHash);
        // A racing revocation deleted it: missing.
        const c = newFamily();
        await store.createFamily(c);
        const missing = await whileLocked(`DELETE FROM ${f} WHERE family = $1`, [c.family], () =>
          store.rotateFamily(c.family, c.tokenHash, next()),
        );
        expect(missing).toEqual({ ok: false, reason: 'missing' });
        // A racing rotation moved the expiry into the past: expired, and deleted.
        const d = newFamily();
        await store.createFamily(d);
        const expired = await whileLocked(
          `UPDATE ${f} SET expires_at = now() - interval '1 second' WHERE family = $1`,
          [d.family],
          () => store.rotateFamily(d.family, d.tokenHash, next()),
        );
        expect(expired).toEqual({ ok: false, reason: 'expired' });
        expect(await familyRow(table, d.family)).toBeUndefined();
      } finally {
        holder.release();
        await store.close();
      }
    });

    it('50 concurrent rotations of one hash from 50 connections: one ok, one reused, 48 missing, 10 rounds', async () => {
      const table = newTable('fam_race');
      const clients = await Promise.all(
        Array.from({ length: 50 }, async () => {
          const client = new pg.Client({ connectionString: PG_URL });
          await client.connect();
          return client;
        }),
      );
      try {
        // One store per connection, as 50 app instances would have; every one has found the tables first.
        const stores = clients.map((client) => new PostgresStore({ pool: client, table }));
        await Promise.all(stores.map((store) => store.hasFamily(newHash())));
        for (let round = 0; round < 10; round++) {
          const record = newFamily();
          await stores[0]!.createFamily(record);
          const results = await Promise.all(
            stores.map((store) => store.rotateFamily(record.family, record.tokenHash, next())),
          );
          const reasons = results.map((r) => (r.ok ? 'ok' : r.reason));
          expect(reasons.filter((r) => r === 'ok')).toHaveLength(1);
          expect(reasons.filter((r) => r === 'reused')).toHaveLength(1);
          expect(reasons.filter((r) => r === 'missing')).toHaveLength(48);
          expect(await stores[0]!.hasFamily(record.family)).toBe(false);
        }
        for (const store of stores) await store.close();
      } finally {
        await Promise.all(clients.map((client) => client.end()));
      }
    });

    it('concurrent rotations racing revokeFamilies: at most one ok, and the family ends revoked, 10 rounds', async () => {
      const store = new PostgresStore({ pool, table: newTable('fam_revoke_race') });
      for (let round = 0; round < 10; round++) {
        const record = newFamily();
        await store.createFamily(record);
        const ops: Promise<unknown>[] = Array.from({ length: 20 }, () =>
          store.rotateFamily(record.family, record.tokenHash, next()),
        );
        ops.splice(round * 2, 0, store.revokeFamilies('alice'));
        const results = (await Promise.all(ops)).filter((r) => r !== undefined) as { ok: boolean }[];
        expect(results.filter((r) => r.ok).length).toBeLessThanOrEqual(1);
        expect(await store.hasFamily(record.family)).toBe(false);
      }
      await store.close();
    });

    it('with SERIALIZABLE sessions, racing rotations are retried: one ok and no error', async () => {
      const strict = new pg.Pool({
        connectionString: PG_URL,
        max: 10,
        options: '-c default_transaction_isolation=serializable',
      });
      strict.on('error', () => undefined);
      try {
        const store = new PostgresStore({ pool: strict, table: newTable('fam_serializable') });
        for (let round = 0; round < 5; round++) {
          const record = newFamily();
          await store.createFamily(record);
          const results = await Promise.all(
            Array.from({ length: 10 }, () => store.rotateFamily(record.family, record.tokenHash, next())),
          );
          expect(results.filter((r) => r.ok)).toHaveLength(1);
          expect(await store.hasFamily(record.family)).toBe(false);
        }
        await store.close();
      } finally {
        await strict.end();
      }
    });

    it('on a token table from before API mode, the first call adds the family table only, without waiting on the token table', async () => {
      const table = newTable('fam_upgrade');
      await pool.query(tokenSchemaSql(table)); // the schema of the previous release
      const running = new PostgresStore({ pool, table, createTable: false });
      const tokenHash = newHash();
      await running.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
      // A write transaction stays open on the token table while the upgraded instance starts.
      const holder = await pool.connect();
      const spy = recording(pool);
      const upgraded = new PostgresStore({ pool: spy, table });
      try {
        await holder.query('BEGIN');
        await holder.query(
          `INSERT INTO ${quoteTable(table)} (uid, token_hash, expires_at) VALUES ('zz', $1, now())`,
          [newHash()],
        );
        const record = newFamily();
        await withTimeout(upgraded.createFamily(record), 1500, 'the first call of an upgraded instance');
        const ddl = spy.texts.filter((t) => t.startsWith('CREATE'));
        expect(ddl).toHaveLength(1);
        expect(ddl[0]).toBe(schemaSql(table).slice(tokenSchemaSql(table).length + 1));
        expect(ddl[0]).not.toContain(purgeIndexName(table));
        expect(await upgraded.hasFamily(record.family)).toBe(true);
        expect(await running.consume('alice', tokenHash, { keep: false })).toEqual({ ok: true });
      } finally {
        await holder.query('ROLLBACK');
        holder.release();
        await upgraded.close();
        await running.close();
      }
    });

    it('with createTable: false on a schema without the family table, family calls fail with the driver error, token calls work, and both work once schemaSql ran again', async () => {
      const table = newTable('fam_migrate');
      await pool.query(tokenSchemaSql(table));
      const store = new PostgresStore({ pool, table, createTable: false, sweepInterval: 20 });
      const record = newFamily();
      await expect(store.createFamily(record)).rejects.toMatchObject({ code: '42P01' });
      await expect(store.rotateFamily(record.family, record.tokenHash, next())).rejects.toMatchObject({
        code: '42P01',
      });
      const tokenHash = newHash();
      await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
      // The token purge runs on even though the family purge fails.
      await store.storeOrUpdate({ uid: 'old', tokenHash: newHash(), expiresAt: new Date(Date.now() - 1) });
      await vi.waitFor(async () => expect((await rowsOf(table)).map((r) => r.uid)).toEqual(['alice']), {
        timeout: 5000,
        interval: 20,
      });
      await pool.query(schemaSql(table)); // the migration, re-run after the upgrade
      await store.createFamily(record);
      expect((await store.rotateFamily(record.family, record.tokenHash, next())).ok).toBe(true);
      expect(await store.consume('alice', tokenHash, { keep: false })).toEqual({ ok: true });
      await store.close();
    });

    it('a 63-byte table name gets distinct family relations within the limit, found by the next instance', async () => {
      const prefix = `pwl_test_${runId}_long_`;
      const table = newTable(`long_${'x'.repeat(63 - Buffer.byteLength(prefix))}`);
      expect(Buffer.byteLength(table)).toBe(63);
      const store = new PostgresStore({ pool, table });
      const record = newFamily();
      await store.createFamily(record);
      const names = familyNames(table);
      expect(names.table).not.toBe(`${table}_families`);
      expect(await tableExists(quoteFamilyTable(table))).toBe(true);
      const spy = recording(pool);
      const again = new PostgresStore({ pool: spy, table });
      expect(await again.hasFamily(record.family)).toBe(true);
      expect(ddlCount(spy.texts)).toBe(0);
      await store.close();
      await again.close();
    });

    it('a refresh while the database is cut answers 503 within 2 s, and the same refresh token works once it is back', async () => {
      const proxy = tcpProxy();
      await proxy.start();
      const flaky = new pg.Pool({
        host: PG_HOST,
        port: proxy.port,
        user: 'postgres',
        database: 'test',
        max: 5,
        connectionTimeoutMillis: 1000,
      });
      flaky.on('error', () => undefined);
      const store = new PostgresStore({ pool: flaky, table: newTable('fam_outage') });
      const { app, sent, errors } = apiApp(store);
      try {
        await request(app).post('/auth/request').send({ user: 'alice@example.com' }).expect(202);
        const login = await request(app)
          .post('/auth/accept')
          .send({ uid: 'alice@example.com', token: sent.at(-1)!.token })
          .expect(200);
        await noUnhandledRejection(async () => {
          await proxy.stop();
          const refresh = await timed(() =>
            request(app).post('/auth/refresh').send({ refreshToken: login.body.refreshToken }),
          );
          expect(refresh.result.status).toBe(503);
          expect(refresh.result.body).toEqual({ error: 'temporarily_unavailable' });
          expect(refresh.ms).toBeLessThan(2000);
          const checked = await timed(() =>
            request(app).get('/checked').set('Authorization', `Bearer ${login.body.accessToken}`),
          );
          expect(checked.result.status).toBe(503);
          expect(checked.ms).toBeLessThan(2000);
          await proxy.start();
        });
        expect(errors.map((e) => e.code)).toEqual(['STORE_ERROR', 'STORE_ERROR']);
        const again = await request(app)
          .post('/auth/refresh')
          .send({ refreshToken: login.body.refreshToken })
          .expect(200);
        await request(app)
          .get('/checked')
          .set('Authorization', `Bearer ${again.body.accessToken}`)
          .expect(200);
      } finally {
        await store.close();
        await proxy.stop();
        await flaky.end();
      }
    });

    it('rotateFamily against a database that refuses connections rejects within 2 s', async () => {
      const dead = new pg.Pool({
        host: '127.0.0.1',
        port: 1,
        user: 'postgres',
        connectionTimeoutMillis: 1000,
      });
      dead.on('error', () => undefined);
      const store = new PostgresStore({ pool: dead });
      await noUnhandledRejection(async () => {
        const started = performance.now();
        await expect(store.rotateFamily(newHash(), newHash(), next())).rejects.toThrow();
        await expect(store.hasFamily(newHash())).rejects.toThrow();
        expect(performance.now() - started).toBeLessThan(2000);
      });
      await store.close();
      await dead.end();
    });
  });

  describe('table names', () => {
    it('escapes a hostile table name: the table gets that exact name and no other statement runs', async () => {
      // Short names (identifiers are limited to 63 bytes): a random part instead of the full run id.
      const tiny = randomBytes(3).toString('hex');
      const sentinel = `pwl_s_${tiny}`;
      const hostile = `pwl_h_${tiny}"; DROP TABLE ${sentinel}; --`;
      createdTables.push(sentinel, hostile);
      await pool.query(`CREATE TABLE ${quoteTable(sentinel)} (x int)`);
      const store = new PostgresStore({ pool, table: hostile });
      const tokenHash = newHash();
      await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture(), origin: '/x' });
      expect(await store.length()).toBe(1);
      expect(await store.consume('alice', tokenHash, { keep: false })).toEqual({ ok: true, origin: '/x' });
      await store.invalidateUser('alice');
      const family = newFamily();
      await store.createFamily(family);
      expect((await store.rotateFamily(family.family, family.tokenHash, newFamily())).ok).toBe(true);
      expect(await store.hasFamily(family.family)).toBe(true);
      await store.revokeFamilies('alice');
      expect(await store.revokeFamily(family.family)).toBeUndefined();
      await store.clear();
      expect(await tableExists(quoteTable(sentinel))).toBe(true);
      expect(await tableExists(quoteFamilyTable(hostile))).toBe(true);
      const found = await pool.query('SELECT count(*)::int AS n FROM pg_tables WHERE tablename = $1', [
        hostile,
      ]);
      expect(found.rows[0].n).toBe(1);
      await store.close();
    });

    it('uses a schema-qualified table in that schema', async () => {
      const schema = `pwl_test_${runId}_schema`;
      createdSchemas.push(schema);
      await pool.query(`CREATE SCHEMA ${escapeIdentifier(schema)}`);
      const store = new PostgresStore({ pool, table: `${schema}.tokens` });
      const tokenHash = newHash();
      await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
      const where = await pool.query(
        'SELECT schemaname FROM pg_tables WHERE tablename = $1 AND schemaname = $2',
        ['tokens', schema],
      );
      expect(where.rows).toHaveLength(1);
      expect(await tableExists('public.tokens')).toBe(false);
      expect((await store.consume('alice', tokenHash, { keep: false })).ok).toBe(true);
      // The family table lives in the same schema.
      const family = newFamily();
      await store.createFamily(family);
      expect(await tableExists(`${escapeIdentifier(schema)}."tokens_families"`)).toBe(true);
      expect(await tableExists('public.tokens_families')).toBe(false);
      expect(await store.hasFamily(family.family)).toBe(true);
      await store.close();
    });
  });

  describe('table creation', () => {
    it('concurrent first calls of one store run the CREATE once', async () => {
      const table = newTable('once');
      const spy = recording(pool);
      const store = new PostgresStore({ pool: spy, table });
      const results = await Promise.all(Array.from({ length: 20 }, () => store.length()));
      expect(results).toEqual(Array(20).fill(0));
      expect(ddlCount(spy.texts)).toBe(1);
      await store.length();
      expect(ddlCount(spy.texts)).toBe(1);
      await store.close();
    });

    it('stores in separate connections (as separate processes) creating one table at once all succeed', async () => {
      const table = newTable('race');
      for (let round = 0; round < 5; round++) {
        await pool.query(`DROP TABLE IF EXISTS ${quoteTable(table)}, ${quoteFamilyTable(table)}`);
        // Separate clients: each CREATE runs in its own session, as it would from several app instances.
        const clients = await Promise.all(
          Array.from({ length: 6 }, async () => {
            const client = new pg.Client({ connectionString: PG_URL });
            await client.connect();
            return client;
          }),
        );
        try {
          const stores = clients.map((client) => new PostgresStore({ pool: client, table }));
          await Promise.all(
            stores.map((store, i) =>
              store.storeOrUpdate({ uid: `u${i}`, tokenHash: newHash(), expiresAt: inFuture() }),
            ),
          );
          expect(await stores[0]!.length()).toBe(6);
          for (const store of stores) await store.close();
        } finally {
          await Promise.all(clients.map((client) => client.end()));
        }
      }
    });

    it("a new instance's first call on an existing table neither waits for an open write transaction nor stalls other instances' logins", async () => {
      const table = newTable('ddl_lock');
      await pool.query(schemaSql(table));
      const running = new PostgresStore({ pool, table });
      const tokenHash = newHash();
      await running.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
      // Some write transaction on the table stays open (a long purge, a maintenance job, another app's insert).
      const holder = await pool.connect();
      const startingPool = new pg.Pool({ connectionString: PG_URL, max: 2 });
      startingPool.on('error', () => {});
      const starting = new PostgresStore({ pool: startingPool, table });
      try {
        await holder.query('BEGIN');
        await holder.query(
          `INSERT INTO ${quoteTable(table)} (uid, token_hash, expires_at) VALUES ('zz', $1, now())`,
          [newHash()],
        );
        // A new app instance starts. `CREATE INDEX IF NOT EXISTS` would queue for a SHARE lock behind the open
        // transaction, and the running instance's login below would queue behind that request.
        const firstCall = starting.length();
        await new Promise((resolve) => setTimeout(resolve, 200));
        const login = running.consume('alice', tokenHash, { keep: false });
        const outcome = await withTimeout(
          Promise.all([firstCall, login]),
          1500,
          'a first call and a login while a write transaction is open',
        );
        expect(outcome).toEqual([1, { ok: true }]);
      } finally {
        await holder.query('ROLLBACK');
        holder.release();
        await starting.close();
        await running.close();
        await startingPool.end();
      }
    });

    it('a role that may only read and write the rows (no ownership, no CREATE) works with createTable: true', async () => {
      const schema = `pwl_test_${runId}_grants`;
      const role = `pwl_test_${runId}_role`;
      createdSchemas.push(schema);
      await pool.query(`CREATE SCHEMA ${escapeIdentifier(schema)}`);
      const table = `${schema}.tokens`;
      await pool.query(schemaSql(table)); // the migration, run by the owner
      await pool.query(`CREATE ROLE ${escapeIdentifier(role)} NOLOGIN`);
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      try {
        await pool.query(`GRANT USAGE ON SCHEMA ${escapeIdentifier(schema)} TO ${escapeIdentifier(role)}`);
        await pool.query(
          `GRANT SELECT, INSERT, UPDATE, DELETE ON ${quoteTable(table)}, ${quoteFamilyTable(table)} TO ${escapeIdentifier(role)}`,
        );
        // The app's connection acts as that role (SET ROLE: the same privilege checks as logging in as it).
        await client.query(`SET ROLE ${escapeIdentifier(role)}`);
        const store = new PostgresStore({ pool: client, table });
        const tokenHash = newHash();
        // Before the fix: 42501 "must be owner of table tokens" (CREATE INDEX IF NOT EXISTS) on every call.
        await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
        expect(await store.length()).toBe(1);
        expect(await store.consume('alice', tokenHash, { keep: false })).toEqual({ ok: true });
        const family = newFamily();
        await store.createFamily(family);
        expect(await store.rotateFamily(family.family, family.tokenHash, newFamily())).toEqual({
          ok: true,
          uid: 'alice',
        });
        await store.clear();
        await store.close();
      } finally {
        await client.end();
        await pool.query(`DROP SCHEMA ${escapeIdentifier(schema)} CASCADE`);
        await pool.query(`DROP ROLE ${escapeIdentifier(role)}`);
      }
    });

    it('creates the missing purge index at first use when the table exists without it', async () => {
      const table = newTable('no_index');
      const tableOnly = schemaSql(table)
        .split('\n')
        .filter((line) => !line.startsWith('CREATE INDEX'))
        .join('\n');
      await pool.query(tableOnly);
      const store = new PostgresStore({ pool, table });
      expect(await store.length()).toBe(0);
      const { rows } = await pool.query('SELECT indexname FROM pg_indexes WHERE tablename = $1', [table]);
      expect(rows.map((r) => r.indexname)).toContain(purgeIndexName(table));
      await store.close();
    });

    it('with createTable: false issues no DDL, and works once the exported schemaSql ran', async () => {
      const table = newTable('migrated');
      const spy = recording(pool);
      const store = new PostgresStore({ pool: spy, table, createTable: false });
      await expect(store.length()).rejects.toMatchObject({ code: '42P01' }); // undefined_table, the driver's error
      await pool.query(schemaSql(table));
      await pool.query(schemaSql(table)); // idempotent, as a migration re-run would be
      const tokenHash = newHash();
      await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
      expect((await store.consume('alice', tokenHash, { keep: false })).ok).toBe(true);
      expect(spy.texts.some((t) => /\bCREATE\b/.test(t))).toBe(false);
      await store.close();
    });
  });

  describe('lifecycle', () => {
    it('purges expired rows by itself, and close() stops the purge without ending the pool', async () => {
      const table = newTable('purge');
      const spy = recording(pool);
      const store = new PostgresStore({ pool: spy, table, sweepInterval: 30 });
      await store.storeOrUpdate({
        uid: 'old1',
        tokenHash: newHash(),
        expiresAt: new Date(Date.now() - 1000),
      });
      await store.storeOrUpdate({ uid: 'old2', tokenHash: newHash(), expiresAt: new Date(Date.now() + 40) });
      await store.storeOrUpdate({ uid: 'live', tokenHash: newHash(), expiresAt: inFuture() });
      // Nothing but the purge deletes rows here (no consume, no invalidate): both expired rows must go.
      await vi.waitFor(async () => expect((await rowsOf(table)).map((r) => r.uid)).toEqual(['live']), {
        timeout: 5000,
        interval: 20,
      });
      await store.close();
      const purges = () => spy.texts.filter((t) => t.startsWith('DELETE') && t.includes('<=')).length;
      const afterClose = purges();
      await new Promise((resolve) => setTimeout(resolve, 120));
      expect(purges()).toBe(afterClose);
      expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect(pool.ending).toBe(false);
    });

    it('the store keeps working when called after close()', async () => {
      const table = newTable('reuse');
      const store = new PostgresStore({ pool, table });
      await store.close();
      await store.storeOrUpdate({ uid: 'alice', tokenHash: newHash(), expiresAt: inFuture() });
      expect(await store.length()).toBe(1);
      await store.close();
    });

    it('clear() empties its own table only', async () => {
      const mine = newTable('clear_a');
      const other = newTable('clear_b');
      const a = new PostgresStore({ pool, table: mine });
      const b = new PostgresStore({ pool, table: other });
      await a.storeOrUpdate({ uid: 'alice', tokenHash: newHash(), expiresAt: inFuture() });
      await b.storeOrUpdate({ uid: 'alice', tokenHash: newHash(), expiresAt: inFuture() });
      await a.clear();
      expect(await a.length()).toBe(0);
      expect(await b.length()).toBe(1);
      await a.close();
      await b.close();
    });
  });

  describe('concurrency', () => {
    it('50 concurrent consumes of one token: exactly one succeeds, 20 rounds', async () => {
      const store = new PostgresStore({ pool, table: newTable('race50') });
      for (let round = 0; round < 20; round++) {
        const tokenHash = newHash();
        await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
        const results = await Promise.all(
          Array.from({ length: 50 }, () => store.consume('alice', tokenHash, { keep: false })),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(1);
        expect(results.filter((r) => !r.ok && r.reason !== 'missing')).toEqual([]);
      }
      await store.close();
    });

    it('30 concurrent wrong tries with maxAttempts 5: five are compared and counted, the rest find nothing', async () => {
      const store = new PostgresStore({ pool, table: newTable('attempts') });
      const tokenHash = newHash();
      await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture(), maxAttempts: 5 });
      const results = await Promise.all(
        Array.from({ length: 30 }, () => store.consume('alice', newHash(), { keep: false })),
      );
      const reasons = results.map((r) => (r.ok ? 'ok' : r.reason)).sort();
      expect(reasons.filter((r) => r === 'mismatch')).toHaveLength(4);
      expect(reasons.filter((r) => r === 'exhausted')).toHaveLength(1);
      expect(reasons.filter((r) => r === 'missing')).toHaveLength(25);
      expect((await store.consume('alice', tokenHash, { keep: false })).ok).toBe(false);
      await store.close();
    });

    it('with SERIALIZABLE sessions, racing consumes are retried: one success and no error', async () => {
      const strict = new pg.Pool({
        connectionString: PG_URL,
        max: 10,
        options: '-c default_transaction_isolation=serializable',
      });
      strict.on('error', () => undefined);
      try {
        const store = new PostgresStore({ pool: strict, table: newTable('serializable') });
        for (let round = 0; round < 5; round++) {
          const tokenHash = newHash();
          await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
          const results = await Promise.all(
            Array.from({ length: 20 }, () => store.consume('alice', tokenHash, { keep: false })),
          );
          expect(results.filter((r) => r.ok)).toHaveLength(1);
        }
        await store.close();
      } finally {
        await strict.end();
      }
    });

    it('over HTTP, 50 parallel GETs with one single-use token log in exactly once, 20 rounds', async () => {
      const store = new PostgresStore({ pool, table: newTable('http') });
      const { app, outbox, errors } = createApp({ store });
      const server = http.createServer(app);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        for (let round = 0; round < 20; round++) {
          await request(server).post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(200);
          const query = linkQuery(outbox.last());
          const responses = await Promise.all(
            Array.from({ length: 50 }, () => request(server).get(`/?${query}`)),
          );
          expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200));
          expect(responses.filter((r) => r.body.user)).toHaveLength(1);
        }
        expect(errors).toEqual([]);
      } finally {
        await new Promise((resolve) => server.close(resolve));
        await store.close();
      }
    });
  });

  describe('outages', () => {
    it('a database that refuses connections gives 500 STORE_ERROR within 2 s, with no unhandled rejection', async () => {
      const dead = new pg.Pool({
        host: '127.0.0.1',
        port: 1,
        user: 'postgres',
        connectionTimeoutMillis: 1000,
      });
      dead.on('error', () => undefined);
      const store = new PostgresStore({ pool: dead });
      const { app, errors } = createApp({ store });
      await noUnhandledRejection(async () => {
        const send = await timed(() =>
          request(app).post('/sendtoken').type('form').send({ user: 'a@example.com' }),
        );
        expect(send.result.status).toBe(500);
        expect(send.result.body).toEqual({ error: 'STORE_ERROR' });
        expect(send.ms).toBeLessThan(2000);
        const accept = await timed(() => request(app).get('/?token=x&uid=y'));
        expect(accept.result.status).toBe(500);
        expect(accept.result.body).toEqual({ error: 'STORE_ERROR' });
        expect(accept.ms).toBeLessThan(2000);
      });
      expect(errors).toHaveLength(2);
      for (const err of errors) {
        expect(err).toBeInstanceOf(PasswordlessError);
        expect((err as PasswordlessError).cause).toBeInstanceOf(Error);
      }
      await store.close();
      await dead.end();
    });

    it('a database that accepts connections and never answers gives STORE_ERROR within 2 s with the documented pool options', async () => {
      const sockets = new Set<net.Socket>();
      const blackHole = net.createServer((socket) => {
        sockets.add(socket);
        socket.on('error', () => undefined);
      });
      await new Promise<void>((resolve) => blackHole.listen(0, PG_HOST, resolve));
      const port = (blackHole.address() as net.AddressInfo).port;
      const hung = new pg.Pool({
        host: PG_HOST,
        port,
        user: 'postgres',
        connectionTimeoutMillis: 1000,
        query_timeout: 1500,
      });
      hung.on('error', () => undefined);
      const store = new PostgresStore({ pool: hung });
      const { app } = createApp({ store });
      try {
        await noUnhandledRejection(async () => {
          const send = await timed(() =>
            request(app).post('/sendtoken').type('form').send({ user: 'a@example.com' }),
          );
          expect(send.result.status).toBe(500);
          expect(send.result.body).toEqual({ error: 'STORE_ERROR' });
          expect(send.ms).toBeLessThan(2000);
        });
      } finally {
        await store.close();
        await hung.end();
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => blackHole.close(resolve));
      }
    });

    it('after the connection to the database is cut and restored, logins work again without a restart', async () => {
      const proxy = tcpProxy();
      await proxy.start();
      const port = proxy.port;
      const flaky = new pg.Pool({
        host: PG_HOST,
        port,
        user: 'postgres',
        database: 'test',
        max: 5,
        connectionTimeoutMillis: 1000,
      });
      const flakyErrors: unknown[] = [];
      flaky.on('error', (err) => flakyErrors.push(err));
      const store = new PostgresStore({ pool: flaky, table: newTable('recovery') });
      const { app, outbox } = createApp({ store });
      const agent = () => request(app);

      const login = async () => {
        await agent().post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(200);
        const res = await agent()
          .get(`/?${linkQuery(outbox.last())}`)
          .expect(200);
        expect(res.body.user).toBe('a@example.com');
      };
      const expectOutage = async () => {
        const send = await timed(() =>
          agent().post('/sendtoken').type('form').send({ user: 'a@example.com' }),
        );
        expect(send.result.status).toBe(500);
        expect(send.result.body).toEqual({ error: 'STORE_ERROR' });
        expect(send.ms).toBeLessThan(2000);
        const accept = await timed(() => agent().get('/?token=x&uid=a@example.com'));
        expect(accept.result.status).toBe(500);
        expect(accept.result.body).toEqual({ error: 'STORE_ERROR' });
        expect(accept.ms).toBeLessThan(2000);
      };

      try {
        await noUnhandledRejection(async () => {
          // Down before the first call: the CREATE fails and is tried again once the database is back.
          await proxy.stop();
          await expectOutage();
          await proxy.start();
          expect(proxy.port).toBe(port);
          await login();
          // Down with open pooled connections: they are cut mid-life.
          await proxy.stop();
          await expectOutage();
          await proxy.start();
          await login();
        });
      } finally {
        await store.close();
        await proxy.stop();
        await flaky.end();
      }
    });
  });
});
