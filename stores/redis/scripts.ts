import { createHash } from 'node:crypto';

// Lua run by RedisStore. Each script of a uid touches exactly one key, KEYS[1] = `${prefix}${uid}`, so it is atomic on
// a standalone server and routable on a Cluster (one key, one slot: no CROSSSLOT, whatever the uid contains). Only
// COUNT_SCRIPT, for length() on a standalone server, reads several keys. The refresh-family scripts (API mode, at the
// end of this file) likewise name one key each on a Cluster; on a standalone server FAMILY_CREATE_SCRIPT also names
// the uid's index and FAMILY_DROP_SCRIPT several family keys.
//
// The key is a hash with short field names (memory per pending token; see docs/token-stores.md). The token fields:
//   h  hex SHA-256 / HMAC-SHA256 of the token (never the token itself)
//   e  expiresAt in Unix milliseconds
//   o  origin (absent when none)
//   m  maxAttempts (absent means unlimited)
//   a  wrong tries so far (absent means 0; created by HINCRBY)
//   k  '1' when the token is lockable (a short code; absent for a link)
// and the uid's failure budget state, which belongs to the uid, not to the token (absent until a counted failure):
//   f  wrong tokens counted against the budget (consume with a budget, on a mismatch with a live token)
//   u  the instant in Unix milliseconds at which f is forgotten (last counted failure + budget window)
// Failures are live while u > now; f and u of a past u mean no failures (they are overwritten by the next one).
// The key carries a Redis expiry (PEXPIREAT) at the later of e and a live u, so Redis purges it without any call from
// the app. When the token goes (used without a budget, voided at m, expired, invalidated) while failures are live,
// only the token fields go, and the key stays, expiring at u; otherwise the whole key goes (as on a success with a
// budget, which also forgets the failures).
//
// Each script starts with a `#!lua` shebang (Redis 7.0 or newer), which makes Redis judge it as a whole before it runs.
// A script that may write (store, consume) declares no `allow-oom`: while Redis refuses writes (used memory over
// `maxmemory` under `noeviction`, MISCONF after a failed RDB save, NOREPLICAS, a read-only replica) it refuses the
// EVALSHA itself, so nothing is read, compared or written. Without the shebang Redis would refuse only the script's
// first memory-growing command (HINCRBY, HSET) and let a DEL through: a wrong guess would then fail uncounted while the
// right one still logged in, so maxAttempts and the failure budget would bound nothing while Redis is full.
// invalidate only ever removes data and declares `allow-oom`, so logout still works under memory pressure; count reads
// only (`no-writes`, which implies allow-oom). Likewise for families: create, rotate and index-add may write (no
// allow-oom: a rotation is refused whole, never half-done); revoke, drop and index-remove only remove (allow-oom);
// index-list only reads.
//
// Every instant is passed in from the app as a decimal string ("now" is the app's Date.now(), the clock that also made
// e) and written back as that same string, so nothing depends on how the server formats a Lua number (a double)
// passed to redis.call: PEXPIREAT needs an integer, and u must read back exactly as the app computed it.

/** First line of a script that may write: refused as a whole while Redis refuses writes (no `allow-oom`). */
const MAY_WRITE = '#!lua';
/** First line of a script that only removes data: it runs even while used memory is over `maxmemory`. */
const ONLY_REMOVES = '#!lua flags=allow-oom';
/** First line of a read-only script. */
const READ_ONLY = '#!lua flags=no-writes';

/**
 * Lua shared by the scripts below (prepended to each, so each script stays one self-contained EVAL).
 *   TOKEN_FIELDS   the fields of the pending token (all but f and u)
 *   liveUntil      the failure window end u as a string when it is after now (failures live), else nil
 *   dropToken      removes the token: keeps the key with its failures until u while they are live, else DEL
 *   laterOf        the later of two instants given as strings (nil-safe), to PEXPIREAT the key at max(e, u)
 */
