import { PasswordlessError } from '../../src/errors.js';
import { readOptions } from '../../src/options.js';
import { assertConsumeArgs, assertInvalidateArgs, assertTokenRecord } from '../../src/store-args.js';
import type { ConsumeOptions, ConsumeResult, TokenRecord, TokenStore } from '../../src/types.js';
import { DEFAULT_TABLE, quoteTable, schemaSql } from './schema.js';

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
  /** The table, optionally schema-qualified (`'auth.passwordless_tokens'`); it is quoted, never interpolated raw. Default: `'passwordless_tokens'`. */
  table?: string;
  /** Run `schemaSql(table)` (`CREATE … IF NOT EXISTS`) once before the first query; `false` when migrations create it. Default: `true`. */
  createTable?: boolean;
  /** Milliseconds between purges of expired rows (one indexed `DELETE` on an unref()-ed timer). Default: `60000`. */
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

/** The statements of one table, built once with its escaped name; every value goes in as a `$n` parameter. */
function statements(table: string) {
  const t = quoteTable(table);
  return {
    // One statement; replacing the uid's earlier token also resets its attempt count.
    store: `INSERT INTO ${t} (uid, token_hash, expires_at, origin, attempts, max_attempts)
VALUES ($1, $2, $3::timestamptz, $4, 0, $5)
ON CONFLICT (uid) DO UPDATE SET token_hash = EXCLUDED.token_hash, expires_at = EXCLUDED.expires_at,
  origin = EXCLUDED.origin, attempts = 0, max_attempts = EXCLUDED.max_attempts`,
    // consume in ONE statement. `target` takes the uid's row lock (FOR UPDATE) before anything is decided, so every
    // consume of one uid runs after the previous one committed, and under READ COMMITTED the lock returns the newest
    // row version (or none once a racing consume deleted it). The outcome is then computed from that locked row and
    // applied by exactly one of the two data-modifying CTEs, whose conditions exclude each other:
    //   expired                        → removed (reason 'expired'; a match on an expired row never succeeds)
    //   hash matches, not keep         → removed (ok: single use)
    //   hash matches, keep             → untouched (ok; allowTokenReuse)
    //   mismatch, this try reaches max → removed (reason 'exhausted')
    //   mismatch otherwise             → attempts + 1 (reason 'mismatch')
    // $1 uid, $2 token hash, $3 keep, $4 the app's now (see docs/token-stores.md for why not the server's now()).
    consume: `WITH target AS MATERIALIZED (
  SELECT uid, origin, token_hash = $2 AS matched, expires_at > $4::timestamptz AS live,
    (max_attempts IS NOT NULL AND attempts + 1 >= max_attempts) AS last_try
  FROM ${t} WHERE uid = $1 FOR UPDATE
), removed AS (
  DELETE FROM ${t} AS r USING target
  WHERE r.uid = target.uid
    AND (NOT target.live OR (target.matched AND NOT $3::boolean) OR (NOT target.matched AND target.last_try))
  RETURNING r.uid
), counted AS (
  UPDATE ${t} AS c SET attempts = c.attempts + 1 FROM target
  WHERE c.uid = target.uid AND target.live AND NOT target.matched AND NOT target.last_try
  RETURNING c.uid
)
SELECT target.matched, target.live, target.origin, (SELECT count(*) FROM removed) AS removed FROM target`,
    // With a hash, only the record that still holds it (a token stored meanwhile survives).
    invalidate: `DELETE FROM ${t} WHERE uid = $1 AND ($2::text IS NULL OR token_hash = $2::text)`,
    clear: `DELETE FROM ${t}`,
    length: `SELECT count(*) AS n FROM ${t} WHERE expires_at > $1::timestamptz`,
    purge: `DELETE FROM ${t} WHERE expires_at <= $1::timestamptz`,
  };
}

interface ConsumeRow {
  matched: boolean;
  live: boolean;
  origin: string | null;
  removed: number | string;
}

/**
 * A TokenStore in a PostgreSQL table (peer dependency: `pg`). Each operation is one SQL statement, so several app
 * instances can share the table; the table is created on first use unless `createTable: false`.
 */
export class PostgresStore implements TokenStore {
  readonly #pool: PgQueryable;
  readonly #createTable: boolean;
  readonly #ddl: string;
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
      this.#ddl = schemaSql(table);
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

  async storeOrUpdate(record: TokenRecord): Promise<void> {
    assertTokenRecord(record);
    if (record.origin !== undefined && NOT_REPRESENTABLE.test(record.origin)) {
      throw new PasswordlessError(
        'INVALID_ARGUMENT',
        'storeOrUpdate(): PostgreSQL text cannot hold a NUL character or an unpaired UTF-16 surrogate in origin.',
      );
    }
    await this.#query(this.#sql.store, [
      record.uid,
      record.tokenHash,
      record.expiresAt.toISOString(),
      record.origin ?? null,
      record.maxAttempts ?? null,
    ]);
  }

  async consume(uid: string, tokenHash: string, options: ConsumeOptions): Promise<ConsumeResult> {
    assertConsumeArgs(uid, tokenHash, options);
    const { rows } = await this.#query(this.#sql.consume, [uid, tokenHash, options.keep, this.#now()]);
    const row = rows[0] as ConsumeRow | undefined;
    if (!row) return { ok: false, reason: 'missing' };
    if (!row.live) return { ok: false, reason: 'expired' };
    if (row.matched) return row.origin === null ? { ok: true } : { ok: true, origin: row.origin };
    return Number(row.removed) > 0 ? { ok: false, reason: 'exhausted' } : { ok: false, reason: 'mismatch' };
  }

  async invalidateUser(uid: string, tokenHash?: string): Promise<void> {
    assertInvalidateArgs(uid, tokenHash);
    await this.#query(this.#sql.invalidate, [uid, tokenHash ?? null]);
  }

  async clear(): Promise<void> {
    await this.#query(this.#sql.clear);
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

  async #runDdl(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        // No values: pg uses the simple protocol, which runs both statements in one round trip.
        await this.#pool.query(this.#ddl);
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
    Promise.resolve()
      .then(() => this.#pool.query(this.#sql.purge, [this.#now()]))
      // A failed purge is retried at the next tick; expired rows are refused by every read meanwhile, and a database
      // outage surfaces (as STORE_ERROR) through the calls the app makes, not through this timer.
      .catch(() => undefined)
      .finally(() => {
        this.#sweeping = false;
      });
  }
}
