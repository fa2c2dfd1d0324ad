// SECURITY 2/17: no log line, error message, `cause` message or HTTP response contains a token or its SHA-256 hash —
// through a full flow of successes and failures (wrong token, wrong uid, store errors, delivery failures, logout).
import { createHash } from 'node:crypto';
import { MemoryStore, type TokenStore } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery } from '../helpers/create-app.js';

const CONSOLE = ['log', 'warn', 'error', 'info', 'debug'] as const;

/** A MemoryStore whose next call of a method can be made to fail. */
function flakyStore() {
  const inner = new MemoryStore();
  const failNext = { storeOrUpdate: false, consume: false, invalidateUser: false };
  const fail = (m: keyof typeof failNext) => {
    if (!failNext[m]) return;
    failNext[m] = false;
    throw new Error('connection reset by peer');
  };
  const store: TokenStore = {
    storeOrUpdate: async (r) => {
      fail('storeOrUpdate');
      return inner.storeOrUpdate(r);
    },
    consume: async (u, h, o) => {
      fail('consume');
      return inner.consume(u, h, o);
    },
    invalidateUser: async (u, h) => {
      fail('invalidateUser');
      return inner.invalidateUser(u, h);
    },
    clear: () => inner.clear(),
    length: () => inner.length(),
    close: () => inner.close(),
  };
  return { store, failNext };
}

/** Every string an error exposes: message, stack, own properties, down its `cause` chain. */
function errorTexts(err: unknown, depth = 0): string[] {
  if (depth > 5 || err === undefined || err === null) return [];
  if (!(err instanceof Error)) return [String(err)];
  const own = Object.entries(err).map(([k, v]) => `${k}=${typeof v === 'object' ? '' : String(v)}`);
  return [err.message, err.stack ?? '', String(err), ...own, ...errorTexts(err.cause, depth + 1)];
}

describe.each(EXPRESS_MAJORS)('Express %i', (major) => {
  it('a full flow logs nothing and no error or response names a token or its hash', async () => {
    const spies = CONSOLE.map((m) => vi.spyOn(console, m).mockImplementation(() => {}));
    const { store, failNext } = flakyStore();
    const t = createApp({ express: major, store });
    const responses: request.Response[] = [];
    const agent = request.agent(t.app);
    const send = async (user: string) => {
      const res = await agent.post('/sendtoken').type('form').send({ user });
      responses.push(res);
      return res;
    };
    const accept = async (query: string) => {
      const res = await agent.get(`/?${query}`);
      responses.push(res);
      return res;
    };

    // Success, wrong token, token with another uid, login.
    expect((await send('ann@example.com')).status).toBe(200);
    const first = t.outbox.last();
    expect((await accept('token=WRONGWRONGWRONGWRONG12&uid=ann%40example.com')).body.user).toBeNull();
    expect((await accept(`token=${first.token}&uid=bob%40example.com`)).body.user).toBeNull();
    // Store error on consume, then the same token works once the store is back.
    expect((await send('ann@example.com')).status).toBe(200);
    const second = t.outbox.last();
    failNext.consume = true;
    expect((await accept(linkQuery(second))).status).toBe(500);
    expect((await accept(linkQuery(second))).body.user).toBe('ann@example.com');
    // Store error on storeOrUpdate.
    failNext.storeOrUpdate = true;
    expect((await send('bob@example.com')).status).toBe(500);
    // Delivery failure; then delivery failure with a failing clean-up.
    t.outbox.after = () => Promise.reject(new Error('smtp 451 try later'));
    expect((await send('bob@example.com')).status).toBe(500);
    failNext.invalidateUser = true;
    expect((await send('bob@example.com')).status).toBe(500);
    t.outbox.after = undefined;
    // Logout with the store down.
    failNext.invalidateUser = true;
    const logout = await agent.get('/logout');
    responses.push(logout);
    expect(logout.status).toBe(500);

    const codes = t.errors.map((e) => (e as { code?: string }).code);
    expect(codes).toEqual([
      'STORE_ERROR',
      'STORE_ERROR',
      'DELIVERY_FAILED',
      'DELIVERY_FAILED',
      'STORE_ERROR',
    ]);
    expect(t.outbox.sent.length).toBe(4); // the storeOrUpdate failure sent nothing

    const secrets = t.outbox.sent.flatMap(({ token }) => [
      token,
      createHash('sha256').update(token, 'utf8').digest('hex'),
    ]);
    for (const spy of spies) expect(spy).not.toHaveBeenCalled();
    const texts = [
      ...t.errors.flatMap((e) => errorTexts(e)),
      ...responses.map((r) => `${JSON.stringify(r.headers)}\n${r.text}`),
    ];
    for (const text of texts) for (const secret of secrets) expect(text).not.toContain(secret);
  });
});
