// express-passwordless benchmark: `npm run bench` (about 2 minutes), `npm run bench -- --quick` (under 30 s),
// `npm run bench -- --smoke` (a few hundred requests per row: CI's check that it runs), `npm run bench -- --profile`
// (CPU profiles of our servers under load, summarised). See bench/README.md.
//
// Everything is on this machine: the apps listen on 127.0.0.1, Redis at 127.0.0.1:6379, PostgreSQL at 127.0.0.1:5432
// (user postgres, database test). Every measurement is bounded in time (or, with --smoke, in requests).

import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { build } from 'tsup';
import { type ChartBar, chartSvg } from './chart.js';
import { type Bound, loginLoad, loginOnce, requestLoad } from './load.js';
import type { MemoryResult } from './memory.js';
import { summarizeProfile } from './profile.js';
import type { StoreKind, Variant } from './server.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

type Mode = 'full' | 'quick' | 'smoke' | 'profile';
const args = process.argv.slice(2);
const mode: Mode = args.includes('--smoke')
  ? 'smoke'
  : args.includes('--quick')
    ? 'quick'
    : args.includes('--profile')
      ? 'profile'
      : 'full';
for (const arg of args) {
  if (!['--smoke', '--quick', '--profile'].includes(arg)) {
    console.error(`bench: unknown argument ${arg}; use --quick, --smoke or --profile`);
    process.exit(2);
  }
}

interface Plan {
  /** Login rows: how often each row is measured (rounds alternate the order, to spread drift over all rows). */
  rounds: number;
  warmup: Bound;
  login: Bound;
  /**
   * passwordless 1.x is bcrypt-bound (two bcrypt operations per login, ~0.5 s per login under load): longer runs, or
   * fewer logins in count-bounded ones, so that some logins complete in every round.
   */
  v1Login: Bound;
  restrictedRounds: number;
  restricted: Bound;
  /** Rounds in which two apps are loaded at the same time, for the ratios (see sideBySide()). */
  pairRounds: number;
  pair: Bound;
  memoryCounts: number[];
  /** The cluster rows: express-passwordless on RedisStore in 1, 2 and 4 processes sharing one Redis. */
  clusterRounds: number;
  cluster: Bound;
}

/** How many app processes (node:cluster workers) the scaling rows run. */
const CLUSTER_SIZES = [1, 2, 4];
/** Connections of the scaling rows, the same for every size: enough to keep 4 workers busy. */
const CLUSTER_CONNECTIONS = 32;

const CONNECTIONS = 10;
const PLANS: Record<Exclude<Mode, 'profile'>, Plan> = {
  full: {
    rounds: 6,
    warmup: { seconds: 1, connections: CONNECTIONS },
    login: { seconds: 1, connections: CONNECTIONS },
    v1Login: { seconds: 1.5, connections: CONNECTIONS },
    restrictedRounds: 6,
    restricted: { seconds: 1, connections: CONNECTIONS },
    pairRounds: 6,
    pair: { seconds: 1.5, connections: CONNECTIONS },
    memoryCounts: [100_000, 1_000_000],
    clusterRounds: 3,
    cluster: { seconds: 1.5, connections: CLUSTER_CONNECTIONS },
  },
  quick: {
    rounds: 1,
    warmup: { seconds: 0.25, connections: CONNECTIONS },
    login: { seconds: 0.7, connections: CONNECTIONS },
    v1Login: { seconds: 1.5, connections: CONNECTIONS },
    restrictedRounds: 1,
    restricted: { seconds: 0.7, connections: CONNECTIONS },
    pairRounds: 1,
    pair: { seconds: 0.7, connections: CONNECTIONS },
    memoryCounts: [100_000],
    clusterRounds: 1,
    cluster: { seconds: 0.7, connections: CLUSTER_CONNECTIONS },
  },
  smoke: {
    rounds: 1,
    warmup: { seconds: 5, amount: 20, connections: 2 },
    login: { seconds: 10, amount: 200, connections: 4 },
    v1Login: { seconds: 10, amount: 8, connections: 4 },
    restrictedRounds: 1,
    restricted: { seconds: 10, amount: 500, connections: 4 },
    pairRounds: 1,
    pair: { seconds: 10, amount: 100, connections: 4 },
    memoryCounts: [10_000],
    clusterRounds: 1,
    cluster: { seconds: 10, amount: 100, connections: 8 },
  },
};

const NAMES: Record<Variant, string> = {
  ours: 'express-passwordless',
  v1: 'passwordless 1.1.3',
  floor: 'floor (bare Express)',
};
const STORE_NAMES: Record<StoreKind, string> = { memory: 'memory', redis: 'Redis', postgres: 'PostgreSQL' };

