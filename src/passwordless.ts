import type { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  assertFamilyStore,
  bearerToken,
  type FamilyStore,
  type JsonErrorCode,
  nextRefresh,
  parseRefreshToken,
  sendJsonError,
  sendTokens,
  startFamily,
  tokenResponse,
  verifyAccessToken,
  wantsJson,
} from './api-mode.js';
import { isCrossSite, sendConfirmationPage } from './confirmation.js';
import { bindable, clearDeviceCookie, deviceNonce, setDeviceCookie } from './device.js';
import { PasswordlessError, wrapError } from './errors.js';
import {
  type DeliveryConfig,
  type InitConfig,
  type RequestTokenConfig,
  validateAcceptTokenOptions,
  validateBearerOptions,
  validateDeliveryOptions,
  validateInitOptions,
  validateLogoutOptions,
  validateRequestTokenOptions,
  validateRestrictedOptions,
} from './options.js';
import { isSafeRedirect } from './redirect.js';
import { isStorableString, MAX_UID_LENGTH } from './store-args.js';
import { generateNumberToken, generateToken, hashToken } from './token.js';
import type {
  AcceptTokenOptions,
  BearerSupportOptions,
  DeliveryOptions,
  GetUserId,
  InitOptions,
  LogoutOptions,
  RequestTokenOptions,
  RestrictedOptions,
  SendToken,
  TokenRecord,
  TokenStore,
} from './types.js';

/** Longest `user`, `delivery` or `uid` input accepted (longer → 400 before any lookup). */
const MAX_INPUT_LENGTH = 1024;
/** Longest token accepted from a request (the default token is 22 characters). */
const MAX_TOKEN_LENGTH = 256;
const STORE_METHODS = ['storeOrUpdate', 'consume', 'invalidateUser', 'clear', 'length', 'close'] as const;

interface DeliveryMethod {
  name: string | undefined;
  send: SendToken;
  config: Readonly<DeliveryConfig>;
}

/** The parts of express-session / cookie-session the core uses. */
interface SessionLike {
  passwordless?: unknown;
  regenerate?: (callback: (err?: unknown) => void) => void;
  save?: (callback: (err?: unknown) => void) => void;
  [key: string]: unknown;
}

type Flash = (type: string, message: string) => unknown;

function sessionOf(req: Request): SessionLike | undefined {
  const session = (req as unknown as { session?: unknown }).session;
  return typeof session === 'object' && session !== null ? (session as SessionLike) : undefined;
}

function flashOf(req: Request): Flash | undefined {
  const flash = (req as unknown as { flash?: unknown }).flash;
  return typeof flash === 'function' ? (flash.bind(req) as Flash) : undefined;
}

function props(req: Request): Record<string, unknown> {
  return req as unknown as Record<string, unknown>;
}

/** Reads an own property only, so nothing comes from a polluted prototype. */
function field(source: unknown, key: string): unknown {
  if (typeof source !== 'object' || source === null || !Object.hasOwn(source, key)) return undefined;
  return (source as Record<string, unknown>)[key];
}

function isOptionalString(value: unknown): value is string | undefined {
  return value === undefined || typeof value === 'string';
}

/** Marks a request that carried a token with the names of its token and uid fields (set by acceptToken). */
const TOKEN_FIELDS = Symbol('express-passwordless.tokenFields');

