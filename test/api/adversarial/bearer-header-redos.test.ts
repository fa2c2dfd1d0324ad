// DoS regression: bearerToken() once ran /^Bearer +([^ ]*) *$/i on the raw header; "Bearer" + many spaces + a
// non-space + more spaces backtracked quadratically, so one unauthenticated 16 KB header (Node's header limit) blocked
// the event loop for ~0.15-0.45 s, on every route behind an app-wide bearerSupport(). Parsing is linear now.
import request from 'supertest';
import { expect, it } from 'vitest';
import { api } from '../harness.js';

it('a 16 KB Authorization header of spaces is refused quickly (linear time)', async () => {
  const h = api();
  const header = `Bearer${' '.repeat(16_000)}a b`;
  // Warm up the route, then time the hostile request.
  await request(h.app).get('/me').set('Authorization', 'Bearer x');
  // Ten requests, so JIT tiering cannot hide it: ~120-450 ms each when quadratic, a few ms each when linear; the bound
  // leaves room for a loaded CI machine.
  const started = performance.now();
  for (let i = 0; i < 10; i++) {
    const res = await request(h.app).get('/me').set('Authorization', header);
    expect(res.status).toBe(401);
  }
  expect(performance.now() - started).toBeLessThan(1000);
});
