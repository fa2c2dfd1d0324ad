import type { MongoClient } from 'mongodb';

// A stand-in for the parts of the mongodb driver that MongoStore calls, for tests on a machine without a server.
// It interprets the filters, the aggregation expressions, the update pipelines ($set, $unset, $replaceWith) and
// whole-document replacements (replaceOne) the way the server does, for the operators the store uses; anything else
// throws (classic update operators included), so a store that starts sending something new fails loudly instead of
// being matched wrongly. It records every call, and applies each operation synchronously in one tick: operations are
// atomic, as single-document writes are on a server. With `seed`, each operation waits a pseudo-random 0–2 event-loop
// turns first, so concurrent calls interleave in varying (but reproducible) orders.

type Doc = Record<string, unknown>;

/** One driver call as the store made it: the objects themselves, not copies. */
export interface RecordedCall {
  collection: string;
  method: string;
  args: unknown[];
}

/** A call paused by {@link FakeMongoClient.hold}. */
export interface Held {
  /** Resolves when a call of the held method has arrived (and is waiting). */
  reached: Promise<void>;
  /** Lets the waiting call run. */
  release: () => void;
}

function fail(message: string): never {
  throw new Error(`FakeMongo: ${message}`);
}

function isPlainObject(value: unknown): value is Doc {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isOperatorObject(value: unknown): value is Doc {
  return (
    isPlainObject(value) &&
    Object.keys(value).length > 0 &&
    Object.keys(value).every((k) => k.startsWith('$'))
  );
}

// BSON comparison order, enough for what the store stores: missing < null < numbers < strings < objects < arrays <
// booleans < dates.
function typeRank(value: unknown): number {
  if (value === undefined) return 0;
  if (value === null) return 1;
  if (typeof value === 'number') return 2;
  if (typeof value === 'string') return 3;
  if (typeof value === 'boolean') return 8;
  if (value instanceof Date) return 9;
  if (Array.isArray(value)) return 5;
  if (typeof value === 'object') return 4;
  return fail(`cannot compare a ${typeof value}`);
}

function compare(a: unknown, b: unknown): number {
  const ra = typeRank(a);
  const rb = typeRank(b);
  if (ra !== rb) return ra - rb;
  if (a instanceof Date && b instanceof Date) return a.getTime() - b.getTime();
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  if (ra <= 1) return 0;
  return fail('cannot compare objects or arrays');
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a instanceof Date || b instanceof Date)
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  return a === b;
}

// Query comparisons are type-bracketed: { $gt: date } only matches dates, { $gt: '' } any string.
function queryCompare(value: unknown, operand: unknown, test: (c: number) => boolean): boolean {
  if (typeRank(value) !== typeRank(operand) || typeRank(value) <= 1) return false;
  return test(compare(value, operand));
}

function fieldOf(doc: Doc, path: string): unknown {
  if (path.includes('.')) fail(`dotted paths are not supported: ${path}`);
  return doc[path];
}

function matchField(value: unknown, condition: unknown): boolean {
  if (isOperatorObject(condition)) {
    return Object.entries(condition).every(([op, operand]) => {
      switch (op) {
        case '$eq':
          return matchField(value, operand);
        case '$ne':
          return !matchField(value, operand);
        case '$gt':
          return queryCompare(value, operand, (c) => c > 0);
        case '$gte':
          return queryCompare(value, operand, (c) => c >= 0);
        case '$lt':
          return queryCompare(value, operand, (c) => c < 0);
        case '$lte':
          return queryCompare(value, operand, (c) => c <= 0);
        case '$exists':
          if (typeof operand !== 'boolean') fail('$exists takes a boolean');
          return (value !== undefined) === operand;
        default:
          return fail(`unsupported query operator ${op}`);
      }
    });
  }
  if (typeof condition === 'object' && condition !== null && !(condition instanceof Date)) {
    return fail('equality with an object or array is not supported');
  }
  // { field: null } matches null and missing fields, as on the server.
  if (condition === null) return value === null || value === undefined;
  return sameValue(value, condition);
}

// Aggregation truthiness: false, null, 0 and missing are false; everything else (even '' and []) is true.
function truthy(value: unknown): boolean {
  return value !== false && value !== null && value !== undefined && value !== 0;
}

