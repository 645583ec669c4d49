package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts of the Redis store. Each is one round trip (EVALSHA, with
// EVAL when the server lacks the script) and runs atomically on the server:
// no other command runs while it does. If the sidecar dies after sending it,
// the script still runs to its end; Redis replicates and persists a script's
// writes as one MULTI/EXEC block. Redis does not undo the writes of a script
// that fails midway, so every script checks everything before its first
// write, and createScript writes the token record last: a failure at any
// point leaves no token (at most an index entry without a record, which List
// skips and the pruning removes).
//
// Bounded time: no script's work grows with the number of tokens. A create,
// a lookup and a revoke touch the token, its parent and their ancestors (at
// most MaxAncestors); a list page and a sweep batch read a bounded number
// of index entries (listScanBudget, sweepBatch). Removing a revoked subtree
// is many sweep batches (sweep.go), so no command holds Redis for
// long, whatever the subtree's size.
//
// Redis Cluster: every key of a namespace carries the hash tag {<ns>}, so all
// of them hash to one slot and one master. A script routed by its first key
// can therefore read and write any other key of that namespace, including keys
// it builds itself. Keys known before the script runs are passed in KEYS;
// keys discovered inside a script (the records an index names, the revoke
// markers of ancestors) are built from the namespace's key prefix in ARGV.
// That is allowed because they are in the same slot as KEYS[1] (Redis
// Cluster checks that a key a script touches is served by this node, which
// every key with the same hash tag is, not that it was declared). Tested on
// a real cluster.
//
// Time: each script reads the server clock once with TIME (scripts replicate
// their effects, so TIME is allowed anywhere in Redis 7) and uses it for
// expiry decisions, so they agree with Redis's own key expiry.
//
// Requires Redis 7.0 or later (PEXPIRETIME, exclusive XRANGE bounds).

// luaCommon holds helpers shared by the scripts.
const luaCommon = `
-- clock reads the server's time once: unix ms, and unix µs (exact: below
-- 2^53 until the year 2255).
local function clock()
  local t = redis.call('TIME')
  local sec, us = tonumber(t[1]), tonumber(t[2])
  return sec * 1000 + math.floor(us / 1000), sec * 1000000 + us
end

-- slack is how much longer than needed (ms) extend makes a key live, so
-- that the creates of the next minute, whose tokens expire a little later
-- each, find it living long enough and write nothing.
local slack = 60000

-- extend makes key expire at 'at' ms (plus slack) unless it already lives
-- that long. A key without an expiry (PEXPIRETIME -1, such as one just
-- created) gets one; a missing key (-2) is left missing.
local function extend(key, at)
  if redis.call('PEXPIRETIME', key) < at then
    redis.call('PEXPIREAT', key, at + slack)
  end
end

-- uuid is the canonical id of the 16 raw bytes of s from position i.
local function uuid(s, i)
  return string.format('%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x', string.byte(s, i, i + 15))
end

-- raw is the 16 bytes of a canonical id.
local function raw(id)
  return (string.gsub(string.gsub(id, '-', ''), '%x%x', function(h) return string.char(tonumber(h, 16)) end))
end

-- ancestors returns the ids of the ancestors a record names, oldest first
-- (see record.go). A record of the JSON format (before format 2) names its
-- parent, and its older ancestors are in its up key.
local function ancestors(pfx, id, rec)
  local out = {}
  if string.byte(rec, 1) == 123 then
    local up = redis.call('GET', pfx .. 'up:' .. id)
    if up then
      for a in string.gmatch(up, '%S+') do out[#out + 1] = a end
    else
      -- The pattern cannot match inside a string value, where every Quote
      -- is escaped.
      local p = string.match(rec, '"parent":"([^"]*)"')
      if p then out[1] = p end
    end
    return out
  end
  local d = string.byte(rec, 2) or 0
  if string.byte(rec, 1) ~= 2 or #rec < 2 + 16 * d then
    error('a token record of a format this version does not read')
  end
  for k = 0, d - 1 do out[#out + 1] = uuid(rec, 3 + 16 * k) end
  return out
end

-- marked returns whether any of ids has a revoke marker (rv:<id>), with one
-- EXISTS. memo, if given, remembers answers across calls (a sweep batch
-- meets the same ancestors again and again).
local function marked(pfx, ids, memo)
  local keys = {}
  for _, a in ipairs(ids) do
    if memo and memo[a] ~= nil then
      if memo[a] then return true end
    else
      keys[#keys + 1] = a
    end
  end
  if #keys == 0 then return false end
  if memo then
    for _, a in ipairs(keys) do
      local m = redis.call('EXISTS', pfx .. 'rv:' .. a) == 1
      memo[a] = m
      if m then return true end
    end
    return false
  end
  for i, a in ipairs(keys) do keys[i] = pfx .. 'rv:' .. a end
  return redis.call('EXISTS', unpack(keys)) > 0
end

-- under reports whether the record rec of id names a revoked ancestor,
-- remembering in memo what it found for each ancestor (keyed by its raw
-- bytes: a batch meets the same ancestors again and again, and formats
-- each id once). It also returns the ancestors (canonical ids) when asked.
local function under(pfx, id, rec, memo, want)
  if string.byte(rec, 1) == 123 then
    local anc = ancestors(pfx, id, rec)
    return marked(pfx, anc, memo), anc
  end
  local d = string.byte(rec, 2) or 0
  if string.byte(rec, 1) ~= 2 or #rec < 2 + 16 * d then
    error('a token record of a format this version does not read')
  end
  local hit, anc = false, nil
  if want then anc = {} end
  for k = 0, d - 1 do
    local i = 3 + 16 * k
    local a = string.sub(rec, i, i + 15)
    local m = memo[a]
    if m == nil or want then
      local u = uuid(rec, i)
      if want then anc[#anc + 1] = u end
      if m == nil then
        m = redis.call('EXISTS', pfx .. 'rv:' .. u) == 1
        memo[a] = m
      end
    end
    if m then hit = true end
  end
  return hit, anc
end

-- prune drops the index entries of expired tokens: it reads the n entries
-- after the prune cursor pc (a stream id), which it advances, and wraps
-- at the end of the index. An entry names its token's lifetime (field e:
-- seconds after the entry's id, rounded up; see createScript), so expiry is
-- decided from the index alone, without reading the records, which lie
-- all over the keyspace (with a million keys, most reads of them miss the
-- CPU's caches). An entry of an earlier version, without e, is dropped
-- when its record is gone. Entries of tokens revoked before they expired
-- stay until then, unless List or the sweep meets them first.
local function prune(pfx, ix, pc, now, n)
  local from = redis.call('GET', pc)
  local start = '-'
  if from then start = '(' .. from end
  local r = redis.call('XRANGE', ix, start, '+', 'COUNT', n)
  local gone, ids = {}, {}
  for _, e in ipairs(r) do
    local f = e[2]
    local dead
    if f[3] == 'e' then
      -- A second's margin: the id may be the clock at the script's start,
      -- a little before the TIME that e was counted from.
      dead = tonumber(string.match(e[1], '^%d+')) + 1000 * (tonumber(f[4]) + 1) < now
    else
      dead = redis.call('EXISTS', pfx .. 'tok:' .. f[2]) == 0
    end
    if dead then
      gone[#gone + 1] = e[1]
      ids[#ids + 1] = f[2]
    end
  end
  if #gone > 0 then
    redis.call('XDEL', ix, unpack(gone))
    redis.call('HDEL', pfx .. 'kn', unpack(ids))
  end
  if #r < n then
    if from then redis.call('DEL', pc) end
  else
    -- Lost with its expiry (an idle namespace), the walk starts over.
    redis.call('SET', pc, r[#r][1], 'PX', 3600000)
  end
end
`

// createScript stores one token.
//
//	KEYS[1] record <p>:{ns}:tok:<id>    KEYS[2] index <p>:{ns}:ix
//	KEYS[3] revoke marker <p>:{ns}:rv:<id>
//	KEYS[4] prune cursor <p>:{ns}:pc
//	with a parent, also:
//	KEYS[5] parent record               KEYS[6] children counts <p>:{ns}:kn
//	ARGV[1] the record's tail (AppendRecordTail)  ARGV[2] expires (unix ms)
//	ARGV[3] id (canonical)  ARGV[4] parent id (16 raw bytes, or '')
//	ARGV[5] key prefix <p>:{ns}:  ARGV[6] most ancestors a token may have
//	ARGV[7] parent id (canonical, or '')
//	then, with ARGV[8] rate limits (0 to 2), their keys after the others in
//	KEYS and their parameters in ARGV[9...] (see luaRateLimit)
//
// Returns 1 stored, 0 the id exists (or was revoked), -1 the parent is not
// live (gone, or it or an ancestor is revoked), -2 the token already expired
// by the server's clock, -3 the chain of ancestors is too long, {-4, limit,
// µs} a rate limit refuses (checked after everything else, counted only
// when the token is stored). Every check runs before the first write, so a
// refused create writes nothing.
//
// Lineage: the record holds its ancestors, the parent's ancestors followed
// by the parent, read from the parent's record here. The revoke markers of
// all of them are checked in the same atomic step, so a token is never
// stored under a revoked ancestor, even one whose record is still there
// (its removal continues in the background). kn counts the children minted
// from each token (a revoke of a token without children is finished at once).
//
// Retries: go-redis resends a command whose reply was lost. A resend finds
// the identical record (which holds a hash unique to the secret) and
// answers 1 again instead of "exists", without counting it against a rate
// limit a second time. If the token was revoked in between, its revoke
// marker makes the resend answer "exists" rather than bring it back.
var createScriptSource = luaCommon + luaRateLimit + `
local now, now_us = clock()
local at = tonumber(ARGV[2])
if at <= now then return -2 end
local child = ARGV[4] ~= ''
local pfx = ARGV[5]
-- One read for every key checked: the record, the revoke marker and, for a
-- child, the parent's record.
local got
if child then
  got = redis.call('MGET', KEYS[1], KEYS[3], KEYS[5])
else
  got = redis.call('MGET', KEYS[1], KEYS[3])
end
local anc, d = '', 0
local chain = {}
if child then
  local prec = got[3]
  if not prec then return -1 end
  chain = ancestors(pfx, ARGV[7], prec)
  if string.byte(prec, 1) == 123 then
    for _, a in ipairs(chain) do anc = anc .. raw(a) end
  else
    anc = string.sub(prec, 3, 2 + 16 * #chain)
  end
  chain[#chain + 1] = ARGV[7]
  anc = anc .. ARGV[4]
  d = #chain
  if d > tonumber(ARGV[6]) then return -3 end
end
local rec = string.char(2, d) .. anc .. ARGV[1]
local cur = got[1]
if cur then
  if cur == rec then
    -- A resend: write again (the same expiry) so that a WAIT after it
    -- covers the first run's writes, which come earlier in the stream.
    redis.call('PEXPIREAT', KEYS[1], ARGV[2])
    return 1
  end
  return 0
end
if got[2] then return 0 end
if child and marked(pfx, chain) then return -1 end
local limited = rate_check(child and 6 or 4, now_us)
if limited then return limited end
-- One create in 16 (by the server clock) prunes 32 entries: two per create
-- on average, so the index is walked once every half as many creates as it
-- has entries, and an expired token's entry goes within one walk. With
-- tokens minted at a steady pace, the index holds at most about twice as
-- many entries as there are tokens not yet expired (revoked ones included).
-- 32 at a time spreads the fixed cost of a call (finding the cursor's place
-- in the stream, moving the cursor) over 16 creates.
if now_us % 16 == 0 then prune(pfx, KEYS[2], KEYS[4], now, 32) end
rate_take()
if child then
  redis.call('HINCRBY', KEYS[6], ARGV[7], 1)
  extend(KEYS[6], at)
end
-- e, the token's lifetime in whole seconds (rounded up) after the entry's
-- id (the server's clock in ms), lets prune tell an expired token's entry
-- from the index alone.
redis.call('XADD', KEYS[2], '*', 'i', ARGV[3], 'e', math.ceil((at - now) / 1000))
extend(KEYS[2], at)
redis.call('SET', KEYS[1], rec, 'PXAT', ARGV[2])
return 1
`

var createScript = goredis.NewScript(createScriptSource)

// lookupScript returns a live token's record.
//
//	KEYS[1] record  ARGV[1] key prefix <p>:{ns}:  ARGV[2] id
//
// Returns the record, or nil when it is gone or one of its ancestors is
// revoked (its removal may still be under way): one GET and one EXISTS over
// the ancestors' revoke markers.
var lookupScript = goredis.NewScript(luaCommon + `
local rec = redis.call('GET', KEYS[1])
if not rec then return false end
if marked(ARGV[1], ancestors(ARGV[1], ARGV[2], rec)) then return false end
return rec
`)

// listScanBudget bounds the index entries one listScript call reads, so
// that a page of tokens mostly revoked or expired still takes a bounded
// time; List calls it again from where it stopped.
const listScanBudget = 250

// listScript returns the next live tokens of a namespace in index order.
//
//	KEYS[1] index  ARGV[1] key prefix  ARGV[2] cursor (a stream id, or '')
//	ARGV[3] tokens wanted n  ARGV[4] entries to read at most
//
// Returns {more, last, id1, rec1, id2, rec2, ...}: at most n live tokens
// after the cursor; last is the stream id to continue from (” if nothing
// was read); more is 1 unless the index ended. Entries whose record is gone
// are removed from the index; tokens under a revoked ancestor are skipped
// (the sweep removes them).
var listScript = goredis.NewScript(luaCommon + `
local pfx = ARGV[1]
local want, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local start = '-'
if ARGV[2] ~= '' then start = '(' .. ARGV[2] end
local out = {1, ''}
local found, read = 0, 0
local memo = {}
while true do
  local n = math.min(want - found + 1, budget - read)
  if n <= 0 then return out end
  local r = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', n)
  for _, e in ipairs(r) do
    local id = e[2][2]
    local rec = redis.call('GET', pfx .. 'tok:' .. id)
    if not rec then
      redis.call('XDEL', KEYS[1], e[1])
    elseif not under(pfx, id, rec, memo, false) then
      if found == want then return out end
      found = found + 1
      out[#out + 1] = id
      out[#out + 1] = rec
    end
    read = read + 1
    out[2] = e[1]
    start = '(' .. e[1]
  end
  if #r < n then
    out[1] = 0
    return out
  end
end
`)

// revokeScript revokes a live token: in one short atomic step it deletes
// the token's record and, if tokens were minted from it, marks it revoked,
// which refuses every descendant at once (lookups, lists and creates check
// the markers of a token's ancestors) and queues the subtree for removal in
// the background (sweep.go). Then it publishes the revocation.
//
//	KEYS[1] record  KEYS[2] index  KEYS[3] revoke marker <p>:{ns}:rv:<id>
//	KEYS[4] children counts <p>:{ns}:kn  KEYS[5] sweep state <p>:{ns}:sw
//	ARGV[1] id  ARGV[2] key prefix <p>:{ns}:  ARGV[3] channel
//	ARGV[4] namespace  ARGV[5] nonce of this Revoke call
//	ARGV[6] least marker lifetime (ms)
//
// Returns {1, id} (done: the token had no children; or it is of the JSON
// format, whose descendants are refused by the marker and expire in place)
// or {0, id} (removal of its descendants continues), or {} if the token is not live (gone, or under
// a revoked ancestor; nothing is changed then). The marker records
// "<nonce> <reply>": a resend of the same call by go-redis (same nonce) gets
// the first reply back instead of "not found", and createScript refuses to
// recreate the id.
//
// A marker must outlive every descendant, and no descendant is created after
// it: it expires with the index (which lives as long as the namespace's
// longest-lived token), or for tokens of the JSON format, whose children
// are in a kids set, with that set (which lived as long as its longest-lived
// descendant); at least ARGV[6].
//
// The sweep state (a hash) holds the sweep's position, cur (a stream id,
// absent at the start of a pass), pass (counting completed passes), and
// per revoked token r:<id> (the pass at whose end its removal is complete)
// and n:<id> (tokens removed so far, the token included).
var revokeScript = goredis.NewScript(luaCommon + `
local pfx = ARGV[2]
local rec = redis.call('GET', KEYS[1])
if not rec or marked(pfx, ancestors(pfx, ARGV[1], rec)) then
  local done = redis.call('GET', KEYS[3])
  local tag = ARGV[5] .. ' '
  if done and string.sub(done, 1, #tag) == tag then
    -- A resend: write again so that a WAIT after it covers the first run.
    redis.call('PEXPIRE', KEYS[3], ARGV[6])
    return cjson.decode(string.sub(done, #tag + 1))
  end
  return {}
end
local now = clock()
local json = string.byte(rec, 1) == 123
local kids = redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1
local oldkids = json and redis.call('EXISTS', pfx .. 'kids:' .. ARGV[1]) == 1
local reply = {1, ARGV[1]}
local until_ms = now + tonumber(ARGV[6])
if kids then reply = {0, ARGV[1]} end
if kids or oldkids then
  until_ms = math.max(until_ms, redis.call('PEXPIRETIME', KEYS[2]))
  if oldkids then
    until_ms = math.max(until_ms, redis.call('PEXPIRETIME', pfx .. 'kids:' .. ARGV[1]))
  end
end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if kids then
  local st = redis.call('HMGET', KEYS[5], 'cur', 'pass')
  local pass = tonumber(st[2] or '0')
  if st[1] then pass = pass + 1 end
  redis.call('HSET', KEYS[5], 'r:' .. ARGV[1], pass, 'n:' .. ARGV[1], 1)
  if redis.call('PEXPIRETIME', KEYS[5]) < until_ms then
    redis.call('PEXPIREAT', KEYS[5], until_ms)
  end
end
redis.call('SET', KEYS[3], ARGV[5] .. ' ' .. cjson.encode(reply), 'PXAT', until_ms)
local msg = {namespace = ARGV[4], ids = {ARGV[1]}}
redis.call('PUBLISH', ARGV[3], cjson.encode(msg))
return reply
`)

// sweepBatch bounds the index entries one sweepScript call reads: each is
// a GET and at most a few more commands, so a batch takes a fraction of a
// millisecond of Redis time, far enough under 5 ms (the test's bound) that
// a Redis sharing its cores with other work stays under it too (64 did
// not, now and then, on the loaded bench machine).
const sweepBatch = 32

// sweepScript removes, from the next entries of a namespace's index, the
// tokens under a revoked ancestor, and the entries whose record is gone.
//
//	KEYS[1] index  KEYS[2] sweep state  KEYS[3] children counts
//	ARGV[1] key prefix  ARGV[2] entries to read  ARGV[3] a revoked id, or ''
//
// Returns {pending, removed, {ids}, root1, count1, root2, count2, ...}:
// pending is 0 when no revocation waits for removal (the state is deleted),
// removed how many records this call deleted, ids those of them that
// descend from ARGV[3], then the revoked tokens whose removal this call
// completed, each with its count. Each removed token counts for every
// revoked ancestor still being swept.
var sweepScript = goredis.NewScript(luaCommon + `
local pfx = ARGV[1]
local st = redis.call('HGETALL', KEYS[2])
local cur, pass = nil, 0
local roots = {}
local any = false
for i = 1, #st, 2 do
  local k, v = st[i], st[i + 1]
  if k == 'cur' then cur = v
  elseif k == 'pass' then pass = tonumber(v)
  elseif string.sub(k, 1, 2) == 'r:' then
    roots[string.sub(k, 3)] = tonumber(v)
    any = true
  end
end
if not any then
  redis.call('DEL', KEYS[2])
  return {0, 0, {}}
end
local n = tonumber(ARGV[2])
local start = '-'
if cur then start = '(' .. cur end
local r = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', n)
local memo = {}
local removed = 0
local mine = {}
for _, e in ipairs(r) do
  local id = e[2][2]
  local key = pfx .. 'tok:' .. id
  local rec = redis.call('GET', key)
  local gone = not rec
  if rec then
    local hit, anc = under(pfx, id, rec, memo, true)
    if hit then
      redis.call('DEL', key)
      removed = removed + 1
      gone = true
      for _, a in ipairs(anc) do
        if roots[a] then redis.call('HINCRBY', KEYS[2], 'n:' .. a, 1) end
        if a == ARGV[3] then mine[#mine + 1] = id end
      end
    end
  end
  if gone then
    redis.call('XDEL', KEYS[1], e[1])
    redis.call('HDEL', KEYS[3], id)
  end
end
local out = {1, removed, mine}
if #r == n then
  redis.call('HSET', KEYS[2], 'cur', r[#r][1])
  return out
end
-- The end of a pass: the revocations it completes are done.
redis.call('HDEL', KEYS[2], 'cur')
redis.call('HSET', KEYS[2], 'pass', pass + 1)
local left = false
for root, p in pairs(roots) do
  if p <= pass then
    local n = tonumber(redis.call('HGET', KEYS[2], 'n:' .. root) or '0')
    out[#out + 1] = root
    out[#out + 1] = n
    redis.call('HDEL', KEYS[2], 'r:' .. root, 'n:' .. root)
    -- The total, for a Revoke whose own batches did not see the end.
    redis.call('SET', pfx .. 'rc:' .. root, n, 'PX', 60000)
  else
    left = true
  end
end
if not left then
  redis.call('DEL', KEYS[2])
  out[1] = 0
end
return out
`)

// sweepCountScript reads the count of a revocation being swept.
//
//	KEYS[1] sweep state  KEYS[2] its total when done <p>:{ns}:rc:<id>
//	ARGV[1] id
//
// Returns {1, total} when the removal is done (the total kept a minute),
// {0, count so far} while it continues.
var sweepCountScript = goredis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'r:' .. ARGV[1], 'n:' .. ARGV[1])
if not v[1] then return {1, tonumber(redis.call('GET', KEYS[2]) or '0')} end
return {0, tonumber(v[2] or '0')}
`)

// claimScript hands out the namespaces waiting for a sweep, one at a time,
// each with a lease: the queue <p>:sweepq is a sorted set of namespaces
// scored by the end of their lease in unix ms (0: waiting). It is one key,
// outside every namespace's slot, and every replica's sweeper polls it.
//
//	KEYS[1] queue  ARGV[1] lease (ms)  ARGV[2] namespace to renew, or ''
//	ARGV[3] its current lease end (with ARGV[2])
//
// Without ARGV[2], returns {namespace, lease end} of a namespace whose lease
// is over, now taken, or {} when there is none. With it, renews that lease if
// it is still the caller's and returns the same, else {}.
var claimScript = goredis.NewScript(luaCommon + `
local now = clock()
local until_ms = now + tonumber(ARGV[1])
if ARGV[2] ~= '' then
  local s = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if not s or tonumber(s) ~= tonumber(ARGV[3]) then return {} end
  redis.call('ZADD', KEYS[1], until_ms, ARGV[2])
  return {ARGV[2], until_ms}
end
local r = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, 1)
if #r == 0 then return {} end
redis.call('ZADD', KEYS[1], until_ms, r[1])
return {r[1], until_ms}
`)

// releaseScript removes a namespace from the sweep queue when its sweep is
// done, unless a revocation queued it again meanwhile (its score is no
// longer the caller's lease).
//
//	KEYS[1] queue  ARGV[1] namespace  ARGV[2] the caller's lease end
var releaseScript = goredis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
`)
