import { randomBytes } from 'node:crypto';
import express from 'express';
import { type ConsumeResult, Passwordless, PasswordlessError } from 'express-passwordless';
import { tokenStoreContract } from 'express-passwordless/testing';
import { MongoClient } from 'mongodb';
import request from 'supertest';
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
  const families = client.db().collection('passwordless_tokens_families');
  const calls = (method?: string) => client.calls.filter((c) => method === undefined || c.method === method);
  return { client, store, collection, families, calls };
}

const FIELDS = new Set([
  '_id',
  'tokenHash',
  'expiresAt',
  'origin',
  'attempts',
  'maxAttempts',
  'lockable',
  'failures',
  'failuresUntil',
  'purgeAt',
  // refresh families
  'uid',
  'dead',
]);
const OPTION_KEYS = new Set(['projection', 'returnDocument', 'upsert', 'expireAfterSeconds']);
const OPERATORS = new Set([
  // query
  '$or',
  '$expr',
  '$gt',
  '$exists',
  // aggregation expressions
  '$and',
  '$not',
  '$eq',
  '$gte',
  '$lt',
  '$cond',
  '$literal',
  '$add',
  '$max',
  '$ifNull',
  '$isNumber',
  // update pipeline stages
  '$set',
  '$unset',
  '$replaceWith',
]);
// Keys whose value is an aggregation expression (in `$expr` and in the `$set` / `$replaceWith` stages of a pipeline),
// where a string starting with `$` is a field path (or `$$` a variable).
const EXPRESSION_KEYS = new Set(['$expr', '$set', '$replaceWith']);
const EXPR_FIELD_REFS = new Set([
  '$_id',
  '$tokenHash',
  '$origin',
  '$attempts',
  '$maxAttempts',
  '$expiresAt',
  '$lockable',
  '$failures',
  '$failuresUntil',
  '$uid',
  '$$ROOT',
]);

type Mode = 'data' | 'expr' | 'fields';

/**
 * Walks one recorded driver call and returns what is wrong with it: every object is a plain object we built (or a
 * Date), every key is a known field, option or one of the operators the store uses, and every leaf is a string, number,
 * boolean or Date. Inside an expression (`$expr`, the `$set` and `$replaceWith` stages of an update pipeline), where a
 * string starting with `$` is a field path, only our own field references appear bare; every constant, user value or
 * not, is wrapped in `$literal`, whose operand must be a single leaf; `$unset` names only our fields. A user value can
 * therefore only ever be a leaf in a data position or inside `$literal`, where the server treats it as data.
 */
