// SECURITY 32: emailDelivery sends to exactly the one mailbox it checked. IDNA (UTS #46) must not turn the checked
// address into another one afterwards: ideographic full stops becoming '.', invisible code points vanishing, a URL host
// parser cutting the domain at '/'. Such recipients are refused; others are sent with the ASCII domain that was checked.
import { type DeliveryContext, PasswordlessError } from 'express-passwordless';
import { createTransport } from 'nodemailer';
import { expect, it } from 'vitest';
import { type EmailMessageContext, emailDelivery } from '../../src/delivery/email.js';

function capture() {
  const json = createTransport({ jsonTransport: true });
  const rcpt: string[][] = [];
  const seen: string[] = [];
  const send = emailDelivery({
    transport: {
      sendMail: async (message) => {
        const info = (await json.sendMail(message)) as { envelope: { to: string[] } };
        rcpt.push(info.envelope.to);
        return info;
      },
    },
    from: 'App <no-reply@app.example>',
    baseUrl: 'https://app.example/login',
    text: (c: EmailMessageContext) => {
      seen.push(c.recipient);
      return c.link;
    },
  });
  return { send, rcpt, seen };
}

function ctx(recipient: string): DeliveryContext {
  return {
    token: 'T0kenT0kenT0kenT0kenT0',
    uid: 'u1',
    recipient,
    delivery: undefined,
    req: {} as DeliveryContext['req'],
    expiresAt: new Date(Date.now() + 600_000),
    kind: 'link',
  };
}

it.each([
  'a@example.com\u3002', // → a@example.com.
  'a@example\u3002\u3002com', // → a@example..com
  'a@\u3002example.com', // → a@.example.com
  'a@exa\u034fmple.com', // U+034F deleted → a@example.com
  'a@exa\ufe0fmple.com', // U+FE0F deleted → a@example.com
  'a@evil.example/x?#', // a URL host parser keeps 'evil.example'
  'a@ex%61mple.com', // percent-decoded → a@example.com
])('%j is refused before nodemailer sees it', async (recipient) => {
  const c = capture();
  await expect(c.send(ctx(recipient))).rejects.toBeInstanceOf(PasswordlessError);
  await expect(c.send(ctx(recipient))).rejects.toMatchObject({ code: 'DELIVERY_FAILED' });
  expect(c.rcpt).toEqual([]);
});

it.each([
  ['alice@example.com', 'alice@example.com'],
  ['alice@Example.COM', 'alice@example.com'],
  ['alice@bücher.example', 'alice@xn--bcher-kva.example'],
  ['ａｌｉｃｅ@example．com', 'alice@example.com'],
])('%j is sent to %j, the address templates are given', async (recipient, sent) => {
  const c = capture();
  await c.send(ctx(recipient));
  expect(c.rcpt).toEqual([[sent]]);
  expect(c.seen).toEqual([sent]);
});
