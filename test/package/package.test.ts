import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

// These tests check the built files that users install, not the sources. `npm test` builds first (pretest).
const require = createRequire(import.meta.url);
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
  exports: Record<string, { import?: { default: string }; require?: { default: string } } | string>;
};
const entries = Object.entries(pkg.exports).filter(([, v]) => typeof v === 'object') as [
  string,
  { import: { default: string; types: string }; require: { default: string; types: string } },
][];

/** The checked-in public surface of every entry point: an accidental export, or a lost one, fails here. */
const SURFACE: Record<string, string[]> = {
  '.': ['ERROR_CODES', 'MemoryStore', 'Passwordless', 'PasswordlessError', 'default', 'isSafeRedirect'],
  './testing': ['tokenStoreContract'],
  './delivery/email': ['emailDelivery', 'escapeHtml'],
  './delivery/sms': ['defaultSmsBody', 'smsDelivery', 'smsSegments'],
  './delivery/outbox': ['devOutbox'],
  './stores/mongo': ['MongoStore'],
  './stores/postgres': ['PostgresStore', 'schemaSql'],
  './stores/redis': ['RedisStore'],
  './rate-limit': ['acceptLimiter', 'normaliseRecipient', 'recipientLimiter', 'requestLimiter'],
};

function importsOf(file: string): string[] {
  const code = readFileSync(file, 'utf8');
  return [...code.matchAll(/(?:from\s+|require\(|import\()["']([^"']+)["']/g)].map((m) => m[1]!);
}

beforeAll(() => {
  if (!existsSync('dist/index.js')) execFileSync('npx', ['tsup'], { stdio: 'inherit' });
});

describe('built package', () => {
  it('every exports entry has ESM, CJS and both type files on disk', () => {
    for (const [, target] of entries) {
      for (const file of [
        target.import.default,
        target.import.types,
        target.require.default,
        target.require.types,
      ]) {
        expect(existsSync(file), file).toBe(true);
      }
    }
    expect(Object.keys(SURFACE).sort()).toEqual(
      entries
        .map(([name]) => name)
        .filter((n) => n in SURFACE)
        .sort(),
    );
  });

  it.each(Object.keys(SURFACE))('ESM import of %s has exactly the checked-in exports', async (entry) => {
    const target = entries.find(([name]) => name === entry)![1];
    const mod = await import(pathToFileURL(target.import.default).href);
    expect(Object.keys(mod).sort()).toEqual(SURFACE[entry]);
  });

  it('CJS require of . returns the default instance with the named exports attached', () => {
    const mod = require('../../dist/index.cjs');
    expect(typeof mod.init).toBe('function');
    expect(typeof mod.requestToken).toBe('function');
    expect(mod.default).toBe(mod);
    expect(mod).toBeInstanceOf(mod.Passwordless);
    for (const name of SURFACE['.']!) expect(mod[name], name).toBeDefined();
  });

  it('a PasswordlessError from the CJS build is instanceof the ESM class, and the reverse', async () => {
    const cjs = require('../../dist/index.cjs');
    const esm = await import(pathToFileURL('dist/index.js').href);
    expect(new cjs.PasswordlessError('STORE_ERROR', 'x')).toBeInstanceOf(esm.PasswordlessError);
    expect(new esm.PasswordlessError('STORE_ERROR', 'x')).toBeInstanceOf(cjs.PasswordlessError);
  });

  it('the core entry imports no driver, and only node built-ins', () => {
    for (const file of ['dist/index.js', 'dist/index.cjs']) {
      expect(
        // jose (API mode) is loaded on demand by createRequire, never imported: apps without `jwt` need not install it.
        importsOf(file).filter((name) => !isBuiltin(name)),
        file,
      ).toEqual([]);
    }
  });

  it.each([
    ['delivery/email', ['crypto', 'nodemailer']],
    ['delivery/sms', ['crypto']],
    ['delivery/outbox', ['crypto', 'express']],
    ['testing', ['crypto', 'vitest']],
    ['stores/mongo', ['crypto']],
    ['stores/postgres', ['crypto']],
    ['stores/redis', ['crypto']],
    ['rate-limit', ['express-rate-limit']],
  ])('dist/%s imports only %j (its own peer, never another driver)', (entry, allowed) => {
    for (const file of [`dist/${entry}.js`, `dist/${entry}.cjs`]) {
      const names = importsOf(file).map((n) => n.replace(/^node:/, ''));
      expect(
        names.filter((n) => !allowed.includes(n) && !isBuiltin(n)),
        file,
      ).toEqual([]);
    }
  });

  it('the package has no runtime dependencies beyond nanoid', () => {
    const deps = Object.keys(
      (JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies?: object }).dependencies ?? {},
    );
    expect(deps.filter((d) => d !== 'nanoid')).toEqual([]);
  });
});
