package store

import "github.com/redis/go-redis/v9"

// The Lua scripts of the Redis store. Each is one round trip (EVALSHA, with
// EVAL when the server lacks the script) and runs atomically on the server:
// no other command runs while it does. If the sidecar dies after sending it,
// the script still runs to its end; Redis replicates and persists a script's
// writes as one MULTI/EXEC block. Redis does not undo the writes of a script
// that fails midway, so every script checks everything before its first
// write, and createScript writes the token record last: a failure at any
// point leaves no token (at most index entries without a record, which List
// skips and prunes).
//
// Redis Cluster: every key of a namespace carries the hash tag {<ns>}, so all
// of them hash to one slot and one master. A script routed by its first key
// can therefore read and write any other key of that namespace, including keys
// it builds itself. Keys known before the script runs are passed in KEYS;
// only keys discovered inside a script are built from a prefix in ARGV: the
// records, kids sets and ancestor lists of descendants during a cascade
// revoke, and the kids sets of older ancestors during a create. That is
// allowed because they are in the same slot as KEYS[1] (Redis Cluster checks
// that a key a script touches is served by this node, which every key with
// the same hash tag is, not that it was declared). Tested on a real cluster.
//
// Time: each script reads the server clock once with TIME (scripts replicate
// their effects, so TIME is allowed anywhere in Redis 7) and uses it for
// expiry decisions, so the index agrees with Redis's own key expiry.
//
// Requires Redis 7.0 or later (PEXPIRETIME, ZRANGE BYSCORE).

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
-- each, find it living long enough and write nothing: a key outlives its
-- longest-lived member by at most this.
local slack = 60000

-- extend makes key expire at 'at' ms (plus slack) unless it already lives
-- that long. A key without an expiry (PEXPIRETIME -1, such as one just
-- created) gets one; a missing key (-2) is left missing. One read, and a
-- write only when the expiry moves.
local function extend(key, at)
  if redis.call('PEXPIRETIME', key) < at then
    redis.call('PEXPIREAT', key, at + slack)
  end
end

-- prune drops up to n index entries whose token expired at or before now.
-- Their records are already gone (Redis expired them at their PXAT).
local function prune(idx, exp, now, n)
  local gone = redis.call('ZRANGE', exp, '-inf', now, 'BYSCORE', 'LIMIT', 0, n)
  if #gone > 0 then
    redis.call('ZREM', idx, unpack(gone))
    redis.call('ZREM', exp, unpack(gone))
  end
end
`

// createScript stores one token.
//
//	KEYS[1] record <p>:{ns}:tok:<id>    KEYS[2] index <p>:{ns}:idx
//	KEYS[3] expiry index <p>:{ns}:exp   KEYS[4] revoke marker <p>:{ns}:done:<id>
//	with a parent, also:
//	KEYS[5] parent record               KEYS[6] parent's kids set <p>:{ns}:kids:<parent>
//	KEYS[7] parent's ancestors <p>:{ns}:up:<parent>
//	KEYS[8] ancestors of the token <p>:{ns}:up:<id>
//	ARGV[1] record JSON  ARGV[2] expires (unix ms)  ARGV[3] created (unix µs)
//	ARGV[4] id  ARGV[5] parent id  ARGV[6] kids key prefix <p>:{ns}:kids:
//	ARGV[7] most ancestors a token may have
//	then, with ARGV[8] rate limits (0 to 2), their keys after the others in
//	KEYS and their parameters in ARGV[9...] (see luaRateLimit)
//
// Returns 1 stored, 0 the id exists, -1 the parent is not live, -2 the token
// already expired by the server's clock, -3 the chain of ancestors is too
// long, {-4, limit, µs} a rate limit refuses (checked after everything else,
// counted only when the token is stored). Every check runs before the first
// write, so a refused create writes nothing. The lineage is written before the record, so a stored child is
// always reachable by a cascade.
//
// Lineage: kids:<x> holds the ids minted from x. A cascade must reach a
// token through every ancestor, even one that has expired, so each kids set
// on the way from the oldest ancestor down to the new token is made to live
// at least as long as the new token. The ancestors (oldest first, space
// separated) are kept in up:<id> for that, for tokens with two or more; a
// token whose one ancestor is its parent has no up key, and its record's
// parent field stands for it. Their kids keys are built from ARGV[6], in
// the same slot (see above).
//
// Retries: go-redis resends a command whose reply was lost. A resend finds
// the identical record (same JSON, which holds a hash unique to the secret)
// and answers 1 again instead of "exists", without counting it against a
// rate limit a second time. If the token was revoked in
// between, the revoke marker (KEYS[4]) makes the resend answer "exists"
// rather than bring the revoked token back.
var createScriptSource = luaCommon + luaRateLimit + `
local now, now_us = clock()
local at = tonumber(ARGV[2])
if at <= now then return -2 end
local child = ARGV[5] ~= ''
-- One read for every key checked: the record, the revoke marker and, for a
-- child, the parent's record and ancestors.
local got
if child then
  got = redis.call('MGET', KEYS[1], KEYS[4], KEYS[5], KEYS[7])
