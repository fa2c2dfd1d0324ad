// SECURITY 16: in acceptToken an unknown uid and a wrong, expired, used or voided (maxAttempts) token give the same
// outcome: next() with nothing set and the same failureFlash — so a client cannot tell them apart.
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery, type TestApp } from '../helpers/create-app.js';

const FLASH = 'That link did not work; ask for a new one.';
const TTL = 15 * 60_000;

afterEach(() => {
  vi.useRealTimers();
});

/** What a client can observe of one acceptToken request, and whether the app's error handler ran. */
async function outcome(t: TestApp, query: string) {
  const before = t.errors.length;
  const res = await request(t.app).get(`/?${query}`);
  return {
    status: res.status,
    body: res.body as unknown,
    location: res.headers.location,
    cacheControl: res.headers['cache-control'],
    referrerPolicy: res.headers['referrer-policy'],
    setsCookie: res.headers['set-cookie'] !== undefined,
    errors: t.errors.length - before,
  };
}

const FAILED = {
  status: 200,
  body: { user: null, session: { passwordless: null, cart: null }, flash: { passwordless: [FLASH] } },
  location: undefined,
  cacheControl: 'no-store',
  referrerPolicy: 'no-referrer',
  setsCookie: true, // the flash is stored in a new session, the same for every failure
  errors: 0,
};

function linkApp(major: 4 | 5): TestApp {
  return createApp({ express: major, flash: true, accept: { failureFlash: FLASH }, delivery: { ttl: TTL } });
}

async function requestLink(t: TestApp, user = 'ann@example.com') {
  await request(t.app).post('/sendtoken').type('form').send({ user }).expect(200);
  return t.outbox.last();
}

describe.each(EXPRESS_MAJORS)('Express %i', (major) => {
  it('a wrong token: next() with nothing set and the failureFlash', async () => {
    const t = linkApp(major);
    await requestLink(t);
    expect(await outcome(t, 'token=WRONGWRONGWRONGWRONG12&uid=ann%40example.com')).toEqual(FAILED);
  });

  it('an unknown uid: the same outcome as a wrong token', async () => {
    const t = linkApp(major);
    const ann = await requestLink(t);
    expect(await outcome(t, `token=${ann.token}&uid=nobody%40example.com`)).toEqual(FAILED);
  });

  it('an expired token (fake clock at ttl): the same outcome as a wrong token', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t = linkApp(major);
    const ann = await requestLink(t);
    vi.setSystemTime(Date.now() + TTL);
    expect(await outcome(t, linkQuery(ann))).toEqual(FAILED);
  });

  it('the same expired token one ms earlier still works (the clock is really what refused it)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t = linkApp(major);
    const ann = await requestLink(t);
    vi.setSystemTime(Date.now() + TTL - 1);
    expect((await outcome(t, linkQuery(ann))).body).toMatchObject({ user: 'ann@example.com' });
  });

  it('a used token: the same outcome as a wrong token', async () => {
    const t = linkApp(major);
    const ann = await requestLink(t);
    expect((await outcome(t, linkQuery(ann))).body).toMatchObject({ user: 'ann@example.com' });
    expect(await outcome(t, linkQuery(ann))).toEqual(FAILED);
  });

  it('a code voided by maxAttempts: every wrong try and then the right code give the same outcome', async () => {
    const t = createApp({
      express: major,
      flash: true,
      init: { secret: 's'.repeat(32) },
      delivery: { numberToken: { max: 1_000_000 }, maxAttempts: 5 },
      accept: { failureFlash: FLASH },
    });
    const ann = await requestLink(t);
    const real = Number(ann.token);
    for (let i = 1; i <= 5; i++) {
      const wrong = String((real + i) % 1_000_000).padStart(6, '0');
      expect(await outcome(t, `token=${wrong}&uid=ann%40example.com`)).toEqual(FAILED);
    }
    expect(await outcome(t, linkQuery(ann))).toEqual(FAILED);
  });
});
