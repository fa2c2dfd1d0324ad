// Installs the bench's own devDependencies (`npm ci` in bench/, from bench/package-lock.json) when any is missing or
// the lock changed since they were installed. Run by `npm run bench` before the bench itself, and by the smoke test
// (test/bench/smoke.test.ts), so that a fresh clone where only the root's `npm ci` ran needs nothing more. The
// library's own dependencies (express, express-session, ioredis, pg, tsx, tsup) come from the repository root.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
// The hash of the lock the installed tree came from: a lock with other content means installing again.
const stamp = join(here, 'node_modules', '.bench-lock-sha256');
const lockHash = createHash('sha256')
  .update(readFileSync(join(here, 'package-lock.json')))
  .digest('hex');
const missing = Object.keys(pkg.devDependencies).filter(
  (name) => !existsSync(join(here, 'node_modules', name, 'package.json')),
);
const stale = !existsSync(stamp) || readFileSync(stamp, 'utf8').trim() !== lockHash;

if (!existsSync(join(here, '..', 'node_modules', 'tsx', 'package.json'))) {
  console.error(
    'bench: run `npm ci` in the repository root first (the bench uses its express, tsx, tsup, ioredis, pg).',
  );
  process.exit(1);
}
if (missing.length > 0 || stale) {
  console.error(
    `bench: installing the bench's dependencies (npm ci in bench/${missing.length > 0 ? `; missing ${missing.join(', ')}` : ''})`,
  );
  execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: here, stdio: 'inherit' });
  writeFileSync(stamp, `${lockHash}\n`);
}
