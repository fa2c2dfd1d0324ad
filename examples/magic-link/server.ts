// `npm start`: the magic-link example on http://localhost:3000 (PORT, APP_URL, HOST and the store URLs: see
// examples/README.md).
import { runExample } from '../shared/server.js';
import { createMagicLinkApp } from './app.js';

runExample('Magic-link example', (setup) => createMagicLinkApp(setup)).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
