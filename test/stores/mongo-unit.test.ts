import { randomBytes } from 'node:crypto';
import { PasswordlessError } from 'express-passwordless';
import { tokenStoreContract } from 'express-passwordless/testing';
import { MongoClient } from 'mongodb';
import { afterAll, describe, expect, it } from 'vitest';
import { MongoStore } from '../../stores/mongo/index.js';
import { FakeMongoClient, type RecordedCall } from './mongo-fake.js';
import { expectAtMostOneAcceptedPastMaxAttempts, expectOneLoginPerToken } from './mongo-races.js';

// MongoStore's logic without a server: a fake driver (./mongo-fake.ts) that interprets the filters the way the server
// does and records every call. The same store runs against a real server in mongo.test.ts when MONGODB_URL is set.

const hash = () => randomBytes(32).toString('hex');
const inFuture = (ms = 60_000) => new Date(Date.now() + ms);

function setup(seed?: number) {
  const client = new FakeMongoClient(seed === undefined ? {} : { seed });
  const store = new MongoStore({ client: client.asMongoClient() });
  const collection = client.db().collection('passwordless_tokens');
  const calls = (method?: string) => client.calls.filter((c) => method === undefined || c.method === method);
  return { client, store, collection, calls };
}

const FIELDS = new Set(['_id', 'tokenHash', 'expiresAt', 'origin', 'attempts', 'maxAttempts']);
const OPTION_KEYS = new Set(['projection', 'returnDocument', 'upsert', 'expireAfterSeconds']);
const OPERATORS = new Set(['$or', '$expr', '$gt', '$gte', '$lt', '$exists', '$inc']);
const EXPR_FIELD_REFS = new Set(['$attempts', '$maxAttempts']);

/**
 * Walks one recorded driver call and returns what is wrong with it: every object is a plain object we built (or a
 * Date), every key is a known field, option or one of the operators the store uses, every leaf is a string, number,
 * boolean or Date, and inside `$expr` (where a string starting with `$` is a field path) only our two field references
 * appear. A user value can only ever be a leaf in a non-expression position, where the server treats it as data.
 */
function unsafeParts(call: RecordedCall): string[] {
  const problems: string[] = [];
  const walk = (value: unknown, path: string, inExpr: boolean): void => {
    if (value instanceof Date) return;
    if (typeof value === 'string') {
      if (inExpr && !EXPR_FIELD_REFS.has(value))
        problems.push(`${path}: string ${JSON.stringify(value)} in $expr`);
      return;
    }
    if (typeof value === 'number' || typeof value === 'boolean') {
      if (inExpr) problems.push(`${path}: literal in $expr`);
      return;
    }
    if (Array.isArray(value)) {
      value.forEach((v, i) => {
        walk(v, `${path}[${i}]`, inExpr);
      });
      return;
    }
    if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype) {
      problems.push(`${path}: ${value === null ? 'null' : typeof value} that is not a plain object`);
      return;
    }
    for (const [key, v] of Object.entries(value)) {
      if (key.startsWith('$') ? !OPERATORS.has(key) : !FIELDS.has(key) && !OPTION_KEYS.has(key)) {
        problems.push(`${path}: unexpected key ${JSON.stringify(key)}`);
      }
      walk(v, `${path}.${key}`, inExpr || key === '$expr');
    }
  };
  call.args.forEach((arg, i) => {
    walk(arg, `${call.method}[${i}]`, false);
  });
  return problems;
}

describe('MongoStore (fake driver)', () => {
  // One client for the whole contract run, with jitter so concurrent calls interleave in varying orders.
  const contractClient = new FakeMongoClient({ seed: 20240601 });
  tokenStoreContract('contract', () => new MongoStore({ client: contractClient.asMongoClient() }));

  afterAll(() => {
    const calls = contractClient.calls;
    expect(calls.length).toBeGreaterThan(500);
    // The contract's hostile uids reached the driver only as plain string values of _id.
    const ids = calls.map((c) => (c.args[0] as { _id?: unknown } | undefined)?._id);
    expect(ids).toContain('{"$ne":null}');
    expect(ids).toContain('$where');
    expect(calls.flatMap(unsafeParts)).toEqual([]);
    expect(contractClient.closed).toBe(false);
  });
});

