import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import type { DeliveryContext, SendToken } from 'express-passwordless';
import { PasswordlessError } from 'express-passwordless';
import { type ParsedMail, simpleParser } from 'mailparser';
import { createTransport } from 'nodemailer';
import { SMTPServer } from 'smtp-server';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type EmailDeliveryOptions,
  type EmailMessageContext,
  emailDelivery,
  escapeHtml,
} from '../../src/delivery/email.js';
import { deliveryApp, pathOf } from './app.js';

interface Smtp {
  port: number;
  mails: ParsedMail[];
  /** Every RCPT TO the server saw, accepted or not. */
  rcpts: string[];
  /** Every MAIL FROM the server saw. */
  mailFroms: string[];
  rejectRcpt: boolean;
  reset(): void;
  close(): Promise<void>;
}

async function startSmtp(): Promise<Smtp> {
  const state: Smtp = {
    port: 0,
    mails: [],
    rcpts: [],
    mailFroms: [],
    rejectRcpt: false,
    reset() {
      state.mails.length = 0;
      state.rcpts.length = 0;
      state.mailFroms.length = 0;
      state.rejectRcpt = false;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server = new SMTPServer({
    secure: false,
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onMailFrom(address, _session, callback) {
      state.mailFroms.push(address.address);
      callback();
    },
    onRcptTo(address, _session, callback) {
      state.rcpts.push(address.address);
      if (state.rejectRcpt) {
        callback(Object.assign(new Error('5.1.1 No such user here'), { responseCode: 550 }));
      } else {
        callback();
      }
    },
    onData(stream, _session, callback) {
      simpleParser(stream)
        .then((mail) => {
          state.mails.push(mail);
          callback();
        })
        .catch(callback);
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.server.address() as AddressInfo).port;
  return state;
}

/** A port nothing listens on: bound once, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const BASE = 'https://app.example/login';
// Valid options that need no server (for tables built when the file is collected).
const VALID = { transport: { jsonTransport: true }, from: 'App <no-reply@app.example>', baseUrl: BASE };

let smtp: Smtp;
beforeAll(async () => {
  smtp = await startSmtp();
});
afterAll(async () => {
  await smtp.close();
});
beforeEach(() => smtp.reset());

function smtpOptions(port = smtp.port) {
  return { host: '127.0.0.1', port, secure: false, ignoreTLS: true, connectionTimeout: 3000 };
}

function options(extra: Partial<EmailDeliveryOptions> = {}): EmailDeliveryOptions {
  return { transport: smtpOptions(), from: 'App <no-reply@app.example>', baseUrl: BASE, ...extra };
}

/** Wraps a send so the test can see the context (and so the token of a failed attempt) it was called with. */
function recording(send: SendToken): { send: SendToken; calls: DeliveryContext[] } {
  const calls: DeliveryContext[] = [];
  return {
    calls,
    send: (ctx) => {
      calls.push(ctx);
      return send(ctx);
    },
  };
}

function onlyMail(): ParsedMail {
  expect(smtp.mails).toHaveLength(1);
  return smtp.mails[0]!;
}

/** Every http(s) URL in an HTML text, entities decoded. */
function urlsIn(html: string): string[] {
  return [...html.matchAll(/https?:\/\/[^\s"'<>]+/g)].map((m) => m[0].replace(/&amp;/g, '&'));
}

function linkOf(mail: ParsedMail): string {
  const match = /https:\/\/app\.example\/\S+/.exec(mail.text ?? '');
  if (!match) throw new Error('no link in the text part');
  return match[0];
}

describe('escapeHtml', () => {
  it.each([
    ['<script>alert(1)</script>', '&lt;script&gt;alert(1)&lt;/script&gt;'],
    ['"><img src=x onerror=alert(1)>', '&quot;&gt;&lt;img src=x onerror=alert(1)&gt;'],
    ["' onmouseover='alert(1)", '&#39; onmouseover=&#39;alert(1)'],
    ['&lt;already escaped&gt;', '&amp;lt;already escaped&amp;gt;'],
    ['plain text 123', 'plain text 123'],
  ])('escapes %j so it stays text', (input, expected) => {
    expect(escapeHtml(input)).toBe(expected);
  });
});

describe('emailDelivery() options', () => {
  it.each<[string, unknown]>([
    ['no options', undefined],
    ['no transport', { from: 'a@app.example', baseUrl: BASE }],
    ['a transport that is a string', { transport: 'smtp://localhost', from: 'a@app.example', baseUrl: BASE }],
    ['no from', { transport: { jsonTransport: true }, baseUrl: BASE }],
    ['a from with a line break', { ...VALID, from: 'a@app.example\r\nBcc: x@evil.example' }],
    ['a from object without address', { ...VALID, from: { name: 'App' } }],
    ['no baseUrl', { ...VALID, baseUrl: undefined }],
    ['a relative baseUrl', { ...VALID, baseUrl: '/login' }],
    ['a javascript: baseUrl', { ...VALID, baseUrl: 'javascript:alert(1)' }],
    ['an ftp: baseUrl', { ...VALID, baseUrl: 'ftp://app.example/login' }],
    ['a baseUrl with credentials', { ...VALID, baseUrl: 'https://user:pass@app.example/login' }],
    ['a baseUrl with a fragment', { ...VALID, baseUrl: 'https://app.example/login#x' }],
    ['a baseUrl with a newline', { ...VALID, baseUrl: 'https://app.example/lo\ngin' }],
    ['a baseUrl that already has a token field', { ...VALID, baseUrl: 'https://app.example/?token=1' }],
    ['a subject with CRLF', { ...VALID, subject: 'Hi\r\nBcc: x@evil.example' }],
    ['a subject with an encoded-word', { ...VALID, subject: 'Hi =?utf-8?Q?=0D=0ABcc:_x?=' }],
    ['a from with an encoded-word', { ...VALID, from: '=?utf-8?B?QXBwDQo=?= <no-reply@app.example>' }],
    [
      'a from name with an encoded-word',
      { ...VALID, from: { name: '=?UTF-8?q?App=0A?=', address: 'a@app.example' } },
    ],
    ['a from name with a line break', { ...VALID, from: { name: 'App\nBcc: x', address: 'a@app.example' } }],
    ['a text that is a string', { ...VALID, text: 'static text' }],
    ['an html that is a number', { ...VALID, html: 42 }],
    ['equal tokenField and uidField', { ...VALID, tokenField: 'x', uidField: 'x' }],
    ['an empty tokenField', { ...VALID, tokenField: '' }],
    ['an unknown option', { ...VALID, baseURL: BASE }],
  ])('throws BAD_OPTIONS for %s', (_what, bad) => {
    let caught: unknown;
    try {
      emailDelivery(bad as EmailDeliveryOptions);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PasswordlessError);
    expect((caught as PasswordlessError).code).toBe('BAD_OPTIONS');
    expect((caught as PasswordlessError).message).toMatch(/^emailDelivery\(\): /);
  });

  it('suggests the option meant by a typo', () => {
    expect(() => emailDelivery({ ...options(), baseURL: BASE } as EmailDeliveryOptions)).toThrow(
      /did you mean `baseUrl`/,
    );
  });

  it('does not mutate the options object', () => {
    const given = options({ subject: 'Sign in' });
    const copy = structuredClone(given);
    emailDelivery(given);
    expect(given).toEqual(copy);
  });

  it('accepts a Transporter (anything with sendMail) as it is', async () => {
    const sent: unknown[] = [];
    const send = emailDelivery({
      ...options(),
      transport: {
        sendMail: async (m) => {
          sent.push(m);
        },
      },
    });
    await send({
      token: 't',
      uid: 'u',
      recipient: 'a@example.com',
      delivery: undefined,
      req: {} as DeliveryContext['req'],
      expiresAt: new Date(Date.now() + 60_000),
      kind: 'link',
    });
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({
      to: { name: '', address: 'a@example.com' },
      subject: 'Your sign-in link',
    });
  });
});

describe('emailDelivery() subject functions', () => {
  it.each([
    ['CR LF', '\r\nBcc: x@evil.example'],
    ['a line separator (U+2028)', '\u2028Bcc: x'],
    ['a next line (U+0085)', '\u0085Bcc: x'],
    ['a vertical tab', '\u000bx'],
    ['a NUL', '\u0000'],
  ])('refuses %s, with an error that does not name the token', async (_what, tail) => {
    const sent: unknown[] = [];
    const send = emailDelivery({
      ...VALID,
      transport: {
        sendMail: async (message) => {
          sent.push(message);
        },
      },
      subject: (ctx) => `${ctx.token}${tail}`,
    });
    let caught: unknown;
    try {
      await send({
        token: 'T0kenT0kenT0kenT0kenT0',
        uid: 'u1',
        recipient: 'alice@example.com',
        delivery: undefined,
        req: {} as DeliveryContext['req'],
        expiresAt: new Date(Date.now() + 600_000),
        kind: 'link',
      });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PasswordlessError);
    expect((caught as PasswordlessError).code).toBe('DELIVERY_FAILED');
    expect((caught as PasswordlessError).message).not.toContain('T0ken');
    expect(sent).toEqual([]);
  });
});

describe('emailDelivery() over SMTP', () => {
  it('sends one mail with From, To, Subject, a text and an HTML part; its link logs in', async () => {
    const { app, store } = deliveryApp({ send: emailDelivery(options()) });
    const agent = request.agent(app);
    await agent.post('/sendtoken').type('form').send({ user: 'alice@example.com' }).expect(200);

    const mail = onlyMail();
    expect(smtp.mailFroms).toEqual(['no-reply@app.example']);
    expect(smtp.rcpts).toEqual(['alice@example.com']);
    expect(mail.from?.value).toEqual([{ name: 'App', address: 'no-reply@app.example' }]);
    const to = Array.isArray(mail.to) ? mail.to : [mail.to];
    expect(to.flatMap((t) => t?.value ?? [])).toEqual([{ name: '', address: 'alice@example.com' }]);
    expect(mail.subject).toBe('Your sign-in link');
    expect(mail.headers.get('auto-submitted')).toBe('auto-generated');
    expect(mail.text).toContain('Use this link to sign in:');
    expect(mail.text).toContain('The link expires in 15 minutes.');
    expect(typeof mail.html).toBe('string');

    const link = linkOf(mail);
    expect(link.startsWith(`${BASE}?token=`)).toBe(true);
    expect(new URL(link).searchParams.get('uid')).toBe('alice@example.com');
    expect(await store.length()).toBe(1);

    const res = await agent.get(pathOf(link)).expect(200);
    expect(res.body.user).toBe('alice@example.com');
    expect(await store.length()).toBe(0);
  });

  it('puts no URL in the HTML except the link, and loads no external asset', async () => {
    const { app } = deliveryApp({ send: emailDelivery(options()) });
    await request(app).post('/sendtoken').type('form').send({ user: 'alice@example.com' }).expect(200);
    const mail = onlyMail();
    const html = mail.html as string;
    const link = linkOf(mail);
    const urls = urlsIn(html);
    expect(urls.length).toBeGreaterThanOrEqual(2); // the button and the visible fallback
    expect(new Set(urls)).toEqual(new Set([link]));
    expect(html).not.toMatch(/<img|<link|<script|<iframe|src=|url\(|@import/i);
    // the fallback URL is visible text, not only an href
    expect(html).toContain(`>${escapeHtml(link)}</a>`);
  });

  it('builds the link from baseUrl whatever Host and X-Forwarded-Host say', async () => {
    const { app } = deliveryApp({ send: emailDelivery(options()) });
    await request(app)
      .post('/sendtoken')
      .set('Host', 'evil.example')
      .set('X-Forwarded-Host', 'evil.example')
      .set('X-Forwarded-Proto', 'http')
      .type('form')
      .send({ user: 'alice@example.com' })
      .expect(200);
    const mail = onlyMail();
    expect(linkOf(mail).startsWith(`${BASE}?`)).toBe(true);
    expect(`${mail.text}${mail.html}`).not.toContain('evil.example');
  });

  it('appends to a query that baseUrl already has', async () => {
    const base = 'https://app.example/login?lang=en';
    const { app } = deliveryApp({ send: emailDelivery(options({ baseUrl: base })) });
    const agent = request.agent(app);
    await agent.post('/sendtoken').type('form').send({ user: 'alice@example.com' }).expect(200);
    const link = linkOf(onlyMail());
    expect(link.startsWith(`${base}&token=`)).toBe(true);
    expect((await agent.get(pathOf(link)).expect(200)).body.user).toBe('alice@example.com');
  });

  it('escapes a hostile uid and recipient in the HTML and encodes them in the link', async () => {
    const uid = '<script>alert(1)</script>"><img src=x onerror=alert(1)>&uid=admin';
    const recipient = "o'brien&co@example.com";
    const { app } = deliveryApp({
      send: emailDelivery(options()),
      getUserId: () => ({ uid, recipient }),
    });
    const agent = request.agent(app);
    await agent.post('/sendtoken').type('form').send({ user: 'anything' }).expect(200);
    const mail = onlyMail();
    const html = mail.html as string;
    expect(html).not.toMatch(/<script|<img|onerror=alert/i);
    expect(html).toContain('o&#39;brien&amp;co@example.com');
    const link = linkOf(mail);
    const params = new URL(link).searchParams;
    expect(params.getAll('uid')).toEqual([uid]);
    expect(smtp.rcpts).toEqual([recipient]);
    expect((await agent.get(pathOf(link)).expect(200)).body.user).toBe(uid);
  });

  it('shows a code large for typing, beside the link, for kind code', async () => {
    const { app } = deliveryApp({
      send: emailDelivery(options()),
      delivery: { numberToken: { max: 1_000_000 } },
    });
    const agent = request.agent(app);
    await agent.post('/sendtoken').type('form').send({ user: 'alice@example.com' }).expect(200);
    const mail = onlyMail();
    expect(mail.subject).toBe('Your sign-in code');
    const link = linkOf(mail);
    const code = new URL(link).searchParams.get('token')!;
    expect(code).toMatch(/^\d{6}$/);
    expect(mail.text).toContain(`\n    ${code}\n`);
    expect(mail.html).toMatch(new RegExp(`font-size:32px[^>]*>${code}</p>`));
    expect((await agent.get(pathOf(link)).expect(200)).body.user).toBe('alice@example.com');
  });

  it('uses subject, text and html functions with the message context', async () => {
    const seen: EmailMessageContext[] = [];
    const send = emailDelivery(
      options({
        subject: (ctx) => {
          seen.push(ctx);
          return `Sign in to Example (${ctx.kind})`;
        },
        text: (ctx) => `Go to ${ctx.link}`,
        html: async (ctx) => `<p><a href="${escapeHtml(ctx.link)}">Sign in</a> as ${escapeHtml(ctx.uid)}</p>`,
      }),
    );
    const { app } = deliveryApp({ send });
    await request(app).post('/sendtoken').type('form').send({ user: 'alice@example.com' }).expect(200);
    const mail = onlyMail();
    expect(mail.subject).toBe('Sign in to Example (link)');
    expect(mail.text?.trim()).toBe(`Go to ${seen[0]!.link}`);
    expect(mail.html).toContain('as alice@example.com</p>');
    expect(seen[0]).toMatchObject({ uid: 'alice@example.com', recipient: 'alice@example.com', kind: 'link' });
    expect(seen[0]!.link.startsWith(`${BASE}?token=`)).toBe(true);
    expect(seen[0]!.expiresAt).toBeInstanceOf(Date);
    expect(seen[0]!.req.method).toBe('POST');
  });

  it('refuses a subject function that returns a line break, before SMTP, and leaves no token', async () => {
    const send = emailDelivery(options({ subject: () => 'Hello\r\nBcc: eve@evil.example' }));
    const { app, store, errors } = deliveryApp({ send });
    const res = await request(app).post('/sendtoken').type('form').send({ user: 'alice@example.com' });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'DELIVERY_FAILED' });
    expect(smtp.mailFroms).toEqual([]);
    expect(await store.length()).toBe(0);
    expect((errors[0] as PasswordlessError).cause).toBeInstanceOf(PasswordlessError);
  });

  it.each([
    ['a Q encoded-word', '=?utf-8?Q?=0D=0AURGENT:_verify_your_account=E2=80=AE?='],
    ['a B encoded-word', '=?UTF-8?B?DQpVUkdFTlQ=?='],
    ['an encoded-word with a language tag', '=?us-ascii*en?q?x?='],
  ])(
    'refuses a subject function that returns %s (user input decoded by mail clients), before SMTP',
    async (_what, uid) => {
      const send = emailDelivery(options({ subject: (ctx) => `Welcome back ${ctx.uid}` }));
      const { app, store, errors } = deliveryApp({
        send,
        getUserId: () => ({ uid, recipient: 'alice@example.com' }),
      });
      const res = await request(app).post('/sendtoken').type('form').send({ user: 'x' });
      expect(res.status).toBe(500);
      expect(res.body).toEqual({ error: 'DELIVERY_FAILED' });
      expect(smtp.mailFroms).toEqual([]);
      expect(await store.length()).toBe(0);
      const cause = (errors[0] as PasswordlessError).cause as PasswordlessError;
      expect(cause).toBeInstanceOf(PasswordlessError);
      expect(cause.message).toMatch(/^emailDelivery\(\): `subject` .*encoded-word/);
    },
  );

  it('sends a subject with "=?" that is no encoded-word', async () => {
    const send = emailDelivery(options({ subject: 'What is 1+1=? Sign in to find out' }));
    const { app } = deliveryApp({ send });
    await request(app).post('/sendtoken').type('form').send({ user: 'alice@example.com' }).expect(200);
    expect(onlyMail().subject).toBe('What is 1+1=? Sign in to find out');
  });

  it('sends to the ASCII form of an internationalised domain, the address templates see too', async () => {
    // smtp-server shows RCPT TO domains in Unicode, so the envelope is read from nodemailer's JSON transport.
    const json = createTransport({ jsonTransport: true });
    const envelopes: unknown[] = [];
    const seen: string[] = [];
    const send = emailDelivery(
      options({
        transport: {
          sendMail: async (message) => {
            const info = (await json.sendMail(message)) as { envelope: unknown };
            envelopes.push(info.envelope);
            return info;
          },
        },
        text: (ctx) => {
          seen.push(ctx.recipient);
          return ctx.link;
        },
      }),
    );
    const { app } = deliveryApp({
      send,
      getUserId: () => ({ uid: 'u1', recipient: 'alice@Bücher.Example' }),
    });
    await request(app).post('/sendtoken').type('form').send({ user: 'x' }).expect(200);
    expect(envelopes).toEqual([{ from: 'no-reply@app.example', to: ['alice@xn--bcher-kva.example'] }]);
    expect(seen).toEqual(['alice@xn--bcher-kva.example']);
  });

  it('sends to the NFKC form of the address', async () => {
    const { app } = deliveryApp({
      send: emailDelivery(options()),
      getUserId: () => ({ uid: 'u1', recipient: 'ａｌｉｃｅ@example.com' }),
    });
    await request(app).post('/sendtoken').type('form').send({ user: 'x' }).expect(200);
    expect(smtp.rcpts).toEqual(['alice@example.com']);
  });

  describe('refuses a recipient that is not exactly one mailbox, before SMTP sees anything', () => {
    it.each([
      ['a list', 'a@x.com, b@y.com'],
      ['a list with a semicolon', 'a@x.com;b@y.com'],
      ['a list with a space', 'a@x.com b@y.com'],
      ['a quoted local part', '"a"@x.com'],
      ['a quoted local part hiding a second address', '"b@y.com x"@x.com'],
      ['a header injection', 'a@x.com\r\nBcc: c@z.com'],
      ['a bare LF', 'a@x.com\nBcc: c@z.com'],
      ['an angle-addr', '<a@x.com>'],
      ['a display name', 'Eve <a@x.com>'],
      ['two @', 'a@b@c.com'],
      ['no @', 'ax.com'],
      ['a comment', 'a@x.com(comment)'],
      ['a domain literal', 'a@[127.0.0.1]'],
      ['a group', 'g:a@x.com;'],
      ['a NUL', 'a\u0000@x.com'],
      ['a zero-width space', 'a@x.com\u200b'],
      ['a fullwidth comma (U+FF0C)', 'a@x.com\uff0cb@y.com'],
      ['a small comma (U+FE50)', 'a@x.com\ufe50b@y.com'],
      ['a fullwidth semicolon (U+FF1B)', 'a@x.com\uff1bb@y.com'],
      ['fullwidth quotes (U+FF02)', '\uff02a\uff02@x.com'],
      ['fullwidth angle brackets (U+FF1C/U+FF1E)', '\uff1ca@x.com\uff1e'],
      ['a fullwidth second @ (U+FF20)', 'a@b\uff20c.com'],
      ['an ideographic space (U+3000)', 'a@x.com\u3000b@y.com'],
      ['an empty domain label', 'a@x..com'],
      // IDNA would turn these into another address than the one checked (an empty label, or invisible characters gone).
      ['a trailing ideographic full stop (U+3002)', 'a@example.com\u3002'],
      ['two ideographic full stops', 'a@example\u3002\u3002com'],
      ['a leading ideographic full stop', 'a@\u3002example.com'],
      ['a halfwidth ideographic full stop (U+FF61)', 'a@example\uff61com'],
      ['a fullwidth full stop making an empty label (U+FF0E)', 'a@example\uff0e\uff0ecom'],
      ['a combining grapheme joiner (U+034F)', 'a@exa\u034fmple.com'],
      ['a variation selector (U+FE0F)', 'a@exa\ufe0fmple.com'],
      ['a Hangul filler (U+3164)', 'a\u3164@example.com'],
      ['a soft hyphen (U+00AD)', 'a@exam\u00adple.com'],
      ['a domain a URL parser cuts at /', 'a@evil.example/x'],
      ['a domain a URL parser cuts at ?', 'a@evil.example?x'],
      ['a domain a URL parser cuts at #', 'a@evil.example#x'],
      ['a percent-encoded domain', 'a@ex%61mple.com'],
      ['invalid punycode', 'a@xn--a.com'],
      ['a label starting with a hyphen', 'a@-example.com'],
      ['a label over 63 characters', `a@${'x'.repeat(64)}.com`],
      ['an IPv4 address as domain', 'a@127.0.0.1'],
      ['an IPv4 address in hex', 'a@0x7f.1'],
    ])('%s: %j', async (_what, recipient) => {
      const email = recording(emailDelivery(options()));
      const { app, store, errors } = deliveryApp({
        send: email.send,
        getUserId: () => ({ uid: 'victim', recipient }),
      });
      const agent = request.agent(app);
      const res = await agent.post('/sendtoken').type('form').send({ user: 'x' });
      expect(res.status).toBe(500);
      expect(res.body).toEqual({ error: 'DELIVERY_FAILED' });
      expect(smtp.mailFroms).toEqual([]);
      expect(smtp.rcpts).toEqual([]);
      expect(await store.length()).toBe(0);
      const err = errors[0] as PasswordlessError;
      expect(err.code).toBe('DELIVERY_FAILED');
      expect((err.cause as PasswordlessError).message).toMatch(/^emailDelivery\(\): the recipient /);
      // The token of the failed attempt does not log in.
      const { token, uid } = email.calls[0]!;
      const after = await agent.get(`/login?token=${encodeURIComponent(token)}&uid=${uid}`).expect(200);
      expect(after.body.user).toBeNull();
    });
  });

  it('with enumerationSafe, answers as a success and reports a refused recipient to onBackgroundError, leaving no token', async () => {
    const reported: PasswordlessError[] = [];
    const { app, store, errors } = deliveryApp({
      send: emailDelivery(options()),
      getUserId: () => ({ uid: 'victim', recipient: 'a@x.com, b@y.com' }),
      request: { enumerationSafe: true, onBackgroundError: (err) => reported.push(err) },
    });
    const res = await request(app).post('/sendtoken').type('form').send({ user: 'x' }).expect(200);
    expect(res.body.sent).toBe(true);
    await vi.waitFor(() => expect(reported).toHaveLength(1));
    expect(reported[0]).toBeInstanceOf(PasswordlessError);
    expect(reported[0]!.code).toBe('DELIVERY_FAILED');
    expect((reported[0]!.cause as PasswordlessError).message).toMatch(/^emailDelivery\(\): the recipient /);
    expect(errors).toEqual([]);
    expect(smtp.rcpts).toEqual([]);
    expect(await store.length()).toBe(0);
  });

  it('ends in DELIVERY_FAILED with no token left when the server rejects the recipient', async () => {
    smtp.rejectRcpt = true;
    const email = recording(emailDelivery(options()));
    const { app, store, errors } = deliveryApp({ send: email.send });
    const agent = request.agent(app);
    const res = await agent.post('/sendtoken').type('form').send({ user: 'alice@example.com' });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'DELIVERY_FAILED' });
    expect(smtp.rcpts).toEqual(['alice@example.com']);
    expect(smtp.mails).toHaveLength(0);
    expect(await store.length()).toBe(0);
    const err = errors[0] as PasswordlessError;
    expect(err).toBeInstanceOf(PasswordlessError);
    expect(err.code).toBe('DELIVERY_FAILED');
    expect(String((err.cause as Error).message)).toMatch(/550|No such user/);
    const { token, uid } = email.calls[0]!;
    const after = await agent.get(`/?token=${encodeURIComponent(token)}&uid=${encodeURIComponent(uid)}`);
    expect(after.body.user).toBeNull();
  });

  it('ends in DELIVERY_FAILED with no token left when the SMTP server is unreachable', async () => {
    const port = await closedPort();
    const send = emailDelivery(options({ transport: createTransport(smtpOptions(port)) }));
    const { app, store, errors } = deliveryApp({ send });
    const res = await request(app).post('/sendtoken').type('form').send({ user: 'alice@example.com' });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'DELIVERY_FAILED' });
    expect(await store.length()).toBe(0);
    const err = errors[0] as PasswordlessError;
    expect(err.code).toBe('DELIVERY_FAILED');
    expect(err.cause).toBeInstanceOf(Error);
  });
});
