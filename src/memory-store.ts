import { PasswordlessError } from './errors.js';
import {
  assertBudget,
  assertConsumeArgs,
  assertFamilyRecord,
  assertInvalidateArgs,
  assertRotateArgs,
  assertTokenHash,
  assertTokenRecord,
  assertUid,
} from './store-args.js';
import { safeEqual } from './token.js';
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
} from './types.js';

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /** Milliseconds between sweeps that delete expired records. Default: `60000`. */
  sweepInterval?: number;
}

interface Entry {
  tokenHash: string;
  expiresAt: number;
  origin: string | undefined;
  maxAttempts: number | undefined;
  attempts: number;
  lockable: boolean;
}

/** A uid's wrong tokens across re-requests, forgotten `window` ms after the last one. */
interface Failures {
  count: number;
  until: number;
}

let warnedProduction = false;

/**
 * The embedded default store: pending tokens in a Map in this process. For development, tests and single-process
 * apps; several instances behind a load balancer need a shared store (Redis, MongoDB, PostgreSQL).
 */
export class MemoryStore implements TokenStore {
  readonly #entries = new Map<string, Entry>();
  readonly #failures = new Map<string, Failures>();
  /** Refresh families (API mode) by family hash. */
  readonly #families = new Map<string, { uid: string; tokenHash: string; expiresAt: number }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: MemoryStoreOptions = {}) {
    const sweepInterval = options.sweepInterval ?? 60_000;
    if (!Number.isSafeInteger(sweepInterval) || sweepInterval <= 0) {
      throw new PasswordlessError(
        'BAD_OPTIONS',
        `new MemoryStore(): \`sweepInterval\` must be a positive number of milliseconds; got ${String(sweepInterval)}.`,
      );
    }
    if (process.env.NODE_ENV?.trim().toLowerCase() === 'production' && !warnedProduction) {
      warnedProduction = true;
      console.warn(
        'express-passwordless: MemoryStore keeps tokens in this process only; behind several instances or restarts ' +
          'use RedisStore, MongoStore or PostgresStore.',
      );
    }
    // Expired records are also refused at read time; the sweep only bounds memory. unref() so it never keeps the
    // process alive.
    this.#timer = setInterval(() => this.#sweep(), sweepInterval);
    this.#timer.unref();
  }

  async storeOrUpdate(record: TokenRecord, budget?: FailureBudget): Promise<StoreResult> {
    assertTokenRecord(record);
    assertBudget(budget);
    const lockedUntil = this.#lockedUntil(record.uid, budget);
    if (record.lockable && lockedUntil !== undefined) return { lockedUntil: new Date(lockedUntil) };
    this.#entries.set(record.uid, {
      tokenHash: record.tokenHash,
      expiresAt: record.expiresAt.getTime(),
      origin: record.origin,
      maxAttempts: record.maxAttempts,
      attempts: 0,
      lockable: record.lockable === true,
    });
  }

  // Read, compare and delete/count happen with no await in between: atomic within this process.
  async consume(uid: string, tokenHash: string, options: ConsumeOptions): Promise<ConsumeResult> {
    assertConsumeArgs(uid, tokenHash, options);
    const { budget } = options;
    const now = Date.now();
    const entry = this.#entries.get(uid);
    if (entry && entry.expiresAt <= now) this.#entries.delete(uid);
    const live = entry && entry.expiresAt > now ? entry : undefined;
    // Over the budget, a code is not even compared: guessing on is pointless, and nothing more is counted.
    if (live?.lockable && this.#lockedUntil(uid, budget) !== undefined)
      return { ok: false, reason: 'locked' };
    if (live && safeEqual(live.tokenHash, tokenHash)) {
      if (!options.keep) this.#entries.delete(uid);
      if (budget) this.#failures.delete(uid);
      return live.origin === undefined ? { ok: true } : { ok: true, origin: live.origin };
    }
    if (!live) return { ok: false, reason: entry ? 'expired' : 'missing' };
    // Only guesses against a pending token count: with none pending nothing can be guessed, and counting those would
    // let anyone lock a uid's codes at will.
    if (budget) {
      const failures = this.#failures.get(uid);
      const count = failures && failures.until > now ? failures.count + 1 : 1;
      this.#failures.set(uid, { count, until: now + budget.window });
    }
    live.attempts += 1;
    if (live.maxAttempts !== undefined && live.attempts >= live.maxAttempts) {
      this.#entries.delete(uid);
      return { ok: false, reason: 'exhausted' };
    }
    return { ok: false, reason: 'mismatch' };
  }

  /** The end of the uid's lock (its failures are over the budget and not yet forgotten), or undefined. */
  #lockedUntil(uid: string, budget: FailureBudget | undefined): number | undefined {
    if (!budget) return undefined;
    const failures = this.#failures.get(uid);
    return failures && failures.until > Date.now() && failures.count >= budget.max
      ? failures.until
      : undefined;
  }

  async invalidateUser(uid: string, tokenHash?: string): Promise<void> {
    assertInvalidateArgs(uid, tokenHash);
    const entry = this.#entries.get(uid);
    if (entry && (tokenHash === undefined || safeEqual(entry.tokenHash, tokenHash)))
      this.#entries.delete(uid);
  }

  async clear(): Promise<void> {
    this.#entries.clear();
    this.#failures.clear();
    this.#families.clear();
  }

  async createFamily(record: RefreshFamily): Promise<void> {
    assertFamilyRecord(record);
    this.#families.set(record.family, {
      uid: record.uid,
      tokenHash: record.tokenHash,
      expiresAt: record.expiresAt.getTime(),
    });
  }

  // Read, compare and replace/delete with no await in between: atomic within this process.
  async rotateFamily(family: string, tokenHash: string, next: RefreshRotation): Promise<RotateResult> {
    assertRotateArgs(family, tokenHash, next);
    const entry = this.#families.get(family);
    if (!entry) return { ok: false, reason: 'missing' };
    if (entry.expiresAt <= Date.now()) {
      this.#families.delete(family);
      return { ok: false, reason: 'expired' };
    }
    if (!safeEqual(entry.tokenHash, tokenHash)) {
      this.#families.delete(family);
      return { ok: false, reason: 'reused' };
    }
    entry.tokenHash = next.tokenHash;
    entry.expiresAt = next.expiresAt.getTime();
    return { ok: true, uid: entry.uid };
  }

  async revokeFamily(family: string): Promise<string | undefined> {
    assertTokenHash('revokeFamily', family, 'family');
    const entry = this.#families.get(family);
    this.#families.delete(family);
    return entry && entry.expiresAt > Date.now() ? entry.uid : undefined;
  }

  async revokeFamilies(uid: string): Promise<void> {
    assertUid('revokeFamilies', uid);
    for (const [family, entry] of this.#families) if (entry.uid === uid) this.#families.delete(family);
  }

  async hasFamily(family: string): Promise<boolean> {
    assertTokenHash('hasFamily', family, 'family');
    const entry = this.#families.get(family);
    return entry !== undefined && entry.expiresAt > Date.now();
  }

  async length(): Promise<number> {
    const now = Date.now();
    let n = 0;
    for (const entry of this.#entries.values()) if (entry.expiresAt > now) n += 1;
    return n;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #sweep(): void {
    const now = Date.now();
    for (const [uid, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(uid);
    for (const [uid, failures] of this.#failures) if (failures.until <= now) this.#failures.delete(uid);
    for (const [family, entry] of this.#families) if (entry.expiresAt <= now) this.#families.delete(family);
  }
}