function storableField(field: string): string {
  if (field.startsWith('$') || field.includes('.') || field.length === 0) fail(`bad field name ${field}`);
  return field;
}

// An aggregation expression, as in `$expr` and in update pipelines. `undefined` stands for "missing".
function evalExpr(expr: unknown, doc: Doc): unknown {
  if (typeof expr === 'string') {
    if (expr === '$$ROOT') return doc;
    if (expr.startsWith('$$')) fail(`variables other than $$ROOT are not supported: ${expr}`);
    return expr.startsWith('$') ? fieldOf(doc, expr.slice(1)) : expr;
  }
  if (Array.isArray(expr)) return fail('an array is not an expression');
  if (!isPlainObject(expr)) return expr;
  const keys = Object.keys(expr);
  // An expression object { a: <expr>, … }: a field whose expression is missing is left out, as on the server.
  if (keys.length > 0 && keys.every((k) => !k.startsWith('$'))) {
    const out: Doc = {};
    for (const [k, v] of Object.entries(expr)) {
      const value = evalExpr(v, doc);
      if (value !== undefined) out[storableField(k)] = value;
    }
    return out;
  }
  if (keys.length !== 1 || !keys[0]!.startsWith('$')) fail('an expression object has one $operator');
  const [op, rawArgs] = Object.entries(expr)[0]!;
  if (op === '$literal') {
    if (isPlainObject(rawArgs) || Array.isArray(rawArgs))
      fail('$literal of an object or array is not supported');
    return rawArgs;
  }
  if (!Array.isArray(rawArgs)) return fail(`${op} takes an array`);
  const arity = (n: number) => {
    if (rawArgs.length !== n) fail(`${op} takes ${n} argument(s)`);
  };
  // $cond evaluates only the branch it takes.
  if (op === '$cond') {
    arity(3);
    return truthy(evalExpr(rawArgs[0], doc)) ? evalExpr(rawArgs[1], doc) : evalExpr(rawArgs[2], doc);
  }
  const args = rawArgs.map((a) => evalExpr(a, doc));
  const pair = (): [unknown, unknown] => {
    arity(2);
    return [args[0], args[1]];
  };
  switch (op) {
    case '$lt':
      return compare(...pair()) < 0;
    case '$lte':
      return compare(...pair()) <= 0;
    case '$gt':
      return compare(...pair()) > 0;
    case '$gte':
      return compare(...pair()) >= 0;
    case '$eq':
      return compare(...pair()) === 0;
    case '$and':
      return args.every(truthy);
    case '$or':
      return args.some(truthy);
    case '$not':
      arity(1);
      return !truthy(args[0]);
    case '$isNumber':
      arity(1);
      return typeof args[0] === 'number';
    case '$ifNull': {
      const [value, replacement] = pair();
      return value === null || value === undefined ? replacement : value;
    }
    case '$add':
      // null or missing makes the sum null, as on the server.
      if (args.some((a) => a === null || a === undefined)) return null;
      if (!args.every((a) => typeof a === 'number')) fail('$add of anything but numbers is not supported');
      return (args as number[]).reduce((sum, a) => sum + a, 0);
    case '$max': {
      // null and missing are ignored; none left gives null.
      const present = args.filter((a) => a !== null && a !== undefined);
      return present.length === 0 ? null : present.reduce((m, a) => (compare(a, m) > 0 ? a : m));
    }
    default:
      return fail(`unsupported expression operator ${op}`);
  }
}

/** Whether `doc` matches `filter`, as the server decides it. */
export function matches(doc: Doc, filter: unknown): boolean {
  if (!isPlainObject(filter)) return fail('a filter is a plain object');
  return Object.entries(filter).every(([key, condition]) => {
    switch (key) {
      case '$or':
        if (!Array.isArray(condition) || condition.length === 0) fail('$or takes a non-empty array');
        return condition.some((f) => matches(doc, f));
      case '$and':
        if (!Array.isArray(condition) || condition.length === 0) fail('$and takes a non-empty array');
        return condition.every((f) => matches(doc, f));
      case '$expr':
        return truthy(evalExpr(condition, doc));
      default:
        if (key.startsWith('$')) fail(`unsupported top-level operator ${key}`);
        return matchField(fieldOf(doc, key), condition);
    }
  });
}

