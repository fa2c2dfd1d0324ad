import type { Collection, Document, MongoClient } from 'mongodb';
import { PasswordlessError } from '../../src/errors.js';
import { readOptions } from '../../src/options.js';
import {
  assertBudget,
  assertConsumeArgs,
  assertInvalidateArgs,
  assertTokenRecord,
} from '../../src/store-args.js';
import { safeEqual } from '../../src/token.js';
import type {
  ConsumeOptions,
  ConsumeResult,
  FailureBudget,
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
  /** Collection that holds the pending tokens; the store owns every document in it. Default: `'passwordless_tokens'`. */
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

/**
 * Token store on MongoDB (peer dependency `mongodb`). One document per uid holding its pending token and its failure
 * budget state, a TTL index on `purgeAt` (the later of the token's expiry and the end of the failure window), and an
 * `expiresAt > now` condition on every token read because the TTL monitor only runs every 60 seconds. Every write is
 * one single-document atomic operation. See docs/token-stores.md.
 */
export class MongoStore implements TokenStore {
  readonly #collection: Collection<MongoTokenDocument>;
  #indexes: Promise<void> | undefined;

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
    this.#collection = client
      .db(dbName)
      .collection<MongoTokenDocument>(collection, { readPreference: 'primary' });
  }

  /**
   * Creates the TTL index on `purgeAt` (once per store; a failure rejects and is retried by the next call). Called by
   * the first `storeOrUpdate`; call it at startup to fail fast and keep the index build off the first request.
   */
  ensureIndexes(): Promise<void> {
    this.#indexes ??= this.#collection.createIndex({ purgeAt: 1 }, { expireAfterSeconds: 0 }).then(
      () => undefined,
      (err: unknown) => {
        this.#indexes = undefined;
        throw err;
      },
    );
    return this.#indexes;
  }

  // One round trip (plus the index creation, once), stored or refused: an upserting findOneAndUpdate whose pipeline
  // replaces the token (resetting `attempts`) and carries the uid's failure state over. With a budget and a lockable
  // record, the pipeline keeps the document as it is while the uid is over its budget: the check and the write are one
  // atomic step, so no code can be stored by a request racing the guess that locks the uid.
  async storeOrUpdate(record: TokenRecord, budget?: FailureBudget): Promise<StoreResult> {
    assertTokenRecord(record);
    assertBudget(budget);
    await this.ensureIndexes();
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

  async clear(): Promise<void> {
    await this.#collection.deleteMany({});
  }

  async length(): Promise<number> {
    return this.#collection.countDocuments({ expiresAt: { $gt: new Date() } });
  }

  // The store opened nothing of its own: the client belongs to the app, which closes it.
  async close(): Promise<void> {}
}
