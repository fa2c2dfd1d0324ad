// Regression test of a defect found in review (now fixed). Issue 8 item 1 / docs/api-mode.md: refresh() fails with 400 invalid_request, 401, 405 or 503; `server_error` is "a
// setup mistake". A POST with no body, or a text/plain body, leaves req.body undefined under Express 5 even with
// express.json() mounted; refresh() (src/passwordless.ts:675-680) then throws NO_BODY → 500 server_error and an
// onError/console.error "setup mistake" report — on demand by any client. requestToken and acceptToken already treat
// such a POST as "no fields" (test/security/post-without-form-or-json-body.test.ts).
import request from 'supertest';
import { expect, it } from 'vitest';
import { api } from '../harness.js';

it.each<[string, (t: request.Test) => request.Test]>([
  ['no body', (t) => t],
  ['text/plain', (t) => t.set('Content-Type', 'text/plain').send('refreshToken=x.y')],
])('POST /auth/refresh with %s → 400 invalid_request, nothing reported as a setup error', async (_, send) => {
  const h = api();
  const res = await send(request(h.app).post('/auth/refresh'));
  expect([res.status, res.body]).toEqual([400, { error: 'invalid_request' }]);
  expect(h.errors.map((e) => e.code)).toEqual([]);
});
