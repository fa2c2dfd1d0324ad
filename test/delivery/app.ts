import type { NextFunction, Request, Response } from 'express';
import express from 'express';
import {
  type DeliveryOptions,
  type GetUserId,
  type InitOptions,
  MemoryStore,
  Passwordless,
  type RequestTokenOptions,
  type SendToken,
  type TokenStore,
} from 'express-passwordless';
import session from 'express-session';

export interface DeliveryAppOptions {
  /** The delivery under test. */
  send: SendToken;
  delivery?: DeliveryOptions;
  /** Default: any address ending in @example.com is known, and its uid is the address. */
  getUserId?: GetUserId;
  /** Extra setup before the passwordless middleware (e.g. mounting a dev outbox router). */
  before?: (app: express.Express) => void;
  /** Extra `init` options (e.g. a short `deliveryTimeout`). */
  init?: InitOptions;
  /** Options of `requestToken` (e.g. `enumerationSafe`). */
  request?: RequestTokenOptions;
}

export interface DeliveryApp {
  app: express.Express;
  store: TokenStore;
  errors: unknown[];
}

/**
 * A small app wired like test/helpers/create-app.ts, but with the delivery under test instead of the recording
 * outbox: express-session, urlencoded bodies, sessionSupport, acceptToken on every path, POST /sendtoken, and a probe
 * that answers `{ user }`. `trust proxy` is on, so a forged X-Forwarded-Host would reach `req.hostname`.
 */
export function deliveryApp(options: DeliveryAppOptions): DeliveryApp {
  const app = express();
  app.set('trust proxy', true);
  const store = new MemoryStore();
  const passwordless = new Passwordless();
  // A secret, so short codes are stored as HMACs (and the core does not warn about unkeyed codes).
  passwordless.init(store, { secret: 'a test secret of at least thirty-two bytes', ...options.init });
  passwordless.addDelivery(options.send, options.delivery);
  const errors: unknown[] = [];
  app.use(session({ secret: 'test secret that is long enough', resave: false, saveUninitialized: false }));
  app.use(express.urlencoded({ extended: true }));
  options.before?.(app);
  app.use(passwordless.sessionSupport());
  app.use(passwordless.acceptToken());
  const known: GetUserId = (user) => (user.endsWith('@example.com') ? user : null);
  app.post(
    '/sendtoken',
    passwordless.requestToken(options.getUserId ?? known, options.request),
    (req, res) => {
      res.json({ sent: true, uidToAuth: req.passwordless?.uidToAuth ?? null });
    },
  );
  app.use((req: Request, res: Response) => {
    res.json({ user: (req as unknown as { user?: string }).user ?? null });
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    errors.push(err);
    res.status(500).json({ error: (err as { code?: string }).code ?? 'UNKNOWN' });
  });
  return { app, store, errors };
}

/** The path and query of `link`, for a supertest agent. */
export function pathOf(link: string): string {
  const url = new URL(link);
  return `${url.pathname}${url.search}`;
}
