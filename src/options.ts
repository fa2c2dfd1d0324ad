import type { Request } from 'express';
import { type JwtConfig, validateJwtOptions } from './api-mode.js';
import { PasswordlessError } from './errors.js';
import { MAX_NUMBER_TOKEN } from './token.js';
import type {
  AcceptTokenOptions,
  BearerSupportOptions,
  ConfirmationPageContext,
  DeliveryOptions,
  InitOptions,
  LogoutOptions,
  RequestTokenOptions,
  RestrictedOptions,
} from './types.js';

// One entry per option: the compiler keeps these lists complete (a new option without an entry does not build).
type KeysOf<T> = Record<keyof Required<T>, true>;
const INIT_KEYS: KeysOf<InitOptions> = {
  userProperty: true,
  allowTokenReuse: true,
  skipForceSessionSave: true,
  storeTimeout: true,
  deliveryTimeout: true,
  secret: true,
  maxFailures: true,
  failureWindow: true,
  jwt: true,
  onError: true,
};
const DELIVERY_KEYS: KeysOf<DeliveryOptions> = {
  ttl: true,
  tokenAlgorithm: true,
  numberToken: true,
  maxAttempts: true,
};
const REQUEST_KEYS: KeysOf<RequestTokenOptions> = {
  failureRedirect: true,
  failureFlash: true,
  successFlash: true,
  userField: true,
  deliveryField: true,
  originField: true,
  allowGet: true,
  enumerationSafe: true,
  bindToDevice: true,
  onBackgroundError: true,
  json: true,
};
const ACCEPT_KEYS: KeysOf<AcceptTokenOptions> = {
  successRedirect: true,
  tokenField: true,
  uidField: true,
  allowPost: true,
  failureFlash: true,
  successFlash: true,
  enableOriginRedirect: true,
  requireConfirmation: true,
  confirmationPage: true,
  json: true,
};
const RESTRICTED_KEYS: KeysOf<RestrictedOptions> = {
  failureRedirect: true,
  failureFlash: true,
  originField: true,
};
const LOGOUT_KEYS: KeysOf<LogoutOptions> = { successFlash: true, everywhere: true, json: true };
const BEARER_KEYS: KeysOf<BearerSupportOptions> = { checkRevocation: true };

/** Throws the setup-time error `BAD_OPTIONS`, naming the call. */
export function fail(call: string, message: string): never {
  throw new PasswordlessError('BAD_OPTIONS', `${call}: ${message}`);
}

/** A short description of a received value for error messages (never the whole of a long string). */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** Copies the defined options (undefined means absent), refusing non-objects and unknown keys. */
export function readOptions(
  call: string,
  options: unknown,
  known: Record<string, true> | readonly string[],
): Record<string, unknown> {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options))
    fail(call, `options must be an object; got ${show(options)}.`);
  const names: readonly string[] = Array.isArray(known) ? known : Object.keys(known);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (!names.includes(key)) {
      const near = names.find((k) => distance(k.toLowerCase(), key.toLowerCase()) <= 2);
      fail(call, `unknown option \`${key}\`${near ? `; did you mean \`${near}\`?` : '.'}`);
    }
    if (value !== undefined) out[key] = value;
  }
  return out;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** True when `value` holds a control character (CR, LF, NUL, C1, or a Unicode line/paragraph separator). */
export function hasControl(value: string): boolean {
  return CONTROL.test(value);
}

function str(call: string, o: Record<string, unknown>, key: string): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0)
    fail(call, `\`${key}\` must be a non-empty string; got ${show(v)}.`);
  return v;
}

// A redirect target set by the app; refuse CR/LF and other controls so a typo cannot split the Location header.
function url(call: string, o: Record<string, unknown>, key: string): string | undefined {
  const v = str(call, o, key);
  if (v !== undefined && hasControl(v)) fail(call, `\`${key}\` must not contain control characters.`);
  return v;
}

/** An optional function option. */
export function optionalFunction<F>(call: string, o: Record<string, unknown>, key: string): F | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'function') fail(call, `\`${key}\` must be a function; got ${show(v)}.`);
  return v as F;
}

function count(call: string, o: Record<string, unknown>, key: string, fallback: number): number {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    fail(call, `\`${key}\` must be a whole number of at least 1; got ${show(v)}.`);
  }
  return v;
}

