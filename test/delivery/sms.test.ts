import { readFileSync } from 'node:fs';
import type { DeliveryContext } from 'express-passwordless';
import { PasswordlessError } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import {
  defaultSmsBody,
  type SmsDeliveryOptions,
  type SmsMessageContext,
  smsDelivery,
  smsSegments,
} from '../../src/delivery/sms.js';
import { deliveryApp, pathOf } from './app.js';

const BASE = 'https://app.example/login';

interface Sent {
  to: string;
  body: string;
}

function provider(): { sent: Sent[]; send: SmsDeliveryOptions['send'] } {
  const sent: Sent[] = [];
  return {
    sent,
    send: async (to, body) => {
      sent.push({ to, body });
    },
  };
}

function ctx(extra: Partial<DeliveryContext> = {}): DeliveryContext {
  return {
    token: '123456',
    uid: '42',
    recipient: '+14155550123',
    delivery: 'sms',
    req: { method: 'POST' } as DeliveryContext['req'],
    expiresAt: new Date(Date.now() + 10 * 60_000),
    kind: 'code',
    ...extra,
  };
}

async function codeOf(work: unknown): Promise<string | undefined> {
  try {
    await work;
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(PasswordlessError);
    return (err as PasswordlessError).code;
  }
}

describe('smsSegments', () => {
  it.each([
    ['', 'GSM-7', 0, 1],
    ['a'.repeat(160), 'GSM-7', 160, 1],
    ['a'.repeat(161), 'GSM-7', 161, 2],
    ['a'.repeat(306), 'GSM-7', 306, 2],
    ['a'.repeat(307), 'GSM-7', 307, 3],
    ['€'.repeat(80), 'GSM-7', 160, 1],
    [`${'a'.repeat(159)}{`, 'GSM-7', 161, 2],
    ['Ñoño à São Paulo? ¿Sí! @£$¥', 'UCS-2', 27, 1],
    ['Ärger über Öl, 5 €', 'GSM-7', 19, 1],
    ['ж'.repeat(70), 'UCS-2', 70, 1],
    ['ж'.repeat(71), 'UCS-2', 71, 2],
    [`${'a'.repeat(69)}😀`, 'UCS-2', 71, 2],
    ['😀'.repeat(35), 'UCS-2', 70, 1],
    ['😀'.repeat(67), 'UCS-2', 134, 3],
  ])('%j is %s, %i units, %i segment(s)', (text, encoding, units, segments) => {
    expect(smsSegments(text)).toEqual({ encoding, units, segments });
  });

  // Phones and gateways never split an escape pair or a surrogate pair across two parts: at a boundary the whole
  // character moves to the next part, which can take one more part than units / 153 (or / 67) suggests.
  it.each([
    [
      'an extension character (€) at the boundary of part 1',
      `${'a'.repeat(152)}€${'a'.repeat(152)}`,
      'GSM-7',
      306,
      3,
    ],
    [
      'an extension character ({) at the boundary of part 2',
      `${'a'.repeat(305)}{${'a'.repeat(152)}`,
      'GSM-7',
      459,
      4,
    ],
    [
      'an extension character that fits before the boundary',
      `${'a'.repeat(151)}€${'a'.repeat(153)}`,
      'GSM-7',
      306,
      2,
    ],
    ['a surrogate pair at the boundary of part 1', `${'Ж'.repeat(66)}😀${'Ж'.repeat(66)}`, 'UCS-2', 134, 3],
    [
      'a surrogate pair that fits before the boundary',
      `${'Ж'.repeat(65)}😀${'Ж'.repeat(67)}`,
      'UCS-2',
      134,
      2,
    ],
  ])('does not split %s', (_what, text, encoding, units, segments) => {
    expect(smsSegments(text)).toEqual({ encoding, units, segments });
  });

  it.each([...'€[]{}~^\\|\f'])('counts the GSM-7 extension character %j as 2 septets', (char) => {
    expect(smsSegments(`${'a'.repeat(158)}${char}`)).toEqual({ encoding: 'GSM-7', units: 160, segments: 1 });
    expect(smsSegments(`${'a'.repeat(159)}${char}`)).toEqual({ encoding: 'GSM-7', units: 161, segments: 2 });
  });
});