const COMMON_LUA = `local TOKEN_FIELDS = {'h', 'e', 'o', 'm', 'a', 'k'}

local function liveUntil(u, now)
  local until_ms = tonumber(u)
  if until_ms and until_ms > now then
    return u
  end
  return nil
end

local function dropToken(key, failUntil)
  if failUntil then
    redis.call('HDEL', key, unpack(TOKEN_FIELDS))
    redis.call('PEXPIREAT', key, failUntil)
  else
    redis.call('DEL', key)
  end
end

local function laterOf(a, b)
  if not a then return b end
  if not b then return a end
  if tonumber(b) > tonumber(a) then return b end
  return a
end
`;

/**
 * storeOrUpdate in one step: with a budget, refuse a lockable record of a uid over it (f >= max while u is live) and
 * answer the end of the lock. Otherwise drop the uid's earlier token (and with it its attempt count, but not its
 * failures), then write the new one and set the key's expiry to the later of its expiresAt and a live failure window,
 * unless the record has expired already. Such a record is accepted and simply never stored, so it can never work; the
 * key then keeps only live failures, or goes. PEXPIREAT (an absolute instant) is used rather than PX, which rejects a
 * non-positive duration.
 *
 * KEYS[1] record key. ARGV[1] expiresAt (ms), ARGV[2] now (ms, the app's clock, which also made expiresAt),
 * ARGV[3] the budget's max ('' without a budget), ARGV[4] '1' if the record is lockable, else '0',
 * ARGV[5..] field/value pairs for HSET (h, e, and o / m / k when present).
 * Returns {'stored'}, {'expired'} when the record was already expired (not written), or {'locked', u} when refused,
 * u being the end of the lock in ms (as a string).
 */
export const STORE_SCRIPT = `${MAY_WRITE}
${COMMON_LUA}
local key = KEYS[1]
local now = tonumber(ARGV[2])
local budgetMax = tonumber(ARGV[3])
-- pcall: a foreign value at the key (WRONGTYPE) holds no failures; it is replaced (DEL below), as it always was.
local fail = redis.pcall('HMGET', key, 'f', 'u')
if fail.err then
  fail = {}
end
local failUntil = liveUntil(fail[2], now)
if budgetMax and ARGV[4] == '1' and failUntil and (tonumber(fail[1]) or 0) >= budgetMax then
  return {'locked', failUntil}
end
-- The earlier token goes; the failures stay while live (a new code never resets the count).
dropToken(key, failUntil)
if tonumber(ARGV[1]) <= now then
  return {'expired'}
end
redis.call('HSET', key, unpack(ARGV, 5))
redis.call('PEXPIREAT', key, laterOf(ARGV[1], failUntil))
return {'stored'}
`;

/**
 * consume in one step, so two concurrent requests with one single-use token cannot both succeed, and concurrent wrong
 * guesses are each counted (per token and against the budget):
 *   no token (no key, or only failures)    → {'missing'}, nothing counted
 *   e <= now (or e unreadable)             → drop the token, {'expired'}  (Redis may not have purged it yet: clocks,
 *                                            lazy expiry, or the key is kept for live failures)
 *   budget, k = '1', live u and f >= max   → {'locked'}: not compared, nothing counted
 *   h equals the given hash                → with a budget, forget the failures (DEL, or HDEL f u when keeping);
 *                                            drop the token unless keep; {'ok'} or {'ok', origin}
 *   otherwise                              → with a budget, f = (live ? f : 0) + 1 and u = now + window;
 *                                            HINCRBY a; at a >= m drop the token, {'exhausted'}; else {'mismatch'}
 * The comparison is of two hashes, never of tokens. In Redis's Lua 5.1 every string is interned, so \`==\` compares two
 * pointers; a timing difference could at most hint at a hash the attacker cannot invert (and nothing at all with the
 * \`secret\` of init, as an HMAC).
 *
 * KEYS[1] record key. ARGV[1] tokenHash, ARGV[2] now (ms), ARGV[3] '1' to keep the record on a match, else '0',
 * ARGV[4] the budget's max and ARGV[5] now + the budget's window (ms), both '' without a budget.
 */
