// CI's check that the benchmark runs: `npm run bench -- --smoke` (a few hundred requests per row, bounded by count)
// must complete, print its table with every row, and write its chart. No timing is asserted: figures on a shared CI
// machine say nothing. The bench's own dependencies (autocannon, passwordless 1.1.3, passwordless-redisstore) are not
// the repository's: on a fresh clone, where `npm ci` ran at the root only, beforeAll installs them (bench/ensure-deps.mjs,
// `npm ci` in bench/ from its lockfile, a few seconds), as `npm run bench` does.

import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { beforeAll, expect, it } from 'vitest';
import { describeWithServer } from '../helpers/server.js';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const chart = join(root, 'bench', 'results', 'bench-logins-smoke.svg');

// The bench needs both servers; like the store suites, this fails in CI (CI set) and skips with a reason elsewhere.
const describeServices = await describeWithServer('Redis and PostgreSQL for the bench', async () => {
  const redis = new Redis({
    host: '127.0.0.1',
    port: 6379,
    lazyConnect: true,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  redis.on('error', () => {});
  const client = new pg.Client({
    host: '127.0.0.1',
    port: 5432,
    user: 'postgres',
    database: 'test',
    connectionTimeoutMillis: 2000,
  });
  client.on('error', () => {});
  try {
    await redis.connect();
    await redis.ping();
    await client.connect();
    return await client.query('SELECT 1');
  } finally {
    redis.disconnect();
    await client.end().catch(() => undefined);
  }
});

describeServices('npm run bench -- --smoke', () => {
  beforeAll(async () => {
    // The bench's own dependencies (autocannon, passwordless 1.x…): `npm ci` in bench/ on a fresh clone, else nothing.
    await run(process.execPath, [join(root, 'bench', 'ensure-deps.mjs')], { cwd: root, timeout: 170_000 });
    rmSync(chart, { force: true });
  }, 180_000);

  it('type-checks (bench/tsconfig.json: the bench is run by tsx, which does not check types)', async () => {
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    await run(process.execPath, [tsc, '--noEmit', '-p', join(root, 'bench', 'tsconfig.json')], {
      cwd: root,
      timeout: 60_000,
    });
  }, 70_000);

  it('completes and prints the table with every row and the ratios', async () => {
    const { stdout } = await run('npm', ['run', '--silent', 'bench', '--', '--smoke'], {
      cwd: root,
      timeout: 90_000,
      maxBuffer: 10 * 1024 * 1024,
      env: { ...process.env, NO_COLOR: '1' },
    });
    expect(stdout).toMatch(/^\| measurement +\| store +\| +result +\| p50 ms/m);
    for (const store of ['memory', 'Redis', 'PostgreSQL']) {
      expect(stdout).toMatch(
        new RegExp(`\\| full login: express-passwordless +\\| ${store} +\\| +[\\d,]+ logins/s`),
      );
      expect(stdout).toMatch(
        new RegExp(`\\| full login: floor \\(bare Express\\) +\\| ${store} +\\| +[\\d,]+ logins/s`),
      );
    }
    expect(stdout).toMatch(/\| full login: passwordless 1\.1\.3 +\| Redis +\| +[\d,]+ logins\/s/);
    for (const processes of ['1 process', '2 processes', '4 processes']) {
      expect(stdout).toMatch(
        new RegExp(`\\| full login: ours, ${processes} \\(cluster\\) +\\| Redis +\\| +[\\d,]+ logins/s`),
      );
    }
    expect(stdout).toMatch(/\| logged-in page: restricted\(\) +\| memory +\| +[\d,]+ req\/s/);
    expect(stdout).toMatch(/\| logged-in page: express-session alone +\| memory +\| +[\d,]+ req\/s/);
    expect(stdout).toMatch(/\| MemoryStore heap, 10,000 pending tokens +\| memory +\| +\d+ B\/token/);
    expect(stdout).toContain('ours / passwordless 1.x (Redis)');
    expect(stdout).toContain('restricted() overhead vs express-session alone');
    expect(stdout).toContain('noise floor: express-session alone against a copy of itself');
    expect(stdout).toContain('MemoryStore at 10,000 pending');
    expect(stdout).toMatch(/^scaling: /m);
    expect(stdout).toContain('no failed requests');
    // The chart, generated from this run's figures: one bar per login configuration.
    const svg = readFileSync(chart, 'utf8');
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(svg.match(/<rect x="\d+" y="[\d.]+" width="[\d.]+" height="18"/g)).toHaveLength(10);
    expect(svg).toContain('passwordless 1.1.3, Redis');
  }, 100_000);
});