describe('smsDelivery() options', () => {
  const send = async () => undefined;
  it.each<[string, unknown]>([
    ['no options', undefined],
    ['no send', { baseUrl: BASE }],
    ['a send that is not a function', { send: 'twilio' }],
    ['a relative baseUrl', { send, baseUrl: '/login' }],
    ['a baseUrl with a fragment', { send, baseUrl: 'https://app.example/#/login' }],
    ['a baseUrl with credentials', { send, baseUrl: 'https://u:p@app.example/' }],
    ['a body that is a string', { send, body: 'Your code' }],
    ['tokenField without baseUrl', { send, tokenField: 'code' }],
    ['an unknown option', { send, from: '+15550000000' }],
  ])('throws BAD_OPTIONS for %s', (_what, bad) => {
    expect(() => smsDelivery(bad as SmsDeliveryOptions)).toThrow(
      expect.objectContaining({ code: 'BAD_OPTIONS', message: expect.stringMatching(/^smsDelivery\(\): /) }),
    );
  });
});

describe('smsDelivery() recipients', () => {
  it.each(['+14155550123', '+447911123456', '+12', '+123456789012345'])(
    'sends to the E.164 number %s',
    async (to) => {
      const p = provider();
      await smsDelivery({ send: p.send })(ctx({ recipient: to }));
      expect(p.sent.map((s) => s.to)).toEqual([to]);
    },
  );

  it.each([
    ['a number without +', '14155550123'],
    ['a leading 0 country code', '+04155550123'],
    ['spaces', '+1 415 555 0123'],
    ['a surrounding space', ' +14155550123'],
    ['dashes', '+1-415-555-0123'],
    ['16 digits', '+1234567890123456'],
    ['only a +', '+'],
    ['two numbers', '+14155550123,+14155550124'],
    ['a newline and a second number', '+14155550123\n+14155550124'],
    ['fullwidth digits', '+１４１５５５５０１２３'],
    ['one fullwidth digit', '+1415555012３'],
    ['Arabic-Indic digits', '+١٤١٥٥٥٥٠١٢٣'],
    ['a trailing newline', '+14155550123\n'],
    ['an email address', 'a@example.com'],
    ['an empty string', ''],
  ])('refuses %s before the provider is called', async (_what, to) => {
    const p = provider();
    expect(await codeOf(smsDelivery({ send: p.send })(ctx({ recipient: to })))).toBe('DELIVERY_FAILED');
    expect(p.sent).toEqual([]);
  });

  it('ends the request in DELIVERY_FAILED with no token left for a refused number', async () => {
    const p = provider();
    const { app, store, errors } = deliveryApp({
      send: smsDelivery({ send: p.send }),
      getUserId: (user) => ({ uid: 'u1', recipient: user }),
      delivery: { numberToken: { max: 1_000_000 } },
    });
    const res = await request(app).post('/sendtoken').type('form').send({ user: '+1 415 555 0123' });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'DELIVERY_FAILED' });
    expect(p.sent).toEqual([]);
    expect(await store.length()).toBe(0);
    expect((errors[0] as PasswordlessError).cause).toBeInstanceOf(PasswordlessError);
  });

  it("ends the request in DELIVERY_FAILED with no token left when the provider's send rejects", async () => {
    const failure = new Error('provider said 503');
    const { app, store, errors } = deliveryApp({
      send: smsDelivery({
        send: async () => {
          throw failure;
        },
      }),
      getUserId: () => ({ uid: 'u1', recipient: '+14155550123' }),
      delivery: { numberToken: { max: 1_000_000 } },
    });
    const res = await request(app).post('/sendtoken').type('form').send({ user: 'x' });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'DELIVERY_FAILED' });
    expect(await store.length()).toBe(0);
    expect((errors[0] as PasswordlessError).cause).toBe(failure);
  });
});