/** `json`: true or false forces it, undefined negotiates. */
function tristate(call: string, o: Record<string, unknown>, key: string): boolean | undefined {
  const v = o[key];
  if (v !== undefined && typeof v !== 'boolean')
    fail(call, `\`${key}\` must be true or false; got ${show(v)}.`);
  return v as boolean | undefined;
}

function bool(call: string, o: Record<string, unknown>, key: string): boolean {
  const v = o[key];
  if (v === undefined) return false;
  if (typeof v !== 'boolean') fail(call, `\`${key}\` must be true or false; got ${show(v)}.`);
  return v;
}

/** Longest timer Node runs as asked; a longer one fires after 1 ms. */
const MAX_TIMER = 2 ** 31 - 1;
/** Longest token lifetime accepted: one year. */
const MAX_TTL = 365 * 24 * 3600_000;

function ms(
  call: string,
  o: Record<string, unknown>,
  key: string,
  fallback: number,
  max = MAX_TIMER,
): number {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v > max) {
    fail(call, `\`${key}\` must be a whole number of milliseconds from 1 to ${max}; got ${show(v)}.`);
  }
  return v;
}

// Names Express, Node or JavaScript already define on a request: as userProperty they would make every request look
// logged in (req.path, req.ip…) or break the request.
const RESERVED_REQUEST_PROPERTIES = new Set([
  'app',
  'baseUrl',
  'body',
  'cookies',
  'flash',
  'fresh',
  'host',
  'hostname',
  'ip',
  'ips',
  'next',
  'originalUrl',
  'params',
  'passwordless',
  'path',
  'protocol',
  'query',
  'res',
  'route',
  'secure',
  'session',
  'sessionID',
  'sessionStore',
  'signedCookies',
  'stale',
  'subdomains',
  'xhr',
  'accepts',
  'acceptsCharsets',
  'acceptsEncodings',
  'acceptsLanguages',
  'get',
  'header',
  'is',
  'param',
  'range',
  'socket',
  'connection',
  'headers',
  'headersDistinct',
  'rawHeaders',
  'trailers',
  'trailersDistinct',
  'rawTrailers',
  'method',
  'url',
  'statusCode',
  'statusMessage',
  'httpVersion',
  'httpVersionMajor',
  'httpVersionMinor',
  'complete',
  'aborted',
  'client',
  'destroyed',
  'readable',
]);

function userPropertyName(call: string, o: Record<string, unknown>): string {
  const name = str(call, o, 'userProperty') ?? 'user';
  if (RESERVED_REQUEST_PROPERTIES.has(name) || name in Object.prototype || name.startsWith('_')) {
    fail(
      call,
      `\`userProperty\` "${name}" is a property requests already have (or a private name starting with _); choose another, e.g. 'user' or 'account'.`,
    );
  }
  return name;
}

/** Resolved options of `init`. */
export interface InitConfig {
  userProperty: string;
  allowTokenReuse: boolean;
  skipForceSessionSave: boolean;
  storeTimeout: number;
  deliveryTimeout: number;
  secret: Buffer | undefined;
  budget: { max: number; window: number };
  jwt: Readonly<JwtConfig> | undefined;
  onError: ((err: PasswordlessError, req: Request) => void) | undefined;
}

export function validateInitOptions(options: unknown): Readonly<InitConfig> {
  const call = 'init()';
  const o = readOptions(call, options, INIT_KEYS);
  let secret: Buffer | undefined;
  if (o.secret !== undefined) {
    if (typeof o.secret !== 'string' && !Buffer.isBuffer(o.secret)) {
      fail(call, `\`secret\` must be a string or a Buffer; got ${show(o.secret)}.`);
    }
    // A short secret makes HMAC of short codes as easy to reverse as a plain hash.
    secret = Buffer.from(o.secret as string | Buffer);
    if (secret.length < 32) {
      fail(
        call,
        `\`secret\` must be at least 32 bytes; got ${secret.length}. Generate one with crypto.randomBytes(32).`,
      );
    }
  }
  return Object.freeze({
    userProperty: userPropertyName(call, o),
    allowTokenReuse: bool(call, o, 'allowTokenReuse'),
    skipForceSessionSave: bool(call, o, 'skipForceSessionSave'),
    storeTimeout: ms(call, o, 'storeTimeout', 2000),
    deliveryTimeout: ms(call, o, 'deliveryTimeout', 10_000),
    secret,
    budget: Object.freeze({
      max: count(call, o, 'maxFailures', 100),
      window: ms(call, o, 'failureWindow', 3_600_000, MAX_TTL),
    }),
    jwt: o.jwt === undefined ? undefined : validateJwtOptions(call, o.jwt),
    onError: optionalFunction<InitConfig['onError']>(call, o, 'onError'),
  });
}

