// init({ userProperty }) may not name something requests already have: req.path, req.ip… are truthy on every
// request, so restricted() would let anonymous requests through; '__proto__' or 'constructor' break the request.
import { MemoryStore, Passwordless, PasswordlessError } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery } from '../helpers/create-app.js';

describe('init({ userProperty })', () => {
  it.each(['path', 'ip', 'url', 'headers', 'query', 'constructor', '__proto__'])(
    'userProperty %j → BAD_OPTIONS at init',
    (userProperty) => {
      const store = new MemoryStore();
      let thrown: unknown;
      try {
        new Passwordless().init(store, { userProperty });
      } catch (err) {
        thrown = err;
      }
      void store.close();
      expect(thrown).toBeInstanceOf(PasswordlessError);
      expect((thrown as PasswordlessError).code).toBe('BAD_OPTIONS');
    },
  );
});

describe.each(EXPRESS_MAJORS)('Express %i', (major) => {
  it('an allowed name (account) still works: anonymous 401, logged in after the link', async () => {
    const t = createApp({ express: major, init: { userProperty: 'account' } });
    await request(t.app).get('/restricted').expect(401);
    const agent = request.agent(t.app);
    await agent.post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    await agent.get(`/?${linkQuery(t.outbox.last())}`).expect(200);
    await agent.get('/restricted').expect(200);
  });
});