export const CONSUME_SCRIPT = `${MAY_WRITE}
${COMMON_LUA}
local key = KEYS[1]
local now = tonumber(ARGV[2])
local budgetMax = tonumber(ARGV[4])
local rec = redis.call('HMGET', key, 'h', 'e', 'o', 'm', 'k', 'f', 'u')
local hash = rec[1]
local failUntil = liveUntil(rec[7], now)
if not hash then
  return {'missing'}
end
local expiresAt = tonumber(rec[2])
if not expiresAt or expiresAt <= now then
  dropToken(key, failUntil)
  return {'expired'}
end
-- Over the budget, a code is not even compared: guessing on is pointless, and nothing more is counted.
if budgetMax and rec[5] == '1' and failUntil and (tonumber(rec[6]) or 0) >= budgetMax then
  return {'locked'}
end
if hash == ARGV[1] then
  if ARGV[3] == '1' then
    if budgetMax then
      redis.call('HDEL', key, 'f', 'u')
      redis.call('PEXPIREAT', key, rec[2])
    end
  elseif budgetMax then
    redis.call('DEL', key)
  else
    dropToken(key, failUntil)
  end
  if rec[3] then
    return {'ok', rec[3]}
  end
  return {'ok'}
end
if budgetMax then
  -- A failure of a past window starts the count again; each counted failure moves the window on.
  if failUntil then
    redis.call('HINCRBY', key, 'f', 1)
  else
    redis.call('HSET', key, 'f', '1')
  end
  failUntil = ARGV[5]
  redis.call('HSET', key, 'u', failUntil)
  redis.call('PEXPIREAT', key, laterOf(rec[2], failUntil))
end
local attempts = redis.call('HINCRBY', key, 'a', 1)
local max = tonumber(rec[4])
if max and attempts >= max then
  dropToken(key, failUntil)
  return {'exhausted'}
end
return {'mismatch'}
`;

/**
 * invalidateUser(uid[, tokenHash]) in one step: drop the uid's pending token (keeping the key for its failures while
 * they are live, as a token voided otherwise), with a tokenHash only if the key still holds that hash, so that a token
 * stored meanwhile by another request survives. A key with no token is left as it is.
 * KEYS[1] the uid's key; ARGV[1] now (ms); ARGV[2] the hash, or '' for any token.
 * Returns 1 when a token was dropped, else 0.
 */
export const INVALIDATE_SCRIPT = `${ONLY_REMOVES}
${COMMON_LUA}
local key = KEYS[1]
local rec = redis.pcall('HMGET', key, 'h', 'u')
if rec.err then
  -- A foreign value at the key (WRONGTYPE): without a hash it goes, as any token of the uid; with one, the error.
  if ARGV[2] ~= '' then
    return rec
  end
  return redis.call('DEL', key)
end
if not rec[1] or (ARGV[2] ~= '' and rec[1] ~= ARGV[2]) then
  return 0
end
dropToken(key, liveUntil(rec[2], tonumber(ARGV[1])))
return 1
`;

/**
 * length() on a standalone server, one call per SCAN page: how many of the given keys hold a pending token, i.e. an
 * `e` after now. A key may live on without one (only a uid's live failures) or with one past its `e` (kept for live
 * failures, not yet consumed). The only script with several keys, and read-only; on a Cluster, where the keys of a
 * page span slots (CROSSSLOT), the store sends one HGET per key instead.
 * KEYS the scanned keys of this store; ARGV[1] now (ms). Returns the count (a key that is not a hash counts 0).
 */
export const COUNT_SCRIPT = `${READ_ONLY}
local now = tonumber(ARGV[1])
local n = 0
for _, key in ipairs(KEYS) do
  -- pcall: a foreign value at a key of the prefix (WRONGTYPE) is no pending token, and fails no count.
  local e = redis.pcall('HGET', key, 'e')
  local expiresAt = type(e) == 'string' and tonumber(e)
  if expiresAt and expiresAt > now then
    n = n + 1
  end
end
return n
`;

