// The API example as an app factory: server.ts listens, the tests import it and listen on a free port.
//
// A JSON API for single-page and mobile apps, logging in by a 6-digit code sent by email:
//   POST /auth/request { user }          → 202 {}                     (the code goes to the outbox)
//   POST /auth/accept  { uid, token }    → 200 { uid, accessToken, tokenType, expiresIn, refreshToken }
//   POST /auth/refresh { refreshToken }  → 200 a new pair (the old refresh token is spent)
//   POST /auth/logout  { refreshToken? } → 204 (that login revoked)      POST /auth/logout-everywhere → 204
//   GET  /api/me   Authorization: Bearer → 200 { uid }
// Every failure is JSON { error }. The single-page client in public/ is served at /.
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import { Passwordless, type PasswordlessError } from 'express-passwordless';
import { type DevOutbox, devOutbox } from 'express-passwordless/delivery/outbox';
import { acceptLimiter, recipientLimiter, requestLimiter } from 'express-passwordless/rate-limit';
import { normalizeEmail } from '../shared/email.js';
import type { ExampleApp, ExampleSetup } from '../shared/server.js';

const PUBLIC = fileURLToPath(new URL('./public/', import.meta.url));
const STYLESHEET = fileURLToPath(new URL('../shared/style.css', import.meta.url));

/** Abuse limits; the defaults are the rate limiters' own (per 15 minutes) and init's failure budget. */
export interface ApiLimits {
  /** Code requests per client IP. Default: 30. */
  requestsPerIp?: number;
  /** Code requests per normalised address, from any IPs. Default: 5. */
  requestsPerAddress?: number;
  /** Code submissions per client IP. Default: 60. */
  acceptsPerIp?: number;
  /** Consecutive wrong codes per user before new codes are refused for an hour (`maxFailures`). Default: 100. */
  failuresPerUser?: number;
}

export interface ApiAppOptions extends ExampleSetup {
  /** Signs the access tokens (HS256), at least 32 bytes. Default: JWT_SECRET, else a random one per process. */
  jwtSecret?: string | undefined;
  /**
   * Codes and refresh tokens are stored as HMAC-SHA256(secret, …), so a leaked store reveals neither. At least 32
   * bytes. Default: PASSWORDLESS_SECRET, else a random one per process.
   */
  secret?: string | undefined;
  limits?: ApiLimits;
  /** Where the code is printed. Default: `console.log`. */
  log?: (line: string) => void;
  /** Where failures the app answers 5xx (a store down…) are reported. Default: `console.error`. */
  logError?: (line: string, err: unknown) => void;
}

export interface ApiApp extends ExampleApp {
  outbox: DevOutbox;
}

/** A JSON error, never cached. */
function sendError(res: express.Response, status: number, error: string): void {
  res.status(status).set('Cache-Control', 'no-store').json({ error });
}

// The page loads only its own script and stylesheet and talks only to this site; it cannot be framed. Nothing is
// cached: the API's answers carry tokens. The page may be opened by the outbox's link (?token=…&uid=…): no Referer.
const securityHeaders: RequestHandler = (_req, res, next) => {
  res.set({
    'Content-Security-Policy':
      "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; " +
      "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store',
  });
  next();
};

// The API takes JSON only. A POST without a body counts as `{}`; another content type (curl's -d without
// -H 'content-type: application/json') is 415.
const parseJson = express.json({ limit: '10kb' });
const jsonBody: RequestHandler = (req, res, next) => {
  if (req.method === 'POST' && req.headers['content-type'] !== undefined && !req.is('application/json')) {
    return sendError(res, 415, 'invalid_request');
  }
  parseJson(req, res, (err?: unknown) => {
    if (err) return next(err);
    req.body ??= {};
    next();
  });
};