/** Resolved options of one delivery method. */
export interface DeliveryConfig {
  ttl: number;
  tokenAlgorithm: (() => string | Promise<string>) | undefined;
  numberMax: number | undefined;
  maxAttempts: number | undefined;
  kind: 'link' | 'code';
}

export function validateDeliveryOptions(options: unknown): Readonly<DeliveryConfig> {
  const call = 'addDelivery()';
  const o = readOptions(call, options, DELIVERY_KEYS);
  if (o.tokenAlgorithm !== undefined && typeof o.tokenAlgorithm !== 'function') {
    fail(call, `\`tokenAlgorithm\` must be a function returning a string; got ${show(o.tokenAlgorithm)}.`);
  }
  let numberMax: number | undefined;
  if (o.numberToken !== undefined) {
    const nt = o.numberToken as { max?: unknown };
    if (typeof nt !== 'object' || nt === null || Array.isArray(nt)) {
      fail(call, `\`numberToken\` must be { max: number }; got ${show(o.numberToken)}.`);
    }
    const extra = Object.keys(nt).filter((k) => k !== 'max');
    if (extra.length > 0) fail(call, `unknown option \`numberToken.${extra[0]}\`.`);
    const max = nt.max;
    if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 10 || max > MAX_NUMBER_TOKEN) {
      fail(call, `\`numberToken.max\` must be a whole number from 10 to 2^48 - 1; got ${show(max)}.`);
    }
    numberMax = max;
  }
  if (o.tokenAlgorithm !== undefined && numberMax !== undefined) {
    fail(call, '`tokenAlgorithm` and `numberToken` cannot be used together; choose one.');
  }
  const kind = o.tokenAlgorithm !== undefined || numberMax !== undefined ? 'code' : 'link';
  const ttl = ms(call, o, 'ttl', kind === 'code' ? 10 * 60_000 : 15 * 60_000, MAX_TTL);
  if (o.ttl !== undefined && ttl < 1000) {
    fail(
      call,
      `\`ttl\` is in milliseconds and ${ttl} ms is too short for anyone to use the token; got ${ttl}.`,
    );
  }
  let maxAttempts: number | undefined = kind === 'code' ? 5 : undefined;
  if (o.maxAttempts !== undefined) {
    if (typeof o.maxAttempts !== 'number' || !Number.isSafeInteger(o.maxAttempts) || o.maxAttempts < 1) {
      fail(call, `\`maxAttempts\` must be a whole number of at least 1; got ${show(o.maxAttempts)}.`);
    }
    maxAttempts = o.maxAttempts;
  }
  return Object.freeze({
    ttl,
    tokenAlgorithm: o.tokenAlgorithm as DeliveryConfig['tokenAlgorithm'],
    numberMax,
    maxAttempts,
    kind,
  });
}

/** Resolved options of `requestToken`. */
export interface RequestTokenConfig {
  failureRedirect: string | undefined;
  failureFlash: string | undefined;
  successFlash: string | undefined;
  userField: string;
  deliveryField: string;
  originField: string | undefined;
  allowGet: boolean;
  enumerationSafe: boolean;
  bindToDevice: boolean;
  onBackgroundError: ((err: PasswordlessError, req: Request) => void) | undefined;
  json: boolean | undefined;
}

