// The code-login example as an app factory: server.ts listens, the tests import it and listen on a free port.
//
//   1. POST /login (an address) → requestToken sends a 6-digit code; the uid it was sent for is kept in the session.
//   2. POST /login/code (the code only) → the session's uid is put beside it, and acceptToken checks the pair.
//   POST /guest makes a temporary account; verifying an address later (steps 1-2 while a guest) keeps it.
import { randomBytes } from 'node:crypto';
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import { Passwordless } from 'express-passwordless';
import { type DevOutbox, devOutbox } from 'express-passwordless/delivery/outbox';
import { acceptLimiter, recipientLimiter, requestLimiter } from 'express-passwordless/rate-limit';
import { normalizeEmail } from '../shared/email.js';
import { takeFlashes } from '../shared/html.js';
import type { ExampleApp, ExampleSetup } from '../shared/server.js';
import { createWebApp, currentUser } from '../shared/web.js';
import { Accounts } from './accounts.js';
import {
  accountPage,
  codePage,
  errorPage,
  homePage,
  loginPage,
  notFoundPage,
  type PageContext,
} from './views.js';

declare module 'express-session' {
  interface SessionData {
    /** Set by passwordless at login: the uid of the logged-in user. */
    passwordless?: string;
    /** Between the two steps: who the code was sent for. Never taken from the form, so it cannot be changed. */
    pendingLogin?: { uid: string; email: string; keepsGuest: boolean };
  }
}

export interface CodeLoginAppOptions extends ExampleSetup {
  /** Signs the session cookie. Default: SESSION_SECRET, else a random one per process. */
  sessionSecret?: string | undefined;
  /**
   * Codes are stored as HMAC-SHA256(secret, code), so a leaked store does not reveal them (a plain hash of a 6-digit
   * code is reversed at once). At least 32 bytes. Default: PASSWORDLESS_SECRET, else a random one per process.
   */
  secret?: string | undefined;
  /** Where the code is printed. Default: `console.log`. */
  log?: (line: string) => void;
  /** The clock of the accounts (guests expire after a day); tests move it forward. Default: `Date.now`. */
  now?: () => number;
}

export interface CodeLoginApp extends ExampleApp {
  outbox: DevOutbox;
  accounts: Accounts;
}

const WRONG_CODE =
  'That code is not right, or no longer valid: a code works for 10 minutes and 5 tries. Check it, or send a new code.';

