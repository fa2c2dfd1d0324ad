import { isProduction } from './env.js';
import { fail, hasControl, show } from './options.js';

/** Where a link points: the configured acceptance route and the query fields `acceptToken` reads. */
export interface LinkTarget {
  /** The parsed `baseUrl`: absolute http(s), no credentials, no fragment. */
  readonly base: URL;
  /** Query field for the token; must equal `acceptToken`'s `tokenField`. */
  readonly tokenField: string;
  /** Query field for the uid; must equal `acceptToken`'s `uidField`. */
  readonly uidField: string;
}

const warned = new Set<string>();

function fieldName(call: string, o: Record<string, unknown>, key: string, fallback: string): string {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || v.length === 0 || v.length > 100 || hasControl(v)) {
    fail(
      call,
      `\`${key}\` must be a short non-empty string naming acceptToken()'s \`${key}\`; got ${show(v)}.`,
    );
  }
  return v;
}

/**
 * Checks `baseUrl`, `tokenField` and `uidField` of a delivery helper's options at setup (`BAD_OPTIONS` otherwise).
 * The link's origin comes only from here, never from the request, so a forged `Host` or `X-Forwarded-Host` header
 * cannot point a sign-in link at another site (OWASP Forgot Password, "URL tokens"; better-auth#9990).
 */
export function linkTarget(call: string, o: Record<string, unknown>): LinkTarget {
  const raw = o.baseUrl;
  const hint = "an absolute http(s) URL of the route with acceptToken(), e.g. 'https://app.example/login'";
  if (typeof raw !== 'string' || raw.length === 0)
    fail(call, `\`baseUrl\` must be ${hint}; got ${show(raw)}.`);
  // The URL parser silently drops tabs and newlines and trims spaces; a value that needs that is a config mistake.
  if (hasControl(raw) || /\s/.test(raw))
    fail(call, '`baseUrl` must not contain spaces or control characters.');
  let base: URL;
  try {
    base = new URL(raw);
  } catch {
    fail(call, `\`baseUrl\` must be ${hint}; got ${show(raw)}.`);
  }
  if (base.protocol !== 'https:' && base.protocol !== 'http:') {
    fail(call, `\`baseUrl\` must use https: (or http: in development); got ${show(base.protocol)}.`);
  }
  // user:pass@ in a link would teach users to trust links with credentials in them, and leaks them to the mailbox.
  if (base.username !== '' || base.password !== '')
    fail(call, '`baseUrl` must not contain a user name or password.');
  // A fragment would swallow the query appended after it.
  if (raw.includes('#')) fail(call, '`baseUrl` must not contain a fragment (#…).');
  const tokenField = fieldName(call, o, 'tokenField', 'token');
  const uidField = fieldName(call, o, 'uidField', 'uid');
  if (tokenField === uidField) fail(call, '`tokenField` and `uidField` must differ.');
  for (const field of [tokenField, uidField]) {
    // A second value for the same field would make the acceptance route read an array or the wrong one.
    if (base.searchParams.has(field)) {
      fail(call, `\`baseUrl\` must not already contain the query field \`${field}\`; the link adds it.`);
    }
  }
  warnPlainHttp(call, base);
  return Object.freeze({ base, tokenField, uidField });
}

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;

// Works, but sends live sign-in links in clear text: warn once per helper and host when it looks like production.
function warnPlainHttp(call: string, base: URL): void {
  if (base.protocol !== 'http:' || !isProduction() || LOOPBACK.test(base.hostname)) return;
  const key = `${call} ${base.host}`;
  if (warned.has(key)) return;
  warned.add(key);
  console.warn(
    `${call}: \`baseUrl\` uses http: with NODE_ENV=production; sign-in links then travel unencrypted. Use https:.`,
  );
}

/**
 * The sign-in link: `baseUrl` with `tokenField=<token>&uidField=<uid>` appended to its query (after `&` when it
 * already has one). Token and uid are form-encoded by URLSearchParams, so no value can add a field or end the URL.
 */
export function buildLink(target: LinkTarget, token: string, uid: string): string {
  const extra = new URLSearchParams([
    [target.tokenField, token],
    [target.uidField, uid],
  ]).toString();
  const href = target.base.href;
  const separator = target.base.search.length > 1 ? '&' : href.endsWith('?') ? '' : '?';
  return `${href}${separator}${extra}`;
}
