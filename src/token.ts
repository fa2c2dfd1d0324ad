import { createHash, createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

/** Largest `numberToken.max` crypto.randomInt accepts (its range must be below 2^48). */
export const MAX_NUMBER_TOKEN = 2 ** 48 - 1;

/** Base58 (Bitcoin alphabet) of `bytes`, leading zero bytes kept as '1' as usual. */
export function base58(bytes: Uint8Array): string {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = '';
  while (n > 0n) {
    out = BASE58[Number(n % 58n)] + out;
    n /= 58n;
  }
  for (const b of bytes) {
    if (b !== 0) break;
    out = `1${out}`;
  }
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
 * A leaked store then yields no usable token (and, with a secret, no offline guessing of short codes).
 */
export function hashToken(token: string, secret?: Buffer): string {
  return secret
    ? createHmac('sha256', secret).update(token, 'utf8').digest('hex')
    : createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Constant-time string comparison (no early exit that leaks how much matched); a length mismatch is just false. */
export function safeEqual(a: string, b: string): boolean {
  const ba = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  if (ba.length !== bb.length) return false;
  return timingSafeEqual(ba, bb);
}