const namespace = `bench:${process.pid}:${randomBytes(3).toString('hex')}`;
/**
 * Where this run's build goes, removed at the end: inside bench/node_modules, so that its imports resolve to the
 * bench's and the repository's packages, and neither git nor the linter ever sees it.
 */
const libDir = join(here, 'node_modules', '.bench-build', String(process.pid));

/**
 * Builds the library from the working tree's sources as `npm run build` does (tsup with the JavaScript options of
 * tsup.config.ts; ESM only, no type declarations), and the bench's server and heap-measuring scripts beside it. The
 * servers then run on plain node (no TypeScript loader in them) the code users get from the package; no manual build
 * step is needed; and a CPU profile names the library's functions and lines.
 */
async function buildLibrary(): Promise<void> {
  await build({
    entry: {
      index: join(root, 'src/index.ts'),
      'stores/redis': join(root, 'stores/redis/index.ts'),
      'stores/postgres': join(root, 'stores/postgres/index.ts'),
      server: join(here, 'server.ts'),
      memory: join(here, 'memory.ts'),
    },
    format: ['esm'],
    outDir: libDir,
    target: 'node20',
    platform: 'node',
    splitting: false,
    skipNodeModulesBundle: true,
    sourcemap: true,
    clean: true,
    silent: true,
    config: false,
    dts: false,
  });
}

const children = new Set<ChildProcess>();

function killChildren(): void {
  for (const child of children) child.kill();
  rmSync(libDir, { recursive: true, force: true });
}
process.on('exit', killChildren);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killChildren();
    process.exit(130);
  });
}

interface Server {
  name: string;
  variant: Variant;
  store: StoreKind;
  /** node:cluster workers behind one port, or 0 for a single process (the app itself). */
  workers: number;
  port: number;
  child: ChildProcess;
  cpu(): Promise<number>;
  close(): Promise<void>;
}

function message<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: unknown) => {
      if (typeof msg === 'object' && msg !== null && (msg as { type?: unknown }).type === type) {
        cleanup();
        resolve(msg as T);
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`bench server exited (${code}) before '${type}'`));
    };
    const cleanup = () => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