// Refresh families (API mode). Two kinds of keys, both after `${prefix}\u0001`: a uid never starts with U+0001
// (assertUid refuses control characters), so neither can ever be the key `${prefix}${uid}` of a uid's token, whatever
// the uid is (a uid equal to a family's hex included), and length() skips them by that one byte.
//   ${prefix}\u0001f:${family}  a hash per family (one login): uid, h (hex hash of the current refresh secret),
//                               e (expiresAt in Unix ms); PEXPIREAT e, moved at every rotation
//   ${prefix}\u0001u:${uid}     the uid's index for revokeFamilies: a sorted set, member = family, score = the family's
//                               latest known expiresAt; PEXPIREAT at its highest score
// rotateFamily, hasFamily and revokeFamily name the family key only, so each is one script (or HGET) on one slot. The
// index of the uid may be in another slot of a Cluster: the family scripts never touch it, and the store updates it
// by a separate call (after the family's own script). Members of families that died (expired, reused, revoked) are
// dropped lazily: once their score has passed (at every add), or by revokeFamilies.

/**
 * Lua shared by the scripts that add to a uid's index. addToIndex: ZADD GT (a member's score only moves forward, as a
 * family's expiry does), drop members whose known expiry has passed by the app's clock, and move the set's own expiry
 * forward to expiresAt when that is later (PEXPIRETIME is -1 for the set just created), so the set lives exactly as
 * long as its highest score. A foreign value at the key is replaced: the store owns every key of its prefix.
 */
const INDEX_LUA = `local function addToIndex(key, family, expiresAt, now)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'zset' and kind ~= 'none' then
    redis.call('DEL', key)
  end
  redis.call('ZADD', key, 'GT', expiresAt, family)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  -- -2 when the set is gone (every member expired): PEXPIREAT of a missing key does nothing.
  if redis.call('PEXPIRETIME', key) < tonumber(expiresAt) then
    redis.call('PEXPIREAT', key, expiresAt)
  end
end
`;

/**
 * createFamily: replace whatever is at the family key with the hash { uid, h, e } and PEXPIREAT e, unless e is not
 * after now (accepted, never written: such a family can never be rotated). With a second key (a standalone server,
 * where both keys may be named in one script), also add the family to the uid's index in the same atomic step; on a
 * Cluster the store adds it with INDEX_ADD_SCRIPT once this script has returned 1.
 * KEYS[1] family key, KEYS[2] (optional) the uid's index key. ARGV[1] uid, ARGV[2] h, ARGV[3] expiresAt (ms),
 * ARGV[4] now (ms), ARGV[5] the family (the index member). Returns 1 when written, 0 for an expired family.
 */
export const FAMILY_CREATE_SCRIPT = `${MAY_WRITE}
${INDEX_LUA}
local key = KEYS[1]
redis.call('DEL', key)
if tonumber(ARGV[3]) <= tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', key, 'uid', ARGV[1], 'h', ARGV[2], 'e', ARGV[3])
redis.call('PEXPIREAT', key, ARGV[3])
if KEYS[2] then
  addToIndex(KEYS[2], ARGV[5], ARGV[3], ARGV[4])
end
return 1
`;

/**
 * Adds one family to its uid's index (createFamily on a Cluster; after every successful rotation, which moves the
 * family's expiry, and so the member's score and the set's expiry, forward).
 * KEYS[1] the uid's index key. ARGV[1] family, ARGV[2] the family's expiresAt (ms), ARGV[3] now (ms). Returns 1.
 */
export const INDEX_ADD_SCRIPT = `${MAY_WRITE}
${INDEX_LUA}
addToIndex(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
`;

/**
 * rotateFamily in one step, so of concurrent rotations with one hash exactly one succeeds (the others then find the
 * new hash, and revoke the family):
 *   no family (no key, or no uid / h)   → {'missing'}
 *   e <= now (or e unreadable)          → DEL, {'expired'}  (Redis may not have purged it yet: clocks, lazy expiry)
 *   h differs from the given hash       → DEL, {'reused'}  (an already-rotated or forged refresh token: theft)
 *   otherwise                           → h, e = the next ones, PEXPIREAT the next e, {'ok', uid}
 * Declares no allow-oom: while Redis refuses writes the whole call is refused, so no hash is compared either.
 * KEYS[1] family key. ARGV[1] the presented hash, ARGV[2] now (ms), ARGV[3] the next hash, ARGV[4] the next expiresAt.
 */
