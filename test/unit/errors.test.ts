import { readFileSync } from 'node:fs';
import { ERROR_CODES, PasswordlessError } from 'express-passwordless';
import { describe, expect, it } from 'vitest';

describe('PasswordlessError', () => {
  it('carries a code, a cause, and the name PasswordlessError', () => {
    const cause = new Error('boom');
    const err = new PasswordlessError('STORE_ERROR', 'The store failed.', { cause });
    expect(err).toBeInstanceOf(Error);
    expect(err).toBeInstanceOf(PasswordlessError);
    expect(err.code).toBe('STORE_ERROR');
    expect(err.cause).toBe(cause);
    expect(err.name).toBe('PasswordlessError');
    expect(String(err)).toBe('PasswordlessError: The store failed.');
  });

  it('is recognised across copies of the class (another bundle, ESM vs CJS) by its brand', () => {
    const foreign = new Error('x');
    Object.defineProperty(foreign, Symbol.for('express-passwordless.error'), { value: true });
    expect(foreign).toBeInstanceOf(PasswordlessError);
    expect(new Error('plain')).not.toBeInstanceOf(PasswordlessError);
    expect(null).not.toBeInstanceOf(PasswordlessError);
  });

  it('every code has a section in docs/errors.md', () => {
    const docs = readFileSync('docs/errors.md', 'utf8');
    for (const code of ERROR_CODES) expect(docs).toContain(`## ${code}`);
  });
});
