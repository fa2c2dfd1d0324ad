import flash from 'connect-flash';
import cookieSession from 'cookie-session';
import type { Express, NextFunction, Request, Response } from 'express';
import express5 from 'express';
import {
  type AcceptTokenOptions,
  type DeliveryContext,
  type DeliveryOptions,
  type GetUserId,
  type InitOptions,
  MemoryStore,
  Passwordless,
  type RequestTokenOptions,
  type TokenStore,
} from 'express-passwordless';
import session from 'express-session';
import express4 from 'express4';

/** A delivery that records what it was asked to send. */
export interface Outbox {
  sent: DeliveryContext[];
  /** Runs after a message is recorded; make it throw, reject or hang to simulate a failing provider. */
  after?: (ctx: DeliveryContext) => unknown;
  send: (ctx: DeliveryContext) => Promise<void>;
  last: () => DeliveryContext;
}

export function outbox(): Outbox {
  const sent: DeliveryContext[] = [];
  const box: Outbox = {
    sent,
    send: async (ctx) => {
      sent.push(ctx);
      await box.after?.(ctx);
    },
    last: () => {
      const ctx = sent.at(-1);
      if (!ctx) throw new Error('nothing was sent');
      return ctx;
    },
  };
  return box;
}

export type ExpressMajor = 4 | 5;
export const EXPRESS_MAJORS: ExpressMajor[] = [5, 4];

export interface AppOptions {
  express?: ExpressMajor;
  /** 'express-session' (default), 'cookie-session' or 'none' (stateless). */
  session?: 'express-session' | 'cookie-session' | 'none';
  store?: TokenStore;
  init?: InitOptions;
  delivery?: DeliveryOptions;
  /** Named deliveries instead of one default (each records into the same outbox). */
  namedDeliveries?: Record<string, DeliveryOptions>;
  getUserId?: GetUserId;
  request?: RequestTokenOptions;
  accept?: AcceptTokenOptions;
  flash?: boolean;
  /** Extra middleware mounted after the session and before the passwordless routes. */
  before?: (app: Express, passwordless: Passwordless) => void;
}

export interface TestApp {
  app: Express;
  passwordless: Passwordless;
  store: TokenStore;
  outbox: Outbox;
  errors: unknown[];
}

/** Users known to the default getUserId: any address ending in @example.com; uid = the address. */
export const knownUser: GetUserId = (user) => (user.endsWith('@example.com') ? user : null);

/**
 * An Express app wired like the README: session, body parsers, sessionSupport, acceptToken on every path,
 * POST /sendtoken, GET /restricted, GET /logout, and probe routes that show the session and request state.
 */
export function createApp(options: AppOptions = {}): TestApp {
  const express = (options.express ?? 5) === 5 ? express5 : (express4 as unknown as typeof express5);
  const app = express();
  const store = options.store ?? new MemoryStore();
  const passwordless = new Passwordless();
  passwordless.init(store, options.init);
  const box = outbox();
  if (options.namedDeliveries) {
    for (const [name, opts] of Object.entries(options.namedDeliveries))
      passwordless.addDelivery(name, box.send, opts);
  } else {
    passwordless.addDelivery(box.send, options.delivery);
  }
  const errors: unknown[] = [];
  const sessionKind = options.session ?? 'express-session';
  if (sessionKind === 'express-session') {
    app.use(session({ secret: 'test secret that is long enough', resave: false, saveUninitialized: false }));
  } else if (sessionKind === 'cookie-session') {
    app.use(cookieSession({ name: 'sess', keys: ['test key that is long enough'] }));
  }
  if (options.flash) app.use(flash());
  app.use(express.urlencoded({ extended: true }));
  app.use(express.json());
  options.before?.(app, passwordless);
  if (sessionKind !== 'none') app.use(passwordless.sessionSupport());
  app.use(passwordless.acceptToken(options.accept));

  app.post(
    '/sendtoken',
    passwordless.requestToken(options.getUserId ?? knownUser, options.request),
    (req, res) => {
      res.json({ sent: true, uidToAuth: req.passwordless?.uidToAuth ?? null, flash: flashes(req) });
    },
  );
  app.get(
    '/sendtoken',
    passwordless.requestToken(options.getUserId ?? knownUser, options.request),
    (req, res) => {
      res.json({ sent: true, uidToAuth: req.passwordless?.uidToAuth ?? null });
    },
  );
  app.get('/restricted', passwordless.restricted(), (req, res) => {
    res.json({ user: (req as unknown as { user?: string }).user });
  });
  app.get('/logout', passwordless.logout(), (_req, res) => {
    res.json({ loggedOut: true });
  });
  // Probes: what the request and session hold after the middleware ran.
  app.use(probe);
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    errors.push(err);
    const code = (err as { code?: string }).code ?? 'UNKNOWN';
    res.status(500).json({ error: code });
  });
  return { app, passwordless, store, outbox: box, errors };
}

function flashes(req: Request): unknown {
  const r = req as unknown as { flash?: (type?: string) => unknown };
  return r.flash ? r.flash() : undefined;
}

function probe(req: Request, res: Response, _next: NextFunction): void {
  const s = (req as unknown as { session?: Record<string, unknown> }).session;
  res.json({
    user: (req as unknown as { user?: string }).user ?? null,
    session: s ? { passwordless: s.passwordless ?? null, cart: s.cart ?? null } : null,
    flash: flashes(req) ?? null,
  });
}

/** The query string of the magic link for `ctx`. */
export function linkQuery(ctx: DeliveryContext): string {
  return `token=${encodeURIComponent(ctx.token)}&uid=${encodeURIComponent(ctx.uid)}`;
}
