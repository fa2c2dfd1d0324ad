/**
 * Trims and lower-cases an email address, or returns `null` when it is not one plain `name@domain.tld`.
 * Deliberately strict (no quotes, spaces, commas, angle brackets…): mail goes to exactly the address shown.
 */
export function normalizeEmail(input: string): string | null {
  const email = input.trim().toLowerCase();
  if (email.length > 254) return null;
  return /^[^\s@"'<>()[\]\\,;:]{1,64}@[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(email) ? email : null;
}
