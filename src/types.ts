import type { KeyObject } from 'node:crypto';
import type { Request } from 'express';
import type { PasswordlessError } from './errors.js';

/** A pending token as the core hands it to a store; the raw token never reaches a store. */
export interface TokenRecord {
  /** The user this token logs in. */
  uid: string;
  /** Lower-case hex SHA-256 of the token, or HMAC-SHA256 with the `secret` of `init` (64 characters). */
  tokenHash: string;
  /** The token is refused from this instant on, whether or not the store has purged it yet. */
  expiresAt: Date;
  /** Same-site path to return to after login, already checked by the core. */
  origin?: string;
  /** Wrong tries for this uid after which the record is void; absent means unlimited. */
  maxAttempts?: number;
  /** A short code: refused, and not stored, while its uid is over its failure budget (links are not). */
  lockable?: boolean;
}

/**
 * The budget of wrong tokens of one uid across re-requests (init's `maxFailures` / `failureWindow`). The count belongs
 * to the uid, not to a token: storing a new token keeps it, a successful consume resets it.
 */
export interface FailureBudget {
  /** Wrong tokens after which the uid's codes are refused. */
  max: number;
  /** Milliseconds after the last counted failure at which the count is forgotten. */
  window: number;
}

/** What {@link TokenStore.storeOrUpdate} answers: nothing once stored, or the end of the lock that refused it. */
// biome-ignore lint/suspicious/noConfusingVoidType: a store that only ever stores may keep returning Promise<void>
export type StoreResult = void | { lockedUntil: Date };

/** Why a `consume` failed; for logs and metrics only, never shown to the client. */
export type ConsumeFailure = 'missing' | 'expired' | 'mismatch' | 'exhausted' | 'locked';

/** Outcome of {@link TokenStore.consume}. */
export type ConsumeResult = { ok: true; origin?: string } | { ok: false; reason: ConsumeFailure };

/** Options of {@link TokenStore.consume}. */
export interface ConsumeOptions {
  /** Leave the record in place on a match (`allowTokenReuse`); it still dies at `expiresAt` and at `invalidateUser`. */
  keep: boolean;
  /** Count a mismatch against the uid's budget too, and refuse a lockable record while the uid is over it. */
  budget?: FailureBudget;
}

/**
 * Where pending tokens live. All methods return Promises, settle in bounded time and reject with the driver's error
 * on failure. The contract kit in `express-passwordless/testing` is the normative definition; see docs/token-stores.md.
 */
export interface TokenStore {
  /**
   * Store `record`, replacing any earlier token of `record.uid` (and its attempt count, but not the uid's failure
   * count). With `budget`, a lockable record is not stored while the uid is over it: resolve `{ lockedUntil }`.
   */
  storeOrUpdate(record: TokenRecord, budget?: FailureBudget): Promise<StoreResult>;
  /**
   * In one atomic step: if `uid` has an unexpired record whose hash equals `tokenHash`, delete it (unless `keep`) and
   * resolve `ok`; otherwise count one failed attempt on the uid's record and delete it once `maxAttempts` is reached.
   * With `options.budget`: a mismatch also counts one failure for the uid, a match resets the uid's failures, and a
   * lockable record of a uid over its budget is refused (`locked`) without comparing or counting.
   */
  consume(uid: string, tokenHash: string, options: ConsumeOptions): Promise<ConsumeResult>;
  /**
   * Remove the pending token of `uid` (exact match: no patterns, no operators); with `tokenHash`, only if the uid's
   * record still holds that hash (a newer token stays).
   */
  invalidateUser(uid: string, tokenHash?: string): Promise<void>;
  /** Remove every record this store owns (its own prefix / table / collection only). */
  clear(): Promise<void>;
  /** Number of unexpired records. */
  length(): Promise<number>;
  /** Release what the store created (timers, connections it opened); never close a client the caller passed in. */
  close(): Promise<void>;
  /**
   * API mode (init `jwt`) only; a store without the five refresh-family methods works for sessions and is refused by
   * `init` with `jwt`. Store a new login's family; `clear()` removes families too, `length()` does not count them.
   */
  createFamily?(record: RefreshFamily): Promise<void>;
  /**
   * In one atomic step: if `family` is unexpired and holds `tokenHash`, replace it with `next` and resolve
   * `{ ok: true, uid }`; if it holds another hash (an already-rotated or forged token), delete the family and resolve
   * `reused`; an expired family is deleted (`expired`); none: `missing`. Of concurrent calls with one hash at most one
   * succeeds.
   */
  rotateFamily?(family: string, tokenHash: string, next: RefreshRotation): Promise<RotateResult>;
  /** Delete one family (logout of that login); resolve its uid, or undefined when there was no unexpired family. */
  revokeFamily?(family: string): Promise<string | undefined>;
  /** Delete every family of `uid` (log out everywhere). */
  revokeFamilies?(uid: string): Promise<void>;
  /** Whether `family` exists and is unexpired (the per-request revocation check of bearerSupport). */
  hasFamily?(family: string): Promise<boolean>;
}

