import type { Collection, Document, MongoClient } from 'mongodb';
import { PasswordlessError } from '../../src/errors.js';
import { readOptions } from '../../src/options.js';
import {
  assertBudget,
  assertConsumeArgs,
  assertFamilyRecord,
  assertInvalidateArgs,
  assertRotateArgs,
  assertTokenHash,
  assertTokenRecord,
  assertUid,
} from '../../src/store-args.js';
import { safeEqual } from '../../src/token.js';
import type {
  ConsumeOptions,
  ConsumeResult,
  FailureBudget,
  RefreshFamily,
  RefreshRotation,
  RotateResult,
  StoreResult,
  TokenRecord,
  TokenStore,
} from '../../src/types.js';

/** Options of {@link MongoStore}. */
export interface MongoStoreOptions {
  /** A MongoClient the app created (and connects and closes); the store never closes it. */
  client: MongoClient;
  /** Database to use. Default: the database named in the client's connection string (else `test`, the driver's). */
  dbName?: string;
  /**
   * Collection that holds the pending tokens; the store owns every document in it, and in `<collection>_families`
   * (the refresh families of API mode). Default: `'passwordless_tokens'`.
   */
  collection?: string;
}

/**
 * What the store keeps for one uid: its pending token and its failure budget state. The uid is the `_id`, so MongoDB's
 * built-in unique `_id` index gives "at most one token per uid" and every lookup is a point read, without a second
 * index. The token fields are all present (a pending token) or all absent (the token was used, voided or invalidated
 * while the uid's failures are still live); the failure fields are absent until the first counted failure.
 */
export interface MongoTokenDocument {
  /** The uid. */
  _id: string;
  /** Hex SHA-256 / HMAC-SHA256 of the token; the plain token is never stored. */
  tokenHash?: string;
  /** The token is refused from this instant on (every read checks it; the TTL index is on `purgeAt`). */
  expiresAt?: Date;
  /** Same-site path to return to after login; absent when none was given. */
  origin?: string;
  /** Wrong tries counted so far; reset to 0 when a new token is stored. */
  attempts?: number;
  /** Wrong tries after which the record is void; absent means unlimited (never null: see `NOT_EXHAUSTED`). */
  maxAttempts?: number;
  /** `true` for a short code, which the uid's failure budget can lock; absent for a link. */
  lockable?: true;
  /** Wrong tokens of the uid across re-requests (with a budget); forgotten once `failuresUntil` has passed. */
  failures?: number;
  /** The end of the failure window: the last counted failure plus `budget.window`. */
  failuresUntil?: Date;
  /** The later of `expiresAt` and `failuresUntil` (else the instant the document became empty): the TTL index field. */
  purgeAt: Date;
}

/**
 * One refresh family (a login in API mode), in the collection `<collection>_families`: a collection of its own, so a
 * family's `_id` and a uid's `_id` never meet, whatever the uid. A family that rotation found expired or presented
 * with another hash is not deleted but replaced by a tombstone `{ _id, dead: true, expiresAt: epoch }` in the same
 * atomic write (a findOneAndUpdate cannot delete): it has no uid or hash, its `expiresAt` is in the past for every
 * `expiresAt > now` read, and the TTL index removes it at the monitor's next pass.
 */
export interface MongoFamilyDocument {
  /** The family: 64 hex characters, the hash of the family id of the login's refresh tokens. */
  _id: string;
  /** The user of this login; absent in a tombstone. */
  uid?: string;
  /** 64 hex characters: the hash of the current refresh token's secret part; absent in a tombstone. */
  tokenHash?: string;
  /** The family is refused from this instant on (every read checks it); the TTL index field. The epoch in a tombstone. */
  expiresAt: Date;
  /** A family revoked by rotation (reuse) or found expired by it: `missing` from then on. */
  dead?: true;
}

type KeysOf<T> = Record<keyof Required<T>, true>;
const OPTION_KEYS: KeysOf<MongoStoreOptions> = { client: true, dbName: true, collection: true };

function badOption(message: string): PasswordlessError {
  return new PasswordlessError('BAD_OPTIONS', `new MongoStore(): ${message}`);
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return typeof value;
}

// The attempts guard: a record whose count has reached maxAttempts is never compared or counted again. The write that
// counts the last allowed wrong try also removes the token, so this only matters for a document written otherwise; it
// stays as a second line. `$exists: false` because `$lt` against a missing field is false; that is also why
// storeOrUpdate omits maxAttempts instead of writing null.
const NOT_EXHAUSTED = [
  { maxAttempts: { $exists: false } },
  { $expr: { $lt: ['$attempts', '$maxAttempts'] } },
];