function unsafeParts(call: RecordedCall): string[] {
  const problems: string[] = [];
  const walk = (value: unknown, path: string, mode: Mode): void => {
    if (value instanceof Date) {
      if (mode === 'expr') problems.push(`${path}: Date outside $literal in an expression`);
      return;
    }
    if (typeof value === 'string') {
      if (mode === 'expr' && !EXPR_FIELD_REFS.has(value))
        problems.push(`${path}: string ${JSON.stringify(value)} in an expression`);
      if (mode === 'fields' && !FIELDS.has(value))
        problems.push(`${path}: $unset of ${JSON.stringify(value)}`);
      return;
    }
    if (typeof value === 'number' || typeof value === 'boolean') {
      if (mode !== 'data') problems.push(`${path}: literal outside $literal`);
      return;
    }
    if (Array.isArray(value)) {
      value.forEach((v, i) => {
        walk(v, `${path}[${i}]`, mode);
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
      if (key === '$literal') {
        const leaf =
          typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' || v instanceof Date;
        if (!leaf) problems.push(`${path}.$literal: not a single string, number, boolean or Date`);
        continue;
      }
      const next = EXPRESSION_KEYS.has(key) ? 'expr' : key === '$unset' ? 'fields' : mode;
      walk(v, `${path}.${key}`, next);
    }
  };
  call.args.forEach((arg, i) => {
    walk(arg, `${call.method}[${i}]`, 'data');
  });
  return problems;
}

describe('MongoStore (fake driver)', () => {
  // One client for the whole contract run, with jitter so concurrent calls interleave in varying orders.
  const contractClient = new FakeMongoClient({ seed: 20240601 });
  // With the refresh-family suite (API mode), which is on by default.
  tokenStoreContract('contract', () => new MongoStore({ client: contractClient.asMongoClient() }));

  afterAll(() => {
    const calls = contractClient.calls;
    expect(calls.length).toBeGreaterThan(500);
    // The contract's hostile uids reached the driver only as plain string values of _id.
    const ids = calls.map((c) => (c.args[0] as { _id?: unknown } | undefined)?._id);
    expect(ids).toContain('{"$ne":null}');
    expect(ids).toContain('$where');
    // The family suite ran here too, on the families collection, with every operation it uses.
    const familyMethods = new Set(
      calls.filter((c) => c.collection === 'passwordless_tokens_families').map((c) => c.method),
    );
    expect([...familyMethods].sort()).toEqual([
      'createIndex',
      'deleteMany',
      'findOne',
      'findOneAndDelete',
      'findOneAndUpdate',
      'replaceOne',
    ]);
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
    await store.createFamily({ family: hash(), uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    const pending = fake.db('auth').collection('pending');
    expect(pending.docs).toHaveLength(1);
    expect(pending.options).toEqual({ readPreference: 'primary' });
    const families = fake.db('auth').collection('pending_families');
    expect(families.docs).toHaveLength(1);
    expect(families.options).toEqual({ readPreference: 'primary' });
    expect(fake.db().collection('passwordless_tokens').docs).toHaveLength(0);
  });

  it('accepts a real MongoClient without connecting it (duck typing, no value import in the store)', async () => {
    const real = new MongoClient('mongodb://127.0.0.1:9/passwordless_unit', { serverSelectionTimeoutMS: 1 });
    const store = new MongoStore({ client: real });
    await store.close();
    await real.close();
  });
});

// The expressions the store writes, as the tests expect them.
const lit = (value: unknown) => ({ $literal: value });
const PURGE_AT = { $ifNull: [{ $max: ['$expiresAt', '$failuresUntil'] }, lit(expect.any(Date))] };
const WITHOUT_TOKEN = { _id: '$_id', failures: '$failures', failuresUntil: '$failuresUntil' };
const NOT_EXHAUSTED = [
  { maxAttempts: { $exists: false } },
  { $expr: { $lt: ['$attempts', '$maxAttempts'] } },
];
const budget = { max: 3, window: 60_000 };
const locked = {
  $and: [
    { $eq: ['$lockable', lit(true)] },
    { $and: [{ $gte: ['$failures', lit(budget.max)] }, { $gt: ['$failuresUntil', lit(expect.any(Date))] }] },
  ],
};

describe('MongoStore documents and indexes', () => {
  it('stores { _id: uid, tokenHash, expiresAt, attempts: 0, purgeAt } and no field that was not given', async () => {
    const { store, collection } = setup();
    const record = { uid: 'alice', tokenHash: hash(), expiresAt: inFuture() };
    await store.storeOrUpdate(record);
    expect(collection.docs).toEqual([
      {
        _id: 'alice',
        tokenHash: record.tokenHash,
        expiresAt: record.expiresAt,
        attempts: 0,
        purgeAt: record.expiresAt,
      },
    ]);
  });

  it('stores origin, maxAttempts and lockable when given', async () => {
    const { store, collection } = setup();
    const record = {
      uid: 'alice',
      tokenHash: hash(),
      expiresAt: inFuture(),
      origin: '/a',
      maxAttempts: 5,
      lockable: true,
    };
    await store.storeOrUpdate(record);
    const { uid, ...rest } = record;
    expect(collection.docs).toEqual([{ _id: uid, ...rest, attempts: 0, purgeAt: record.expiresAt }]);
  });

  it('lockable: false is left out like any absent field', async () => {
    const { store, collection } = setup();
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture(), lockable: false });
    expect(collection.docs[0]).not.toHaveProperty('lockable');
  });

  it('stores with one upserting findOneAndUpdate keyed by _id, every value in $literal', async () => {
    const { store, calls } = setup();
    const record = { uid: 'alice', tokenHash: hash(), expiresAt: inFuture(), origin: '$where' };
    await store.storeOrUpdate(record);
    const token = {
      _id: '$_id',
      tokenHash: lit(record.tokenHash),
      expiresAt: lit(record.expiresAt),
      attempts: lit(0),
      origin: lit('$where'),
      failures: '$failures',
      failuresUntil: '$failuresUntil',
    };
    expect(calls('findOneAndUpdate')).toEqual([
      {
        collection: 'passwordless_tokens',
        method: 'findOneAndUpdate',
        args: [
          { _id: 'alice' },
          [{ $replaceWith: token }, { $set: { purgeAt: PURGE_AT } }],
          { upsert: true, returnDocument: 'after', projection: { _id: 0, failures: 1, failuresUntil: 1 } },
        ],
      },
    ]);
    expect(calls().map((c) => c.method)).toEqual(['createIndex', 'findOneAndUpdate']);
  });

  it('with a budget, a lockable record is stored by one findOneAndUpdate that keeps $$ROOT while over the budget', async () => {
    const { store, calls } = setup();
    await store.storeOrUpdate(
      { uid: 'alice', tokenHash: hash(), expiresAt: inFuture(), lockable: true },
      budget,
    );
    const [, pipeline] = calls('findOneAndUpdate')[0]!.args as [unknown, { $replaceWith: unknown }[]];
    expect(pipeline[0]!.$replaceWith).toEqual({
      $cond: [
        { $and: [{ $gte: ['$failures', lit(3)] }, { $gt: ['$failuresUntil', lit(expect.any(Date))] }] },
        '$$ROOT',
        expect.objectContaining({ lockable: lit(true) }),
      ],
    });
  });

  it('creates the TTL index { purgeAt: 1 } with expireAfterSeconds 0 exactly once, and no family index', async () => {
    const { store, collection, calls } = setup(3);
    await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        store.storeOrUpdate({ uid: `u${i}`, tokenHash: hash(), expiresAt: inFuture() }),
      ),
    );
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    expect(calls('createIndex').map((c) => [c.collection, ...c.args])).toEqual([
      ['passwordless_tokens', { purgeAt: 1 }, { expireAfterSeconds: 0 }],
    ]);
    expect(collection.indexes).toEqual([{ key: { purgeAt: 1 }, options: { expireAfterSeconds: 0 } }]);
  });

  it('ensureIndexes() creates the indexes of both collections, each once', async () => {
    const { store, collection, families, calls } = setup(4);
    await Promise.all([store.ensureIndexes(), store.ensureIndexes()]);
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    await store.createFamily({ family: hash(), uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    await store.ensureIndexes();
    expect(calls('createIndex')).toHaveLength(3);
    expect(collection.indexes).toEqual([{ key: { purgeAt: 1 }, options: { expireAfterSeconds: 0 } }]);
    expect(families.indexes).toEqual([
      { key: { expiresAt: 1 }, options: { expireAfterSeconds: 0 } },
      { key: { uid: 1 }, options: {} },
    ]);
  });

  it('reads and counts create no index', async () => {
    const { store, calls } = setup();
    await store.consume('alice', hash(), { keep: false });
    await store.consume('alice', hash(), { keep: false, budget });
    await store.length();
    await store.invalidateUser('alice');
    const family = hash();
    await store.rotateFamily(family, hash(), { tokenHash: hash(), expiresAt: inFuture() });
    await store.hasFamily(family);
    await store.revokeFamily(family);
    await store.revokeFamilies('alice');
    await store.clear();
    expect(calls('createIndex')).toEqual([]);
  });

  it('an index creation failure surfaces, stores nothing, and is retried by the next call', async () => {
    const { client, store, collection, calls } = setup();
    const refused = new Error('not authorized to create index');
    client.failNext('createIndex', refused);
    const record = { uid: 'alice', tokenHash: hash(), expiresAt: inFuture() };
    await expect(store.storeOrUpdate(record)).rejects.toBe(refused);
    expect(calls('findOneAndUpdate')).toEqual([]);
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

const CONSUME_FILTER = { _id: 'alice', expiresAt: { $gt: expect.any(Date) }, $or: NOT_EXHAUSTED };
const CONSUME_OPTIONS = {
  returnDocument: 'before',
  projection: {
    _id: 0,
    tokenHash: 1,
    origin: 1,
    attempts: 1,
    maxAttempts: 1,
    lockable: 1,
    failures: 1,
    failuresUntil: 1,
  },
};

describe('MongoStore queries', () => {
  type Scenario = [string, (store: MongoStore, right: string) => Promise<ConsumeResult>, ConsumeResult];
  it.each<Scenario>([
    ['a match', (s, right) => s.consume('alice', right, { keep: false }), { ok: true, origin: '/x' }],
    [
      'a match with keep',
      (s, right) => s.consume('alice', right, { keep: true }),
      { ok: true, origin: '/x' },
    ],
    [
      'a match with a budget',
      (s, right) => s.consume('alice', right, { keep: false, budget }),
      { ok: true, origin: '/x' },
    ],
    [
      'a mismatch',
      (s) => s.consume('alice', hash(), { keep: false, budget }),
      { ok: false, reason: 'mismatch' },
    ],
    [
      'the try that reaches maxAttempts',
      async (s) => {
        for (let i = 0; i < 4; i++) await s.consume('alice', hash(), { keep: false });
        return s.consume('alice', hash(), { keep: false });
      },
      { ok: false, reason: 'exhausted' },
    ],
    [
      'a code while the uid is locked',
      async (s, right) => {
        for (let i = 0; i < budget.max; i++) await s.consume('alice', hash(), { keep: false, budget });
        return s.consume('alice', right, { keep: false, budget });
      },
      { ok: false, reason: 'locked' },
    ],
    ['an unknown uid', (s) => s.consume('alice', hash(), { keep: false }), { ok: false, reason: 'missing' }],
  ])(
    '%s is one round trip: findOneAndUpdate on the live token, returning it as it was',
    async (what, act, result) => {
      const { store, calls } = setup();
      const right = hash();
      if (what !== 'an unknown uid') {
        await store.storeOrUpdate({
          uid: 'alice',
          tokenHash: right,
          expiresAt: inFuture(),
          origin: '/x',
          maxAttempts: 5,
          lockable: true,
        });
      }
      const before = calls().length;
      expect(await act(store, right)).toEqual(result);
      expect(calls().slice(-1)).toEqual([
        {
          collection: 'passwordless_tokens',
          method: 'findOneAndUpdate',
          args: [
            CONSUME_FILTER,
            [{ $replaceWith: expect.any(Object) }, { $set: { purgeAt: PURGE_AT } }],
            CONSUME_OPTIONS,
          ],
        },
      ]);
      expect(
        calls()
          .slice(before)
          .every((c) => c.method === 'findOneAndUpdate'),
      ).toBe(true);
    },
  );

  it('the hash is compared inside the one atomic update, after the lock and before the count', async () => {
    const { store, calls } = setup();
    const guess = hash();
    await store.consume('alice', guess, { keep: false, budget });
    const token = {
      _id: '$_id',
      tokenHash: '$tokenHash',
      expiresAt: '$expiresAt',
      origin: '$origin',
      attempts: '$attempts',
      maxAttempts: '$maxAttempts',
      lockable: '$lockable',
    };
    const attempts = { $add: [{ $ifNull: ['$attempts', lit(0)] }, lit(1)] };
    const live = { $gt: ['$failuresUntil', lit(expect.any(Date))] };
    const failures = {
      failures: { $add: [{ $cond: [live, { $ifNull: ['$failures', lit(0)] }, lit(0)] }, lit(1)] },
      failuresUntil: lit(expect.any(Date)),
    };
    expect(calls()[0]!.args[1]).toEqual([
      {
        $replaceWith: {
          $cond: [
            locked,
            '$$ROOT',
            {
              $cond: [
                { $eq: ['$tokenHash', lit(guess)] },
                { _id: '$_id' },
                {
                  $cond: [
                    { $and: [{ $isNumber: ['$maxAttempts'] }, { $gte: [attempts, '$maxAttempts'] }] },
                    { _id: '$_id', ...failures },
                    { ...token, attempts, ...failures },
                  ],
                },
              ],
            },
          ],
        },
      },
      { $set: { purgeAt: PURGE_AT } },
    ]);
  });

  it('a match with a budget leaves nothing of the uid but an empty document for the TTL monitor', async () => {
    const { store, collection } = setup();
    const tokenHash = hash();
    await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture(), lockable: true }, budget);
    await store.consume('alice', hash(), { keep: false, budget });
    expect(await store.consume('alice', tokenHash, { keep: false, budget })).toEqual({ ok: true });
    expect(collection.docs).toEqual([{ _id: 'alice', purgeAt: expect.any(Date) }]);
    expect((collection.docs[0]!.purgeAt as Date).getTime()).toBeLessThanOrEqual(Date.now());
    expect(collection.runTtlMonitor()).toBe(1);
  });

  it('a match with keep and a budget keeps the token and forgets the failures', async () => {
    const { store, collection } = setup();
    const tokenHash = hash();
    const expiresAt = inFuture();
    await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt, lockable: true }, budget);
    await store.consume('alice', hash(), { keep: true, budget });
    expect(collection.docs[0]).toMatchObject({ failures: 1, attempts: 1 });
    expect(await store.consume('alice', tokenHash, { keep: true, budget })).toEqual({ ok: true });
    expect(collection.docs).toEqual([
      { _id: 'alice', tokenHash, expiresAt, attempts: 1, lockable: true, purgeAt: expiresAt },
    ]);
  });

  it('a match without a budget removes the token and keeps the failures', async () => {
    const { store, collection } = setup();
    const tokenHash = hash();
    await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture(), origin: '/x' });
    await store.consume('alice', hash(), { keep: false, budget });
    expect(await store.consume('alice', tokenHash, { keep: false })).toEqual({ ok: true, origin: '/x' });
    const until = collection.docs[0]!.failuresUntil;
    expect(collection.docs).toEqual([{ _id: 'alice', failures: 1, failuresUntil: until, purgeAt: until }]);
  });

  it('a match with keep and no budget leaves the document as it is', async () => {
    const { store, collection } = setup();
    const tokenHash = hash();
    await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
    const stored = structuredClone(collection.docs);
    expect(await store.consume('alice', tokenHash, { keep: true })).toEqual({ ok: true });
    expect(collection.docs).toEqual(stored);
  });

  it('a wrong token without a budget counts one attempt and no failure', async () => {
    const { store, collection } = setup();
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture(), maxAttempts: 5 });
    expect(await store.consume('alice', hash(), { keep: false })).toEqual({ ok: false, reason: 'mismatch' });
    expect(collection.docs[0]!.attempts).toBe(1);
    expect(collection.docs[0]).not.toHaveProperty('failures');
  });

  it('an unknown uid reports missing and writes nothing', async () => {
    const { store, collection } = setup();
    expect(await store.consume('nobody', hash(), { keep: false })).toEqual({ ok: false, reason: 'missing' });
    expect(await store.consume('nobody', hash(), { keep: true, budget })).toEqual({
      ok: false,
      reason: 'missing',
    });
    expect(collection.docs).toEqual([]);
  });

  it('the wrong try that reaches maxAttempts removes the token in the same write', async () => {
    const { store, collection } = setup();
    const tokenHash = hash();
    await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture(), maxAttempts: 2 });
    expect((await store.consume('alice', hash(), { keep: false })).ok).toBe(false);
    expect(await store.consume('alice', hash(), { keep: false })).toEqual({ ok: false, reason: 'exhausted' });
    // No failures: nothing is left but the _id, purged at the TTL monitor's next pass.
    expect(collection.docs).toEqual([{ _id: 'alice', purgeAt: expect.any(Date) }]);
    expect(await store.consume('alice', tokenHash, { keep: true })).toEqual({ ok: false, reason: 'missing' });
    expect(collection.runTtlMonitor()).toBe(1);
    expect(collection.docs).toEqual([]);
  });

  it('a document without attempts (written by another tool) counts from 0', async () => {
    const { store, collection } = setup();
    collection.docs.push({ _id: 'alice', tokenHash: hash(), expiresAt: inFuture(), maxAttempts: 2 });
    expect(await store.consume('alice', hash(), { keep: false })).toEqual({ ok: false, reason: 'mismatch' });
    expect(collection.docs[0]!.attempts).toBe(1);
    expect(await store.consume('alice', hash(), { keep: false })).toEqual({ ok: false, reason: 'exhausted' });
  });

  it('a burst of 50 concurrent tries, the right code last, gets 5 comparisons (maxAttempts 5), like MemoryStore', async () => {
    const { store } = setup();
    const right = hash();
    await store.storeOrUpdate({ uid: 'alice', tokenHash: right, expiresAt: inFuture(), maxAttempts: 5 });
    const tries = Array.from({ length: 50 }, (_, i) => (i === 49 ? right : hash()));
    const results = await Promise.all(tries.map((h) => store.consume('alice', h, { keep: false })));
    const reasons = results.map((r) => (r.ok ? 'ok' : r.reason));
    expect(reasons.filter((r) => r === 'mismatch')).toHaveLength(4);
    expect(reasons.filter((r) => r === 'exhausted')).toHaveLength(1);
    expect(reasons.filter((r) => r === 'missing')).toHaveLength(45);
  });

  it.each([31, 32, 33])(
    'under jitter, of 50 concurrent tries at most 5 are compared, the right code only among them (seed %i)',
    async (seed) => {
      const { store } = setup(seed);
      for (let round = 0; round < 10; round++) {
        const right = hash();
        await store.storeOrUpdate({ uid: 'alice', tokenHash: right, expiresAt: inFuture(), maxAttempts: 5 });
        const tries = Array.from({ length: 50 }, (_, i) => (i % 10 === 9 ? right : hash()));
        const results = await Promise.all(tries.map((h) => store.consume('alice', h, { keep: false })));
        const reasons = results.map((r) => (r.ok ? 'ok' : r.reason));
        expect(reasons.filter((r) => r !== 'missing').length).toBeLessThanOrEqual(5);
        expect(reasons.filter((r) => r === 'ok').length).toBeLessThanOrEqual(1);
      }
    },
  );

  it('a try racing a replacement is compared with the token it meets (one atomic step, no stray count)', async () => {
    const { client, store, collection } = setup();
    const fresh = hash();
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture(), maxAttempts: 5 });
    const held = client.hold('findOneAndUpdate');
    const racing = store.consume('alice', fresh, { keep: false });
    await held.reached;
    await store.storeOrUpdate({ uid: 'alice', tokenHash: fresh, expiresAt: inFuture(), maxAttempts: 5 });
    expect(collection.docs[0]).toMatchObject({ tokenHash: fresh, attempts: 0 });
    held.release();
    expect(await racing).toEqual({ ok: true });
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

  it('every token read carries expiresAt > now, so a record the TTL monitor has not purged yet is never used', async () => {
    const { store, collection, calls } = setup();
    const tokenHash = hash();
    // Expired one second ago; the TTL monitor (every 60 s) has not run.
    const expiresAt = new Date(Date.now() - 1000);
    collection.docs.push({ _id: 'alice', tokenHash, expiresAt, attempts: 0, purgeAt: expiresAt });
    expect((await store.consume('alice', tokenHash, { keep: false })).ok).toBe(false);
    expect((await store.consume('alice', tokenHash, { keep: true })).ok).toBe(false);
    expect((await store.consume('alice', tokenHash, { keep: false, budget })).ok).toBe(false);
    expect((await store.consume('alice', tokenHash, { keep: true, budget })).ok).toBe(false);
    expect(await store.length()).toBe(0);
    expect(collection.docs).toEqual([
      { _id: 'alice', tokenHash, expiresAt, attempts: 0, purgeAt: expiresAt },
    ]);
    const reads = calls();
    expect(reads.map((c) => c.method)).toEqual([
      'findOneAndUpdate',
      'findOneAndUpdate',
      'findOneAndUpdate',
      'findOneAndUpdate',
      'countDocuments',
    ]);
    for (const call of reads) {
      const { expiresAt: condition } = call.args[0] as { expiresAt: { $gt: Date } };
      expect(condition.$gt.getTime()).toBeGreaterThan(Date.now() - 1000);
    }
  });

  it('invalidateUser is one updateOne({ _id: uid }) that removes the token, an exact match', async () => {
    const { store, calls } = setup();
    await store.invalidateUser('a*');
    await store.invalidateUser('a*', 'f'.repeat(64));
    const pipeline = [{ $replaceWith: WITHOUT_TOKEN }, { $set: { purgeAt: PURGE_AT } }];
    expect(calls().map((c) => [c.method, ...c.args])).toEqual([
      ['updateOne', { _id: 'a*' }, pipeline],
      ['updateOne', { _id: 'a*', tokenHash: 'f'.repeat(64) }, pipeline],
    ]);
  });

  it('clear empties this collection and its families collection only', async () => {
    const { client, store, collection, families, calls } = setup();
    const other = client.db().collection('sessions');
    other.docs.push({ _id: 's1' });
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    await store.createFamily({ family: hash(), uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    await store.clear();
    expect(calls('deleteMany')).toEqual([
      { collection: 'passwordless_tokens', method: 'deleteMany', args: [{}] },
      { collection: 'passwordless_tokens_families', method: 'deleteMany', args: [{}] },
    ]);
    expect(collection.docs).toEqual([]);
    expect(families.docs).toEqual([]);
    expect(other.docs).toEqual([{ _id: 's1' }]);
  });

  it('length is countDocuments({ expiresAt: { $gt: now } }): a document with failures only is not counted', async () => {
    const { store, calls } = setup();
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    await store.consume('alice', hash(), { keep: false, budget });
    await store.invalidateUser('alice');
    expect(await store.length()).toBe(0);
    expect(calls('countDocuments').map((c) => c.args)).toEqual([[{ expiresAt: { $gt: expect.any(Date) } }]]);
  });

  it('a driver error rejects with that error and is not swallowed', async () => {
    const { client, store } = setup();
    const down = new Error('connection reset');
    client.failNext('findOneAndUpdate', down);
    await expect(store.consume('alice', hash(), { keep: false, budget })).rejects.toBe(down);
    client.failNext('findOneAndUpdate', down);
    await expect(
      store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: inFuture() }),
    ).rejects.toBe(down);
    client.failNext('updateOne', down);
    await expect(store.invalidateUser('alice')).rejects.toBe(down);
    client.failNext('countDocuments', down);
    await expect(store.length()).rejects.toBe(down);
    client.failNext('deleteMany', down);
    await expect(store.clear()).rejects.toBe(down);
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

describe('MongoStore failure budget', () => {
  const code = (tokenHash = hash(), expiresAt = inFuture()) => ({
    uid: 'alice',
    tokenHash,
    expiresAt,
    lockable: true,
    maxAttempts: 5,
  });
  const wrong = (store: MongoStore) => store.consume('alice', hash(), { keep: false, budget });

  async function lockAlice(store: MongoStore): Promise<void> {
    await store.storeOrUpdate(code(), budget);
    for (let i = 0; i < budget.max; i++)
      expect(await wrong(store)).toEqual({ ok: false, reason: 'mismatch' });
  }

  it('locked: one round trip, the code is not compared, nothing is counted or written', async () => {
    const { store, collection, calls } = setup();
    await lockAlice(store);
    const doc = structuredClone(collection.docs[0]);
    const before = calls().length;
    expect(await wrong(store)).toEqual({ ok: false, reason: 'locked' });
    expect(
      calls()
        .slice(before)
        .map((c) => c.method),
    ).toEqual(['findOneAndUpdate']);
    expect(collection.docs).toEqual([doc]);
  });

  it('a storeOrUpdate refused while locked is one round trip and leaves the document as it is', async () => {
    const { store, collection, calls } = setup();
    await lockAlice(store);
    const doc = structuredClone(collection.docs[0]);
    const before = calls().length;
    expect(await store.storeOrUpdate(code(), budget)).toEqual({ lockedUntil: doc!.failuresUntil });
    expect(
      calls()
        .slice(before)
        .map((c) => c.method),
    ).toEqual(['findOneAndUpdate']);
    expect(collection.docs).toEqual([doc]);
  });

  it('while locked, a link (not lockable) is stored and the failures carried over', async () => {
    const { store, collection } = setup();
    await lockAlice(store);
    const { failures, failuresUntil } = collection.docs[0]!;
    // Expiring before the failure window ends (which is 60 s from the last failure), so purgeAt is failuresUntil.
    const link = { uid: 'alice', tokenHash: hash(), expiresAt: inFuture(30_000) };
    expect(await store.storeOrUpdate(link, budget)).toBeUndefined();
    expect(collection.docs).toEqual([
      {
        _id: 'alice',
        tokenHash: link.tokenHash,
        expiresAt: link.expiresAt,
        attempts: 0,
        failures,
        failuresUntil,
        purgeAt: failuresUntil,
      },
    ]);
    // Without a budget nothing is refused either (the core always passes one).
    expect(await store.storeOrUpdate(code())).toBeUndefined();
  });

  it('the failures survive the voiding of the token at maxAttempts, and the TTL index purges them at their end', async () => {
    const { store, collection } = setup();
    const big = { max: 10, window: 60_000 };
    await store.storeOrUpdate(code(), big);
    for (let i = 0; i < 4; i++) await store.consume('alice', hash(), { keep: false, budget: big });
    expect(await store.consume('alice', hash(), { keep: false, budget: big })).toEqual({
      ok: false,
      reason: 'exhausted',
    });
    const until = collection.docs[0]!.failuresUntil as Date;
    expect(collection.docs).toEqual([{ _id: 'alice', failures: 5, failuresUntil: until, purgeAt: until }]);
    // A guess with no token pending is not counted.
    expect(await store.consume('alice', hash(), { keep: false, budget: big })).toEqual({
      ok: false,
      reason: 'missing',
    });
    expect(collection.docs[0]!.failures).toBe(5);
    expect(collection.runTtlMonitor(new Date(until.getTime() - 1))).toBe(0);
    expect(collection.runTtlMonitor(until)).toBe(1);
  });

  it('the failures survive the expiry of the token: the document lives until the later of the two', async () => {
    const { store, collection } = setup();
    const expiresAt = inFuture(1000);
    await store.storeOrUpdate(code(hash(), expiresAt), budget);
    await wrong(store);
    const until = collection.docs[0]!.failuresUntil as Date;
    expect(collection.runTtlMonitor(new Date(expiresAt.getTime() + 1))).toBe(0);
    expect(collection.docs).toHaveLength(1);
    expect(collection.runTtlMonitor(until)).toBe(1);
  });

  it('invalidateUser removes the token and keeps the failures; clear removes them', async () => {
    const { store, collection } = setup();
    await lockAlice(store);
    await store.invalidateUser('alice');
    const until = collection.docs[0]!.failuresUntil;
    expect(collection.docs).toEqual([{ _id: 'alice', failures: 3, failuresUntil: until, purgeAt: until }]);
    expect(await store.storeOrUpdate(code(), budget)).toEqual({ lockedUntil: until });
    await store.clear();
    expect(await store.storeOrUpdate(code(), budget)).toBeUndefined();
  });

  it('invalidateUser with a hash spares a newer token and its document', async () => {
    const { store, collection } = setup();
    const first = hash();
    await store.storeOrUpdate(code(first), budget);
    const second = code();
    await store.storeOrUpdate(second, budget);
    await store.invalidateUser('alice', first);
    expect(collection.docs[0]).toMatchObject({ tokenHash: second.tokenHash });
  });

  it('a count after the window starts again from 1', async () => {
    const { store, collection } = setup();
    await store.storeOrUpdate(code(), budget);
    await wrong(store);
    await wrong(store);
    collection.docs[0]!.failuresUntil = new Date(Date.now() - 1);
    await wrong(store);
    expect(collection.docs[0]).toMatchObject({ failures: 1, attempts: 3 });
  });

  it.each([7, 8, 9])(
    'of 20 concurrent wrong tries with max 3, exactly 3 are counted and 17 answer locked (seed %i)',
    async (seed) => {
      const { store, collection } = setup(seed);
      await store.storeOrUpdate(
        { uid: 'alice', tokenHash: hash(), expiresAt: inFuture(), lockable: true },
        budget,
      );
      const results = await Promise.all(Array.from({ length: 20 }, () => wrong(store)));
      const reasons = results.map((r) => (r.ok ? 'ok' : r.reason));
      expect(reasons.filter((r) => r === 'mismatch')).toHaveLength(3);
      expect(reasons.filter((r) => r === 'locked')).toHaveLength(17);
      expect(collection.docs[0]).toMatchObject({ failures: 3, attempts: 3 });
    },
  );

  it.each([21, 22, 23])(
    'a right code racing the guesses that lock the uid is accepted before the lock or refused after it (seed %i)',
    async (seed) => {
      const { store, collection } = setup(seed);
      const reasonOf = (r: ConsumeResult) => (r.ok ? 'ok' : r.reason);
      for (let round = 0; round < 10; round++) {
        await store.clear();
        const right = hash();
        await store.storeOrUpdate(
          { uid: 'alice', tokenHash: right, expiresAt: inFuture(), lockable: true },
          budget,
        );
        const results = await Promise.all([
          ...Array.from({ length: 6 }, () => wrong(store).then(reasonOf)),
          store.consume('alice', right, { keep: true, budget }).then(reasonOf),
        ]);
        const rightResult = results.pop();
        const mismatches = results.filter((r) => r === 'mismatch').length;
        expect(results.filter((r) => r === 'locked')).toHaveLength(6 - mismatches);
        // Refused: it came after the 3rd counted failure, and nothing more was counted. Accepted: it came before and
        // reset the count (up to 2 failures before it), and 3 more locked the uid again.
        if (rightResult === 'locked') expect(mismatches).toBe(3);
        else expect([rightResult, mismatches >= 3 && mismatches <= 5]).toEqual(['ok', true]);
        expect(collection.docs[0]).toMatchObject({ failures: 3 });
        expect(await store.storeOrUpdate(code(), budget)).toEqual({ lockedUntil: expect.any(Date) });
      }
    },
  );
});

describe('MongoStore refresh families (API mode)', () => {
  const FAMILIES = 'passwordless_tokens_families';
  const EPOCH = new Date(0);
  const ROTATE_OPTIONS = {
    returnDocument: 'before',
    projection: { _id: 0, uid: 1, tokenHash: 1, expiresAt: 1, dead: 1 },
  };
  const rotation = (current: string, nextHash: string, nextExpiry: Date) => [
    {
      $replaceWith: {
        $cond: [
          { $and: [{ $eq: ['$tokenHash', lit(current)] }, { $gt: ['$expiresAt', lit(expect.any(Date))] }] },
          { _id: '$_id', uid: '$uid', tokenHash: lit(nextHash), expiresAt: lit(nextExpiry) },
          { _id: '$_id', dead: lit(true), expiresAt: lit(EPOCH) },
        ],
      },
    },
  ];
  const login = async (store: MongoStore, uid = 'alice', expiresAt = inFuture()) => {
    const record = { family: hash(), uid, tokenHash: hash(), expiresAt };
    await store.createFamily(record);
    return record;
  };
  const next = (ms = 60_000) => ({ tokenHash: hash(), expiresAt: inFuture(ms) });
  /** The driver calls made by `act`, as [collection, method, ...args]. */
  async function callsOf(
    calls: (method?: string) => RecordedCall[],
    act: () => Promise<unknown>,
  ): Promise<unknown[][]> {
    const before = calls().length;
    await act();
    return calls()
      .slice(before)
      .map((c) => [c.collection, c.method, ...c.args]);
  }

  it('createFamily stores { _id: family, uid, tokenHash, expiresAt } with one replacing upsert of plain values', async () => {
    const { store, collection, families, calls } = setup();
    const record = { family: hash(), uid: '$where', tokenHash: hash(), expiresAt: inFuture() };
    expect(await store.createFamily(record)).toBeUndefined();
    expect(families.docs).toEqual([
      { _id: record.family, uid: '$where', tokenHash: record.tokenHash, expiresAt: record.expiresAt },
    ]);
    expect(collection.docs).toEqual([]);
    expect(calls().map((c) => [c.collection, c.method, ...c.args])).toEqual([
      [FAMILIES, 'createIndex', { expiresAt: 1 }, { expireAfterSeconds: 0 }],
      [FAMILIES, 'createIndex', { uid: 1 }],
      [
        FAMILIES,
        'replaceOne',
        { _id: record.family },
        { uid: '$where', tokenHash: record.tokenHash, expiresAt: record.expiresAt },
        { upsert: true },
      ],
    ]);
    // The index creation is once per store; later creations are one round trip each.
    expect(await callsOf(calls, () => login(store))).toEqual([
      [FAMILIES, 'replaceOne', expect.any(Object), expect.any(Object), { upsert: true }],
    ]);
    expect(calls().flatMap(unsafeParts)).toEqual([]);
  });

  it('a failed family index creation surfaces, stores nothing, and is retried by the next createFamily', async () => {
    const { client, store, families, calls } = setup();
    const refused = new Error('not authorized to create index');
    client.failNext('createIndex', refused);
    const record = { family: hash(), uid: 'alice', tokenHash: hash(), expiresAt: inFuture() };
    await expect(store.createFamily(record)).rejects.toBe(refused);
    expect(families.docs).toEqual([]);
    await store.createFamily(record);
    expect(families.docs).toHaveLength(1);
    expect(calls('createIndex').length).toBeGreaterThanOrEqual(3);
    expect(families.indexes).toHaveLength(2);
  });

  it('rotateFamily is one findOneAndUpdate whatever the outcome: ok, reused, expired, missing', async () => {
    const { store, families, calls } = setup();
    const live = await login(store);
    const step = next();
    const expected = (family: string, current: string, n: { tokenHash: string; expiresAt: Date }) => [
      [
        FAMILIES,
        'findOneAndUpdate',
        { _id: family },
        rotation(current, n.tokenHash, n.expiresAt),
        ROTATE_OPTIONS,
      ],
    ];
    expect(
      await callsOf(calls, async () =>
        expect(await store.rotateFamily(live.family, live.tokenHash, step)).toEqual({
          ok: true,
          uid: 'alice',
        }),
      ),
    ).toEqual(expected(live.family, live.tokenHash, step));
    expect(families.docs).toEqual([
      { _id: live.family, uid: 'alice', tokenHash: step.tokenHash, expiresAt: step.expiresAt },
    ]);

    const stale = next();
    expect(
      await callsOf(calls, async () =>
        expect(await store.rotateFamily(live.family, live.tokenHash, stale)).toEqual({
          ok: false,
          reason: 'reused',
        }),
      ),
    ).toEqual(expected(live.family, live.tokenHash, stale));
    // Revoked in the same write: a tombstone with no uid or hash, expired since the epoch.
    expect(families.docs).toEqual([{ _id: live.family, dead: true, expiresAt: EPOCH }]);

    const late = next();
    expect(
      await callsOf(calls, async () =>
        expect(await store.rotateFamily(live.family, step.tokenHash, late)).toEqual({
          ok: false,
          reason: 'missing',
        }),
      ),
    ).toEqual(expected(live.family, step.tokenHash, late));
    expect(families.docs).toEqual([{ _id: live.family, dead: true, expiresAt: EPOCH }]);

    const unknown = hash();
    const any = next();
    expect(
      await callsOf(calls, async () =>
        expect(await store.rotateFamily(unknown, live.tokenHash, any)).toEqual({
          ok: false,
          reason: 'missing',
        }),
      ),
    ).toEqual(expected(unknown, live.tokenHash, any));
    expect(families.docs).toHaveLength(1);
    expect(calls().flatMap(unsafeParts)).toEqual([]);
  });

  it('an expired family not yet purged is refused as expired (even with its hash) and becomes a tombstone', async () => {
    const { store, families } = setup();
    const expiresAt = new Date(Date.now() - 1000);
    const record = { family: hash(), uid: 'alice', tokenHash: hash(), expiresAt };
    // Written by the store, then left by a TTL monitor that has not run yet.
    await store.createFamily(record);
    expect(await store.hasFamily(record.family)).toBe(false);
    expect(await store.rotateFamily(record.family, record.tokenHash, next())).toEqual({
      ok: false,
      reason: 'expired',
    });
    expect(families.docs).toEqual([{ _id: record.family, dead: true, expiresAt: EPOCH }]);
    expect(await store.rotateFamily(record.family, record.tokenHash, next())).toEqual({
      ok: false,
      reason: 'missing',
    });
    const again = await login(store, 'alice', new Date(Date.now() - 1));
    expect(await store.revokeFamily(again.family)).toBeUndefined();
    expect(families.docs.map((d) => d._id)).toEqual([record.family]);
  });

  it('a tombstone is absent to every read and to revokeFamilies, and the TTL monitor removes it', async () => {
    const { store, families } = setup();
    const record = await login(store);
    await store.rotateFamily(record.family, hash(), next());
    expect(await store.hasFamily(record.family)).toBe(false);
    await store.revokeFamilies('alice');
    expect(families.docs).toHaveLength(1);
    expect(families.runTtlMonitor()).toBe(1);
    expect(families.docs).toEqual([]);
    // revokeFamily deletes a tombstone and reports no live family.
    const other = await login(store);
    await store.rotateFamily(other.family, hash(), next());
    expect(await store.revokeFamily(other.family)).toBeUndefined();
    expect(families.docs).toEqual([]);
  });

  it('createFamily over a tombstone (the same family again) replaces it with a live family', async () => {
    const { store, families } = setup();
    const record = await login(store);
    await store.rotateFamily(record.family, hash(), next());
    await store.createFamily(record);
    expect(families.docs).toEqual([
      { _id: record.family, uid: 'alice', tokenHash: record.tokenHash, expiresAt: record.expiresAt },
    ]);
    expect((await store.rotateFamily(record.family, record.tokenHash, next())).ok).toBe(true);
  });

  it('hasFamily is one findOne({ _id, expiresAt: { $gt: now } }) returning the _id only', async () => {
    const { store, calls } = setup();
    const record = await login(store);
    let result: boolean | undefined;
    expect(
      await callsOf(calls, async () => {
        result = await store.hasFamily(record.family);
      }),
    ).toEqual([
      [
        FAMILIES,
        'findOne',
        { _id: record.family, expiresAt: { $gt: expect.any(Date) } },
        { projection: { _id: 1 } },
      ],
    ]);
    expect(result).toBe(true);
    const { $gt } = (calls('findOne')[0]!.args[0] as { expiresAt: { $gt: Date } }).expiresAt;
    expect(Math.abs($gt.getTime() - Date.now())).toBeLessThan(1000);
  });

  it('revokeFamily is one findOneAndDelete answering the uid of a live family only', async () => {
    const { store, families, calls } = setup();
    const record = await login(store, 'bob');
    let owner: string | undefined;
    expect(
      await callsOf(calls, async () => {
        owner = await store.revokeFamily(record.family);
      }),
    ).toEqual([
      [
        FAMILIES,
        'findOneAndDelete',
        { _id: record.family },
        { projection: { _id: 0, uid: 1, expiresAt: 1, dead: 1 } },
      ],
    ]);
    expect(owner).toBe('bob');
    expect(families.docs).toEqual([]);
    expect(await store.revokeFamily(record.family)).toBeUndefined();
  });

  it('revokeFamilies is one deleteMany({ uid }) on the uid index, and leaves the pending token of that uid', async () => {
    const { store, collection, families, calls } = setup();
    const tokenHash = hash();
    await store.storeOrUpdate({ uid: 'alice', tokenHash, expiresAt: inFuture() });
    await login(store, 'alice');
    await login(store, 'alice');
    const bob = await login(store, 'bob');
    expect(await callsOf(calls, () => store.revokeFamilies('alice'))).toEqual([
      [FAMILIES, 'deleteMany', { uid: 'alice' }],
    ]);
    expect(families.docs.map((d) => d._id)).toEqual([bob.family]);
    expect(collection.docs).toHaveLength(1);
    expect(await store.consume('alice', tokenHash, { keep: false })).toEqual({ ok: true });
  });

  it('families expire by themselves: the TTL index on expiresAt purges them, rotation moves it', async () => {
    const { store, families } = setup();
    const dying = await login(store, 'alice', inFuture(1000));
    const moved = await login(store, 'bob', inFuture(1000));
    const step = next(3_600_000);
    expect((await store.rotateFamily(moved.family, moved.tokenHash, step)).ok).toBe(true);
    expect(families.runTtlMonitor(new Date(Date.now() + 999))).toBe(0);
    expect(families.runTtlMonitor(new Date(Date.now() + 2000))).toBe(1);
    expect(families.docs).toEqual([
      { _id: moved.family, uid: 'bob', tokenHash: step.tokenHash, expiresAt: step.expiresAt },
    ]);
    expect(await store.hasFamily(dying.family)).toBe(false);
    expect(await store.hasFamily(moved.family)).toBe(true);
  });

  it('families are not pending tokens: length ignores them, invalidateUser and the token TTL leave them', async () => {
    const { store, collection, families } = setup();
    const record = await login(store, 'alice');
    await store.storeOrUpdate({ uid: 'alice', tokenHash: hash(), expiresAt: new Date(Date.now() - 1) });
    expect(await store.length()).toBe(0);
    await store.invalidateUser('alice');
    expect(collection.runTtlMonitor()).toBe(1);
    expect(families.docs).toHaveLength(1);
    expect(await store.hasFamily(record.family)).toBe(true);
  });

  describe('hostile uids never reach another record', () => {
    const family = 'ab'.repeat(32);
    it.each([
      ['a uid equal to a family', family],
      ['{"$ne":null}', '{"$ne":null}'],
      ['$where', '$where'],
      ['$uid', '$uid'],
      ['.*', '.*'],
      ['*', '*'],
    ])('%s is a plain string: its token, its families and other families stay apart', async (_, uid) => {
      const { store, collection, families, calls } = setup();
      // A family whose _id is the hex string, owned by someone else, and one of the hostile uid.
      await store.createFamily({ family, uid: 'carol', tokenHash: hash(), expiresAt: inFuture() });
      const mine = await login(store, uid);
      const bob = await login(store, 'bob');
      const tokenHash = hash();
      await store.storeOrUpdate({ uid, tokenHash, expiresAt: inFuture() });
      expect(collection.docs.map((d) => d._id)).toEqual([uid]);
      expect(families.docs.find((d) => d._id === mine.family)).toMatchObject({ uid });

      await store.invalidateUser(uid);
      expect(await store.hasFamily(mine.family)).toBe(true);
      await store.storeOrUpdate({ uid, tokenHash, expiresAt: inFuture() });
      await store.revokeFamilies(uid);
      expect(await store.hasFamily(mine.family)).toBe(false);
      expect(await store.hasFamily(family)).toBe(true);
      expect(await store.hasFamily(bob.family)).toBe(true);
      expect(await store.consume(uid, tokenHash, { keep: false })).toEqual({ ok: true });
      expect(calls('deleteMany').map((c) => c.args)).toEqual([[{ uid }]]);
      expect(calls().flatMap(unsafeParts)).toEqual([]);
    });

    it('a uid equal to a family hex string: the family and that uid’s token are two documents in two collections', async () => {
      const { store, collection, families } = setup();
      await store.createFamily({ family, uid: 'carol', tokenHash: hash(), expiresAt: inFuture() });
      const tokenHash = hash();
      await store.storeOrUpdate({ uid: family, tokenHash, expiresAt: inFuture() });
      expect(collection.docs.map((d) => d._id)).toEqual([family]);
      expect(families.docs.map((d) => [d._id, d.uid])).toEqual([[family, 'carol']]);
      expect(await store.revokeFamily(family)).toBe('carol');
      expect(await store.consume(family, tokenHash, { keep: false })).toEqual({ ok: true });
    });
  });

  it.each([41, 42, 43, 44, 45])(
    'of 50 concurrent rotations with one hash exactly one succeeds and the family ends revoked (seed %i)',
    async (seed) => {
      const { store, families } = setup(seed);
      for (let round = 0; round < 5; round++) {
        const record = await login(store);
        const results = await Promise.all(
          Array.from({ length: 50 }, () => store.rotateFamily(record.family, record.tokenHash, next())),
        );
        expect(results.filter((r) => r.ok)).toEqual([{ ok: true, uid: 'alice' }]);
        const reasons = results.flatMap((r) => (r.ok ? [] : [r.reason]));
        // The first failure meets the new hash (reused) and revokes; the rest meet the tombstone (missing).
        expect(reasons.filter((r) => r === 'reused')).toHaveLength(1);
        expect(reasons.filter((r) => r === 'missing')).toHaveLength(48);
        expect(await store.hasFamily(record.family)).toBe(false);
        expect(families.docs.find((d) => d._id === record.family)).toEqual({
          _id: record.family,
          dead: true,
          expiresAt: EPOCH,
        });
      }
    },
  );

  it.each([51, 52, 53])(
    'the owner and a thief racing with the current and an old hash: at most one wins, and a reuse revokes (seed %i)',
    async (seed) => {
      const { store } = setup(seed);
      for (let round = 0; round < 10; round++) {
        const record = await login(store);
        const step = next();
        expect((await store.rotateFamily(record.family, record.tokenHash, step)).ok).toBe(true);
        // The owner presents the current token, a thief the old one it stole, at once.
        const [owner, thief] = await Promise.all([
          store.rotateFamily(record.family, step.tokenHash, next()),
          store.rotateFamily(record.family, record.tokenHash, next()),
        ]);
        expect(thief).toEqual({ ok: false, reason: 'reused' });
        // Owner first: it rotated, then the thief revoked. Thief first: the owner meets the tombstone.
        expect([
          { ok: true, uid: 'alice' },
          { ok: false, reason: 'missing' },
        ]).toContainEqual(owner);
        expect(await store.hasFamily(record.family)).toBe(false);
      }
    },
  );

  it('a rotation held at the server while the family is revoked finds it missing (one atomic step each)', async () => {
    const { client, store, families } = setup();
    const record = await login(store);
    const held = client.hold('findOneAndUpdate');
    const racing = store.rotateFamily(record.family, record.tokenHash, next());
    await held.reached;
    expect(await store.revokeFamily(record.family)).toBe('alice');
    held.release();
    expect(await racing).toEqual({ ok: false, reason: 'missing' });
    expect(families.docs).toEqual([]);
  });

  it('a driver error rejects every family method with that error, and a failed rotation changes nothing', async () => {
    const { client, store, families } = setup();
    const record = await login(store);
    const stored = structuredClone(families.docs);
    const down = new Error('connection reset');
    client.failNext('findOneAndUpdate', down);
    await expect(store.rotateFamily(record.family, record.tokenHash, next())).rejects.toBe(down);
    expect(families.docs).toEqual(stored);
    client.failNext('replaceOne', down);
    await expect(login(store)).rejects.toBe(down);
    client.failNext('findOne', down);
    await expect(store.hasFamily(record.family)).rejects.toBe(down);
    client.failNext('findOneAndDelete', down);
    await expect(store.revokeFamily(record.family)).rejects.toBe(down);
    client.failNext('deleteMany', down);
    await expect(store.revokeFamilies('alice')).rejects.toBe(down);
    expect(families.docs).toEqual(stored);
    // Back up: the family rotates with its hash as if nothing happened.
    expect(await store.rotateFamily(record.family, record.tokenHash, next())).toEqual({
      ok: true,
      uid: 'alice',
    });
  });

  it('a family document without a uid (not written by this store) rejects instead of resolving a uid', async () => {
    const { store, families } = setup();
    const family = hash();
    const tokenHash = hash();
    families.docs.push({ _id: family, tokenHash, expiresAt: inFuture() });
    await expect(store.rotateFamily(family, tokenHash, next())).rejects.toThrow(/uid/);
  });

  describe('refuses operator injection before calling the driver', () => {
    const op = { $ne: null } as never;
    const good = () => ({ family: hash(), uid: 'alice', tokenHash: hash(), expiresAt: inFuture() });
    it.each<[string, (store: MongoStore) => Promise<unknown>]>([
      ['createFamily with family { $ne: null }', (s) => s.createFamily({ ...good(), family: op })],
      ['createFamily with uid { $ne: null }', (s) => s.createFamily({ ...good(), uid: op })],
      ['createFamily with uid "a\\u0000b"', (s) => s.createFamily({ ...good(), uid: 'a\u0000b' })],
      [
        'createFamily with tokenHash { $gt: "" }',
        (s) => s.createFamily({ ...good(), tokenHash: { $gt: '' } as never }),
      ],
      [
        'createFamily with expiresAt { $gt: 0 }',
        (s) => s.createFamily({ ...good(), expiresAt: { $gt: 0 } as never }),
      ],
      [
        'createFamily with a family in upper case',
        (s) => s.createFamily({ ...good(), family: hash().toUpperCase() }),
      ],
      ['rotateFamily with family { $ne: null }', (s) => s.rotateFamily(op, hash(), next())],
      ['rotateFamily with tokenHash { $ne: null }', (s) => s.rotateFamily(hash(), op, next())],
      ['rotateFamily with tokenHash "$tokenHash"', (s) => s.rotateFamily(hash(), '$tokenHash', next())],
      [
        'rotateFamily with next.tokenHash "$tokenHash"',
        (s) => s.rotateFamily(hash(), hash(), { tokenHash: '$tokenHash', expiresAt: inFuture() }),
      ],
      [
        'rotateFamily with next.expiresAt "$expiresAt"',
        (s) => s.rotateFamily(hash(), hash(), { tokenHash: hash(), expiresAt: '$expiresAt' as never }),
      ],
      ['rotateFamily with next null', (s) => s.rotateFamily(hash(), hash(), null as never)],
      ['revokeFamily with family { $ne: null }', (s) => s.revokeFamily(op)],
      ['revokeFamilies with uid { $ne: null }', (s) => s.revokeFamilies(op)],
      ['revokeFamilies with uid { $regex: "." }', (s) => s.revokeFamilies({ $regex: '.' } as never)],
      ['revokeFamilies with an empty uid', (s) => s.revokeFamilies('')],
      ['hasFamily with family ".*"', (s) => s.hasFamily('.*')],
      ['hasFamily with family ["…"]', (s) => s.hasFamily([hash()] as never)],
    ])('%s rejects with INVALID_ARGUMENT and makes no driver call', async (_, act) => {
      const { store, calls } = setup();
      await expect(act(store)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(calls()).toEqual([]);
    });
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
    [
      'storeOrUpdate with lockable { $ne: null }',
      (s) => s.storeOrUpdate({ ...good, lockable: { $ne: null } } as never),
    ],
    [
      'storeOrUpdate with a budget max { $gt: 0 }',
      (s) => s.storeOrUpdate({ ...good, lockable: true }, { max: { $gt: 0 }, window: 1000 } as never),
    ],
    [
      'consume with a budget window "$failuresUntil"',
      (s) =>
        s.consume('alice', hash(), { keep: false, budget: { max: 3, window: '$failuresUntil' } } as never),
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

  it('the safety walk itself flags a user operator object, a $-string in an expression and a bare constant', () => {
    expect(unsafeParts({ collection: 'c', method: 'deleteOne', args: [{ _id: { $ne: null } }] })).not.toEqual(
      [],
    );
    expect(
      unsafeParts({
        collection: 'c',
        method: 'findOne',
        args: [{ $expr: { $lt: ['$attempts', '$where'] } }],
      }),
    ).not.toEqual([]);
    const update = (stage: unknown) =>
      unsafeParts({ collection: 'c', method: 'updateOne', args: [{ _id: 'a' }, [stage]] });
    expect(update({ $replaceWith: { _id: '$_id', origin: lit('$where') } })).toEqual([]);
    expect(update({ $replaceWith: { _id: '$_id', origin: '$where' } })).not.toEqual([]);
    expect(update({ $set: { origin: '/account' } })).not.toEqual([]);
    expect(update({ $set: { attempts: 0 } })).not.toEqual([]);
    expect(update({ $set: { origin: lit({ $ne: null }) } })).not.toEqual([]);
    expect(update({ $unset: ['tokenHash', '$where'] })).not.toEqual([]);
  });
});

describe('MongoStore over HTTP (fake driver)', () => {
  it('of 50 parallel GET /?token&uid with one single-use token exactly one logs in, 20 rounds', async () => {
    const client = new FakeMongoClient({ seed: 42 });
    await expectOneLoginPerToken(new MongoStore({ client: client.asMongoClient() }));
  }, 120_000);
});

describe('MongoStore in API mode over HTTP (fake driver)', () => {
  function apiApp(seed?: number, storeTimeout?: number) {
    const { client, store, families } = setup(seed);
    const pwd = new Passwordless();
    const errors: PasswordlessError[] = [];
    pwd.init(store, {
      jwt: { secret: 'an HS256 secret of at least 32 bytes!!' },
      secret: randomBytes(32),
      onError: (err) => errors.push(err),
      ...(storeTimeout === undefined ? {} : { storeTimeout }),
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
    app.post(
      '/auth/request',
      pwd.requestToken((user) => user, { json: true }),
    );
    app.post('/auth/accept', pwd.acceptToken({ json: true }));
    app.post('/auth/refresh', pwd.refresh());
    app.post(
      '/auth/logout-everywhere',
      pwd.bearerSupport(),
      pwd.logout({ everywhere: true, json: true }),
      (_req, res) => void res.status(204).end(),
    );
    const checked = express.Router();
    checked.use(pwd.bearerSupport({ checkRevocation: true }));
    checked.get('/', pwd.restricted(), (_req, res) => void res.json({ ok: true }));
    app.use('/checked', checked);
    const login = async (user = 'alice@example.com') => {
      await request(app).post('/auth/request').send({ user }).expect(202);
      const { uid, token } = sent[sent.length - 1]!;
      const res = await request(app).post('/auth/accept').send({ uid, token }).expect(200);
      return res.body as { accessToken: string; refreshToken: string };
    };
    const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });
    return { app, client, families, errors, login, bearer };
  }

  it('login, refresh, reuse detection, revocation check and logout everywhere work through the store', async () => {
    const { app, families, errors, login, bearer } = apiApp();
    const first = await login();
    expect(families.docs).toHaveLength(1);
    await request(app).get('/checked').set(bearer(first.accessToken)).expect(200);
    const second = (
      await request(app).post('/auth/refresh').send({ refreshToken: first.refreshToken }).expect(200)
    ).body as { accessToken: string; refreshToken: string };
    expect(second.refreshToken).not.toBe(first.refreshToken);
    // The old refresh token again: theft; the whole login is revoked, the new tokens included.
    await request(app).post('/auth/refresh').send({ refreshToken: first.refreshToken }).expect(401);
    await request(app).post('/auth/refresh').send({ refreshToken: second.refreshToken }).expect(401);
    await request(app).get('/checked').set(bearer(second.accessToken)).expect(401);
    expect(families.docs).toEqual([{ _id: expect.any(String), dead: true, expiresAt: new Date(0) }]);

    const a = await login();
    const b = await login();
    await request(app).post('/auth/logout-everywhere').set(bearer(a.accessToken)).expect(204);
    await request(app).post('/auth/refresh').send({ refreshToken: b.refreshToken }).expect(401);
    await request(app).get('/checked').set(bearer(b.accessToken)).expect(401);
    expect(errors).toEqual([]);
  });

  it.each([61, 62, 63])(
    'of 20 parallel refreshes with one refresh token exactly one gets new tokens, and the login ends revoked (seed %i)',
    async (seed) => {
      const { app, login, bearer } = apiApp(seed);
      const { refreshToken } = await login();
      const responses = await Promise.all(
        Array.from({ length: 20 }, () => request(app).post('/auth/refresh').send({ refreshToken })),
      );
      const winners = responses.filter((r) => r.status === 200);
      expect(winners).toHaveLength(1);
      expect(responses.filter((r) => r.status === 401)).toHaveLength(19);
      await request(app).get('/checked').set(bearer(winners[0]!.body.accessToken)).expect(401);
    },
  );

  it('a store outage on refresh answers 503 and leaves the refresh token valid', async () => {
    const { app, client, errors, login } = apiApp();
    const { refreshToken } = await login();
    client.failNext('findOneAndUpdate', new Error('connection reset'));
    const res = await request(app).post('/auth/refresh').send({ refreshToken }).expect(503);
    expect(res.body).toEqual({ error: 'temporarily_unavailable' });
    expect(errors.map((e) => e.code)).toEqual(['STORE_ERROR']);
    await request(app).post('/auth/refresh').send({ refreshToken }).expect(200);
  });

  it('a rotation the server never answers ends in 503 at storeTimeout instead of hanging', async () => {
    const { app, client, errors, login } = apiApp(undefined, 200);
    const { refreshToken } = await login();
    const held = client.hold('findOneAndUpdate');
    const started = Date.now();
    await request(app).post('/auth/refresh').send({ refreshToken }).expect(503);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(errors.map((e) => e.code)).toEqual(['STORE_ERROR']);
    // The server applies it late: the family moved on, and the client, which never got the new token, is out.
    held.release();
    await new Promise((resolve) => setImmediate(resolve));
    await request(app).post('/auth/refresh').send({ refreshToken }).expect(401);
  });
});

describe('the fake driver', () => {
  const coll = () => new FakeMongoClient().db().collection('c');

  it('applies pipelines as the server does: missing fields drop out, $max and $ifNull skip missing values', async () => {
    const c = coll();
    const at = new Date(1000);
    await c.findOneAndUpdate(
      { _id: 'a' },
      [
        { $replaceWith: { _id: '$_id', x: '$nope', y: { $literal: 1 } } },
        {
          $set: {
            p: { $ifNull: [{ $max: ['$nope', '$alsoNope'] }, { $literal: at }] },
            q: { $max: ['$y', '$nope'] },
          },
        },
      ],
      { upsert: true },
    );
    expect(c.docs).toEqual([{ _id: 'a', y: 1, p: at, q: 1 }]);
    await c.updateOne({ _id: 'a' }, [
      { $set: { y: { $add: ['$nope', { $literal: 1 }] } } },
      { $unset: ['q'] },
    ]);
    expect(c.docs).toEqual([{ _id: 'a', y: null, p: at }]);
  });

  it.each<[string, unknown]>([
    ['a classic update operator', { $inc: { n: 1 } }],
    ['an unknown stage', [{ $project: { n: 1 } }]],
    ['an unknown expression operator', [{ $set: { n: { $subtract: ['$n', { $literal: 1 }] } } }]],
    ['a variable other than $$ROOT', [{ $set: { n: '$$REMOVE' } }]],
    ['a $replaceWith that changes _id', [{ $replaceWith: { _id: { $literal: 'b' } } }]],
    ['a $set of _id', [{ $set: { _id: { $literal: 'b' } } }]],
  ])('throws on %s', async (_, update) => {
    const c = coll();
    c.docs.push({ _id: 'a', n: 1 });
    await expect(c.updateOne({ _id: 'a' }, update)).rejects.toThrow(/FakeMongo/);
  });

  it('evaluates $cond / $and / $eq / $gt over missing fields as the server does (missing sorts lowest)', async () => {
    const c = coll();
    const now = new Date(5000);
    c.docs.push(
      { _id: 'live', h: 'x', at: new Date(6000) },
      { _id: 'old', h: 'x', at: new Date(4000) },
      { _id: 'other', h: 'y', at: new Date(6000) },
      { _id: 'bare' },
      { _id: 'numeric', h: 'x', at: 7000 },
    );
    const pipeline = [
      {
        $replaceWith: {
          $cond: [
            { $and: [{ $eq: ['$h', lit('x')] }, { $gt: ['$at', lit(now)] }] },
            { _id: '$_id', ok: lit(true) },
            { _id: '$_id', ok: lit(false) },
          ],
        },
      },
    ];
    for (const d of structuredClone(c.docs)) await c.updateOne({ _id: d._id }, pipeline);
    // A number sorts below any date in BSON order, so { at: 7000 } is not after 1970-01-01T00:00:05Z.
    expect(c.docs).toEqual([
      { _id: 'live', ok: true },
      { _id: 'old', ok: false },
      { _id: 'other', ok: false },
      { _id: 'bare', ok: false },
      { _id: 'numeric', ok: false },
    ]);
  });

  it('findOneAndUpdate answers the document before or after, projected, and null when nothing matches', async () => {
    const c = coll();
    c.docs.push({ _id: 'a', n: 1, m: 2 });
    const set = (n: number) => [{ $set: { n: lit(n) } }];
    expect(await c.findOneAndUpdate({ _id: 'a' }, set(5), { returnDocument: 'before' })).toEqual({
      _id: 'a',
      n: 1,
      m: 2,
    });
    expect(
      await c.findOneAndUpdate({ _id: 'a' }, set(6), {
        returnDocument: 'after',
        projection: { _id: 0, n: 1 },
      }),
    ).toEqual({ n: 6 });
    expect(await c.findOneAndUpdate({ _id: 'b' }, set(7), { returnDocument: 'before' })).toBeNull();
    expect(c.docs).toEqual([{ _id: 'a', n: 6, m: 2 }]);
  });

  it('projects { _id: 1 } to the _id alone, and { _id: 0, x: 1 } to x alone', async () => {
    const c = coll();
    c.docs.push({ _id: 'a', x: 1, y: 2 });
    expect(await c.findOne({ _id: 'a' }, { projection: { _id: 1 } })).toEqual({ _id: 'a' });
    expect(await c.findOne({ _id: 'a' }, { projection: { _id: 0, x: 1 } })).toEqual({ x: 1 });
    expect(await c.findOne({ _id: 'a' }, { projection: { y: 0 } })).toEqual({ _id: 'a', x: 1 });
    expect(await c.findOneAndDelete({ _id: 'a' }, { projection: { _id: 0, y: 1 } })).toEqual({ y: 2 });
    expect(await c.findOneAndDelete({ _id: 'a' })).toBeNull();
  });

  it('replaceOne replaces the whole document (values as data), upserts only when asked, keeps _id first', async () => {
    const c = coll();
    c.docs.push({ _id: 'a', old: 1, dead: true });
    expect(await c.replaceOne({ _id: 'a' }, { v: '$where', at: new Date(1) })).toMatchObject({
      matchedCount: 1,
    });
    expect(c.docs).toEqual([{ _id: 'a', v: '$where', at: new Date(1) }]);
    expect(Object.keys(c.docs[0]!)[0]).toBe('_id');
    expect(await c.replaceOne({ _id: 'b' }, { v: 1 })).toMatchObject({ matchedCount: 0, upsertedCount: 0 });
    expect(c.docs).toHaveLength(1);
    expect(await c.replaceOne({ _id: 'b' }, { v: 2 }, { upsert: true })).toMatchObject({ upsertedCount: 1 });
    expect(c.docs).toEqual([
      { _id: 'a', v: '$where', at: new Date(1) },
      { _id: 'b', v: 2 },
    ]);
  });

  it.each<[string, unknown, unknown, unknown]>([
    ['an operator key', { _id: 'a' }, { $set: { v: 1 } }, undefined],
    ['a nested document', { _id: 'a' }, { v: { $ne: null } }, undefined],
    ['an array value', { _id: 'a' }, { v: ['x'] }, undefined],
    ['a changed _id', { _id: 'a' }, { _id: 'z', v: 1 }, undefined],
    ['an upsert with more than { _id }', { _id: 'b', v: 1 }, { v: 1 }, { upsert: true }],
  ])('replaceOne throws on %s', async (_, filter, replacement, options) => {
    const c = coll();
    c.docs.push({ _id: 'a', v: 0 });
    await expect(c.replaceOne(filter, replacement, options)).rejects.toThrow(/FakeMongo/);
    expect(c.docs).toEqual([{ _id: 'a', v: 0 }]);
  });

  it('query $gt is type-bracketed: a date bound matches dates only, never a missing field', async () => {
    const c = coll();
    c.docs.push({ _id: 'date', at: new Date(9000) }, { _id: 'num', at: 9000 }, { _id: 'none' });
    expect(await c.countDocuments({ at: { $gt: new Date(1000) } })).toBe(1);
    expect(await c.deleteMany({ uid: 'x' })).toEqual({ deletedCount: 0 });
  });

  it('the TTL monitor removes documents whose TTL field is a date at or before now, and needs the index', async () => {
    const c = coll();
    c.docs.push({ _id: 'a', at: new Date(0) }, { _id: 'b', at: new Date(Date.now() + 60_000) }, { _id: 'c' });
    expect(c.runTtlMonitor()).toBe(0);
    await c.createIndex({ at: 1 }, { expireAfterSeconds: 0 });
    expect(c.runTtlMonitor()).toBe(1);
    expect(c.docs.map((d) => d._id)).toEqual(['b', 'c']);
  });

  it('an upsert needs the filter { _id: string } alone', async () => {
    await expect(
      coll().findOneAndUpdate({ _id: 'a', n: 1 }, [{ $set: { n: { $literal: 1 } } }], { upsert: true }),
    ).rejects.toThrow(/FakeMongo/);
  });
});
