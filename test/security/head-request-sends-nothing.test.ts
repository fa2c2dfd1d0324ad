// SECURITY 25 (and RFC 9110 §9.2.1): a HEAD has no effect — on a GET requestToken route (allowGet) nothing is stored
// or sent.
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createApp, EXPRESS_MAJORS } from '../helpers/create-app.js';

describe.each(EXPRESS_MAJORS)('Express %i', (major) => {
  it('HEAD on a GET requestToken route with allowGet stores and sends nothing', async () => {
    const t = createApp({ express: major, request: { allowGet: true } });
    await request(t.app).head('/sendtoken?user=ann%40example.com');
    expect(t.outbox.sent).toHaveLength(0);
    expect(await t.store.length()).toBe(0);
    // The same request as a GET does send (the route is live).
    await request(t.app).get('/sendtoken?user=ann%40example.com').expect(200);
    expect(t.outbox.sent).toHaveLength(1);
  });
});