// Aggregation expressions (in `$expr` and in update pipelines). Every constant goes in `$literal`: inside an expression
// a string starting with `$` names a field, so a value (an origin, a hash) must never stand there bare.
type Literal = string | number | boolean | Date;
const lit = (value: Literal) => ({ $literal: value });

/** The uid is over its budget at `now`: as many failures as allowed, within their window (read before the write). */
function overBudget(budget: FailureBudget, now: Date): Document {
  return { $and: [{ $gte: ['$failures', lit(budget.max)] }, { $gt: ['$failuresUntil', lit(now)] }] };
}

/** The document holds a lockable token and the uid is over its budget: no code is compared or counted. */
function locked(budget: FailureBudget, now: Date): Document {
  return { $and: [{ $eq: ['$lockable', lit(true)] }, overBudget(budget, now)] };
}

/** {@link overBudget} on a document the server returned, with the same `now`. */
function isOverBudget(doc: Partial<MongoTokenDocument>, budget: FailureBudget, now: Date): boolean {
  return (
    typeof doc.failures === 'number' &&
    doc.failures >= budget.max &&
    doc.failuresUntil instanceof Date &&
    doc.failuresUntil.getTime() > now.getTime()
  );
}

/** `purgeAt`: the later of the token's expiry and the end of the failure window, else now (purged at the next pass). */
function purgeAt(now: Date): Document {
  return { $ifNull: [{ $max: ['$expiresAt', '$failuresUntil'] }, lit(now)] };
}

/** The document without its token: only the uid's failure state stays, until the TTL index purges it. */
const WITHOUT_TOKEN = { _id: '$_id', failures: '$failures', failuresUntil: '$failuresUntil' };

/** Update pipeline that removes the token of the matched document and keeps the uid's failure state. */
function removeToken(now: Date): Document[] {
  return [{ $replaceWith: WITHOUT_TOKEN }, { $set: { purgeAt: purgeAt(now) } }];
}

/** The token fields, as field paths: a document built from them keeps the token and drops everything else. */
const TOKEN = {
  _id: '$_id',
  tokenHash: '$tokenHash',
  expiresAt: '$expiresAt',
  origin: '$origin',
  attempts: '$attempts',
  maxAttempts: '$maxAttempts',
  lockable: '$lockable',
};
const CONSUME_PROJECTION = {
  _id: 0,
  tokenHash: 1,
  origin: 1,
  attempts: 1,
  maxAttempts: 1,
  lockable: 1,
  failures: 1,
  failuresUntil: 1,
};

/**
 * The document after one consume, as an expression over the document before it (the uid's live token):
 * - lockable and the uid over its budget → unchanged: the hash is not compared, nothing is counted;
 * - the hash matches → the token stays with `keep`, else it goes; with a budget the failures go too;
 * - otherwise one more attempt (from 0 if the field is missing), the token gone once it reaches maxAttempts, and with
 *   a budget one more failure (from 0 once the window has passed) and the window moved to now + budget.window.
 */
function consumed(tokenHash: string, keep: boolean, budget: FailureBudget | undefined, now: Date): Document {
  const attempts = { $add: [{ $ifNull: ['$attempts', lit(0)] }, lit(1)] };
  const failures = budget
    ? {
        failures: {
          $add: [
            { $cond: [{ $gt: ['$failuresUntil', lit(now)] }, { $ifNull: ['$failures', lit(0)] }, lit(0)] },
            lit(1),
          ],
        },
        failuresUntil: lit(new Date(now.getTime() + budget.window)),
      }
    : { failures: '$failures', failuresUntil: '$failuresUntil' };
  const exhausted = { $and: [{ $isNumber: ['$maxAttempts'] }, { $gte: [attempts, '$maxAttempts'] }] };
  const miss = { $cond: [exhausted, { _id: '$_id', ...failures }, { ...TOKEN, attempts, ...failures }] };
  const match = keep ? (budget ? TOKEN : '$$ROOT') : budget ? { _id: '$_id' } : WITHOUT_TOKEN;
  const decided = { $cond: [{ $eq: ['$tokenHash', lit(tokenHash)] }, match, miss] };
  return budget ? { $cond: [locked(budget, now), '$$ROOT', decided] } : decided;
}

/** A tombstone's `expiresAt`: past for every read, and removed at the TTL monitor's next pass. */
const EPOCH = new Date(0);

