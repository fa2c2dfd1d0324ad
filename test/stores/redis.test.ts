import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  type ConsumeOptions,
  PasswordlessError,
  type RefreshFamily,
  type TokenRecord,
} from 'express-passwordless';
import { tokenStoreContract } from 'express-passwordless/testing';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { RedisStore } from '../../stores/redis/index.js';
import { SCRIPTS } from '../../stores/redis/scripts.js';
import { createApp, linkQuery, type TestApp } from '../helpers/create-app.js';
import { describeWithServer } from '../helpers/server.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Every key this run writes on the shared server starts with this, so parallel runs and leftovers never collide. */
const RUN = `test:${process.pid}:${randomBytes(4).toString('hex')}:`;

/** A client as an app would make it; connection errors surface as rejected commands, not as 'error' noise. */
function redisClient(url: string, options: RedisOptions = {}): Redis {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, ...options });
  client.on('error', () => {});
  return client;
}

const sharedClient = (options: RedisOptions = {}) => redisClient(REDIS_URL, options);

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const newHash = () => sha256(randomBytes(16).toString('hex'));
const inFuture = (ms = 60_000) => new Date(Date.now() + ms);

async function listen(server: http.Server): Promise<void> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
}

async function closeServer(server: http.Server | undefined): Promise<void> {
  if (!server?.listening) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

const describeRedis = await describeWithServer('Redis', async () => {
  const probe = sharedClient({ retryStrategy: () => null, enableOfflineQueue: false });
  try {
    await probe.connect();
    return await probe.ping();
  } finally {
    probe.disconnect();
  }
});

describeRedis('RedisStore on the shared server', () => {
  let client: Redis;

  beforeAll(async () => {
    client = sharedClient();
    await client.connect();
  });

  afterAll(async () => {
    await new RedisStore({ client, prefix: RUN }).clear();
    client.disconnect();
  });

  tokenStoreContract('RedisStore', () => new RedisStore({ client, prefix: `${RUN}contract:` }));

  it('keeps only the hash of the token, in one hash per uid with a Redis expiry (PTTL > 0, at most ttl)', async () => {
    const prefix = `${RUN}shape:`;
    const t = createApp({ store: new RedisStore({ client, prefix }), delivery: { ttl: 60_000 } });
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const { token, expiresAt } = t.outbox.last();
    const key = `${prefix}ann@example.com`;

    expect(await client.type(key)).toBe('hash');
    const fields = await client.hgetall(key);
    expect(fields).toEqual({ h: sha256(token), e: String(expiresAt.getTime()) });
    const dump = await client.dumpBuffer(key);
    expect(dump.includes(Buffer.from(token))).toBe(false);
    expect(JSON.stringify(fields)).not.toContain(token);

    const pttl = await client.pttl(key);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(60_000);
  });

  it('stores origin and maxAttempts only when given, and counts attempts in the same hash', async () => {
    const prefix = `${RUN}fields:`;
    const store = new RedisStore({ client, prefix });
    const tokenHash = newHash();
    await store.storeOrUpdate({ uid: 'ann', tokenHash, expiresAt: inFuture(), origin: '/a', maxAttempts: 3 });
    expect(await store.consume('ann', newHash(), { keep: false })).toEqual({ ok: false, reason: 'mismatch' });
    expect(await client.hgetall(`${prefix}ann`)).toMatchObject({ h: tokenHash, o: '/a', m: '3', a: '1' });
    expect(await store.consume('ann', tokenHash, { keep: false })).toEqual({ ok: true, origin: '/a' });
    expect(await client.exists(`${prefix}ann`)).toBe(0);
  });

  it('accepts a record whose expiresAt has passed, writes nothing, and drops the earlier token', async () => {
    const prefix = `${RUN}past:`;
    const store = new RedisStore({ client, prefix });
    const earlier = newHash();
    await store.storeOrUpdate({ uid: 'ann', tokenHash: earlier, expiresAt: inFuture() });
    const past: TokenRecord = { uid: 'ann', tokenHash: newHash(), expiresAt: new Date(Date.now() - 60_000) };
    await expect(store.storeOrUpdate(past)).resolves.toBeUndefined();
    expect(await client.exists(`${prefix}ann`)).toBe(0);
    expect((await store.consume('ann', past.tokenHash, { keep: false })).ok).toBe(false);
    expect((await store.consume('ann', earlier, { keep: false })).ok).toBe(false);
  });

  it('refuses a record past expiresAt in the script even before Redis has purged the key', async () => {
    const prefix = `${RUN}clock:`;
    const store = new RedisStore({ client, prefix });
    const tokenHash = newHash();
    await store.storeOrUpdate({ uid: 'ann', tokenHash, expiresAt: inFuture() });
    // Pretend the record's instant has passed while its Redis TTL still runs (app clock ahead, or lazy expiry).
    await client.hset(`${prefix}ann`, 'e', String(Date.now() - 1));
    expect(await store.consume('ann', tokenHash, { keep: false })).toEqual({ ok: false, reason: 'expired' });
    expect(await client.exists(`${prefix}ann`)).toBe(0);
  });

  it('length() judges expiry by the app clock, as consume does: a token past expiresAt is not counted while its key lives', async () => {
    const store = new RedisStore({ client, prefix: `${RUN}lenclock:` });
    const tokenHash = newHash();
    const expiresAt = inFuture(30_000);
    await store.storeOrUpdate({ uid: 'ann', tokenHash, expiresAt });
    await store.storeOrUpdate({ uid: 'bob', tokenHash: newHash(), expiresAt: inFuture(120_000) });
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(expiresAt.getTime() - 1);
      expect(await store.length()).toBe(2);
      // The app's clock has reached expiresAt; Redis's PEXPIREAT (its own clock) has not fired yet.
      vi.setSystemTime(expiresAt.getTime());
      expect(await store.length()).toBe(1);
      expect(await store.consume('ann', tokenHash, { keep: true })).toEqual({ ok: false, reason: 'expired' });
    } finally {
      vi.useRealTimers();
    }
  });

  it('a foreign value at a key of the prefix is no token: consume rejects (never ok), length() skips it, a new token replaces it', async () => {
    const prefix = `${RUN}foreign:`;
    const store = new RedisStore({ client, prefix });
    await client.set(`${prefix}ann`, 'written by another program');
    await client.hset(`${prefix}bob`, 'h', newHash()); // a hash without `e`
    await expect(store.consume('ann', newHash(), { keep: false })).rejects.toThrow(/WRONGTYPE/);
    await expect(store.invalidateUser('ann', newHash())).rejects.toThrow(/WRONGTYPE/);
    expect(await store.length()).toBe(0);
    const bobHash = await client.hget(`${prefix}bob`, 'h');
    expect(await store.consume('bob', bobHash!, { keep: false })).toEqual({ ok: false, reason: 'expired' });
    const tokenHash = newHash();
    await store.storeOrUpdate({ uid: 'ann', tokenHash, expiresAt: inFuture() });
    expect(await store.length()).toBe(1);
    expect(await store.consume('ann', tokenHash, { keep: false })).toEqual({ ok: true });
  });

  it.each([
    ['a*:', 'ab:'],
    ['a?:', 'ax:'],
    ['[ab]:', 'a:'],
    ['back\\slash:', 'backslash:'],
  ])('clear() and length() of prefix %j leave the keys of prefix %j', async (mine, theirs) => {
    // Unescaped, the SCAN pattern `${mine}*` would also match the keys of `theirs`.
    const base = `${RUN}glob:${randomBytes(2).toString('hex')}:`;
    const store = new RedisStore({ client, prefix: `${base}${mine}` });
    const other = new RedisStore({ client, prefix: `${base}${theirs}` });
    const otherHash = newHash();
    await store.storeOrUpdate({ uid: 'u1', tokenHash: newHash(), expiresAt: inFuture() });
    await store.storeOrUpdate({ uid: 'u2', tokenHash: newHash(), expiresAt: inFuture() });
    await other.storeOrUpdate({ uid: 'u1', tokenHash: otherHash, expiresAt: inFuture() });

    expect(await store.length()).toBe(2);
    expect(await other.length()).toBe(1);
    await store.clear();
    expect(await store.length()).toBe(0);
    expect(await other.length()).toBe(1);
    expect(await other.consume('u1', otherHash, { keep: false })).toEqual({ ok: true });
  });

  it('clear() leaves keys outside the prefix, and pages through more keys than one SCAN batch', async () => {
    const prefix = `${RUN}many:`;
    const store = new RedisStore({ client, prefix });
    const pipeline = client.pipeline();
    const e = String(Date.now() + 60_000);
    for (let i = 0; i < 2500; i++) pipeline.hset(`${prefix}u${i}`, 'h', 'x', 'e', e);
    pipeline.set(`${RUN}many`, 'not mine');
    pipeline.set(`${RUN}manyx:u1`, 'not mine');
    await pipeline.exec();
    expect(await store.length()).toBe(2500);
    await store.clear();
    expect(await store.length()).toBe(0);
    expect(await client.get(`${RUN}many`)).toBe('not mine');
    expect(await client.get(`${RUN}manyx:u1`)).toBe('not mine');
  });

  describe('the failure budget in the same hash (f, u, k)', () => {
    const budget = { max: 3, window: 60_000 };
    const prefix = `${RUN}budget:`;
    let store: RedisStore;
    const key = (uid: string) => `${prefix}${uid}`;
    const code = (uid: string, tokenHash: string, ms = 5_000): TokenRecord => ({
      uid,
      tokenHash,
      expiresAt: inFuture(ms),
      maxAttempts: 2,
      lockable: true,
    });
    const guess = (uid: string) => store.consume(uid, newHash(), { keep: false, budget });

    beforeAll(() => {
      store = new RedisStore({ client, prefix });
    });
    beforeEach(() => store.clear());

    it('counts failures in f/u next to the token, and the key expires at the later of e and u', async () => {
      const tokenHash = newHash();
      expect(await store.storeOrUpdate(code('ann', tokenHash), budget)).toBeUndefined();
      expect(await client.hgetall(key('ann'))).toMatchObject({ h: tokenHash, m: '2', k: '1' });
      expect(await client.pttl(key('ann'))).toBeLessThanOrEqual(5_000);
      const before = Date.now();
      expect(await guess('ann')).toEqual({ ok: false, reason: 'mismatch' });
      const fields = await client.hgetall(key('ann'));
      expect(fields).toMatchObject({ h: tokenHash, a: '1', f: '1' });
      expect(Number(fields.u)).toBeGreaterThanOrEqual(before + budget.window);
      expect(Number(fields.u)).toBeLessThanOrEqual(Date.now() + budget.window);
      expect(await client.pttl(key('ann'))).toBeGreaterThan(50_000);
    });

    it('a code voided at maxAttempts leaves a key with only f and u, whose PTTL follows the failure window', async () => {
      await store.storeOrUpdate(code('bea', newHash()), budget);
      await guess('bea');
      expect(await guess('bea')).toEqual({ ok: false, reason: 'exhausted' });
      const fields = await client.hgetall(key('bea'));
      expect(Object.keys(fields).sort()).toEqual(['f', 'u']);
      expect(fields.f).toBe('2');
      const pttl = await client.pttl(key('bea'));
      expect(pttl).toBeGreaterThan(50_000);
      expect(pttl).toBeLessThanOrEqual(budget.window);
      expect(await client.pexpiretime(key('bea'))).toBe(Number(fields.u));
      // No token: nothing to count, nothing pending.
      expect(await guess('bea')).toEqual({ ok: false, reason: 'missing' });
      expect((await client.hgetall(key('bea'))).f).toBe('2');
      expect(await store.length()).toBe(0);
    });

    it('the third failure locks the uid across a new code: storeOrUpdate answers lockedUntil = u, a link still works and DELs the key', async () => {
      await store.storeOrUpdate(code('cid', newHash()), budget);
      await guess('cid');
      await guess('cid'); // exhausted: the code is void, the failures stay
      const second = newHash();
      expect(await store.storeOrUpdate(code('cid', second), budget)).toBeUndefined();
      expect(await client.hget(key('cid'), 'a')).toBeNull(); // a new token starts with no attempts
      await guess('cid');
      expect(await store.consume('cid', second, { keep: false, budget })).toEqual({
        ok: false,
        reason: 'locked',
      });
      const until = Number(await client.hget(key('cid'), 'u'));
      expect(await store.storeOrUpdate(code('cid', newHash()), budget)).toEqual({
        lockedUntil: new Date(until),
      });
      // The refused code was not written: the pending one is still `second`.
      expect(await client.hget(key('cid'), 'h')).toBe(second);
      const link = newHash();
      expect(
        await store.storeOrUpdate({ uid: 'cid', tokenHash: link, expiresAt: inFuture() }, budget),
      ).toBeUndefined();
      expect(await client.hget(key('cid'), 'k')).toBeNull();
      expect(await store.consume('cid', link, { keep: false, budget })).toEqual({ ok: true });
      expect(await client.exists(key('cid'))).toBe(0);
    });

    it('an expired token and invalidateUser remove only the token fields while failures are live', async () => {
      await store.storeOrUpdate(code('dan', newHash()), budget);
      await guess('dan');
      await client.hset(key('dan'), 'e', String(Date.now() - 1));
      expect(await store.length()).toBe(0); // the key lives on for its failures, but its token is past `e`
      expect(await guess('dan')).toEqual({ ok: false, reason: 'expired' });
      expect(Object.keys(await client.hgetall(key('dan'))).sort()).toEqual(['f', 'u']);

      const tokenHash = newHash();
      await store.storeOrUpdate(code('dan', tokenHash), budget);
      await store.invalidateUser('dan', newHash()); // another hash: nothing happens
      expect(await client.hget(key('dan'), 'h')).toBe(tokenHash);
      await store.invalidateUser('dan');
      expect(await client.hgetall(key('dan'))).toEqual({ f: '1', u: expect.any(String) });
      expect(await client.pttl(key('dan'))).toBeGreaterThan(50_000);
    });

    it('with keep, a match forgets the failures and the key expires at e again; without a budget they stay', async () => {
      const tokenHash = newHash();
      await store.storeOrUpdate(code('eve', tokenHash), budget);
      await guess('eve');
      expect(await store.consume('eve', tokenHash, { keep: false })).toEqual({ ok: true });
      expect(await client.hgetall(key('eve'))).toEqual({ f: '1', u: expect.any(String) });
      await store.storeOrUpdate(code('eve', tokenHash), budget);
      expect(await store.consume('eve', tokenHash, { keep: true, budget })).toEqual({ ok: true });
      const fields = await client.hgetall(key('eve'));
      expect(fields.f).toBeUndefined();
      expect(fields.u).toBeUndefined();
      expect(await client.pexpiretime(key('eve'))).toBe(Number(fields.e));
    });

    it('a failure whose window has passed no longer counts, and the key then lives only as long as its token', async () => {
      const short = { max: 1, window: 30 };
      await store.storeOrUpdate(code('fay', newHash()), short);
      await store.consume('fay', newHash(), { keep: false, budget: short });
      await new Promise((resolve) => setTimeout(resolve, 60));
      const tokenHash = newHash();
      expect(await store.storeOrUpdate(code('fay', tokenHash), short)).toBeUndefined();
      expect(Object.keys(await client.hgetall(key('fay'))).sort()).toEqual(['e', 'h', 'k', 'm']);
      expect(await client.pttl(key('fay'))).toBeLessThanOrEqual(5_000);
      await store.consume('fay', newHash(), { keep: false, budget: short });
      expect(await client.hget(key('fay'), 'f')).toBe('1');
    });
  });

  describe('refresh families (API mode): their own keys, apart from tokens', () => {
    const prefix = `${RUN}fam:`;
    let store: RedisStore;
    const familyKey = (family: string) => `${prefix}\u0001f:${family}`;
    const indexKey = (uid: string) => `${prefix}\u0001u:${uid}`;
    const login = async (uid = 'ann', ms = 60_000): Promise<RefreshFamily> => {
      const record = { family: newHash(), uid, tokenHash: newHash(), expiresAt: inFuture(ms) };
      await store.createFamily(record);
      return record;
    };
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

    beforeAll(() => {
      store = new RedisStore({ client, prefix });
    });
    beforeEach(() => store.clear());

    it("one hash { uid, h, e } per family expiring at e, listed in the uid's sorted set, which expires with its latest family", async () => {
      const a = await login('ann', 60_000);
      const b = await login('ann', 120_000);
      const e = (r: RefreshFamily) => r.expiresAt.getTime();
      expect(await client.type(familyKey(a.family))).toBe('hash');
      expect(await client.hgetall(familyKey(a.family))).toEqual({
        uid: 'ann',
        h: a.tokenHash,
        e: String(e(a)),
      });
      expect(await client.pexpiretime(familyKey(a.family))).toBe(e(a));
      expect(await client.type(indexKey('ann'))).toBe('zset');
      expect(await client.zrange(indexKey('ann'), '0', '-1', 'WITHSCORES')).toEqual([
        a.family,
        String(e(a)),
        b.family,
        String(e(b)),
      ]);
      expect(await client.pexpiretime(indexKey('ann'))).toBe(e(b));
      // A login with an earlier expiry never shortens the index.
      await login('ann', 30_000);
      expect(await client.pexpiretime(indexKey('ann'))).toBe(e(b));

      await store.storeOrUpdate({ uid: 'ann', tokenHash: newHash(), expiresAt: inFuture() });
      expect(await store.length()).toBe(1);
      expect((await client.keys(`${prefix}*`)).length).toBe(5); // the token, three families, one index
      await store.clear();
      expect(await client.keys(`${prefix}*`)).toEqual([]);
    });

    it("a rotation moves e, the key's expiry, the index score and the index's expiry forward", async () => {
      const a = await login('ann', 60_000);
      const next = { tokenHash: newHash(), expiresAt: inFuture(600_000) };
      expect(await store.rotateFamily(a.family, a.tokenHash, next)).toEqual({ ok: true, uid: 'ann' });
      const e = next.expiresAt.getTime();
      expect(await client.hgetall(familyKey(a.family))).toEqual({
        uid: 'ann',
        h: next.tokenHash,
        e: String(e),
      });
      expect(await client.pexpiretime(familyKey(a.family))).toBe(e);
      expect(await client.zscore(indexKey('ann'), a.family)).toBe(String(e));
      expect(await client.pexpiretime(indexKey('ann'))).toBe(e);
    });

    it('revokeFamilies still finds a family rotated past the expiry it was created with (rotation is an idle timeout)', async () => {
      const a = await login('ann', 100);
      const next = { tokenHash: newHash(), expiresAt: inFuture(60_000) };
      expect(await store.rotateFamily(a.family, a.tokenHash, next)).toEqual({ ok: true, uid: 'ann' });
      await sleep(300);
      await login('ann'); // another login of the uid prunes the index: the rotated family must stay listed
      expect(await store.hasFamily(a.family)).toBe(true);
      await store.revokeFamilies('ann');
      expect(await store.hasFamily(a.family)).toBe(false);
    });

    it('Redis itself deletes a family and its index at expiresAt, with no call from the app', async () => {
      const a = await login('ann', 50);
      expect(await client.exists(familyKey(a.family), indexKey('ann'))).toBe(2);
      await sleep(300);
      expect(await client.exists(familyKey(a.family), indexKey('ann'))).toBe(0);
    });

    it('judges expiry by the app clock while the key still lives: hasFamily false, rotateFamily "expired" deletes it', async () => {
      const a = await login('ann');
      await client.hset(familyKey(a.family), 'e', String(Date.now() - 1));
      expect(await store.hasFamily(a.family)).toBe(false);
      expect(await store.revokeFamily(a.family)).toBeUndefined();
      const b = await login('ann');
      await client.hset(familyKey(b.family), 'e', String(Date.now() - 1));
      expect(
        await store.rotateFamily(b.family, b.tokenHash, { tokenHash: newHash(), expiresAt: inFuture() }),
      ).toEqual({ ok: false, reason: 'expired' });
      expect(await client.exists(familyKey(b.family))).toBe(0);
    });

    it('accepts a family whose expiresAt has passed and writes nothing, not even to the index', async () => {
      const record = {
        family: newHash(),
        uid: 'ann',
        tokenHash: newHash(),
        expiresAt: new Date(Date.now() - 1),
      };
      await expect(store.createFamily(record)).resolves.toBeUndefined();
      expect(await client.exists(familyKey(record.family), indexKey('ann'))).toBe(0);
      const next = { tokenHash: newHash(), expiresAt: inFuture() };
      expect(await store.rotateFamily(record.family, record.tokenHash, next)).toEqual({
        ok: false,
        reason: 'missing',
      });
    });

    it('the index forgets members past their expiry at the next login; revokeFamilies removes the ones it handled', async () => {
      await login('ann', 50);
      await sleep(100);
      const b = await login('ann');
      expect(await client.zrange(indexKey('ann'), '0', '-1')).toEqual([b.family]);
      expect(await store.revokeFamily(b.family)).toBe('ann');
      expect(await client.zrange(indexKey('ann'), '0', '-1')).toEqual([b.family]); // lazily: it goes with its score
      await client.zadd(indexKey('ann'), String(Date.now() + 60_000), 'not a family');
      await store.revokeFamilies('ann');
      expect(await client.exists(indexKey('ann'))).toBe(0);
    });

    it('revokeFamilies deletes only families that still belong to the uid, whatever its index lists', async () => {
      const bob = await login('bob');
      const ann = await login('ann');
      // Another program slips bob's family into ann's index: "log out everywhere" of ann must not log bob out.
      await client.zadd(indexKey('ann'), String(Date.now() + 60_000), bob.family);
      await store.revokeFamilies('ann');
      expect(await store.hasFamily(ann.family)).toBe(false);
      expect(await store.hasFamily(bob.family)).toBe(true);
      expect(await client.zrange(indexKey('bob'), '0', '-1')).toEqual([bob.family]);
    });

    it.each([
      ['the hex of a family', (f: string) => f],
      ['shaped like a family key after the prefix', (f: string) => `f:${f}`],
      ['shaped like an index key after the prefix', () => 'u:ann'],
      ['a glob', () => '*'],
      ['a family hex and a glob', (f: string) => `${f}*`],
    ])(
      "a uid that is %s never meets ann's family: tokens, invalidateUser, revokeFamilies",
      async (_, hostile) => {
        const ann = await login('ann');
        const uid = hostile(ann.family);
        const tokenHash = newHash();
        await store.storeOrUpdate({ uid, tokenHash, expiresAt: inFuture() });
        expect(await store.length()).toBe(1);
        await store.revokeFamilies(uid);
        await store.invalidateUser(uid, newHash());
        expect(await store.hasFamily(ann.family)).toBe(true);
        expect(await store.consume(uid, tokenHash, { keep: true })).toEqual({ ok: true });
        // The hostile uid's own family and index are keys of their own too.
        const own = await login(uid);
        await store.invalidateUser(uid);
        expect(await store.hasFamily(own.family)).toBe(true);
        await store.revokeFamilies(uid);
        expect(await store.hasFamily(own.family)).toBe(false);
        expect(await store.hasFamily(ann.family)).toBe(true);
        expect(
          await store.rotateFamily(ann.family, ann.tokenHash, {
            tokenHash: newHash(),
            expiresAt: inFuture(),
          }),
        ).toEqual({ ok: true, uid: 'ann' });
        expect(await client.zrange(indexKey('ann'), '0', '-1')).toEqual([ann.family]);
      },
    );

    it('a foreign value at a family key is no family: hasFamily false, rotateFamily rejects, createFamily replaces it', async () => {
      const family = newHash();
      await client.set(familyKey(family), 'written by another program');
      await client.set(indexKey('ann'), 'written by another program');
      expect(await store.hasFamily(family)).toBe(false);
      const next = { tokenHash: newHash(), expiresAt: inFuture() };
      await expect(store.rotateFamily(family, newHash(), next)).rejects.toThrow(/WRONGTYPE/);
      await store.revokeFamilies('ann'); // a foreign value at the index lists nothing
      const record = { family, uid: 'ann', tokenHash: newHash(), expiresAt: inFuture() };
      await store.createFamily(record);
      expect(await store.hasFamily(family)).toBe(true);
      expect(await client.zrange(indexKey('ann'), '0', '-1')).toEqual([family]);
      expect(await store.rotateFamily(family, record.tokenHash, next)).toEqual({ ok: true, uid: 'ann' });
    });

    it('of 50 rotations with one hash over two connections exactly one wins and the family ends revoked, 20 rounds', async () => {
      const second = sharedClient();
      await second.connect();
      try {
        const stores = [store, new RedisStore({ client: second, prefix })];
        for (let round = 0; round < 20; round++) {
          const record = await login('ann');
          const results = await Promise.all(
            Array.from({ length: 50 }, (_, i) =>
              stores[i % 2]!.rotateFamily(record.family, record.tokenHash, {
                tokenHash: newHash(),
                expiresAt: inFuture(),
              }),
            ),
          );
          expect(results.filter((r) => r.ok)).toEqual([{ ok: true, uid: 'ann' }]);
          const reasons = new Set(results.flatMap((r) => (r.ok ? [] : [r.reason])));
          expect([...reasons].every((r) => r === 'reused' || r === 'missing')).toBe(true);
          expect(reasons.has('reused')).toBe(true);
          expect(await client.exists(familyKey(record.family))).toBe(0);
        }
      } finally {
        second.disconnect();
      }
    });

    it('a login created while revokeFamilies runs (after it read the index) stays listed, so the next one finds it', async () => {
      const second = sharedClient();
      await second.connect();
      try {
        const other = new RedisStore({ client: second, prefix });
        const old = await login('ann');
        const record = { family: newHash(), uid: 'ann', tokenHash: newHash(), expiresAt: inFuture() };
        // The new login lands exactly between revokeFamilies' read of the index and its removal of what it read.
        const original = second.evalsha.bind(second) as (...args: unknown[]) => Promise<unknown>;
        const evalsha = vi.spyOn(second, 'evalsha').mockImplementation((async (...args: unknown[]) => {
          const reply = await original(...args);
          if (args[0] === SCRIPTS.indexList.sha) await store.createFamily(record);
          return reply;
        }) as never);
        try {
          await other.revokeFamilies('ann');
        } finally {
          evalsha.mockRestore();
        }
        expect(await store.hasFamily(old.family)).toBe(false);
        expect(await store.hasFamily(record.family)).toBe(true);
        expect(await client.zrange(indexKey('ann'), '0', '-1')).toEqual([record.family]);
        await other.revokeFamilies('ann');
        expect(await store.hasFamily(record.family)).toBe(false);

        // And raced for real, over two connections: a surviving login is always listed.
        for (let round = 0; round < 50; round++) {
          const before = await login('ann');
          const racing = { ...record, family: newHash() };
          await Promise.all([other.revokeFamilies('ann'), store.createFamily(racing)]);
          expect(await store.hasFamily(before.family)).toBe(false);
          if (await store.hasFamily(racing.family)) {
            expect(await client.zscore(indexKey('ann'), racing.family)).not.toBeNull();
          }
          await store.revokeFamilies('ann');
        }
      } finally {
        second.disconnect();
      }
    });

    it('rotateFamily rejects when the index cannot follow a rotation; the old token then revokes the family', async () => {
      const a = await login('ann');
      // The connection drops right after the rotation's own script: the index update fails.
      const original = client.evalsha.bind(client) as (...args: unknown[]) => Promise<unknown>;
      const evalsha = vi
        .spyOn(client, 'evalsha')
        .mockImplementation(((...args: unknown[]) =>
          args[0] === SCRIPTS.indexAdd.sha
            ? Promise.reject(new Error('Connection is closed.'))
            : original(...args)) as never);
      try {
        await expect(
          store.rotateFamily(a.family, a.tokenHash, { tokenHash: newHash(), expiresAt: inFuture() }),
        ).rejects.toThrow(/closed/);
      } finally {
        evalsha.mockRestore();
      }
      // The client never got the new refresh token: its retry with the old one is a reuse, and logs the family out.
      const retry = await store.rotateFamily(a.family, a.tokenHash, {
        tokenHash: newHash(),
        expiresAt: inFuture(),
      });
      expect(retry).toEqual({ ok: false, reason: 'reused' });
      expect(await store.hasFamily(a.family)).toBe(false);
    });
  });

  it("works under the client's own keyPrefix", async () => {
    const prefixed = sharedClient({ keyPrefix: `${RUN}kp:` });
    await prefixed.connect();
    try {
      const store = new RedisStore({ client: prefixed, prefix: 'p:' });
      const tokenHash = newHash();
      await store.storeOrUpdate({ uid: 'ann', tokenHash, expiresAt: inFuture() });
      await client.set(`${RUN}kp:px:ann`, 'not mine');
      expect(await client.exists(`${RUN}kp:p:ann`)).toBe(1);
      expect(await store.length()).toBe(1);
      expect(await store.consume('ann', tokenHash, { keep: true })).toEqual({ ok: true });
      await store.clear();
      expect(await client.exists(`${RUN}kp:p:ann`)).toBe(0);
      expect(await client.get(`${RUN}kp:px:ann`)).toBe('not mine');
    } finally {
      prefixed.disconnect();
    }
  });

  it("keeps refresh families under the client's own keyPrefix too; clear() removes them there", async () => {
    const prefixed = sharedClient({ keyPrefix: `${RUN}kpf:` });
    await prefixed.connect();
    try {
      const store = new RedisStore({ client: prefixed, prefix: 'p:' });
      const record = { family: newHash(), uid: 'ann', tokenHash: newHash(), expiresAt: inFuture() };
      await store.createFamily(record);
      const keys = [`${RUN}kpf:p:\u0001f:${record.family}`, `${RUN}kpf:p:\u0001u:ann`];
      expect(await client.exists(...keys)).toBe(2);
      expect(await store.length()).toBe(0);
      const next = { tokenHash: newHash(), expiresAt: inFuture(120_000) };
      expect(await store.rotateFamily(record.family, record.tokenHash, next)).toEqual({
        ok: true,
        uid: 'ann',
      });
      expect(await client.pexpiretime(keys[1]!)).toBe(next.expiresAt.getTime());
      await store.revokeFamilies('ann');
      expect(await client.exists(...keys)).toBe(0);
      await store.createFamily(record);
      await store.clear();
      expect(await client.exists(...keys)).toBe(0);
    } finally {
      prefixed.disconnect();
    }
  });

  it("close() leaves the app's client connected, usable and without added properties", async () => {
    const own = sharedClient();
    await own.connect();
    try {
      const before = Object.keys(own).sort();
      const store = new RedisStore({ client: own, prefix: `${RUN}close:` });
      const tokenHash = newHash();
      await store.storeOrUpdate({ uid: 'ann', tokenHash, expiresAt: inFuture() });
      expect((await store.consume('ann', tokenHash, { keep: false })).ok).toBe(true);
      await store.close();
      expect(own.status).toBe('ready');
      expect(await own.ping()).toBe('PONG');
      expect(Object.keys(own).sort()).toEqual(before);
      expect(Object.keys(own.scriptsSet)).toEqual([]);
    } finally {
      own.disconnect();
    }
  });

  it('of 50 parallel GET /?token&uid with one single-use token exactly one logs in, 20 rounds over HTTP', async () => {
    const t = createApp({ store: new RedisStore({ client, prefix: `${RUN}http:` }) });
    const server = http.createServer(t.app);
    await listen(server);
    // Sockets are reused across rounds, so the run measures the store rather than TCP set-up.
    const keepAlive = new http.Agent({ keepAlive: true });
    try {
      for (let round = 0; round < 20; round++) {
        await request(server).post('/sendtoken').type('form').send({ user: 'race@example.com' }).expect(200);
        const link = `/?${linkQuery(t.outbox.last())}`;
        const responses = await Promise.all(
          Array.from({ length: 50 }, () => request(server).get(link).agent(keepAlive)),
        );
        expect(responses.map((r) => r.status).filter((s) => s !== 200)).toEqual([]);
        expect(responses.filter((r) => r.body.user).length).toBe(1);
      }
      expect(t.errors).toEqual([]);
    } finally {
      keepAlive.destroy();
      await closeServer(server);
    }
  });
});

