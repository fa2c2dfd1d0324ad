import { describe } from 'vitest';

type Describe = typeof describe;

/** Resolves `work`, or rejects after `ms` milliseconds. */
export async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `describe` when `probe` reaches the server; otherwise, in CI (`CI` set) it throws so the run fails, and on a
 * developer's machine it prints why and returns `describe.skip`. Never skips silently.
 */
export async function describeWithServer(what: string, probe: () => Promise<unknown>): Promise<Describe> {
  try {
    await withTimeout(probe(), 3000, what);
    return describe;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    if (process.env.CI) throw new Error(`${what} is unreachable in CI: ${reason}`);
    console.warn(`[skip] ${what} suite: ${reason} (start the server, or run in CI where it is required)`);
    return describe.skip as unknown as Describe;
  }
}