else
  got = redis.call('MGET', KEYS[1], KEYS[4])
end
local cur = got[1]
if cur then
  if cur == ARGV[1] then
    -- A resend: write again (the same expiry) so that a WAIT after it
    -- covers the first run's writes, which come earlier in the stream.
    redis.call('PEXPIREAT', KEYS[1], ARGV[2])
    return 1
  end
  return 0
end
if got[2] then return 0 end
local up = false
local chain = {}
if child then
  if not got[3] then return -1 end
  up = got[4]
  if not up then
    -- A parent with at most one ancestor has no up key (see below): its
    -- ancestor, if any, is its record's parent. The pattern cannot match
    -- inside a string value, where every quote is escaped.
    up = string.match(got[3], '"parent":"([^"]*)"') or false
  end
  if up then
    for a in string.gmatch(up, '%S+') do chain[#chain + 1] = a end
  end
  if #chain + 1 > tonumber(ARGV[7]) then return -3 end
end
local limited = rate_check(child and 8 or 4, now_us)
if limited then return limited end
prune(KEYS[2], KEYS[3], now, 100)
rate_take()
if child then
  redis.call('SADD', KEYS[6], ARGV[4])
  extend(KEYS[6], at)
  for _, a in ipairs(chain) do extend(ARGV[6] .. a, at) end
  -- A token with one ancestor, its parent, needs no up key: its record
  -- names the parent. That is most tokens, and a key fewer to store.
  if up then redis.call('SET', KEYS[8], up .. ' ' .. ARGV[5], 'PXAT', ARGV[2]) end
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
-- The expiry index's score is the expiry plus the server clock's fraction
-- of a second: tokens with the same expiry (minted in the same second for
-- the same duration) then join at the end of their run rather than among
-- each other by id, which costs Redis measurably more. Pruning takes a
-- token at most 1 ms after its expiry; its record expires exactly.
redis.call('ZADD', KEYS[3], at + (now_us % 1000000) / 1000000, ARGV[4])
-- The index and the expiry index always get the same expiry (here, and
-- only here), so one read tells whether both must move.
if redis.call('PEXPIRETIME', KEYS[2]) < at then
  redis.call('PEXPIREAT', KEYS[2], at + slack)
  redis.call('PEXPIREAT', KEYS[3], at + slack)
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return 1
`

var createScript = redis.NewScript(createScriptSource)

// listScript prunes expired index entries and returns the next page of ids.
//
//	KEYS[1] index  KEYS[2] expiry index
//	ARGV[1] "1" if a cursor is given  ARGV[2] cursor created (µs)
//	ARGV[3] cursor id  ARGV[4] page size n
//
// Returns {more, id1, score1, id2, score2, ...} with at most n ids ordered by
// (score, id) strictly after the cursor; more is 1 if further ids follow.
// Scores are returned as Redis formats them (exact integers up to 2^53).
// Ids are compared bytewise, the order Redis uses for equal scores (Lua's
// own string comparison follows the locale).
var listScript = redis.NewScript(luaCommon + `
local function less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local now = clock()
prune(KEYS[1], KEYS[2], now, 1000)
local want = tonumber(ARGV[4])
local out = {0}
local min = '-inf'
local cs = nil
if ARGV[1] == '1' then
  min = ARGV[2]
  cs = tonumber(ARGV[2])
end
local offset = 0
local batch = want + 1
while true do
  local r = redis.call('ZRANGE', KEYS[1], min, '+inf', 'BYSCORE', 'LIMIT', offset, batch, 'WITHSCORES')
  for i = 1, #r, 2 do
    local id, score = r[i], r[i + 1]
    -- skip ids at the cursor's own score that sort at or before it
    if not (cs ~= nil and tonumber(score) == cs and not less(ARGV[3], id)) then
      if (#out - 1) / 2 == want then
        out[1] = 1
        return out
      end
      out[#out + 1] = id
      out[#out + 1] = score
    end
  end
  if #r < 2 * batch then return out end
  offset = offset + batch
end
`)

// revokeScript deletes a live token and, breadth-first, every token minted
// from it, then publishes the revocation, all in one atomic step.
//
//	KEYS[1] record of the token  KEYS[2] index  KEYS[3] expiry index
//	KEYS[4] kids set of the token  KEYS[5] revoke marker <p>:{ns}:done:<id>
//	KEYS[6] ancestors of the token <p>:{ns}:up:<id>
//	ARGV[1] id  ARGV[2] key prefix <p>:{ns}:  ARGV[3] channel
//	ARGV[4] namespace  ARGV[5] nonce of this Revoke call
//	ARGV[6] marker lifetime (ms)
//
// The descendants' keys cannot be known before the script reads the kids
// sets; they are built from ARGV[2] and, sharing the {ns} hash tag, live in
// KEYS[1]'s slot (see the comment at the top of this file). The walk goes
// through kids sets of tokens that have already expired (createScript keeps
// them alive), so a token minted from an expired intermediate is still
// revoked with its ancestor.
//
// It reads every kids set before its first write, so a failing read leaves
// everything as it was. Returns the ids whose records it deleted, the token
// first, then breadth-first; an empty array if the token is not live
// (nothing is changed then). Publishing inside the script makes the notice
// part of the same atomic step: no revocation without its notice.
//
// The marker records "<nonce> <result JSON>" for a short while: a resend of
// the same call by go-redis (same nonce) gets the first result back instead
// of "not found", and createScript refuses to recreate the id.
var revokeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  local done = redis.call('GET', KEYS[5])
  local tag = ARGV[5] .. ' '
  if done and string.sub(done, 1, #tag) == tag then
    -- A resend: write again so that a WAIT after it covers the first run.
    redis.call('PEXPIRE', KEYS[5], ARGV[6])
    return cjson.decode(string.sub(done, #tag + 1))
  end
  return {}
end
-- Pass 1 reads: find every descendant. Pass 2 writes: delete them all.
local queue = {ARGV[1]}
local seen = {[ARGV[1]] = true}
local head = 1
while head <= #queue do
  local kids = KEYS[4]
  if head > 1 then kids = ARGV[2] .. 'kids:' .. queue[head] end
  head = head + 1
  for _, kid in ipairs(redis.call('SMEMBERS', kids)) do
    if not seen[kid] then
      seen[kid] = true
      queue[#queue + 1] = kid
    end
  end
end
local revoked = {}
for i, id in ipairs(queue) do
  local rec, kids, up = KEYS[1], KEYS[4], KEYS[6]
  if i > 1 then
    rec = ARGV[2] .. 'tok:' .. id
    kids = ARGV[2] .. 'kids:' .. id
    up = ARGV[2] .. 'up:' .. id
  end
  if redis.call('DEL', rec) == 1 then revoked[#revoked + 1] = id end
  redis.call('DEL', kids, up)
end
-- ZREM in chunks: unpack is bounded by Lua's C stack (about 8000 values).
for i = 1, #queue, 1000 do
  local j = math.min(i + 999, #queue)
  redis.call('ZREM', KEYS[2], unpack(queue, i, j))
  redis.call('ZREM', KEYS[3], unpack(queue, i, j))
end
local result = cjson.encode(revoked)
redis.call('SET', KEYS[5], ARGV[5] .. ' ' .. result, 'PX', ARGV[6])
redis.call('PUBLISH', ARGV[3], '{"namespace":' .. cjson.encode(ARGV[4]) .. ',"ids":' .. result .. '}')
return revoked
`)
