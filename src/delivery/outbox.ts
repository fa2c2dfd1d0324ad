import { createHash } from 'node:crypto';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { PasswordlessError } from '../errors.js';
import type { DeliveryContext, SendToken } from '../types.js';
import { isProduction } from './env.js';
import { escapeHtml } from './html.js';
import { buildLink, linkTarget } from './link.js';
import { defaultSubject, defaultText } from './message.js';
import { fail, readOptions, show } from './options.js';

/** One message the dev outbox received. */
export interface OutboxMessage {
  /** The recipient, as `getUserId` (or the user's input) gave it. */
  to: string;
  /** Name of the delivery method, or `null` for the default one. */
  delivery: string | null;
  /** The subject an email would have. */
  subject: string;
  /** The plain text an email would have. */
  text: string;
  /** The sign-in link, built from `baseUrl`. */
  link?: string;
  /** The code to type, for codes (`numberToken` / `tokenAlgorithm`). */
  code?: string;
  /** The uid the token logs in. */
  uid: string;
  /** When it was sent, as an ISO 8601 string. */
  sentAt: string;
}

/** Options of `devOutbox`. */
export interface DevOutboxOptions {
  /** Absolute http(s) URL of the route with `acceptToken()`, as for `emailDelivery`. Required. */
  baseUrl: string;
  /** How many messages to keep; older ones are dropped. Default: `50`. */
  limit?: number;
  /** Query field for the token; must equal `acceptToken`'s `tokenField`. Default: `'token'`. */
  tokenField?: string;
  /** Query field for the uid; must equal `acceptToken`'s `uidField`. Default: `'uid'`. */
  uidField?: string;
}

/** A development-only delivery that keeps messages in memory and shows them on a page. */
export interface DevOutbox {
  /** The `send` for `addDelivery`. */
  send: SendToken;
  /** The kept messages, newest first (a copy). */
  readonly messages: OutboxMessage[];
  /** Forget every kept message. */
  clear(): void;
  /**
   * An Express Router: `GET /` lists the messages as HTML, `GET /messages.json` as JSON, newest first. It answers only
   * requests whose `Host` is loopback or `baseUrl`'s host, and none once `NODE_ENV` is production.
   */
  router(): Router;
}

const CALL = 'devOutbox()';
const KEYS: readonly (keyof DevOutboxOptions)[] = ['baseUrl', 'limit', 'tokenField', 'uidField'];

const STYLE = [
  'body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:48rem;padding:0 1rem;color:#18181b}',
  '.warn{background:#fef3c7;padding:.5rem 1rem;border-radius:6px}',
  'article{border:1px solid #d4d4d8;border-radius:8px;padding:1rem;margin:1rem 0}',
  '.meta{color:#52525b;font-size:.875rem}',
  '.code{font:700 2rem/1.2 ui-monospace,monospace;letter-spacing:.3rem;margin:.5rem 0}',
  'a{word-break:break-all}',
  'pre{white-space:pre-wrap;background:#f4f4f5;padding:.5rem;border-radius:6px}',
].join('');

