import type { Request } from 'express';
import { PasswordlessError } from '../errors.js';
import type { DeliveryContext, SendToken } from '../types.js';
import { buildLink, type LinkTarget, linkTarget } from './link.js';
import { fail, optionalFunction, readOptions, show } from './options.js';

/** What a custom `body` function receives to compose one SMS. */
export interface SmsMessageContext {
  /** The plain token or code. */
  token: string;
  /** The uid the token logs in. */
  uid: string;
  /** The E.164 number the message goes to. */
  recipient: string;
  /** The sign-in link built from `baseUrl`, or `undefined` when no `baseUrl` is configured. */
  link: string | undefined;
  /** The instant the token stops working. */
  expiresAt: Date;
  /** The request that asked for the token. */
  req: Request;
  /** `'code'` when the token is meant to be typed, `'link'` for the default token. */
  kind: 'link' | 'code';
  /** Name of the delivery method, or `undefined` for the default one. */
  delivery: string | undefined;
}

/** Options of `smsDelivery`. */
export interface SmsDeliveryOptions {
  /** Your provider call: sends `body` to the E.164 number `to`; a throw or rejection is `DELIVERY_FAILED`. Required. */
  send: (to: string, body: string) => void | Promise<void>;
  /** Absolute http(s) URL of the route with `acceptToken()`; when set, the message also carries a link. Default: none. */
  baseUrl?: string;
  /** Makes the message text. Default: the code (and the link when it fits), in one SMS segment where possible. */
  body?: (ctx: SmsMessageContext) => string | Promise<string>;
  /** Query field for the token; must equal `acceptToken`'s `tokenField`. Default: `'token'`. */
  tokenField?: string;
  /** Query field for the uid; must equal `acceptToken`'s `uidField`. Default: `'uid'`. */
  uidField?: string;
}

/** How a text is encoded and split when sent as SMS. */
export interface SmsSegments {
  /** `'GSM-7'` when every character is in the GSM 03.38 alphabet (with its extension table), else `'UCS-2'`. */
  encoding: 'GSM-7' | 'UCS-2';
  /** Length in that encoding: septets (extension characters count 2) or UTF-16 code units. */
  units: number;
  /** Number of SMS parts: one up to 160 septets / 70 UCS-2 units, else parts of at most 153 / 67, no character split. */
  segments: number;
}

const CALL = 'smsDelivery()';
const KEYS: readonly (keyof SmsDeliveryOptions)[] = ['send', 'baseUrl', 'body', 'tokenField', 'uidField'];

// E.164: '+', a country code not starting with 0, at most 15 digits in all. Nothing else, not even spaces: the number
// that is checked is exactly the number the provider receives.
const E164 = /^\+[1-9]\d{1,14}$/;

const GSM_BASIC = new Set(
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà',
);
const GSM_EXTENSION = new Set('\f^{}\\[~]|€');

/** How many parts of `perPart` units hold characters of these sizes, none split across two parts. */
function parts(sizes: readonly number[], perPart: number): number {
  let count = 1;
  let used = 0;
  for (const size of sizes) {
    if (used + size > perPart) {
      count += 1;
      used = 0;
    }
    used += size;
  }
  return count;
}

/**
 * How `text` would be encoded and into how many SMS parts it would be split. A multi-part message never splits a
 * GSM-7 extension character (escape + character, 2 septets) or a UTF-16 surrogate pair (an emoji, 2 units) across two
 * parts, so such a character at a part boundary moves to the next part, as phones and gateways do.
 */
export function smsSegments(text: string): SmsSegments {
  const chars = [...text];
  const septets: number[] = [];
  for (const char of chars) {
    if (GSM_BASIC.has(char)) septets.push(1);
    else if (GSM_EXTENSION.has(char)) septets.push(2);
    else {
      const units = text.length;
      const sizes = chars.map((c) => c.length);
      return { encoding: 'UCS-2', units, segments: units <= 70 ? 1 : parts(sizes, 67) };
    }
  }
  const units = septets.reduce((sum, n) => sum + n, 0);
  return { encoding: 'GSM-7', units, segments: units <= 160 ? 1 : parts(septets, 153) };
}

