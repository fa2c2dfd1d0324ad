import {
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  sign as cryptoSign,
  verify as cryptoVerify,
  KeyObject,
  randomBytes,
} from 'node:crypto';
import { createRequire } from 'node:module';
import type { Request, Response } from 'express';
import type * as Jose from 'jose';
import { PasswordlessError } from './errors.js';
import { fail, readOptions, show } from './options.js';
import { hashToken } from './token.js';
import type { JwtOptions, TokenStore } from './types.js';

/** The TokenStore methods API mode needs beyond the session ones. */
export const FAMILY_METHODS = [
  'createFamily',
  'rotateFamily',
  'revokeFamily',
  'revokeFamilies',
  'hasFamily',
] as const;

/** A TokenStore that has the refresh-family methods. */
export type FamilyStore = TokenStore & Required<Pick<TokenStore, (typeof FAMILY_METHODS)[number]>>;

/** Longest bearer token read from a header (ours are well under 1 KB); longer → invalid without parsing. */
const MAX_JWT_LENGTH = 4096;
/** Seconds of clock difference tolerated between the instances that sign and verify. */
const CLOCK_SKEW = 5;
/** `typ` of our access tokens (RFC 9068), so no other JWT signed with the same key passes as one. */
const ACCESS_TYP = 'at+jwt';
/** A refresh token: the login's family id and the current secret, 16 random bytes each in base64url. */
const REFRESH_TOKEN = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{22})$/;

type Algorithm = 'HS256' | 'RS256' | 'PS256' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA';

interface VerifyKey {
  alg: Algorithm;
  key: KeyObject;
}

/** Resolved `jwt` options of `init`. */
export interface JwtConfig {
  alg: Algorithm;
  kid: string | undefined;
  signKey: KeyObject;
  /** Keys by kid ('' for the current key when it has no kid). */
  verifyKeys: ReadonlyMap<string, VerifyKey>;
  issuer: string | undefined;
  audience: string | undefined;
  accessTtl: number;
  refreshTtl: number;
}

/** A verified access token. */
export interface AccessClaims {
  uid: string;
  family: string;
}

/** What a login or a refresh answers in API mode. */
export interface TokenResponse {
  uid: string;
  accessToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
  refreshToken: string;
}

let jose: typeof Jose | undefined;

/** jose is an optional peer dependency, loaded (synchronously, so init can fail at once) only for API mode. */
function loadJose(call: string): typeof Jose {
  if (jose) return jose;
  try {
    jose = createRequire(import.meta.url)('jose') as typeof Jose;
  } catch (err) {
    throw new PasswordlessError(
      'BAD_OPTIONS',
      `${call}: the \`jwt\` option needs the package jose (v6, Node >= 20.19): npm install jose.`,
      { cause: err },
    );
  }
  return jose;
}

const CURVES: Record<string, Algorithm> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };
const DIGESTS: Record<Algorithm, string | null> = {
  HS256: 'sha256',
  RS256: 'sha256',
  PS256: 'sha256',
  ES256: 'sha256',
  ES384: 'sha384',
  ES512: 'sha512',
  EdDSA: null,
};

function secretKey(call: string, name: string, value: unknown): KeyObject {
  if (typeof value !== 'string' && !Buffer.isBuffer(value)) {
    fail(call, `\`${name}\` must be a string or a Buffer of at least 32 bytes; got ${show(value)}.`);
  }
  const bytes = Buffer.from(value as string | Buffer);
  if (bytes.length < 32) {
    fail(call, `\`${name}\` must be at least 32 bytes; got ${bytes.length}. Use crypto.randomBytes(32).`);
  }
  return createSecretKey(bytes);
}

function asymmetricKey(call: string, name: string, value: unknown, kind: 'private' | 'public'): KeyObject {
  try {
    if (value instanceof KeyObject) {
      if (value.type === kind) return value;
      // A private key also yields its public key.
      if (kind === 'public' && value.type === 'private') return createPublicKey(value);
    } else if (typeof value === 'string' || Buffer.isBuffer(value)) {
      return kind === 'private' ? createPrivateKey(value) : createPublicKey(value);
    }
  } catch (err) {
    throw new PasswordlessError('BAD_OPTIONS', `${call}: \`${name}\` is not a readable ${kind} key (PEM).`, {
      cause: err,
    });
  }
  return fail(call, `\`${name}\` must be a ${kind} KeyObject or PEM string; got ${show(value)}.`);
}