// The page runs no script and loads nothing: only this exact stylesheet may apply (CSP hash, no 'unsafe-inline').
const CSP = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`,
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

// The page lists live sign-in links: keep it out of caches and keep its URL out of Referer headers.
function secureHeaders(res: Response): void {
  res.set({
    'Cache-Control': 'no-store',
    'Referrer-Policy': 'no-referrer',
    'Content-Security-Policy': CSP,
    'X-Content-Type-Options': 'nosniff',
  });
}

function page(messages: readonly OutboxMessage[]): string {
  const items = messages.map((m) => {
    const code = m.code === undefined ? '' : `<p class="code">${escapeHtml(m.code)}</p>`;
    const link =
      m.link === undefined
        ? ''
        : `<p><a href="${escapeHtml(m.link)}" rel="noreferrer">${escapeHtml(m.link)}</a></p>`;
    return [
      '<article>',
      `<p class="meta">${escapeHtml(m.sentAt)} · to <b>${escapeHtml(m.to)}</b> · uid ${escapeHtml(m.uid)}${m.delivery === null ? '' : ` · ${escapeHtml(m.delivery)}`}</p>`,
      `<h2>${escapeHtml(m.subject)}</h2>`,
      code,
      link,
      `<pre>${escapeHtml(m.text)}</pre>`,
      '</article>',
    ].join('\n');
  });
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">',
    `<title>Dev outbox</title><style>${STYLE}</style></head>`,
    '<body>',
    '<h1>Dev outbox</h1>',
    '<p class="warn">Development only: these are live sign-in links. Newest first; reload for new messages.</p>',
    items.length === 0 ? '<p>No messages yet.</p>' : items.join('\n'),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

// The page lists live sign-in links: whenever NODE_ENV says production (trimmed, any case), creating, recording and
// serving are all refused, so an outbox made before NODE_ENV was set (dotenv loaded late) cannot start leaking.
function productionError(what: string): PasswordlessError {
  return new PasswordlessError(
    'BAD_OPTIONS',
    `${CALL}: ${what} refused because NODE_ENV is production: the dev outbox would list live sign-in links. Use emailDelivery() or smsDelivery(), and create the outbox only in development.`,
  );
}

const LOOPBACK_HOST = /^(?:localhost|[a-z0-9.-]+\.localhost|127(?:\.\d{1,3}){3}|\[::1\])$/;

// DNS rebinding: a page on attacker.example that re-resolves its name to 127.0.0.1 can read this router same-origin,
// but its requests still carry `Host: attacker.example`. The raw header is read, never X-Forwarded-Host (`trust
// proxy`), which such a page could set itself.
function addressedHere(req: Request, baseHost: string): boolean {
  const host = req.headers.host;
  if (typeof host !== 'string') return false;
  const name = host.replace(/:\d*$/, '').toLowerCase();
  return LOOPBACK_HOST.test(name) || name === baseHost;
}

/**
 * A delivery for development: keeps the last `limit` messages in memory and serves them from `router()`.
 * Throws `BAD_OPTIONS` when `NODE_ENV` is production (trimmed, any case) — when it is created and again on every send
 * and request — so its page can never list live links of real users.
 */
export function devOutbox(options: DevOutboxOptions): DevOutbox {
  if (isProduction()) throw productionError('devOutbox() is');
  const o = readOptions(CALL, options, KEYS);
  const target = linkTarget(CALL, o);
  const limit = o.limit ?? 50;
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    fail(CALL, `\`limit\` must be a whole number of at least 1; got ${show(limit)}.`);
  }
  let kept: OutboxMessage[] = [];

  const send: SendToken = (ctx: DeliveryContext) => {
    if (isProduction()) throw productionError('recording a message is');
    const link = buildLink(target, ctx.token, ctx.uid);
    const message: OutboxMessage = {
      to: ctx.recipient,
      delivery: ctx.delivery ?? null,
      subject: defaultSubject(ctx.kind),
      text: defaultText({
        link,
        token: ctx.token,
        kind: ctx.kind,
        expiresAt: ctx.expiresAt,
        recipient: ctx.recipient,
      }),
      link,
      ...(ctx.kind === 'code' ? { code: ctx.token } : {}),
      uid: ctx.uid,
      sentAt: new Date().toISOString(),
    };
    kept = [Object.freeze(message), ...kept].slice(0, limit);
  };

  // Checks every request before anything is shown: production, then the Host it was addressed to.
  function guard(req: Request, res: Response, next: NextFunction): void {
    if (isProduction()) {
      next(productionError('serving the outbox is'));
      return;
    }
    secureHeaders(res);
    if (!addressedHere(req, target.base.hostname)) {
      res
        .status(403)
        .type('text')
        .send(
          `devOutbox(): this page answers only requests addressed to localhost, 127.0.0.1, [::1] or ${target.base.hostname} (the baseUrl host); open it by one of those names.`,
        );
      return;
    }
    next();
  }

  return {
    send,
    get messages() {
      return [...kept];
    },
    clear() {
      kept = [];
    },
    router() {
      if (isProduction()) throw productionError('router() is');
      const router = express.Router();
      // On the two routes only: mounted at '/', the router must not touch the app's other requests.
      router.get('/', guard, (_req: Request, res: Response) => {
        res.type('html').send(page(kept));
      });
      router.get('/messages.json', guard, (_req: Request, res: Response) => {
        res.json(kept);
      });
      return router;
    },
  };
}