/** One login in API mode: its refresh token family, stored by hashes only. */
export interface RefreshFamily {
  /** 64 hex characters: the hash of the family id (the first part of every refresh token of this login). */
  family: string;
  /** The user this login belongs to. */
  uid: string;
  /** 64 hex characters: the hash of the current refresh token's secret part. */
  tokenHash: string;
  /** When the family dies unless rotated before (rotation moves it to `now + refreshTtl`). */
  expiresAt: Date;
}

/** The hash and expiry that replace a family's current ones at rotation. */
export interface RefreshRotation {
  /** 64 hex characters: the hash of the new refresh token's secret part. */
  tokenHash: string;
  /** The family's new expiry. */
  expiresAt: Date;
}

/** Why a rotation failed: no such family, expired, or a hash other than the current one (theft; family deleted). */
export type RotateFailure = 'missing' | 'expired' | 'reused';

/** Result of {@link TokenStore.rotateFamily}. */
export type RotateResult = { ok: true; uid: string } | { ok: false; reason: RotateFailure };

/** What a delivery's `send` receives for one token. */
export interface DeliveryContext {
  /** The plain token or code to deliver; it exists only in memory and in this message. */
  token: string;
  /** The uid that `getUserId` returned; put it beside the token in the link. */
  uid: string;
  /** Where to send: the `recipient` that `getUserId` returned, else the user's own input. */
  recipient: string;
  /** Name of the delivery method, or `undefined` for the default one. */
  delivery: string | undefined;
  /** The request that asked for the token (never build a link's host from its `Host` header). */
  req: Request;
  /** The instant the token stops working. */
  expiresAt: Date;
  /** `'code'` when the token is meant to be typed (`numberToken` / `tokenAlgorithm`), `'link'` for the default token. */
  kind: 'link' | 'code';
}

/** Sends one token; a throw or rejection is a delivery failure (`DELIVERY_FAILED`). */
export type SendToken = (ctx: DeliveryContext) => void | Promise<void>;

/** A uid together with the address the app vouches for; the token is sent there and not to the raw input. */
export interface UserIdWithRecipient {
  /** The user's id (a number is turned into a string). */
  uid: string | number;
  /** Where to deliver the token (an email address, a phone number…). */
  recipient: string;
}

/** What `getUserId` may return: a uid, a uid with its recipient, or null/undefined for an unknown user. */
export type UserIdResult = string | number | UserIdWithRecipient | null | undefined;

/** Looks up the user for the input of the login form; `delivery` is the requested method's name, if any. */
export type GetUserId = (
  user: string,
  delivery: string | undefined,
  req: Request,
) => UserIdResult | Promise<UserIdResult>;

