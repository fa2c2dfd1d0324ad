import { fail, show } from '../options.js';

export { fail, hasControl, readOptions, show } from '../options.js';

/** An optional function option. */
export function optionalFunction<F>(call: string, o: Record<string, unknown>, key: string): F | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'function') fail(call, `\`${key}\` must be a function; got ${show(v)}.`);
  return v as F;
}
