import { createHash } from 'node:crypto';

/** The table PostgresStore uses when none is given. */
export const DEFAULT_TABLE = 'passwordless_tokens';

/** PostgreSQL truncates longer identifiers (NAMEDATALEN − 1 bytes). */
const MAX_IDENTIFIER_BYTES = 63;

/** A table name split into its optional schema and its name, both unescaped. */
export interface TableName {
  schema: string | undefined;
  name: string;
}

/**
 * Quotes one SQL identifier: wraps it in double quotes and doubles every quote inside, exactly as pg's
 * `escapeIdentifier` does, so a table name can never end the identifier and smuggle SQL in. Kept local so that this
 * entry point needs nothing from `pg` at run time.
 */
export function escapeIdentifier(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

/**
 * Splits `table` at its one dot into schema and name (`'auth.tokens'`), or returns the bare name. Throws a plain Error
 * for a name PostgreSQL cannot hold: empty parts, more than one dot, NUL, or more than 63 bytes per part.
 */
export function parseTableName(table: string): TableName {
  const parts = table.split('.');
  if (parts.length > 2) {
    throw new Error(
      `use at most one dot, between schema and table ("myschema.tokens"); got ${parts.length - 1}`,
    );
  }
  for (const part of parts) {
    if (part.length === 0) throw new Error('the schema and table parts must not be empty');
    if (part.includes('\0')) throw new Error('an identifier cannot contain a NUL character');
    if (Buffer.byteLength(part, 'utf8') > MAX_IDENTIFIER_BYTES) {
      throw new Error(
        `each part must be at most ${MAX_IDENTIFIER_BYTES} bytes (PostgreSQL would truncate it)`,
      );
    }
  }
  return parts.length === 2 ? { schema: parts[0]!, name: parts[1]! } : { schema: undefined, name: parts[0]! };
}

/** The escaped, possibly schema-qualified table name, ready to put in SQL. */
export function quoteTable(table: string): string {
  const { schema, name } = parseTableName(table);
  return schema === undefined
    ? escapeIdentifier(name)
    : `${escapeIdentifier(schema)}.${escapeIdentifier(name)}`;
}

/**
 * Name of the purge index (unescaped; an index always lives in its table's schema). `<table>_purge_idx` when that fits
 * in 63 bytes; otherwise a prefix plus a hash of the full name, so two long table names never share an index name
 * (PostgreSQL's own truncation could make them collide and `IF NOT EXISTS` skip one).
 */
export function purgeIndexName(name: string): string {
  const plain = `${name}_purge_idx`;
  if (Buffer.byteLength(plain, 'utf8') <= MAX_IDENTIFIER_BYTES) return plain;
  const suffix = `_${createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 8)}_purge_idx`;
  let prefix = name;
  while (Buffer.byteLength(prefix + suffix, 'utf8') > MAX_IDENTIFIER_BYTES)
    prefix = [...prefix].slice(0, -1).join('');
  return prefix + suffix;
}

/**
 * The names to check before running the DDL, as `to_regclass` takes them: the quoted (possibly schema-qualified)
 * table, and its purge index, which always lives in the table's schema.
 */
export function relationNames(table: string): { table: string; index: string } {
  const { schema, name } = parseTableName(table);
  const index = escapeIdentifier(purgeIndexName(name));
  return {
    table: quoteTable(table),
    index: schema === undefined ? index : `${escapeIdentifier(schema)}.${index}`,
  };
}

/**
 * One query, taking no lock and needing no privilege on the table: whether the table ($1) and its purge index ($2)
 * exist. `to_regclass` resolves a name as a query would (quoted parts, search_path) and gives NULL for a missing one.
 */
export const EXISTS_SQL =
  'SELECT to_regclass($1::text) IS NOT NULL AS has_table, to_regclass($2::text) IS NOT NULL AS has_index';

/**
 * The instant from which a row holds nothing live: the later of its token's expiry and the end of its uid's failure
 * window. The purge deletes by it, and the purge index is built on exactly this expression.
 */
export const PURGE_AT = 'GREATEST(expires_at, failures_until)';

/**
 * The DDL of the token table and its purge index, as one SQL string of two statements. PostgresStore runs exactly
 * this at its first call when the table or the index is missing (unless `createTable: false`); run it yourself in a
 * migration otherwise, e.g.
 * `await pool.query(schemaSql('passwordless_tokens'))` or paste its output into a migration file.
 *
 * - `uid` is the primary key: one row per user, and the index every statement looks rows up by.
 * - `token_hash` holds 64 lower-case hex characters (SHA-256 or HMAC-SHA256); the raw token is never stored. It is
 *   NULL (and `expires_at` is `-infinity`) when the row has no pending token and is only kept for the uid's failures.
 * - `expires_at` is compared with the app's clock on every read.
 * - `attempts` counts wrong tries since the token was stored; the token is void when it reaches `max_attempts`.
 * - `lockable` marks a short code, refused while its uid is over its failure budget.
 * - `failures` counts the uid's wrong tokens across re-requests, forgotten at `failures_until`.
 * - the index on `GREATEST(expires_at, failures_until)` serves the periodic purge of rows with nothing live.
 */
export function schemaSql(table: string = DEFAULT_TABLE): string {
  const qualified = quoteTable(table);
  const index = escapeIdentifier(purgeIndexName(parseTableName(table).name));
  return [
    `CREATE TABLE IF NOT EXISTS ${qualified} (`,
    '  uid text PRIMARY KEY,',
    '  token_hash text,',
    '  expires_at timestamptz NOT NULL,',
    '  origin text,',
    '  attempts integer NOT NULL DEFAULT 0,',
    '  max_attempts integer,',
    '  lockable boolean NOT NULL DEFAULT false,',
    '  failures integer NOT NULL DEFAULT 0,',
    '  failures_until timestamptz',
    ');',
    `CREATE INDEX IF NOT EXISTS ${index} ON ${qualified} ((${PURGE_AT}));`,
  ].join('\n');
}
