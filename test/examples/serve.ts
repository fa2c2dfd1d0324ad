// Helpers for the example apps' tests: the app on a free port, a cookie-keeping fetch, the outbox, `npm` scripts.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ExampleApp } from '../../examples/shared/server.js';

export interface RunningExample<T extends ExampleApp> {
  url: string;
  example: T;
  close(): Promise<void>;
}

/** Listens on a free port of 127.0.0.1 first, so that the app is made with its real URL (links are built from it). */
export async function serveExample<T extends ExampleApp>(
  create: (appUrl: string) => T,
): Promise<RunningExample<T>> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const example = create(url);
  server.on('request', example.app);
  return {
    url,
    example,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await example.close();
    },
  };
}

export interface OutboxMessage {
  to: string;
  uid: string;
  link?: string;
  code?: string;
}

/** The newest message of the app's development outbox, read over HTTP as a developer would. */
export async function newestMessage(url: string): Promise<OutboxMessage> {
  const res = await fetch(`${url}/outbox/messages.json`);
  if (!res.ok) throw new Error(`GET /outbox/messages.json answered ${res.status}`);
  const [message] = (await res.json()) as OutboxMessage[];
  if (!message) throw new Error('the outbox is empty');
  return message;
}

export type Browse = (path: string, form?: Record<string, string>) => Promise<Response>;

/** A fetch that keeps the session cookie like a browser, never follows redirects, and POSTs `form` url-encoded. */
export function browse(base: string): Browse {
  let cookie = '';
  return async (path, form) => {
    const res = await fetch(path.startsWith('http') ? path : `${base}${path}`, {
      redirect: 'manual',
      method: form ? 'POST' : 'GET',
      headers: {
        ...(cookie ? { cookie } : {}),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      ...(form ? { body: new URLSearchParams(form).toString() } : {}),
    });
    for (const set of res.headers.getSetCookie()) cookie = set.split(';')[0]!;
    return res;
  };
}

export interface Script {
  output(): string;
  /** Resolves once the output contains `text`; rejects on exit or after `ms`. */
  waitFor(text: string, ms?: number): Promise<void>;
  stop(): void;
}

/** Runs `npm run <name>` as a newcomer would, in its own process group (so that stop() ends tsx and node too). */
export function npmRun(name: string, env: Record<string, string | undefined>): Script {
  let output = '';
  let exited = false;
  const child: ChildProcess = spawn('npm', ['run', '--silent', name], {
    env: { ...process.env, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d) => {
    output += String(d);
  });
  child.stderr?.on('data', (d) => {
    output += String(d);
  });
  child.on('exit', () => {
    exited = true;
  });
  return {
    output: () => output,
    async waitFor(text, ms = 20_000) {
      const deadline = Date.now() + ms;
      while (!output.includes(text)) {
        if (exited) throw new Error(`npm run ${name} exited:\n${output}`);
        if (Date.now() > deadline) throw new Error(`npm run ${name} did not print "${text}":\n${output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop() {
      if (!exited && child.pid) process.kill(-child.pid, 'SIGTERM');
    },
  };
}

/** A port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
