import { MemoryStore } from 'express-passwordless';
import { tokenStoreContract } from 'express-passwordless/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';

tokenStoreContract('MemoryStore', () => new MemoryStore({ sweepInterval: 20 }));

describe('MemoryStore specifics', () => {
  const hash = 'a'.repeat(64);
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
    vi.unstubAllEnvs();
  });

  it('the sweep deletes expired records with no call from the app (consume then finds nothing at all)', async () => {
    vi.useFakeTimers();
    const store = new MemoryStore({ sweepInterval: 1000 });
    await store.storeOrUpdate({ uid: 'a', tokenHash: hash, expiresAt: new Date(Date.now() + 500) });
    await store.storeOrUpdate({ uid: 'b', tokenHash: hash, expiresAt: new Date(Date.now() + 500) });
    vi.advanceTimersByTime(600);
    expect(await store.consume('a', hash, { keep: false })).toEqual({ ok: false, reason: 'expired' });
    vi.advanceTimersByTime(1000);
    expect(await store.consume('b', hash, { keep: false })).toEqual({ ok: false, reason: 'missing' });
    await store.close();
  });

  it('close() stops the sweep', async () => {
    vi.useFakeTimers();
    const store = new MemoryStore({ sweepInterval: 1000 });
    await store.storeOrUpdate({ uid: 'a', tokenHash: hash, expiresAt: new Date(Date.now() + 500) });
    await store.close();
    vi.advanceTimersByTime(5000);
    expect(await store.consume('a', hash, { keep: false })).toEqual({ ok: false, reason: 'expired' });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('rejects a bad sweepInterval at construction', () => {
    expect(() => new MemoryStore({ sweepInterval: 0 })).toThrow(/sweepInterval/);
  });

  it('rejects bad arguments with INVALID_ARGUMENT', async () => {
    const store = new MemoryStore();
    await expect(
      store.consume({ $ne: null } as unknown as string, hash, { keep: false }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await store.close();
  });
});
