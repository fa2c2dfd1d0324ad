// The code-login example over HTTP, for what a browser does not try: the uid a code is checked against comes from
// the session only, never from the form or the query.
import { MemoryStore } from 'express-passwordless';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CodeLoginApp, createCodeLoginApp } from '../../examples/code-login/app.js';
import { browse, newestMessage, type RunningExample, serveExample } from './serve.js';

describe('code-login example: the uid comes from the session', () => {
  let app: RunningExample<CodeLoginApp>;

  beforeAll(async () => {
    app = await serveExample((appUrl) =>
      createCodeLoginApp({
        appUrl,
        store: new MemoryStore(),
        secret: 'http-test-secret-of-at-least-32-bytes',
        log: () => {},
      }),
    );
  });

  afterAll(() => app?.close());

  it('ignores a uid in the form and refuses one in the query', async () => {
    const dave = browse(app.url);
    const eve = browse(app.url);
    await dave('/login', { user: 'dave@example.com' });
    const daveCode = (await newestMessage(app.url)).code!;
    await eve('/login', { user: 'eve@example.com' });
    const eveCode = (await newestMessage(app.url)).code!;

    // Dave's session cannot check Eve's code against Eve's uid, by the query or by the form.
    const byQuery = await dave(`/login/code?uid=eve%40example.com&code=${eveCode}`, { code: eveCode });
    expect(byQuery.status).toBe(400);
    if (eveCode !== daveCode) {
      const byForm = await dave('/login/code', { code: eveCode, uid: 'eve@example.com' });
      expect(byForm.headers.get('location')).toBe('/login/code');
      expect((await dave('/account')).headers.get('location')).toBe('/login');
    }

    // The form's uid is ignored: Dave's code logs Dave in.
    const ok = await dave('/login/code', { code: daveCode, uid: 'eve@example.com' });
    expect(ok.headers.get('location')).toBe('/account');
    expect(await (await dave('/account')).text()).toContain('Hello, dave@example.com');

    // Eve's code is untouched by all this.
    expect((await eve('/login/code', { code: eveCode })).headers.get('location')).toBe('/account');
  });

  it('fills the code in from the outbox link, for the session that asked for it only', async () => {
    const go = browse(app.url);
    await go('/login', { user: 'frank@example.com' });
    const { link, code } = await newestMessage(app.url);
    expect(link).toBe(`${app.url}/login/code?code=${code}&uid=frank%40example.com`);
    expect(await (await go(link!)).text()).toContain(`value="${code}"`);
    const other = browse(app.url);
    await other('/login', { user: 'grace@example.com' });
    expect(await (await other(link!)).text()).not.toContain(`value="${code}"`);
  });

  it('needs a pending request before a code', async () => {
    const go = browse(app.url);
    expect((await go('/login/code', { code: '123456' })).headers.get('location')).toBe('/login');
    expect((await go('/login/code')).headers.get('location')).toBe('/login');
  });

  it('escapes what it shows', async () => {
    const go = browse(app.url);
    const refused = await go('/login', { user: '<script>@example.com' });
    expect(refused.headers.get('location')).toBe('/login');
    expect(await (await go('/login')).text()).toContain('Please enter a valid email address');
    await go('/guest', {});
    const page = await (await go('/account')).text();
    expect(page).not.toMatch(/<script/i);
  });
});
