// Numeric options are bounded at setup: Node runs a timer longer than 2^31-1 ms after 1 ms (a "25-day" storeTimeout
// would time every store call out), a ttl beyond a year is refused, and crypto.randomInt needs max <= 2^48-1.
import { MemoryStore, Passwordless, PasswordlessError } from 'express-passwordless';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp } from '../helpers/create-app.js';

const MAX_TIMER = 2 ** 31 - 1;
const YEAR = 365 * 24 * 3600_000;
const SECRET = 's'.repeat(32);

const stores: MemoryStore[] = [];
function store(): MemoryStore {
  const s = new MemoryStore();
  stores.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function expectBadOptions(setup: () => unknown): void {
  let thrown: unknown;
  try {
    setup();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(PasswordlessError);
  expect((thrown as PasswordlessError).code).toBe('BAD_OPTIONS');
}

describe('init()', () => {
  it.each(['storeTimeout', 'deliveryTimeout'] as const)('%s over 2**31-1 → BAD_OPTIONS', (key) => {
    expectBadOptions(() => new Passwordless().init(store(), { [key]: MAX_TIMER + 1 }));
    expectBadOptions(() => new Passwordless().init(store(), { [key]: Number.MAX_SAFE_INTEGER }));
  });

  it.each(['storeTimeout', 'deliveryTimeout'] as const)('%s of exactly 2**31-1 is accepted', (key) => {
    expect(() => new Passwordless().init(store(), { [key]: MAX_TIMER })).not.toThrow();
  });
});

describe('addDelivery()', () => {
  function withStore(): Passwordless {
    const p = new Passwordless();
    p.init(store(), { secret: SECRET });
    return p;
  }

  it('ttl over one year → BAD_OPTIONS; exactly one year is accepted', () => {
    expectBadOptions(() => withStore().addDelivery(async () => {}, { ttl: YEAR + 1 }));
    expectBadOptions(() => withStore().addDelivery(async () => {}, { ttl: Number.MAX_SAFE_INTEGER }));
    expect(() => withStore().addDelivery(async () => {}, { ttl: YEAR })).not.toThrow();
  });

  it('numberToken.max of 2**48 → BAD_OPTIONS', () => {
    expectBadOptions(() => withStore().addDelivery(async () => {}, { numberToken: { max: 2 ** 48 } }));
  });

  it('numberToken.max of 2**48-1 is accepted and a code is generated', async () => {
    const t = createApp({ delivery: { numberToken: { max: 2 ** 48 - 1 } }, init: { secret: SECRET } });
    await request(t.app).post('/sendtoken').type('form').send({ user: 'ann@example.com' }).expect(200);
    const code = t.outbox.last().token;
    expect(code).toMatch(/^\d{15}$/); // zero-padded to the digits of max - 1 = 281474976710654
    expect(Number(code)).toBeLessThan(2 ** 48 - 1);
    const login = await request(t.app).get(`/?token=${code}&uid=ann%40example.com`).expect(200);
    expect(login.body.user).toBe('ann@example.com');
  });
});
