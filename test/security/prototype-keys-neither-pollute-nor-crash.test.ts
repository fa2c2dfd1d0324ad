// SECURITY 28 / OWASP Node.js: JSON bodies with __proto__ / constructor keys are data: fields are read as own
// properties only, nothing is polluted, nothing crashes, nothing is sent or consumed — and a prototype polluted
// elsewhere in the app never supplies a field.
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createApp, EXPRESS_MAJORS } from '../helpers/create-app.js';

describe.each(EXPRESS_MAJORS)('Express %i', (major) => {
  it('JSON __proto__ / constructor keys neither pollute nor crash', async () => {
    const t = createApp({ express: major, accept: { allowPost: true } });
    await request(t.app)
      .post('/sendtoken')
      .set('Content-Type', 'application/json')
      .send('{"__proto__":{"user":"ann@example.com"},"constructor":{"prototype":{"user":"x"}}}')
      .expect(400);
    const check = await request(t.app)
      .post('/check')
      .set('Content-Type', 'application/json')
      .send('{"__proto__":{"token":"x","uid":"ann@example.com"}}')
      .expect(200);
    expect(check.body.user).toBeNull();
    expect(({} as Record<string, unknown>).user).toBeUndefined();
    expect(({} as Record<string, unknown>).token).toBeUndefined();
    expect(t.outbox.sent).toHaveLength(0);
    expect(t.errors).toEqual([]);
  });

  it.each([
    ['form', (t: request.Test) => t.type('form').send({ other: '1' })],
    ['JSON', (t: request.Test) => t.send({ other: '1' })],
  ])('a polluted Object.prototype.user never becomes the %s user field', async (_, send) => {
    const t = createApp({ express: major });
    const proto = Object.prototype as Record<string, unknown>;
    proto.user = 'ann@example.com';
    try {
      await send(request(t.app).post('/sendtoken')).expect(400);
    } finally {
      delete proto.user;
    }
    expect(t.outbox.sent).toHaveLength(0);
  });
});
