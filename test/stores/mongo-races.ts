import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { TokenStore } from 'express-passwordless';
import request from 'supertest';
import { expect } from 'vitest';
import { createApp, linkQuery } from '../helpers/create-app.js';

/**
 * SECURITY.md 7 over HTTP: for each round, one single-use token is requested, then `parallel` GET /?token&uid
 * requests carry it at once; exactly one of them logs in, and none ends in an error.
 */
export async function expectOneLoginPerToken(store: TokenStore, rounds = 20, parallel = 50): Promise<void> {
  const { app, outbox, errors } = createApp({ store });
  const server: Server = app.listen(0);
  try {
    for (let round = 0; round < rounds; round++) {
      const user = `race-${round}@example.com`;
      await request(server).post('/sendtoken').type('form').send({ user }).expect(200);
      const link = `/?${linkQuery(outbox.last())}`;
      const responses = await Promise.all(
        Array.from({ length: parallel }, () => request(server).get(link).expect(200)),
      );
      const logins = responses.filter((res) => res.body.user === user);
      expect(logins, `round ${round}`).toHaveLength(1);
      expect(errors, `round ${round}`).toEqual([]);
    }
  } finally {
    await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
  }
}

/**
 * SECURITY.md 8 at the store: for each round, a token with maxAttempts 5 gets 20 concurrent tries, every fourth with
 * the right hash; at most one is accepted, and the right token is dead afterwards (the 5th counted wrong try voided
 * it, or it was used).
 */
export async function expectAtMostOneAcceptedPastMaxAttempts(store: TokenStore, rounds = 20): Promise<void> {
  const hash = () => randomBytes(32).toString('hex');
  for (let round = 0; round < rounds; round++) {
    const tokenHash = hash();
    await store.storeOrUpdate({
      uid: 'race',
      tokenHash,
      expiresAt: new Date(Date.now() + 60_000),
      maxAttempts: 5,
    });
    const tries = Array.from({ length: 20 }, (_, i) => (i % 4 === 0 ? tokenHash : hash()));
    const results = await Promise.all(tries.map((h) => store.consume('race', h, { keep: false })));
    expect(results.filter((r) => r.ok).length, `round ${round}`).toBeLessThanOrEqual(1);
    expect((await store.consume('race', tokenHash, { keep: false })).ok, `round ${round}`).toBe(false);
  }
}
