import { randomBytes } from 'node:crypto';
import { tokenStoreContract } from 'express-passwordless/testing';
import { MongoClient, MongoServerError } from 'mongodb';
import { afterAll, describe, expect, it } from 'vitest';
import { MongoStore } from '../../stores/mongo/index.js';
import { describeWithServer } from '../helpers/server.js';
import { expectAtMostOneAcceptedPastMaxAttempts, expectOneLoginPerToken } from './mongo-races.js';

// MongoStore against a real server. Without MONGODB_URL this suite skips with a printed reason, in CI too: no
// MongoDB runs on this project's machines, and mongo-unit.test.ts covers the store's logic with a fake driver. With
// MONGODB_URL set, an unreachable server fails the run in CI and skips with the reason elsewhere (describeWithServer).

const url = process.env.MONGODB_URL;
const hash = () => randomBytes(32).toString('hex');

if (!url) {
  console.warn(
    '[skip] MongoDB suite: MONGODB_URL is not set; set it (e.g. mongodb://127.0.0.1:27017/passwordless_test) to ' +
      'run MongoStore against a server. mongo-unit.test.ts covers the same logic with a fake driver.',
  );
  describe.skip('MongoStore (server)', () => {
    it('needs MONGODB_URL', () => {});
  });
} else {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 2000 });
  // A collection of its own per run, so parallel runs and leftovers never collide; dropped in afterAll.
  const collection = `passwordless_tokens_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const suite = await describeWithServer('MongoDB at MONGODB_URL', async () => {
    try {
      await client.db().command({ ping: 1 });
    } catch (err) {
      await client.close();
      throw err;
    }
  });

  suite('MongoStore (server)', () => {
    const make = () => new MongoStore({ client, collection });

    afterAll(async () => {
      try {
        for (const name of [collection, `${collection}_families`]) {
          try {
            await client.db().collection(name).drop();
          } catch (err) {
            // NamespaceNotFound: nothing was written; anything else is a real failure.
            if (!(err instanceof MongoServerError && err.code === 26)) throw err;
          }
        }
      } finally {
        await client.close();
      }
    });

    tokenStoreContract('contract', make); // the refresh-family suite (API mode) included

    it('creates a TTL index { purgeAt: 1 } with expireAfterSeconds 0', async () => {
      const store = make();
      await store.storeOrUpdate({
        uid: 'alice',
        tokenHash: hash(),
        expiresAt: new Date(Date.now() + 60_000),
      });
      const indexes = await client.db().collection(collection).indexes();
      expect(indexes).toContainEqual(expect.objectContaining({ key: { purgeAt: 1 }, expireAfterSeconds: 0 }));
      await store.close();
    });

    it('stores { _id: uid, tokenHash, expiresAt, attempts, purgeAt } and the hash, never a token', async () => {
      const store = make();
      const tokenHash = hash();
      const expiresAt = new Date(Date.now() + 60_000);
      await store.storeOrUpdate({ uid: 'doc-shape', tokenHash, expiresAt, maxAttempts: 5 });
      const doc = await client
        .db()
        .collection(collection)
        .findOne({ _id: 'doc-shape' as never });
      expect(doc).toEqual({
        _id: 'doc-shape',
        tokenHash,
        expiresAt,
        attempts: 0,
        maxAttempts: 5,
        purgeAt: expiresAt,
      });
      await store.close();
    });

    it('keeps only the failures (purgeAt = failuresUntil) once the token is voided, and carries them to a new token', async () => {
      const store = make();
      const budget = { max: 10, window: 60_000 };
      const uid = 'doc-failures';
      const code = () => ({
        uid,
        tokenHash: hash(),
        expiresAt: new Date(Date.now() + 60_000),
        maxAttempts: 2,
        lockable: true,
      });
      await store.storeOrUpdate(code(), budget);
      expect(await store.consume(uid, hash(), { keep: false, budget })).toEqual({
        ok: false,
        reason: 'mismatch',
      });
      expect(await store.consume(uid, hash(), { keep: false, budget })).toEqual({
        ok: false,
        reason: 'exhausted',
      });
      const docs = client.db().collection(collection);
      const voided = await docs.findOne({ _id: uid as never });
      expect(voided).toEqual({
        _id: uid,
        failures: 2,
        failuresUntil: expect.any(Date),
        purgeAt: voided?.failuresUntil,
      });
      const next = code();
      expect(await store.storeOrUpdate(next, budget)).toBeUndefined();
      expect(await docs.findOne({ _id: uid as never })).toEqual({
        _id: uid,
        tokenHash: next.tokenHash,
        expiresAt: next.expiresAt,
        attempts: 0,
        maxAttempts: 2,
        lockable: true,
        failures: 2,
        failuresUntil: voided?.failuresUntil,
        purgeAt: next.expiresAt,
      });
      await store.close();
    });

    it('a lockable record is refused while locked, with lockedUntil = failuresUntil, leaving the document as it is', async () => {
      const store = make();
      const budget = { max: 2, window: 60_000 };
      const uid = 'doc-locked';
      const code = () => ({
        uid,
        tokenHash: hash(),
        expiresAt: new Date(Date.now() + 60_000),
        lockable: true,
      });
      await store.storeOrUpdate(code(), budget);
      await store.consume(uid, hash(), { keep: false, budget });
      await store.consume(uid, hash(), { keep: false, budget });
      const docs = client.db().collection(collection);
      const before = await docs.findOne({ _id: uid as never });
      expect(await store.storeOrUpdate(code(), budget)).toEqual({ lockedUntil: before?.failuresUntil });
      expect(await docs.findOne({ _id: uid as never })).toEqual(before);
      await store.close();
    });

    describe('refresh families', () => {
      const families = () => client.db().collection(`${collection}_families`);
      const login = async (store: MongoStore, uid: string, expiresAt = new Date(Date.now() + 60_000)) => {
        const record = { family: hash(), uid, tokenHash: hash(), expiresAt };
        await store.createFamily(record);
        return record;
      };
      const next = () => ({ tokenHash: hash(), expiresAt: new Date(Date.now() + 60_000) });

      it('creates a TTL index { expiresAt: 1 } (expireAfterSeconds 0) and an index { uid: 1 } on <collection>_families', async () => {
        const store = make();
        await store.ensureIndexes();
        const indexes = await families().indexes();
        expect(indexes).toContainEqual(
          expect.objectContaining({ key: { expiresAt: 1 }, expireAfterSeconds: 0 }),
        );
        expect(indexes).toContainEqual(expect.objectContaining({ key: { uid: 1 } }));
        await store.close();
      });

      it('stores { _id: family, uid, tokenHash, expiresAt }; a rotation moves hash and expiry; a reuse leaves a tombstone', async () => {
        const store = make();
        const record = await login(store, 'fam-doc');
        expect(await families().findOne({ _id: record.family as never })).toEqual({
          _id: record.family,
          uid: 'fam-doc',
          tokenHash: record.tokenHash,
          expiresAt: record.expiresAt,
        });
        const step = next();
        expect(await store.rotateFamily(record.family, record.tokenHash, step)).toEqual({
          ok: true,
          uid: 'fam-doc',
        });
        expect(await families().findOne({ _id: record.family as never })).toEqual({
          _id: record.family,
          uid: 'fam-doc',
          tokenHash: step.tokenHash,
          expiresAt: step.expiresAt,
        });
        expect(await store.rotateFamily(record.family, record.tokenHash, next())).toEqual({
          ok: false,
          reason: 'reused',
        });
        expect(await families().findOne({ _id: record.family as never })).toEqual({
          _id: record.family,
          dead: true,
          expiresAt: new Date(0),
        });
        expect(await store.hasFamily(record.family)).toBe(false);
        expect(await store.rotateFamily(record.family, step.tokenHash, next())).toEqual({
          ok: false,
          reason: 'missing',
        });
        await store.close();
      });

      it('of 50 concurrent rotations with one hash exactly one succeeds and the family ends revoked, 10 rounds', async () => {
        const store = make();
        for (let round = 0; round < 10; round++) {
          const record = await login(store, 'fam-race');
          const results = await Promise.all(
            Array.from({ length: 50 }, () => store.rotateFamily(record.family, record.tokenHash, next())),
          );
          expect(
            results.filter((r) => r.ok),
            `round ${round}`,
          ).toEqual([{ ok: true, uid: 'fam-race' }]);
          const reasons = results.flatMap((r) => (r.ok ? [] : [r.reason]));
          expect(
            reasons.filter((r) => r === 'reused'),
            `round ${round}`,
          ).toHaveLength(1);
          expect(
            reasons.filter((r) => r === 'missing'),
            `round ${round}`,
          ).toHaveLength(48);
          expect(await store.hasFamily(record.family)).toBe(false);
        }
        await store.close();
      }, 60_000);

      it('hostile uids are plain values: a uid equal to a family, {"$ne":null} and $where revoke only their own families', async () => {
        const store = make();
        const family = 'cd'.repeat(32);
        await store.createFamily({
          family,
          uid: 'fam-carol',
          tokenHash: hash(),
          expiresAt: new Date(Date.now() + 60_000),
        });
        for (const uid of [family, '{"$ne":null}', '$where']) {
          const mine = await login(store, uid);
          const tokenHash = hash();
          await store.storeOrUpdate({ uid, tokenHash, expiresAt: new Date(Date.now() + 60_000) });
          await store.revokeFamilies(uid);
          expect(await store.hasFamily(mine.family)).toBe(false);
          expect(await store.hasFamily(family)).toBe(true);
          expect(await store.consume(uid, tokenHash, { keep: false })).toEqual({ ok: true });
        }
        expect(await store.revokeFamily(family)).toBe('fam-carol');
        await store.close();
      });
    });

    it('of 20 concurrent tries (5 right, 15 wrong, maxAttempts 5) at most one is accepted, 20 rounds', async () => {
      await expectAtMostOneAcceptedPastMaxAttempts(make());
    }, 60_000);

    it('of 50 parallel GET /?token&uid with one single-use token exactly one logs in, 20 rounds', async () => {
      await expectOneLoginPerToken(make());
    }, 120_000);
  });
}
