// `npm start` and `npm run example:code` as a newcomer runs them: from the TypeScript sources, no build step, on
// MemoryStore and the outbox; each prints the store it uses and the URL to open, and a login works.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browse, freePort, newestMessage, npmRun, type Script } from './serve.js';

// Neither example may pick a database up from the developer's environment here.
const NO_STORE = { REDIS_URL: undefined, MONGODB_URL: undefined, DATABASE_URL: undefined };

describe('npm start (magic-link example)', () => {
  let script: Script;
  let base: string;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://localhost:${port}`;
    script = npmRun('start', {
      ...NO_STORE,
      PORT: String(port),
      APP_URL: undefined,
      NODE_ENV: 'development',
    });
    await script.waitFor(`open ${base} in your browser`);
  }, 30_000);

  afterAll(() => script?.stop());

  it('prints the store and the URL, and logs in by the link it prints', async () => {
    expect(script.output()).toContain('token store: MemoryStore');
    const go = browse(base);
    const home = await go('/');
    expect(home.status).toBe(200);
    expect(await home.text()).toContain('<html lang="en">');
    expect((await go('/assets/style.css')).headers.get('content-type')).toMatch(/^text\/css/);

    const sent = await go('/login', { user: 'newcomer@example.com' });
    expect(sent.headers.get('location')).toBe('/login/sent');
    const message = await newestMessage(base);
    expect(message.to).toBe('newcomer@example.com');
    await script.waitFor(message.link!, 5000); // printed to the console as well
    expect((await go(message.link!)).headers.get('location')).toBe('/');
    const account = await go('/account');
    expect(account.status).toBe(200);
    expect(await account.text()).toContain('Hello, newcomer@example.com');
    expect((await go('/logout', {})).headers.get('location')).toBe('/');
    expect((await go('/account')).headers.get('location')).toBe('/login?origin=%2Faccount');
  });
});

describe('npm run example:code (code-login example)', () => {
  let script: Script;
  let base: string;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://localhost:${port}`;
    script = npmRun('example:code', {
      ...NO_STORE,
      PORT: String(port),
      APP_URL: undefined,
      PASSWORDLESS_SECRET: undefined,
      NODE_ENV: 'development',
    });
    await script.waitFor(`open ${base} in your browser`);
  }, 30_000);

  afterAll(() => script?.stop());

  it('prints the store, the URL and the code, and logs in with the code', async () => {
    expect(script.output()).toContain('token store: MemoryStore');
    expect(script.output()).toContain('PASSWORDLESS_SECRET is not set');
    const go = browse(base);
    expect((await go('/login', { user: 'newcomer@example.com' })).headers.get('location')).toBe(
      '/login/code',
    );
    const { code } = await newestMessage(base);
    expect(code).toMatch(/^\d{6}$/);
    await script.waitFor(`Login code for newcomer@example.com: ${code}`, 5000);
    expect((await go('/login/code', { code: code! })).headers.get('location')).toBe('/account');
    expect(await (await go('/account')).text()).toContain('Hello, newcomer@example.com');
  });
});