/** The one algorithm a key may sign with: fixed by the key, never by a token's header. */
function algorithmOf(call: string, name: string, key: KeyObject): Algorithm {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss':
      if ((details.modulusLength ?? 0) < 2048)
        fail(call, `\`${name}\`: RSA keys must have at least 2048 bits.`);
      return key.asymmetricKeyType === 'rsa' ? 'RS256' : 'PS256';
    case 'ec': {
      const alg = CURVES[details.namedCurve ?? ''];
      if (!alg)
        fail(call, `\`${name}\`: EC keys must be on P-256, P-384 or P-521; got ${details.namedCurve}.`);
      return alg;
    }
    case 'ed25519':
      return 'EdDSA';
    default:
      return fail(
        call,
        `\`${name}\`: use an RSA, RSA-PSS, EC (P-256/384/521) or Ed25519 key; got ${key.asymmetricKeyType}.`,
      );
  }
}

function kidOf(call: string, name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 128) {
    fail(call, `\`${name}\` must be a non-empty string of at most 128 characters; got ${show(value)}.`);
  }
  return value;
}

function optionalString(call: string, o: Record<string, unknown>, key: string): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0)
    fail(call, `\`jwt.${key}\` must be a non-empty string; got ${show(v)}.`);
  return v;
}

function duration(
  call: string,
  o: Record<string, unknown>,
  key: string,
  fallback: number,
  max: number,
): number {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1000 || v > max) {
    fail(call, `\`jwt.${key}\` must be a whole number of milliseconds from 1000 to ${max}; got ${show(v)}.`);
  }
  return v;
}

// Every key of JwtOptions; the compiler keeps the list complete.
const JWT_KEYS: Record<keyof Required<JwtOptions>, true> = {
  secret: true,
  privateKey: true,
  publicKey: true,
  kid: true,
  previousKeys: true,
  issuer: true,
  audience: true,
  accessTtl: true,
  refreshTtl: true,
};

/** Checks the `jwt` option of init at once: keys readable, pair matching, lifetimes sane; loads jose. */
export function validateJwtOptions(call: string, value: unknown): Readonly<JwtConfig> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(
      call,
      `\`jwt\` must be an object ({ secret } or { privateKey, publicKey, kid }); got ${show(value)}.`,
    );
  }
  // Unknown keys (typos such as `expiresIn`) are refused with a suggestion, as for every other option.
  const o = readOptions(`${call} jwt`, value, JWT_KEYS);
  const hasPair = o.privateKey !== undefined || o.publicKey !== undefined;
  if ((o.secret !== undefined) === hasPair) {
    fail(call, '`jwt` needs either `secret` (HS256) or `privateKey` + `publicKey` + `kid`, not both.');
  }
  let alg: Algorithm;
  let signKey: KeyObject;
  let verifyKey: KeyObject;
  let kid: string | undefined;
  if (!hasPair) {
    signKey = verifyKey = secretKey(call, 'jwt.secret', o.secret);
    alg = 'HS256';
    if (o.kid !== undefined) kid = kidOf(call, 'jwt.kid', o.kid);
  } else {
    if (o.privateKey === undefined || o.publicKey === undefined || o.kid === undefined) {
      fail(call, '`jwt` with a key pair needs all of `privateKey`, `publicKey` and `kid`.');
    }
    signKey = asymmetricKey(call, 'jwt.privateKey', o.privateKey, 'private');
    verifyKey = asymmetricKey(call, 'jwt.publicKey', o.publicKey, 'public');
    alg = algorithmOf(call, 'jwt.privateKey', signKey);
    kid = kidOf(call, 'jwt.kid', o.kid);
    const probe = randomBytes(16);
    let matches = false;
    try {
      matches = cryptoVerify(DIGESTS[alg], probe, verifyKey, cryptoSign(DIGESTS[alg], probe, signKey));
    } catch {}
    if (!matches) fail(call, '`jwt.publicKey` is not the public key of `jwt.privateKey`.');
  }
  const verifyKeys = new Map<string, VerifyKey>([[kid ?? '', { alg, key: verifyKey }]]);
  if (o.previousKeys !== undefined) {
    if (!Array.isArray(o.previousKeys)) {
      fail(
        call,
        `\`jwt.previousKeys\` must be an array of { kid, publicKey } or { kid, secret }; got ${show(o.previousKeys)}.`,
      );
    }
    if (kid === undefined)
      fail(call, '`jwt.previousKeys` needs a `jwt.kid` for the current key, so tokens name their key.');
    o.previousKeys.forEach((entry: unknown, i: number) => {
      const name = `jwt.previousKeys[${i}]`;
      if (typeof entry !== 'object' || entry === null)
        fail(call, `\`${name}\` must be an object; got ${show(entry)}.`);
      const e = entry as Record<string, unknown>;
      const id = kidOf(call, `${name}.kid`, e.kid);
      if (verifyKeys.has(id)) fail(call, `\`${name}.kid\` "${id}" is used twice.`);
      if ((e.secret !== undefined) === (e.publicKey !== undefined)) {
        fail(call, `\`${name}\` needs either \`secret\` or \`publicKey\`.`);
      }
      if (e.secret !== undefined) {
        verifyKeys.set(id, { alg: 'HS256', key: secretKey(call, `${name}.secret`, e.secret) });
      } else {
        const key = asymmetricKey(call, `${name}.publicKey`, e.publicKey, 'public');
        verifyKeys.set(id, { alg: algorithmOf(call, `${name}.publicKey`, key), key });
      }
    });
  }
  loadJose(call);
  return Object.freeze({
    alg,
    kid,
    signKey,
    verifyKeys,
    issuer: optionalString(call, o, 'issuer'),
    audience: optionalString(call, o, 'audience'),
    accessTtl: duration(call, o, 'accessTtl', 15 * 60_000, 24 * 3600_000),
    refreshTtl: duration(call, o, 'refreshTtl', 30 * 24 * 3600_000, 365 * 24 * 3600_000),
  });
}

