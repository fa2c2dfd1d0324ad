// SECURITY 23/34: logout() clears the session even when the store hangs, and answers within storeTimeout with
// next(STORE_ERROR).
import { MemoryStore } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery } from '../helpers/create-app.js';

describe.each(EXPRESS_MAJORS)('Express %i', (major) => {
  it('logout with a hanging invalidateUser answers within storeTimeout, STORE_ERROR, and is logged out', async () => {
    const store = new MemoryStore();
    const t = createApp({ express: major, store, init: { storeTimeout: 150 } });
    const agent = request.agent(t.app);
    await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    await agent.get(`/?${linkQuery(t.outbox.last())}`).expect(200);
    vi.spyOn(store, 'invalidateUser').mockImplementation(() => new Promise(() => {}));
    const started = Date.now();
    const res = await agent.get('/logout').expect(500);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(res.body).toEqual({ error: 'STORE_ERROR' });
    await agent.get('/restricted').expect(401);
  });
});