export const FAMILY_ROTATE_SCRIPT = `${MAY_WRITE}
local key = KEYS[1]
local rec = redis.call('HMGET', key, 'uid', 'h', 'e')
if not rec[1] or not rec[2] then
  return {'missing'}
end
local expiresAt = tonumber(rec[3])
if not expiresAt or expiresAt <= tonumber(ARGV[2]) then
  redis.call('DEL', key)
  return {'expired'}
end
if rec[2] ~= ARGV[1] then
  redis.call('DEL', key)
  return {'reused'}
end
redis.call('HSET', key, 'h', ARGV[3], 'e', ARGV[4])
redis.call('PEXPIREAT', key, ARGV[4])
return {'ok', rec[1]}
`;

/**
 * revokeFamily: delete the family key (whatever it holds) and answer its uid when the family was unexpired, else nil.
 * Only removes (allow-oom): logging out works while Redis is out of memory. The index member goes lazily.
 * KEYS[1] family key. ARGV[1] now (ms).
 */
export const FAMILY_REVOKE_SCRIPT = `${ONLY_REMOVES}
local key = KEYS[1]
local rec = redis.pcall('HMGET', key, 'uid', 'e')
redis.call('DEL', key)
if rec.err then
  return false
end
local expiresAt = tonumber(rec[2])
if rec[1] and expiresAt and expiresAt > tonumber(ARGV[1]) then
  return rec[1]
end
return false
`;

/**
 * revokeFamilies, second step: delete each given family key that still belongs to the uid (a member that another
 * program slipped into the index cannot make it delete another uid's family). Several keys on a standalone server,
 * one per call on a Cluster. Only removes (allow-oom).
 * KEYS the family keys read from the uid's index. ARGV[1] uid. Returns the number deleted.
 */
export const FAMILY_DROP_SCRIPT = `${ONLY_REMOVES}
local n = 0
for _, key in ipairs(KEYS) do
  if redis.pcall('HGET', key, 'uid') == ARGV[1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
`;

/**
 * revokeFamilies, first step: the members of the uid's index (every family it lists, whatever its score).
 * KEYS[1] the uid's index key. Returns the members ({} for none or a foreign value).
 */
export const INDEX_LIST_SCRIPT = `${READ_ONLY}
local members = redis.pcall('ZRANGE', KEYS[1], 0, -1)
if members.err then
  return {}
end
return members
`;

/**
 * revokeFamilies, last step: remove the members just handled from the uid's index (ZREM, not DEL, so a family added
 * meanwhile by a concurrent createFamily stays listed); Redis deletes the set when it is empty. Only removes.
 * KEYS[1] the uid's index key. ARGV the members. Returns the number removed.
 */
export const INDEX_REMOVE_SCRIPT = `${ONLY_REMOVES}
local removed = redis.pcall('ZREM', KEYS[1], unpack(ARGV))
if type(removed) ~= 'number' then
  return 0
end
return removed
`;

/** A Lua script with the SHA-1 that EVALSHA names it by. */
export interface LuaScript {
  /** The script source, sent with EVAL when the server does not know the SHA yet (NOSCRIPT). */
  readonly lua: string;
  /** Lower-case hex SHA-1 of `lua`, as Redis computes it. */
  readonly sha: string;
}

function script(lua: string): LuaScript {
  return Object.freeze({ lua, sha: createHash('sha1').update(lua).digest('hex') });
}

/** The scripts of RedisStore with their SHA-1 digests. */
export const SCRIPTS = Object.freeze({
  store: script(STORE_SCRIPT),
  consume: script(CONSUME_SCRIPT),
  invalidate: script(INVALIDATE_SCRIPT),
  count: script(COUNT_SCRIPT),
  familyCreate: script(FAMILY_CREATE_SCRIPT),
  familyRotate: script(FAMILY_ROTATE_SCRIPT),
  familyRevoke: script(FAMILY_REVOKE_SCRIPT),
  familyDrop: script(FAMILY_DROP_SCRIPT),
  indexAdd: script(INDEX_ADD_SCRIPT),
  indexList: script(INDEX_LIST_SCRIPT),
  indexRemove: script(INDEX_REMOVE_SCRIPT),
});
