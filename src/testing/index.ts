import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashToken } from '../token.js';
import type { ConsumeResult, RefreshFamily, RotateResult, TokenRecord, TokenStore } from '../types.js';

/** Options of {@link tokenStoreContract}. */
export interface ContractOptions {
  /** Upper bound in milliseconds for any single store call; a slower call fails the test. Default: `2000`. */
  callTimeoutMs?: number;
  /** Parallel calls in the race tests (consume-once, attempt counting). Default: `20`. */
  concurrency?: number;
  /**
   * Milliseconds to wait for the backend's own expiry in the one test where a record expires while stored; the
   * record is stored with `expiresAt` 50 ms ahead. Default: `300`.
   */
  expiryWaitMs?: number;
  /**
   * Test the refresh-family methods of API mode (`createFamily`, `rotateFamily`, `revokeFamily`, `revokeFamilies`,
   * `hasFamily`). Pass `false` for a store that leaves them out (init with `jwt` then refuses it). Default: `true`.
   */
  refreshFamilies?: boolean;
}

function newHash(): string {
  return hashToken(randomBytes(16).toString('hex'));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Registers the TokenStore contract as vitest suites under `describe(name)`. Every store must pass it; it is the
 * normative definition of the interface (see docs/token-stores.md). `createStore` is called for every test, and the
 * store is cleared before and closed after each one.
 */
export function tokenStoreContract(
  name: string,
  createStore: () => TokenStore | Promise<TokenStore>,
  options: ContractOptions = {},
): void {
  const callTimeoutMs = options.callTimeoutMs ?? 2000;
  const concurrency = options.concurrency ?? 20;
  const expiryWaitMs = options.expiryWaitMs ?? 300;
  const refreshFamilies = options.refreshFamilies ?? true;

  describe(name, () => {
    let store: TokenStore;

    // Every store call is raced against a timer: a hung driver fails the test instead of hanging the run.
    async function call<T>(what: string, work: () => Promise<T>): Promise<T> {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what} did not settle within ${callTimeoutMs} ms`)),
          callTimeoutMs,
        );
      });
      try {
        return await Promise.race([work(), timeout]);
      } finally {
        clearTimeout(timer);
      }
    }

    const put = (record: TokenRecord) => call('storeOrUpdate()', () => store.storeOrUpdate(record));
    const consume = (uid: string, tokenHash: string, keep = false): Promise<ConsumeResult> =>
      call('consume()', () => store.consume(uid, tokenHash, { keep }));
    const inFuture = (ms = 60_000) => new Date(Date.now() + ms);

    beforeEach(async () => {
      store = await createStore();
      await call('clear()', () => store.clear());
    });

    afterEach(async () => {
      await call('close()', () => store.close());
    });

    describe('storeOrUpdate and consume', () => {
      it('a stored token is consumed once with its origin; a second consume fails', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture(), origin: '/account?tab=1' });
        expect(await consume('alice', tokenHash)).toEqual({ ok: true, origin: '/account?tab=1' });
        expect((await consume('alice', tokenHash)).ok).toBe(false);
      });

      it('a record without origin gives ok without origin', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture() });
        const result = await consume('alice', tokenHash);
        expect(result.ok).toBe(true);
        expect(result.ok && result.origin).toBeFalsy();
      });

      it('a second store for the same uid replaces the first token', async () => {
        const first = newHash();
        const second = newHash();
        await put({ uid: 'alice', tokenHash: first, expiresAt: inFuture() });
        await put({ uid: 'alice', tokenHash: second, expiresAt: inFuture() });
        expect((await consume('alice', first)).ok).toBe(false);
        expect((await consume('alice', second)).ok).toBe(true);
      });

      it('a token is only valid for its own uid, and stays valid after being tried with another', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture() });
        await put({ uid: 'bob', tokenHash: newHash(), expiresAt: inFuture() });
        expect((await consume('bob', tokenHash)).ok).toBe(false);
        expect((await consume('mallory', tokenHash)).ok).toBe(false);
        expect((await consume('alice', tokenHash)).ok).toBe(true);
      });

      it('compares the whole hash exactly (no prefix or pattern match)', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture() });
        const lastFlipped = tokenHash.slice(0, 63) + (tokenHash.endsWith('0') ? '1' : '0');
        expect((await consume('alice', lastFlipped)).ok).toBe(false);
        expect((await consume('alice', tokenHash)).ok).toBe(true);
      });

      it('consume of an unknown uid reports a failure', async () => {
        expect(await consume('nobody', newHash())).toEqual({ ok: false, reason: expect.any(String) });
      });

      it('with keep, a token works repeatedly until it is invalidated', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture() });
        expect((await consume('alice', tokenHash, true)).ok).toBe(true);
        expect((await consume('alice', tokenHash, true)).ok).toBe(true);
        await call('invalidateUser()', () => store.invalidateUser('alice'));
        expect((await consume('alice', tokenHash, true)).ok).toBe(false);
      });

      it.each([
        ['dollar', '$where'],
        ['operator JSON', '{"$ne":null}'],
        ['dots and colons', 'a.b:c'],
        ['glob', 'user*'],
        ['SQL wildcards', "%_' OR '1'='1"],
        ['quotes and backslash', `"'\\`],
        ['unicode', 'zoë@exämple.org 🙂'],
        ['the longest allowed length (1024 characters)', 'x'.repeat(1024)],
      ])('round-trips a uid with %s', async (_, uid) => {
        const tokenHash = newHash();
        await put({ uid, tokenHash, expiresAt: inFuture(), origin: '/x' });
        expect(await consume(uid, tokenHash)).toEqual({ ok: true, origin: '/x' });
      });
    });

    describe('expiry', () => {
      it('a record whose expiresAt has passed is never returned and not counted', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: new Date(Date.now() - 1) });
        expect(await call('length()', () => store.length())).toBe(0);
        expect((await consume('alice', tokenHash)).ok).toBe(false);
      });

      it('a record stored 50 ms before expiresAt is refused and not counted once expiresAt passes', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: new Date(Date.now() + 50) });
        expect(await call('length()', () => store.length())).toBe(1);
        await sleep(expiryWaitMs);
        expect(await call('length()', () => store.length())).toBe(0);
        expect((await consume('alice', tokenHash)).ok).toBe(false);
      });

      it('with keep, a token still dies at expiresAt', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: new Date(Date.now() + 50) });
        expect((await consume('alice', tokenHash, true)).ok).toBe(true);
        await sleep(expiryWaitMs);
        expect((await consume('alice', tokenHash, true)).ok).toBe(false);
      });
    });

    describe('concurrency', () => {
      it(`of ${concurrency} concurrent consumes of one token exactly one succeeds`, async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture() });
        const results = await Promise.all(
          Array.from({ length: concurrency }, () => consume('alice', tokenHash)),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(1);
      });

      it('a consume racing a replace never accepts the replaced token after the new one is stored', async () => {
        const first = newHash();
        const second = newHash();
        await put({ uid: 'alice', tokenHash: first, expiresAt: inFuture() });
        await put({ uid: 'alice', tokenHash: second, expiresAt: inFuture() });
        const results = await Promise.all(Array.from({ length: concurrency }, () => consume('alice', first)));
        expect(results.some((r) => r.ok)).toBe(false);
      });
    });

    describe('attempts', () => {
      it('wrong tries below maxAttempts leave the token valid', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture(), maxAttempts: 3 });
        expect((await consume('alice', newHash())).ok).toBe(false);
        expect((await consume('alice', newHash())).ok).toBe(false);
        expect((await consume('alice', tokenHash)).ok).toBe(true);
      });

      it('the maxAttempts-th wrong try voids the token', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture(), maxAttempts: 3 });
        for (let i = 0; i < 3; i++) expect((await consume('alice', newHash())).ok).toBe(false);
        expect((await consume('alice', tokenHash)).ok).toBe(false);
        expect(await call('length()', () => store.length())).toBe(0);
      });

      it(`${concurrency} concurrent wrong tries count as ${concurrency} (atomic counting)`, async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture(), maxAttempts: concurrency });
        await Promise.all(Array.from({ length: concurrency }, () => consume('alice', newHash())));
        expect((await consume('alice', tokenHash)).ok).toBe(false);
      });

      it(`${concurrency - 1} concurrent wrong tries do not void a token with maxAttempts ${concurrency}`, async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture(), maxAttempts: concurrency });
        await Promise.all(Array.from({ length: concurrency - 1 }, () => consume('alice', newHash())));
        expect((await consume('alice', tokenHash)).ok).toBe(true);
      });

      it('the right token racing wrong ones past maxAttempts succeeds at most once (5 rounds)', async () => {
        for (let round = 0; round < 5; round++) {
          const tokenHash = newHash();
          await put({ uid: 'alice', tokenHash, expiresAt: inFuture(), maxAttempts: 5 });
          const tries = Array.from({ length: concurrency }, (_, i) =>
            i % 4 === round % 4 ? tokenHash : newHash(),
          );
          const results = await Promise.all(tries.map((h) => consume('alice', h)));
          expect(results.filter((r) => r.ok).length).toBeLessThanOrEqual(1);
          expect((await consume('alice', tokenHash)).ok).toBe(false);
        }
      });

      it('storing a new token resets the attempt count of the record', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash: newHash(), expiresAt: inFuture(), maxAttempts: 2 });
        expect((await consume('alice', newHash())).ok).toBe(false);
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture(), maxAttempts: 2 });
        expect((await consume('alice', newHash())).ok).toBe(false);
        expect((await consume('alice', tokenHash)).ok).toBe(true);
      });

      it('without maxAttempts, wrong tries never void the token', async () => {
        const tokenHash = newHash();
        await put({ uid: 'alice', tokenHash, expiresAt: inFuture() });
        await Promise.all(Array.from({ length: concurrency }, () => consume('alice', newHash())));
        expect((await consume('alice', tokenHash)).ok).toBe(true);
      });
    });

    describe('failure budget (init maxFailures / failureWindow)', () => {
      const budget = { max: 3, window: 60_000 };
      const code = (tokenHash: string): TokenRecord => ({
        uid: 'alice',
        tokenHash,
        expiresAt: inFuture(),
        lockable: true,
      });
      const guess = (uid = 'alice') =>
        call('consume()', () => store.consume(uid, newHash(), { keep: false, budget }));
      const consumeB = (tokenHash: string, uid = 'alice') =>
        call('consume()', () => store.consume(uid, tokenHash, { keep: false, budget }));
      const putB = (record: TokenRecord) =>
        call('storeOrUpdate()', () => store.storeOrUpdate(record, budget));

      it('failures belong to the uid: a new code does not reset them, and at max the code is refused as locked', async () => {
        await putB(code(newHash()));
        await guess();
        await guess();
        const second = newHash();
        expect(await putB(code(second))).toBeFalsy();
        await guess();
        expect(await consumeB(second)).toEqual({ ok: false, reason: 'locked' });
      });

      it('while locked, storing a lockable record is refused with lockedUntil; a link (not lockable) is stored', async () => {
        await putB(code(newHash()));
        for (let i = 0; i < 3; i++) await guess();
        const refused = await putB(code(newHash()));
        expect(refused).toEqual({ lockedUntil: expect.any(Date) });
        const until = (refused as { lockedUntil: Date }).lockedUntil.getTime();
        expect(until).toBeGreaterThan(Date.now());
        expect(until).toBeLessThanOrEqual(Date.now() + budget.window + 1000);
        const link = newHash();
        expect(await putB({ uid: 'alice', tokenHash: link, expiresAt: inFuture() })).toBeFalsy();
        expect(await consumeB(link)).toEqual({ ok: true });
      });

      it("a successful consume resets the uid's failures", async () => {
        const first = newHash();
        await putB(code(first));
        await guess();
        await guess();
        expect((await consumeB(first)).ok).toBe(true);
        const second = newHash();
        await putB(code(second));
        await guess();
        await guess();
        expect((await consumeB(second)).ok).toBe(true);
      });

      it('guesses for a uid with no pending token are not counted (nobody can lock a uid at will)', async () => {
        for (let i = 0; i < 5; i++) await guess('bob');
        const token = newHash();
        expect(
          await putB({ uid: 'bob', tokenHash: token, expiresAt: inFuture(), lockable: true }),
        ).toBeFalsy();
        expect((await consumeB(token, 'bob')).ok).toBe(true);
      });

      it('failures of one uid do not lock another', async () => {
        await putB(code(newHash()));
        for (let i = 0; i < 3; i++) await guess();
        const token = newHash();
        expect(
          await putB({ uid: 'bob', tokenHash: token, expiresAt: inFuture(), lockable: true }),
        ).toBeFalsy();
        expect((await consumeB(token, 'bob')).ok).toBe(true);
      });

      it(`${concurrency} concurrent wrong tries count as ${concurrency} against the budget (atomic)`, async () => {
        const big = { max: concurrency, window: 60_000 };
        const token = newHash();
        await call('storeOrUpdate()', () => store.storeOrUpdate(code(token), big));
        await Promise.all(
          Array.from({ length: concurrency }, () =>
            call('consume()', () => store.consume('alice', newHash(), { keep: false, budget: big })),
          ),
        );
        expect(
          await call('consume()', () => store.consume('alice', token, { keep: false, budget: big })),
        ).toEqual({
          ok: false,
          reason: 'locked',
        });
      });

      it('failures are forgotten failureWindow after the last one', async () => {
        const short = { max: 2, window: 50 };
        await call('storeOrUpdate()', () => store.storeOrUpdate(code(newHash()), short));
        for (let i = 0; i < 2; i++) {
          await call('consume()', () => store.consume('alice', newHash(), { keep: false, budget: short }));
        }
        await sleep(expiryWaitMs);
        const token = newHash();
        expect(await call('storeOrUpdate()', () => store.storeOrUpdate(code(token), short))).toBeFalsy();
        expect(
          (await call('consume()', () => store.consume('alice', token, { keep: false, budget: short }))).ok,
        ).toBe(true);
      });

      it('rejects a malformed budget', async () => {
        await expect(
          call('storeOrUpdate()', () => store.storeOrUpdate(code(newHash()), { max: 0, window: 1 })),
        ).rejects.toThrow();
        await expect(
          call('consume()', () =>
            store.consume('alice', newHash(), { keep: false, budget: { max: 1, window: -1 } }),
          ),
        ).rejects.toThrow();
      });
    });

    describe('invalidateUser, clear, length', () => {
      it('invalidateUser removes that uid only', async () => {
        const a = newHash();
        const b = newHash();
        await put({ uid: 'alice', tokenHash: a, expiresAt: inFuture() });
        await put({ uid: 'bob', tokenHash: b, expiresAt: inFuture() });
        await call('invalidateUser()', () => store.invalidateUser('alice'));
        expect((await consume('alice', a)).ok).toBe(false);
        expect((await consume('bob', b)).ok).toBe(true);
      });

      it.each(['*', '%', '_', 'a*', '?', '[ab]', '{"$ne":null}', '.*', 'a%'])(
        'invalidateUser(%j) is an exact match and leaves the tokens of "a" and "b"',
        async (pattern) => {
          const a = newHash();
          const b = newHash();
          await put({ uid: 'a', tokenHash: a, expiresAt: inFuture() });
          await put({ uid: 'b', tokenHash: b, expiresAt: inFuture() });
          await call('invalidateUser()', () => store.invalidateUser(pattern));
          expect((await consume('a', a)).ok).toBe(true);
          expect((await consume('b', b)).ok).toBe(true);
        },
      );

      it('invalidateUser with a tokenHash removes the record only while it holds that hash', async () => {
        const first = newHash();
        const second = newHash();
        await put({ uid: 'alice', tokenHash: first, expiresAt: inFuture() });
        await put({ uid: 'alice', tokenHash: second, expiresAt: inFuture() });
        await call('invalidateUser()', () => store.invalidateUser('alice', first));
        expect((await consume('alice', second)).ok).toBe(true);
        const third = newHash();
        await put({ uid: 'alice', tokenHash: third, expiresAt: inFuture() });
        await call('invalidateUser()', () => store.invalidateUser('alice', third));
        expect((await consume('alice', third)).ok).toBe(false);
      });

      it('invalidateUser of an unknown uid resolves', async () => {
        await expect(call('invalidateUser()', () => store.invalidateUser('nobody'))).resolves.toBeUndefined();
      });

      it('length counts pending tokens and clear removes them all', async () => {
        expect(await call('length()', () => store.length())).toBe(0);
        await put({ uid: 'alice', tokenHash: newHash(), expiresAt: inFuture() });
        await put({ uid: 'bob', tokenHash: newHash(), expiresAt: inFuture() });
        await put({ uid: 'bob', tokenHash: newHash(), expiresAt: inFuture() });
        expect(await call('length()', () => store.length())).toBe(2);
        await call('clear()', () => store.clear());
        expect(await call('length()', () => store.length())).toBe(0);
      });
    });

    describe('bad arguments are rejected, never stored', () => {
      const good = (): TokenRecord => ({ uid: 'alice', tokenHash: newHash(), expiresAt: inFuture() });
      it.each<[string, (r: TokenRecord) => unknown]>([
        ['a uid that is an object', (r) => ({ ...r, uid: { $ne: null } })],
        ['a uid that is an array', (r) => ({ ...r, uid: ['alice'] })],
        ['an empty uid', (r) => ({ ...r, uid: '' })],
        ['a uid over 1024 characters', (r) => ({ ...r, uid: 'x'.repeat(1025) })],
        ['a uid with NUL', (r) => ({ ...r, uid: 'a\u0000b' })],
        ['a uid with CR LF', (r) => ({ ...r, uid: 'a\r\nb' })],
        ['a uid with a lone surrogate (UTF-8 would make it U+FFFD)', (r) => ({ ...r, uid: 'a\uD800' })],
        ['a tokenHash that is not 64 hex characters', (r) => ({ ...r, tokenHash: 'plain-token' })],
        ['a tokenHash that is an object', (r) => ({ ...r, tokenHash: { $gt: '' } })],
        ['an expiresAt that is not a Date', (r) => ({ ...r, expiresAt: Date.now() + 1000 })],
        ['an invalid Date', (r) => ({ ...r, expiresAt: new Date(Number.NaN) })],
        ['a maxAttempts of 0', (r) => ({ ...r, maxAttempts: 0 })],
        ['an origin that is an object', (r) => ({ ...r, origin: { $ne: null } })],
        ['a lockable that is not a boolean', (r) => ({ ...r, lockable: 'yes' })],
      ])('storeOrUpdate rejects %s', async (_, mutate) => {
        const record = mutate(good());
        await expect(
          call('storeOrUpdate()', () => store.storeOrUpdate(record as TokenRecord)),
        ).rejects.toThrow();
        expect(await call('length()', () => store.length())).toBe(0);
      });

      it.each<[string, unknown, unknown]>([
        ['an object uid', { $ne: null }, newHash()],
        ['an array uid', ['alice'], newHash()],
        ['an object tokenHash', 'alice', { $gt: '' }],
        ['a regexp-like tokenHash', 'alice', '.*'],
      ])('consume rejects %s and leaves the token valid', async (_, uid, tokenHash) => {
        const record = good();
        await put(record);
        await expect(
          call('consume()', () => store.consume(uid as string, tokenHash as string, { keep: false })),
        ).rejects.toThrow();
        expect((await consume('alice', record.tokenHash)).ok).toBe(true);
      });

      it('invalidateUser rejects a uid that is not a string, and a tokenHash that is not 64 hex characters', async () => {
        const record = good();
        await put(record);
        await expect(
          call('invalidateUser()', () => store.invalidateUser({ $ne: null } as unknown as string)),
        ).rejects.toThrow();
        await expect(
          call('invalidateUser()', () => store.invalidateUser('alice', { $ne: null } as unknown as string)),
        ).rejects.toThrow();
        expect((await consume('alice', record.tokenHash)).ok).toBe(true);
      });
    });

    describe.runIf(refreshFamilies)('refresh families (API mode)', () => {
      // The methods are optional in the TokenStore type; a store under this suite must have all five.
      type Families = Required<
        Pick<TokenStore, 'createFamily' | 'rotateFamily' | 'revokeFamily' | 'revokeFamilies' | 'hasFamily'>
      >;
      const fam = (): Families => {
        for (const m of [
          'createFamily',
          'rotateFamily',
          'revokeFamily',
          'revokeFamilies',
          'hasFamily',
        ] as const) {
          if (typeof store[m] !== 'function') {
            throw new Error(`the store lacks ${m}(); implement all five or pass { refreshFamilies: false }`);
          }
        }
        return store as Families;
      };
      const create = (record: RefreshFamily) => call('createFamily()', () => fam().createFamily(record));
      const rotate = (
        family: string,
        tokenHash: string,
        nextHash = newHash(),
        ms = 60_000,
      ): Promise<RotateResult> =>
        call('rotateFamily()', () =>
          fam().rotateFamily(family, tokenHash, { tokenHash: nextHash, expiresAt: inFuture(ms) }),
        );
      const has = (family: string) => call('hasFamily()', () => fam().hasFamily(family));
      const login = async (uid = 'alice', ms = 60_000) => {
        const record = { family: newHash(), uid, tokenHash: newHash(), expiresAt: inFuture(ms) };
        await create(record);
        return record;
      };

      it('a family rotates with its current hash, then only with the new one', async () => {
        const first = await login();
        expect(await has(first.family)).toBe(true);
        const second = newHash();
        expect(await rotate(first.family, first.tokenHash, second)).toEqual({ ok: true, uid: 'alice' });
        const third = newHash();
        expect(await rotate(first.family, second, third)).toEqual({ ok: true, uid: 'alice' });
        expect(await has(first.family)).toBe(true);
      });

      it('an already-rotated hash revokes the family: the thief and the owner are both out', async () => {
        const first = await login();
        const second = newHash();
        expect((await rotate(first.family, first.tokenHash, second)).ok).toBe(true);
        expect(await rotate(first.family, first.tokenHash)).toEqual({ ok: false, reason: 'reused' });
        expect(await has(first.family)).toBe(false);
        expect(await rotate(first.family, second)).toEqual({ ok: false, reason: 'missing' });
      });

      it('a hash the family never held also revokes it, and other families stay', async () => {
        const mine = await login();
        const other = await login('alice');
        expect(await rotate(mine.family, newHash())).toEqual({ ok: false, reason: 'reused' });
        expect(await has(mine.family)).toBe(false);
        expect(await has(other.family)).toBe(true);
        expect((await rotate(other.family, other.tokenHash)).ok).toBe(true);
      });

      it('an unknown family is missing', async () => {
        expect(await rotate(newHash(), newHash())).toEqual({ ok: false, reason: 'missing' });
        expect(await has(newHash())).toBe(false);
      });

      it('an expired family is never rotated nor reported as existing', async () => {
        const record = {
          family: newHash(),
          uid: 'alice',
          tokenHash: newHash(),
          expiresAt: new Date(Date.now() - 1),
        };
        await create(record);
        expect(await has(record.family)).toBe(false);
        const result = await rotate(record.family, record.tokenHash);
        expect(result.ok).toBe(false);
        expect(await has(record.family)).toBe(false);
        const again = { ...record, family: newHash() };
        await create(again);
        expect(await call('revokeFamily()', () => fam().revokeFamily(again.family))).toBeUndefined();
      });

      it('a family dies at expiresAt, and rotation moves expiresAt to the new one', async () => {
        const dying = await login('alice', 50);
        const moved = await login('bob', 50);
        expect((await rotate(moved.family, moved.tokenHash, newHash(), 60_000)).ok).toBe(true);
        await sleep(expiryWaitMs);
        expect(await has(dying.family)).toBe(false);
        expect((await rotate(dying.family, dying.tokenHash)).ok).toBe(false);
        expect(await has(moved.family)).toBe(true);
      });

      it('a family rotated past its first expiresAt is still revoked by revokeFamilies', async () => {
        const record = await login('alice', 50);
        expect((await rotate(record.family, record.tokenHash, newHash(), 60_000)).ok).toBe(true);
        await sleep(expiryWaitMs);
        expect(await has(record.family)).toBe(true);
        await call('revokeFamilies()', () => fam().revokeFamilies('alice'));
        expect(await has(record.family)).toBe(false);
      });

      it(`of ${concurrency} concurrent rotations with one hash exactly one succeeds, and the family ends revoked`, async () => {
        const record = await login();
        const results = await Promise.all(
          Array.from({ length: concurrency }, () => rotate(record.family, record.tokenHash)),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(1);
        expect(results.filter((r) => !r.ok && r.reason !== 'reused' && r.reason !== 'missing')).toEqual([]);
        expect(await has(record.family)).toBe(false);
      });

      it('revokeFamily removes that family only; revokeFamilies removes every family of that uid only', async () => {
        const a1 = await login('alice');
        const a2 = await login('alice');
        const a3 = await login('alice');
        const b = await login('bob');
        expect(await call('revokeFamily()', () => fam().revokeFamily(a1.family))).toBe('alice');
        expect(await has(a1.family)).toBe(false);
        expect(await call('revokeFamily()', () => fam().revokeFamily(a1.family))).toBeUndefined();
        expect(await has(a2.family)).toBe(true);
        expect(await rotate(a1.family, a1.tokenHash)).toEqual({ ok: false, reason: 'missing' });
        await call('revokeFamilies()', () => fam().revokeFamilies('alice'));
        expect(await has(a2.family)).toBe(false);
        expect(await has(a3.family)).toBe(false);
        expect(await has(b.family)).toBe(true);
        expect(await call('revokeFamily()', () => fam().revokeFamily(newHash()))).toBeUndefined();
        await call('revokeFamilies()', () => fam().revokeFamilies('nobody'));
      });

      it('families are apart from pending tokens: invalidateUser keeps them, length ignores them, clear removes them', async () => {
        const record = await login('alice');
        await put({ uid: 'alice', tokenHash: newHash(), expiresAt: inFuture() });
        expect(await call('length()', () => store.length())).toBe(1);
        await call('invalidateUser()', () => store.invalidateUser('alice'));
        expect(await has(record.family)).toBe(true);
        await call('clear()', () => store.clear());
        expect(await has(record.family)).toBe(false);
      });

      it.each<[string, (r: RefreshFamily) => unknown]>([
        ['a family that is not 64 hex characters', (r) => ({ ...r, family: 'abc' })],
        ['a family that is an object', (r) => ({ ...r, family: { $ne: null } })],
        ['a uid that is an object', (r) => ({ ...r, uid: { $gt: '' } })],
        ['a uid with NUL', (r) => ({ ...r, uid: 'a\u0000b' })],
        ['a tokenHash that is an array', (r) => ({ ...r, tokenHash: [newHash()] })],
        ['an expiresAt that is not a Date', (r) => ({ ...r, expiresAt: Date.now() + 1000 })],
      ])('createFamily rejects %s, storing nothing', async (_, mutate) => {
        const good = { family: newHash(), uid: 'alice', tokenHash: newHash(), expiresAt: inFuture() };
        await expect(
          call('createFamily()', () => fam().createFamily(mutate(good) as RefreshFamily)),
        ).rejects.toThrow();
        expect(await has(good.family)).toBe(false);
      });

      it('rotateFamily, revokeFamily, revokeFamilies and hasFamily reject operators and malformed hashes', async () => {
        const record = await login();
        const op = { $ne: null } as unknown as string;
        await expect(
          call('rotateFamily()', () =>
            fam().rotateFamily(op, record.tokenHash, { tokenHash: newHash(), expiresAt: inFuture() }),
          ),
        ).rejects.toThrow();
        await expect(
          call('rotateFamily()', () =>
            fam().rotateFamily(record.family, op, { tokenHash: newHash(), expiresAt: inFuture() }),
          ),
        ).rejects.toThrow();
        await expect(
          call('rotateFamily()', () =>
            fam().rotateFamily(record.family, record.tokenHash, { tokenHash: op, expiresAt: inFuture() }),
          ),
        ).rejects.toThrow();
        await expect(call('revokeFamily()', () => fam().revokeFamily(op))).rejects.toThrow();
        await expect(call('revokeFamilies()', () => fam().revokeFamilies(op))).rejects.toThrow();
        await expect(call('hasFamily()', () => fam().hasFamily('.*'))).rejects.toThrow();
        expect(await has(record.family)).toBe(true);
        expect((await rotate(record.family, record.tokenHash)).ok).toBe(true);
      });
    });
  });
}
