import { PasswordlessError } from '../../src/errors.js';
import { readOptions } from '../../src/options.js';
import {
  assertBudget,
  assertConsumeArgs,
  assertFamilyRecord,
  assertInvalidateArgs,
  assertRotateArgs,
  assertTokenHash,
  assertTokenRecord,
  assertUid,
} from '../../src/store-args.js';
import type {
  ConsumeFailure,
  ConsumeOptions,
  ConsumeResult,
  FailureBudget,
  RefreshFamily,
  RefreshRotation,
  RotateResult,
  StoreResult,
  TokenRecord,
  TokenStore,
} from '../../src/types.js';
import {
  DEFAULT_TABLE,
  EXISTS_SQL,
  familySchemaSql,
  PURGE_AT,
  quoteFamilyTable,
  quoteTable,
  type RelationNames,
  relationNames,
  tokenSchemaSql,
} from './schema.js';

export { schemaSql } from './schema.js';

/** One query result as pg returns it; only `rows` is read. */
export interface PgQueryResult {
  /** The rows, as plain objects keyed by column name. */
  rows: unknown[];
}

/**
 * What the store needs of its `pool`: pg's `query(text, values)` returning a Promise. A `pg.Pool` is the intended
 * value; a `pg.Client` or a checked-out `PoolClient` works too (their queries then run one at a time).
 */
export interface PgQueryable {
  /** Runs one SQL text with `$1…$n` parameters (or, without `values`, the simple protocol). */
  query(text: string, values?: unknown[]): Promise<PgQueryResult>;
}

/** Options of {@link PostgresStore}. */
export interface PostgresStoreOptions {
  /** A `pg.Pool` the app made and owns (or anything with pg's `query()`); the store never ends it. Required. */
  pool: PgQueryable;
  /**
   * The table, optionally schema-qualified (`'auth.passwordless_tokens'`); it is quoted, never interpolated raw. API
   * mode's refresh families live beside it in `<table>_families`. Default: `'passwordless_tokens'`.
   */
  table?: string;
  /**
   * Before the first query, check (one `SELECT to_regclass(…)`, no lock) whether the two tables and their indexes
   * exist, and run the part of `schemaSql(table)` that creates a missing one; `false` when migrations create them (no
   * check, no DDL). Default: `true`.
   */
  createTable?: boolean;
  /**
   * Milliseconds between purges of rows with nothing live and of expired families (one indexed `DELETE` per table on
   * an unref()-ed timer). With `createTable: true` the purge starts once the first call found or made the tables; with
   * `false`, at construction. Default: `60000`.
   */
  sweepInterval?: number;
}

// Every key of PostgresStoreOptions, kept complete by the compiler, to refuse unknown (misspelt) options.
const OPTION_KEYS: Record<keyof PostgresStoreOptions, true> = {
  pool: true,
  table: true,
  createTable: true,
  sweepInterval: true,
};

/**
 * SQLSTATEs of a `CREATE … IF NOT EXISTS` that lost a race with another session creating the same table: 23505 (unique
 * violation on pg_type / pg_class, the usual one), 42710 (`type … already exists`), 42P07 (`relation … already exists`).
 */
const CREATE_RACE_CODES = new Set(['23505', '42710', '42P07']);
/** serialization_failure: only under REPEATABLE READ / SERIALIZABLE; the statement was rolled back, so a retry is safe. */
const SERIALIZATION_FAILURE = '40001';
const MAX_TRIES = 5;
/** The last instant a JavaScript Date can hold; a failure window reaching past it ends there. */
const MAX_DATE_MS = 8.64e15;

// PostgreSQL `text` cannot hold NUL, and pg encodes a lone UTF-16 surrogate as U+FFFD. assertUid refuses both in a uid;
// an origin is checked here (the core only ever sends same-site paths, which have neither).
const NOT_REPRESENTABLE = /\0|\p{Cs}/u;

function sqlState(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
}

function bad(message: string): PasswordlessError {
  return new PasswordlessError('BAD_OPTIONS', `new PostgresStore(): ${message}`);
}