/** The store key of a family id: refresh tokens and access tokens' `sid` name the login by it, never by the id. */
function familyKey(familyId: string, secret: Buffer | undefined): string {
  return hashToken(`family:${familyId}`, secret);
}

function secretHash(part: string, secret: Buffer | undefined): string {
  return hashToken(`refresh:${part}`, secret);
}

function randomPart(): string {
  return randomBytes(16).toString('base64url');
}

/** Signs a short-lived access token for `uid` in the login `family`. */
export async function signAccessToken(jwt: JwtConfig, uid: string, family: string): Promise<string> {
  const { SignJWT } = loadJose('signAccessToken()');
  const now = Math.floor(Date.now() / 1000);
  const token = new SignJWT({ sid: family })
    .setProtectedHeader(
      jwt.kid === undefined
        ? { alg: jwt.alg, typ: ACCESS_TYP }
        : { alg: jwt.alg, typ: ACCESS_TYP, kid: jwt.kid },
    )
    .setSubject(uid)
    .setIssuedAt(now)
    .setExpirationTime(now + Math.floor(jwt.accessTtl / 1000))
    .setJti(randomPart());
  if (jwt.issuer !== undefined) token.setIssuer(jwt.issuer);
  if (jwt.audience !== undefined) token.setAudience(jwt.audience);
  return token.sign(jwt.signKey);
}

/**
 * Verifies a bearer token: its key by `kid`, the one algorithm of that key, `typ`, `exp`, `iss`/`aud` when configured,
 * and the claims we set. Resolves undefined for anything else (bad signature, `alg: none`, expired, a refresh token).
 */
export async function verifyAccessToken(jwt: JwtConfig, token: string): Promise<AccessClaims | undefined> {
  if (token.length === 0 || token.length > MAX_JWT_LENGTH) return undefined;
  const { jwtVerify } = loadJose('bearerSupport()');
  try {
    const { payload } = await jwtVerify(
      token,
      (header) => {
        const entry = jwt.verifyKeys.get(header.kid ?? '');
        if (!entry || header.alg !== entry.alg) throw new Error('unknown key or algorithm');
        return entry.key;
      },
      {
        algorithms: [...new Set([...jwt.verifyKeys.values()].map((k) => k.alg))],
        typ: ACCESS_TYP,
        issuer: jwt.issuer,
        audience: jwt.audience,
        requiredClaims: ['sub', 'iat', 'exp', 'jti', 'sid'],
        // No token lives longer than accessTtl, whatever its exp says (an old key's, or a forged far-future exp); an
        // iat in the future is refused too.
        maxTokenAge: Math.ceil(jwt.accessTtl / 1000) + CLOCK_SKEW,
        clockTolerance: CLOCK_SKEW,
      },
    );
    if (typeof payload.sub !== 'string' || payload.sub.length === 0 || typeof payload.sid !== 'string') {
      return undefined;
    }
    if (!/^[0-9a-f]{64}$/.test(payload.sid)) return undefined;
    return { uid: payload.sub, family: payload.sid };
  } catch {
    return undefined;
  }
}

