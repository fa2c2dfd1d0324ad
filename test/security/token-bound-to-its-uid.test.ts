// SECURITY 9: a valid token sent with another uid logs nobody in, stays valid for its own uid, and counts one failure
// for the uid that was sent.
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery } from '../helpers/create-app.js';

describe.each(EXPRESS_MAJORS)('Express %i', (major) => {
  it('a valid token sent with another uid logs nobody in, counts against that uid, and stays valid for its own', async () => {
    const t = createApp({ express: major, delivery: { maxAttempts: 2 } });
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const ann = t.outbox.last();
    await request(t.app).post('/sendtoken').type('form').send({ user: 'bob@example.com' }).expect(200);
    const bob = t.outbox.last();
    for (let i = 0; i < 2; i++) {
      const res = await request(t.app).get(`/?token=${ann.token}&uid=bob%40example.com`).expect(200);
      expect(res.body.user).toBeNull();
    }
    // Two failures for bob (maxAttempts 2) voided bob's own token…
    expect((await request(t.app).get(`/?${linkQuery(bob)}`)).body.user).toBeNull();
    // …and ann's token still works for ann.
    expect((await request(t.app).get(`/?${linkQuery(ann)}`)).body.user).toBe('ann@example.com');
  });
});