export function createCodeLoginApp({
  appUrl,
  store,
  sessionSecret = process.env.SESSION_SECRET,
  secret = process.env.PASSWORDLESS_SECRET,
  log = console.log,
  now = Date.now,
}: CodeLoginAppOptions): CodeLoginApp {
  const accounts = new Accounts(now);
  const sweeper = setInterval(() => accounts.sweep(), 60 * 60 * 1000);
  sweeper.unref();

  const passwordless = new Passwordless();
  if (!secret) {
    log('PASSWORDLESS_SECRET is not set: using a random secret (pending codes end with the process).');
  }
  passwordless.init(store, { secret: secret ?? randomBytes(32) });

  // The outbox builds a link too (to /login/code, which fills the code in); the code is also printed.
  const outbox = devOutbox({ baseUrl: `${appUrl}/login/code`, tokenField: 'code' });
  passwordless.addDelivery(
    async (ctx) => {
      await outbox.send(ctx);
      log(
        `Login code for ${ctx.recipient}: ${ctx.token} (valid until ${ctx.expiresAt.toLocaleTimeString()})`,
      );
    },
    { numberToken: { max: 1_000_000 } },
  );

  const app = createWebApp({ appUrl, sessionSecret });
  app.use('/outbox', outbox.router());
  app.use(passwordless.sessionSupport());

  // A logged-in uid whose account is gone (a guest older than a day) is logged out, and told why.
  const logout = passwordless.logout();
  app.use((req, res, next) => {
    const uid = currentUser(req);
    if (uid === undefined || accounts.get(uid)) return next();
    delete req.session.pendingLogin;
    logout(req, res, (err?: unknown) => {
      if (err) return next(err);
      req.flash(
        'info',
        uid.startsWith('guest:')
          ? 'Your guest account was deleted: guest accounts last one day.'
          : 'Your account no longer exists.',
      );
      next();
    });
  });

  const context = (req: Request, current: string): PageContext => {
    const uid = currentUser(req);
    return { account: uid ? accounts.get(uid) : undefined, flashes: takeFlashes(req), current, now: now() };
  };
  const saveThenRedirect = (req: Request, res: Response, next: NextFunction, to: string) => {
    req.session.save((err) => (err ? next(err) : res.redirect(to)));
  };

  app.get('/', (req, res) => {
    res.send(homePage(context(req, '/')));
  });

  app.get('/login', (req, res) => {
    const uid = currentUser(req);
    if (uid && accounts.get(uid)?.guest === false) return res.redirect('/account');
    res.send(loginPage(context(req, '/login')));
  });

  // Step 1. The uid for an address: the account that verified it; else, for a logged-in guest, the guest's own uid
  // (so the code logs into the same account and keeps it); else the address itself (a new account). The code goes
  // to the normalised address (`recipient`). Nothing is linked yet: the address joins the guest's account only
  // once the right code is entered.
  // Abuse limits, per 15 minutes: 30 requests per IP and 5 per address (from any IPs); 60 codes per IP below.
  app.post(
    '/login',
    requestLimiter(),
    recipientLimiter(),
    passwordless.requestToken(
      (input, _delivery, req) => {
        const email = normalizeEmail(input);
        if (!email) return null;
        const owner = accounts.uidForEmail(email);
        if (owner) return { uid: owner, recipient: email };
        const uid = currentUser(req);
        const me = uid ? accounts.get(uid) : undefined;
        if (me?.guest) return { uid: me.uid, recipient: email };
        return { uid: email, recipient: email };
      },
      {
        failureRedirect: '/login',
        failureFlash: 'Please enter a valid email address, like name@example.com.',
      },
    ),
    (req, res, next) => {
      const uid = req.passwordless?.uidToAuth;
      const email = normalizeEmail(String(req.body.user));
      if (!uid || !email) return next(new Error('requestToken() passed on without a uid'));
      const me = currentUser(req);
      req.session.pendingLogin = { uid, email, keepsGuest: me === uid && accounts.get(uid)?.guest === true };
      saveThenRedirect(req, res, next, '/login/code');
    },
  );

  app.get('/login/code', (req, res) => {
    const pending = req.session.pendingLogin;
    if (!pending) {
      req.flash('error', 'Ask for a code first: enter your email address.');
      return res.redirect('/login');
    }
    // The link in the outbox message lands here: it fills the code in, for the session that asked for it only.
    const { code, uid } = req.query;
    const prefill =
      typeof code === 'string' && /^\d{6}$/.test(code) && uid === pending.uid ? code : undefined;
    res.set('Referrer-Policy', 'no-referrer');
    res.send(codePage(context(req, '/login'), pending, prefill));
  });

  // Step 2. The form posts the code only; the uid comes from the session. acceptToken reads the query before the
  // body, so a query string is refused here: nobody chooses the uid their code is checked against.
  const usePendingUid: RequestHandler = (req, res, next) => {
    const pending = req.session.pendingLogin;
    if (!pending) {
      req.flash('error', 'Your code request has ended. Enter your email address again.');
      return res.redirect('/login');
    }
    if (Object.keys(req.query).length > 0) return res.status(400).send('Bad Request');
    req.body = { code: req.body?.code, uid: pending.uid };
    // Whoever is logged in now (a guest keeping the account) counts as nobody until acceptToken says otherwise,
    // so that afterwards `req.user` tells whether this code logged in.
    delete (req as { user?: string }).user;
    next();
  };

  app.post(
    '/login/code',
    usePendingUid,
    acceptLimiter({ tokenField: 'code' }),
    passwordless.acceptToken({ allowPost: true, uidField: 'uid', tokenField: 'code' }),
    (req, res, next) => {
      const pending = req.session.pendingLogin!;
      const uid = currentUser(req);
      if (uid !== pending.uid) {
        req.flash('error', WRONG_CODE);
        return saveThenRedirect(req, res, next, '/login/code');
      }
      delete req.session.pendingLogin;
      const outcome = accounts.completeLogin(uid, pending.email);
      if (outcome === 'kept-guest')
        req.flash('info', `Your account is now permanent, linked to ${pending.email}.`);
      else if (outcome === 'created')
        req.flash('info', `Welcome! Your account for ${pending.email} is ready.`);
      else if (outcome === 'address-taken')
        req.flash('error', `${pending.email} already belongs to another account.`);
      else req.flash('info', 'You are logged in.');
      saveThenRedirect(req, res, next, '/account');
    },
  );

  // A temporary account, logged in at once. Passwordless logs users in only by token, so the app does it itself,
  // the way acceptToken does: a new session id (no session fixation), then the uid in `req.session.passwordless`.
  app.post('/guest', (req, res, next) => {
    if (currentUser(req)) return res.redirect('/account');
    const account = accounts.createGuest();
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.passwordless = account.uid;
      req.flash(
        'info',
        'You are browsing as a guest. This account lasts one day unless you verify your email.',
      );
      saveThenRedirect(req, res, next, '/account');
    });
  });

  app.get(
    '/account',
    passwordless.restricted({ failureRedirect: '/login', failureFlash: 'Please log in to see that page.' }),
    (req, res) => {
      const ctx = context(req, '/account');
      if (!ctx.account) return res.redirect('/login');
      res.send(accountPage({ ...ctx, account: ctx.account }));
    },
  );

  // Logging out of a guest account deletes it: nothing could log into it again.
  app.post(
    '/logout',
    (req, _res, next) => {
      const uid = currentUser(req);
      delete req.session.pendingLogin;
      if (uid && accounts.get(uid)?.guest) {
        accounts.delete(uid);
        req.flash('info', 'Your guest account was deleted.');
      }
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
    const uid = currentUser(req);
    res.status(500).send(
      errorPage({
        account: uid ? accounts.get(uid) : undefined,
        flashes: { errors: [], notices: [] },
        current: '',
        now: now(),
      }),
    );
  };
  app.use(onError);

  return { app, outbox, accounts, close: () => clearInterval(sweeper) };
}