describe('MongoStore options', () => {
  const client = new FakeMongoClient().asMongoClient();

  it.each<[string, unknown]>([
    ['no options', undefined],
    ['no client', {}],
    ['a client without db()', { client: {} }],
    ['a connection string as client', { client: 'mongodb://localhost' }],
    ['an unknown option', { client, colection: 'x' }],
    ['an empty collection name', { client, collection: '' }],
    ['a collection name with $', { client, collection: 'tokens$x' }],
    ['a collection name with NUL', { client, collection: 'tokens\0' }],
    ['a system collection', { client, collection: 'system.tokens' }],
    ['a collection name that is not a string', { client, collection: { $ne: null } }],
    ['an empty dbName', { client, dbName: '' }],
    ['a dbName with a dot', { client, dbName: 'a.b' }],
  ])('throws BAD_OPTIONS for %s', (_, options) => {
    const make = () => new MongoStore(options as never);
    expect(make).toThrow(PasswordlessError);
    expect(make).toThrow(expect.objectContaining({ code: 'BAD_OPTIONS' }));
  });

  it('names the mongodb peer dependency when the client is wrong', () => {
    expect(() => new MongoStore({ client: {} as never })).toThrow(/mongodb/);
  });

  it('uses dbName and collection, reading from the primary', async () => {
    const fake = new FakeMongoClient();
    const store = new MongoStore({ client: fake.asMongoClient(), dbName: 'auth', collection: 'pending' });
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    const pending = fake.db('auth').collection('pending');
    expect(pending.docs).toHaveLength(1);
    expect(pending.options).toEqual({ readPreference: 'primary' });
    expect(fake.db().collection('passwordless_tokens').docs).toHaveLength(0);
  });

  it('accepts a real MongoClient without connecting it (duck typing, no value import in the store)', async () => {
    const real = new MongoClient('mongodb://127.0.0.1:9/passwordless_unit', { serverSelectionTimeoutMS: 1 });
    const store = new MongoStore({ client: real });
    await store.close();
    await real.close();
  });
});

describe('MongoStore documents and indexes', () => {
  it('stores { _id: uid, tokenHash, expiresAt, attempts: 0 } and no field that was not given', async () => {
    const { store, collection } = setup();
    const record = { uid: 'alice', tokenHash: hash(), expiresAt: inFuture() };
    await store.storeOrUpdate(record);
    expect(collection.docs).toEqual([
      { _id: 'alice', tokenHash: record.tokenHash, expiresAt: record.expiresAt, attempts: 0 },
    ]);
  });

  it('stores origin and maxAttempts when given', async () => {
    const { store, collection } = setup();
    const record = { uid: 'alice', tokenHash: hash(), expiresAt: inFuture(), origin: '/a', maxAttempts: 5 };
    await store.storeOrUpdate(record);
    const { uid, ...rest } = record;
    expect(collection.docs).toEqual([{ _id: uid, ...rest, attempts: 0 }]);
  });

  it('stores with one upserting replaceOne keyed by _id', async () => {
    const { store, calls } = setup();
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    expect(calls('replaceOne')).toEqual([
      {
        collection: 'passwordless_tokens',
        method: 'replaceOne',
        args: [{ _id: 'alice' }, expect.not.objectContaining({ _id: expect.anything() }), { upsert: true }],
      },
    ]);
  });

  it('creates the TTL index { expiresAt: 1 } with expireAfterSeconds 0 exactly once', async () => {
    const { store, collection, calls } = setup(3);
    await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        store.storeOrUpdate({ uid: `u${i}`, tokenHash: hash(), expiresAt: inFuture() }),
      ),
    );
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    await store.ensureIndexes();
    expect(calls('createIndex').map((c) => c.args)).toEqual([[{ expiresAt: 1 }, { expireAfterSeconds: 0 }]]);
    expect(collection.indexes).toEqual([{ key: { expiresAt: 1 }, options: { expireAfterSeconds: 0 } }]);
  });

  it('reads and counts create no index', async () => {
    const { store, calls } = setup();
    await store.consume('alice', hash(), { keep: false });
    await store.length();
    await store.invalidateUser('alice');
    expect(calls('createIndex')).toEqual([]);
  });

  it('an index creation failure surfaces, stores nothing, and is retried by the next call', async () => {
    const { client, store, collection, calls } = setup();
    const refused = new Error('not authorized to create index');
    client.failNext('createIndex', refused);
    const record = { uid: 'alice', tokenHash: hash(), expiresAt: inFuture() };
    await expect(store.storeOrUpdate(record)).rejects.toBe(refused);
    expect(calls('replaceOne')).toEqual([]);
    await store.storeOrUpdate(record);
    expect(calls('createIndex')).toHaveLength(2);
    expect(collection.docs).toHaveLength(1);
  });

  it('the TTL index lets the server purge expired documents by itself', async () => {
    const { store, collection } = setup();
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: new Date(Date.now() - 1) });
    await store.storeOrUpdate({ uid: 'bob', tokenHash: hash(), expiresAt: inFuture() });
    expect(collection.runTtlMonitor()).toBe(1);
    expect(collection.docs.map((d) => d._id)).toEqual(['bob']);
  });
});

