import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The package as users get it: `npm pack`, installed into an app outside the repository, driven over HTTP from
// ESM and from CommonJS, and type-checked by a TypeScript consumer against the shipped .d.ts files.
const root = resolve('.');
let dir: string;

function run(cmd: string, args: string[], cwd = dir): string {
  return execFileSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_ENV: 'test' },
  });
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'express-passwordless-consumer-'));
  run('npm', ['pack', '--silent', '--pack-destination', dir], root);
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  if (!tarball) throw new Error('npm pack produced no tarball');
  cpSync(join(root, 'test/package/consumer'), dir, { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, version: '1.0.0' }),
  );
  const pkg = JSON.parse(run('cat', [join(root, 'package.json')])) as {
    devDependencies: Record<string, string>;
  };
  const dev = (name: string) => `${name}@${pkg.devDependencies[name]}`;
  run('npm', [
    'install',
    '--no-audit',
    '--no-fund',
    '--prefer-offline',
    '--loglevel=error',
    `./${tarball}`,
    dev('express'),
    dev('express-session'),
    dev('typescript'),
    dev('@types/express'),
    dev('@types/express-session'),
    dev('@types/node'),
  ]);
}, 240_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('installed tarball', () => {
  it('logs in over HTTP from ESM', () => {
    expect(run('node', ['esm.mjs']).trim()).toBe('ok');
  });

  it('logs in over HTTP from CommonJS', () => {
    expect(run('node', ['cjs.cjs']).trim()).toBe('ok');
  });

  it('type-checks a TypeScript consumer against the shipped declarations', () => {
    expect(() => run('npx', ['tsc', '-p', 'tsconfig.json'])).not.toThrow();
  });

  it('ships only dist, docs, README, CHANGELOG, LICENSE and package.json', () => {
    const files = readdirSync(join(dir, 'node_modules/express-passwordless'));
    expect(
      files.filter(
        (f) => !['dist', 'docs', 'README.md', 'CHANGELOG.md', 'LICENSE', 'package.json'].includes(f),
      ),
    ).toEqual([]);
  });
});
