import { createHash, randomBytes } from 'node:crypto';
import type { Request, Response } from 'express';
import { base58 } from './token.js';

// Device binding (requestToken({ bindToDevice })): the browser that asked for a token gets a random nonce in an
// HttpOnly cookie, and the stored hash covers nonce and token together. A link or code used in another browser
// (forwarded, leaked, or phished) then hashes differently and logs nobody in.
const NAME = 'pwdless-device';
// Over HTTPS the __Host- prefix makes browsers insist on Secure, Path=/ and no Domain: no subdomain can plant it.
const SECURE_NAME = `__Host-${NAME}`;
const VALUE = /^([0-9a-f]{16})\.([1-9A-HJ-NP-Za-km-z]{16,30})$/;

function nameFor(req: Request): string {
  return req.secure ? SECURE_NAME : NAME;
}

/** A short tag of the uid, so a cookie only ever applies to the uid it was issued for (no uid in the cookie itself). */
function tagOf(uid: string): string {
  return createHash('sha256').update(uid, 'utf8').digest('hex').slice(0, 16);
}

function cookieOptions(req: Request, maxAge?: number) {
  return {
    httpOnly: true,
    sameSite: 'lax' as const,
    secure: req.secure,
    path: '/',
    ...(maxAge ? { maxAge } : {}),
  };
}

/** What is hashed and stored: the token alone, or nonce and token (the nonce has a fixed alphabet, so no ambiguity). */
export function bindable(token: string, nonce: string | undefined): string {
  return nonce === undefined ? token : `${nonce}:${token}`;
}

/**
 * Sets a fresh device cookie that expires with the token and returns its nonce. For an unknown user (no uid) the tag
 * is random, so the response looks the same as for a known one.
 */
export function setDeviceCookie(req: Request, res: Response, uid: string | undefined, ttl: number): string {
  const nonce = base58(randomBytes(16));
  const tag = uid === undefined ? randomBytes(8).toString('hex') : tagOf(uid);
  res.cookie(nameFor(req), `${tag}.${nonce}`, cookieOptions(req, ttl));
  return nonce;
}

/** The nonce of this request's device cookie, if it was issued for `uid`. */
export function deviceNonce(req: Request, uid: string): string | undefined {
  const header = req.headers.cookie;
  if (typeof header !== 'string') return undefined;
  const name = nameFor(req);
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1 || part.slice(0, eq).trim() !== name) continue;
    const match = VALUE.exec(part.slice(eq + 1).trim());
    if (match && match[1] === tagOf(uid)) return match[2];
  }
  return undefined;
}

/** Removes this request's device cookie for `uid` (after login, or when an unbound token replaces a bound one). */
export function clearDeviceCookie(req: Request, res: Response, uid: string): void {
  if (deviceNonce(req, uid) !== undefined) res.clearCookie(nameFor(req), cookieOptions(req));
}
