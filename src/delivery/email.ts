import { domainToASCII } from 'node:url';
import type { Request } from 'express';
import { createTransport, type SendMailOptions } from 'nodemailer';
import { PasswordlessError } from '../errors.js';
import type { DeliveryContext, SendToken } from '../types.js';
import { buildLink, type LinkTarget, linkTarget } from './link.js';
import { defaultHtml, defaultSubject, defaultText } from './message.js';
import { fail, hasControl, optionalFunction, readOptions, show } from './options.js';

export { escapeHtml } from './html.js';

/** What `subject`, `text` and `html` functions receive to compose one message. */
export interface EmailMessageContext {
  /** The plain token or code. */
  token: string;
  /** The uid the token logs in. */
  uid: string;
  /** The one mailbox the message goes to, exactly as sent: checked, NFKC-normalised, its domain in ASCII (IDNA). */
  recipient: string;
  /** The sign-in link: `baseUrl` plus the encoded token and uid. Never built from the request's Host. */
  link: string;
  /** The instant the token stops working. */
  expiresAt: Date;
  /** The request that asked for the token. */
  req: Request;
  /** `'code'` when the token is meant to be typed, `'link'` for the default token. */
  kind: 'link' | 'code';
  /** Name of the delivery method, or `undefined` for the default one. */
  delivery: string | undefined;
}

/** Anything with nodemailer's promise-returning `sendMail`, such as a Transporter from `createTransport`. */
export interface MailTransporter {
  sendMail(message: SendMailOptions): Promise<unknown>;
}

/** Options for `nodemailer.createTransport` (an SMTP configuration object, or a transport plugin). */
export type MailTransportOptions = Exclude<Parameters<typeof createTransport>[0], string | null | undefined>;

/** A sender: an address string such as `'App <no-reply@app.example>'`, or `{ name, address }`. */
export type MailFrom = string | { name: string; address: string };

/** Options of `emailDelivery`. */
export interface EmailDeliveryOptions {
  /**
   * A nodemailer Transporter (anything with `sendMail`), or options for `nodemailer.createTransport`, where unset SMTP
   * `connectionTimeout` / `greetingTimeout` / `socketTimeout` default to 5000 / 5000 / 8000 ms. Required.
   */
  transport: MailTransporter | MailTransportOptions;
  /** The sender (`From`). Required. */
  from: MailFrom;
  /** Absolute http(s) URL of the route with `acceptToken()`, from configuration (never from a request). Required. */
  baseUrl: string;
  /** The subject, or a function of the message context. Default: `'Your sign-in link'` / `'Your sign-in code'`. */
  subject?: string | ((ctx: EmailMessageContext) => string | Promise<string>);
  /** Makes the plain-text part. Default: the link (and the code for `kind: 'code'`) with the expiry. */
  text?: (ctx: EmailMessageContext) => string | Promise<string>;
  /** Makes the HTML part; escape every value with `escapeHtml`. Default: a self-contained page with a button. */
  html?: (ctx: EmailMessageContext) => string | Promise<string>;
  /** Query field for the token; must equal `acceptToken`'s `tokenField`. Default: `'token'`. */
  tokenField?: string;
  /** Query field for the uid; must equal `acceptToken`'s `uidField`. Default: `'uid'`. */
  uidField?: string;
}

const CALL = 'emailDelivery()';
const KEYS: readonly (keyof EmailDeliveryOptions)[] = [
  'transport',
  'from',
  'baseUrl',
  'subject',
  'text',
  'html',
  'tokenField',
  'uidField',
];

