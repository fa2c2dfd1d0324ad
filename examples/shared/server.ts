// Starts an example app: picks the token store, listens, and prints where to go. Used by each example's server.ts.
import type { Server } from 'node:http';
import type { Express } from 'express';
import type { TokenStore } from 'express-passwordless';
import { openStore } from './store.js';

export interface ExampleSetup {
  /** The URL people open (no trailing slash). */
  appUrl: string;
  store: TokenStore;
}

export interface ExampleApp {
  app: Express;
  /** Stops the app's own timers; the store is closed by the caller. */
  close(): void | Promise<void>;
}

/**
 * Runs `create` on the store chosen by the environment and listens on PORT (default 3000) of HOST (default
 * `localhost`: the outbox lists live login links, so the app is not offered to the network unless you ask).
 * APP_URL is the address people open (default `http://localhost:PORT`); links in messages are built from it.
 */
export async function runExample(name: string, create: (setup: ExampleSetup) => ExampleApp): Promise<void> {
  const port = Number(process.env.PORT ?? 3000);
  const host = process.env.HOST ?? 'localhost';
  const appUrl = (process.env.APP_URL ?? `http://localhost:${port}`).replace(/\/+$/, '');
  const opened = await openStore();
  const example = create({ appUrl, store: opened.store });
  const server: Server = example.app.listen(port, host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  console.log(`${name}
  token store: ${opened.description}
  open ${appUrl} in your browser (development outbox at ${appUrl}/outbox); stop with Ctrl+C`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.close();
    server.closeAllConnections();
    await example.close();
    await opened.close();
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      stop().then(
        () => process.exit(0),
        (err: unknown) => {
          console.error(err);
          process.exit(1);
        },
      );
    });
  }
}
