import type { Cluster, Redis } from 'ioredis';
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
  isStorableString,
  MAX_UID_LENGTH,
} from '../../src/store-args.js';
import type {
  ConsumeFailure,
  ConsumeOptions,
  ConsumeResult,
  FailureBudget,
  RefreshFamily,
  RefreshRotation,
  RotateFailure,
  RotateResult,
  StoreResult,
  TokenRecord,
  TokenStore,
} from '../../src/types.js';
import { type LuaScript, SCRIPTS } from './scripts.js';

/** Options of {@link RedisStore}. */
export interface RedisStoreOptions {
  /** An ioredis `Redis` or `Cluster` the app created and owns; the store never connects, quits or redefines it. */
  client: Redis | Cluster;
  /**
   * Put before every key: one key `${prefix}${uid}` per uid with a pending token or live failures, and in API mode
   * `${prefix}\u0001f:${family}` per refresh family and `${prefix}\u0001u:${uid}` per uid with families. Glob
   * characters are fine; it must not be the start of another prefix in the same database, or `clear()` of this store
   * reaches into the other. Default: `'pwdless:'`.
   */
  prefix?: string;
}

// Every key of RedisStoreOptions, so a typo such as `keyPrefix` is refused instead of silently ignored.
const OPTION_KEYS: Record<keyof RedisStoreOptions, true> = { client: true, prefix: true };

/** Keys asked of SCAN per page (a hint; Redis may return a few more or fewer). */
const SCAN_COUNT = 1000;
/** Keys per UNLINK on a standalone server. */
const UNLINK_BATCH = 500;
const CONSUME_FAILURES: readonly ConsumeFailure[] = ['missing', 'expired', 'mismatch', 'exhausted', 'locked'];
const ROTATE_FAILURES: readonly RotateFailure[] = ['missing', 'expired', 'reused'];
/**
 * The byte after the prefix of every refresh-family key (a family's hash, a uid's index). A uid never starts with it
 * (assertUid refuses control characters), so these keys never meet a uid's token key, and length() skips them.
 */
const FAMILY_MARK = '\u0001';
const FAMILY_MARK_BYTE = 0x01;
/** Family keys per FAMILY_DROP script and members per ZREM on a standalone server (revokeFamilies). */
const FAMILY_BATCH = 500;
/** Script arguments for "no budget" and for a flag that is off / on. */
const NONE = '';
const OFF = '0';
const ON = '1';

/** The few ioredis methods the store calls, identical on Redis and Cluster; checked by duck typing. */
interface Commands {
  evalsha(sha: string, numkeys: number, ...args: (string | Buffer)[]): Promise<unknown>;
  eval(lua: string, numkeys: number, ...args: (string | Buffer)[]): Promise<unknown>;
  hget(key: string | Buffer, field: string): Promise<string | null>;
  unlink(...keys: Buffer[]): Promise<number>;
  scanBuffer(
    cursor: string,
    match: 'MATCH',
    pattern: Buffer,
    count: 'COUNT',
    n: number,
  ): Promise<[Buffer, Buffer[]]>;
  isCluster?: boolean;
  nodes?(role: 'master'): Commands[];
  options?: { keyPrefix?: string | Buffer };
}

const REQUIRED_METHODS = ['evalsha', 'eval', 'hget', 'unlink', 'scanBuffer'] as const;

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return `an object without ${missingMethods(value).join(', ')}`;
  return typeof value;
}

function missingMethods(value: object): string[] {
  const v = value as Record<string, unknown>;
  const missing: string[] = REQUIRED_METHODS.filter((m) => typeof v[m] !== 'function').map((m) => `${m}()`);
  if (v.isCluster === true && typeof v.nodes !== 'function') missing.push('nodes()');
  return missing;
}

function badOptions(message: string): PasswordlessError {
  return new PasswordlessError('BAD_OPTIONS', `new RedisStore(): ${message}`);
}

