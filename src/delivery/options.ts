import { PasswordlessError } from '../errors.js';

/** Throws the setup-time error of a delivery helper: `BAD_OPTIONS`, naming the call. */
export function fail(call: string, message: string): never {
  throw new PasswordlessError('BAD_OPTIONS', `${call}: ${message}`);
}

/** A short description of a received value for error messages (never the whole of a long string). */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** Copies the defined options (undefined means absent), refusing a non-object and unknown keys. */
export function readOptions(
  call: string,
  options: unknown,
  known: readonly string[],
): Record<string, unknown> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    fail(call, `options must be an object; got ${show(options)}.`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (!known.includes(key)) {
      const near = known.find((k) => distance(k.toLowerCase(), key.toLowerCase()) <= 2);
      fail(call, `unknown option \`${key}\`${near ? `; did you mean \`${near}\`?` : '.'}`);
    }
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/** An optional function option. */
export function optionalFunction<F>(call: string, o: Record<string, unknown>, key: string): F | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'function') fail(call, `\`${key}\` must be a function; got ${show(v)}.`);
  return v as F;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** True when `value` holds a control character (CR, LF, NUL, C1, or a Unicode line/paragraph separator). */
export function hasControl(value: string): boolean {
  return CONTROL.test(value);
}