export function createApiApp({
  appUrl,
  store,
  jwtSecret = process.env.JWT_SECRET,
  secret = process.env.PASSWORDLESS_SECRET,
  limits = {},
  log = console.log,
  logError = (line, err) => console.error(line, err),
}: ApiAppOptions): ApiApp {
  // One instance per app (rather than the default export), so that tests can run several apps side by side.
  const passwordless = new Passwordless();
  if (!jwtSecret) log('JWT_SECRET is not set: using a random key (access tokens end with the process).');
  if (!secret) {
    log(
      'PASSWORDLESS_SECRET is not set: using a random secret (codes and refresh tokens end with the process).',
    );
  }
  // Throws INVALID_STORE when the store cannot keep refresh tokens (server.ts says so clearly).
  passwordless.init(store, {
    secret: secret ?? randomBytes(32),
    jwt: { secret: jwtSecret ?? randomBytes(32) },
    ...(limits.failuresPerUser === undefined ? {} : { maxFailures: limits.failuresPerUser }),
    // Store or delivery failures that the library answers itself (503 temporarily_unavailable).
    onError: (err: PasswordlessError, req) => logError(`${req.method} ${req.path}: ${err.code}`, err),
  });

  // Development delivery: the code goes to the outbox (and the console). The outbox also builds a link, to this
  // page with ?token=…&uid=…: what a universal link / app link would open in a mobile app.
  const outbox = devOutbox({ baseUrl: `${appUrl}/` });
  passwordless.addDelivery(
    async (ctx) => {
      await outbox.send(ctx);
      log(
        `Login code for ${ctx.recipient}: ${ctx.token} (valid until ${ctx.expiresAt.toLocaleTimeString()})`,
      );
    },
    { numberToken: { max: 1_000_000 } },
  );

  const app = express();
  app.disable('x-powered-by');
  if (new URL(appUrl).protocol === 'https:') app.set('trust proxy', 1); // one TLS-terminating proxy in front
  app.use(securityHeaders);

  // The single-page client: index.html and app.js, and the examples' stylesheet.
  app.get('/assets/style.css', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=3600');
    res.sendFile(STYLESHEET);
  });
  app.use(express.static(PUBLIC, { index: 'index.html', cacheControl: false, redirect: false }));
  app.use('/outbox', outbox.router());

  // Over the limit: 429 { error: 'too_many_requests' } with Retry-After, like the library's own answers.
  const tooMany = { message: { error: 'too_many_requests' } };

  // Step 1. Any well-formed address is a user, and its uid is the address itself, normalised (trimmed,
  // lower-cased): `202 {}` tells the client no uid, so the client must be able to work it out from what was typed.
  // Anything else gets 401 unknown_user. A real app looks the user up here (and may return { uid, recipient }).
  app.post(
    '/auth/request',
    requestLimiter({ ...tooMany, limit: limits.requestsPerIp ?? 30 }),
    jsonBody,
    recipientLimiter({ ...tooMany, limit: limits.requestsPerAddress ?? 5 }),
    passwordless.requestToken(
      (input) => {
        const email = normalizeEmail(input);
        return email ? { uid: email, recipient: email } : null;
      },
      { json: true },
    ),
  );

  // Step 2. The code and its uid, in the body only: a code never travels in a URL to the API. The uid is
  // normalised like in step 1, so a client may send the address as the user typed it.
  app.post(
    '/auth/accept',
    jsonBody,
    (req, res, next) => {
      if (Object.keys(req.query).length > 0) return sendError(res, 400, 'invalid_request');
      const uid: unknown = req.body.uid;
      if (typeof uid === 'string') req.body.uid = normalizeEmail(uid) ?? uid;
      next();
    },
    acceptLimiter({ ...tooMany, limit: limits.acceptsPerIp ?? 60 }),
    passwordless.acceptToken({ json: true }),
  );

  // A new pair for a refresh token (each is good for one use). A spent one revokes its whole login.
  app.post('/auth/refresh', jsonBody, passwordless.refresh());

  // Revokes this login: the bearer token's, or the refresh token's in the body. An expired access token is
  // refused (401) by bearerSupport here: send the refresh token alone then (the client in public/ does).
  app.post(
    '/auth/logout',
    jsonBody,
    passwordless.bearerSupport(),
    passwordless.logout({ json: true }),
    (_req, res) => void res.status(204).end(),
  );

  // Revokes every login of the bearer's user: "log out on all devices".
  app.post(
    '/auth/logout-everywhere',
    jsonBody,
    passwordless.bearerSupport({ checkRevocation: true }),
    passwordless.restricted(),
    passwordless.logout({ json: true, everywhere: true }),
    (_req, res) => void res.status(204).end(),
  );

  // The protected API. checkRevocation: a logged-out or stolen-and-revoked login is refused at once, for one store
  // read per request; without it an access token works until it expires (15 minutes), without any store call.
  const api = express.Router();
  api.use(passwordless.bearerSupport({ checkRevocation: true }));
  api.get('/me', passwordless.restricted(), (req, res) => {
    res.json({ uid: (req as { user?: string }).user });
  });
  app.use('/api', api);

  app.use((_req, res) => sendError(res, 404, 'not_found'));
  // What reaches here: a malformed or too large JSON body (4xx from express.json), a store failure the library
  // passes on, or a bug.
  const onError: ErrorRequestHandler = (err, req, res, next) => {
    if (res.headersSent) return next(err);
    const status = typeof err?.status === 'number' ? err.status : 500;
    if (status >= 400 && status < 500) return sendError(res, status, 'invalid_request');
    logError(`${req.method} ${req.path} failed:`, err);
    const unavailable = ['STORE_ERROR', 'DELIVERY_FAILED'].includes(err?.code);
    sendError(res, unavailable ? 503 : 500, unavailable ? 'temporarily_unavailable' : 'server_error');
  };
  app.use(onError);

  return { app, outbox, close: () => {} };
}
