import type { Request } from 'express';
import { type Options, rateLimit } from 'express-rate-limit';
import { PasswordlessError } from './errors.js';

/** Any express-rate-limit option (`limit`, `windowMs`, `store`, `handler`…); ours are only defaults. */
export type LimiterOptions = Partial<Options>;

/** Options of {@link recipientLimiter}: express-rate-limit's, plus the field that holds the recipient. */
export interface RecipientLimiterOptions extends LimiterOptions {
  /** Request field with the user's contact, as in `requestToken`. Default: `'user'`. */
  userField?: string;
}

/** Options of {@link acceptLimiter}: express-rate-limit's, plus the field that holds the token. */
export interface AcceptLimiterOptions extends LimiterOptions {
  /** Query/body field with the token, as in `acceptToken`; requests without it are not counted. Default: `'token'`. */
  tokenField?: string;
}

/** A rate-limiting middleware (express-rate-limit's), with its `resetKey` and `getKey`. */
export type PasswordlessLimiter = ReturnType<typeof rateLimit>;

const FIFTEEN_MINUTES = 15 * 60_000;

function defaults(name: string, limit: number): LimiterOptions {
  return {
    windowMs: FIFTEEN_MINUTES,
    limit,
    identifier: name,
    // RateLimit / RateLimit-Policy headers, and Retry-After on every 429.
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    statusCode: 429,
    // JSON clients (API mode: Accept: application/json) get the same body as the library's own JSON errors.
    message: (req: Request) =>
      req.accepts(['html', 'json']) === 'json' && /json/.test(req.headers.accept ?? '')
        ? { error: 'too_many_requests' }
        : 'Too many requests; please try again later.',
  };
}

function own(source: unknown, key: string): unknown {
  if (typeof source !== 'object' || source === null || !Object.hasOwn(source, key)) return undefined;
  return (source as Record<string, unknown>)[key];
}

function checkField(call: string, name: string, value: unknown): string {
  if (value === undefined) return name === 'userField' ? 'user' : 'token';
  if (typeof value !== 'string' || value.length === 0) {
    throw new PasswordlessError('BAD_OPTIONS', `${call}: \`${name}\` must be a non-empty string.`);
  }
  return value;
}

/**
 * The normalised recipient of a requestToken request: trimmed, lower-cased and NFKC-normalised, so that case, space and
 * compatibility-character variants of one address share one counter. Undefined when the field is not a usable string.
 */
export function normaliseRecipient(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const normalised = value.normalize('NFKC').trim().toLowerCase();
  return normalised.length === 0 || normalised.length > 1024 ? undefined : normalised;
}

/**
 * Limits `requestToken` per client IP: 30 requests per 15 minutes by default. The key is Express's `req.ip` (IPv6 by
 * /56 subnet), so the app's `trust proxy` setting decides whether `X-Forwarded-For` counts; with it off, a forged
 * header changes nothing. Mount it before `requestToken`.
 */
export function requestLimiter(options: LimiterOptions = {}): PasswordlessLimiter {
  return rateLimit({ ...defaults('passwordless-request', 30), ...options });
}

/**
 * Limits `requestToken` per recipient: 5 requests per 15 minutes for one normalised `user` value, whichever IPs they
 * come from, so that one address cannot be bombed with mail. Mount it after the body parser and before
 * `requestToken`. Requests without a usable user field are not counted (requestToken answers them 400/401).
 */
export function recipientLimiter(options: RecipientLimiterOptions = {}): PasswordlessLimiter {
  const { userField: rawField, ...rest } = options;
  const userField = checkField('recipientLimiter()', 'userField', rawField);
  const recipientOf = (req: Request) =>
    normaliseRecipient(
      own(req.body, userField) ?? (req.method === 'GET' ? own(req.query, userField) : undefined),
    );
  return rateLimit({
    ...defaults('passwordless-recipient', 5),
    keyGenerator: (req) => `recipient:${recipientOf(req)}`,
    skip: (req) => recipientOf(req) === undefined,
    ...rest,
  });
}

/**
 * Limits token acceptance per client IP: 60 submitted tokens per 15 minutes by default. Only requests that carry the
 * token field count (acceptToken usually runs on every page), and HEAD/OPTIONS never count, as they are never checked.
 */
export function acceptLimiter(options: AcceptLimiterOptions = {}): PasswordlessLimiter {
  const { tokenField: rawField, ...rest } = options;
  const tokenField = checkField('acceptLimiter()', 'tokenField', rawField);
  const carriesToken = (req: Request) =>
    req.method !== 'HEAD' &&
    req.method !== 'OPTIONS' &&
    (own(req.query, tokenField) !== undefined || own(req.body, tokenField) !== undefined);
  return rateLimit({ ...defaults('passwordless-accept', 60), skip: (req) => !carriesToken(req), ...rest });
}