/** Options of `init`. */
export interface InitOptions {
  /** Property of `req` that holds the uid of the logged-in user. Default: `'user'`. */
  userProperty?: string;
  /** A token stays valid after use until it expires (stateless use). Default: `false`. */
  allowTokenReuse?: boolean;
  /** Don't call `req.session.save()` before redirects (cookie-session). Default: `false`. */
  skipForceSessionSave?: boolean;
  /** Milliseconds a store call may take before it fails as `STORE_ERROR`. Default: `2000`. */
  storeTimeout?: number;
  /** Milliseconds `send` may take before it fails as `DELIVERY_FAILED`. Default: `10000`. */
  deliveryTimeout?: number;
  /** At least 32 bytes: tokens are stored as HMAC-SHA256(secret, token) instead of SHA-256(token). Default: none. */
  secret?: string | Buffer;
  /**
   * Wrong tokens for one uid, across re-requests, after which its codes are refused and requestToken answers 429 for
   * codes (links keep working); reset only by a successful login. Default: `100`.
   */
  maxFailures?: number;
  /** Milliseconds after the last wrong token at which a uid's failure count is forgotten. Default: `3600000` (1 h). */
  failureWindow?: number;
  /** API mode: sign bearer access tokens with these keys and issue rotating refresh tokens (needs jose). */
  jwt?: JwtOptions;
  /**
   * Called with each error the library answers itself as JSON (503/500 in API mode) instead of passing it to
   * `next(err)`. Default: one `console.error` line with the code and message.
   */
  onError?: (err: PasswordlessError, req: Request) => void;
}

/** An earlier signing key whose access tokens still verify (key rotation). */
export interface PreviousJwtKey {
  /** The `kid` the earlier key's tokens carry. */
  kid: string;
  /** The earlier key pair's public key (KeyObject or PEM). */
  publicKey?: KeyObject | string;
  /** The earlier HS256 secret. */
  secret?: string | Buffer;
}

/** The `jwt` option of init: either `secret`, or `privateKey` + `publicKey` + `kid`. */
export interface JwtOptions {
  /** HS256 key of at least 32 bytes. */
  secret?: string | Buffer;
  /** Signing key (KeyObject or PEM): RSA ≥ 2048 bits (RS256), RSA-PSS (PS256), EC P-256/384/521 (ES256/384/512), Ed25519 (EdDSA). */
  privateKey?: KeyObject | string;
  /** The public key of `privateKey`, which verifies access tokens. */
  publicKey?: KeyObject | string;
  /** Key id in every access token's header; required with a key pair and with `previousKeys`. */
  kid?: string;
  /** Earlier keys still accepted for verification until their tokens expire. Default: none. */
  previousKeys?: PreviousJwtKey[];
  /** `iss` claim set and required. Default: none. */
  issuer?: string;
  /** `aud` claim set and required. Default: none. */
  audience?: string;
  /** Access token lifetime in milliseconds. Default: `900000` (15 min). */
  accessTtl?: number;
  /** Refresh token lifetime in milliseconds, renewed at every rotation (idle timeout). Default: 30 days. */
  refreshTtl?: number;
}

/** Options of `addDelivery`. */
export interface DeliveryOptions {
  /** Token lifetime in milliseconds. Default: 15 minutes for links, 10 minutes for codes. */
  ttl?: number;
  /** Makes the token instead of the default 16 random bytes in base58; its result is a code meant to be typed. */
  tokenAlgorithm?: () => string | Promise<string>;
  /** Send a uniform random numeric code in [0, max), zero-padded to the digits of max − 1. Default: none. */
  numberToken?: { max: number };
  /** Wrong tries for one uid before its pending token is void. Default: 5 for codes, unlimited for links. */
  maxAttempts?: number;
}

/** Options of `requestToken`. */
export interface RequestTokenOptions {
  /** Redirect here instead of answering 400/401 when the user is missing or unknown. Default: none. */
  failureRedirect?: string;
  /** Flash this message as `passwordless` on failure (needs `failureRedirect` and connect-flash). Default: none. */
  failureFlash?: string;
  /** Flash this message as `passwordless-success` once the token is sent (needs connect-flash). Default: none. */
  successFlash?: string;
  /** Request field with the user's contact (email address, phone number…). Default: `'user'`. */
  userField?: string;
  /** Request field naming the delivery method. Default: `'delivery'`. */
  deliveryField?: string;
  /** Request field with the same-site path to return to after login; unsafe values are dropped. Default: none. */
  originField?: string;
  /** Read the fields from the query of a GET request as well as from a POST body. Default: `false`. */
  allowGet?: boolean;
  /**
   * Answer an unknown user exactly as a known one (status, headers, body, redirect, flash), and store and send after
   * the response so its timing does not tell them apart either. `req.passwordless.uidToAuth` is then never set, and
   * store or delivery failures go to `onBackgroundError` instead of `next(err)`. Default: `false`.
   */
  enumerationSafe?: boolean;
  /**
   * Bind the token to this browser: an HttpOnly, SameSite=Lax cookie with a random nonce whose hash is stored with the
   * token; acceptance then needs the cookie too, so a leaked link or code is useless elsewhere. Default: `false`.
   */
  bindToDevice?: boolean;
  /** Receives store and delivery failures that happen after the response (`enumerationSafe`). Default: logs them. */
  onBackgroundError?: (err: PasswordlessError, req: Request) => void;
  /** Answer JSON (202 `{}`; errors `{ error }`) instead of next()/redirects; unset: when the request accepts JSON. */
  json?: boolean;
}

