import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const exec = promisify(execFile);

interface JsonReport {
  testResults: { assertionResults: { fullName: string; status: string }[] }[];
}

/** Runs the contract kit against one broken fixture store in a child vitest and returns the names of failed tests. */
async function failuresOf(fixture: string): Promise<string[]> {
  const out = join(tmpdir(), `kit-${fixture}-${process.pid}.json`);
  try {
    await exec(
      'npx',
      [
        'vitest',
        'run',
        '-c',
        'test/kit-fixtures/vitest.config.ts',
        `test/kit-fixtures/${fixture}.fixture.ts`,
        '--reporter=json',
        `--outputFile=${out}`,
      ],
      {
        env: { ...process.env, CI: '' },
      },
    ).catch(() => undefined); // a failing run exits non-zero: that is the expected outcome
    const report = JSON.parse(readFileSync(out, 'utf8')) as JsonReport;
    return report.testResults.flatMap((f) =>
      f.assertionResults.filter((a) => a.status === 'failed').map((a) => a.fullName),
    );
  } finally {
    rmSync(out, { force: true });
  }
}

describe('the contract kit fails broken stores', () => {
  it('a non-atomic consume fails the concurrency and attempt-counting tests', async () => {
    const failed = await failuresOf('NonAtomicStore');
    expect(failed.some((n) => n.includes('concurrent consumes of one token exactly one succeeds'))).toBe(
      true,
    );
    expect(failed.some((n) => n.includes('concurrent wrong tries count as'))).toBe(true);
  });

  it('a store that never expires fails the expiry tests', async () => {
    const failed = await failuresOf('NeverExpiringStore');
    expect(failed.some((n) => n.includes('expiresAt has passed is never returned'))).toBe(true);
    expect(failed.some((n) => n.includes('refused and not counted once expiresAt passes'))).toBe(true);
  });

  it('a store that treats uids as patterns fails the exact-match invalidateUser tests', async () => {
    const failed = await failuresOf('PatternInvalidatingStore');
    expect(failed.some((n) => n.includes('invalidateUser("*") is an exact match'))).toBe(true);
  });
});
