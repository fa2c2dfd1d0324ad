import { defineConfig } from 'tsup';

// Each entry point of the package's `exports` map (keep in step with package.json and test/package).
const entry = {
  index: 'src/index.ts',
  testing: 'src/testing/index.ts',
  'rate-limit': 'src/rate-limit.ts',
  'stores/redis': 'stores/redis/index.ts',
  'stores/postgres': 'stores/postgres/index.ts',
  'stores/mongo': 'stores/mongo/index.ts',
  'delivery/outbox': 'src/delivery/outbox.ts',
  'delivery/sms': 'src/delivery/sms.ts',
  'delivery/email': 'src/delivery/email.ts',
};

export default defineConfig([
  {
    entry,
    format: ['esm', 'cjs'],
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'node20',
    platform: 'node',
    splitting: false,
    // import.meta.url in the CJS build too (api-mode loads the optional peer jose with createRequire).
    shims: true,
    // `require('express-passwordless')` returns the default instance itself with the named exports attached
    // (`const passwordless = require(...)` as in 1.x and passport; `.default` and `{ Passwordless }` work too).
    footer: ({ format }) =>
      format === 'cjs'
        ? {
            js: [
              'if (module.exports && module.exports.default) {',
              '  const exported = module.exports; const instance = exported.default;',
              '  for (const key of Object.keys(exported)) if (key !== "default") instance[key] = exported[key];',
              '  instance.default = instance; module.exports = instance;',
              '}',
            ].join('\n'),
          }
        : {},
  },
]);