function shown(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? JSON.stringify(value) : typeof value;
}

/** Columns a new token replaces; a refused (locked) store keeps the row's own values. */
const TOKEN_COLUMNS = ['token_hash', 'expires_at', 'origin', 'attempts', 'max_attempts', 'lockable'] as const;

/** The statements of one table, built once with its escaped name; every value goes in as a `$n` parameter. */
function statements(table: string) {
  const t = quoteTable(table);
  const f = quoteFamilyTable(table);
  // $6 lockable, $7 budget max (NULL without a budget), $8 the app's now. NULL anywhere makes it not true: stored.
  const refused =
    '(EXCLUDED.lockable AND cur.failures >= $7::integer AND cur.failures_until > $8::timestamptz)';
  return {
    // One statement. Replacing the uid's earlier token also resets its attempt count; the uid's failure count and
    // window are never touched. A lockable record of a uid over its budget leaves the row as it was (every column set
    // to its own value, under the row lock ON CONFLICT takes) and RETURNING reports the refusal with the lock's end.
    // $1 uid, $2 token hash, $3 expires at, $4 origin, $5 max attempts, $6 lockable, $7 budget max, $8 the app's now.
    store: `INSERT INTO ${t} AS cur (uid, token_hash, expires_at, origin, attempts, max_attempts, lockable)
VALUES ($1, $2, $3::timestamptz, $4, 0, $5::integer, $6::boolean)
ON CONFLICT (uid) DO UPDATE SET
${TOKEN_COLUMNS.map((c) => `  ${c} = CASE WHEN ${refused} THEN cur.${c} ELSE EXCLUDED.${c} END`).join(',\n')}
RETURNING ($6::boolean AND cur.failures >= $7::integer AND cur.failures_until > $8::timestamptz) IS TRUE AS locked,
  extract(epoch FROM cur.failures_until)::float8 * 1000 AS locked_until`,
    // consume in ONE statement. `target` takes the uid's row lock (FOR UPDATE) before anything is decided, so every
    // consume of one uid runs after the previous one committed, and under READ COMMITTED the lock returns the newest
    // row version (or none once a racing consume deleted it). From that locked row `target` decides the reason,
    // `next` the uid's failure state afterwards, `plan` what happens to the row; exactly one of the two
    // data-modifying CTEs applies it (their conditions exclude each other):
    //   'missing' (no token, the row only holds failures), 'locked' → untouched
    //   'expired', 'exhausted', 'ok' without keep → the token is void: the row is deleted, or, while the uid's failures
    //                                               are live, only the token is cleared (NULL hash, -infinity)
    //   'mismatch'                                 → attempts + 1
    //   with a budget, a mismatch (or exhausted) counts one failure and restarts the window; 'ok' forgets them.
    // $1 uid, $2 token hash, $3 keep, $4 the app's now (see docs/token-stores.md for why not the server's now()),
    // $5 budget max and $6 now + budget window (both NULL without a budget).
    consume: `WITH target AS MATERIALIZED (
  SELECT uid, origin, failures, failures_until,
    CASE
      WHEN token_hash IS NULL THEN 'missing'
      WHEN (expires_at > $4::timestamptz) IS NOT TRUE THEN 'expired'
      WHEN lockable AND failures >= $5::integer AND failures_until > $4::timestamptz THEN 'locked'
      WHEN token_hash = $2 THEN 'ok'
      WHEN max_attempts IS NOT NULL AND attempts + 1 >= max_attempts THEN 'exhausted'
      ELSE 'mismatch'
    END AS reason
  FROM ${t} WHERE uid = $1 FOR UPDATE
), next AS (
  SELECT uid, origin, reason, failures, failures_until,
    reason IN ('expired', 'exhausted') OR (reason = 'ok' AND NOT $3::boolean) AS void,
    CASE
      WHEN $6::timestamptz IS NULL THEN failures
      WHEN reason = 'ok' THEN 0
      WHEN reason IN ('exhausted', 'mismatch')
        THEN (CASE WHEN failures_until > $4::timestamptz THEN failures ELSE 0 END) + 1
      ELSE failures
    END AS next_failures,
    CASE
      WHEN $6::timestamptz IS NULL THEN failures_until
      WHEN reason = 'ok' THEN NULL
      WHEN reason IN ('exhausted', 'mismatch') THEN $6::timestamptz
      ELSE failures_until
    END AS next_until
  FROM target
), plan AS MATERIALIZED (
  SELECT *,
    CASE
      WHEN void AND (next_until > $4::timestamptz) IS NOT TRUE THEN 'delete'
      WHEN void OR reason = 'mismatch' OR (next_failures, next_until) IS DISTINCT FROM (failures, failures_until)
        THEN 'update'
    END AS action
  FROM next
), removed AS (
  DELETE FROM ${t} AS r USING plan WHERE r.uid = plan.uid AND plan.action = 'delete'
), changed AS (
  UPDATE ${t} AS c SET
    token_hash = CASE WHEN plan.void THEN NULL ELSE c.token_hash END,
    expires_at = CASE WHEN plan.void THEN '-infinity'::timestamptz ELSE c.expires_at END,
    origin = CASE WHEN plan.void THEN NULL ELSE c.origin END,
    max_attempts = CASE WHEN plan.void THEN NULL ELSE c.max_attempts END,
    lockable = c.lockable AND NOT plan.void,
    attempts = CASE WHEN plan.void THEN 0 WHEN plan.reason = 'mismatch' THEN c.attempts + 1 ELSE c.attempts END,
    failures = plan.next_failures,
    failures_until = plan.next_until
  FROM plan WHERE c.uid = plan.uid AND plan.action = 'update'
)
SELECT reason, origin FROM plan`,
    // With a hash, only the record that still holds it (a token stored meanwhile survives). The uid's failures
    // outlive its token: while they are live only the token is cleared, otherwise the row goes. $3 the app's now.
    invalidate: `WITH target AS MATERIALIZED (
  SELECT uid, (failures_until > $3::timestamptz) IS TRUE AS failing
  FROM ${t} WHERE uid = $1 AND token_hash IS NOT NULL AND ($2::text IS NULL OR token_hash = $2::text) FOR UPDATE
), removed AS (
  DELETE FROM ${t} AS r USING target WHERE r.uid = target.uid AND NOT target.failing
)
UPDATE ${t} AS c SET token_hash = NULL, expires_at = '-infinity'::timestamptz, origin = NULL, attempts = 0,
  max_attempts = NULL, lockable = false
FROM target WHERE c.uid = target.uid AND target.failing`,
    // One statement for both tables (one implicit transaction).
    clear: `WITH families AS (DELETE FROM ${f}) DELETE FROM ${t}`,
    // The second condition is implied by the first; it lets the planner use the purge index.
    length: `SELECT count(*) AS n FROM ${t} WHERE expires_at > $1::timestamptz AND ${PURGE_AT} > $1::timestamptz`,
    // A row goes once neither its token nor its uid's failures are live.
    purge: `DELETE FROM ${t} WHERE ${PURGE_AT} <= $1::timestamptz`,

    // Refresh families (API mode), in their own table: nothing a uid can be makes them meet the token rows.
    // $1 family, $2 uid, $3 hash, $4 expires at. A family id is 16 random bytes: the conflict is a replay at most,
    // and the record given replaces the stored one (as MemoryStore's Map#set does).
    createFamily: `INSERT INTO ${f} (family, uid, token_hash, expires_at)
VALUES ($1::text, $2::text, $3::text, $4::timestamptz)
ON CONFLICT (family) DO UPDATE SET uid = EXCLUDED.uid, token_hash = EXCLUDED.token_hash,
  expires_at = EXCLUDED.expires_at`,
    // rotate in ONE statement, built as consume is. `target` takes the family's row lock (FOR UPDATE) before anything
    // is decided: under READ COMMITTED a rotation that waited for a racing one gets the newest committed version of the
    // row (holding the winner's new hash, so `reused`), or none once a racing one deleted it (`missing`). From that
    // locked version `target` decides, and exactly one of the two data-modifying CTEs applies it: 'ok' replaces hash
    // and expiry (the purge key), 'expired' and 'reused' delete the family. Under REPEATABLE READ / SERIALIZABLE the
    // loser fails with 40001 instead and is retried, with the same outcome.
    // $1 family, $2 presented hash, $3 next hash, $4 next expiry, $5 the app's now.
    rotate: `WITH target AS MATERIALIZED (
  SELECT family, uid,
    CASE
      WHEN (expires_at > $5::timestamptz) IS NOT TRUE THEN 'expired'
      WHEN token_hash = $2::text THEN 'ok'
      ELSE 'reused'
    END AS reason
  FROM ${f} WHERE family = $1::text FOR UPDATE
), rotated AS (
  UPDATE ${f} AS r SET token_hash = $3::text, expires_at = $4::timestamptz
  FROM target WHERE r.family = target.family AND target.reason = 'ok'
), removed AS (
  DELETE FROM ${f} AS d USING target WHERE d.family = target.family AND target.reason <> 'ok'
)
SELECT reason, uid FROM target`,
    // $1 family, $2 the app's now: the uid only of a family that was still live.
    revokeFamily: `DELETE FROM ${f} WHERE family = $1::text RETURNING uid, expires_at > $2::timestamptz AS live`,
    // Through the index on uid; exact text equality, so a uid is never a pattern.
    revokeFamilies: `DELETE FROM ${f} WHERE uid = $1::text`,
    hasFamily: `SELECT true AS found FROM ${f} WHERE family = $1::text AND expires_at > $2::timestamptz`,
    purgeFamilies: `DELETE FROM ${f} WHERE expires_at <= $1::timestamptz`,
  };
}

