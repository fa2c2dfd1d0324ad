/**
 * True when `NODE_ENV` names production, read the way deployments really write it: trimmed and in any case
 * (`'Production'`, `'PRODUCTION'`, `'production '` from a shell export or a .env file all count). Read on every call,
 * never cached, so a value set after start-up (dotenv loaded late) still counts.
 */
export function isProduction(): boolean {
  return process.env.NODE_ENV?.trim().toLowerCase() === 'production';
}