/** `path` without the query fields `names` (a same-site path stays a same-site path). */
function withoutFields(path: string, names: readonly string[]): string {
  const q = path.indexOf('?');
  if (q === -1) return path;
  const hash = path.indexOf('#', q);
  const query = hash === -1 ? path.slice(q + 1) : path.slice(q + 1, hash);
  const kept = query.split('&').filter((pair) => {
    const raw = (pair.split('=', 1)[0] ?? '').replace(/\+/g, ' ');
    let name = raw;
    try {
      name = decodeURIComponent(raw);
    } catch {}
    // `token[]=…` and `token[x]=…` are the same field to qs.
    return !names.includes(name.replace(/\[.*$/, ''));
  });
  return (
    path.slice(0, q) + (kept.length > 0 ? `?${kept.join('&')}` : '') + (hash === -1 ? '' : path.slice(hash))
  );
}

/** The message of the innermost cause (a store's own error rather than our STORE_ERROR wrapper). */
function describeError(err: unknown): string {
  let inner = err;
  while (inner instanceof PasswordlessError && inner.cause !== undefined) inner = inner.cause;
  return inner instanceof Error ? inner.message : String(inner);
}

/** Express 4 does not forward rejected promises; this does, on both majors. */
function handler(fn: (req: Request, res: Response, next: NextFunction) => Promise<void>): RequestHandler {
  return (req, res, next) => {
    fn(req, res, next).catch(next);
  };
}

/** 400 for hostile or malformed input, as JSON in API mode. */
function badRequest(res: Response, json: boolean): void {
  if (json) sendJsonError(res, 400, 'invalid_request');
  else res.status(400).send('Bad Request');
}

/** Marks a request authenticated by bearerSupport with the family (login) its access token belongs to. */
const BEARER_FAMILY = Symbol('express-passwordless.bearerFamily');

/** Runs an app's error hook: neither its throw nor its rejected promise may become an unhandled rejection. */
function callHook(hook: () => unknown): void {
  Promise.resolve()
    .then(hook)
    .catch(() => {});
}

function bearerFamily(req: Request): string | undefined {
  return (req as unknown as Record<symbol, string | undefined>)[BEARER_FAMILY];
}

/** HTTP status and stable `error` of a PasswordlessError answered as JSON. */
function jsonStatus(err: PasswordlessError): [number, JsonErrorCode] {
  return err.code === 'STORE_ERROR' || err.code === 'DELIVERY_FAILED' || err.code === 'SESSION_ERROR'
    ? [503, 'temporarily_unavailable']
    : [500, 'server_error'];
}

async function withTimeout<T>(work: () => T | Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    // Promise.race subscribes to the work, so its late rejection is handled and never goes unhandled.
    return await Promise.race([Promise.resolve().then(work), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function callSession(session: SessionLike, method: 'regenerate' | 'save'): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    (session[method] as NonNullable<SessionLike['save']>).call(session, (err) =>
      err ? reject(err) : resolve(),
    );
  }).catch((err: unknown) => {
    throw new PasswordlessError(
      'SESSION_ERROR',
      `req.session.${method}() failed; nobody was logged in or out.`,
      {
        cause: err,
      },
    );
  });
}

/**
 * Gives the request a new session id while keeping the app's own session data (cart, flash messages…). A session id
 * an attacker planted before login (session fixation) is then worth nothing. cookie-session has no `regenerate`:
 * its whole session lives in the signed cookie, so there is no server-side id to fix.
 */
async function regenerateSession(req: Request): Promise<SessionLike | undefined> {
  const session = sessionOf(req);
  if (!session || typeof session.regenerate !== 'function') return session;
  const carried: Record<string, unknown> = {};
  for (const key of Object.keys(session)) if (key !== 'cookie') carried[key] = session[key];
  await callSession(session, 'regenerate');
  const fresh = sessionOf(req);
  if (!fresh) throw new PasswordlessError('SESSION_ERROR', 'req.session is missing after regenerate().');
  Object.assign(fresh, carried);
  return fresh;
}

function describeUidResult(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

/** Passwordless login for Express: one instance per app (or use the default export). */
export class Passwordless {
  #store: TokenStore | undefined;
  #config: Readonly<InitConfig> | undefined;
  #defaultDelivery: DeliveryMethod | undefined;
  readonly #namedDeliveries = new Map<string, DeliveryMethod>();
  #warnedUnkeyedCodes = false;

  /** Sets the token store and the instance options; call it before the first request. */
  init(store: TokenStore, options?: InitOptions): void {
    if (typeof store !== 'object' || store === null) {
      throw new PasswordlessError(
        'INVALID_STORE',
        'init(): the first argument must be a TokenStore such as `new MemoryStore()`.',
      );
    }
    const missing = STORE_METHODS.filter(
      (m) => typeof (store as unknown as Record<string, unknown>)[m] !== 'function',
    );
    if (missing.length > 0) {
      throw new PasswordlessError(
        'INVALID_STORE',
        `init(): the store lacks ${missing.map((m) => `${m}()`).join(', ')}; see docs/token-stores.md for the TokenStore interface.`,
      );
    }
    const config = validateInitOptions(options);
    if (config.jwt) assertFamilyStore('init()', store);
    this.#config = config;
    this.#store = store;
    this.#warnUnkeyedCodes();
  }

  /** Adds the default delivery method (`addDelivery(send)`) or a named one (`addDelivery(name, send)`). */
  addDelivery(send: SendToken, options?: DeliveryOptions): void;
  addDelivery(name: string, send: SendToken, options?: DeliveryOptions): void;
  addDelivery(
    nameOrSend: string | SendToken,
    sendOrOptions?: SendToken | DeliveryOptions,
    options?: unknown,
  ): void {
    const call = 'addDelivery()';
    let name: string | undefined;
    let send: unknown;
    let opts: unknown;
    if (typeof nameOrSend === 'function') {
      send = nameOrSend;
      opts = sendOrOptions;
      if (options !== undefined) {
        throw new PasswordlessError(
          'BAD_OPTIONS',
          `${call}: use addDelivery(send, options) or addDelivery(name, send, options).`,
        );
      }
    } else {
      name = nameOrSend;
      send = sendOrOptions;
      opts = options;
      if (typeof name !== 'string' || name.length === 0 || name.length > MAX_INPUT_LENGTH) {
        throw new PasswordlessError(
          'BAD_OPTIONS',
          `${call}: the name must be a non-empty string of at most 1024 characters.`,
        );
      }
    }
    if (typeof send !== 'function') {
      throw new PasswordlessError(
        'BAD_OPTIONS',
        `${call}: \`send\` must be a function (ctx) => Promise<void>; got ${typeof send}.`,
      );
    }
    const config = validateDeliveryOptions(opts);
    if (this.#defaultDelivery) {
      throw new PasswordlessError(
        'BAD_OPTIONS',
        `${call}: a default delivery method exists already; name every method, e.g. addDelivery('email', send), to have several.`,
      );
    }
    if (name === undefined && this.#namedDeliveries.size > 0) {
      throw new PasswordlessError(
        'BAD_OPTIONS',
        `${call}: named delivery methods exist already; name this one too.`,
      );
    }
    if (name !== undefined && this.#namedDeliveries.has(name)) {
      throw new PasswordlessError(
        'BAD_OPTIONS',
        `${call}: a delivery method named "${name}" exists already.`,
      );
    }
    if (config.numberMax !== undefined && config.numberMax < 1_000_000) {
      console.warn(
        `express-passwordless: addDelivery(${name === undefined ? '' : `"${name}"`}) numberToken.max ${config.numberMax} ` +
          'gives codes of fewer than 6 digits; guessing gets easy. Use max: 1_000_000 or more.',
      );
    }
    const method: DeliveryMethod = { name, send: send as SendToken, config };
    if (name === undefined) this.#defaultDelivery = method;
    else this.#namedDeliveries.set(name, method);
    this.#warnUnkeyedCodes();
  }

  /** Middleware that makes a token for the user in the request, stores its hash and calls the delivery's `send`. */
  requestToken(getUserId: GetUserId, options?: RequestTokenOptions): RequestHandler {
    if (typeof getUserId !== 'function') {
      throw new PasswordlessError(
        'BAD_OPTIONS',
        'requestToken(): `getUserId` must be a function (user, delivery, req) => uid | { uid, recipient } | null.',
      );
    }
    const cfg = validateRequestTokenOptions(options);
    return this.#handle(
      (req) => this.#negotiate(req, cfg.json),
      async (req, res, next) => {
        const json = this.#negotiate(req, cfg.json);
        const { store, config } = this.#ready('requestToken()');
        if (!this.#defaultDelivery && this.#namedDeliveries.size === 0) {
          throw new PasswordlessError(
            'NO_DELIVERY',
            'requestToken(): no delivery method; call passwordless.addDelivery(send) first.',
          );
        }
        const flash = flashOf(req);
        if ((cfg.successFlash !== undefined || cfg.failureFlash !== undefined) && !flash) {
          throw new PasswordlessError(
            'NO_FLASH',
            'requestToken(): `successFlash`/`failureFlash` need connect-flash: app.use(flash()).',
          );
        }

        let source: unknown;
        if (req.method === 'POST') {
          // A form or JSON body nobody parsed is a setup mistake; any other POST simply has no fields (→ 400).
          if (req.body === undefined && req.is(['urlencoded', 'json'])) {
            throw new PasswordlessError(
              'NO_BODY',
              'requestToken(): req.body is missing; add express.urlencoded() or express.json() before it.',
            );
          }
          source = req.body;
        } else if (cfg.allowGet && req.method === 'GET') {
          source = req.query;
        }
        const user = field(source, cfg.userField);
        const delivery = field(source, cfg.deliveryField);
        const origin = cfg.originField === undefined ? undefined : field(source, cfg.originField);

        // Hostile input: arrays and objects (qs, JSON), numbers, null or huge strings never reach getUserId or the store.
        if (!isOptionalString(user) || !isOptionalString(delivery) || !isOptionalString(origin)) {
          return badRequest(res, json);
        }
        if ((user?.length ?? 0) > MAX_INPUT_LENGTH || (delivery?.length ?? 0) > MAX_INPUT_LENGTH) {
          return badRequest(res, json);
        }

        const method = (delivery ? this.#namedDeliveries.get(delivery) : undefined) ?? this.#defaultDelivery;
        if (user === '') return this.#requestFailure(req, res, cfg, 401, json);
        if (user === undefined || !method) return this.#requestFailure(req, res, cfg, 400, json);

        let found: unknown;
        try {
          found = await getUserId(user, delivery, req);
        } catch (err) {
          throw new PasswordlessError(
            'USER_LOOKUP_FAILED',
            'requestToken(): getUserId() threw or rejected; see `cause`.',
            {
              cause: err,
            },
          );
        }
        const target = this.#resolveUser(found, user);
        const ttl = method.config.ttl;
        // Device binding: a fresh nonce in an HttpOnly cookie, for known and unknown users alike (the same headers).
        let nonce: string | undefined;
        if (cfg.bindToDevice) nonce = setDeviceCookie(req, res, target?.uid, ttl);
        // enumerationSafe: no cookie is cleared for a known user only (its absence would tell them apart).
        else if (target && !cfg.enumerationSafe) clearDeviceCookie(req, res, target.uid);
        if (!target) {
          if (!cfg.enumerationSafe) return this.#requestFailure(req, res, cfg, 401, json);
          // Unknown user, enumeration-safe: the answer of a known user, with nothing stored and nothing sent.
          return this.#requestSuccess(req, res, cfg, undefined, next, json);
        }
        const issued = this.#issue(
          store,
          config,
          method,
          target,
          isSafeRedirect(origin) ? origin : undefined,
          nonce,
          req,
        );
        if (cfg.enumerationSafe) {
          // Store and send after the response: its timing must not tell known from unknown users (nor a lock).
          issued.catch((err: unknown) => this.#reportBackground(cfg, err, req));
          return this.#requestSuccess(req, res, cfg, undefined, next, json);
        }
        const lockedUntil = await issued;
        if (lockedUntil) {
          // The uid spent its budget of wrong codes: no new code until the window passes (links still work).
          const seconds = String(Math.max(1, Math.ceil((lockedUntil.getTime() - Date.now()) / 1000)));
          if (json) return sendJsonError(res, 429, 'too_many_requests', { 'Retry-After': seconds });
          return void res.status(429).set('Retry-After', seconds).send('Too Many Requests');
        }
        this.#requestSuccess(req, res, cfg, target.uid, next, json);
      },
    );
  }

  /** Middleware that logs the user in when the request carries a valid token and uid. */
  acceptToken(options?: AcceptTokenOptions): RequestHandler {
    const cfg = validateAcceptTokenOptions(options);
    if (cfg.json === true && this.#config && !this.#config.jwt) {
      throw new PasswordlessError(
        'BAD_OPTIONS',
        'acceptToken({ json: true }) answers bearer tokens: pass init(store, { jwt: { secret } }) first.',
      );
    }
    // JSON only in API mode: without `jwt` there are no tokens to answer, and a JSON client gets the 1.x behaviour.
    const jsonOf = (req: Request) =>
      cfg.json ?? (this.#config?.jwt !== undefined && wantsJson(req, undefined));
    return this.#handle(jsonOf, async (req, res, next) => {
      const json = jsonOf(req);
      const query = req.query; // Express 5 parses the query string again on every read of req.query
      // A JSON login POSTs its code in the body: the query is not read then, so no code ends up in a URL or a log.
      const fromQuery = !(json && req.method === 'POST');
      let token = fromQuery ? field(query, cfg.tokenField) : undefined;
      let uid = fromQuery ? field(query, cfg.uidField) : undefined;
      const readsBody = cfg.allowPost || cfg.requireConfirmation || json;
      if (token === undefined && uid === undefined && readsBody && req.method === 'POST') {
        if (req.body === undefined && req.is(['urlencoded', 'json'])) {
          throw new PasswordlessError(
            'NO_BODY',
            'acceptToken({ allowPost / requireConfirmation }): req.body is missing; add express.urlencoded() before it.',
          );
        }
        token = field(req.body, cfg.tokenField);
        uid = field(req.body, cfg.uidField);
      }
      if (token === undefined && uid === undefined) {
        // A route that is only for JSON logins (json: true) says what is missing; elsewhere 1.x passes it on.
        return cfg.json === true && req.method === 'POST' ? badRequest(res, true) : next();
      }

      // A response to a URL that carries a token must not be cached, nor leak the URL in the Referer of what it loads.
      res.set('Cache-Control', 'no-store');
      res.set('Referrer-Policy', 'no-referrer');
      // Tell restricted({ originField }) which query fields carry a token, so it never copies them into a Location.
      Object.defineProperty(req, TOKEN_FIELDS, { value: [cfg.tokenField, cfg.uidField], configurable: true });
      // Link scanners and prefetchers send HEAD/OPTIONS: not checked, consumed or counted, so HEAD is neither a trap
      // for the real user's token nor a free oracle for guessing codes.
      if (req.method === 'HEAD' || req.method === 'OPTIONS') return next();
      // Hostile input: arrays/objects (`?token[]=…`) or huge strings never reach the store.
      if (!isOptionalString(token) || !isOptionalString(uid)) return badRequest(res, json);
      if ((token?.length ?? 0) > MAX_TOKEN_LENGTH || (uid?.length ?? 0) > MAX_UID_LENGTH) {
        return badRequest(res, json);
      }
      // A uid no store can hold as sent (control characters; lone surrogates, which UTF-8 turns into U+FFFD) is refused.
      if (uid !== undefined && !isStorableString(uid)) return badRequest(res, json);
      if (!token || !uid) return json ? badRequest(res, json) : next();

      if (cfg.requireConfirmation) {
        // Mail scanners open every link: a GET only shows a button, and only the POST it makes consumes the token.
        if (req.method !== 'POST') {
          if (json) return badRequest(res, json);
          return sendConfirmationPage(req, res, { ...cfg, token, uid }, cfg.confirmationPage);
        }
        // Login CSRF: another site must not log the victim's browser into the attacker's account.
        if (isCrossSite(req)) {
          if (json) return sendJsonError(res, 403, 'cross_site');
          return void res.status(403).send('Forbidden');
        }
      }

      const { store, config } = this.#ready('acceptToken()');
      const flash = flashOf(req);
      if ((cfg.successFlash !== undefined || cfg.failureFlash !== undefined) && !flash) {
        throw new PasswordlessError(
          'NO_FLASH',
          'acceptToken(): `successFlash`/`failureFlash` need connect-flash: app.use(flash()).',
        );
      }
      const result = await this.#storeCall('consume', () =>
        store.consume(uid, hashToken(bindable(token, deviceNonce(req, uid)), config.secret), {
          keep: config.allowTokenReuse,
          budget: config.budget,
        }),
      );
      // Fail closed on a store that answers anything but the documented shape (e.g. a raw driver result { ok: 1 }).
      if (typeof result !== 'object' || result === null || typeof result.ok !== 'boolean') {
        throw new PasswordlessError(
          'STORE_ERROR',
          "The token store's consume() resolved something other than { ok: boolean }; see docs/token-stores.md.",
        );
      }
      if (result.ok !== true) {
        // Unknown uid, wrong, expired, used or voided token: one outcome, so none of them can be told apart.
        if (json) return sendJsonError(res, 401, 'invalid_token');
        if (cfg.failureFlash !== undefined) flash?.('passwordless', cfg.failureFlash);
        return next();
      }

      clearDeviceCookie(req, res, uid);
      if (json) {
        // API mode: a new refresh family for this login and its first token pair; no session is touched.
        const jwt = this.#jwt('acceptToken({ json })');
        const families = store as FamilyStore;
        const body = await startFamily(jwt, config.secret, uid, (record) =>
          this.#storeCall('createFamily', () => families.createFamily(record)),
        );
        props(req)[config.userProperty] = uid;
        return sendTokens(res, body);
      }
      const session = await regenerateSession(req);
      if (session) session.passwordless = uid;
      props(req)[config.userProperty] = uid;
      if (cfg.successFlash !== undefined) flash?.('passwordless-success', cfg.successFlash);
      // The stored origin was checked at requestToken; check again in case the store holds older or foreign data, and
      // drop token and uid fields from it, so that no Location ever carries them.
      const origin =
        cfg.enableOriginRedirect && isSafeRedirect(result.origin)
          ? withoutFields(result.origin, [cfg.tokenField, cfg.uidField])
          : undefined;
      const target = origin ?? cfg.successRedirect;
      if (target === undefined) return next();
      try {
        await this.#redirect(req, res, target, true);
      } catch (err) {
        // The session could not be saved: undo the login, so that neither the app's error handler nor
        // express-session's own save at the end of the response logs this request in.
        if (session) delete session.passwordless;
        delete props(req)[config.userProperty];
        throw err;
      }
    });
  }

  /** Middleware that lets only logged-in requests through: 401 (or `failureRedirect`) for the rest. */
  restricted(options?: RestrictedOptions): RequestHandler {
    const cfg = validateRestrictedOptions(options);
    return handler(async (req, res, next) => {
      if (props(req)[this.#userProperty()]) return next();
      if (cfg.failureRedirect === undefined) {
        res.status(401).set('WWW-Authenticate', 'Provide a token');
        // A JSON client (API mode) gets a JSON body; status and challenge are the same for everyone.
        if (this.#negotiate(req, undefined) || bearerToken(req) !== undefined) {
          return sendJsonError(res, 401, 'unauthorized', { 'WWW-Authenticate': 'Provide a token' });
        }
        res.send('Unauthorized');
        return;
      }
      let target = cfg.failureRedirect;
      if (cfg.originField !== undefined) {
        // A refused or used link on a restricted page must not put its token into the Location.
        const tokenFields = (req as unknown as Record<symbol, string[] | undefined>)[TOKEN_FIELDS];
        const origin = tokenFields ? withoutFields(req.originalUrl, tokenFields) : req.originalUrl;
        target += `${target.includes('?') ? '&' : '?'}${encodeURIComponent(cfg.originField)}=${encodeURIComponent(origin)}`;
      }
      if (cfg.failureFlash !== undefined) {
        const flash = flashOf(req);
        if (!flash)
          throw new PasswordlessError(
            'NO_FLASH',
            'restricted(): `failureFlash` needs connect-flash: app.use(flash()).',
          );
        flash('passwordless', cfg.failureFlash);
      }
      return this.#redirect(req, res, target, cfg.failureFlash !== undefined);
    });
  }

  /** Middleware that restores `req[userProperty]` from the session on every request; it never calls the store. */
  sessionSupport(): RequestHandler {
    return (req, _res, next) => {
      const session = sessionOf(req);
      if (!session) {
        return next(
          new PasswordlessError(
            'NO_SESSION',
            'sessionSupport() needs a session: add express-session (or cookie-session) before it.',
          ),
        );
      }
      const uid = session.passwordless;
      if (typeof uid === 'string' && uid.length > 0) props(req)[this.#userProperty()] = uid;
      next();
    };
  }

  /** Middleware that logs the user out: session and request cleared, session id renewed, pending tokens voided. */
  logout(options?: LogoutOptions): RequestHandler {
    const cfg = validateLogoutOptions(options);
    const presented = (req: Request) => field(req.body, 'refreshToken');
    const jsonOf = (req: Request) =>
      this.#negotiate(req, cfg.json) ||
      bearerFamily(req) !== undefined ||
      (this.#config?.jwt !== undefined && presented(req) !== undefined);
    return this.#handle(jsonOf, async (req, res, next) => {
      const flash = flashOf(req);
      if (cfg.successFlash !== undefined && !flash) {
        throw new PasswordlessError(
          'NO_FLASH',
          'logout(): `successFlash` needs connect-flash: app.use(flash()).',
        );
      }
      const userProperty = this.#userProperty();
      const session = sessionOf(req);
      const fromRequest = props(req)[userProperty];
      let uid = typeof fromRequest === 'string' ? fromRequest : session?.passwordless;
      delete props(req)[userProperty];
      // API mode: this login is the bearer token's family, or that of a refresh token in the body.
      const jwt = this.#config?.jwt;
      const family = jwt
        ? (bearerFamily(req) ?? parseRefreshToken(presented(req), this.#config?.secret)?.family)
        : undefined;
      const hasUid = typeof uid === 'string' && uid.length > 0;
      // The session is cleared first, so the user is logged out even when the store is down.
      if (session) {
        delete session.passwordless;
        if (hasUid) await regenerateSession(req);
      }
      const store = this.#store as FamilyStore | undefined;
      if (store && (hasUid || family !== undefined)) {
        // All store work of one logout shares one storeTimeout.
        const deadline = Date.now() + (this.#config?.storeTimeout ?? 2000);
        if (family !== undefined) {
          // Revoking the login tells whose it was: a refresh token alone then logs out "everywhere" too.
          const owner = await this.#storeCall('revokeFamily', () => store.revokeFamily(family), deadline);
          if (!hasUid && typeof owner === 'string') uid = owner;
        }
        if (typeof uid !== 'string' || uid.length === 0) {
          // A refresh token of no live login: nothing to log out; "everywhere" cannot be honoured without a user.
          if (cfg.everywhere) return sendJsonError(res, 401, 'invalid_grant');
          return next();
        }
        const user = uid;
        const results = await Promise.allSettled([
          this.#storeCall('invalidateUser', () => store.invalidateUser(user), deadline),
          jwt && cfg.everywhere
            ? this.#storeCall('revokeFamilies', () => store.revokeFamilies(user), deadline)
            : undefined,
        ]);
        const failed = results.find((r) => r.status === 'rejected');
        if (failed) throw failed.reason;
      } else if (!hasUid) {
        return next();
      }
      if (cfg.successFlash !== undefined) flash?.('passwordless-success', cfg.successFlash);
      next();
    });
  }

  /**
   * Middleware that sets `req[userProperty]` from a valid `Authorization: Bearer` access token (init `jwt`); a bad,
   * expired or (with `checkRevocation`) revoked one → 401 `{ error: 'invalid_token' }`. No header: `next()` untouched.
   */
  bearerSupport(options?: BearerSupportOptions): RequestHandler {
    const cfg = validateBearerOptions(options);
    this.#needsJwt('bearerSupport()');
    return this.#handle(
      () => true,
      async (req, res, next) => {
        const token = bearerToken(req);
        if (token === undefined) return next();
        const { store, config } = this.#ready('bearerSupport()');
        const jwt = this.#jwt('bearerSupport()');
        const invalid = () =>
          sendJsonError(res, 401, 'invalid_token', { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
        const claims = token ? await verifyAccessToken(jwt, token) : undefined;
        if (!claims) return invalid();
        if (cfg.checkRevocation) {
          const families = store as FamilyStore;
          const alive = await this.#storeCall('hasFamily', () => families.hasFamily(claims.family));
          if (alive !== true) return invalid();
        }
        props(req)[config.userProperty] = claims.uid;
        Object.defineProperty(req, BEARER_FAMILY, { value: claims.family, configurable: true });
        next();
      },
    );
  }

  /**
   * Route handler for `POST { refreshToken }` (init `jwt`): rotates the refresh token and answers a new pair; a token
   * that was already rotated revokes its whole login (theft detection). Failures are JSON 400/401/503.
   */
  refresh(): RequestHandler {
    this.#needsJwt('refresh()');
    return this.#handle(
      () => true,
      async (req, res) => {
        const { store, config } = this.#ready('refresh()');
        const jwt = this.#jwt('refresh()');
        if (req.method !== 'POST') {
          return sendJsonError(res, 405, 'invalid_request', { Allow: 'POST' });
        }
        if (req.body === undefined && req.is(['urlencoded', 'json'])) {
          throw new PasswordlessError(
            'NO_BODY',
            'refresh(): req.body is missing; add express.json() (or express.urlencoded()) before it.',
          );
        }
        // From the body only: a refresh token never travels in a URL.
        const raw = field(req.body, 'refreshToken');
        if (typeof raw !== 'string' || raw.length === 0 || raw.length > MAX_TOKEN_LENGTH) {
          return sendJsonError(res, 400, 'invalid_request');
        }
        const presented = parseRefreshToken(raw, config.secret);
        if (!presented) return sendJsonError(res, 401, 'invalid_grant');
        const next = nextRefresh(raw, jwt, config.secret);
        const families = store as FamilyStore;
        const result = await this.#storeCall('rotateFamily', () =>
          families.rotateFamily(presented.family, presented.tokenHash, {
            tokenHash: next.tokenHash,
            expiresAt: next.expiresAt,
          }),
        );
        if (typeof result !== 'object' || result === null || typeof result.ok !== 'boolean') {
          throw new PasswordlessError(
            'STORE_ERROR',
            "The token store's rotateFamily() resolved something other than { ok: boolean }; see docs/token-stores.md.",
          );
        }
        // Missing, expired, or reused (the family is revoked now): one answer, the client logs in again.
        if (!result.ok || typeof result.uid !== 'string') return sendJsonError(res, 401, 'invalid_grant');
        props(req)[config.userProperty] = result.uid;
        sendTokens(res, await tokenResponse(jwt, result.uid, presented.family, next.refreshToken));
      },
    );
  }

  /** JSON or not: `json` forces it; unset, only in API mode (init `jwt`) and when the request accepts JSON. */
  #negotiate(req: Request, json: boolean | undefined): boolean {
    return json ?? (this.#config?.jwt !== undefined && wantsJson(req, undefined));
  }

  /** Throws at setup when init ran without `jwt` (API mode needs keys). */
  #needsJwt(call: string): void {
    if (this.#config && !this.#config.jwt) {
      throw new PasswordlessError(
        'BAD_OPTIONS',
        `${call} needs API mode: pass init(store, { jwt: { secret } }) (or a key pair); see docs/api-mode.md.`,
      );
    }
  }

  #jwt(call: string) {
    const jwt = this.#config?.jwt;
    if (!jwt) this.#needsJwt(call);
    if (!jwt)
      throw new PasswordlessError(
        'NOT_INITIALIZED',
        `${call}: call passwordless.init(store, { jwt }) first.`,
      );
    return jwt;
  }

  /**
   * Like `handler`, but when `json(req)` holds, a PasswordlessError is answered as JSON (503 for store, delivery and
   * session failures, 500 for the rest) and reported to init's `onError`, instead of going to `next(err)`.
   */
  #handle(
    json: (req: Request) => boolean,
    fn: (req: Request, res: Response, next: NextFunction) => Promise<void>,
  ): RequestHandler {
    return (req, res, next) => {
      fn(req, res, next).catch((err: unknown) => {
        if (!(err instanceof PasswordlessError) || res.headersSent || !json(req)) return next(err);
        const [status, error] = jsonStatus(err);
        sendJsonError(res, status, error);
        const report = this.#config?.onError;
        if (report) callHook(() => report(err, req));
        else console.error(`express-passwordless: answered ${status} (${err.code}): ${err.message}`);
      });
    };
  }

  /**
   * Makes, stores and sends one token; a failed send leaves no valid token behind. Resolves the end of the uid's lock
   * when a code was refused because the uid is over its failure budget (nothing is sent then).
   */
  async #issue(
    store: TokenStore,
    config: Readonly<InitConfig>,
    method: DeliveryMethod,
    target: { uid: string; recipient: string },
    origin: string | undefined,
    nonce: string | undefined,
    req: Request,
  ): Promise<Date | undefined> {
    const { uid, recipient } = target;
    const token = await this.#makeToken(method.config);
    const expiresAt = new Date(Date.now() + method.config.ttl);
    // With device binding the nonce is hashed together with the token, so the store never sees it alone.
    const record: TokenRecord = {
      uid,
      tokenHash: hashToken(bindable(token, nonce), config.secret),
      expiresAt,
    };
    // An unsafe origin was dropped by the caller, and is checked again when the token is accepted.
    if (origin !== undefined) record.origin = origin;
    if (method.config.maxAttempts !== undefined) record.maxAttempts = method.config.maxAttempts;
    // Short codes can be guessed: they obey the uid's failure budget. 128-bit links cannot, so the owner keeps them.
    if (method.config.kind === 'code') record.lockable = true;
    const stored = await this.#storeCall('storeOrUpdate', () => store.storeOrUpdate(record, config.budget));
    if (stored && stored.lockedUntil instanceof Date) return stored.lockedUntil;
    try {
      await withTimeout(
        () =>
          method.send({
            token,
            uid,
            recipient,
            delivery: method.name,
            req,
            expiresAt,
            kind: method.config.kind,
          }),
        config.deliveryTimeout,
        () => new Error(`send() took longer than deliveryTimeout (${config.deliveryTimeout} ms)`),
      );
    } catch (err) {
      // The user never got this token: leave none behind that a later leak of the message could use. Only this
      // token: one that a concurrent request for the same uid delivered meanwhile stays valid.
      const cleanupError = await this.#storeCall('invalidateUser', () =>
        store.invalidateUser(uid, record.tokenHash),
      ).then(
        () => undefined,
        (e: unknown) => e,
      );
      const name = method.name === undefined ? 'method' : `"${method.name}"`;
      throw new PasswordlessError(
        'DELIVERY_FAILED',
        cleanupError
          ? `requestToken(): the delivery ${name} failed, and so did invalidating the unsent token (${describeError(cleanupError)}); it dies at its ttl. See \`cause\`.`
          : `requestToken(): the delivery ${name} failed; the unsent token was invalidated. See \`cause\`.`,
        { cause: err },
      );
    }
    return undefined;
  }

  #requestSuccess(
    req: Request,
    res: Response,
    cfg: Readonly<RequestTokenConfig>,
    uid: string | undefined,
    next: NextFunction,
    json: boolean,
  ): void {
    const info = (props(req).passwordless as Record<string, unknown> | undefined) ?? {};
    if (uid !== undefined) info.uidToAuth = uid;
    props(req).passwordless = info;
    if (json) return void res.status(202).set('Cache-Control', 'no-store').json({});
    if (cfg.successFlash !== undefined) flashOf(req)?.('passwordless-success', cfg.successFlash);
    next();
  }

  #reportBackground(cfg: Readonly<RequestTokenConfig>, err: unknown, req: Request): void {
    const error =
      err instanceof PasswordlessError ? err : wrapError('DELIVERY_FAILED', 'requestToken() failed.', err);
    const hook = cfg.onBackgroundError;
    if (hook) callHook(() => hook(error, req));
    else
      console.error(
        `express-passwordless: requestToken() failed after the response (${error.code}): ${error.message}`,
      );
  }

  #userProperty(): string {
    return this.#config?.userProperty ?? 'user';
  }

  #ready(call: string): { store: TokenStore; config: Readonly<InitConfig> } {
    if (!this.#store || !this.#config) {
      throw new PasswordlessError(
        'NOT_INITIALIZED',
        `${call}: call passwordless.init(store) before the first request.`,
      );
    }
    return { store: this.#store, config: this.#config };
  }

  #warnUnkeyedCodes(): void {
    if (this.#warnedUnkeyedCodes || !this.#config || this.#config.secret) return;
    const methods = [this.#defaultDelivery, ...this.#namedDeliveries.values()];
    if (!methods.some((m) => m?.config.kind === 'code')) return;
    this.#warnedUnkeyedCodes = true;
    console.warn(
      'express-passwordless: short codes (numberToken / tokenAlgorithm) are stored as plain SHA-256 hashes, which a ' +
        'leaked store reverses at once. Pass init(store, { secret }) with 32+ random bytes to store HMACs instead.',
    );
  }

  async #storeCall<T>(method: string, work: () => Promise<T>, deadline?: number): Promise<T> {
    const storeTimeout = this.#config?.storeTimeout ?? 2000;
    const timeout = deadline === undefined ? storeTimeout : Math.max(1, deadline - Date.now());
    try {
      return await withTimeout(
        work,
        timeout,
        () =>
          new PasswordlessError(
            'STORE_ERROR',
            `The token store's ${method}() took longer than storeTimeout (${storeTimeout} ms).`,
          ),
      );
    } catch (err) {
      throw wrapError('STORE_ERROR', `The token store's ${method}() failed; see \`cause\`.`, err);
    }
  }

  async #makeToken(config: Readonly<DeliveryConfig>): Promise<string> {
    if (config.numberMax !== undefined) return generateNumberToken(config.numberMax);
    if (!config.tokenAlgorithm) return generateToken();
    let token: unknown;
    try {
      token = await config.tokenAlgorithm();
    } catch (err) {
      throw new PasswordlessError(
        'TOKEN_GENERATION_FAILED',
        'tokenAlgorithm() threw or rejected; see `cause`.',
        {
          cause: err,
        },
      );
    }
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw new PasswordlessError(
        'TOKEN_GENERATION_FAILED',
        `tokenAlgorithm() must return a non-empty string of at most ${MAX_TOKEN_LENGTH} characters.`,
      );
    }
    return token;
  }

  #resolveUser(found: unknown, input: string): { uid: string; recipient: string } | undefined {
    if (found === null || found === undefined || found === '' || found === false) return undefined;
    let uid: unknown = found;
    let recipient: unknown = input;
    if (typeof found === 'object' && !Array.isArray(found)) {
      uid = (found as { uid?: unknown }).uid;
      recipient = (found as { recipient?: unknown }).recipient;
      if (typeof recipient !== 'string' || recipient.length === 0) {
        throw new PasswordlessError(
          'USER_LOOKUP_FAILED',
          `getUserId() returned { uid, recipient } with a recipient that is not a non-empty string (${describeUidResult(recipient)}).`,
        );
      }
    }
    if (typeof uid === 'number' && Number.isFinite(uid)) uid = String(uid);
    if (
      typeof uid !== 'string' ||
      uid.length === 0 ||
      uid.length > MAX_UID_LENGTH ||
      !isStorableString(uid)
    ) {
      throw new PasswordlessError(
        'USER_LOOKUP_FAILED',
        `getUserId() must return a uid (a non-empty string of at most 1024 characters without control characters, or a number), { uid, recipient }, or null; got ${describeUidResult(uid)}.`,
      );
    }
    return { uid, recipient: recipient as string };
  }

  #requestFailure(
    req: Request,
    res: Response,
    cfg: Readonly<RequestTokenConfig>,
    status: 400 | 401,
    json: boolean,
  ): Promise<void> | void {
    if (json) {
      return status === 401
        ? sendJsonError(res, 401, 'unknown_user', { 'WWW-Authenticate': 'Provide a valid user' })
        : sendJsonError(res, 400, 'invalid_request');
    }
    if (cfg.failureRedirect !== undefined) {
      if (cfg.failureFlash !== undefined) flashOf(req)?.('passwordless', cfg.failureFlash);
      return this.#redirect(req, res, cfg.failureRedirect, cfg.failureFlash !== undefined);
    }
    if (status === 401) {
      res.status(401).set('WWW-Authenticate', 'Provide a valid user').send('Unauthorized');
    } else {
      res.status(400).send('Bad Request');
    }
  }

  /**
   * Redirects; when this middleware changed the session (login, a flash), saves it first so that the browser's next
   * request already sees it (unless skipForceSessionSave). An unchanged session is not written: anonymous redirects
   * must not fill the session store.
   */
  async #redirect(req: Request, res: Response, target: string, sessionChanged: boolean): Promise<void> {
    const session = sessionOf(req);
    if (
      sessionChanged &&
      session &&
      !this.#config?.skipForceSessionSave &&
      typeof session.save === 'function'
    ) {
      await callSession(session, 'save');
    }
    res.redirect(target);
  }
}
