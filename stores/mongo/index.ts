import type { Collection, Filter, MongoClient } from 'mongodb';
import { PasswordlessError } from '../../src/errors.js';
import { readOptions } from '../../src/options.js';
import { assertConsumeArgs, assertInvalidateArgs, assertTokenRecord } from '../../src/store-args.js';
import type { ConsumeOptions, ConsumeResult, TokenRecord, TokenStore } from '../../src/types.js';

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
 * One pending token as stored. The uid is the `_id`, so MongoDB's built-in unique `_id` index gives "at most one
 * token per uid" and every lookup is a point read, without a second index.
 */
export interface MongoTokenDocument {
  /** The uid. */
  _id: string;
  /** Hex SHA-256 / HMAC-SHA256 of the token; the plain token is never stored. */
  tokenHash: string;
  /** The token is refused from this instant on; the TTL index purges the document after it. */
  expiresAt: Date;
  /** Same-site path to return to after login; absent when none was given. */
  origin?: string;
  /** Wrong tries counted so far; reset to 0 when a new token is stored. */
  attempts: number;
  /** Wrong tries after which the record is void; absent means unlimited (never null: see `matchable`). */
  maxAttempts?: number;
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

// The attempts guard: a record whose count has reached maxAttempts can never match again, from the very write that
// counted the last allowed wrong try, even before the clean-up delete lands. `$exists: false` because `$lt` against a
// missing field is false; that is also why storeOrUpdate omits maxAttempts instead of writing null.
const NOT_EXHAUSTED = [
  { maxAttempts: { $exists: false } },
  { $expr: { $lt: ['$attempts', '$maxAttempts'] } },
];
// An exhausted record, whichever one the uid holds now: a record stored since our count is left alone.
const EXHAUSTED = { maxAttempts: { $exists: true }, $expr: { $gte: ['$attempts', '$maxAttempts'] } };

/**
 * Token store on MongoDB (peer dependency `mongodb`). One document per uid, a TTL index on `expiresAt`, and an
 * `expiresAt > now` condition on every read because the TTL monitor only runs every 60 seconds. See docs/token-stores.md.
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
   * Creates the TTL index on `expiresAt` (once per store; a failure rejects and is retried by the next call). Called
   * by the first `storeOrUpdate`; call it at startup to fail fast and keep the index build off the first request.
   */
  ensureIndexes(): Promise<void> {
    this.#indexes ??= this.#collection.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 }).then(
      () => undefined,
      (err: unknown) => {
        this.#indexes = undefined;
        throw err;
      },
    );
    return this.#indexes;
  }

  // One round trip (plus the index creation, once): replacing the whole document also resets `attempts`.
  async storeOrUpdate(record: TokenRecord): Promise<void> {
    assertTokenRecord(record);
    await this.ensureIndexes();
    // Built field by field from the checked record: no other key can reach the server, and absent optional fields
    // stay absent (the driver would store `undefined` as null, which the attempts guard would read as "exhausted").
    const doc: Omit<MongoTokenDocument, '_id'> = {
      tokenHash: record.tokenHash,
      expiresAt: record.expiresAt,
      attempts: 0,
    };
    if (record.origin !== undefined) doc.origin = record.origin;
    if (record.maxAttempts !== undefined) doc.maxAttempts = record.maxAttempts;
    await this.#collection.replaceOne({ _id: record.uid }, doc, { upsert: true });
  }

  // Round trips: a match is one (findOneAndDelete, or findOne with keep); a wrong token or an unknown uid two (that
  // plus findOneAndUpdate $inc); the one wrong try that reaches maxAttempts three (plus the clean-up deleteOne). The
  // hash comparison happens in the server's filter, atomically with the expiry and attempts checks and the delete.
  async consume(uid: string, tokenHash: string, options: ConsumeOptions): Promise<ConsumeResult> {
    // uid and tokenHash are checked to be strings (tokenHash: 64 hex characters) before any filter is built, so an
    // operator object such as { $ne: null } can never reach the server as a value (NoSQL injection).
    assertConsumeArgs(uid, tokenHash, options);
    const now = new Date();
    const match: Filter<MongoTokenDocument> = {
      _id: uid,
      tokenHash,
      expiresAt: { $gt: now },
      $or: NOT_EXHAUSTED,
    };
    const projection = { _id: 0, origin: 1 };
    const found = options.keep
      ? await this.#collection.findOne(match, { projection })
      : await this.#collection.findOneAndDelete(match, { projection });
    if (found) return typeof found.origin === 'string' ? { ok: true, origin: found.origin } : { ok: true };

    // Not a match: count one wrong try on the uid's live record, atomically ($inc on the server).
    const counted = await this.#collection.findOneAndUpdate(
      { _id: uid, expiresAt: { $gt: now } },
      { $inc: { attempts: 1 } },
      { returnDocument: 'after', projection: { _id: 0, attempts: 1, maxAttempts: 1 } },
    );
    if (!counted) return { ok: false, reason: 'missing' };
    const { attempts, maxAttempts } = counted;
    if (typeof maxAttempts === 'number' && attempts >= maxAttempts) {
      // Already void through the guard in `match`; this only removes it sooner than the TTL monitor would.
      await this.#collection.deleteOne({ _id: uid, ...EXHAUSTED });
      return { ok: false, reason: 'exhausted' };
    }
    return { ok: false, reason: 'mismatch' };
  }

  // Exact match on _id with a checked string: '*', '%' or '{"$ne":null}' are just uids that do not exist.
  async invalidateUser(uid: string, tokenHash?: string): Promise<void> {
    assertInvalidateArgs(uid, tokenHash);
    // With a hash, only the record that still holds it (a token stored meanwhile survives).
    await this.#collection.deleteOne(tokenHash === undefined ? { _id: uid } : { _id: uid, tokenHash });
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
