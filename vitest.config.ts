import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    alias: {
      'express-passwordless/delivery/email': fileURLToPath(
        new URL('./src/delivery/email.ts', import.meta.url),
      ),
      'express-passwordless/delivery/sms': fileURLToPath(new URL('./src/delivery/sms.ts', import.meta.url)),
      'express-passwordless/delivery/outbox': fileURLToPath(
        new URL('./src/delivery/outbox.ts', import.meta.url),
      ),
      'express-passwordless/stores/mongo': fileURLToPath(new URL('./stores/mongo/index.ts', import.meta.url)),
      'express-passwordless/stores/postgres': fileURLToPath(
        new URL('./stores/postgres/index.ts', import.meta.url),
      ),
      'express-passwordless/stores/redis': fileURLToPath(new URL('./stores/redis/index.ts', import.meta.url)),
      'express-passwordless/rate-limit': fileURLToPath(new URL('./src/rate-limit.ts', import.meta.url)),
      'express-passwordless/testing': fileURLToPath(new URL('./src/testing/index.ts', import.meta.url)),
      'express-passwordless': fileURLToPath(new URL('./src/index.ts', import.meta.url)),
    },
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
