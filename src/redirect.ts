/** Longest origin path that is kept; longer ones are dropped. */
export const MAX_ORIGIN_LENGTH = 1024;

// C0 controls, DEL and C1 controls: browsers strip tabs and newlines inside URLs ("/\t/evil.com" becomes
// "//evil.com"), and CR/LF in a Location header would split the response.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function isSamePath(path: string): boolean {
  return (
    path.length > 0 &&
    path[0] === '/' &&
    // "//host" and "/\host" are protocol-relative URLs to another host in browsers.
    path[1] !== '/' &&
    path[1] !== '\\' &&
    !CONTROL.test(path)
  );
}

/**
 * True only for a same-site path: one leading '/', not followed by '/' or '\', no control characters, no scheme — both
 * as given and after one percent-decoding (so "/%2F%2Fevil.com" and "/%5Cevil.com" are refused too). Stops open
 * redirects through the origin field (passwordless 1.x followed any origin).
 */
export function isSafeRedirect(path: unknown): path is string {
  if (typeof path !== 'string' || path.length > MAX_ORIGIN_LENGTH || !isSamePath(path)) return false;
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return false;
  }
  return isSamePath(decoded);
}