// Update pipelines only (the stages the store sends); the result is a new document, _id unchanged.
function applyUpdate(doc: Doc, update: unknown): Doc {
  if (!Array.isArray(update) || update.length === 0)
    fail('only update pipelines (non-empty arrays) are supported');
  let current: Doc = structuredClone(doc);
  for (const stage of update) {
    if (!isPlainObject(stage) || Object.keys(stage).length !== 1) fail('a pipeline stage is { $stage: … }');
    const [name, spec] = Object.entries(stage)[0]!;
    switch (name) {
      case '$set': {
        if (!isPlainObject(spec) || Object.keys(spec).length === 0) fail('$set takes a non-empty object');
        // Every expression sees the stage's input; a missing result removes the field.
        const next: Doc = { ...current };
        for (const [field, expr] of Object.entries(spec)) {
          if (storableField(field) === '_id') fail('_id is immutable');
          const value = evalExpr(expr, current);
          if (value === undefined) delete next[field];
          else next[field] = structuredClone(value);
        }
        current = next;
        break;
      }
      case '$unset': {
        const fields = typeof spec === 'string' ? [spec] : spec;
        if (!Array.isArray(fields) || fields.length === 0)
          fail('$unset takes a field name or an array of them');
        const next: Doc = { ...current };
        for (const field of fields) {
          if (typeof field !== 'string' || storableField(field) === '_id')
            fail('$unset takes field names, not _id');
          delete next[field];
        }
        current = next;
        break;
      }
      case '$replaceWith': {
        const replacement = evalExpr(spec, current);
        if (!isPlainObject(replacement)) fail('$replaceWith needs a document');
        if (!sameValue(replacement._id, current._id)) fail('_id is immutable ($replaceWith must keep it)');
        current = structuredClone(replacement);
        break;
      }
      default:
        fail(`unsupported pipeline stage ${name}`);
    }
  }
  return current;
}

function project(doc: Doc, projection: unknown): Doc {
  const copy = structuredClone(doc);
  if (projection === undefined) return copy;
  if (!isPlainObject(projection)) return fail('a projection is a plain object');
  // Inclusion as soon as any field (even `_id` alone) is 1: { _id: 1 } returns the _id only, as on the server.
  const included = Object.entries(projection).filter(([k, v]) => k !== '_id' && v === 1);
  const out: Doc = {};
  if (included.length > 0 || projection._id === 1) {
    if (projection._id !== 0) out._id = copy._id;
    for (const [k] of included) if (k in copy) out[k] = copy[k];
    return out;
  }
  for (const [k, v] of Object.entries(copy)) if (projection[k] !== 0) out[k] = v;
  return out;
}

