// MemoryStore's heap per pending token, run by bench/run.ts (built beside the library) as `node --expose-gc memory.js N DIR`.
//
// Stores N records as the core would (uid `user<i>@example.com`, a 64-hex SHA-256, expiresAt in 15 minutes) through
// the public storeOrUpdate(), and compares process.memoryUsage().heapUsed after full GCs: before, with N pending, and
// after they expired and the store's own sweep removed them. Expiry is reached by moving Date.now() past expiresAt
// (the store reads the clock through Date.now()), so the run does not wait 15 minutes; the sweep is the store's own
// timer (sweepInterval 50 ms here instead of 60 s).
//
// The strings are flat, as the core hands them over (a digest's hex, a uid from a parsed request or a database row);
// a template literal would make a cons string of its parts, which takes more heap than the store itself would.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';

// The library as bench/run.ts built it from the sources, beside this script's own build (argv[3]).
const libDir = process.argv[3];
if (!libDir) throw new Error('usage: memory.js COUNT LIBRARY_DIR (bench/run.ts builds and runs it)');
const { MemoryStore } = (await import(
  pathToFileURL(join(libDir, 'index.js')).href
)) as typeof import('../src/index.js');

export interface MemoryResult {
  count: number;
  baseline: number;
  pending: number;
  expired: number;
  bytesPerToken: number;
  /** Heap after expiry minus the baseline, in bytes (≈ 0 when everything was returned). */
  leftover: number;
  /** Records the store still counted after the sweep (must be 0). */
  leftRecords: number;
}

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('bench/memory.ts needs node --expose-gc');

const hashBytes = randomBytes(32);

/** The i-th distinct 64-hex token hash, a flat string as `digest('hex')` makes it. */
function tokenHash(i: number): string {
  hashBytes.writeUInt32BE(i, 0);
  return hashBytes.toString('hex');
}

/** `user<i>@example.com` as one flat string. */
function uid(prefix: string, i: number): string {
  return Buffer.from(`${prefix}${i}@example.com`, 'latin1').toString('latin1');
}

function heapUsed(): number {
  // Several passes: weak references and finalizers can hold garbage for one more cycle.
  for (let i = 0; i < 4; i++) gc!();
  return process.memoryUsage().heapUsed;
}

async function measure(count: number): Promise<MemoryResult> {
  const store = new MemoryStore({ sweepInterval: 50 });
  const expiresAt = Date.now() + 15 * 60_000;
  // Warm the code paths (so that the optimised code of storeOrUpdate and the sweep is in the baseline, not counted as
  // leftover), then remove those records again.
  for (let i = 0; i < 20_000; i++) {
    await store.storeOrUpdate({
      uid: uid('warm', i),
      tokenHash: tokenHash(i),
      expiresAt: new Date(expiresAt),
    });
  }
  await store.clear();
  const baseline = heapUsed();
  for (let i = 0; i < count; i++) {
    await store.storeOrUpdate({
      uid: uid('user', i),
      tokenHash: tokenHash(i),
      expiresAt: new Date(expiresAt),
    });
  }
  const pending = heapUsed();
  if ((await store.length()) !== count) throw new Error('MemoryStore lost records');

  const realNow = Date.now;
  Date.now = () => realNow() + 60 * 60_000;
  try {
    await sleep(250); // a few sweeps
  } finally {
    Date.now = realNow;
  }
  const leftRecords = await store.length();
  const expired = heapUsed();
  await store.close();
  return {
    count,
    baseline,
    pending,
    expired,
    bytesPerToken: (pending - baseline) / count,
    leftover: expired - baseline,
    leftRecords,
  };
}

const count = Number(process.argv[2]);
if (!Number.isSafeInteger(count) || count <= 0) throw new Error('usage: memory.ts COUNT');
const result = await measure(count);
if (process.send) process.send(result);
else console.log(JSON.stringify(result));