interface ConsumeRow {
  reason: ConsumeFailure | 'ok';
  origin: string | null;
}

interface StoreRow {
  locked: boolean;
  locked_until: number | string | null;
}

interface RotateRow {
  reason: 'ok' | 'expired' | 'reused';
  uid: string;
}

/**
 * A TokenStore in a PostgreSQL table (peer dependency: `pg`), with API mode's refresh families in a second table
 * `<table>_families`. Each operation is one SQL statement, so several app instances can share the tables; the tables
 * and their indexes are created on first use if missing, unless `createTable: false`.
 */
export class PostgresStore implements TokenStore {
  readonly #pool: PgQueryable;
  readonly #createTable: boolean;
  /** The DDL of the token table and of the family table, each run only when one of its relations is missing. */
  readonly #ddl: { tokens: string; families: string };
  /** `to_regclass` names of the tables and their indexes, checked before the DDL. */
  readonly #relations: RelationNames;
  readonly #sql: ReturnType<typeof statements>;
  #tableReady = false;
  #creating: Promise<void> | undefined;
  #sweeping = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: PostgresStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw bad('pass an options object, e.g. new PostgresStore({ pool: new pg.Pool() }).');
    }
    readOptions('new PostgresStore()', options, OPTION_KEYS);
    const { pool, table = DEFAULT_TABLE, createTable = true, sweepInterval = 60_000 } = options;
    if (
      typeof pool !== 'object' ||
      pool === null ||
      typeof (pool as { query?: unknown }).query !== 'function'
    ) {
      throw bad(
        `\`pool\` must be a Pool from the \`pg\` package (npm install pg), or anything with pg's query(); got ${pool === null ? 'null' : typeof pool}.`,
      );
    }
    if (typeof table !== 'string') throw bad(`\`table\` must be a string; got ${shown(table)}.`);
    try {
      this.#sql = statements(table);
      this.#ddl = { tokens: tokenSchemaSql(table), families: familySchemaSql(table) };
      this.#relations = relationNames(table);
    } catch (err) {
      throw bad(`\`table\` ${JSON.stringify(table)} is not usable: ${(err as Error).message}.`);
    }
    if (typeof createTable !== 'boolean') {
      throw bad(`\`createTable\` must be a boolean; got ${shown(createTable)}.`);
    }
    if (!Number.isSafeInteger(sweepInterval) || sweepInterval <= 0) {
      throw bad(`\`sweepInterval\` must be a positive number of milliseconds; got ${shown(sweepInterval)}.`);
    }
    this.#pool = pool;
    this.#createTable = createTable;
    // Reads refuse expired rows by themselves; the sweep only bounds the table's size. unref() so it never keeps the
    // process alive; close() stops it.
    this.#timer = setInterval(() => this.#sweep(), sweepInterval);
    this.#timer.unref();
  }

  async storeOrUpdate(record: TokenRecord, budget?: FailureBudget): Promise<StoreResult> {
    assertTokenRecord(record);
    assertBudget(budget);
    if (record.origin !== undefined && NOT_REPRESENTABLE.test(record.origin)) {
      throw new PasswordlessError(
        'INVALID_ARGUMENT',
        'storeOrUpdate(): PostgreSQL text cannot hold a NUL character or an unpaired UTF-16 surrogate in origin.',
      );
    }
    const { rows } = await this.#query(this.#sql.store, [
      record.uid,
      record.tokenHash,
      record.expiresAt.toISOString(),
      record.origin ?? null,
      record.maxAttempts ?? null,
      record.lockable === true,
      budget?.max ?? null,
      new Date().toISOString(),
    ]);
    const row = rows[0] as StoreRow | undefined;
    if (row?.locked === true && row.locked_until !== null)
      return { lockedUntil: new Date(Number(row.locked_until)) };
  }

  async consume(uid: string, tokenHash: string, options: ConsumeOptions): Promise<ConsumeResult> {
    assertConsumeArgs(uid, tokenHash, options);
    const { budget } = options;
    const now = Date.now();
    const { rows } = await this.#query(this.#sql.consume, [
      uid,
      tokenHash,
      options.keep,
      new Date(now).toISOString(),
      budget?.max ?? null,
      budget ? new Date(Math.min(now + budget.window, MAX_DATE_MS)).toISOString() : null,
    ]);
    const row = rows[0] as ConsumeRow | undefined;
    if (!row) return { ok: false, reason: 'missing' };
    if (row.reason === 'ok') return row.origin === null ? { ok: true } : { ok: true, origin: row.origin };
    return { ok: false, reason: row.reason };
  }

  async invalidateUser(uid: string, tokenHash?: string): Promise<void> {
    assertInvalidateArgs(uid, tokenHash);
    await this.#query(this.#sql.invalidate, [uid, tokenHash ?? null, this.#now()]);
  }

  async clear(): Promise<void> {
    await this.#query(this.#sql.clear);
  }

  async createFamily(record: RefreshFamily): Promise<void> {
    assertFamilyRecord(record);
    await this.#query(this.#sql.createFamily, [
      record.family,
      record.uid,
      record.tokenHash,
      record.expiresAt.toISOString(),
    ]);
  }

  async rotateFamily(family: string, tokenHash: string, next: RefreshRotation): Promise<RotateResult> {
    assertRotateArgs(family, tokenHash, next);
    const { rows } = await this.#query(this.#sql.rotate, [
      family,
      tokenHash,
      next.tokenHash,
      next.expiresAt.toISOString(),
      this.#now(),
    ]);
    const row = rows[0] as RotateRow | undefined;
    if (!row) return { ok: false, reason: 'missing' };
    return row.reason === 'ok' ? { ok: true, uid: row.uid } : { ok: false, reason: row.reason };
  }

  async revokeFamily(family: string): Promise<string | undefined> {
    assertTokenHash('revokeFamily', family, 'family');
    const { rows } = await this.#query(this.#sql.revokeFamily, [family, this.#now()]);
    const row = rows[0] as { uid: string; live: boolean } | undefined;
    return row?.live === true ? row.uid : undefined;
  }

  async revokeFamilies(uid: string): Promise<void> {
    assertUid('revokeFamilies', uid);
    await this.#query(this.#sql.revokeFamilies, [uid]);
  }

  async hasFamily(family: string): Promise<boolean> {
    assertTokenHash('hasFamily', family, 'family');
    const { rows } = await this.#query(this.#sql.hasFamily, [family, this.#now()]);
    return rows.length > 0;
  }

  async length(): Promise<number> {
    const { rows } = await this.#query(this.#sql.length, [this.#now()]);
    return Number((rows[0] as { n: number | string } | undefined)?.n ?? 0);
  }

  /** Stops the purge timer. The pool belongs to the app and stays open; the store still works if called again. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * "Now" on the app's clock, which also computed `expiresAt`: the ttl then holds exactly as configured, whatever the
   * skew between the app's and the database's clocks (and an injected or faked clock applies to both ends).
   */
  #now(): string {
    return new Date().toISOString();
  }

  async #query(text: string, values?: unknown[]): Promise<PgQueryResult> {
    if (this.#createTable && !this.#tableReady) await this.#ensureTable();
    for (let attempt = 1; ; attempt++) {
      try {
        return await (values === undefined ? this.#pool.query(text) : this.#pool.query(text, values));
      } catch (err) {
        if (attempt < MAX_TRIES && sqlState(err) === SERIALIZATION_FAILURE) continue;
        throw err;
      }
    }
  }

  // Memoised so that concurrent first calls share one CREATE; forgotten on failure so that a call after an outage
  // tries again instead of failing forever.
  #ensureTable(): Promise<void> {
    this.#creating ??= this.#runDdl().then(
      () => {
        this.#tableReady = true;
      },
      (err: unknown) => {
        this.#creating = undefined;
        throw err;
      },
    );
    return this.#creating;
  }

  // The DDL runs only when a table or an index is missing, and only the part (tokens, families) that lacks one, so an
  // upgrade that adds the family table leaves the busy token table alone. `CREATE INDEX IF NOT EXISTS` is not free
  // when the index exists: PostgreSQL first takes a SHARE lock on the table, which waits for any open write
  // transaction on it and makes every consume and store of the other instances queue behind it, and it needs table
  // ownership (42501 for a role with only SELECT/INSERT/UPDATE/DELETE). `to_regclass` takes no lock and needs no
  // privilege on the table.
  async #runDdl(): Promise<void> {
    const r = this.#relations;
    const { rows } = await this.#pool.query(EXISTS_SQL, [
      r.table,
      r.index,
      r.families,
      r.familiesUidIndex,
      r.familiesPurgeIndex,
    ]);
    const found = rows[0] as { has_tokens?: unknown; has_families?: unknown } | undefined;
    const ddl = [
      found?.has_tokens === true ? '' : this.#ddl.tokens,
      found?.has_families === true ? '' : this.#ddl.families,
    ]
      .filter(Boolean)
      .join('\n');
    if (ddl === '') return;
    for (let attempt = 1; ; attempt++) {
      try {
        // No values: pg uses the simple protocol, which runs all the statements in one round trip.
        await this.#pool.query(ddl);
        return;
      } catch (err) {
        // Another process created the table or index between our IF NOT EXISTS check and our insert into the catalog.
        // Nothing of ours was applied (one implicit transaction); run again: now IF NOT EXISTS sees it.
        if (attempt < MAX_TRIES && CREATE_RACE_CODES.has(String(sqlState(err)))) continue;
        throw err;
      }
    }
  }

  #sweep(): void {
    // Before the table exists there is nothing to purge; this also keeps an unused store from creating it.
    if (this.#sweeping || (this.#createTable && !this.#tableReady)) return;
    this.#sweeping = true;
    // A failed purge is retried at the next tick; expired rows are refused by every read meanwhile, and a database
    // outage surfaces (as STORE_ERROR) through the calls the app makes, not through this timer. The two tables are
    // purged apart, so one failing (e.g. a family table a migration has not created yet) leaves the other purged.
    const purge = (text: string) =>
      Promise.resolve()
        .then(() => this.#pool.query(text, [this.#now()]))
        .catch(() => undefined);
    purge(this.#sql.purge)
      .then(() => purge(this.#sql.purgeFamilies))
      .finally(() => {
        this.#sweeping = false;
      });
  }
}
