import { createHash } from 'node:crypto';

// Lua run by RedisStore. Each script touches exactly one key, KEYS[1] = `${prefix}${uid}`, so it is atomic on a
// standalone server and routable on a Cluster (one key, one slot: no CROSSSLOT, whatever the uid contains).
//
// The record is a hash with short field names (memory per pending token; see docs/token-stores.md):
//   h  hex SHA-256 / HMAC-SHA256 of the token (never the token itself)
//   e  expiresAt in Unix milliseconds
//   o  origin (absent when none)
//   m  maxAttempts (absent means unlimited)
//   a  wrong tries so far (absent means 0; created by HINCRBY)
// The key also carries a Redis expiry (PEXPIREAT e), so Redis purges it without any call from the app.

/**
 * storeOrUpdate in one step: drop the uid's earlier record (and with it its attempt count), then write the new one
 * with its expiry, unless it has expired already. Such a record is accepted and simply never stored, so it can never
 * work; PEXPIREAT (an absolute instant) is used rather than PX, which rejects a non-positive duration.
 *
 * KEYS[1] record key. ARGV[1] expiresAt (ms), ARGV[2] now (ms, the app's clock, which also made expiresAt),
 * ARGV[3..] field/value pairs for HSET (h, e, and o / m when present).
 * Returns 1 when stored, 0 when the record was already expired.
 */
export const STORE_SCRIPT = `
redis.call('DEL', KEYS[1])
if tonumber(ARGV[1]) <= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
`;

/**
 * consume in one step, so two concurrent requests with one single-use token cannot both succeed, and concurrent wrong
 * guesses are each counted:
 *   no record                 → {'missing'}
 *   e <= now (or e unreadable) → delete, {'expired'}  (Redis may not have purged it yet: clocks, lazy expiry)
 *   h equals the given hash   → delete unless keep, {'ok'} or {'ok', origin}
 *   otherwise                 → HINCRBY a; at a >= m delete, {'exhausted'}; else {'mismatch'}
 * The comparison is of two hashes, never of tokens. In Redis's Lua 5.1 every string is interned, so `==` compares two
 * pointers; a timing difference could at most hint at a hash the attacker cannot invert (and nothing at all with the
 * `secret` of init, as an HMAC).
 *
 * KEYS[1] record key. ARGV[1] tokenHash, ARGV[2] now (ms), ARGV[3] '1' to keep the record on a match, else '0'.
 */
export const CONSUME_SCRIPT = `
local rec = redis.call('HMGET', KEYS[1], 'h', 'e', 'o', 'm')
local hash = rec[1]
if not hash then
  return {'missing'}
end
local expiresAt = tonumber(rec[2])
if not expiresAt or expiresAt <= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return {'expired'}
end
if hash == ARGV[1] then
  if ARGV[3] ~= '1' then
    redis.call('DEL', KEYS[1])
  end
  if rec[3] then
    return {'ok', rec[3]}
  end
  return {'ok'}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'a', 1)
local max = tonumber(rec[4])
if max and attempts >= max then
  redis.call('DEL', KEYS[1])
  return {'exhausted'}
end
return {'mismatch'}
`;

/**
 * invalidateUser(uid, tokenHash): delete the uid's record only if it still holds that hash, in one step, so that a
 * token stored meanwhile by another request survives. KEYS[1] the uid's key; ARGV[1] the hash.
 */
export const INVALIDATE_SCRIPT = `
if redis.call('HGET', KEYS[1], 'h') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
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
});
