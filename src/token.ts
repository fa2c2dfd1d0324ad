import { createHmac, hash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

/** Largest `numberToken.max` crypto.randomInt accepts (its range must be below 2^48). */
export const MAX_NUMBER_TOKEN = 2 ** 48 - 1;

/**
 * Base58 (Bitcoin alphabet) of `bytes`, leading zero bytes kept as '1' as usual. Small-integer long division, byte by
 * byte, into base-58 digits (as bs58 does): about 3× faster than BigInt arithmetic, which showed in login profiles.
 */
export function base58(bytes: Uint8Array): string {
  let zeros = 0;
  while (zeros < bytes.length && bytes[zeros] === 0) zeros += 1;
  // Base-58 digits, most significant first, right-aligned; log(256) / log(58) < 1.38 digits per byte.
  const size = Math.ceil((bytes.length - zeros) * 1.38) + 1;
  const digits = new Uint8Array(size);
  let length = 0;
  for (let i = zeros; i < bytes.length; i++) {
    let carry = bytes[i]!;
    let j = 0;
    for (let k = size - 1; (carry !== 0 || j < length) && k >= 0; k--, j++) {
      carry += 256 * digits[k]!;
      digits[k] = carry % 58;
      carry = (carry / 58) | 0;
    }
    length = j;
  }
  let out = '1'.repeat(zeros);
  for (let k = size - length; k < size; k++) out += BASE58[digits[k]!];
  return out;
}

/** The default token: 16 bytes (128 bits) from the CSPRNG, in base58. */
export function generateToken(): string {
  return base58(randomBytes(16));
}

/**
 * A code uniform over [0, max), zero-padded to the digits of max − 1. crypto.randomInt draws by rejection sampling,
 * so there is none of the modulo bias of 1.x's `randomBytes(4) % max`.
 */
export function generateNumberToken(max: number): string {
  const digits = String(max - 1).length;
  return String(randomInt(0, max)).padStart(digits, '0');
}

/**
 * The only form in which a token reaches a store: HMAC-SHA256(secret, token) with a secret, else SHA-256(token).
 * A leaked store then yields no usable token (and, with a secret, no offline guessing of short codes). SHA-256 goes
 * through the one-shot crypto.hash() (Node 20.12+; a string is hashed as UTF-8): no Hash object to build and collect.
 */
export function hashToken(token: string, secret?: Buffer): string {
  return secret
    ? createHmac('sha256', secret).update(token, 'utf8').digest('hex')
    : hash('sha256', token, 'hex');
}

/** Constant-time string comparison (no early exit that leaks how much matched); a length mismatch is just false. */
export function safeEqual(a: string, b: string): boolean {
  const ba = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  if (ba.length !== bb.length) return false;
  return timingSafeEqual(ba, bb);
}
