// The API example's web client in a real browser: an address, then the 6-digit code from the outbox; /api/me called
// with the bearer token; a reload that gets a new access token with the refresh token kept in sessionStorage; a
// refresh by itself once the access token has expired; a replayed refresh token ending the login; logging out, here
// and on every device; the outbox's link filling the code in.
import { MemoryStore } from 'express-passwordless';
import type { Page, Response } from 'playwright-core';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, beforeEach, expect, it, vi } from 'vitest';
import { type ApiApp, createApiApp } from '../../examples/api/app.js';
import { newestMessage, type RunningExample, serveExample } from '../examples/serve.js';
import { type Browser, describeWithChromium, launchBrowser, screenshot, seen } from './browser.js';

const describeE2e = describeWithChromium('API example (end-to-end, Chromium)');

interface TokenAnswer {
  uid: string;
  accessToken: string;
  refreshToken: string;
}

const REFRESH_KEY = 'api-example.refreshToken';

/** The page's Web Storage, for page.evaluate() (the tests compile without the DOM library). */
interface WebStorage {
  readonly length: number;
  getItem(key: string): string | null;
}
type PageGlobals = typeof globalThis & { sessionStorage: WebStorage; localStorage: WebStorage };

describeE2e('API example in Chromium', () => {
  let browser: Browser;
  let app: RunningExample<ApiApp>;
  let page: Page;
  const printed: string[] = [];

  beforeAll(async () => {
    app = await serveExample((appUrl) =>
      createApiApp({
        appUrl,
        store: new MemoryStore(),
        secret: 'e2e-test-secret-of-at-least-32-bytes!',
        jwtSecret: 'e2e-jwt-secret-of-at-least-32-bytes!!',
        log: (line) => printed.push(line),
      }),
    );
    browser = await launchBrowser();
  }, 40_000);

  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  // A new tab for each test: sessionStorage belongs to one tab.
  beforeEach(async () => {
    page = await browser.context.newPage();
  });
  afterEach(async () => {
    vi.useRealTimers();
    await page.close();
  });

  const heading = () => seen(page.locator('h1:visible'));
  const dd = (term: string) => seen(page.locator(`dt:text-is("${term}") + dd`));
  const storedRefreshToken = () =>
    page.evaluate((key) => (globalThis as PageGlobals).sessionStorage.getItem(key), REFRESH_KEY);
  /** The next answer of `path`, with its JSON body. */
  const answerOf = (path: string) =>
    page.waitForResponse((res: Response) => new URL(res.url()).pathname === path);

  /** Asks for a code for `email` in the page, and returns the code from the outbox. */
  async function requestCode(url: string, email: string, shot?: string): Promise<string> {
    await page.getByLabel('Email address').fill(email);
    await page.getByRole('button', { name: 'Send me a code' }).click();
    await page.getByRole('heading', { name: 'Enter your code' }).waitFor();
    expect(await seen(page.locator('main'))).toContain(email.trim().toLowerCase());
    expect(await seen(page.getByRole('status'))).toBe('We sent you a code.');
    if (shot) await screenshot(page, shot);
    const message = await newestMessage(url);
    expect(message.to).toBe(email.trim().toLowerCase());
    expect(message.code).toMatch(/^\d{6}$/);
    expect(printed.at(-1)).toContain(message.code);
    return message.code!;
  }

  /** Types the code, logs in, and returns the token pair the API answered. */
  async function enterCode(code: string): Promise<TokenAnswer> {
    await page.getByLabel('6-digit code').fill(code);
    const accepted = answerOf('/auth/accept');
    await page.getByRole('button', { name: 'Log in', exact: true }).click();
    const res = await accepted;
    expect(res.status()).toBe(200);
    return (await res.json()) as TokenAnswer;
  }

  async function logIn(url: string, email: string): Promise<TokenAnswer> {
    await page.goto(url);
    const tokens = await enterCode(await requestCode(url, email));
    await page.getByRole('heading', { name: `Hello, ${email}` }).waitFor();
    return tokens;
  }

  /** What the API answers the page's own fetch with these tokens (as a script in the page would send them). */
  function replay(path: string, init: { bearer?: string; body?: object }) {
    return page.evaluate(
      async ({ path, init }) => {
        const res = await fetch(path, {
          method: init.body ? 'POST' : 'GET',
          headers: {
            accept: 'application/json',
            ...(init.body ? { 'content-type': 'application/json' } : {}),
            ...(init.bearer ? { authorization: `Bearer ${init.bearer}` } : {}),
          },
          ...(init.body ? { body: JSON.stringify(init.body) } : {}),
        });
        return { status: res.status, body: await res.json() };
      },
      { path, init },
    );
  }

  it('logs in with the code, calls /api/me with the bearer token, refreshes on reload, and logs out', async () => {
    const { url } = app;
    await page.goto(url);
    expect(await heading()).toBe('Log in with a code');
    await screenshot(page, 'api-1-email');
    const code = await requestCode(url, 'Ada@Example.com', 'api-2-enter-code');

    // A wrong code is refused, and the code can be typed again.
    await page.getByLabel('6-digit code').fill(code === '000000' ? '000001' : '000000');
    await page.getByRole('button', { name: 'Log in', exact: true }).click();
    expect(await seen(page.getByRole('alert'))).toContain('That code is not right');
    await screenshot(page, 'api-3-wrong-code');

    // The right code: tokens; /api/me is called with the access token, and its uid shown.
    const meRequest = page.waitForRequest((req) => new URL(req.url()).pathname === '/api/me');
    const login = await enterCode(code);
    expect(login.uid).toBe('ada@example.com');
    expect((await meRequest).headers().authorization).toBe(`Bearer ${login.accessToken}`);
    await page.getByRole('heading', { name: 'Hello, ada@example.com' }).waitFor();
    expect(await dd('uid from GET /api/me')).toBe('ada@example.com');
    expect(await seen(page.locator('header'))).toContain('Logged in as ada@example.com');
    expect(await seen(page.getByRole('status'))).toBe('You are logged in.');
    await screenshot(page, 'api-4-logged-in');

    // Where the tokens are: the refresh token in this tab's sessionStorage; the access token nowhere but in memory;
    // no cookie, nothing in localStorage.
    expect(await storedRefreshToken()).toBe(login.refreshToken);
    const storage = await page.evaluate(() => {
      const { localStorage, sessionStorage } = globalThis as PageGlobals;
      return { local: localStorage.length, session: Object.values(sessionStorage) };
    });
    expect(storage).toEqual({ local: 0, session: [login.refreshToken] });
    expect(await browser.context.cookies(url)).toEqual([]);

    // A reload forgets the access token; the refresh token gets a new pair, and /api/me is called with it.
    const refreshed = answerOf('/auth/refresh');
    const meAgain = page.waitForRequest((req) => new URL(req.url()).pathname === '/api/me');
    await page.reload();
    const afterReload = (await (await refreshed).json()) as TokenAnswer;
    expect(afterReload.refreshToken).not.toBe(login.refreshToken);
    expect((await meAgain).headers().authorization).toBe(`Bearer ${afterReload.accessToken}`);
    await page.getByRole('heading', { name: 'Hello, ada@example.com' }).waitFor();
    expect(await dd('uid from GET /api/me')).toBe('ada@example.com');
    expect(await storedRefreshToken()).toBe(afterReload.refreshToken);
    await screenshot(page, 'api-5-after-reload');

    // The button refreshes too.
    const byButton = answerOf('/auth/refresh');
    await page.getByRole('button', { name: 'Refresh the tokens' }).click();
    const latest = (await (await byButton).json()) as TokenAnswer;
    await page.getByText('New tokens: the access token now expires at').waitFor();
    expect(await storedRefreshToken()).toBe(latest.refreshToken);

    // Log out: the tab forgets the tokens, and the API refuses them from now on.
    await page.getByRole('button', { name: 'Log out', exact: true }).click();
    await page.getByRole('heading', { name: 'Log in with a code' }).waitFor();
    expect(await seen(page.getByRole('status'))).toBe('You are logged out.');
    expect(await storedRefreshToken()).toBeNull();
    expect(await seen(page.locator('header'))).not.toContain('Logged in');
    await screenshot(page, 'api-6-logged-out');
    expect(await replay('/api/me', { bearer: latest.accessToken })).toEqual({
      status: 401,
      body: { error: 'invalid_token' },
    });
    expect(await replay('/auth/refresh', { body: { refreshToken: latest.refreshToken } })).toEqual({
      status: 401,
      body: { error: 'invalid_grant' },
    });
    await page.reload();
    expect(await heading()).toBe('Log in with a code');
  }, 60_000);

  it('refreshes by itself when the API says the access token has expired', async () => {
    const { url } = app;
    const first = await logIn(url, 'grace@example.com');
    const answers: string[] = [];
    page.on('response', (res) => {
      answers.push(`${res.request().method()} ${new URL(res.url()).pathname} ${res.status()}`);
    });
    // 16 minutes later for the server (this process: only its Date is faked, and keeps running); the page still
    // holds the access token of the login, which has expired.
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    vi.setSystemTime(Date.now() + 16 * 60_000);

    await page.getByRole('button', { name: 'Call /api/me' }).click();
    await expect.poll(() => answers.at(-1)).toBe('GET /api/me 200');
    expect(answers).toEqual(['GET /api/me 401', 'POST /auth/refresh 200', 'GET /api/me 200']);
    expect(await dd('uid from GET /api/me')).toBe('grace@example.com');
    expect(await storedRefreshToken()).not.toBe(first.refreshToken);
    expect(await seen(page.locator('#last'))).toMatch(/^200 \{/);
  }, 60_000);

  it('a stolen refresh token, used first by the thief, ends the login in the page', async () => {
    const { url } = app;
    await logIn(url, 'bob@example.com');
    // The thief uses the copy first: it gets a pair, and the token in this tab is now a spent one.
    const stolen = await storedRefreshToken();
    await request(url).post('/auth/refresh').send({ refreshToken: stolen }).expect(200);

    await page.reload();
    expect(await seen(page.getByRole('alert'))).toBe('Your login has ended. Please log in again.');
    expect(await heading()).toBe('Log in with a code');
    expect(await storedRefreshToken()).toBeNull();
    await screenshot(page, 'api-7-login-ended');
  }, 60_000);

  it('logs out on every device: a login made elsewhere (a mobile app) ends too', async () => {
    const { url } = app;
    await logIn(url, 'dave@example.com');
    // The same user on another device, through the API alone.
    await request(url).post('/auth/request').send({ user: 'dave@example.com' }).expect(202);
    const { code } = await newestMessage(url);
    const phone = await request(url)
      .post('/auth/accept')
      .send({ uid: 'dave@example.com', token: code })
      .expect(200);
    await request(url).get('/api/me').set('Authorization', `Bearer ${phone.body.accessToken}`).expect(200);

    await page.getByRole('button', { name: 'Log out on every device' }).click();
    await page.getByRole('heading', { name: 'Log in with a code' }).waitFor();
    expect(await seen(page.getByRole('status'))).toBe('You are logged out on every device.');
    expect(await storedRefreshToken()).toBeNull();
    await request(url).get('/api/me').set('Authorization', `Bearer ${phone.body.accessToken}`).expect(401);
    const refreshed = await request(url)
      .post('/auth/refresh')
      .send({ refreshToken: phone.body.refreshToken });
    expect([refreshed.status, refreshed.body]).toEqual([401, { error: 'invalid_grant' }]);
  }, 60_000);

  it("fills the code in from the outbox's link, and takes the query out of the address bar", async () => {
    const { url } = app;
    await page.goto(url);
    await requestCode(url, 'carol@example.com');
    const { link, code } = await newestMessage(url);
    expect(link).toBe(`${url}/?token=${code}&uid=carol%40example.com`);

    await page.goto(link!);
    await page.getByRole('heading', { name: 'Enter your code' }).waitFor();
    expect(page.url()).toBe(`${url}/`);
    expect(await page.getByLabel('6-digit code').inputValue()).toBe(code);
    // Opening the link consumed nothing: the code still logs in once the person confirms.
    await enterCode(code!);
    await page.getByRole('heading', { name: 'Hello, carol@example.com' }).waitFor();
  }, 60_000);
});