/**
 * The family document after one rotation, as an expression over the document before it: the current hash of an
 * unexpired family → the next hash and expiry (uid kept); anything else (another hash, expired, a tombstone) → a
 * tombstone. A tombstone has no `tokenHash`, so it never matches and stays one.
 */
function rotated(tokenHash: string, next: RefreshRotation, now: Date): Document {
  return {
    $cond: [
      { $and: [{ $eq: ['$tokenHash', lit(tokenHash)] }, { $gt: ['$expiresAt', lit(now)] }] },
      { _id: '$_id', uid: '$uid', tokenHash: lit(next.tokenHash), expiresAt: lit(next.expiresAt) },
      { _id: '$_id', dead: lit(true), expiresAt: lit(EPOCH) },
    ],
  };
}
const ROTATE_PROJECTION = { _id: 0, uid: 1, tokenHash: 1, expiresAt: 1, dead: 1 };

/** An unexpired family, as a document the server returned (a tombstone's `expiresAt` is the epoch). */
function isLive(doc: Partial<MongoFamilyDocument> | null, now: Date): boolean {
  return (
    doc !== null &&
    doc.dead !== true &&
    doc.expiresAt instanceof Date &&
    doc.expiresAt.getTime() > now.getTime()
  );
}

/**
 * Token store on MongoDB (peer dependency `mongodb`). One document per uid holding its pending token and its failure
 * budget state, a TTL index on `purgeAt` (the later of the token's expiry and the end of the failure window), and an
 * `expiresAt > now` condition on every token read because the TTL monitor only runs every 60 seconds. The refresh
 * families of API mode live in `<collection>_families` (TTL index on `expiresAt`, index on `uid`). Every write is one
 * single-document atomic operation, except `clear` and `revokeFamilies` (deleteMany). See docs/token-stores.md.
 */
export class MongoStore implements TokenStore {
  readonly #collection: Collection<MongoTokenDocument>;
  readonly #families: Collection<MongoFamilyDocument>;
  #tokenIndexes: Promise<void> | undefined;
  #familyIndexes: Promise<void> | undefined;

  constructor(options: MongoStoreOptions) {
    if (typeof options !== 'object' || options === null || Array.isArray(options)) {
      throw badOption(`pass { client, dbName?, collection? }; got ${describeValue(options)}.`);
    }
    readOptions('new MongoStore()', options, OPTION_KEYS);
    const { client, dbName, collection = 'passwordless_tokens' } = options;
    // Duck-typed, so the store needs no value import of mongodb (and works with any copy of the driver the app has).
    if (typeof client !== 'object' || client === null || typeof client.db !== 'function') {
      throw badOption(
        `\`client\` must be a MongoClient from the mongodb package (peer dependency: npm install mongodb), ` +
          `created by the app: new MongoClient(url); got ${describeValue(client)}.`,
      );
    }
    // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is one of the refused characters
    if (dbName !== undefined && (typeof dbName !== 'string' || !/^[^/\\. "$\u0000]{1,63}$/.test(dbName))) {
      throw badOption(
        `\`dbName\` must be 1–63 characters without / \\ . " $ or NUL; got ${describeValue(dbName)}.`,
      );
    }
    if (
      typeof collection !== 'string' ||
      collection.length === 0 ||
      collection.includes('$') ||
      collection.includes('\0') ||
      collection.startsWith('system.')
    ) {
      throw badOption(
        '`collection` must be a non-empty name without $ or NUL, not starting with "system."; ' +
          `got ${describeValue(collection)}.`,
      );
    }
    // Reads from the primary whatever the client's default: a secondary may still hold a token that was just consumed
    // or invalidated, which `findOne` (allowTokenReuse) would then accept.
    const db = client.db(dbName);
    this.#collection = db.collection<MongoTokenDocument>(collection, { readPreference: 'primary' });
    // From the primary too: a lagging secondary would still show a revoked family as live to hasFamily.
    this.#families = db.collection<MongoFamilyDocument>(`${collection}_families`, {
      readPreference: 'primary',
    });
  }

