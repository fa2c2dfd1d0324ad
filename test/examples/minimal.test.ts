import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// `npm start` as a newcomer runs it: the example app from the TypeScript sources, no build step.
let child: ChildProcess;
let base: string;
let output = '';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  const port = await freePort();
  base = `http://localhost:${port}`;
  child = spawn('npm', ['start', '--silent'], {
    env: { ...process.env, PORT: String(port), NODE_ENV: 'development' },
  });
  child.stdout?.on('data', (d) => {
    output += String(d);
  });
  child.stderr?.on('data', (d) => {
    output += String(d);
  });
  const deadline = Date.now() + 20_000;
  while (!output.includes('Magic-link example')) {
    if (Date.now() > deadline) throw new Error(`npm start did not come up:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}, 30_000);

afterAll(() => {
  child?.kill();
});

describe('npm start (examples/minimal)', () => {
  it('prints the URL, sends a link to the console and the outbox, and the link logs in', async () => {
    expect(output).toContain(base);
    let cookie = '';
    const go = async (url: string, init: RequestInit = {}) => {
      const res = await fetch(url, {
        redirect: 'manual',
        ...init,
        headers: { cookie, ...(init.headers ?? {}) },
      });
      const set = res.headers.get('set-cookie');
      if (set) cookie = set.split(';')[0]!;
      return res;
    };
    const sent = await go(`${base}/sendtoken`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'user=newcomer%40example.com',
    });
    expect(sent.status).toBe(200);
    const [message] = (await (await go(`${base}/outbox/messages.json`)).json()) as {
      link: string;
      to: string;
    }[];
    expect(message?.to).toBe('newcomer@example.com');
    expect(output).toContain(message!.link);
    expect((await go(message!.link)).status).toBe(302);
    const page = await go(`${base}/restricted`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('newcomer@example.com');
    await go(`${base}/logout`);
    expect((await go(`${base}/restricted`)).status).toBe(302);
  });
});
