/** Every code a {@link PasswordlessError} can carry; each has a section in docs/errors.md. Codes are never renamed. */
export const ERROR_CODES = [
  'BAD_OPTIONS',
  'INVALID_STORE',
  'NOT_INITIALIZED',
  'NO_DELIVERY',
  'NO_SESSION',
  'NO_BODY',
  'NO_FLASH',
  'INVALID_ARGUMENT',
  'STORE_ERROR',
  'DELIVERY_FAILED',
  'USER_LOOKUP_FAILED',
  'TOKEN_GENERATION_FAILED',
  'SESSION_ERROR',
] as const;

/** A stable, machine-readable reason for a {@link PasswordlessError}. */
export type PasswordlessErrorCode = (typeof ERROR_CODES)[number];

// A brand instead of plain `instanceof`: each entry point (and its ESM and CJS builds) may carry its own copy of this
// class, and an error thrown by one must still be `instanceof` the class a user imported from another.
const BRAND = Symbol.for('express-passwordless.error');

/** Every error this library throws or passes to `next()`; `cause` holds the original error where there is one. */
export class PasswordlessError extends Error {
  /** Stable reason; see docs/errors.md. */
  readonly code: PasswordlessErrorCode;

  constructor(code: PasswordlessErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    Object.defineProperty(this, 'name', {
      value: 'PasswordlessError',
      enumerable: false,
      configurable: true,
    });
    Object.defineProperty(this, BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** Wraps `err` as a PasswordlessError with `code`, keeping it as it is when it already has that code. */
export function wrapError(code: PasswordlessErrorCode, message: string, err: unknown): PasswordlessError {
  if (err instanceof PasswordlessError && err.code === code) return err;
  return new PasswordlessError(code, message, { cause: err });
}
