import type { AddressInfo } from 'node:net';
import { createServer, type Server, type Socket } from 'node:net';
import { createTransport } from 'nodemailer';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { emailDelivery } from '../../src/delivery/email.js';
import { deliveryApp } from './app.js';

// The real createTransport, watched: the tests read the options emailDelivery() gave it and the transport it made.
vi.mock('nodemailer', async (importOriginal) => {
  const real = await importOriginal<typeof import('nodemailer')>();
  return { ...real, createTransport: vi.fn(real.createTransport) };
});

const BASE = 'https://app.example/login';
const FROM = 'App <no-reply@app.example>';
const TIMEOUTS = ['connectionTimeout', 'greetingTimeout', 'socketTimeout'] as const;

/** The options of the last transport emailDelivery() created, as nodemailer's SMTP transport holds them. */
function lastTransportOptions(): Record<string, unknown> {
  const made = vi.mocked(createTransport).mock.results.at(-1)?.value as {
    transporter: { options: Record<string, unknown> };
  };
  return made.transporter.options;
}

beforeEach(() => {
  vi.mocked(createTransport).mockClear();
});

describe('emailDelivery() SMTP timeouts', () => {
  it('sets connectionTimeout, greetingTimeout and socketTimeout below the 10 s deliveryTimeout when none is given', () => {
    emailDelivery({ transport: { host: 'smtp.example.com', port: 587 }, from: FROM, baseUrl: BASE });
    const options = lastTransportOptions();
    for (const key of TIMEOUTS) {
      expect(options[key], key).toBeGreaterThan(0);
      expect(options[key], key).toBeLessThan(10_000);
    }
  });

  it('sets them for a pooled transport too', () => {
    emailDelivery({ transport: { host: 'smtp.example.com', pool: true }, from: FROM, baseUrl: BASE });
    const options = lastTransportOptions();
    for (const key of TIMEOUTS) expect(options[key], key).toBeLessThan(10_000);
  });

  it('keeps the timeouts the caller set, and fills in only the missing ones', () => {
    emailDelivery({
      transport: { host: 'smtp.example.com', connectionTimeout: 30_000, socketTimeout: 1_000 },
      from: FROM,
      baseUrl: BASE,
    });
    const options = lastTransportOptions();
    expect(options.connectionTimeout).toBe(30_000);
    expect(options.socketTimeout).toBe(1_000);
    expect(options.greetingTimeout).toBeLessThan(10_000);
  });

  it("does not modify the caller's transport options", () => {
    const transport = { host: 'smtp.example.com', port: 587 };
    emailDelivery({ transport, from: FROM, baseUrl: BASE });
    expect(transport).toEqual({ host: 'smtp.example.com', port: 587 });
  });

  it('passes a Transporter and a transport plugin on as they are', () => {
    const transporter = { sendMail: async () => undefined };
    emailDelivery({ transport: transporter, from: FROM, baseUrl: BASE });
    expect(createTransport).not.toHaveBeenCalled();
    const plugin = { name: 'test', version: '1', send: () => undefined };
    emailDelivery({ transport: plugin, from: FROM, baseUrl: BASE });
    expect(vi.mocked(createTransport).mock.calls[0]![0]).toBe(plugin);
  });

  it('adds nothing to a transport that opens no SMTP connection', () => {
    const transport = { jsonTransport: true };
    emailDelivery({ transport, from: FROM, baseUrl: BASE });
    expect(vi.mocked(createTransport).mock.calls[0]![0]).toBe(transport);
  });
});

interface HungSmtp {
  server: Server;
  port: number;
  sockets: Socket[];
  closed: number;
}

/** An SMTP server that accepts the whole message and then never answers the DATA terminator. */
async function hungSmtp(): Promise<HungSmtp> {
  const state: HungSmtp = { server: undefined as unknown as Server, port: 0, sockets: [], closed: 0 };
  state.server = createServer((socket) => {
    state.sockets.push(socket);
    socket.on('close', () => state.closed++);
    socket.on('error', () => {});
    let inData = false;
    let buffered = '';
    socket.write('220 hung ESMTP\r\n');
    socket.on('data', (chunk) => {
      buffered += chunk.toString('utf8');
      if (inData) return;
      for (let nl = buffered.indexOf('\r\n'); nl >= 0; nl = buffered.indexOf('\r\n')) {
        const line = buffered.slice(0, nl).toUpperCase();
        buffered = buffered.slice(nl + 2);
        if (line.startsWith('DATA')) {
          inData = true;
          socket.write('354 go ahead\r\n');
          return;
        }
        socket.write('250 ok\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.port = (state.server.address() as AddressInfo).port;
  return state;
}

describe('emailDelivery() against a hung SMTP server', () => {
  let smtp: HungSmtp | undefined;
  afterEach(async () => {
    if (!smtp) return;
    for (const socket of smtp.sockets) socket.destroy();
    await new Promise<void>((resolve) => smtp!.server.close(() => resolve()));
    smtp = undefined;
  });

  it('fails the request at deliveryTimeout, and the socket is closed by socketTimeout instead of staying open', async () => {
    smtp = await hungSmtp();
    const send = emailDelivery({
      transport: { host: '127.0.0.1', port: smtp.port, secure: false, ignoreTLS: true, socketTimeout: 400 },
      from: FROM,
      baseUrl: BASE,
    });
    const { app, store, errors } = deliveryApp({ send, init: { deliveryTimeout: 200 } });
    const res = await request(app).post('/sendtoken').type('form').send({ user: 'alice@example.com' });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'DELIVERY_FAILED' });
    expect(errors).toHaveLength(1);
    expect(await store.length()).toBe(0);
    expect(smtp.sockets).toHaveLength(1);
    await vi.waitFor(() => expect(smtp!.closed).toBe(1), { timeout: 3_000, interval: 50 });
  });
});