describe('smsDelivery() default body', () => {
  it('carries the code, the link and the origin-bound line, in one GSM-7 segment', async () => {
    const p = provider();
    await smsDelivery({ send: p.send, baseUrl: BASE })(ctx());
    const { body } = p.sent[0]!;
    expect(body).toBe(
      `Your sign-in code: 123456 (valid 10 min)\nOr open ${BASE}?token=123456&uid=42\n\n@app.example #123456`,
    );
    expect(smsSegments(body)).toEqual({ encoding: 'GSM-7', units: body.length, segments: 1 });
  });

  it('carries only the code without baseUrl', async () => {
    const p = provider();
    await smsDelivery({ send: p.send })(ctx());
    expect(p.sent[0]!.body).toBe('Your sign-in code: 123456 (valid 10 min)');
  });

  it('adds no origin-bound line for an http baseUrl', async () => {
    const p = provider();
    await smsDelivery({ send: p.send, baseUrl: 'http://localhost:3000/login' })(ctx());
    expect(p.sent[0]!.body).not.toContain('#123456');
    expect(p.sent[0]!.body).toContain('http://localhost:3000/login?token=123456&uid=42');
  });

  it('sends the link for a link token', async () => {
    const p = provider();
    await smsDelivery({ send: p.send, baseUrl: BASE })(
      ctx({ kind: 'link', token: '7Xk2BpQ9mNw3RtYz5AcDeF', expiresAt: new Date(Date.now() + 15 * 60_000) }),
    );
    const { body } = p.sent[0]!;
    expect(body).toBe(`Your sign-in link (valid 15 min): ${BASE}?token=7Xk2BpQ9mNw3RtYz5AcDeF&uid=42`);
    expect(smsSegments(body).segments).toBe(1);
  });

  // A long uid or baseUrl can push the link out of one segment; the body then drops the link, never the code.
  it.each([
    ['a short uid', '42', BASE],
    ['an email uid', 'someone.with.a.long.name@example.com', BASE],
    ['a 1 kB uid', 'u'.repeat(1024), BASE],
    ['a hostile uid', '<script>&uid=admin#x', BASE],
    ['a long baseUrl', '42', `https://accounts.example.com/${'very-long-path/'.repeat(8)}login?lang=en`],
    ['a long host', '42', `https://${'sub.'.repeat(30)}example.com/login`],
  ])('fits one segment and keeps the code with %s', async (_what, uid, baseUrl) => {
    const p = provider();
    await smsDelivery({ send: p.send, baseUrl })(ctx({ uid, token: '004217' }));
    const { body } = p.sent[0]!;
    expect(body).toContain('004217');
    expect(smsSegments(body)).toMatchObject({ encoding: 'GSM-7', segments: 1 });
  });

  it('sends "Sign in: <link>" for a link token whose longer text does not fit one segment', () => {
    const link = `${BASE}?token=${'A'.repeat(22)}&uid=${'u'.repeat(150)}`;
    const body = defaultSmsBody({
      token: 'A'.repeat(22),
      link,
      kind: 'link',
      expiresAt: new Date(Date.now() + 15 * 60_000),
    });
    expect(body).toBe(`Sign in: ${link}`);
    expect(smsSegments(body).segments).toBe(2);
  });

  it('sends the token to type for a link token without baseUrl', () => {
    const body = defaultSmsBody({
      token: '7Xk2BpQ9mNw3RtYz5AcDeF',
      link: undefined,
      kind: 'link',
      expiresAt: new Date(Date.now() + 15 * 60_000),
    });
    expect(body).toBe('Your sign-in code: 7Xk2BpQ9mNw3RtYz5AcDeF (valid 15 min)');
  });

  it('fits one UCS-2 segment (70) when the code needs UCS-2', async () => {
    const p = provider();
    const token = 'ЖЁЛТЫЙ7';
    await smsDelivery({ send: p.send, baseUrl: BASE })(ctx({ token }));
    const { body } = p.sent[0]!;
    expect(body).toContain(token);
    expect(smsSegments(body)).toMatchObject({ encoding: 'UCS-2', segments: 1 });
    expect(body.length).toBeLessThanOrEqual(70);
  });

  it('fits one segment for every numberToken code length and ttl', () => {
    for (const digits of [4, 6, 8, 12]) {
      for (const minutes of [1, 10, 60, 24 * 60]) {
        const body = defaultSmsBody({
          token: '9'.repeat(digits),
          link: `${BASE}?token=${'9'.repeat(digits)}&uid=user-1234567890`,
          kind: 'code',
          expiresAt: new Date(Date.now() + minutes * 60_000),
        });
        expect(smsSegments(body).segments).toBe(1);
      }
    }
  });
});