describe('MongoStore queries', () => {
  it('a match is one round trip: findOneAndDelete guarded by hash, expiry and attempts', async () => {
    const { store, calls } = setup();
    const tokenHash = hash();
    await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture(), origin: '/x' });
    const before = calls().length;
    expect(await store.consume('alice', tokenHash, { keep: false })).toEqual({ ok: true, origin: '/x' });
    expect(calls().slice(before)).toEqual([
      {
        collection: 'passwordless_tokens',
        method: 'findOneAndDelete',
        args: [
          {
            _id: 'alice',
            tokenHash,
            expiresAt: { $gt: expect.any(Date) },
            $or: [{ maxAttempts: { $exists: false } }, { $expr: { $lt: ['$attempts', '$maxAttempts'] } }],
          },
          { projection: { _id: 0, origin: 1 } },
        ],
      },
    ]);
  });

  it('a match with keep is one round trip: findOne with the same filter, nothing deleted', async () => {
    const { store, collection, calls } = setup();
    const tokenHash = hash();
    await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
    const before = calls().length;
    expect(await store.consume('alice', tokenHash, { keep: true })).toEqual({ ok: true });
    const made = calls().slice(before);
    expect(made.map((c) => c.method)).toEqual(['findOne']);
    expect(made[0]!.args).toEqual([
      {
        _id: 'alice',
        tokenHash,
        expiresAt: { $gt: expect.any(Date) },
        $or: [{ maxAttempts: { $exists: false } }, { $expr: { $lt: ['$attempts', '$maxAttempts'] } }],
      },
      { projection: { _id: 0, origin: 1 } },
    ]);
    expect(collection.docs).toHaveLength(1);
  });

  it('a wrong token is two round trips and counts one attempt with $inc', async () => {
    const { store, collection, calls } = setup();
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture(), maxAttempts: 5 });
    const before = calls().length;
    expect(await store.consume('alice', hash(), { keep: false })).toEqual({ ok: false, reason: 'mismatch' });
    const made = calls().slice(before);
    expect(made.map((c) => c.method)).toEqual(['findOneAndDelete', 'findOneAndUpdate']);
    expect(made[1]!.args).toEqual([
      { _id: 'alice', expiresAt: { $gt: expect.any(Date) } },
      { $inc: { attempts: 1 } },
      { returnDocument: 'after', projection: { _id: 0, attempts: 1, maxAttempts: 1 } },
    ]);
    expect(collection.docs[0]!.attempts).toBe(1);
  });

  it('an unknown uid is two round trips and reports missing', async () => {
    const { store, calls } = setup();
    expect(await store.consume('nobody', hash(), { keep: false })).toEqual({ ok: false, reason: 'missing' });
    expect(calls().map((c) => c.method)).toEqual(['findOneAndDelete', 'findOneAndUpdate']);
  });

  it('the wrong try that reaches maxAttempts deletes the record with a conditional deleteOne', async () => {
    const { store, collection, calls } = setup();
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture(), maxAttempts: 2 });
    expect((await store.consume('alice', hash(), { keep: false })).ok).toBe(false);
    const before = calls().length;
    expect(await store.consume('alice', hash(), { keep: false })).toEqual({ ok: false, reason: 'exhausted' });
    const made = calls().slice(before);
    expect(made.map((c) => c.method)).toEqual(['findOneAndDelete', 'findOneAndUpdate', 'deleteOne']);
    expect(made[2]!.args).toEqual([
      {
        _id: 'alice',
        maxAttempts: { $exists: true },
        $expr: { $gte: ['$attempts', '$maxAttempts'] },
      },
    ]);
    expect(collection.docs).toEqual([]);
  });

  it.each([false, true])(
    'no guess is accepted once the last allowed wrong try is counted, even before its delete lands (keep %s)',
    async (keep) => {
      const { client, store, collection } = setup();
      const tokenHash = hash();
      await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture(), maxAttempts: 5 });
      for (let i = 0; i < 4; i++) await store.consume('alice', hash(), { keep: false });
      const held = client.hold('deleteOne');
      const fifth = store.consume('alice', hash(), { keep: false });
      await held.reached;
      // The 5th wrong try is counted and its clean-up delete has not run: the record is still there, but void.
      expect(collection.docs).toEqual([expect.objectContaining({ tokenHash, attempts: 5 })]);
      expect(await store.consume('alice', tokenHash, { keep })).toEqual({ ok: false, reason: 'exhausted' });
      held.release();
      expect(await fifth).toEqual({ ok: false, reason: 'exhausted' });
      expect(collection.docs).toEqual([]);
    },
  );

  it('the clean-up delete spares a new token stored after the count', async () => {
    const { client, store } = setup();
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture(), maxAttempts: 1 });
    const held = client.hold('deleteOne');
    const wrong = store.consume('alice', hash(), { keep: false });
    await held.reached;
    const fresh = hash();
    await store.storeOrUpdate({ uid: 'alice', tokenHash: fresh, expiresAt: inFuture(), maxAttempts: 1 });
    held.release();
    expect(await wrong).toEqual({ ok: false, reason: 'exhausted' });
    expect(await store.consume('alice', fresh, { keep: false })).toEqual({ ok: true });
  });

  it.each([1, 2, 3, 4, 5])(
    'of 20 concurrent tries (5 right, 15 wrong, maxAttempts 5) at most one is accepted, 20 rounds (seed %i)',
    async (seed) => {
      await expectAtMostOneAcceptedPastMaxAttempts(setup(seed).store);
    },
  );

  it('20 concurrent wrong tries count as 20', async () => {
    const { store, collection } = setup(11);
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    await Promise.all(Array.from({ length: 20 }, () => store.consume('alice', hash(), { keep: false })));
    expect(collection.docs[0]!.attempts).toBe(20);
  });

  it('every read carries expiresAt > now, so a record the TTL monitor has not purged yet is never used', async () => {
    const { store, collection, calls } = setup();
    const tokenHash = hash();
    // Expired one second ago; the TTL monitor (every 60 s) has not run.
    collection.docs.push({ _id: 'alice', tokenHash, expiresAt: new Date(Date.now() - 1000), attempts: 0 });
    expect((await store.consume('alice', tokenHash, { keep: false })).ok).toBe(false);
    expect((await store.consume('alice', tokenHash, { keep: true })).ok).toBe(false);
    expect(await store.length()).toBe(0);
    expect(collection.docs).toEqual([expect.objectContaining({ _id: 'alice', attempts: 0 })]);
    const reads = calls().filter((c) => c.method !== 'deleteOne');
    expect(reads.map((c) => c.method)).toEqual([
      'findOneAndDelete',
      'findOneAndUpdate',
      'findOne',
      'findOneAndUpdate',
      'countDocuments',
    ]);
    for (const call of reads) {
      const { expiresAt } = call.args[0] as { expiresAt: { $gt: Date } };
      expect(expiresAt.$gt.getTime()).toBeGreaterThan(Date.now() - 1000);
    }
  });

  it('invalidateUser is deleteOne({ _id: uid }), an exact match', async () => {
    const { store, calls } = setup();
    await store.invalidateUser('a*');
    expect(calls('deleteOne').map((c) => c.args)).toEqual([[{ _id: 'a*' }]]);
  });

  it('clear empties this collection only', async () => {
    const { client, store, collection, calls } = setup();
    const other = client.db().collection('sessions');
    other.docs.push({ _id: 's1' });
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    await store.clear();
    expect(calls('deleteMany')).toEqual([
      { collection: 'passwordless_tokens', method: 'deleteMany', args: [{}] },
    ]);
    expect(collection.docs).toEqual([]);
    expect(other.docs).toEqual([{ _id: 's1' }]);
  });

  it('length is countDocuments({ expiresAt: { $gt: now } })', async () => {
    const { store, calls } = setup();
    await store.length();
    expect(calls('countDocuments').map((c) => c.args)).toEqual([[{ expiresAt: { $gt: expect.any(Date) } }]]);
  });

  it('a driver error rejects with that error and is not swallowed', async () => {
    const { client, store } = setup();
    const down = new Error('connection reset');
    client.failNext('findOneAndDelete', down);
    await expect(store.consume('alice', hash(), { keep: false })).rejects.toBe(down);
    client.failNext('countDocuments', down);
    await expect(store.length()).rejects.toBe(down);
  });

  it('close() leaves the app’s client open and usable', async () => {
    const { client, store } = setup();
    await store.close();
    expect(client.closed).toBe(false);
    const next = new MongoStore({ client: client.asMongoClient() });
    await next.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    expect(await next.length()).toBe(1);
  });
});

