import { PasswordlessError } from './errors.js';
import { assertConsumeArgs, assertInvalidateArgs, assertTokenRecord } from './store-args.js';
import { safeEqual } from './token.js';
import type { ConsumeOptions, ConsumeResult, TokenRecord, TokenStore } from './types.js';

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
}

let warnedProduction = false;

/**
 * The embedded default store: pending tokens in a Map in this process. For development, tests and single-process
 * apps; several instances behind a load balancer need a shared store (Redis, MongoDB, PostgreSQL).
 */
export class MemoryStore implements TokenStore {
  readonly #entries = new Map<string, Entry>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: MemoryStoreOptions = {}) {
    const sweepInterval = options.sweepInterval ?? 60_000;
    if (!Number.isSafeInteger(sweepInterval) || sweepInterval <= 0) {
      throw new PasswordlessError(
        'BAD_OPTIONS',
        `new MemoryStore(): \`sweepInterval\` must be a positive number of milliseconds; got ${String(sweepInterval)}.`,
      );
    }
    if (process.env.NODE_ENV === 'production' && !warnedProduction) {
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

  async storeOrUpdate(record: TokenRecord): Promise<void> {
    assertTokenRecord(record);
    this.#entries.set(record.uid, {
      tokenHash: record.tokenHash,
      expiresAt: record.expiresAt.getTime(),
      origin: record.origin,
      maxAttempts: record.maxAttempts,
      attempts: 0,
    });
  }

  // Read, compare and delete/count happen with no await in between: atomic within this process.
  async consume(uid: string, tokenHash: string, options: ConsumeOptions): Promise<ConsumeResult> {
    assertConsumeArgs(uid, tokenHash, options);
    const entry = this.#entries.get(uid);
    if (!entry) return { ok: false, reason: 'missing' };
    if (entry.expiresAt <= Date.now()) {
      this.#entries.delete(uid);
      return { ok: false, reason: 'expired' };
    }
    if (safeEqual(entry.tokenHash, tokenHash)) {
      if (!options.keep) this.#entries.delete(uid);
      return entry.origin === undefined ? { ok: true } : { ok: true, origin: entry.origin };
    }
    entry.attempts += 1;
    if (entry.maxAttempts !== undefined && entry.attempts >= entry.maxAttempts) {
      this.#entries.delete(uid);
      return { ok: false, reason: 'exhausted' };
    }
    return { ok: false, reason: 'mismatch' };
  }

  async invalidateUser(uid: string, tokenHash?: string): Promise<void> {
    assertInvalidateArgs(uid, tokenHash);
    const entry = this.#entries.get(uid);
    if (entry && (tokenHash === undefined || safeEqual(entry.tokenHash, tokenHash)))
      this.#entries.delete(uid);
  }

  async clear(): Promise<void> {
    this.#entries.clear();
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
  }
}
