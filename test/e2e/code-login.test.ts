// The code-login example in a real browser: an address, then the 6-digit code from the outbox; a guest account
// that is kept by verifying an address (same account afterwards), and a guest that expires after a day.
import { MemoryStore } from 'express-passwordless';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { type CodeLoginApp, createCodeLoginApp } from '../../examples/code-login/app.js';
import { newestMessage, type RunningExample, serveExample } from '../examples/serve.js';
import { type Browser, describeWithChromium, launchBrowser, screenshot, seen } from './browser.js';

const describeE2e = describeWithChromium('code-login example (end-to-end, Chromium)');

describeE2e('code-login example in Chromium', () => {
  let browser: Browser;
  let app: RunningExample<CodeLoginApp>;
  let page: Page;
  let url: string;
  let clockOffset = 0;
  const printed: string[] = [];

  beforeAll(async () => {
    app = await serveExample((appUrl) =>
      createCodeLoginApp({
        appUrl,
        store: new MemoryStore(),
        secret: 'e2e-test-secret-of-at-least-32-bytes!',
        log: (line) => printed.push(line),
        now: () => Date.now() + clockOffset,
      }),
    );
    url = app.url;
    browser = await launchBrowser();
    page = browser.page;
  }, 40_000);

  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  beforeEach(async () => {
    clockOffset = 0;
    await browser.context.clearCookies();
  });

  const heading = () => seen(page.locator('h1'));
  const main = () => seen(page.locator('main'));
  const dd = (term: string) => seen(page.locator(`dt:text-is("${term}") + dd`));

  /** Fills the address on the page at hand, sends it, and returns the code from the outbox. */
  async function requestCode(email: string, shot?: string): Promise<string> {
    await page.getByLabel('Email address').fill(email);
    await page.getByRole('button', { name: 'Send me a code' }).click();
    await page.waitForURL(`${url}/login/code`);
    expect(await heading()).toBe('Enter your code');
    expect(await main()).toContain(email.toLowerCase());
    if (shot) await screenshot(page, shot);
    const message = await newestMessage(url);
    expect(message.to).toBe(email.toLowerCase());
    expect(message.code).toMatch(/^\d{6}$/);
    expect(printed.at(-1)).toContain(message.code);
    return message.code!;
  }

  async function enterCode(code: string): Promise<void> {
    await page.getByLabel('6-digit code').fill(code);
    await page.getByRole('button', { name: 'Log in', exact: true }).click();
  }

  async function logOut(): Promise<void> {
    await page.locator('main').getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${url}/`);
  }

  it('logs in with an address and the code, keeps the session, and logs out', async () => {
    await page.goto(url);
    expect(await heading()).toBe('Log in with a code');
    await screenshot(page, 'code-login-1-home');
    await page.getByRole('link', { name: 'Log in with email' }).click();
    await page.waitForURL(`${url}/login`);
    await screenshot(page, 'code-login-2-login');
    const code = await requestCode('Bob@Example.com', 'code-login-3-enter-code');

    // A wrong code is refused, and the form is shown again.
    await enterCode(code === '000000' ? '000001' : '000000');
    await page.waitForURL(`${url}/login/code`);
    expect(await seen(page.getByRole('alert'))).toContain('That code is not right');
    await screenshot(page, 'code-login-4-wrong-code');

    await enterCode(code);
    await page.waitForURL(`${url}/account`);
    expect(await heading()).toBe('Hello, bob@example.com');
    expect(await seen(page.locator('.badge'))).toBe('Permanent account');
    expect(await seen(page.getByRole('status'))).toContain('Your account for bob@example.com is ready');
    await screenshot(page, 'code-login-5-account');

    await page.reload();
    expect(await heading()).toBe('Hello, bob@example.com');

    await logOut();
    expect(await seen(page.getByRole('status'))).toBe('You are logged out.');
    await page.goto(`${url}/account`);
    await page.waitForURL(`${url}/login`);
    expect(await seen(page.getByRole('alert'))).toBe('Please log in to see that page.');
  }, 60_000);

  it('keeps a guest account by verifying an address: the same account, now permanent', async () => {
    await page.goto(url);
    await page.getByRole('button', { name: 'Continue as guest' }).click();
    await page.waitForURL(`${url}/account`);
    expect(await heading()).toBe('Hello, Guest');
    expect(await seen(page.locator('.badge'))).toBe('Guest account');
    const guestUid = await dd('Account id');
    expect(guestUid).toMatch(/^guest:[\w-]{12}$/);
    expect(app.example.accounts.get(guestUid)?.expiresAt).toBeGreaterThan(Date.now() + 23 * 3_600_000);
    await screenshot(page, 'code-login-6-guest');

    await page.reload();
    expect(await dd('Account id')).toBe(guestUid);

    // Requesting a code as a guest links the address to the guest's uid.
    const code = await requestCode('carol@example.com', 'code-login-7-guest-enter-code');
    expect(await main()).toContain('links this address to your guest account');
    expect((await newestMessage(url)).uid).toBe(guestUid);
    await enterCode(code);
    await page.waitForURL(`${url}/account`);
    expect(await heading()).toBe('Hello, carol@example.com');
    expect(await seen(page.locator('.badge'))).toBe('Permanent account');
    expect(await dd('Account id')).toBe(guestUid);
    expect(await dd('Status')).toBe('permanent, linked to carol@example.com');
    expect(await seen(page.getByRole('status'))).toBe(
      'Your account is now permanent, linked to carol@example.com.',
    );
    await screenshot(page, 'code-login-8-guest-kept');

    // Kept: it outlives the guest day, and the address logs into the same account from now on.
    clockOffset = 25 * 3_600_000;
    await page.reload();
    expect(await dd('Account id')).toBe(guestUid);
    await logOut();
    await page.goto(`${url}/login`);
    await enterCode(await requestCode('carol@example.com'));
    await page.waitForURL(`${url}/account`);
    expect(await dd('Account id')).toBe(guestUid);
    expect(await heading()).toBe('Hello, carol@example.com');
  }, 60_000);

  it('logs a guest out and forgets the account after a day', async () => {
    await page.goto(url);
    await page.getByRole('button', { name: 'Continue as guest' }).click();
    await page.waitForURL(`${url}/account`);
    const guestUid = await dd('Account id');

    clockOffset = 24 * 3_600_000 + 1000;
    await page.reload();
    await page.waitForURL(`${url}/login`);
    expect(await seen(page.locator('main'))).toContain('Your guest account was deleted');
    expect(await seen(page.locator('header'))).not.toContain('Logged in');
    expect(app.example.accounts.get(guestUid)).toBeUndefined();
    await screenshot(page, 'code-login-9-guest-expired');
  }, 60_000);
});
