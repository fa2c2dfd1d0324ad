import type { Request, Response } from 'express';
import type { ConfirmationPageContext } from './types.js';

/** Escapes text for HTML content and attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Shows enough of the account for the user to recognise it, and little to anyone else: a***@example.com, ab***. */
export function maskUid(uid: string): string {
  const at = uid.lastIndexOf('@');
  if (at > 0) return `${uid.slice(0, 1)}***${uid.slice(at)}`;
  return uid.length > 4 ? `${uid.slice(0, 2)}***` : '***';
}

const DEFAULT_STYLE =
  'body{font:16px/1.5 system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#18181b}' +
  'button{font:inherit;padding:.6rem 1.4rem;border:0;border-radius:6px;background:#1d4ed8;color:#fff;cursor:pointer}' +
  'button:focus{outline:3px solid #93c5fd;outline-offset:2px}';

/** The default confirmation page: no script, no auto-submit, no meta refresh, no external assets. */
export function defaultConfirmationPage(ctx: ConfirmationPageContext): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>Confirm sign-in</title><style>${DEFAULT_STYLE}</style></head><body><main><h1>Sign in</h1><p>Continue signing in as <strong>${ctx.maskedUid}</strong>?</p><form method="post" action="${ctx.action}">${ctx.hiddenInputs}<button type="submit">Sign in</button></form></main></body></html>`;
}

/**
 * Answers a GET that carries a token with a page whose button POSTs it back. Nothing is consumed or counted: a mail
 * scanner that opens every link sees this page and the token stays valid for the user.
 */
export function sendConfirmationPage(
  req: Request,
  res: Response,
  fields: { tokenField: string; uidField: string; token: string; uid: string },
  page: ((ctx: ConfirmationPageContext) => string) | undefined,
): void {
  const path = req.originalUrl.split('?', 1)[0] ?? '/';
  const hidden = (name: string, value: string) =>
    `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`;
  const html = (page ?? defaultConfirmationPage)({
    maskedUid: escapeHtml(maskUid(fields.uid)),
    action: escapeHtml(path),
    hiddenInputs: hidden(fields.tokenField, fields.token) + hidden(fields.uidField, fields.uid),
  });
  res
    .status(200)
    .set({
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Security-Policy':
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
      'X-Frame-Options': 'DENY',
    })
    .send(html);
}

/**
 * True when a POST comes from another site (login CSRF): by Sec-Fetch-Site where the browser sends it, else by
 * comparing Origin with the request's host. A request with neither header (not a browser form) is not refused.
 */
export function isCrossSite(req: Request): boolean {
  const site = req.get('sec-fetch-site');
  if (site !== undefined) return site !== 'same-origin';
  const origin = req.get('origin');
  if (origin === undefined) return false;
  try {
    return new URL(origin).host !== req.get('host');
  } catch {
    return true;
  }
}
