// API.md (requestToken): user missing → 400, or the failureRedirect. A POST whose body is neither form nor JSON
// (none, text/plain, multipart) has no fields even with both parsers mounted — Express 5 leaves req.body undefined
// for it — so it is a 400, not a 500 NO_BODY. A form or JSON POST that no parser read is a setup mistake: NO_BODY.
import express from 'express';
import { MemoryStore, Passwordless, PasswordlessError } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createApp, EXPRESS_MAJORS, knownUser } from '../helpers/create-app.js';

type Send = (t: request.Test) => request.Test;
const bodies: [string, Send][] = [
  ['no body', (t) => t],
  ['text/plain', (t) => t.set('Content-Type', 'text/plain').send('user=ann@example.com')],
  ['multipart/form-data', (t) => t.field('user', 'ann@example.com')],
];

describe.each(EXPRESS_MAJORS)('Express %i, express.urlencoded() and express.json() mounted', (major) => {
  it.each(bodies)('POST /sendtoken with %s → 400, nothing sent', async (_, send) => {
    const t = createApp({ express: major });
    const res = await send(request(t.app).post('/sendtoken'));
    expect(res.status).toBe(400);
    expect(t.errors).toEqual([]);
    expect(t.outbox.sent).toHaveLength(0);
  });

  it.each(bodies)('POST /sendtoken with %s and failureRedirect → the failureRedirect', async (_, send) => {
    const t = createApp({ express: major, request: { failureRedirect: '/login' } });
    const res = await send(request(t.app).post('/sendtoken'));
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/login');
    expect(t.errors).toEqual([]);
  });

  it.each(bodies)('acceptToken({ allowPost }) with %s → next(), not NO_BODY', async (_, send) => {
    const t = createApp({ express: major, accept: { allowPost: true } });
    const res = await send(request(t.app).post('/check'));
    expect(res.status).toBe(200);
    expect(res.body.user).toBeNull();
    expect(t.errors).toEqual([]);
  });
});

describe.each(EXPRESS_MAJORS)('Express %i, no body parser mounted', (major) => {
  async function bare() {
    const e = major === 5 ? express : ((await import('express4')).default as unknown as typeof express);
    const p = new Passwordless();
    p.init(new MemoryStore());
    p.addDelivery(async () => {});
    const errors: unknown[] = [];
    const app = e();
    app.post('/sendtoken', p.requestToken(knownUser), (_q, r) => void r.send('sent'));
    app.use(
      p.acceptToken({ allowPost: true }),
      (_q: express.Request, r: express.Response) => void r.send('next'),
    );
    app.use(
      (err: { code?: string }, _q: express.Request, res: express.Response, _n: express.NextFunction) => {
        errors.push(err);
        res.status(500).json({ error: err.code });
      },
    );
    return { app, errors };
  }

  it.each([
    ['form', (t: request.Test) => t.type('form').send({ user: 'ann@example.com' })],
    ['JSON', (t: request.Test) => t.send({ user: 'ann@example.com' })],
  ])('a %s POST at requestToken → 500 NO_BODY', async (_, send) => {
    const { app, errors } = await bare();
    const res = await send(request(app).post('/sendtoken'));
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'NO_BODY' });
    expect(errors[0]).toBeInstanceOf(PasswordlessError);
  });

  it('a form POST at acceptToken({ allowPost }) → 500 NO_BODY', async () => {
    const { app } = await bare();
    const res = await request(app).post('/check').type('form').send({ token: 'x', uid: 'ann@example.com' });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'NO_BODY' });
  });
});