describe('docs/delivery.md on the default text', () => {
  const docs = readFileSync('docs/delivery.md', 'utf8');
  const section = docs.slice(
    docs.indexOf('### The default text'),
    docs.indexOf('### Twilio-shaped provider'),
  );
  const in15 = () => new Date(Date.now() + 15 * 60_000);

  it('shows the code message exactly as it is sent', () => {
    const example = /```\n([\s\S]*?)\n```/.exec(section)?.[1];
    expect(example).toBe(
      defaultSmsBody({
        token: '004217',
        link: `${BASE}?token=004217&uid=42`,
        kind: 'code',
        expiresAt: new Date(Date.now() + 10 * 60_000),
      }),
    );
  });

  it.each([
    [
      'a link that fits',
      'Your sign-in link (valid 15 min): <link>',
      `${BASE}?token=${'A'.repeat(22)}&uid=42`,
    ],
    ['a link that does not fit', 'Sign in: <link>', `${BASE}?token=${'A'.repeat(22)}&uid=${'u'.repeat(150)}`],
    ['no baseUrl', 'Your sign-in code: <token> (valid 15 min)', undefined],
  ])('names the link-token text for %s as the code makes it', (_what, documented, link) => {
    expect(section).toContain(`\`${documented}\``);
    const token = 'A'.repeat(22);
    const body = defaultSmsBody({ token, link, kind: 'link', expiresAt: in15() });
    expect(body).toBe(documented.replace('<link>', link ?? '').replace('<token>', token));
  });
});

describe('smsDelivery() custom body', () => {
  it('sends what body(ctx) returns, given the message context with the link', async () => {
    const p = provider();
    const seen: SmsMessageContext[] = [];
    await smsDelivery({
      send: p.send,
      baseUrl: BASE,
      body: (m) => {
        seen.push(m);
        return `Code ${m.token} for ${m.recipient}`;
      },
    })(ctx());
    expect(p.sent).toEqual([{ to: '+14155550123', body: 'Code 123456 for +14155550123' }]);
    expect(seen[0]).toMatchObject({ token: '123456', uid: '42', kind: 'code', delivery: 'sms' });
    expect(seen[0]!.link).toBe(`${BASE}?token=123456&uid=42`);
  });

  it('gives link undefined without baseUrl', async () => {
    const seen: SmsMessageContext[] = [];
    await smsDelivery({
      send: provider().send,
      body: async (m) => {
        seen.push(m);
        return 'x';
      },
    })(ctx());
    expect(seen[0]!.link).toBeUndefined();
  });

  it('refuses an empty body before the provider is called', async () => {
    const p = provider();
    expect(await codeOf(smsDelivery({ send: p.send, body: () => '' })(ctx()))).toBe('DELIVERY_FAILED');
    expect(p.sent).toEqual([]);
  });
});

describe('smsDelivery() end to end', () => {
  it('texts a code whose link logs in, whatever Host and X-Forwarded-Host say', async () => {
    const p = provider();
    const { app } = deliveryApp({
      send: smsDelivery({ send: p.send, baseUrl: BASE }),
      getUserId: (user) => (user === '+14155550123' ? { uid: 'u-7', recipient: user } : null),
      delivery: { numberToken: { max: 1_000_000 } },
    });
    const agent = request.agent(app);
    await agent
      .post('/sendtoken')
      .set('Host', 'evil.example')
      .set('X-Forwarded-Host', 'evil.example')
      .type('form')
      .send({ user: '+14155550123' })
      .expect(200);
    const { to, body } = p.sent[0]!;
    expect(to).toBe('+14155550123');
    expect(body).not.toContain('evil');
    const link = /https:\/\/\S+/.exec(body)![0];
    expect(link.startsWith(`${BASE}?token=`)).toBe(true);
    expect((await agent.get(pathOf(link)).expect(200)).body.user).toBe('u-7');
  });
});
