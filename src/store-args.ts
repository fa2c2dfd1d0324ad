import { PasswordlessError } from './errors.js';
import type { ConsumeOptions, FailureBudget, RefreshFamily, RefreshRotation, TokenRecord } from './types.js';

/** Longest uid a store accepts (the core refuses longer input with 400 before any store call). */
export const MAX_UID_LENGTH = 1024;

function bad(method: string, what: string, got: unknown): PasswordlessError {
  const shown = typeof got === 'string' ? `a string of ${got.length} characters` : typeof got;
  return new PasswordlessError('INVALID_ARGUMENT', `${method}(): ${what}; got ${shown}.`);
}

// Control characters (NUL cannot be stored in PostgreSQL text) and lone surrogates (UTF-8 encoding turns every one into
// U+FFFD, so 'a\uD800' and 'a\uDBFF' would name the same key or row).
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const UNSTORABLE = /[\u0000-\u001f\u007f-\u009f]|\p{Cs}/u;

/** True for a string every store can hold exactly as given: no control characters, well-formed Unicode. */
export function isStorableString(value: string): boolean {
  return !UNSTORABLE.test(value);
}

/**
 * Rejects anything but a non-empty, storable string of at most MAX_UID_LENGTH characters, so no object or operator
 * reaches a query and no two uids collide in a backend's encoding.
 */
export function assertUid(method: string, uid: unknown): asserts uid is string {
  if (typeof uid !== 'string' || uid.length === 0 || uid.length > MAX_UID_LENGTH || !isStorableString(uid)) {
    throw bad(
      method,
      `uid must be a non-empty string of at most ${MAX_UID_LENGTH} characters, without control characters or lone surrogates`,
      uid,
    );
  }
}

/** Rejects a tokenHash that is not 64 lower-case hex characters (what the core always sends). */
export function assertTokenHash(
  method: string,
  tokenHash: unknown,
  name = 'tokenHash',
): asserts tokenHash is string {
  if (typeof tokenHash !== 'string' || !/^[0-9a-f]{64}$/.test(tokenHash)) {
    throw bad(method, `${name} must be 64 lower-case hex characters (a SHA-256 digest)`, tokenHash);
  }
}

/** Checks every field of a record passed to storeOrUpdate. */
export function assertTokenRecord(record: unknown): asserts record is TokenRecord {
  if (typeof record !== 'object' || record === null)
    throw bad('storeOrUpdate', 'record must be an object', record);
  const r = record as Record<string, unknown>;
  assertUid('storeOrUpdate', r.uid);
  assertTokenHash('storeOrUpdate', r.tokenHash);
  if (!(r.expiresAt instanceof Date) || Number.isNaN(r.expiresAt.getTime())) {
    throw bad('storeOrUpdate', 'expiresAt must be a valid Date', r.expiresAt);
  }
  if (r.origin !== undefined && (typeof r.origin !== 'string' || r.origin.length > MAX_UID_LENGTH)) {
    throw bad('storeOrUpdate', 'origin must be a string of at most 1024 characters or undefined', r.origin);
  }
  if (r.lockable !== undefined && typeof r.lockable !== 'boolean') {
    throw bad('storeOrUpdate', 'lockable must be a boolean or undefined', r.lockable);
  }
  if (
    r.maxAttempts !== undefined &&
    !(Number.isSafeInteger(r.maxAttempts) && (r.maxAttempts as number) > 0)
  ) {
    throw bad('storeOrUpdate', 'maxAttempts must be a positive integer or undefined', r.maxAttempts);
  }
}

/** Longest failure window a store accepts (init caps failureWindow there too), so no lock end is an Invalid Date. */
const MAX_BUDGET_WINDOW = 365 * 24 * 3600_000;

/** Checks an optional failure budget (storeOrUpdate's second argument, consume's `options.budget`). */
export function assertBudget(budget: unknown): asserts budget is FailureBudget | undefined {
  if (budget === undefined) return;
  const b = budget as Partial<FailureBudget>;
  if (
    typeof budget !== 'object' ||
    budget === null ||
    !Number.isSafeInteger(b.max) ||
    (b.max as number) < 1 ||
    !Number.isSafeInteger(b.window) ||
    (b.window as number) < 1 ||
    (b.window as number) > MAX_BUDGET_WINDOW
  ) {
    throw bad('budget', 'a failure budget must be { max: positive integer, window: 1 ms to 1 year }', budget);
  }
}

/** Checks the arguments of invalidateUser. */
export function assertInvalidateArgs(uid: unknown, tokenHash: unknown): void {
  assertUid('invalidateUser', uid);
  if (tokenHash !== undefined) assertTokenHash('invalidateUser', tokenHash);
}

/** Checks the arguments of consume. */
export function assertConsumeArgs(
  uid: unknown,
  tokenHash: unknown,
  options: unknown,
): asserts options is ConsumeOptions {
  assertUid('consume', uid);
  assertTokenHash('consume', tokenHash);
  if (
    typeof options !== 'object' ||
    options === null ||
    typeof (options as ConsumeOptions).keep !== 'boolean'
  ) {
    throw bad('consume', 'options must be { keep: boolean, budget? }', options);
  }
  assertBudget((options as ConsumeOptions).budget);
}

function assertDate(method: string, name: string, value: unknown): asserts value is Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime()))
    throw bad(method, `${name} must be a valid Date`, value);
}

/** Checks a refresh family passed to createFamily. */
export function assertFamilyRecord(record: unknown): asserts record is RefreshFamily {
  if (typeof record !== 'object' || record === null)
    throw bad('createFamily', 'record must be an object', record);
  const r = record as Record<string, unknown>;
  assertTokenHash('createFamily', r.family, 'family');
  assertUid('createFamily', r.uid);
  assertTokenHash('createFamily', r.tokenHash);
  assertDate('createFamily', 'expiresAt', r.expiresAt);
}

/** Checks the arguments of rotateFamily. */
export function assertRotateArgs(
  family: unknown,
  tokenHash: unknown,
  next: unknown,
): asserts next is RefreshRotation {
  assertTokenHash('rotateFamily', family, 'family');
  assertTokenHash('rotateFamily', tokenHash);
  if (typeof next !== 'object' || next === null)
    throw bad('rotateFamily', 'next must be { tokenHash, expiresAt }', next);
  assertTokenHash('rotateFamily', (next as RefreshRotation).tokenHash, 'next.tokenHash');
  assertDate('rotateFamily', 'next.expiresAt', (next as RefreshRotation).expiresAt);
}