describe('MongoStore refuses operator injection before calling the driver', () => {
  const good = { uid: 'alice', tokenHash: hash(), expiresAt: inFuture() };
  it.each<[string, (store: MongoStore) => Promise<unknown>]>([
    ['consume with uid { $ne: null }', (s) => s.consume({ $ne: null } as never, hash(), { keep: false })],
    ['consume with uid { $gt: "" }', (s) => s.consume({ $gt: '' } as never, hash(), { keep: false })],
    ['consume with tokenHash { $gt: "" }', (s) => s.consume('alice', { $gt: '' } as never, { keep: false })],
    [
      'consume with tokenHash { $ne: null }',
      (s) => s.consume('alice', { $ne: null } as never, { keep: false }),
    ],
    ['consume with a tokenHash that is not hex', (s) => s.consume('alice', '{"$ne":null}', { keep: false })],
    ['consume with keep { $ne: null }', (s) => s.consume('alice', hash(), { keep: { $ne: null } } as never)],
    ['consume with uid ["alice"]', (s) => s.consume(['alice'] as never, hash(), { keep: false })],
    ['invalidateUser with uid { $ne: null }', (s) => s.invalidateUser({ $ne: null } as never)],
    ['invalidateUser with uid { $regex: "." }', (s) => s.invalidateUser({ $regex: '.' } as never)],
    [
      'storeOrUpdate with uid { $ne: null }',
      (s) => s.storeOrUpdate({ ...good, uid: { $ne: null } } as never),
    ],
    [
      'storeOrUpdate with tokenHash { $gt: "" }',
      (s) => s.storeOrUpdate({ ...good, tokenHash: { $gt: '' } } as never),
    ],
    [
      'storeOrUpdate with origin { $ne: null }',
      (s) => s.storeOrUpdate({ ...good, origin: { $ne: null } } as never),
    ],
    [
      'storeOrUpdate with maxAttempts { $gt: 0 }',
      (s) => s.storeOrUpdate({ ...good, maxAttempts: { $gt: 0 } } as never),
    ],
    [
      'storeOrUpdate with expiresAt { $gt: 0 }',
      (s) => s.storeOrUpdate({ ...good, expiresAt: { $gt: 0 } } as never),
    ],
  ])('%s rejects with INVALID_ARGUMENT and makes no driver call', async (_, act) => {
    const { store, calls } = setup();
    await expect(act(store)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(calls()).toEqual([]);
  });

  it.each(['{"$ne":null}', '{"$gt":""}', '$where', '$ne'])(
    'uid %j is sent as a plain string and matches only itself',
    async (uid) => {
      const { store, calls } = setup();
      const tokenHash = hash();
      await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
      expect(await store.consume(uid, tokenHash, { keep: false })).toEqual({ ok: false, reason: 'missing' });
      await store.invalidateUser(uid);
      expect(await store.consume('alice', tokenHash, { keep: false })).toEqual({ ok: true });
      const ids = calls()
        .map((c) => (c.args[0] as { _id?: unknown })._id)
        .filter((id) => id !== 'alice' && id !== undefined);
      expect(ids.length).toBeGreaterThan(0);
      for (const id of ids) expect(id).toBe(uid);
      expect(calls().flatMap(unsafeParts)).toEqual([]);
    },
  );

  it('the safety walk itself flags a user operator object and a $-string inside $expr', () => {
    expect(unsafeParts({ collection: 'c', method: 'deleteOne', args: [{ _id: { $ne: null } }] })).not.toEqual(
      [],
    );
    expect(
      unsafeParts({
        collection: 'c',
        method: 'findOne',
        args: [{ $expr: { $lt: ['$attempts', '$tokenHash'] } }],
      }),
    ).not.toEqual([]);
  });
});

describe('MongoStore over HTTP (fake driver)', () => {
  it('of 50 parallel GET /?token&uid with one single-use token exactly one logs in, 20 rounds', async () => {
    const client = new FakeMongoClient({ seed: 42 });
    await expectOneLoginPerToken(new MongoStore({ client: client.asMongoClient() }));
  }, 120_000);
});