describe('RedisStore options and arguments (no server)', () => {
  /** Passes the duck-type check and records every call, so a test can tell whether Redis was touched. */
  function fakeClient() {
    const calls: string[] = [];
    const record =
      (name: string) =>
      async (..._args: unknown[]) => {
        calls.push(name);
        return ['missing'];
      };
    const client = {
      isCluster: false,
      evalsha: record('evalsha'),
      eval: record('eval'),
      hget: record('hget'),
      unlink: record('unlink'),
      scanBuffer: record('scanBuffer'),
    };
    return { client: client as unknown as Redis, calls };
  }

  it.each<[string, unknown, RegExp]>([
    ['no options', undefined, /options object/],
    ['null', null, /options object/],
    ['no client', {}, /ioredis/],
    ['a plain object as client', { client: {} }, /ioredis.*evalsha\(\)/],
    ['a string as client', { client: 'redis://localhost' }, /ioredis.*got string/],
    ['a node-redis client', { client: { evalSha: () => 0, eval: () => 0 } }, /node-redis.*not supported/],
    [
      'a Cluster-like client without nodes()',
      { client: { ...fakeClient().client, isCluster: true } },
      /nodes\(\)/,
    ],
    ['an empty prefix', { client: fakeClient().client, prefix: '' }, /prefix/],
    ['a non-string prefix', { client: fakeClient().client, prefix: 7 }, /prefix.*number/],
    ['an unknown option', { client: fakeClient().client, keyPrefix: 'x:' }, /unknown option `keyPrefix`/],
  ])('the constructor throws BAD_OPTIONS for %s', (_, options, message) => {
    let thrown: unknown;
    try {
      new RedisStore(options as never);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(PasswordlessError);
    expect((thrown as PasswordlessError).code).toBe('BAD_OPTIONS');
    expect((thrown as PasswordlessError).message).toMatch(message);
  });

  it('accepts an ioredis Cluster-shaped client', () => {
    const cluster = { ...fakeClient().client, isCluster: true, nodes: () => [] };
    expect(() => new RedisStore({ client: cluster as unknown as Redis })).not.toThrow();
  });

  it('rejects bad arguments with INVALID_ARGUMENT before touching Redis', async () => {
    const { client, calls } = fakeClient();
    const store = new RedisStore({ client });
    const bad = async (work: () => Promise<unknown>) => {
      const err = await work().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PasswordlessError);
      expect((err as PasswordlessError).code).toBe('INVALID_ARGUMENT');
    };
    await bad(() => store.consume({ $ne: null } as never, newHash(), { keep: false }));
    await bad(() => store.consume('ann', 'plain-token', { keep: false }));
    await bad(() => store.consume('ann', newHash(), {} as never));
    await bad(() =>
      store.storeOrUpdate({ uid: ['ann'], tokenHash: newHash(), expiresAt: inFuture() } as never),
    );
    await bad(() =>
      store.storeOrUpdate({ uid: 'ann', tokenHash: newHash(), expiresAt: Date.now() } as never),
    );
    await bad(() => store.invalidateUser(42 as never));
    await bad(() => store.invalidateUser(''));
    expect(calls).toEqual([]);
  });

  it('never maps two uids to one key: a uid with a lone surrogate is refused by every method before Redis', async () => {
    const { client, calls } = fakeClient();
    const store = new RedisStore({ client });
    // Encoded as UTF-8 both would become 'ann\uFFFD', the key of another user.
    await expect(
      store.storeOrUpdate({ uid: 'ann\uD800', tokenHash: newHash(), expiresAt: inFuture() }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.consume('ann\uDFFF', newHash(), { keep: false })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(store.invalidateUser('ann\uD800')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(calls).toEqual([]);
    // A well-formed pair is fine.
    await store.consume('ann\uD83D\uDE42', newHash(), { keep: false });
    expect(calls).toEqual(['evalsha']);
  });

  /** Records every evalsha as [script name, keys, args] and answers with `reply(name)`. */
  function scriptClient(reply: (name: string) => unknown, isCluster = false) {
    const names = new Map(Object.entries(SCRIPTS).map(([name, s]) => [s.sha, name]));
    const calls: { name: string; keys: unknown[]; args: unknown[] }[] = [];
    const client = {
      isCluster,
      nodes: () => [],
      evalsha: async (sha: string, numkeys: number, ...rest: unknown[]) => {
        const name = names.get(sha) ?? sha;
        calls.push({ name, keys: rest.slice(0, numkeys), args: rest.slice(numkeys) });
        return reply(name);
      },
      eval: async () => {
        throw new Error('no EVAL expected');
      },
      hget: async (...args: unknown[]) => {
        calls.push({ name: 'hget', keys: [args[0]], args: args.slice(1) });
        return String(Date.now() + 60_000);
      },
      unlink: async () => 0,
      scanBuffer: async () => [Buffer.from('0'), []],
    };
    return { client: client as unknown as Redis, calls };
  }

  it('the family methods reject bad arguments with INVALID_ARGUMENT before touching Redis', async () => {
    const { client, calls } = fakeClient();
    const store = new RedisStore({ client });
    const good = { family: newHash(), uid: 'ann', tokenHash: newHash(), expiresAt: inFuture() };
    const next = { tokenHash: newHash(), expiresAt: inFuture() };
    const op = { $ne: null } as never;
    for (const work of [
      () => store.createFamily({ ...good, family: 'f'.repeat(63) }),
      () => store.createFamily({ ...good, family: good.family.toUpperCase() }),
      () => store.createFamily({ ...good, uid: op }),
      () => store.createFamily({ ...good, uid: `\u0001u:ann` }),
      () => store.createFamily({ ...good, uid: 'ann\uD800' }),
      () => store.createFamily({ ...good, tokenHash: op }),
      () => store.createFamily({ ...good, expiresAt: Date.now() as never }),
      () => store.createFamily(null as never),
      () => store.rotateFamily(op, good.tokenHash, next),
      () => store.rotateFamily(`${good.family}*`, good.tokenHash, next),
      () => store.rotateFamily(good.family, '*', next),
      () => store.rotateFamily(good.family, good.tokenHash, { ...next, tokenHash: op }),
      () => store.rotateFamily(good.family, good.tokenHash, { ...next, expiresAt: new Date(Number.NaN) }),
      () => store.rotateFamily(good.family, good.tokenHash, null as never),
      () => store.revokeFamily(op),
      () => store.revokeFamily('*'),
      () => store.revokeFamilies(op),
      () => store.revokeFamilies(''),
      () => store.revokeFamilies('a\r\nb'),
      () => store.hasFamily(['x'] as never),
      () => store.hasFamily('.*'),
    ]) {
      await expect(work()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    expect(calls).toEqual([]);
  });

  it('the family methods send Redis only plain strings: one script each, the index only from a createFamily or a successful rotation', async () => {
    const family = newHash();
    const replies: Record<string, unknown> = {
      familyCreate: 1,
      familyRotate: ['ok', 'ann'],
      indexAdd: 1,
      familyRevoke: 'ann',
      indexList: [family],
      familyDrop: 1,
      indexRemove: 1,
    };
    const { client, calls } = scriptClient((name) => replies[name]);
    const store = new RedisStore({ client, prefix: 'p:' });
    const record = { family, uid: 'ann', tokenHash: newHash(), expiresAt: inFuture() };
    const next = { tokenHash: newHash(), expiresAt: inFuture() };
    await store.createFamily(record);
    expect(await store.rotateFamily(family, record.tokenHash, next)).toEqual({ ok: true, uid: 'ann' });
    expect(await store.hasFamily(family)).toBe(true);
    expect(await store.revokeFamily(family)).toBe('ann');
    await store.revokeFamilies('ann');
    const fk = `p:\u0001f:${family}`;
    const ik = 'p:\u0001u:ann';
    expect(calls.map((c) => [c.name, c.keys])).toEqual([
      ['familyCreate', [fk, ik]], // standalone: one atomic script names both keys
      ['familyRotate', [fk]],
      ['indexAdd', [ik]],
      ['hget', [fk]],
      ['familyRevoke', [fk]],
      ['indexList', [ik]],
      ['familyDrop', [fk]],
      ['indexRemove', [ik]],
    ]);
    for (const c of calls) for (const v of [...c.keys, ...c.args]) expect(typeof v).toBe('string');
    expect(calls[1]!.args).toEqual([
      record.tokenHash,
      expect.stringMatching(/^\d+$/),
      next.tokenHash,
      String(next.expiresAt.getTime()),
    ]);

    // A failed rotation never touches the index.
    calls.length = 0;
    replies.familyRotate = ['reused'];
    expect(await store.rotateFamily(family, record.tokenHash, next)).toEqual({ ok: false, reason: 'reused' });
    expect(calls.map((c) => c.name)).toEqual(['familyRotate']);
  });

  it('on a Cluster, createFamily writes the family first and lists it in the index only then (never for an expired one)', async () => {
    const replies: Record<string, unknown> = { familyCreate: 1, indexAdd: 1 };
    const { client, calls } = scriptClient((name) => replies[name], true);
    const store = new RedisStore({ client, prefix: 'p:' });
    const record = { family: newHash(), uid: 'ann', tokenHash: newHash(), expiresAt: inFuture() };
    await store.createFamily(record);
    expect(calls.map((c) => [c.name, c.keys])).toEqual([
      ['familyCreate', [`p:\u0001f:${record.family}`]],
      ['indexAdd', ['p:\u0001u:ann']],
    ]);
    calls.length = 0;
    replies.familyCreate = 0;
    await store.createFamily({ ...record, expiresAt: new Date(Date.now() - 1) });
    expect(calls.map((c) => c.name)).toEqual(['familyCreate']);
  });

  it.each<[string, unknown]>([
    ['an unknown status', ['stolen']],
    ['ok without a uid', ['ok']],
    ['ok with a uid that no uid can be', ['ok', 'a\u0000b']],
    ['nothing', null],
  ])(
    'rotateFamily rejects with STORE_ERROR for %s from the script, and touches no index',
    async (_, reply) => {
      const { client, calls } = scriptClient(() => reply);
      const store = new RedisStore({ client });
      await expect(
        store.rotateFamily(newHash(), newHash(), { tokenHash: newHash(), expiresAt: inFuture() }),
      ).rejects.toMatchObject({ code: 'STORE_ERROR' });
      expect(calls.map((c) => c.name)).toEqual(['familyRotate']);
    },
  );
});

// Outages: a private redis-server on a spare port, stopped and started again under a running app.

const execFileAsync = promisify(execFile);

async function sparePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Every redis-server this file started, killed on exit even if a hook never ran. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A throwaway redis-server without persistence; `start()` resolves once it accepts connections. */
class RedisProcess {
  #child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    readonly extraArgs: string[] = [],
  ) {}

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    const child = spawn('redis-server', [...args, '--dir', tmpdir(), ...this.extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    running.add(child);
    child.once('exit', () => running.delete(child));
    await new Promise<void>((resolve, reject) => {
      let output = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${output}`)), 10_000);
      // Both pipes stay drained for the life of the process, so redis-server never blocks on a full pipe.
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}: ${output}`));
      });
    });
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL'); // a crash, not a clean shutdown
    await exited;
  }
}

async function waitUntilReady(client: Redis, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (client.status !== 'ready') {
    if (Date.now() > deadline) throw new Error(`client still ${client.status} after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

let haveRedisServer = false;
const describeRedisServer = await describeWithServer('redis-server binary', async () => {
  await execFileAsync('redis-server', ['--version']);
  haveRedisServer = true;
});

describeRedisServer('RedisStore through an outage of its own redis-server', () => {
  const retryStrategy = (times: number) => Math.min(times * 100, 500);
  let server: RedisProcess;
  let port: number;
  const clients: Redis[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    port = await sparePort();
    server = new RedisProcess(port);
    await server.start();
  });

  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await server?.stop();
    process.off('unhandledRejection', onUnhandled);
  });

  function connectPrivate(options: RedisOptions): Redis {
    const client = redisClient(`redis://127.0.0.1:${port}`, { retryStrategy, ...options });
    clients.push(client);
    return client;
  }

  it('runs EVAL again when the server has forgotten the scripts (NOSCRIPT)', async () => {
    const client = connectPrivate({});
    await client.connect();
    const store = new RedisStore({ client, prefix: 'noscript:' });
    const tokenHash = newHash();
    await store.storeOrUpdate({ uid: 'ann', tokenHash, expiresAt: inFuture() });
    await client.script('FLUSH');
    expect(await client.script('EXISTS', SCRIPTS.consume.sha)).toEqual([0]);
    const evalsha = vi.spyOn(client, 'evalsha');
    expect(await store.consume('ann', tokenHash, { keep: false })).toEqual({ ok: true });
    expect(evalsha).toHaveBeenCalledTimes(1);
    expect(await client.script('EXISTS', SCRIPTS.consume.sha)).toEqual([1]);
    evalsha.mockRestore();
  });

  it('answers STORE_ERROR within 2 s while Redis is down, without crashing, and logs in again once it is back', async () => {
    // As the docs recommend: fail at once when disconnected.
    const recommended = connectPrivate({
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 1000,
    });
    // ioredis defaults (offline queue, 20 retries per command): only the core's storeTimeout bounds the wait.
    const defaults = connectPrivate({ maxRetriesPerRequest: 20 });
    await Promise.all([recommended.connect(), defaults.connect()]);
    const apps: TestApp[] = [
      createApp({ store: new RedisStore({ client: recommended, prefix: 'outage-a:' }) }),
      createApp({
        store: new RedisStore({ client: defaults, prefix: 'outage-b:' }),
        init: { storeTimeout: 1000 },
      }),
    ];

    const links: string[] = [];
    for (const t of apps) {
      await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
      links.push(`/?${linkQuery(t.outbox.last())}`);
    }

    await server.stop();

    const timed = async (work: () => PromiseLike<request.Response>) => {
      const started = Date.now();
      const res = await work();
      return { res, elapsed: Date.now() - started };
    };
    const outcomes = await Promise.all(
      apps.flatMap((t, i) => [
        timed(() => request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' })),
        timed(() => request(t.app).get(links[i]!)),
      ]),
    );
    for (const { res, elapsed } of outcomes) {
      expect(res.status).toBe(500);
      expect(res.body).toEqual({ error: 'STORE_ERROR' });
      expect(elapsed).toBeLessThan(2000);
    }
    for (const t of apps) {
      expect(t.outbox.sent).toHaveLength(1); // nothing sent during the outage
      expect(t.errors).toHaveLength(2);
      for (const err of t.errors) {
        expect(err).toBeInstanceOf(PasswordlessError);
        expect((err as PasswordlessError).code).toBe('STORE_ERROR');
      }
    }

    await server.start();
    await Promise.all([waitUntilReady(recommended), waitUntilReady(defaults)]);
    // A fresh server knows no scripts: the calls below (or the commands the `defaults` client queued during the
    // outage and now replays) go through the NOSCRIPT path.
    for (const t of apps) {
      const agent = request.agent(t.app);
      await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
      const res = await agent.get(`/?${linkQuery(t.outbox.last())}`).expect(200);
      expect(res.body.user).toBe('ann@example.com');
      expect((await agent.get('/restricted').expect(200)).body.user).toBe('ann@example.com');
    }
    expect(unhandled).toEqual([]);
  });

  it('refresh families while Redis is down: every family call rejects at once, POST /refresh answers 503 STORE_ERROR', async () => {
    const client = connectPrivate({
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 1000,
    });
    await client.connect();
    const store = new RedisStore({ client, prefix: 'outage-fam:' });
    const reported: unknown[] = [];
    const t = createApp({
      store,
      session: 'none',
      init: { jwt: { secret: 'a jwt secret of at least 32 bytes!!' }, onError: (err) => reported.push(err) },
      before: (app, passwordless) => app.post('/refresh', passwordless.refresh()),
    });
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const login = await request(t.app)
      .get(`/?${linkQuery(t.outbox.last())}`)
      .set('Accept', 'application/json')
      .expect(200);
    const refreshToken = login.body.refreshToken as string;
    expect(typeof refreshToken).toBe('string');
    const family = (await client.keys('outage-fam:\u0001f:*'))[0]!.slice('outage-fam:\u0001f:'.length);

    await server.stop();
    const next = { tokenHash: newHash(), expiresAt: inFuture() };
    const started = Date.now();
    const calls = await Promise.allSettled([
      store.createFamily({ family: newHash(), uid: 'ann', tokenHash: newHash(), expiresAt: inFuture() }),
      store.rotateFamily(family, newHash(), next),
      store.revokeFamily(family),
      store.revokeFamilies('ann@example.com'),
      store.hasFamily(family),
    ]);
    expect(calls.map((c) => c.status)).toEqual(Array(5).fill('rejected'));
    expect(Date.now() - started).toBeLessThan(1000);
    const refused = await request(t.app).post('/refresh').send({ refreshToken });
    expect([refused.status, refused.body]).toEqual([503, { error: expect.any(String) }]);
    expect(reported).toHaveLength(1);
    expect((reported[0] as PasswordlessError).code).toBe('STORE_ERROR');

    // The server restarts without persistence: the login is gone, and the refresh token is refused, not accepted.
    await server.start();
    await waitUntilReady(client);
    const after = await request(t.app).post('/refresh').send({ refreshToken });
    expect([after.status, after.body]).toEqual([401, { error: 'invalid_grant' }]);
    expect(unhandled).toEqual([]);
  });
});

// Memory pressure: a private redis-server whose used memory is over `maxmemory` under `noeviction`, the policy the docs
// suggest. Redis then refuses writes; a script that may write must be refused as a whole, or a wrong guess fails
// uncounted while the right one (a DEL, which Redis lets through) still logs in.

describeRedisServer('RedisStore while its own redis-server is out of memory (maxmemory, noeviction)', () => {
  let server: RedisProcess;
  let client: Redis;
  const budget = { max: 10, window: 60_000 };

  beforeAll(async () => {
    server = new RedisProcess(await sparePort());
    await server.start();
    client = redisClient(`redis://127.0.0.1:${server.port}`);
    await client.connect();
  });

  afterAll(async () => {
    client?.disconnect();
    await server?.stop();
  });

  /** Runs `work` while Redis refuses every write that needs memory, and lifts the limit afterwards. */
  async function whileOutOfMemory(work: () => Promise<void>): Promise<void> {
    await client.set('filler', 'x'.repeat(500_000));
    const used = Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1]);
    await client.config('SET', 'maxmemory-policy', 'noeviction');
    await client.config('SET', 'maxmemory', String(used - 200_000));
    try {
      await expect(client.set('probe', 'x')).rejects.toThrow(/OOM/);
      await work();
    } finally {
      await client.config('SET', 'maxmemory', '0');
      await client.del('filler');
    }
  }

  it.each<[string, ConsumeOptions]>([
    ['without a budget', { keep: false }],
    ['with keep (allowTokenReuse)', { keep: true }],
    ['with a failure budget', { keep: false, budget }],
  ])(
    'compares no guess while out of memory (%s): 50 wrong tries and the right one all reject',
    async (label, options) => {
      const store = new RedisStore({ client, prefix: `oom:${label}:` });
      const right = newHash();
      const code = { uid: 'victim', tokenHash: right, expiresAt: inFuture(), maxAttempts: 5, lockable: true };
      expect(await store.storeOrUpdate(code, options.budget)).toBeUndefined();
      await whileOutOfMemory(async () => {
        const tries = [...Array.from({ length: 50 }, () => newHash()), right];
        const outcomes = await Promise.allSettled(tries.map((h) => store.consume('victim', h, options)));
        // Before the fix the wrong tries failed uncounted (OOM at HINCRBY) and the right one resolved { ok: true }.
        expect(outcomes.map((o) => (o.status === 'rejected' ? String(o.reason) : o.value))).toEqual(
          tries.map(() => expect.stringMatching(/OOM/)),
        );
        // A new code is refused as a whole too, so the pending one stays as it was.
        await expect(store.storeOrUpdate({ ...code, tokenHash: newHash() }, options.budget)).rejects.toThrow(
          /OOM/,
        );
      });
      // Nothing was compared or counted: once Redis accepts writes again the pending code behaves as if never guessed.
      for (let i = 1; i <= 4; i++) {
        expect(await store.consume('victim', newHash(), options)).toEqual({ ok: false, reason: 'mismatch' });
      }
      expect(await store.consume('victim', right, options)).toEqual({ ok: true });
    },
  );

  it('logout and length() still work while out of memory: invalidateUser only removes', async () => {
    const store = new RedisStore({ client, prefix: 'oom-logout:' });
    const tokenHash = newHash();
    await store.storeOrUpdate({ uid: 'ann', tokenHash, expiresAt: inFuture() });
    await store.storeOrUpdate({ uid: 'bob', tokenHash: newHash(), expiresAt: inFuture() });
    await whileOutOfMemory(async () => {
      expect(await store.length()).toBe(2);
      await store.invalidateUser('ann');
      expect(await store.length()).toBe(1);
    });
    expect(await store.consume('ann', tokenHash, { keep: false })).toEqual({ ok: false, reason: 'missing' });
  });

  it('refresh families while out of memory: create and rotate are refused whole; hasFamily and both revokes work', async () => {
    const store = new RedisStore({ client, prefix: 'oom-fam:' });
    const fam = (uid: string) => ({ family: newHash(), uid, tokenHash: newHash(), expiresAt: inFuture() });
    const next = () => ({ tokenHash: newHash(), expiresAt: inFuture() });
    const kept = fam('cid');
    const ann1 = fam('ann');
    const ann2 = fam('ann');
    const bob = fam('bob');
    for (const record of [kept, ann1, ann2, bob]) await store.createFamily(record);
    const fresh = fam('dan');
    await whileOutOfMemory(async () => {
      await expect(store.createFamily(fresh)).rejects.toThrow(/OOM/);
      // Neither the current hash nor another one is compared: no rotation, and no revocation as 'reused'.
      await expect(store.rotateFamily(kept.family, kept.tokenHash, next())).rejects.toThrow(/OOM/);
      await expect(store.rotateFamily(kept.family, newHash(), next())).rejects.toThrow(/OOM/);
      expect(await store.hasFamily(kept.family)).toBe(true);
      // Logging out (one login, or everywhere) only removes: it works while Redis is full.
      expect(await store.revokeFamily(bob.family)).toBe('bob');
      await store.revokeFamilies('ann');
      for (const gone of [bob, ann1, ann2]) expect(await store.hasFamily(gone.family)).toBe(false);
    });
    expect(await store.hasFamily(fresh.family)).toBe(false);
    expect(await store.rotateFamily(kept.family, kept.tokenHash, next())).toEqual({ ok: true, uid: 'cid' });
  });
});

