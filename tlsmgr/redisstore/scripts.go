package redisstore

import "github.com/redis/go-redis/v9"

// All scripts declare the keys they are given in KEYS. Scripts that walk a
// subtree (delete) or the lock index (locks) build further key names from
// ARGV; every such name starts with the same "{prefix}" hash tag as the
// declared keys, so they hash to the same slot and the scripts stay valid on
// Redis Cluster (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags).
//
// Scripts run with go-redis's Script.Run: EVALSHA, falling back to EVAL on
// NOSCRIPT, so a restarted server (empty script cache) needs no special care.

// storeScript writes a value and its modification time, and adds the key to
// the index, atomically.
//
//	KEYS[1] value hash, KEYS[2] index zset
//	ARGV[1] data, ARGV[2] modified (unix ms), ARGV[3] key
var storeScript = redis.NewScript(`
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'm', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
return 1
`)

// statScript reports whether key is a file {1, modified, size}, a directory
// {2} (some indexed key starts with key + "/") or missing {0}.
//
//	KEYS[1] value hash, KEYS[2] index zset
//	ARGV[1], ARGV[2] lexicographic range of the key's descendants
var statScript = redis.NewScript(`
local m = redis.call('HGET', KEYS[1], 'm')
if m then
  return {1, m, redis.call('HSTRLEN', KEYS[1], 'd')}
end
local c = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, 1)
if #c > 0 then
  return {2}
end
return {0}
`)

// deleteScript removes a key and every key below it ("directory"), values
// and index entries together. It returns how many files were removed.
//
//	KEYS[1] value hash, KEYS[2] index zset
//	ARGV[1] key, ARGV[2], ARGV[3] lexicographic range of descendants,
//	ARGV[4] value-hash key prefix ("{p}:v:")
var deleteScript = redis.NewScript(`
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
while true do
  local c = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[2], ARGV[3], 'LIMIT', 0, 256)
  if #c == 0 then break end
  for _, k in ipairs(c) do
    redis.call('DEL', ARGV[4] .. k)
  end
  redis.call('ZREM', KEYS[2], unpack(c))
  n = n + #c
end
return n
`)

// acquireScript takes a lock with SET NX PX. The stored value is
// "<token> <acquired unix ms, Redis clock> <instance>". If the lock already
// holds our token (an earlier attempt succeeded but its reply was lost), the
// lease is reset and the call succeeds, so retries are idempotent. Returns
// the value on success, nil when another holder has the lock.
//
//	KEYS[1] lock key, KEYS[2] lock index set
//	ARGV[1] token, ARGV[2] lease ms, ARGV[3] instance, ARGV[4] lock name
var acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return cur
  end
  return false
end
local t = redis.call('TIME')
local v = ARGV[1] .. ' ' .. t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)) .. ' ' .. ARGV[3]
if not redis.call('SET', KEYS[1], v, 'NX', 'PX', ARGV[2]) then
  return false
end
redis.call('SADD', KEYS[2], ARGV[4])
return v
`)

// extendScript is compare-and-pexpire. With ARGV[3] == "1" it only ever
// lengthens the lease (the keepalive must not shorten a lease set by
// RenewLockLease); otherwise it sets the lease to ARGV[2]. Returns the
// remaining lease in ms, or -1 when the lock no longer holds our token.
//
//	KEYS[1] lock key
//	ARGV[1] our token, ARGV[2] lease ms, ARGV[3] extend-only flag
var extendScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur or string.sub(cur, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
  return -1
end
local want = tonumber(ARGV[2])
if ARGV[3] == '1' then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl >= want then
    return ttl
  end
end
redis.call('PEXPIRE', KEYS[1], want)
return want
`)

// unlockScript is compare-and-delete: it deletes the lock only if it still
// holds our token, so a holder whose lease expired cannot delete the next
// holder's lock. Returns 1 when deleted, 0 when the lock was not ours.
//
//	KEYS[1] lock key, KEYS[2] lock index set
//	ARGV[1] our token, ARGV[2] lock name
var unlockScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
if not cur then
  redis.call('SREM', KEYS[2], ARGV[2])
end
return 0
`)

// locksScript lists held locks: {now_s, now_us, name1, value1, ...}, and
// prunes index entries whose lock has expired.
//
//	KEYS[1] lock index set
//	ARGV[1] lock key prefix ("{p}:lock:")
var locksScript = redis.NewScript(`
local t = redis.call('TIME')
local out = {t[1], t[2]}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. name)
  if v then
    table.insert(out, name)
    table.insert(out, v)
  else
    redis.call('SREM', KEYS[1], name)
  end
end
return out
`)
