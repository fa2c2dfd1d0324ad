// `npm run example:code`: the code-login example on http://localhost:3000 (PORT, APP_URL, HOST, PASSWORDLESS_SECRET
// and the store URLs: see examples/README.md).
import { runExample } from '../shared/server.js';
import { createCodeLoginApp } from './app.js';

runExample('Code-login example', (setup) => createCodeLoginApp(setup)).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
