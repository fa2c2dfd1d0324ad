import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery } from '../helpers/create-app.js';

describe.each(EXPRESS_MAJORS)('Express %i', (major) => {
  it('logs in by link end to end', async () => {
    const { app, outbox } = createApp({ express: major });
    const agent = request.agent(app);
    await agent.post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(200);
    const res = await agent.get(`/?${linkQuery(outbox.last())}`).expect(200);
    expect(res.body.user).toBe('a@example.com');
    expect((await agent.get('/restricted').expect(200)).body.user).toBe('a@example.com');
    await agent.get('/logout').expect(200);
    await agent.get('/restricted').expect(401);
  });
});
