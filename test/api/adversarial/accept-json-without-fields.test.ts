// Regression test of a defect found in review (now fixed). Issue 8 item 1: in JSON mode every failure is a JSON error body, "never an HTML page". acceptToken({ json: true })
// with a POST carrying neither uid nor token calls next() (src/passwordless.ts:438), so a JSON client gets Express's
// HTML 404 "Cannot POST" page; with only one of the two it correctly gets 400 invalid_request.
import request from 'supertest';
import { expect, it } from 'vitest';
import { api } from '../harness.js';

it('acceptToken({ json: true }) with an empty JSON body answers 400 invalid_request JSON', async () => {
  const h = api();
  h.app.post('/auth/accept-json', h.pwd.acceptToken({ json: true }));
  const res = await request(h.app).post('/auth/accept-json').send({});
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect([res.status, res.body]).toEqual([400, { error: 'invalid_request' }]);
});