/** Options of `acceptToken`. */
export interface AcceptTokenOptions {
  /** Redirect here after a successful login (unless an origin redirect applies). Default: none (`next()`). */
  successRedirect?: string;
  /** Query/body field with the token. Default: `'token'`. */
  tokenField?: string;
  /** Query/body field with the uid. Default: `'uid'`. */
  uidField?: string;
  /** Also read token and uid from a parsed POST body. Default: `false`. */
  allowPost?: boolean;
  /** Flash this message as `passwordless` when a token is refused (needs connect-flash). Default: none. */
  failureFlash?: string;
  /** Flash this message as `passwordless-success` after login (needs connect-flash). Default: none. */
  successFlash?: string;
  /** After login, redirect to the origin stored with the token, if it is a same-site path. Default: `false`. */
  enableOriginRedirect?: boolean;
  /**
   * A GET with a token consumes nothing: it answers a small page with a button that POSTs the token back, and only that
   * same-origin POST logs in, so mail scanners that open every link cannot use the token up. Needs a body parser
   * (`express.urlencoded()`). Default: `false`.
   */
  requireConfirmation?: boolean;
  /** Makes the HTML of the confirmation page; escape nothing yourself: every field of the context is safe HTML. */
  confirmationPage?: (ctx: ConfirmationPageContext) => string;
  /**
   * Answer 200 `{ uid, accessToken, tokenType, expiresIn, refreshToken }` (init `jwt`) instead of logging a session in;
   * failures `{ error }`. Reads a POST body too. Unset: when the request accepts JSON and init has `jwt`.
   */
  json?: boolean;
}

/** What `confirmationPage` receives; every string is already HTML-escaped. */
export interface ConfirmationPageContext {
  /** The account the link logs into, masked (e.g. `a***@example.com`). */
  maskedUid: string;
  /** The form's action: the path of the link, without its query. */
  action: string;
  /** The hidden inputs carrying token and uid; put them inside `<form method="post" action="…">`. */
  hiddenInputs: string;
}

/** Options of `restricted`. */
export interface RestrictedOptions {
  /** Redirect here instead of answering 401 when nobody is logged in. Default: none. */
  failureRedirect?: string;
  /** Flash this message as `passwordless` before the redirect (needs `failureRedirect`). Default: none. */
  failureFlash?: string;
  /** Append `?<originField>=<requested URL>` to `failureRedirect` (needs `failureRedirect`). Default: none. */
  originField?: string;
}

/** Options of `logout`. */
export interface LogoutOptions {
  /** Flash this message as `passwordless-success` after logout (needs connect-flash). Default: none. */
  successFlash?: string;
  /** API mode: revoke every refresh family of the uid (log out everywhere), not only this login's. Default: `false`. */
  everywhere?: boolean;
  /** Answer store failures as JSON 503 instead of `next(err)`; unset: when the request accepts JSON. */
  json?: boolean;
}

/** Options of `bearerSupport`. */
export interface BearerSupportOptions {
  /** Also check on every request that the token's login was not revoked: one store read each. Default: `false`. */
  checkRevocation?: boolean;
}

/** What `requestToken` leaves on `req.passwordless` for the next middleware. */
export interface PasswordlessRequestInfo {
  /** The uid a token was just sent for. */
  uidToAuth?: string;
}

declare global {
  namespace Express {
    interface Request {
      /** Set by `requestToken()` for the middleware after it. */
      passwordless?: PasswordlessRequestInfo;
    }
  }
}