export function validateRequestTokenOptions(options: unknown): Readonly<RequestTokenConfig> {
  const call = 'requestToken()';
  const o = readOptions(call, options, REQUEST_KEYS);
  const config = {
    failureRedirect: url(call, o, 'failureRedirect'),
    failureFlash: str(call, o, 'failureFlash'),
    successFlash: str(call, o, 'successFlash'),
    userField: str(call, o, 'userField') ?? 'user',
    deliveryField: str(call, o, 'deliveryField') ?? 'delivery',
    originField: str(call, o, 'originField'),
    allowGet: bool(call, o, 'allowGet'),
    enumerationSafe: bool(call, o, 'enumerationSafe'),
    bindToDevice: bool(call, o, 'bindToDevice'),
    onBackgroundError: optionalFunction<RequestTokenConfig['onBackgroundError']>(
      call,
      o,
      'onBackgroundError',
    ),
    json: tristate(call, o, 'json'),
  };
  if (config.failureFlash !== undefined && config.failureRedirect === undefined) {
    fail(call, '`failureFlash` needs `failureRedirect` (a flash is shown on the page redirected to).');
  }
  return Object.freeze(config);
}

/** Resolved options of `acceptToken`. */
export interface AcceptTokenConfig {
  successRedirect: string | undefined;
  tokenField: string;
  uidField: string;
  allowPost: boolean;
  failureFlash: string | undefined;
  successFlash: string | undefined;
  enableOriginRedirect: boolean;
  requireConfirmation: boolean;
  confirmationPage: ((ctx: ConfirmationPageContext) => string) | undefined;
  json: boolean | undefined;
}

export function validateAcceptTokenOptions(options: unknown): Readonly<AcceptTokenConfig> {
  const call = 'acceptToken()';
  const o = readOptions(call, options, ACCEPT_KEYS);
  const config = {
    successRedirect: url(call, o, 'successRedirect'),
    tokenField: str(call, o, 'tokenField') ?? 'token',
    uidField: str(call, o, 'uidField') ?? 'uid',
    allowPost: bool(call, o, 'allowPost'),
    failureFlash: str(call, o, 'failureFlash'),
    successFlash: str(call, o, 'successFlash'),
    enableOriginRedirect: bool(call, o, 'enableOriginRedirect'),
    requireConfirmation: bool(call, o, 'requireConfirmation'),
    confirmationPage: optionalFunction<AcceptTokenConfig['confirmationPage']>(call, o, 'confirmationPage'),
    json: tristate(call, o, 'json'),
  };
  if (config.confirmationPage !== undefined && !config.requireConfirmation) {
    fail(call, '`confirmationPage` needs `requireConfirmation: true`.');
  }
  if (config.tokenField === config.uidField) fail(call, '`tokenField` and `uidField` must differ.');
  return Object.freeze(config);
}

/** Resolved options of `restricted`. */
export interface RestrictedConfig {
  failureRedirect: string | undefined;
  failureFlash: string | undefined;
  originField: string | undefined;
}

export function validateRestrictedOptions(options: unknown): Readonly<RestrictedConfig> {
  const call = 'restricted()';
  const o = readOptions(call, options, RESTRICTED_KEYS);
  const config = {
    failureRedirect: url(call, o, 'failureRedirect'),
    failureFlash: str(call, o, 'failureFlash'),
    originField: str(call, o, 'originField'),
  };
  if (config.failureRedirect === undefined) {
    if (config.failureFlash !== undefined)
      fail(call, '`failureFlash` cannot be used without `failureRedirect`.');
    if (config.originField !== undefined)
      fail(call, '`originField` cannot be used without `failureRedirect`.');
  }
  return Object.freeze(config);
}

/** Resolved options of `logout`. */
export interface LogoutConfig {
  successFlash: string | undefined;
  everywhere: boolean;
  json: boolean | undefined;
}

export function validateLogoutOptions(options: unknown): Readonly<LogoutConfig> {
  const call = 'logout()';
  const o = readOptions(call, options, LOGOUT_KEYS);
  return Object.freeze({
    successFlash: str(call, o, 'successFlash'),
    everywhere: bool(call, o, 'everywhere'),
    json: tristate(call, o, 'json'),
  });
}

/** Resolved options of `bearerSupport`. */
export interface BearerConfig {
  checkRevocation: boolean;
}

export function validateBearerOptions(options: unknown): Readonly<BearerConfig> {
  const call = 'bearerSupport()';
  const o = readOptions(call, options, BEARER_KEYS);
  return Object.freeze({ checkRevocation: bool(call, o, 'checkRevocation') });
}
