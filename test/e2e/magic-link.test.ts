// The magic-link example in a real browser: log in by the link from the outbox, come back to the page that was
// asked for, keep the session over a reload, log out, and be refused the restricted page.
import { MemoryStore } from 'express-passwordless';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createMagicLinkApp, type MagicLinkApp } from '../../examples/magic-link/app.js';
import { newestMessage, type RunningExample, serveExample } from '../examples/serve.js';
import { type Browser, describeWithChromium, launchBrowser, screenshot, seen } from './browser.js';

const describeE2e = describeWithChromium('magic-link example (end-to-end, Chromium)');

describeE2e('magic-link example in Chromium', () => {
  let browser: Browser;
  let app: RunningExample<MagicLinkApp>;
  const printed: string[] = [];

  beforeAll(async () => {
    app = await serveExample((appUrl) =>
      createMagicLinkApp({ appUrl, store: new MemoryStore(), log: (line) => printed.push(line) }),
    );
    browser = await launchBrowser();
  }, 40_000);

  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  it('logs in by the link, returns to the asked-for page, keeps the session, and logs out', async () => {
    const { page } = browser;
    const { url } = app;

    await page.goto(url);
    expect(await seen(page.locator('h1'))).toBe('Log in without a password');
    await screenshot(page, 'magic-link-1-home');

    // A restricted page sends a visitor to the login form, which remembers where they were going.
    await page.getByRole('link', { name: 'Account', exact: true }).click();
    await page.waitForURL(`${url}/login?origin=%2Faccount`);
    expect(await seen(page.getByRole('alert'))).toBe('Please log in to see that page.');
    await page.getByLabel('Email address').fill('Ada@Example.com');
    await screenshot(page, 'magic-link-2-login', 'magic-link-login');
    await page.getByRole('button', { name: 'Email me a login link' }).click();

    await page.waitForURL(`${url}/login/sent`);
    expect(await seen(page.locator('h1'))).toBe('Check your inbox');
    expect(await seen(page.locator('main'))).toContain('ada@example.com');
    await screenshot(page, 'magic-link-3-sent');

    const message = await newestMessage(url);
    expect(message.to).toBe('ada@example.com');
    expect(message.link).toMatch(new RegExp(`^${url}/auth\\?token=\\w+&uid=ada%40example\\.com$`));
    expect(printed.join('\n')).toContain(message.link);

    await page.goto(message.link!);
    await page.waitForURL(`${url}/account`);
    expect(await seen(page.locator('h1'))).toBe('Hello, ada@example.com');
    expect(await seen(page.getByRole('status'))).toBe('You are logged in.');
    await screenshot(page, 'magic-link-4-account', 'magic-link-account');

    await page.reload();
    expect(await seen(page.locator('h1'))).toBe('Hello, ada@example.com');
    expect(await seen(page.locator('header'))).toContain('Logged in as ada@example.com');

    await page.locator('main').getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${url}/`);
    expect(await seen(page.getByRole('status'))).toBe('You are logged out.');
    await screenshot(page, 'magic-link-5-logged-out');

    await page.goto(`${url}/account`);
    await page.waitForURL(`${url}/login?origin=%2Faccount`);
    expect(await seen(page.locator('h1'))).toBe('Log in');

    // The link worked once.
    await page.goto(message.link!);
    await page.waitForURL(`${url}/login`);
    expect(await seen(page.getByRole('alert'))).toContain('invalid, expired or already used');
    await screenshot(page, 'magic-link-6-used-link');
  }, 60_000);
});
