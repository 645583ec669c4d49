package redis

import (
	"strconv"
	"time"

	"github.com/direktiv/direktiv-authz/store"
)

// Rate limits in Redis (see Limit). The state of a limit is one string key
// holding the limit's theoretical arrival time (GCRA) in unix microseconds,
// expiring when the bucket is full again:
//
//	<prefix>:{<ns>}:rl:ns          Limit.Namespace
//	<prefix>:{<ns>}:rl:tok:<id>    Limit.Caller, id = Limit.CallerID
//
// Both carry the namespace's hash tag, so createScript checks and counts
// them in the same atomic step as the create, on the namespace's Cluster
// slot, without another round trip. Every replica on the Redis shares them,
// and they run on the server's clock.

// luaRateLimit holds the rate-limit helpers of createScript.
//
//	KEYS[base+i]   the key of limit i (base is 4, or 8 with a parent)
//	ARGV[8]        the number of limits, 0 to 2
//	ARGV[7+2i]     limit i's interval (µs per create)
//	ARGV[8+2i]     limit i's burst (creates at once)
//
// rate_check(base, now), now the server's time in unix µs (the create's one
// clock() read), reads every limit and returns nil when the create may pass, or
// {-4, i, µs to wait} for the limit i that is furthest from passing. It
// writes nothing; rate_take, called once the create is certain, counts it.
// Numbers are formatted with %.0f: Lua's own tostring keeps 14 digits, a
// time in µs has 16.
const luaRateLimit = `
local rl_keys, rl_tats = {}, {}
local function rate_check(base, now)
  local n = tonumber(ARGV[8] or '0') or 0
  if n == 0 then return nil end
  local worst, wi = 0, 0
  for i = 1, n do
    local key = KEYS[base + i]
    local iv, burst = tonumber(ARGV[7 + 2 * i]), tonumber(ARGV[8 + 2 * i])
    local tat = tonumber(redis.call('GET', key) or '') or now
    if tat < now then tat = now end
    local wait = tat - now - (burst - 1) * iv
    if wait > worst then worst, wi = wait, i end
    rl_keys[i] = key
    rl_tats[i] = tat + iv
  end
  if wi > 0 then return {-4, wi, worst} end
  return nil
end
local function rate_take()
  for i, key in ipairs(rl_keys) do
    local tat = rl_tats[i]
    redis.call('SET', key, string.format('%.0f', tat), 'PXAT', string.format('%.0f', math.ceil(tat / 1000)))
  end
end
`

func (r *Store) rateNamespaceKey(ns string) string  { return r.tag(ns) + "rl:ns" }
func (r *Store) rateCallerKey(ns, id string) string { return r.tag(ns) + "rl:tok:" + id }

// rateLimits appends the keys and arguments of l's limits for createScript
// and returns the scope of each, in order.
func (r *Store) rateLimits(ns string, l store.Limit, keys []string, args []any) ([]string, []any, []limitRef) {
	var refs []limitRef
	if !l.Namespace.IsZero() {
		refs = append(refs, limitRef{store.ScopeNamespace, l.Namespace})
		keys = append(keys, r.rateNamespaceKey(ns))
	}
	if l.CallerID != "" && !l.Caller.IsZero() {
		refs = append(refs, limitRef{store.ScopeToken, l.Caller})
		keys = append(keys, r.rateCallerKey(ns, l.CallerID))
	}
	args = append(args, len(refs))
	for _, ref := range refs {
		args = append(args, strconv.FormatInt(ref.rate.Interval().Microseconds(), 10), ref.rate.Count)
	}
	return keys, args, refs
}

type limitRef struct {
	scope string
	rate  store.Rate
}

// rateLimitedReply reads createScript's {-4, i, µs} answer.
func rateLimitedReply(res []any, refs []limitRef) (*store.RateLimitedError, bool) {
	if len(res) != 3 {
		return nil, false
	}
	code, _ := res[0].(int64)
	i, _ := res[1].(int64)
	wait, _ := res[2].(int64)
	if code != -4 || i < 1 || int(i) > len(refs) || wait < 0 {
		return nil, false
	}
	ref := refs[i-1]
	return &store.RateLimitedError{Scope: ref.scope, Rate: ref.rate, RetryAfter: time.Duration(wait) * time.Microsecond}, true
}