function optionsOf(value: unknown): Doc {
  if (value === undefined) return {};
  return isPlainObject(value) ? value : fail('options are a plain object');
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The fake collection: an array of documents and the driver methods MongoStore uses. */
export class FakeCollection {
  /** The stored documents (the test may look, or plant one). */
  readonly docs: Doc[] = [];
  /** Indexes created so far, besides the built-in unique index on `_id`. */
  readonly indexes: { key: Doc; options: Doc }[] = [];

  constructor(
    readonly name: string,
    private readonly client: FakeMongoClient,
    /** The options of the first `db.collection(name, options)` call. */
    readonly options: unknown,
  ) {}

  createIndex(key: unknown, options?: unknown): Promise<string> {
    return this.client.run(this.name, 'createIndex', [key, options], () => {
      if (!isPlainObject(key)) fail('createIndex takes a key object');
      const name = Object.entries(key)
        .map(([k, v]) => `${k}_${String(v)}`)
        .join('_');
      const existing = this.indexes.find((i) => JSON.stringify(i.key) === JSON.stringify(key));
      if (existing && JSON.stringify(existing.options) !== JSON.stringify(optionsOf(options))) {
        fail(`IndexOptionsConflict: an index ${name} exists with other options`);
      }
      if (!existing) this.indexes.push({ key: { ...key }, options: { ...optionsOf(options) } });
      return name;
    });
  }

  findOne(filter: unknown, options?: unknown): Promise<Doc | null> {
    return this.client.run(this.name, 'findOne', [filter, options], () => {
      const doc = this.docs.find((d) => matches(d, filter));
      return doc ? project(doc, optionsOf(options).projection) : null;
    });
  }

  findOneAndDelete(filter: unknown, options?: unknown): Promise<Doc | null> {
    return this.client.run(this.name, 'findOneAndDelete', [filter, options], () => {
      const i = this.docs.findIndex((d) => matches(d, filter));
      if (i < 0) return null;
      const [doc] = this.docs.splice(i, 1);
      return project(doc!, optionsOf(options).projection);
    });
  }

  findOneAndUpdate(filter: unknown, update: unknown, options?: unknown): Promise<Doc | null> {
    return this.client.run(this.name, 'findOneAndUpdate', [filter, update, options], () => {
      const opts = optionsOf(options);
      const { before, after } = this.#update(filter, update, opts.upsert === true);
      const returned = opts.returnDocument === 'after' ? after : before;
      return returned ? project(returned, opts.projection) : null;
    });
  }

  updateOne(filter: unknown, update: unknown): Promise<{ matchedCount: number; upsertedCount: number }> {
    return this.client.run(this.name, 'updateOne', [filter, update], () => {
      const { before, after } = this.#update(filter, update, false);
      return { matchedCount: before ? 1 : 0, upsertedCount: !before && after ? 1 : 0 };
    });
  }

  // One atomic single-document update. An upsert that matches nothing inserts { _id } from the filter, which must be
  // exactly { _id: string } (the server would copy any other equality into the new document; the store sends none).
  #update(filter: unknown, update: unknown, upsert: boolean): { before: Doc | null; after: Doc | null } {
    const i = this.docs.findIndex((d) => matches(d, filter));
    if (i >= 0) {
      const before = this.docs[i]!;
      const after = applyUpdate(before, update);
      this.docs[i] = after;
      return { before, after };
    }
    if (!upsert) return { before: null, after: null };
    if (!isPlainObject(filter) || Object.keys(filter).length !== 1 || typeof filter._id !== 'string') {
      fail('an upsert needs the filter { _id: string }');
    }
    const after = applyUpdate({ _id: filter._id }, update);
    this.docs.push(after);
    return { before: null, after };
  }

  // A whole-document replacement (not an update): every value is data, as on the server. The driver refuses a
  // replacement with $-keys before sending it; nested documents and arrays are refused here (the store sends none).
  replaceOne(
    filter: unknown,
    replacement: unknown,
    options?: unknown,
  ): Promise<{ matchedCount: number; modifiedCount: number; upsertedCount: number }> {
    return this.client.run(this.name, 'replaceOne', [filter, replacement, options], () => {
      if (!isPlainObject(replacement)) fail('a replacement is a plain object');
      for (const [key, value] of Object.entries(replacement)) {
        if (key.startsWith('$')) fail('Replacement document must not contain atomic operators');
        storableField(key);
        if (typeof value === 'object' && value !== null && !(value instanceof Date)) {
          fail('nested documents and arrays in a replacement are not supported');
        }
      }
      const i = this.docs.findIndex((d) => matches(d, filter));
      if (i >= 0) {
        const id = this.docs[i]!._id;
        if ('_id' in replacement && !sameValue(replacement._id, id)) fail('_id is immutable');
        this.docs[i] = { _id: id, ...structuredClone(replacement) };
        return { matchedCount: 1, modifiedCount: 1, upsertedCount: 0 };
      }
      if (optionsOf(options).upsert !== true) return { matchedCount: 0, modifiedCount: 0, upsertedCount: 0 };
      if (!isPlainObject(filter) || Object.keys(filter).length !== 1 || typeof filter._id !== 'string') {
        fail('an upsert needs the filter { _id: string }');
      }
      if ('_id' in replacement && !sameValue(replacement._id, filter._id)) fail('_id is immutable');
      this.docs.push({ _id: filter._id, ...structuredClone(replacement) });
      return { matchedCount: 0, modifiedCount: 0, upsertedCount: 1 };
    });
  }

  deleteOne(filter: unknown): Promise<{ deletedCount: number }> {
    return this.client.run(this.name, 'deleteOne', [filter], () => {
      const i = this.docs.findIndex((d) => matches(d, filter));
      if (i >= 0) this.docs.splice(i, 1);
      return { deletedCount: i >= 0 ? 1 : 0 };
    });
  }

  deleteMany(filter: unknown): Promise<{ deletedCount: number }> {
    return this.client.run(this.name, 'deleteMany', [filter], () => {
      const before = this.docs.length;
      const kept = this.docs.filter((d) => !matches(d, filter));
      this.docs.splice(0, this.docs.length, ...kept);
      return { deletedCount: before - kept.length };
    });
  }

  countDocuments(filter: unknown): Promise<number> {
    return this.client.run(this.name, 'countDocuments', [filter], () =>
      this.docs.reduce((n, d) => (matches(d, filter) ? n + 1 : n), 0),
    );
  }

  /** One pass of the server's TTL monitor (which runs every 60 s): needs a TTL index, as on the server. */
  runTtlMonitor(now = new Date()): number {
    let removed = 0;
    for (const { key, options } of this.indexes) {
      const fields = Object.keys(key);
      if (typeof options.expireAfterSeconds !== 'number' || fields.length !== 1) continue;
      const limit = now.getTime() - options.expireAfterSeconds * 1000;
      for (let i = this.docs.length - 1; i >= 0; i--) {
        const value = this.docs[i]![fields[0]!];
        if (value instanceof Date && value.getTime() <= limit) {
          this.docs.splice(i, 1);
          removed += 1;
        }
      }
    }
    return removed;
  }
}

