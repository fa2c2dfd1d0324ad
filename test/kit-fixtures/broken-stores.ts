import {
  type ConsumeOptions,
  type ConsumeResult,
  MemoryStore,
  type StoreResult,
  type TokenRecord,
  type TokenStore,
} from 'express-passwordless';

/** A store whose consume reads, awaits, then deletes: two concurrent consumes both succeed. */
export class NonAtomicStore implements TokenStore {
  readonly #records = new Map<string, TokenRecord & { attempts: number }>();
  async storeOrUpdate(record: TokenRecord): Promise<void> {
    if (typeof record.uid !== 'string' || !/^[0-9a-f]{64}$/.test(record.tokenHash)) throw new Error('bad');
    this.#records.set(record.uid, { ...record, attempts: 0 });
  }
  async consume(uid: string, tokenHash: string, options: ConsumeOptions): Promise<ConsumeResult> {
    if (typeof uid !== 'string' || typeof tokenHash !== 'string' || !/^[0-9a-f]{64}$/.test(tokenHash))
      throw new Error('bad');
    const record = this.#records.get(uid);
    await new Promise((resolve) => setTimeout(resolve, 1));
    if (!record || record.expiresAt.getTime() <= Date.now()) return { ok: false, reason: 'missing' };
    if (record.tokenHash !== tokenHash) {
      const attempts = record.attempts;
      await new Promise((resolve) => setTimeout(resolve, 1));
      record.attempts = attempts + 1;
      if (record.maxAttempts !== undefined && record.attempts >= record.maxAttempts)
        this.#records.delete(uid);
      return { ok: false, reason: 'mismatch' };
    }
    if (!options.keep) this.#records.delete(uid);
    return { ok: true, origin: record.origin };
  }
  async invalidateUser(uid: string): Promise<void> {
    if (typeof uid !== 'string') throw new Error('bad');
    this.#records.delete(uid);
  }
  async clear(): Promise<void> {
    this.#records.clear();
  }
  async length(): Promise<number> {
    return [...this.#records.values()].filter((r) => r.expiresAt.getTime() > Date.now()).length;
  }
  async close(): Promise<void> {}
}

/** A store that ignores expiresAt entirely. */
export class NeverExpiringStore extends MemoryStore {
  override async storeOrUpdate(record: TokenRecord): Promise<StoreResult> {
    return super.storeOrUpdate({ ...record, expiresAt: new Date(Date.now() + 3_600_000) });
  }
}

/** A store that treats invalidateUser's argument as a glob pattern, as a naive Redis KEYS/DEL would. */
export class PatternInvalidatingStore extends MemoryStore {
  readonly #uids = new Set<string>();
  override async storeOrUpdate(record: TokenRecord): Promise<StoreResult> {
    this.#uids.add(record.uid);
    return super.storeOrUpdate(record);
  }
  override async invalidateUser(uid: string): Promise<void> {
    const pattern = new RegExp(
      `^${uid
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.')}$`,
    );
    for (const known of this.#uids) if (pattern.test(known)) await super.invalidateUser(known);
  }
}
