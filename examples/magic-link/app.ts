// The magic-link example as an app factory: server.ts listens, the tests import it and listen on a free port.
import type { ErrorRequestHandler, Request } from 'express';
import { isSafeRedirect, Passwordless } from 'express-passwordless';
import { type DevOutbox, devOutbox } from 'express-passwordless/delivery/outbox';
import { acceptLimiter, recipientLimiter, requestLimiter } from 'express-passwordless/rate-limit';
import { normalizeEmail } from '../shared/email.js';
import { takeFlashes } from '../shared/html.js';
import type { ExampleApp, ExampleSetup } from '../shared/server.js';
import { createWebApp, currentUser } from '../shared/web.js';
import { accountPage, errorPage, homePage, loginPage, notFoundPage, sentPage } from './views.js';

declare module 'express-session' {
  interface SessionData {
    /** The address the last login link went to, for the "check your inbox" page. */
    sentTo?: string;
  }
}

export interface MagicLinkAppOptions extends ExampleSetup {
  /** Signs the session cookie. Default: SESSION_SECRET, else a random one per process. */
  sessionSecret?: string | undefined;
  /** Where the login link is printed. Default: `console.log`. */
  log?: (line: string) => void;
}

export interface MagicLinkApp extends ExampleApp {
  outbox: DevOutbox;
}

export function createMagicLinkApp({
  appUrl,
  store,
  sessionSecret = process.env.SESSION_SECRET,
  log = console.log,
}: MagicLinkAppOptions): MagicLinkApp {
  // One instance per app (rather than the default export), so that tests can run several apps side by side.
  const passwordless = new Passwordless();
  passwordless.init(store);

  // Development delivery: the message goes to the outbox page, and the link is also printed to the console.
  // The link points at /auth, where acceptToken() runs; it is built from APP_URL, never from the request.
  const outbox = devOutbox({ baseUrl: `${appUrl}/auth` });
  passwordless.addDelivery(async (ctx) => {
    await outbox.send(ctx);
    const message = outbox.messages.find((m) => m.uid === ctx.uid);
    log(
      `Login link for ${ctx.recipient} (valid until ${ctx.expiresAt.toLocaleTimeString()}):\n  ${message?.link}`,
    );
  });

  const app = createWebApp({ appUrl, sessionSecret });
  app.use('/outbox', outbox.router());
  app.use(passwordless.sessionSupport());

  const context = (req: Request, current: string) => ({
    user: currentUser(req),
    flashes: takeFlashes(req),
    current,
  });

  app.get('/', (req, res) => {
    res.send(homePage(context(req, '/')));
  });

  app.get('/login', (req, res) => {
    if (currentUser(req)) return res.redirect('/account');
    // The page to return to after login (set by restricted() below); only same-site paths are kept.
    const origin =
      typeof req.query.origin === 'string' && isSafeRedirect(req.query.origin) ? req.query.origin : undefined;
    res.send(loginPage(context(req, '/login'), origin));
  });

  // Any well-formed address may log in; its uid is the address itself. A real app looks the user up here and
  // returns their id, or null for an unknown address (then failureRedirect with the flash). The link goes to the
  // normalised address, not to what was typed.
  // Abuse limits, per 15 minutes: 30 requests per IP, 5 per address (from any IPs), 60 link checks per IP.
  app.post(
    '/login',
    requestLimiter(),
    recipientLimiter(),
    passwordless.requestToken(
      (input) => {
        const email = normalizeEmail(input);
        return email ? { uid: email, recipient: email } : null;
      },
      {
        originField: 'origin',
        failureRedirect: '/login',
        failureFlash: 'Please enter a valid email address, like name@example.com.',
      },
    ),
    (req, res) => {
      req.session.sentTo = req.passwordless?.uidToAuth;
      res.redirect('/login/sent');
    },
  );

  app.get('/login/sent', (req, res) => {
    const email = req.session.sentTo;
    if (!email) return res.redirect('/login');
    res.send(sentPage(context(req, '/login'), email));
  });

  // The link in the message: a valid token logs in, then goes back to the page that was asked for (origin),
  // else home. A used, expired or wrong link falls through to the handler after it.
  app.get(
    '/auth',
    acceptLimiter(),
    passwordless.acceptToken({
      successRedirect: '/',
      enableOriginRedirect: true,
      successFlash: 'You are logged in.',
      failureFlash: 'That login link is invalid, expired or already used. Ask for a new one below.',
    }),
    (_req, res) => res.redirect('/login'),
  );

  app.get(
    '/account',
    passwordless.restricted({
      failureRedirect: '/login',
      originField: 'origin',
      failureFlash: 'Please log in to see that page.',
    }),
    (req, res) => {
      res.send(accountPage({ ...context(req, '/account'), user: currentUser(req)! }));
    },
  );

  app.post(
    '/logout',
    (req, _res, next) => {
      delete req.session.sentTo;
      next();
    },
    passwordless.logout({ successFlash: 'You are logged out.' }),
    (_req, res) => res.redirect('/'),
  );

  app.use((req, res) => {
    res.status(404).send(notFoundPage(context(req, '')));
  });
  const onError: ErrorRequestHandler = (err, req, res, _next) => {
    console.error(err);
    res
      .status(500)
      .send(errorPage({ user: currentUser(req), flashes: { errors: [], notices: [] }, current: '' }));
  };
  app.use(onError);

  return { app, outbox, close: () => {} };
}