  /**
   * Creates the indexes of both collections: the TTL index on `purgeAt` of the tokens, and the TTL index on `expiresAt`
   * and the index on `uid` of the families (each set once per store; a failure rejects and is retried by the next
   * call). The first `storeOrUpdate` creates the first, the first `createFamily` the other two; call this at startup to
   * fail fast and keep the index builds off the first requests.
   */
  async ensureIndexes(): Promise<void> {
    await Promise.all([this.#ensureTokenIndexes(), this.#ensureFamilyIndexes()]);
  }

  #ensureTokenIndexes(): Promise<void> {
    this.#tokenIndexes ??= this.#collection.createIndex({ purgeAt: 1 }, { expireAfterSeconds: 0 }).then(
      () => undefined,
      (err: unknown) => {
        this.#tokenIndexes = undefined;
        throw err;
      },
    );
    return this.#tokenIndexes;
  }

  #ensureFamilyIndexes(): Promise<void> {
    this.#familyIndexes ??= Promise.all([
      this.#families.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 }),
      this.#families.createIndex({ uid: 1 }),
    ]).then(
      () => undefined,
      (err: unknown) => {
        this.#familyIndexes = undefined;
        throw err;
      },
    );
    return this.#familyIndexes;
  }

  // One round trip (plus the index creation, once), stored or refused: an upserting findOneAndUpdate whose pipeline
  // replaces the token (resetting `attempts`) and carries the uid's failure state over. With a budget and a lockable
  // record, the pipeline keeps the document as it is while the uid is over its budget: the check and the write are one
  // atomic step, so no code can be stored by a request racing the guess that locks the uid.
  async storeOrUpdate(record: TokenRecord, budget?: FailureBudget): Promise<StoreResult> {
    assertTokenRecord(record);
    assertBudget(budget);
    await this.#ensureTokenIndexes();
    const now = new Date();
    // Built field by field from the checked record: no other key can reach the server, and absent optional fields
    // stay absent (null would read as "exhausted" in the attempts guard).
    const token: Document = {
      _id: '$_id',
      tokenHash: lit(record.tokenHash),
      expiresAt: lit(record.expiresAt),
      attempts: lit(0),
    };
    if (record.origin !== undefined) token.origin = lit(record.origin);
    if (record.maxAttempts !== undefined) token.maxAttempts = lit(record.maxAttempts);
    if (record.lockable === true) token.lockable = lit(true);
    // A field path to a missing field adds nothing: a uid without failures gets no failure fields.
    token.failures = '$failures';
    token.failuresUntil = '$failuresUntil';
    const check = budget !== undefined && record.lockable === true;
    const after = await this.#collection.findOneAndUpdate(
      { _id: record.uid },
      [
        { $replaceWith: check ? { $cond: [overBudget(budget, now), '$$ROOT', token] } : token },
        { $set: { purgeAt: purgeAt(now) } },
      ],
      { upsert: true, returnDocument: 'after', projection: { _id: 0, failures: 1, failuresUntil: 1 } },
    );
    // The write leaves the failure fields as they were, so the document after it is over the budget exactly when the
    // document before it was, that is, when the pipeline kept it instead of storing.
    if (check && after && isOverBudget(after, budget, now)) {
      return { lockedUntil: new Date((after.failuresUntil as Date).getTime()) };
    }
  }

  // One round trip whatever the outcome: a single findOneAndUpdate whose pipeline compares the hash, and counts, voids
  // or forgets in the same atomic step, so no try is ever compared with a token before the tries ahead of it are
  // counted (a burst of concurrent guesses gets exactly as many comparisons as maxAttempts and the budget allow).
  async consume(uid: string, tokenHash: string, options: ConsumeOptions): Promise<ConsumeResult> {
    // uid and tokenHash are checked to be strings (tokenHash: 64 hex characters) before anything is built, so an
    // operator object such as { $ne: null } can never reach the server as a value (NoSQL injection).
    assertConsumeArgs(uid, tokenHash, options);
    const { keep, budget } = options;
    const now = new Date();
    const before = await this.#collection.findOneAndUpdate(
      // The uid's live token: unexpired and not exhausted. Nothing else is compared or counted, so guesses for a uid
      // with no pending token count nothing (nobody can lock a uid at will).
      { _id: uid, expiresAt: { $gt: now }, $or: NOT_EXHAUSTED },
      [{ $replaceWith: consumed(tokenHash, keep, budget, now) }, { $set: { purgeAt: purgeAt(now) } }],
      { returnDocument: 'before', projection: CONSUME_PROJECTION },
    );
    // The outcome is read from the document before the write, by the same rules the pipeline applied to it.
    if (!before) return { ok: false, reason: 'missing' };
    if (budget && before.lockable === true && isOverBudget(before, budget, now)) {
      return { ok: false, reason: 'locked' };
    }
    if (typeof before.tokenHash === 'string' && safeEqual(before.tokenHash, tokenHash)) {
      return typeof before.origin === 'string' ? { ok: true, origin: before.origin } : { ok: true };
    }
    const { attempts, maxAttempts } = before;
    if (typeof maxAttempts === 'number' && (attempts ?? 0) + 1 >= maxAttempts) {
      return { ok: false, reason: 'exhausted' };
    }
    return { ok: false, reason: 'mismatch' };
  }

  // Exact match on _id with a checked string: '*', '%' or '{"$ne":null}' are just uids that do not exist. Removes the
  // token only; the uid's failure state stays until its window ends (one round trip).
  async invalidateUser(uid: string, tokenHash?: string): Promise<void> {
    assertInvalidateArgs(uid, tokenHash);
    // With a hash, only the record that still holds it (a token stored meanwhile survives).
    await this.#collection.updateOne(
      tokenHash === undefined ? { _id: uid } : { _id: uid, tokenHash },
      removeToken(new Date()),
    );
  }

  // Both collections (two round trips, in parallel): pending tokens, failure counts and refresh families.
  async clear(): Promise<void> {
    await Promise.all([this.#collection.deleteMany({}), this.#families.deleteMany({})]);
  }

  // Pending tokens only: families live in the other collection.
  async length(): Promise<number> {
    return this.#collection.countDocuments({ expiresAt: { $gt: new Date() } });
  }

  // One round trip (plus the index creation, once): a replacing upsert keyed by the family, built field by field from
  // the checked record; a replacement document takes its values as data, so a uid such as '$where' is just a string.
  async createFamily(record: RefreshFamily): Promise<void> {
    assertFamilyRecord(record);
    await this.#ensureFamilyIndexes();
    await this.#families.replaceOne(
      { _id: record.family },
      { uid: record.uid, tokenHash: record.tokenHash, expiresAt: record.expiresAt },
      { upsert: true },
    );
  }

  // One round trip whatever the outcome: a single findOneAndUpdate whose pipeline moves the family to the next hash
  // when it holds this one and is unexpired, and otherwise turns it into a tombstone, in one atomic step. The outcome
  // is read from the document before the write, by the same rules and the same now. Of concurrent calls with one hash
  // the first applied moves the family on; the others meet the new hash and revoke it (`reused`), or its tombstone
  // (`missing`).
  async rotateFamily(family: string, tokenHash: string, next: RefreshRotation): Promise<RotateResult> {
    assertRotateArgs(family, tokenHash, next);
    const now = new Date();
    const before = await this.#families.findOneAndUpdate(
      { _id: family },
      [{ $replaceWith: rotated(tokenHash, next, now) }],
      { returnDocument: 'before', projection: ROTATE_PROJECTION },
    );
    if (!before || before.dead === true) return { ok: false, reason: 'missing' };
    if (!isLive(before, now)) return { ok: false, reason: 'expired' };
    if (typeof before.tokenHash !== 'string' || !safeEqual(before.tokenHash, tokenHash)) {
      return { ok: false, reason: 'reused' };
    }
    // The pipeline copied the uid as it found it; a document without a string uid was not written by this store.
    if (typeof before.uid !== 'string') throw new Error('MongoStore: a refresh family without a uid');
    return { ok: true, uid: before.uid };
  }

  // One round trip: deletes the family (live, expired or a tombstone) and reads it in the same step.
  async revokeFamily(family: string): Promise<string | undefined> {
    assertTokenHash('revokeFamily', family, 'family');
    const now = new Date();
    const before = await this.#families.findOneAndDelete(
      { _id: family },
      { projection: { _id: 0, uid: 1, expiresAt: 1, dead: 1 } },
    );
    return isLive(before, now) && typeof before?.uid === 'string' ? before.uid : undefined;
  }

  // One round trip, on the uid index: an exact match on a checked string (tombstones have no uid and stay for the TTL
  // monitor).
  async revokeFamilies(uid: string): Promise<void> {
    assertUid('revokeFamilies', uid);
    await this.#families.deleteMany({ uid });
  }

  // One round trip: a point read on _id; a tombstone's expiresAt is the epoch, so it is never found.
  async hasFamily(family: string): Promise<boolean> {
    assertTokenHash('hasFamily', family, 'family');
    const doc = await this.#families.findOne(
      { _id: family, expiresAt: { $gt: new Date() } },
      { projection: { _id: 1 } },
    );
    return doc !== null;
  }

  // The store opened nothing of its own: the client belongs to the app, which closes it.
  async close(): Promise<void> {}
}