function validFor(ms: number): string {
  return `valid ${Math.max(1, Math.round(ms / 60_000))} min`;
}

/**
 * The default text: the most helpful variant that fits one SMS segment (160 GSM-7 characters, or 70 when the code
 * needs UCS-2), falling back to the code alone. With an https `baseUrl`, a code message ends in the origin-bound line
 * `@host #code` that browsers use to offer the code for autofill on that site only.
 */
export function defaultSmsBody(m: Pick<SmsMessageContext, 'token' | 'link' | 'kind' | 'expiresAt'>): string {
  const valid = validFor(m.expiresAt.getTime() - Date.now());
  const candidates: string[] = [];
  if (m.kind === 'link' && m.link !== undefined) {
    candidates.push(`Your sign-in link (${valid}): ${m.link}`, `Sign in: ${m.link}`);
  } else {
    const head = `Your sign-in code: ${m.token}`;
    const url = m.link === undefined ? undefined : new URL(m.link);
    const bound =
      url?.protocol === 'https:' && /^[A-Za-z0-9]+$/.test(m.token) ? `\n\n@${url.hostname} #${m.token}` : '';
    if (m.link !== undefined) candidates.push(`${head} (${valid})\nOr open ${m.link}${bound}`);
    if (bound) candidates.push(`${head} (${valid})${bound}`);
    candidates.push(`${head} (${valid})`, head);
  }
  return candidates.find((text) => smsSegments(text).segments === 1) ?? candidates.at(-1)!;
}

function refuse(message: string): never {
  throw new PasswordlessError('DELIVERY_FAILED', `${CALL}: ${message}; nothing was sent.`);
}

/**
 * A `send` for `addDelivery` that texts the code (and a link when `baseUrl` is set) through your provider's `send`.
 * Only E.164 numbers are accepted. Options are checked at once and throw `BAD_OPTIONS`.
 */
export function smsDelivery(options: SmsDeliveryOptions): SendToken {
  const o = readOptions(CALL, options, KEYS);
  if (typeof o.send !== 'function') {
    fail(
      CALL,
      `\`send\` must be a function (to, body) => Promise<void> calling your SMS provider; got ${show(o.send)}.`,
    );
  }
  const sendSms = o.send as SmsDeliveryOptions['send'];
  const target: LinkTarget | undefined = o.baseUrl === undefined ? undefined : linkTarget(CALL, o);
  if (!target && (o.tokenField !== undefined || o.uidField !== undefined)) {
    fail(CALL, '`tokenField` and `uidField` are only used with `baseUrl`.');
  }
  const bodyOf = optionalFunction<NonNullable<SmsDeliveryOptions['body']>>(CALL, o, 'body');

  return async function sendSmsToken(ctx: DeliveryContext): Promise<void> {
    // Checked before the provider is called: a number is one destination, never a list or a short code to abuse.
    if (typeof ctx.recipient !== 'string' || !E164.test(ctx.recipient)) {
      refuse(
        "the recipient must be an E.164 phone number such as '+14155550123' (no spaces); return { uid, recipient } from getUserId() with the normalised number",
      );
    }
    const message: SmsMessageContext = {
      token: ctx.token,
      uid: ctx.uid,
      recipient: ctx.recipient,
      link: target ? buildLink(target, ctx.token, ctx.uid) : undefined,
      expiresAt: ctx.expiresAt,
      req: ctx.req,
      kind: ctx.kind,
      delivery: ctx.delivery,
    };
    const text = bodyOf ? await bodyOf(message) : defaultSmsBody(message);
    if (typeof text !== 'string' || text.length === 0)
      refuse(`\`body\` must return a non-empty string; got ${show(text)}`);
    await sendSms(ctx.recipient, text);
  };
}