// Glob characters of SCAN MATCH, escaped byte by byte; none of them occurs inside a multi-byte UTF-8 sequence.
const GLOB_BYTES = new Set([0x2a, 0x3f, 0x5b, 0x5d, 0x5c]); // * ? [ ] \

/** `prefix*` as a SCAN MATCH pattern that matches the prefix literally, even when it contains `*`, `?`, `[` or `\`. */
function scanPattern(prefix: Buffer): Buffer {
  const out: number[] = [];
  for (const byte of prefix) {
    if (GLOB_BYTES.has(byte)) out.push(0x5c);
    out.push(byte);
  }
  out.push(0x2a);
  return Buffer.from(out);
}

/**
 * Pending tokens in Redis (peer: ioredis), one hash per uid at `${prefix}${uid}` holding the uid's pending token and
 * its failure budget state, with a Redis expiry at the later of the two. Every token call but `length()` and `clear()`
 * is one round trip, one Lua script, so it is atomic across processes. API mode's refresh families are one hash per
 * family at `${prefix}\u0001f:${family}` plus a per-uid index at `${prefix}\u0001u:${uid}` for `revokeFamilies`; see
 * scripts.ts and docs/token-stores.md.
 */
export class RedisStore implements TokenStore {
  readonly #client: Commands;
  readonly #prefix: string;
  /** The bytes every key of this store starts with on the server: the client's own `keyPrefix`, then `prefix`. */
  readonly #serverPrefix: Buffer;
  /** Length in bytes of the client's `keyPrefix`, which ioredis adds to keys itself and SCAN returns. */
  readonly #clientPrefixLength: number;

  constructor(options: RedisStoreOptions) {
    if (typeof options !== 'object' || options === null || Array.isArray(options)) {
      throw badOptions(
        'pass an options object { client, prefix? } with an ioredis client (peer dependency ioredis).',
      );
    }
    readOptions('new RedisStore()', options, OPTION_KEYS);
    const { client, prefix = 'pwdless:' } = options;
    const looksLikeIoredis =
      typeof client === 'object' && client !== null && missingMethods(client).length === 0;
    if (!looksLikeIoredis) {
      const nodeRedis =
        typeof client === 'object' &&
        client !== null &&
        typeof (client as { evalSha?: unknown }).evalSha === 'function';
      throw badOptions(
        '`client` must be an ioredis Redis or Cluster instance the app created (peer dependency: npm install ioredis), ' +
          `e.g. { client: new Redis(process.env.REDIS_URL) }; got ${nodeRedis ? 'a node-redis client, which is not supported' : describeValue(client)}.`,
      );
    }
    if (typeof prefix !== 'string' || prefix.length === 0) {
      throw badOptions(
        `\`prefix\` must be a non-empty string such as 'pwdless:'; got ${describeValue(prefix)}.`,
      );
    }
    this.#client = client as unknown as Commands;
    this.#prefix = prefix;
    const keyPrefix = this.#client.options?.keyPrefix ?? '';
    const clientPrefix = Buffer.isBuffer(keyPrefix) ? keyPrefix : Buffer.from(String(keyPrefix));
    this.#clientPrefixLength = clientPrefix.length;
    this.#serverPrefix = Buffer.concat([clientPrefix, Buffer.from(prefix)]);
  }

