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
  /** The one mailbox the message goes to, already checked and NFKC-normalised. */
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
  /** A nodemailer Transporter (anything with `sendMail`), or options for `nodemailer.createTransport`. Required. */
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

function refuse(reason: string): never {
  throw new PasswordlessError(
    'DELIVERY_FAILED',
    `${CALL}: the recipient ${reason}; nothing was sent. Return { uid, recipient } from getUserId() with one plain address (name@domain).`,
  );
}

/**
 * The recipient as exactly one mailbox, NFKC-normalised first so that look-alikes such as a fullwidth comma (U+FF0C)
 * are judged as the characters mail software will read them as. Throws `DELIVERY_FAILED` before anything is sent.
 */
function mailbox(recipient: unknown): string {
  if (typeof recipient !== 'string') refuse('is not a string');
  const address = recipient.normalize('NFKC');
  if (address.length === 0) refuse('is empty');
  if (address.length > 254) refuse('is longer than 254 characters');
  if (NOT_IN_MAILBOX.test(address)) {
    refuse(
      'must be one plain address: no quote, comma, semicolon, colon, angle bracket, parenthesis, bracket, backslash, space or control character',
    );
  }
  const at = address.split('@');
  if (at.length !== 2) refuse("must contain exactly one '@'");
  const [local, domain] = at as [string, string];
  if (local.length === 0 || local.length > 64) refuse('must have 1 to 64 characters before the @');
  if (domain.length === 0 || domain.split('.').some((label) => label.length === 0)) {
    refuse("must have a domain after the @ with no empty label ('..', leading or trailing '.')");
  }
  return address;
}

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

function checkFrom(value: unknown): MailFrom {
  if (typeof value === 'string') {
    if (value.length === 0 || hasControl(value)) {
      fail(CALL, "`from` must be a non-empty one-line string such as 'App <no-reply@app.example>'.");
    }
    return value;
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const { name, address } = value as { name?: unknown; address?: unknown };
    const ok = (v: unknown): v is string => typeof v === 'string' && !hasControl(v);
    if (ok(name) && ok(address) && address.includes('@')) return { name, address };
  }
  fail(CALL, `\`from\` must be an address string or { name, address }; got ${show(value)}.`);
}

function checkTransport(value: unknown): MailTransporter {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    if (typeof (value as { sendMail?: unknown }).sendMail === 'function') return value as MailTransporter;
    try {
      // Creating a transport does not connect; a bad host shows up as DELIVERY_FAILED on the first send.
      return createTransport(value as MailTransportOptions) as MailTransporter;
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
    if (hasControl(o.subject)) fail(CALL, '`subject` must be one line: no line break or control character.');
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