async function startServer(
  variant: Variant,
  store: StoreKind,
  extraArgs: string[] = [],
  workers = 0,
): Promise<Server> {
  const argv = [variant, store, namespace, libDir, ...(workers > 0 ? [String(workers)] : [])];
  const child = fork(join(libDir, 'server.js'), argv, {
    cwd: root,
    execArgv: extraArgs,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const { port } = await message<{ port: number }>(child, 'ready');
  return {
    name: NAMES[variant],
    variant,
    store,
    workers,
    port,
    child,
    async cpu() {
      const reply = message<{ micros: number }>(child, 'cpu');
      child.send('cpu');
      return (await reply).micros;
    },
    async close() {
      if (child.exitCode !== null || !child.connected) return;
      const closed = message(child, 'closed').catch(() => undefined);
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.send('close');
      await closed;
      await exited;
    },
  };
}

async function probeServices(): Promise<void> {
  const redis = new Redis({
    host: '127.0.0.1',
    port: 6379,
    lazyConnect: true,
    retryStrategy: () => null,
    enableOfflineQueue: false,
    connectTimeout: 3000,
  });
  redis.on('error', () => {});
  const pool = new pg.Pool({
    host: '127.0.0.1',
    port: 5432,
    user: 'postgres',
    database: 'test',
    connectionTimeoutMillis: 3000,
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw new Error(`Redis at 127.0.0.1:6379 is unreachable: ${(err as Error).message}`);
  } finally {
    redis.disconnect();
  }
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    throw new Error(`PostgreSQL at 127.0.0.1:5432 (database test) is unreachable: ${(err as Error).message}`);
  } finally {
    await pool.end();
  }
}

function runMemory(count: number): Promise<MemoryResult> {
  const child = fork(join(libDir, 'memory.js'), [String(count), libDir], {
    cwd: root,
    execArgv: ['--expose-gc', '--max-old-space-size=4096'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  return new Promise((resolve, reject) => {
    let result: MemoryResult | undefined;
    child.on('message', (msg) => {
      result = msg as MemoryResult;
    });
    child.on('exit', (code) => {
      children.delete(child);
      if (result && code === 0) resolve(result);
      else reject(new Error(`bench/memory.ts ${count} exited with ${code}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Aggregation and printing
// ---------------------------------------------------------------------------------------------------------------
interface Row {
  measurement: string;
  store: string;
  result: string;
  p50: string;
  p99: string;
  cpu: string;
  cpuPerOp: string;
  failed: string;
}

interface Measured {
  server: Server;
  /** Logins or requests completed per second: the median over the rounds (robust to a burst of load elsewhere). */
  perSecond: number;
  count: number;
  failures: number;
  /** Percentiles of every round's samples together. */
  p50: number;
  p99: number;
  /** Server CPU time (user + system, all threads) as a share of one core while measured: median over the rounds. */
  cpu: number;
  /** Server CPU time per login or request, µs, median over the rounds: far less sensitive to other load. */
  cpuPerOp: number;
  rounds: Round[];
}

/** One round of one row. */
interface Round {
  seconds: number;
  count: number;
  failures: number;
  cpuMicros: number;
  latencies: number[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function merge(server: Server, rounds: Round[]): Measured {
  const samples = Float64Array.from(rounds.flatMap((r) => r.latencies)).sort();
  const at = (p: number) =>
    samples.length === 0
      ? Number.NaN
      : samples[Math.min(samples.length - 1, Math.floor((p / 100) * samples.length))]!;
  return {
    server,
    perSecond: median(rounds.map((r) => (r.seconds > 0 ? r.count / r.seconds : 0))),
    count: rounds.reduce((n, r) => n + r.count, 0),
    failures: rounds.reduce((n, r) => n + r.failures, 0),
    p50: at(50),
    p99: at(99),
    cpu: median(rounds.map((r) => (r.seconds > 0 ? r.cpuMicros / 1e6 / r.seconds : 0))),
    cpuPerOp: median(rounds.map((r) => (r.count > 0 ? r.cpuMicros / r.count : Number.NaN))),
    rounds,
  };
}

const rate = (r: Round) => (r.seconds > 0 ? r.count / r.seconds : 0);

/** How far over the heap before the tokens the heap after their expiry may be and still count as back to baseline. */
const baselineSlack = (m: MemoryResult) => Math.max(512 * 1024, 0.01 * (m.pending - m.baseline));
const isBaseline = (m: MemoryResult) => m.leftRecords === 0 && m.leftover <= baselineSlack(m);

/**
 * a / b as the median of the ratios of the same round: the two rows of a round ran one right after the other, so a
 * burst of load from elsewhere falls on both, or on one round only.
 */
function pairedRatio(a: Measured, b: Measured, f: (r: Round) => number): number {
  // A round in which b completed nothing (passwordless 1.x under heavy load) has no ratio.
  return median(a.rounds.map((r, i) => f(r) / f(b.rounds[i]!)).filter((v) => Number.isFinite(v)));
}

const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const ms = (v: number) => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v.toFixed(1)) : '-');
const pct = (v: number) => `${(v * 100).toFixed(0)}%`;
const micros = (v: number) => (Number.isFinite(v) ? `${int.format(v)} µs` : '-');

function printTable(rows: Row[]): void {
  const head: Row = {
    measurement: 'measurement',
    store: 'store',
    result: 'result',
    p50: 'p50 ms',
    p99: 'p99 ms',
    cpu: 'server CPU',
    cpuPerOp: 'CPU per op',
    failed: 'failed',
  };
  const keys = Object.keys(head) as Array<keyof Row>;
  const width = Object.fromEntries(
    keys.map((k) => [k, Math.max(...[head, ...rows].map((r) => r[k].length))]),
  );
  const left = new Set<keyof Row>(['measurement', 'store']);
  const line = (r: Row) =>
    `| ${keys.map((k) => (left.has(k) ? r[k].padEnd(width[k]!) : r[k].padStart(width[k]!))).join(' | ')} |`;
  console.log(line(head));
  console.log(
    `|${keys.map((k) => (left.has(k) ? `${'-'.repeat(width[k]! + 2)}` : `${'-'.repeat(width[k]! + 1)}:`)).join('|')}|`,
  );
  for (const r of rows) console.log(line(r));
}

const load = () =>
  loadavg()
    .map((v) => v.toFixed(2))
    .join(' ');

function phase(what: string, since: number): void {
  process.stderr.write(`bench: ${what} (${((Date.now() - since) / 1000).toFixed(1)} s, load ${load()})\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------------------------
const LOGIN_ROWS: Array<[Variant, StoreKind]> = [
  ['floor', 'memory'],
  ['ours', 'memory'],
  ['floor', 'redis'],
  ['ours', 'redis'],
  ['v1', 'redis'],
  ['floor', 'postgres'],
  ['ours', 'postgres'],
];

async function measureLogins(plan: Plan, servers: Server[]): Promise<Measured[]> {
  const rounds = new Map(servers.map((s) => [s, [] as Round[]]));
  for (let round = 0; round < plan.rounds; round++) {
    // Every other round in reverse order, so that drift in the machine's load falls on all rows alike.
    const order = round % 2 === 0 ? servers : [...servers].reverse();
    for (const server of order) {
      const v1 = server.variant === 'v1';
      // Warm-up (JIT, connection pools); passwordless 1.x spends its time in bcrypt, one login warms it.
      if (round === 0 && v1) await loginOnce(server.port, `warmup-${server.port}@example.com`);
      else if (round === 0) await loginLoad(server.port, plan.warmup);
      await server.cpu();
      const stats = await loginLoad(server.port, v1 ? plan.v1Login : plan.login);
      const cpuMicros = await server.cpu();
      rounds.get(server)!.push({ ...stats, count: stats.logins, cpuMicros });
      process.stderr.write(
        `  ${server.name} / ${STORE_NAMES[server.store]}: ${int.format(stats.perSecond)} logins/s, ` +
          `${int.format(cpuMicros / stats.logins)} µs CPU per login (round ${round + 1})\n`,
      );
      await settle(server);
    }
  }
  return servers.map((s) => merge(s, rounds.get(s)!));
}

/**
 * Waits until `server` is idle (under 10% of a core over 50 ms; at most 5 s). passwordless 1.x hashes on libuv's
 * thread pool: when the load stops, the bcrypt work of the logins in flight goes on for a second or so, and would
 * otherwise land on the next row measured.
 */
async function settle(server: Server): Promise<void> {
  const window = 50;
  for (let waited = 0; waited < 5000; waited += window) {
    await server.cpu();
    await new Promise((resolve) => setTimeout(resolve, window));
    if ((await server.cpu()) < window * 1000 * 0.1) return;
  }
}

async function measureRestricted(
  plan: Plan,
  ours: Server,
  bare: Server,
  cookies: Map<Server, string>,
): Promise<Measured[]> {
  const pair = [ours, bare];
  const rounds = new Map(pair.map((s) => [s, [] as Round[]]));
  for (const server of pair) {
    const amount = plan.warmup.amount === undefined ? {} : { amount: plan.warmup.amount * 5 };
    // At least half a second: the JIT must have optimised both apps' request path before a short quick round.
    const seconds = Math.max(plan.warmup.seconds, 0.5);
    await requestLoad(server.port, '/account', cookies.get(server)!, { ...plan.warmup, seconds, ...amount });
  }
  for (let round = 0; round < plan.restrictedRounds; round++) {
    // Alternate which goes first, so drift in the machine's load falls on both alike.
    for (const server of round % 2 === 0 ? [bare, ours] : [ours, bare]) {
      await server.cpu();
      const stats = await requestLoad(server.port, '/account', cookies.get(server)!, plan.restricted);
      const cpuMicros = await server.cpu();
      rounds.get(server)!.push({ ...stats, count: stats.requests, cpuMicros });
      const name = server === ours ? 'restricted(), express-passwordless' : 'express-session alone';
      process.stderr.write(
        `  ${name}: ${int.format(stats.perSecond)} req/s, ${int.format(cpuMicros / stats.requests)} µs CPU per request ` +
          `(round ${round + 1})\n`,
      );
    }
  }
  return pair.map((s) => merge(s, rounds.get(s)!));
}

/** a / b, side by side: medians over the rounds of the ratios of logins (or requests) per second and CPU per op. */
interface PairRatio {
  rate: number;
  cpuPerOp: number;
  failures: number;
}

/**
 * Loads two apps at the same time, each with its own connections: whatever else runs on the machine then slows both
 * alike, and the scheduler shares the cores evenly between two CPU-bound processes, so the ratio of their rates (and
 * of their CPU time per operation) says what each costs rather than when it ran.
 */
async function sideBySide(
  a: Server,
  b: Server,
  rounds: number,
  run: (server: Server) => Promise<{ count: number; seconds: number; failures: number }>,
): Promise<PairRatio> {
  const rates: number[] = [];
  const cpus: number[] = [];
  let failures = 0;
  for (let round = 0; round < rounds; round++) {
    await Promise.all([a.cpu(), b.cpu()]);
    // Which load generator starts first alternates from round to round, so neither app has its connections first.
    const [ra, rb] =
      round % 2 === 0
        ? await Promise.all([run(a), run(b)])
        : await Promise.all([run(b), run(a)]).then(([y, x]) => [x, y] as const);
    const [ca, cb] = await Promise.all([a.cpu(), b.cpu()]);
    failures += ra.failures + rb.failures;
    rates.push(ra.count / ra.seconds / (rb.count / rb.seconds));
    cpus.push(ca / ra.count / (cb / rb.count));
  }
  return { rate: median(rates), cpuPerOp: median(cpus), failures };
}

/** Redis's own CPU time (user + system) so far, µs, from INFO: the server is shared, so other clients count too. */
async function redisCpu(client: Redis): Promise<number> {
  const info = await client.info('cpu');
  const seconds = (name: string) =>
    Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6;
}

interface Scaled {
  measured: Measured;
  /** Redis server CPU per login, µs (median over the rounds). */
  redisPerLogin: number;
  /** This process's CPU per login, µs: the load generator's cost (autocannon runs here). */
  loaderPerLogin: number;
}

/**
 * express-passwordless on RedisStore in 1, 2 and 4 processes (node:cluster workers behind one port) sharing one Redis,
 * with the same number of connections for each size; rounds alternate the order. Also measures Redis's CPU and the
 * load generator's per login, to tell what the machine's cores went to.
 */
async function measureScaling(plan: Plan, servers: Server[], redis: Redis): Promise<Scaled[]> {
  const rounds = new Map(servers.map((s) => [s, [] as Round[]]));
  const redisCosts = new Map(servers.map((s) => [s, [] as number[]]));
  const loaderCosts = new Map(servers.map((s) => [s, [] as number[]]));
  for (let round = 0; round < plan.clusterRounds; round++) {
    for (const server of round % 2 === 0 ? servers : [...servers].reverse()) {
      // Each worker warms up its own JIT on its share of the connections: the same warm-up per worker as for one.
      if (round === 0) {
        const n = server.workers;
        const amount = plan.warmup.amount === undefined ? {} : { amount: plan.warmup.amount * n };
        await loginLoad(server.port, {
          ...plan.warmup,
          seconds: plan.warmup.seconds * n,
          ...amount,
          connections: CLUSTER_CONNECTIONS,
        });
      }
      await server.cpu();
      const redisBefore = await redisCpu(redis);
      const loaderBefore = process.cpuUsage();
      const stats = await loginLoad(server.port, plan.cluster);
      const loader = process.cpuUsage(loaderBefore);
      const cpuMicros = await server.cpu();
      const redisMicros = (await redisCpu(redis)) - redisBefore;
      rounds.get(server)!.push({ ...stats, count: stats.logins, cpuMicros });
      redisCosts.get(server)!.push(redisMicros / stats.logins);
      loaderCosts.get(server)!.push((loader.user + loader.system) / stats.logins);
      process.stderr.write(
        `  express-passwordless / Redis, ${server.workers} process(es): ${int.format(stats.perSecond)} logins/s, ` +
          `${int.format(cpuMicros / stats.logins)} µs app CPU, ${int.format(redisMicros / stats.logins)} µs Redis CPU ` +
          `per login (round ${round + 1})\n`,
      );
    }
  }
  return servers.map((s) => ({
    measured: merge(s, rounds.get(s)!),
    redisPerLogin: median(redisCosts.get(s)!),
    loaderPerLogin: median(loaderCosts.get(s)!),
  }));
}

async function profile(): Promise<void> {
  const dir = join(here, 'profiles');
  const rows: Array<[Variant, StoreKind]> = [
    ['ours', 'memory'],
    ['floor', 'memory'],
    ['ours', 'redis'],
    ['floor', 'redis'],
    ['ours', 'postgres'],
    ['floor', 'postgres'],
  ];
  for (const [variant, store] of rows) {
    // One directory per server: node writes one profile per thread (the main thread's is the one of interest).
    const out = join(dir, `${variant}-${store}-${Date.now()}`);
    const server = await startServer(variant, store, [
      '--cpu-prof',
      '--cpu-prof-interval=250',
      `--cpu-prof-dir=${out}`,
    ]);
    const warm = await loginLoad(server.port, { seconds: 1, connections: CONNECTIONS });
    await server.cpu();
    const stats = await loginLoad(server.port, { seconds: 5, connections: CONNECTIONS });
    const cpuMicros = await server.cpu();
    await server.close();
    // The main thread's profile: thread id 0 in node's file name CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile.
    const main = readdirSync(out).find((f) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f));
    console.log(
      `\n### ${NAMES[variant]} / ${STORE_NAMES[store]}: ${int.format(stats.perSecond)} logins/s, ` +
        `${int.format(cpuMicros / stats.logins)} µs server CPU per login, while profiled (load ${load()}); ` +
        `${warm.logins + stats.logins} logins in the profile`,
    );
    if (!main) throw new Error(`no main-thread profile in ${out}`);
    console.log(`profile: ${join(out, main)} (open it in Chrome DevTools or speedscope for the call tree)`);
    summarizeProfile(join(out, main), root);
  }
  // The logged-in page: restricted() behind sessionSupport() and acceptToken(), and express-session alone.
  for (const variant of ['ours', 'floor'] as const) {
    const out = join(dir, `${variant}-restricted-${Date.now()}`);
    const server = await startServer(variant, 'memory', [
      '--cpu-prof',
      '--cpu-prof-interval=250',
      `--cpu-prof-dir=${out}`,
    ]);
    const cookie = await loginOnce(server.port, 'ada@example.com');
    const bound = { seconds: 1, connections: CONNECTIONS };
    const warm = await requestLoad(server.port, '/account', cookie, bound);
    await server.cpu();
    const stats = await requestLoad(server.port, '/account', cookie, { ...bound, seconds: 5 });
    const cpuMicros = await server.cpu();
    await server.close();
    const main = readdirSync(out).find((f) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f));
    console.log(
      `\n### logged-in page, ${variant === 'ours' ? 'restricted()' : 'express-session alone'}: ` +
        `${int.format(stats.perSecond)} req/s, ${int.format(cpuMicros / stats.requests)} µs server CPU per request, ` +
        `while profiled (load ${load()}); ${warm.requests + stats.requests} requests in the profile`,
    );
    if (!main) throw new Error(`no main-thread profile in ${out}`);
    console.log(`profile: ${join(out, main)}`);
    summarizeProfile(join(out, main), root);
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  await probeServices();
  await buildLibrary();
  if (mode === 'profile') {
    await profile();
    return;
  }
  const plan = PLANS[mode];
  console.error(
    `bench (${mode}): starting ${LOGIN_ROWS.length + 3 + CLUSTER_SIZES.length} servers ` +
      `(${CLUSTER_SIZES.join(' + ')} cluster workers) and the MemoryStore runs; load ${load()}`,
  );
  // Start-up is compile time and not measured: every server and the (CPU-independent) heap measurements at once.
  const memoryRuns = Promise.all(plan.memoryCounts.map((count) => runMemory(count)));
  // The logged-in page: ours, express-session alone, and a second copy of the latter (the A/A noise floor).
  const [servers, pageServers, clusterServers, memory] = await Promise.all([
    Promise.all(LOGIN_ROWS.map(([v, s]) => startServer(v, s))),
    Promise.all([
      startServer('ours', 'memory'),
      startServer('floor', 'memory'),
      startServer('floor', 'memory'),
    ]),
    Promise.all(CLUSTER_SIZES.map((n) => startServer('ours', 'redis', [], n))),
    memoryRuns,
  ]);
  const redis = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', (err: Error) => console.error(`bench: redis: ${err.message}`));
  await redis.connect();
  phase('servers ready, heap measured', started);
  const loadBefore = load();
  let logins: Measured[];
  let restricted: Measured[];
  let scaling: Scaled[];
  const pairs = new Map<StoreKind | 'restricted' | 'noise', PairRatio>();
  try {
    logins = await measureLogins(plan, servers);
    phase('logins measured one after the other', started);
    for (const store of ['memory', 'redis', 'postgres'] as const) {
      const find = (v: Variant) => servers.find((s) => s.variant === v && s.store === store)!;
      const pair = await sideBySide(find('ours'), find('floor'), plan.pairRounds, async (server) => {
        const stats = await loginLoad(server.port, plan.pair);
        return { ...stats, count: stats.logins };
      });
      pairs.set(store, pair);
    }
    phase('logins measured side by side', started);
    const [ours, bare, bareCopy] = pageServers as [Server, Server, Server];
    const cookies = new Map<Server, string>();
    for (const server of pageServers) cookies.set(server, await loginOnce(server.port, 'ada@example.com'));
    restricted = await measureRestricted(plan, ours, bare, cookies);
    const page = async (server: Server) => {
      const stats = await requestLoad(server.port, '/account', cookies.get(server)!, plan.pair);
      return { ...stats, count: stats.requests };
    };
    pairs.set('restricted', await sideBySide(ours, bare, plan.pairRounds * 2, page));
    // The same measurement of two identical apps: how far apart noise alone puts them on this machine now.
    await requestLoad(bareCopy.port, '/account', cookies.get(bareCopy)!, { ...plan.warmup, seconds: 0.5 });
    pairs.set('noise', await sideBySide(bareCopy, bare, plan.pairRounds, page));
    phase('restricted() measured', started);
    scaling = await measureScaling(plan, clusterServers, redis);
    phase('cluster scaling measured', started);
  } finally {
    redis.disconnect();
    await Promise.all([...servers, ...pageServers, ...clusterServers].map((s) => s.close()));
  }
  const loadAfter = load();

  const rows: Row[] = [];
  const measuredRow = (m: Measured, measurement: string, unit: string): Row => ({
    measurement,
    store: STORE_NAMES[m.server.store],
    result: `${int.format(m.perSecond)} ${unit}`,
    p50: ms(m.p50),
    p99: ms(m.p99),
    cpu: pct(m.cpu),
    cpuPerOp: micros(m.cpuPerOp),
    failed: String(m.failures),
  });
  for (const m of logins) rows.push(measuredRow(m, `full login: ${m.server.name}`, 'logins/s'));
  for (const { measured: m } of scaling) {
    const processes = `${m.server.workers} process${m.server.workers === 1 ? '' : 'es'}`;
    rows.push(measuredRow(m, `full login: ours, ${processes} (cluster)`, 'logins/s'));
  }
  rows.push(measuredRow(restricted[0]!, 'logged-in page: restricted()', 'req/s'));
  rows.push(measuredRow(restricted[1]!, 'logged-in page: express-session alone', 'req/s'));
  for (const m of memory) {
    const blank = { p50: '', p99: '', cpu: '', cpuPerOp: '' };
    rows.push({
      measurement: `MemoryStore heap, ${int.format(m.count)} pending tokens`,
      store: 'memory',
      result: `${int.format(m.bytesPerToken)} B/token`,
      ...blank,
      failed: '0',
    });
    rows.push({
      measurement: '  the same after they expired',
      store: 'memory',
      result: `${m.leftover >= 0 ? '+' : '-'}${int.format(Math.abs(m.leftover) / 1024)} kB vs before`,
      ...blank,
      failed: String(m.leftRecords),
    });
  }

  console.log(
    `\nexpress-passwordless bench, ${mode} mode: node ${process.version}, ${availableParallelism()} cores, ` +
      `${CONNECTIONS} connections; load average (1, 5, 15 min) ${loadBefore} before, ${loadAfter} after\n`,
  );
  printTable(rows);
  if (mode === 'smoke') {
    console.log(
      '\n(smoke mode: a few hundred requests per row, to check that everything runs; the figures mean little)',
    );
  }

  const find = (v: Variant, s: StoreKind) =>
    logins.find((l) => l.server.variant === v && l.server.store === s)!;
  const verdict = (ok: boolean) =>
    mode === 'smoke'
      ? 'not judged in smoke mode'
      : ok
        ? 'met'
        : mode === 'quick'
          ? 'missed in this one short round: judge on a full run'
          : 'missed';
  const lines: string[] = [];
  const v1 = pairedRatio(find('ours', 'redis'), find('v1', 'redis'), rate);
  lines.push(
    `ours / passwordless 1.x (Redis), logins per second: ${Number.isFinite(v1) ? `${v1.toFixed(0)}x` : 'n/a (no login of 1.x completed)'}`,
  );
  for (const store of ['memory', 'redis', 'postgres'] as const) {
    const pair = pairs.get(store)!;
    const sequential = pairedRatio(find('ours', store), find('floor', store), rate);
    const target = store === 'postgres' ? '' : ` (target >= 0.70: ${verdict(pair.rate >= 0.7)})`;
    lines.push(
      `ours / floor (${STORE_NAMES[store]}), logins per second: ${pair.rate.toFixed(2)} side by side${target}, ` +
        `${sequential.toFixed(2)} one after the other; by server CPU per login: ${(1 / pair.cpuPerOp).toFixed(2)}`,
    );
  }
  const [oursR, bareR] = restricted;
  const pairR = pairs.get('restricted')!;
  const overhead = 1 - pairR.rate;
  lines.push(
    `restricted() overhead vs express-session alone, requests per second: ${(overhead * 100).toFixed(1)}% side by side ` +
      `(target <= 3%: ${verdict(overhead <= 0.03)}), ${((1 - pairedRatio(oursR!, bareR!, rate)) * 100).toFixed(1)}% ` +
      `one after the other; by server CPU per request: ${((pairR.cpuPerOp - 1) * 100).toFixed(1)}%`,
  );
  const noise = pairs.get('noise')!;
  lines.push(
    `noise floor: express-session alone against a copy of itself, side by side: ${((1 - noise.rate) * 100).toFixed(1)}% ` +
      `by requests per second, ${((noise.cpuPerOp - 1) * 100).toFixed(1)}% by CPU per request (differences of that ` +
      'size between two rows are noise)',
  );
  for (const m of memory) {
    lines.push(
      `MemoryStore at ${int.format(m.count)} pending: ${int.format(m.bytesPerToken)} B/token (target <= 300: ${verdict(m.bytesPerToken <= 300)}); ` +
        `after expiry ${int.format(m.leftover / 1024)} kB over the heap before, ${m.leftRecords} records left ` +
        `(back to baseline, within ${int.format(baselineSlack(m) / 1024)} kB: ${verdict(isBaseline(m))})`,
    );
  }
  console.log(
    '\nratios (medians over the rounds; "side by side": both apps loaded at once, "one after the other": the rows above):',
  );
  for (const l of lines) console.log(`  ${l}`);

  const one = scaling[0]!;
  console.log(
    `\nscaling: express-passwordless on RedisStore in ${CLUSTER_SIZES.join(', ')} processes (node:cluster) sharing one ` +
      `Redis, ${CLUSTER_CONNECTIONS} connections, on ${availableParallelism()} cores shared with Redis and the load generator:`,
  );
  for (const s of scaling) {
    const m = s.measured;
    console.log(
      `  ${m.server.workers} process${m.server.workers === 1 ? ': ' : 'es:'} ${int.format(m.perSecond).padStart(6)} logins/s ` +
        `(x${(m.perSecond / one.measured.perSecond).toFixed(2)}), app CPU ${int.format(m.cpuPerOp)} µs, ` +
        `Redis CPU ${int.format(s.redisPerLogin)} µs, load generator CPU ${int.format(s.loaderPerLogin)} µs per login; ` +
        `together ${((m.perSecond * (m.cpuPerOp + s.redisPerLogin + s.loaderPerLogin)) / 1e6).toFixed(2)} cores busy`,
    );
  }
  // Per core: CPU time per login is what a busy core spends on one; its inverse is logins per second per core.
  const oursRedis = find('ours', 'redis');
  const redisPerLogin = median(scaling.map((s) => s.redisPerLogin));
  console.log(
    `  per core: express-passwordless spends ${int.format(oursRedis.cpuPerOp)} µs of app CPU per login on RedisStore ` +
      `(the table's row, 1 process; ${int.format(one.measured.cpuPerOp)} µs in the 1-process cluster row): about ` +
      `${int.format(1e6 / oursRedis.cpuPerOp)} logins/s per app core; Redis spends about ${int.format(redisPerLogin)} µs ` +
      `per login: about ${int.format(1e6 / redisPerLogin)} logins/s per Redis core`,
  );

  const chartPath =
    mode === 'full'
      ? join(root, 'docs', 'images', 'bench-logins.svg')
      : join(here, 'results', `bench-logins-${mode}.svg`);
  mkdirSync(dirname(chartPath), { recursive: true });
  const bar = (m: Measured, label: string, group: ChartBar['group']): ChartBar => ({
    label,
    value: m.perSecond,
    group,
    note: `p50 ${ms(m.p50)} ms`,
  });
  const bars: ChartBar[] = [];
  for (const store of ['memory', 'redis', 'postgres'] as const) {
    bars.push({
      ...bar(find('ours', store), `express-passwordless, ${STORE_NAMES[store]}`, 'ours'),
      gapBefore: true,
    });
    bars.push(bar(find('floor', store), `floor, ${STORE_NAMES[store]}`, 'floor'));
    if (store === 'redis') bars.push(bar(find('v1', store), 'passwordless 1.1.3, Redis', 'v1'));
  }
  for (const [i, s] of scaling.entries()) {
    const n = s.measured.server.workers;
    const label = `express-passwordless, Redis, ${n} process${n === 1 ? '' : 'es'}`;
    bars.push({ ...bar(s.measured, label, 'cluster'), gapBefore: i === 0 });
  }
  writeFileSync(
    chartPath,
    chartSvg(
      'Full logins per second (requestToken, then acceptToken)',
      [
        `npm run bench${mode === 'full' ? '' : ` -- --${mode}`} on ${new Date().toISOString().slice(0, 10)}: node ` +
          `${process.version}, ${availableParallelism()} cores shared by app, load generator and database, loopback only.`,
        `${CONNECTIONS} connections (${CLUSTER_CONNECTIONS} for the cluster rows); sessions in express-session's ` +
          `MemoryStore; median of ${plan.rounds} round(s) per row.`,
        `Load average before the run ${loadBefore}. Higher is better; p50: median time of a whole login.`,
        `Side by side (both apps loaded at once): ours / floor ${(['memory', 'redis', 'postgres'] as const)
          .map((store) => `${pairs.get(store)!.rate.toFixed(2)} ${STORE_NAMES[store]}`)
          .join(
            ', ',
          )}; ours / passwordless 1.x ${Number.isFinite(v1) ? `${v1.toFixed(0)}x` : 'n/a'} (Redis).`,
      ],
      bars,
    ),
  );
  console.log(`\nchart: ${relative(process.cwd(), chartPath)}`);
  const failures =
    rows.reduce((n, r) => n + (Number(r.failed) || 0), 0) +
    [...pairs.values()].reduce((n, p) => n + p.failures, 0);
  console.log(
    `\n${failures === 0 ? 'no failed requests' : `${failures} failed requests or records left (see the table)`}; ` +
      `${((Date.now() - started) / 1000).toFixed(0)} s in all.`,
  );
  if (failures > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  killChildren();
  process.exit(1);
});