// Cluster: three masters on spare ports, built by hand (ADDSLOTS + MEET), which is seconds faster than
// `redis-cli --cluster create`.

interface ClusterSetup {
  nodes: RedisProcess[];
  ports: number[];
  /** The nodes.conf files redis-server writes, removed afterwards. */
  files: string[];
}

async function sparePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await sparePort());
  return [...ports];
}

async function startCluster(): Promise<ClusterSetup> {
  const [ports, busPorts] = [await sparePorts(3), await sparePorts(3)];
  const files = ports.map((port) => join(tmpdir(), `pwdless-test-nodes-${process.pid}-${port}.conf`));
  const nodes = ports.map(
    (port, i) =>
      new RedisProcess(port, [
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        files[i]!,
        '--cluster-port',
        String(busPorts[i]),
      ]),
  );
  const setup = { nodes, ports, files };
  try {
    await Promise.all(nodes.map((node) => node.start()));
    const admins = ports.map((port) => redisClient(`redis://127.0.0.1:${port}`));
    try {
      await Promise.all(admins.map((admin) => admin.connect()));
      const third = Math.floor(16384 / 3);
      await Promise.all(
        admins.map((admin, i) => {
          const from = i * third;
          const to = i === 2 ? 16383 : (i + 1) * third - 1;
          return admin.call(
            'CLUSTER',
            'ADDSLOTS',
            ...Array.from({ length: to - from + 1 }, (_, k) => from + k),
          );
        }),
      );
      for (let i = 1; i < 3; i++) {
        await admins[0]!.call('CLUSTER', 'MEET', '127.0.0.1', ports[i]!, busPorts[i]!);
      }
      // A new master turns `cluster_state:ok` about 2 s after it started; the wait overlaps the suites above.
      const deadline = Date.now() + 15_000;
      for (;;) {
        const infos = await Promise.all(admins.map((admin) => admin.call('CLUSTER', 'INFO')));
        if (infos.every((info) => /cluster_state:ok/.test(String(info)))) break;
        if (Date.now() > deadline) throw new Error(`cluster not ok: ${String(infos[0])}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      for (const admin of admins) admin.disconnect();
    }
    return setup;
  } catch (err) {
    await stopCluster(setup);
    throw err;
  }
}

async function stopCluster(setup: ClusterSetup): Promise<void> {
  await Promise.all(setup.nodes.map((node) => node.stop()));
  for (const file of setup.files) rmSync(file, { force: true });
}

// File-level hooks: the cluster starts when the file's first suite does, so the masters' start-up delay passes while
// the suites above run, and it is stopped whenever it was started, whichever tests a filter selected.
let clusterStarting: Promise<ClusterSetup> | undefined;
beforeAll(() => {
  if (!haveRedisServer) return;
  clusterStarting = startCluster();
  clusterStarting.catch(() => {}); // awaited, and its error reported, by the Cluster suite
});
afterAll(async () => {
  const started = await clusterStarting?.catch(() => undefined);
  if (started) await stopCluster(started);
});

describeRedisServer('RedisStore on a Redis Cluster of its own redis-servers', () => {
  let setup: ClusterSetup | undefined;
  let cluster: Cluster;

  beforeAll(async () => {
    if (!clusterStarting) throw new Error('the cluster was not started');
    setup = await clusterStarting;
    cluster = new Cluster([{ host: '127.0.0.1', port: setup.ports[0]! }], {
      lazyConnect: true,
      redisOptions: { maxRetriesPerRequest: 1 },
    });
    cluster.on('error', () => {});
    await cluster.connect();
  });

  afterAll(() => {
    cluster?.disconnect();
  });

  tokenStoreContract(
    'RedisStore on a Cluster',
    () => new RedisStore({ client: cluster, prefix: 'contract:' }),
  );

  it('spreads keys over every master and clear()/length() reach all of them, under the client keyPrefix', async () => {
    const prefixed = new Cluster([{ host: '127.0.0.1', port: setup!.ports[0]! }], {
      lazyConnect: true,
      keyPrefix: 'kp:',
      redisOptions: { maxRetriesPerRequest: 1 },
    });
    prefixed.on('error', () => {});
    await prefixed.connect();
    try {
      const store = new RedisStore({ client: prefixed, prefix: 'a*:' });
      const other = new RedisStore({ client: prefixed, prefix: 'ab:' });
      // uids with `{…}` choose their own slot (the key has no other hash tag): still one key, one slot.
      const uids = Array.from({ length: 90 }, (_, i) =>
        i % 3 === 0 ? `user{${i}}` : `user${i}@example.com`,
      );
      const hashes = uids.map(() => newHash());
      await Promise.all(
        uids.map((uid, i) => store.storeOrUpdate({ uid, tokenHash: hashes[i]!, expiresAt: inFuture() })),
      );
      await other.storeOrUpdate({ uid: 'keep', tokenHash: newHash(), expiresAt: inFuture() });

      const perMaster = await Promise.all(cluster.nodes('master').map((node) => node.dbsize()));
      expect(perMaster).toHaveLength(3);
      for (const n of perMaster) expect(n).toBeGreaterThan(0);
      expect(await store.length()).toBe(90);

      expect(await store.consume(uids[3]!, hashes[3]!, { keep: false })).toEqual({ ok: true });
      await store.invalidateUser(uids[4]!);
      expect(await store.length()).toBe(88);

      // A key kept only for a uid's live failures is no pending token.
      const budget = { max: 3, window: 60_000 };
      const code = {
        uid: uids[5]!,
        tokenHash: newHash(),
        expiresAt: inFuture(),
        maxAttempts: 1,
        lockable: true,
      };
      await store.storeOrUpdate(code, budget);
      expect(await store.consume(uids[5]!, newHash(), { keep: false, budget })).toEqual({
        ok: false,
        reason: 'exhausted',
      });
      expect(await prefixed.hgetall(`a*:${uids[5]}`)).toEqual({ f: '1', u: expect.any(String) });
      expect(await store.length()).toBe(87);

      await store.clear();
      expect(await store.length()).toBe(0);
      expect(await prefixed.exists(`a*:${uids[5]}`)).toBe(0);
      expect(await other.length()).toBe(1);
      expect(await cluster.exists('kp:ab:keep')).toBe(1);
    } finally {
      prefixed.disconnect();
    }
  });

  it("keeps families and the uid's index on whichever masters their slots say; revokeFamilies, clear() and length() reach them all", async () => {
    const store = new RedisStore({ client: cluster, prefix: 'fam:' });
    await store.clear();
    const uids = Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? `user{${i}}` : `user${i}@example.com`));
    const logins = uids.flatMap((uid) =>
      Array.from({ length: 3 }, () => ({
        family: newHash(),
        uid,
        tokenHash: newHash(),
        expiresAt: inFuture(),
      })),
    );
    await Promise.all(logins.map((record) => store.createFamily(record)));
    const slot = async (key: string) => Number(await cluster.call('CLUSTER', 'KEYSLOT', key));
    let apart = 0;
    for (const record of logins) {
      if ((await slot(`fam:\u0001f:${record.family}`)) !== (await slot(`fam:\u0001u:${record.uid}`)))
        apart += 1;
    }
    expect(apart).toBeGreaterThan(logins.length / 2);
    const perMaster = await Promise.all(cluster.nodes('master').map((node) => node.dbsize()));
    for (const n of perMaster) expect(n).toBeGreaterThan(0);
    expect(await store.length()).toBe(0);

    const [first, second] = logins;
    const next = { tokenHash: newHash(), expiresAt: inFuture(120_000) };
    expect(await store.rotateFamily(first!.family, first!.tokenHash, next)).toEqual({
      ok: true,
      uid: uids[0],
    });
    expect(await cluster.zscore(`fam:\u0001u:${uids[0]}`, first!.family)).toBe(
      String(next.expiresAt.getTime()),
    );
    expect(await store.rotateFamily(second!.family, newHash(), next)).toEqual({
      ok: false,
      reason: 'reused',
    });

    await store.revokeFamilies(uids[0]!);
    await store.revokeFamilies(uids[1]!);
    for (const record of logins) {
      expect(await store.hasFamily(record.family)).toBe(record.uid !== uids[0] && record.uid !== uids[1]);
    }
    expect(await cluster.exists(`fam:\u0001u:${uids[0]}`)).toBe(0);
    await store.storeOrUpdate({ uid: uids[2]!, tokenHash: newHash(), expiresAt: inFuture() });
    expect(await store.length()).toBe(1);
    await store.clear();
    const left = await Promise.all(cluster.nodes('master').map((node) => node.keys('fam:*')));
    expect(left.flat()).toEqual([]);
  });
});