/** The `Authorization: Bearer` token of a request; undefined without one, '' for a malformed Bearer header. */
export function bearerToken(req: Request): string | undefined {
  const header = req.headers.authorization;
  if (typeof header !== 'string') return undefined;
  // No regular expression over the header (an attacker controls its length); another scheme is not ours.
  const scheme = header.slice(0, 7).toLowerCase();
  if (scheme !== 'bearer ' && scheme !== 'bearer') return undefined;
  if (header.length > MAX_JWT_LENGTH + 64) return '';
  const token = header.slice(6).trim();
  return token.includes(' ') ? '' : token;
}

/** The family key of a well-formed refresh token, and the hash of its secret part; undefined if malformed. */
export function parseRefreshToken(
  value: unknown,
  secret: Buffer | undefined,
): { family: string; tokenHash: string } | undefined {
  if (typeof value !== 'string') return undefined;
  const match = REFRESH_TOKEN.exec(value);
  if (!match) return undefined;
  return { family: familyKey(match[1] as string, secret), tokenHash: secretHash(match[2] as string, secret) };
}

/** Starts a login's refresh family in the store and answers its first token pair. */
export async function startFamily(
  jwt: JwtConfig,
  secret: Buffer | undefined,
  uid: string,
  create: (record: { family: string; uid: string; tokenHash: string; expiresAt: Date }) => Promise<void>,
): Promise<TokenResponse> {
  const familyId = randomPart();
  const part = randomPart();
  const family = familyKey(familyId, secret);
  await create({
    family,
    uid,
    tokenHash: secretHash(part, secret),
    expiresAt: new Date(Date.now() + jwt.refreshTtl),
  });
  return tokenResponse(jwt, uid, family, `${familyId}.${part}`);
}

/** The next refresh token of a family (same family id, a new secret part) and the hash the store must hold. */
export function nextRefresh(
  refreshToken: string,
  jwt: JwtConfig,
  secret: Buffer | undefined,
): { refreshToken: string; tokenHash: string; expiresAt: Date } {
  const familyId = refreshToken.slice(0, refreshToken.indexOf('.'));
  const part = randomPart();
  return {
    refreshToken: `${familyId}.${part}`,
    tokenHash: secretHash(part, secret),
    expiresAt: new Date(Date.now() + jwt.refreshTtl),
  };
}

export async function tokenResponse(
  jwt: JwtConfig,
  uid: string,
  family: string,
  refreshToken: string,
): Promise<TokenResponse> {
  let accessToken: string;
  try {
    accessToken = await signAccessToken(jwt, uid, family);
  } catch (err) {
    throw new PasswordlessError('TOKEN_GENERATION_FAILED', 'Signing the access token failed; see `cause`.', {
      cause: err,
    });
  }
  return { uid, accessToken, tokenType: 'Bearer', expiresIn: Math.floor(jwt.accessTtl / 1000), refreshToken };
}

/** Stable `error` values of JSON answers; see docs/api-mode.md. */
export type JsonErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'unknown_user'
  | 'invalid_token'
  | 'invalid_grant'
  | 'cross_site'
  | 'too_many_requests'
  | 'temporarily_unavailable'
  | 'server_error';

/** Answers a JSON error (never cached). */
export function sendJsonError(
  res: Response,
  status: number,
  error: JsonErrorCode,
  headers: Record<string, string> = {},
): void {
  res.status(status).set('Cache-Control', 'no-store').set(headers).json({ error });
}

/** Answers tokens (never cached, never in a URL). */
export function sendTokens(res: Response, body: TokenResponse): void {
  res.status(200).set('Cache-Control', 'no-store').set('Pragma', 'no-cache').json(body);
}

/** Whether this request gets JSON: `json` true/false forces it; undefined negotiates on `Accept: application/json`. */
export function wantsJson(req: Request, json: boolean | undefined): boolean {
  if (json !== undefined) return json;
  const accept = req.headers.accept;
  return typeof accept === 'string' && accept.includes('json') && req.accepts(['html', 'json']) === 'json';
}

/** A store lacking the refresh-family methods cannot run API mode; say which at init. */
export function assertFamilyStore(call: string, store: TokenStore): void {
  const missing = FAMILY_METHODS.filter(
    (m) => typeof (store as unknown as Record<string, unknown>)[m] !== 'function',
  );
  if (missing.length > 0) {
    throw new PasswordlessError(
      'INVALID_STORE',
      `${call}: with \`jwt\` the store needs ${missing.map((m) => `${m}()`).join(', ')} (refresh token families); see docs/token-stores.md.`,
    );
  }
}