  // The client's own `keyPrefix`, if any, is added by ioredis.
  #key(uid: string): string {
    return `${this.#prefix}${uid}`;
  }

  /** The hash of one refresh family (validated 64-hex). */
  #familyKey(family: string): string {
    return `${this.#prefix}${FAMILY_MARK}f:${family}`;
  }

  /** The uid's index of its families, a sorted set (member = family, score = its latest known expiresAt). */
  #indexKey(uid: string): string {
    return `${this.#prefix}${FAMILY_MARK}u:${uid}`;
  }

  async storeOrUpdate(record: TokenRecord, budget?: FailureBudget): Promise<StoreResult> {
    // assertUid (in assertTokenRecord) refuses lone surrogates, which UTF-8 would turn into one and the same key.
    assertTokenRecord(record);
    assertBudget(budget);
    const expiresAt = String(record.expiresAt.getTime());
    const lockable = record.lockable === true;
    const fields = ['h', record.tokenHash, 'e', expiresAt];
    if (record.origin !== undefined) fields.push('o', record.origin);
    if (record.maxAttempts !== undefined) fields.push('m', String(record.maxAttempts));
    if (lockable) fields.push('k', ON);
    const reply = await this.#run(
      SCRIPTS.store,
      this.#key(record.uid),
      expiresAt,
      String(Date.now()),
      budget ? String(budget.max) : NONE,
      lockable ? ON : OFF,
      ...fields,
    );
    return parseStoreReply(reply);
  }

  async consume(uid: string, tokenHash: string, options: ConsumeOptions): Promise<ConsumeResult> {
    assertConsumeArgs(uid, tokenHash, options);
    const { budget } = options;
    const now = Date.now();
    const reply = await this.#run(
      SCRIPTS.consume,
      this.#key(uid),
      tokenHash,
      String(now),
      options.keep ? ON : OFF,
      budget ? String(budget.max) : NONE,
      budget ? String(now + budget.window) : NONE,
    );
    return parseConsumeReply(reply);
  }

  /** Removes the uid's pending token only: its failure state, while live, stays (one script, one exact key). */
  async invalidateUser(uid: string, tokenHash?: string): Promise<void> {
    assertInvalidateArgs(uid, tokenHash);
    // One exact key: a uid such as '*' is a name here, never a pattern.
    await this.#run(SCRIPTS.invalidate, this.#key(uid), String(Date.now()), tokenHash ?? NONE);
  }

  /**
   * Deletes every key of this prefix, refresh families and their indexes included: SCAN (every master of a Cluster)
   * and UNLINK in batches. Cost as `length()`.
   */
  async clear(): Promise<void> {
    const cluster = this.#isCluster();
    await this.#scan(async (keys) => {
      const names = keys.map((k) => k.subarray(this.#clientPrefixLength));
      if (cluster) {
        // A multi-key UNLINK must stay within one slot on a Cluster: one key per command, routed by the client.
        await Promise.all(names.map((k) => this.#client.unlink(k)));
        return;
      }
      for (let i = 0; i < names.length; i += UNLINK_BATCH) {
        await this.#client.unlink(...names.slice(i, i + UNLINK_BATCH));
      }
    });
  }

  /**
   * Number of pending tokens: SCAN over the whole database (every master of a Cluster), O(keys in the database), one
   * round trip per 1000 keys scanned plus one per page with keys of this prefix, which checks their `e` (a key may hold
   * only a uid's failures, or a token past its `e` kept for them). For metrics and tests, not for a request path.
   */
  async length(): Promise<number> {
    // SCAN may return a key twice (while Redis rehashes); count distinct keys. Expired keys are never returned.
    const seen = new Set<string>();
    const cluster = this.#isCluster();
    const now = String(Date.now());
    let count = 0;
    await this.#scan(async (keys) => {
      const names: Buffer[] = [];
      for (const key of keys) {
        // A refresh family or a uid's index of families: never a pending token.
        if (key[this.#serverPrefix.length] === FAMILY_MARK_BYTE) continue;
        const id = key.toString('latin1');
        if (seen.has(id)) continue;
        seen.add(id);
        names.push(key.subarray(this.#clientPrefixLength));
      }
      if (names.length === 0) return;
      if (!cluster) {
        count += Number(await this.#run(SCRIPTS.count, names, now));
        return;
      }
      // The keys of a page span slots: one HGET each, sent together and routed by the client.
      const expiries = await Promise.all(names.map((name) => this.#client.hget(name, 'e').catch(notAHash)));
      for (const e of expiries) if (e !== null && Number(e) > Number(now)) count += 1;
    });
    return count;
  }

  /**
   * API mode: stores a new login's family, `{ uid, h, e }` at its own key with PEXPIREAT e, and lists it in the uid's
   * index. Standalone: one script naming both keys, so one round trip and atomic. Cluster, where the two keys may be in
   * different slots: the family's script, then the index's (two round trips). The family is written first, so a
   * concurrent revokeFamilies either finds it in the index (and deletes it) or runs before it is listed (and the new
   * login, whose tokens are not handed out yet, simply comes after it); never a listed family written after the index
   * was read and cleared.
   */
  async createFamily(record: RefreshFamily): Promise<void> {
    assertFamilyRecord(record);
    const expiresAt = String(record.expiresAt.getTime());
    const now = String(Date.now());
    const familyKey = this.#familyKey(record.family);
    const indexKey = this.#indexKey(record.uid);
    const args = [record.uid, record.tokenHash, expiresAt, now, record.family];
    if (!this.#isCluster()) {
      await this.#run(SCRIPTS.familyCreate, [familyKey, indexKey], ...args);
      return;
    }
    const written = await this.#run(SCRIPTS.familyCreate, [familyKey], ...args);
    if (written === 1) await this.#run(SCRIPTS.indexAdd, indexKey, record.family, expiresAt, now);
  }

  /**
   * API mode: one script on the family's key decides atomically (ok / missing / expired / reused). After a success
   * the store moves the family's entry in the uid's index forward to the new expiry (a second call, on the index key):
   * rotation is an idle timeout that can keep a family alive indefinitely, and revokeFamilies must still find it. If
   * that second call fails, rotateFamily rejects: the client never receives the new refresh token, and its next try
   * with the old one revokes the family ('reused'), so no family can outlive its index entry unnoticed.
   */
  async rotateFamily(family: string, tokenHash: string, next: RefreshRotation): Promise<RotateResult> {
    assertRotateArgs(family, tokenHash, next);
    const now = String(Date.now());
    const expiresAt = String(next.expiresAt.getTime());
    const reply = await this.#run(
      SCRIPTS.familyRotate,
      this.#familyKey(family),
      tokenHash,
      now,
      next.tokenHash,
      expiresAt,
    );
    const result = parseRotateReply(reply);
    if (result.ok) await this.#run(SCRIPTS.indexAdd, this.#indexKey(result.uid), family, expiresAt, now);
    return result;
  }

  /**
   * API mode: deletes the family's key (one script, one round trip, works while Redis is out of memory) and resolves
   * the uid when the family was unexpired. Its index entry goes lazily (once its score passes, or at revokeFamilies).
   */
  async revokeFamily(family: string): Promise<string | undefined> {
    assertTokenHash('revokeFamily', family, 'family');
    const reply = await this.#run(SCRIPTS.familyRevoke, this.#familyKey(family), String(Date.now()));
    if (reply === null) return undefined;
    if (isUid(reply)) return reply;
    throw new PasswordlessError('STORE_ERROR', 'RedisStore: unexpected reply from the revoke-family script.');
  }

  /**
   * API mode: reads the uid's index (one round trip), deletes each listed family that still belongs to the uid (one
   * script per 500 keys on a standalone server, one per key, sent together, on a Cluster), then removes the handled
   * members from the index (ZREM, so a family listed meanwhile stays listed). Only reads and removes: works while Redis
   * is out of memory.
   */
  async revokeFamilies(uid: string): Promise<void> {
    assertUid('revokeFamilies', uid);
    const indexKey = this.#indexKey(uid);
    const reply = await this.#run(SCRIPTS.indexList, indexKey);
    if (!Array.isArray(reply)) {
      throw new PasswordlessError('STORE_ERROR', 'RedisStore: unexpected reply from the index script.');
    }
    const members = reply.filter((m): m is string => typeof m === 'string');
    if (members.length === 0) return;
    // Only well-formed families name a key; anything else in the index (another program's) is just removed from it.
    const keys = members.filter((m) => /^[0-9a-f]{64}$/.test(m)).map((m) => this.#familyKey(m));
    if (this.#isCluster()) {
      await Promise.all(keys.map((key) => this.#run(SCRIPTS.familyDrop, [key], uid)));
    } else {
      for (let i = 0; i < keys.length; i += FAMILY_BATCH) {
        await this.#run(SCRIPTS.familyDrop, keys.slice(i, i + FAMILY_BATCH), uid);
      }
    }
    for (let i = 0; i < members.length; i += FAMILY_BATCH) {
      await this.#run(SCRIPTS.indexRemove, indexKey, ...members.slice(i, i + FAMILY_BATCH));
    }
  }

  /** API mode: one HGET of the family's `e`, compared with the app's clock (as the scripts do). */
  async hasFamily(family: string): Promise<boolean> {
    assertTokenHash('hasFamily', family, 'family');
    const e = await this.#client.hget(this.#familyKey(family), 'e').catch(notAHash);
    return e !== null && Number(e) > Date.now();
  }

  /** Resolves at once: the store created nothing, and the client belongs to the app, which quits it. */
  async close(): Promise<void> {}

  #isCluster(): boolean {
    return this.#client.isCluster === true;
  }

  // EVALSHA, and EVAL once per server when it answers NOSCRIPT (after a restart or SCRIPT FLUSH); EVAL caches the
  // script for the next EVALSHA. Called on the client directly, so the app's client gets no commands defined on it.
  async #run(script: LuaScript, keys: string | (string | Buffer)[], ...args: string[]): Promise<unknown> {
    const names = typeof keys === 'string' ? [keys] : keys;
    try {
      return await this.#client.evalsha(script.sha, names.length, ...names, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return await this.#client.eval(script.lua, names.length, ...names, ...args);
    }
  }

  async #scan(onPage: (keys: Buffer[]) => Promise<void>): Promise<void> {
    const pattern = scanPattern(this.#serverPrefix);
    let nodes: Commands[] = [this.#client];
    if (this.#isCluster()) {
      nodes = this.#client.nodes?.('master') ?? [];
      if (nodes.length === 0) {
        throw new PasswordlessError(
          'STORE_ERROR',
          'RedisStore: the Cluster client knows no master node yet; is it connected?',
        );
      }
    }
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT);
        cursor = next.toString();
        if (keys.length > 0) await onPage(keys);
      } while (cursor !== '0');
    }
  }
}

/** A foreign value at a key of the prefix (WRONGTYPE) is no pending token; any other error is the caller's. */
function notAHash(err: unknown): null {
  if (err instanceof Error && err.message.startsWith('WRONGTYPE')) return null;
  throw err;
}

function parseStoreReply(reply: unknown): StoreResult {
  if (Array.isArray(reply)) {
    const [status, until] = reply as unknown[];
    if (status === 'stored' || status === 'expired') return undefined;
    if (status === 'locked' && typeof until === 'string' && /^\d+$/.test(until)) {
      return { lockedUntil: new Date(Number(until)) };
    }
  }
  throw new PasswordlessError('STORE_ERROR', 'RedisStore: unexpected reply from the store script.');
}

/** A uid as the store wrote it (read back from Redis, so checked before the core receives it). */
function isUid(value: unknown): value is string {
  return (
    typeof value === 'string' && value.length > 0 && value.length <= MAX_UID_LENGTH && isStorableString(value)
  );
}

function parseRotateReply(reply: unknown): RotateResult {
  if (Array.isArray(reply)) {
    const [status, uid] = reply as unknown[];
    if (status === 'ok' && isUid(uid)) return { ok: true, uid };
    const failure = ROTATE_FAILURES.find((f) => f === status);
    if (failure) return { ok: false, reason: failure };
  }
  throw new PasswordlessError('STORE_ERROR', 'RedisStore: unexpected reply from the rotate-family script.');
}

function parseConsumeReply(reply: unknown): ConsumeResult {
  if (Array.isArray(reply)) {
    const [status, origin] = reply as unknown[];
    if (status === 'ok') return typeof origin === 'string' ? { ok: true, origin } : { ok: true };
    const failure = CONSUME_FAILURES.find((f) => f === status);
    if (failure) return { ok: false, reason: failure };
  }
  throw new PasswordlessError('STORE_ERROR', 'RedisStore: unexpected reply from the consume script.');
}
