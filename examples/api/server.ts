// `npm run example:api`: the API example on http://localhost:3000 (PORT, APP_URL, HOST, JWT_SECRET,
// PASSWORDLESS_SECRET and the store URLs: see examples/README.md and examples/api/README.md).
import { PasswordlessError } from 'express-passwordless';
import { runExample } from '../shared/server.js';
import { createApiApp } from './app.js';

/** Which variable chose the store, in the order examples/shared/store.ts reads them. */
function storeVariable(): string | undefined {
  return ['REDIS_URL', 'MONGODB_URL', 'DATABASE_URL'].find((name) => process.env[name]);
}

runExample('API example (JSON API and single-page client)', (setup) => createApiApp(setup)).catch(
  (err: unknown) => {
    if (err instanceof PasswordlessError && err.code === 'INVALID_STORE') {
      const variable = storeVariable();
      console.error(`The API example cannot start: this token store cannot keep refresh tokens.
  ${err.message}
  ${
    variable
      ? `The store was chosen by ${variable}: unset it to run on MemoryStore (npm run example:api).`
      : 'Use MemoryStore (no REDIS_URL, MONGODB_URL or DATABASE_URL).'
  }`);
    } else {
      console.error(err instanceof Error ? err.message : err);
    }
    process.exit(1);
  },
);
