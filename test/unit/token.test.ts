import { createHash, createHmac, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { base58, generateNumberToken, generateToken, hashToken, safeEqual } from '../../src/token.js';

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

describe('default tokens', () => {
  it('are 16 random bytes in base58 (21 or 22 characters of the base58 alphabet)', () => {
    const token = generateToken();
    expect(token).toMatch(/^[1-9A-HJ-NP-Za-km-z]{21,22}$/);
  });

  it('10,000 tokens are all distinct', () => {
    const tokens = new Set(Array.from({ length: 10_000 }, generateToken));
    expect(tokens.size).toBe(10_000);
  });

  it('base58 encodes known vectors, leading zero bytes as 1', () => {
    expect(base58(Buffer.from('Hello World!'))).toBe('2NEpo7TZRRrLZSi2U');
    expect(base58(Buffer.from([0, 0, 1]))).toBe('112');
  });

  it('Math.random appears nowhere in src/', () => {
    const offenders = filesUnder('src').filter((f) => readFileSync(f, 'utf8').includes('Math.random'));
    expect(offenders).toEqual([]);
  });
});

describe('numeric codes', () => {
  it('are zero-padded to the digits of max - 1', () => {
    for (let i = 0; i < 200; i++) expect(generateNumberToken(1_000_000)).toMatch(/^\d{6}$/);
    for (let i = 0; i < 200; i++) expect(generateNumberToken(100)).toMatch(/^\d{2}$/);
    expect(new Set(Array.from({ length: 500 }, () => generateNumberToken(10))).size).toBe(10);
  });

  it('are uniform: chi-square over 20,000 codes (no modulo bias)', () => {
    // A max where 2^32 % max is large, so that 1.x's `randomBytes(4) % max` is visibly biased; buckets by value range.
    const max = 3_000_000_000;
    const buckets = 20;
    const counts = new Array<number>(buckets).fill(0);
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const code = Number(generateNumberToken(max));
      expect(code).toBeGreaterThanOrEqual(0);
      expect(code).toBeLessThan(max);
      counts[Math.floor((code / max) * buckets)]! += 1;
    }
    const expected = n / buckets;
    const chi2 = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    // 19 degrees of freedom: p = 0.001 at 43.8. A modulo-biased generator gives chi2 in the thousands here.
    expect(chi2).toBeLessThan(43.8);
  });

  it('a modulo-biased generator fails the same chi-square test (the test has teeth)', () => {
    const max = 3_000_000_000;
    const buckets = 20;
    const counts = new Array<number>(buckets).fill(0);
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const code = randomBytes(4).readUInt32BE(0) % max; // passwordless 1.x's generator
      counts[Math.floor((code / max) * buckets)]! += 1;
    }
    const expected = n / buckets;
    const chi2 = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    expect(chi2).toBeGreaterThan(43.8);
  });
});

describe('hashing', () => {
  it('is SHA-256 hex without a secret and HMAC-SHA256 hex with one', () => {
    const secret = Buffer.alloc(32, 7);
    expect(hashToken('abc')).toBe(createHash('sha256').update('abc').digest('hex'));
    expect(hashToken('abc', secret)).toBe(createHmac('sha256', secret).update('abc').digest('hex'));
    expect(hashToken('abc', secret)).not.toBe(hashToken('abc'));
  });
});

describe('safeEqual', () => {
  it('is true for equal strings and false for different ones, and never throws on a length mismatch', () => {
    expect(safeEqual('abc', 'abc')).toBe(true);
    expect(safeEqual('abc', 'abd')).toBe(false);
    expect(safeEqual('abc', 'abcd')).toBe(false);
    expect(safeEqual('', 'x')).toBe(false);
  });
});