/** The fake database: named collections. */
export class FakeDb {
  readonly #collections = new Map<string, FakeCollection>();

  constructor(
    readonly name: string | undefined,
    private readonly client: FakeMongoClient,
  ) {}

  collection(name: string, options?: unknown): FakeCollection {
    let c = this.#collections.get(name);
    if (!c) {
      c = new FakeCollection(name, this.client, options);
      this.#collections.set(name, c);
    }
    return c;
  }
}

/** The fake client: what the app would pass as `client`, plus the test's view of every call. */
export class FakeMongoClient {
  /** Every driver call, in the order the store made them. */
  readonly calls: RecordedCall[] = [];
  /** Whether close() was called (a store must never call it). */
  closed = false;
  readonly #dbs = new Map<string | undefined, FakeDb>();
  readonly #random: (() => number) | undefined;
  readonly #failures = new Map<string, unknown[]>();
  readonly #holds = new Map<string, { gate: Promise<void>; arrived: () => void }>();

  constructor(options: { seed?: number } = {}) {
    this.#random = options.seed === undefined ? undefined : mulberry32(options.seed);
  }

  db(name?: string): FakeDb {
    let d = this.#dbs.get(name);
    if (!d) {
      d = new FakeDb(name, this);
      this.#dbs.set(name, d);
    }
    return d;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** The next call of `method` rejects with `error` (the driver's error for an outage, a refused write…). */
  failNext(method: string, error: unknown): void {
    const queue = this.#failures.get(method) ?? [];
    queue.push(error);
    this.#failures.set(method, queue);
  }

  /** The next call of `method` waits (before it applies) until `release()`; later calls run as usual. */
  hold(method: string): Held {
    let release!: () => void;
    let arrived!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const reached = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    this.#holds.set(method, { gate, arrived });
    return {
      reached,
      release,
    };
  }

  /** Typed as the driver's client, for `new MongoStore({ client })`. */
  asMongoClient(): MongoClient {
    return this as unknown as MongoClient;
  }

  /** Records the call, waits (jitter, holds), then applies `work` synchronously: one atomic step. */
  async run<T>(collection: string, method: string, args: unknown[], work: () => T): Promise<T> {
    while (args.length > 0 && args[args.length - 1] === undefined) args.pop();
    this.calls.push({ collection, method, args });
    const failure = this.#failures.get(method)?.shift();
    if (failure !== undefined) throw failure;
    const turns = this.#random ? Math.floor(this.#random() * 3) : 0;
    for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
    const held = this.#holds.get(method);
    if (held) {
      this.#holds.delete(method);
      held.arrived();
      await held.gate;
    }
    return work();
  }
}
