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
 * `<name><suffix>` when that fits in 63 bytes; otherwise a prefix of `name`, a hash of the full name and the suffix, so
 * two long table names never share a derived name (PostgreSQL's own truncation could make them collide and
 * `IF NOT EXISTS` skip one).
 */
function derivedName(name: string, suffix: string): string {
  const plain = `${name}${suffix}`;
  if (Buffer.byteLength(plain, 'utf8') <= MAX_IDENTIFIER_BYTES) return plain;
  const tail = `_${createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 8)}${suffix}`;
  let prefix = name;
  while (Buffer.byteLength(prefix + tail, 'utf8') > MAX_IDENTIFIER_BYTES)
    prefix = [...prefix].slice(0, -1).join('');
  return prefix + tail;
}

/**
 * Name of the purge index (unescaped; an index always lives in its table's schema). `<table>_purge_idx` when that fits
 * in 63 bytes; otherwise a prefix plus a hash of the full name.
 */
export function purgeIndexName(name: string): string {
  return derivedName(name, '_purge_idx');
}

/**
 * Names (unescaped) of the refresh-family table of API mode and its two indexes, derived from the token table's name
 * as {@link purgeIndexName} is: `<table>_families`, `<table>_families_uid_idx`, `<table>_families_purge_idx`. They
 * live in the token table's schema.
 */
export function familyNames(name: string): { table: string; uidIndex: string; purgeIndex: string } {
  return {
    table: derivedName(name, '_families'),
    uidIndex: derivedName(name, '_families_uid_idx'),
    purgeIndex: derivedName(name, '_families_purge_idx'),
  };
}

/** An unescaped relation name of `table`'s schema, escaped and qualified as `table` is. */
function sibling(schema: string | undefined, relation: string): string {
  const quoted = escapeIdentifier(relation);
  return schema === undefined ? quoted : `${escapeIdentifier(schema)}.${quoted}`;
}

/** The escaped, possibly schema-qualified name of the refresh-family table of `table` (for GRANTs and migrations). */
export function quoteFamilyTable(table: string): string {
  const { schema, name } = parseTableName(table);
  return sibling(schema, familyNames(name).table);
}

/** The relations the store needs, as `to_regclass` takes them (quoted, qualified as `table` is). */
export interface RelationNames {
  /** The token table. */
  table: string;
  /** Its purge index. */
  index: string;
  /** The refresh-family table. */
  families: string;
  /** Its index on uid. */
  familiesUidIndex: string;
  /** Its purge index on expires_at. */
  familiesPurgeIndex: string;
}

/**
 * The names to check before running the DDL, as `to_regclass` takes them: the quoted (possibly schema-qualified)
 * tables, and their indexes, which always live in their table's schema.
 */
export function relationNames(table: string): RelationNames {
  const { schema, name } = parseTableName(table);
  const family = familyNames(name);
  return {
    table: quoteTable(table),
    index: sibling(schema, purgeIndexName(name)),
    families: sibling(schema, family.table),
    familiesUidIndex: sibling(schema, family.uidIndex),
    familiesPurgeIndex: sibling(schema, family.purgeIndex),
  };
}

/**
 * One query, taking no lock and needing no privilege on the tables: whether the token table ($1) with its purge index
 * ($2), and the refresh-family table ($3) with its two indexes ($4, $5) exist. `to_regclass` resolves a name as a query
 * would (quoted parts, search_path) and gives NULL for a missing one.
 */
export const EXISTS_SQL = `SELECT to_regclass($1::text) IS NOT NULL AND to_regclass($2::text) IS NOT NULL AS has_tokens,
  to_regclass($3::text) IS NOT NULL AND to_regclass($4::text) IS NOT NULL AND to_regclass($5::text) IS NOT NULL
    AS has_families`;

/**
 * The instant from which a row holds nothing live: the later of its token's expiry and the end of its uid's failure
 * window. The purge deletes by it, and the purge index is built on exactly this expression.
 */
export const PURGE_AT = 'GREATEST(expires_at, failures_until)';

/** The DDL of the token table and its purge index (two statements). */
export function tokenSchemaSql(table: string): string {
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

/** The DDL of the refresh-family table of API mode and its two indexes (three statements). */
export function familySchemaSql(table: string): string {
  const qualified = quoteFamilyTable(table);
  const names = familyNames(parseTableName(table).name);
  return [
    `CREATE TABLE IF NOT EXISTS ${qualified} (`,
    '  family text PRIMARY KEY,',
    '  uid text NOT NULL,',
    '  token_hash text NOT NULL,',
    '  expires_at timestamptz NOT NULL',
    ');',
    `CREATE INDEX IF NOT EXISTS ${escapeIdentifier(names.uidIndex)} ON ${qualified} (uid);`,
    `CREATE INDEX IF NOT EXISTS ${escapeIdentifier(names.purgeIndex)} ON ${qualified} (expires_at);`,
  ].join('\n');
}

/**
 * The DDL of the store's two tables and their indexes, as one SQL string of five statements. PostgresStore runs
 * (the missing part of) exactly this at its first call when a table or an index is missing (unless
 * `createTable: false`); run it yourself in a migration otherwise, e.g.
 * `await pool.query(schemaSql('passwordless_tokens'))` or paste its output into a migration file. Every statement is
 * `IF NOT EXISTS`, so re-running it after an upgrade adds only what is new (the family table, since API mode).
 *
 * The token table (pending tokens and each uid's failure budget):
 * - `uid` is the primary key: one row per user, and the index every statement looks rows up by.
 * - `token_hash` holds 64 lower-case hex characters (SHA-256 or HMAC-SHA256); the raw token is never stored. It is
 *   NULL (and `expires_at` is `-infinity`) when the row has no pending token and is only kept for the uid's failures.
 * - `expires_at` is compared with the app's clock on every read.
 * - `attempts` counts wrong tries since the token was stored; the token is void when it reaches `max_attempts`.
 * - `lockable` marks a short code, refused while its uid is over its failure budget.
 * - `failures` counts the uid's wrong tokens across re-requests, forgotten at `failures_until`.
 * - the index on `GREATEST(expires_at, failures_until)` serves the periodic purge of rows with nothing live.
 *
 * The refresh-family table `<table>_families` (API mode: one row per login):
 * - `family` is the primary key: the 64-hex hash of the login's family id.
 * - `uid` is the user; its index serves `revokeFamilies` (log out everywhere).
 * - `token_hash` is the 64-hex hash of the current refresh token's secret part.
 * - `expires_at` is compared with the app's clock; its index serves the purge of expired families.
 */
export function schemaSql(table: string = DEFAULT_TABLE): string {
  return `${tokenSchemaSql(table)}\n${familySchemaSql(table)}`;
}
