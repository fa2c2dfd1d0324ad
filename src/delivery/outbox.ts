import { createHash } from 'node:crypto';
import express, { type Request, type Response, type Router } from 'express';
import type { DeliveryContext, SendToken } from '../types.js';
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
  /** An Express Router: `GET /` lists the messages as HTML, `GET /messages.json` as JSON, newest first. */
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

/**
 * A delivery for development: keeps the last `limit` messages in memory and serves them from `router()`.
 * Throws `BAD_OPTIONS` when `NODE_ENV` is `production`, so its page can never list live links of real users.
 */
export function devOutbox(options: DevOutboxOptions): DevOutbox {
  if (process.env.NODE_ENV === 'production') {
    fail(
      CALL,
      'the dev outbox shows live sign-in links and is refused when NODE_ENV=production; use emailDelivery() or smsDelivery().',
    );
  }
  const o = readOptions(CALL, options, KEYS);
  const target = linkTarget(CALL, o);
  const limit = o.limit ?? 50;
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    fail(CALL, `\`limit\` must be a whole number of at least 1; got ${show(limit)}.`);
  }
  let kept: OutboxMessage[] = [];

  const send: SendToken = (ctx: DeliveryContext) => {
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

  return {
    send,
    get messages() {
      return [...kept];
    },
    clear() {
      kept = [];
    },
    router() {
      const router = express.Router();
      router.get('/', (_req: Request, res: Response) => {
        secureHeaders(res);
        res.type('html').send(page(kept));
      });
      router.get('/messages.json', (_req: Request, res: Response) => {
        secureHeaders(res);
        res.json(kept);
      });
      return router;
    },
  };
}