// Characters that let a mail parser read a display name, a second address, a group, a comment, a quoted local part or
// a domain literal out of one string, plus every kind of space, control and invisible format character. With them
// refused, the recipient can only be read as the one mailbox it appears to be (GHSA-xv97-c62v-4587,
// GHSA-5jpx-9hw9-2fx4, GHSA-7rqj-j65f-68wh: sign-in mail delivered to an attacker's address).
const NOT_IN_MAILBOX = /[",;:<>()[\]\\\s\p{Cc}\p{Cf}\p{Z}]/u;

// Code points that IDNA mapping (UTS #46, which nodemailer and url.domainToASCII apply) deletes, such as U+034F or the
// variation selectors: invisible, so the address a person reads would not be the address that receives the mail.
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/u;

// Ideographic full stops, which IDNA maps to '.': 'a@example.com。' would pass as a domain without an empty label and
// then be sent to 'a@example.com.'. NFKC already turns U+FF0E into '.' and U+FF61 into U+3002; all three are listed.
const IDEOGRAPHIC_STOP = /[\u3002\uff0e\uff61]/u;

// Characters that url.domainToASCII, a URL host parser, would cut the domain at ('/', '?', '#') or percent-decode.
const NOT_IN_DOMAIN = /[/?#%]/;

// An RFC 5321 domain after IDNA: dot-separated labels of letters, digits and inner hyphens, 63 characters at most.
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

function refuse(reason: string): never {
  throw new PasswordlessError(
    'DELIVERY_FAILED',
    `${CALL}: the recipient ${reason}; nothing was sent. Return { uid, recipient } from getUserId() with one plain address (name@domain).`,
  );
}

/**
 * The recipient as exactly one mailbox, NFKC-normalised first so that look-alikes such as a fullwidth comma (U+FF0C)
 * are judged as the characters mail software will read them as, and with its domain converted to ASCII here, so that
 * the address checked is byte for byte the address in RCPT TO. Throws `DELIVERY_FAILED` before anything is sent.
 */
function mailbox(recipient: unknown): string {
  if (typeof recipient !== 'string') refuse('is not a string');
  const address = recipient.normalize('NFKC');
  if (address.length === 0) refuse('is empty');
  if (address.length > 254) refuse('is longer than 254 characters');
  if (NOT_IN_MAILBOX.test(address) || INVISIBLE.test(address)) {
    refuse(
      'must be one plain address: no quote, comma, semicolon, colon, angle bracket, parenthesis, bracket, backslash, space, control or invisible character',
    );
  }
  const at = address.split('@');
  if (at.length !== 2) refuse("must contain exactly one '@'");
  const [local, domain] = at as [string, string];
  if (local.length === 0 || local.length > 64) refuse('must have 1 to 64 characters before the @');
  if (IDEOGRAPHIC_STOP.test(domain)) refuse("must separate the labels of its domain with '.', not '。'");
  if (NOT_IN_DOMAIN.test(domain)) refuse("must have a domain without '/', '?', '#' or '%'");
  if (domain.length === 0 || domain.split('.').some((label) => label.length === 0)) {
    refuse("must have a domain after the @ with no empty label ('..', leading or trailing '.')");
  }
  // IDNA (UTS #46) here rather than in nodemailer: what is checked below is what is sent.
  const ascii = domainToASCII(domain);
  if (ascii === '') refuse('must have a valid domain name after the @');
  const labels = ascii.split('.');
  if (ascii.length > 253 || !labels.every((label) => LDH_LABEL.test(label))) {
    refuse(
      "must have a valid domain name after the @: labels of letters, digits and inner '-', none empty or over 63 characters",
    );
  }
  // A bare IP address (also what the URL host parser makes of '0x7f.1' or '2130706433') is no mail domain.
  if (/^\d+$/.test(labels.at(-1)!)) refuse('must have a domain name after the @, not an IP address');
  const sent = `${local}@${ascii}`;
  if (sent.length > 254) refuse('is longer than 254 characters once its domain is in ASCII');
  return sent;
}

// An RFC 2047 encoded-word ('=?utf-8?Q?=0D=0A?='). nodemailer passes a valid one through as it is and mail clients
// decode it, so it would smuggle CR, LF or bidi controls past the check below into the header a reader sees.
const ENCODED_WORD = /=\?[^?\s]*\?[bq]\?/i;

// A header value from app code: CR or LF would start a new header (CWE-93), so refuse it rather than guess.
function headerValue(value: unknown, what: string): string {
  if (typeof value !== 'string') {
    throw new PasswordlessError(
      'DELIVERY_FAILED',
      `${CALL}: \`${what}\` must return a string; got ${show(value)}.`,
    );
  }
  if (hasControl(value)) {
    throw new PasswordlessError(
      'DELIVERY_FAILED',
      `${CALL}: \`${what}\` returned a value with a line break or control character; header values must be one line.`,
    );
  }
  if (ENCODED_WORD.test(value)) {
    throw new PasswordlessError(
      'DELIVERY_FAILED',
      `${CALL}: \`${what}\` returned a value with an RFC 2047 encoded-word ('=?charset?B?…' or '=?charset?Q?…'); return plain text, nodemailer encodes it. Do not put user input there unchecked.`,
    );
  }
  return value;
}

function body(value: unknown, what: string): string {
  if (typeof value !== 'string') {
    throw new PasswordlessError(
      'DELIVERY_FAILED',
      `${CALL}: \`${what}\` must return a string; got ${show(value)}.`,
    );
  }
  return value;
}

// A sender value fit for a header: one line (CWE-93) and no encoded-word a reader's client would decode.
function oneLine(value: string): boolean {
  return !hasControl(value) && !ENCODED_WORD.test(value);
}

function checkFrom(value: unknown): MailFrom {
  if (typeof value === 'string') {
    if (value.length === 0 || !oneLine(value)) {
      fail(
        CALL,
        "`from` must be a non-empty one-line string without an RFC 2047 encoded-word (=?…?=), such as 'App <no-reply@app.example>'.",
      );
    }
    return value;
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const { name, address } = value as { name?: unknown; address?: unknown };
    const ok = (v: unknown): v is string => typeof v === 'string' && oneLine(v);
    if (ok(name) && ok(address) && address.includes('@')) return { name, address };
  }
  fail(
    CALL,
    `\`from\` must be an address string or { name, address } of one-line strings without an RFC 2047 encoded-word (=?…?=); got ${show(value)}.`,
  );
}

// nodemailer waits up to 2 minutes to connect, 30 s for the greeting and 10 minutes on a silent socket. The core gives
// up on a send after `deliveryTimeout` (10 s by default) but cannot stop nodemailer, so without these a hung SMTP
// server would hold one open socket per login request for minutes. Each is below the 10 s default.
const SMTP_TIMEOUTS = { connectionTimeout: 5_000, greetingTimeout: 5_000, socketTimeout: 8_000 } as const;

// Transports that open no SMTP connection: the timeouts mean nothing to them.
const NOT_SMTP = ['sendmail', 'streamTransport', 'jsonTransport', 'SES'] as const;

/** The caller's transport options (never modified) with our SMTP timeouts wherever the caller set none. */
function withTimeouts(options: Record<string, unknown>): Record<string, unknown> {
  if (NOT_SMTP.some((key) => options[key])) return options;
  const out: Record<string, unknown> = { ...options };
  for (const [key, ms] of Object.entries(SMTP_TIMEOUTS)) {
    // nodemailer reads `options.x || default`, so an unset, undefined or 0 value would mean its own (minutes long) one.
    if (!out[key]) out[key] = ms;
  }
  return out;
}

function checkTransport(value: unknown): MailTransporter {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    if (typeof (value as { sendMail?: unknown }).sendMail === 'function') return value as MailTransporter;
    // A transport plugin (an object with `send`) is nodemailer's to configure; it is passed on as it is.
    const plugin = typeof (value as { send?: unknown }).send === 'function';
    const options = plugin ? value : withTimeouts(value as Record<string, unknown>);
    try {
      // Creating a transport does not connect; a bad host shows up as DELIVERY_FAILED on the first send.
      return createTransport(options as MailTransportOptions) as MailTransporter;
    } catch (err) {
      throw new PasswordlessError(
        'BAD_OPTIONS',
        `${CALL}: nodemailer.createTransport() refused \`transport\`; see \`cause\`.`,
        { cause: err },
      );
    }
  }
  fail(
    CALL,
    `\`transport\` must be a nodemailer Transporter or the options for nodemailer.createTransport(); got ${show(value)}.`,
  );
}

/**
 * A `send` for `addDelivery` that emails a sign-in link (and the code, for codes) through nodemailer.
 * The link is built from `baseUrl` only; the recipient must be exactly one plain mailbox, or nothing is sent.
 * Options are checked at once and throw `BAD_OPTIONS`.
 */
export function emailDelivery(options: EmailDeliveryOptions): SendToken {
  const o = readOptions(CALL, options, KEYS);
  if (o.transport === undefined)
    fail(CALL, '`transport` is required: a nodemailer Transporter or its options.');
  if (o.from === undefined) fail(CALL, "`from` is required, e.g. 'App <no-reply@app.example>'.");
  const transporter = checkTransport(o.transport);
  const from = checkFrom(o.from);
  const target: LinkTarget = linkTarget(CALL, o);
  let subjectOf: (ctx: EmailMessageContext) => string | Promise<string>;
  if (typeof o.subject === 'string') {
    if (!oneLine(o.subject)) {
      fail(
        CALL,
        '`subject` must be one line of plain text: no line break, control character or RFC 2047 encoded-word (=?…?=).',
      );
    }
    const subject = o.subject;
    subjectOf = () => subject;
  } else {
    subjectOf = optionalFunction(CALL, o, 'subject') ?? ((ctx) => defaultSubject(ctx.kind));
  }
  const textOf = optionalFunction<NonNullable<EmailDeliveryOptions['text']>>(CALL, o, 'text');
  const htmlOf = optionalFunction<NonNullable<EmailDeliveryOptions['html']>>(CALL, o, 'html');

  return async function sendEmail(ctx: DeliveryContext): Promise<void> {
    // Checked before anything else: a refused recipient never reaches nodemailer or the SMTP server.
    const recipient = mailbox(ctx.recipient);
    const message: EmailMessageContext = {
      token: ctx.token,
      uid: ctx.uid,
      recipient,
      link: buildLink(target, ctx.token, ctx.uid),
      expiresAt: ctx.expiresAt,
      req: ctx.req,
      kind: ctx.kind,
      delivery: ctx.delivery,
    };
    const subject = headerValue(await subjectOf(message), 'subject');
    const text = textOf ? body(await textOf(message), 'text') : defaultText(message);
    const html = htmlOf ? body(await htmlOf(message), 'html') : defaultHtml(message, subject);
    await transporter.sendMail({
      from,
      // An address object: nodemailer uses it as it is and never parses a display name or a list out of it.
      to: { name: '', address: recipient },
      subject,
      text,
      html,
      // RFC 3834: an automatic message; vacation responders should not answer it.
      headers: { 'Auto-Submitted': 'auto-generated' },
      // Nothing in this message is read from disk or fetched from a URL, whatever a custom template contains.
      disableFileAccess: true,
      disableUrlAccess: true,
    });
  };
}
