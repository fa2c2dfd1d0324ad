// What both example apps share: security headers, the stylesheet, the form parser, the session and flash messages.
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import flash from 'connect-flash';
import express, { type Express, type RequestHandler } from 'express';
import session from 'express-session';

const STYLESHEET = fileURLToPath(new URL('./style.css', import.meta.url));

/** How long a login lasts: the session cookie's maxAge. */
export const SESSION_MAX_AGE = 7 * 24 * 60 * 60 * 1000; // 7 days

export interface WebAppOptions {
  /** The URL people open, e.g. `http://localhost:3000`; `https:` makes the session cookie `secure`. */
  appUrl: string;
  /** Signs the session cookie. Default: a random one per process (every restart logs everybody out). */
  sessionSecret?: string | undefined;
}

// Pages load nothing but their own stylesheet, post forms only to this site, and cannot be framed. HTML is not
// cached, so the back button after logging out does not show a logged-in page again.
const securityHeaders: RequestHandler = (_req, res, next) => {
  res.set({
    'Content-Security-Policy':
      "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'same-origin',
    'Cache-Control': 'no-store',
  });
  next();
};

/** An Express app with what every page needs; the caller adds passwordless and the routes. */
export function createWebApp({ appUrl, sessionSecret }: WebAppOptions): Express {
  const secure = new URL(appUrl).protocol === 'https:';
  const app = express();
  app.disable('x-powered-by');
  // Over https the app usually sits behind one TLS-terminating proxy: trust it, so that req.secure is true and
  // express-session sends the `secure` cookie.
  if (secure) app.set('trust proxy', 1);
  app.use(securityHeaders);
  app.get('/assets/style.css', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=3600');
    res.sendFile(STYLESHEET);
  });
  app.use(express.urlencoded({ extended: false, limit: '10kb' }));
  app.use(
    session({
      name: 'sid',
      secret: sessionSecret ?? randomBytes(32).toString('hex'),
      resave: false,
      saveUninitialized: false,
      // httpOnly: no script reads it; sameSite 'lax': other sites cannot post forms with it; secure over https.
      cookie: { httpOnly: true, sameSite: 'lax', secure, maxAge: SESSION_MAX_AGE },
    }),
  );
  app.use(flash());
  return app;
}

/** The uid of the logged-in user (`req.user`, set by passwordless), if any. */
export function currentUser(req: object): string | undefined {
  const user = (req as { user?: unknown }).user;
  return typeof user === 'string' && user.length > 0 ? user : undefined;
}
