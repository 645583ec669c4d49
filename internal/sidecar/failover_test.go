package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/internal/testutil"
	"github.com/direktiv/direktiv-authz/internal/tokens"
	"github.com/direktiv/direktiv-authz/store"
	"github.com/direktiv/direktiv-authz/store/redis"
)

// The failover tests drive the real sidecar with requests in a loop while
// Redis fails under it. Every answer must be right or a 503 (fail closed):
// never a 401 for a token acknowledged earlier, never another 5xx, never a
// body that names the wrong token. The loops pause briefly between requests
// to leave the two CPUs of a CI runner to redis-server and the sentinels.

// loadPause is the pause between two requests of one loop.
const loadPause = 5 * time.Millisecond

// mintedToken is a token the sidecar acknowledged (201).
type mintedToken struct {
	id, token, parent string
}

// outcome is one request of a load loop and what was wrong with its answer
// ("" when it was right or a proper 503).
type outcome struct {
	op         string // mint, whoami, revoke
	start, end time.Time
	status     int
	problem    string
	minted     *mintedToken // a 201 mint
	target     string       // the id a revoke was for
	revoked    bool         // a 200 revoke
}

func (o outcome) ok() bool { return o.problem == "" && o.status < 300 }

// loadClient sends requests from load goroutines, which may not call
// t.Fatal: transport errors come back as values.
type loadClient struct {
	base string
	http *http.Client
}

func newLoadClient(s *sidecar) *loadClient {
	return &loadClient{base: s.url, http: &http.Client{Timeout: 15 * time.Second}}
}

func (c *loadClient) send(method, path, token, body string) outcome {
	o := outcome{start: time.Now()}
	defer func() { o.end = time.Now() }()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		o.problem = err.Error()
		return o
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Direktiv-Token", token)
	res, err := c.http.Do(req)
	if err != nil {
		o.end = time.Now()
		o.problem = fmt.Sprintf("%s %s: no answer: %v", method, path, err)
		return o
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	o.end = time.Now()
	o.status = res.StatusCode
	if err != nil {
		o.problem = fmt.Sprintf("%s %s: reading the body: %v", method, path, err)
		return o
	}
	if res.StatusCode == http.StatusServiceUnavailable {
		// Direktiv's v1 shape on the mint endpoint, its v2 shape on /api/v2.
		var e struct {
			Code    any    `json:"code"`
			Message string `json:"message"`
			Error   *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || !(e.Code == float64(http.StatusServiceUnavailable) && e.Message != "" ||
			e.Error != nil && e.Error.Code == "service_unavailable" && e.Error.Message != "") {
			o.problem = fmt.Sprintf("%s %s: 503 with body %s", method, path, b)
		}
		return o
	}
	o.problem = string(b) // replaced by the caller's check of a success
	return o
}

// mint mints in ns with token (the admin token or a permissionsManage one
// whose id is parent) and checks a 201 names a token of ns holding exactly
// workflowView.
func (c *loadClient) mint(ns, token, parent string) outcome {
	o := c.send("POST", "/api/namespaces/"+ns+"/auth/token", token, `{"description":"load","policies":["workflowView"],"expires":"PT1H"}`)
	o.op = "mint"
	if o.status != http.StatusCreated {
		if o.status != http.StatusServiceUnavailable {
			o.problem = fmt.Sprintf("mint: status %d: %s", o.status, o.problem)
		}
		return o
	}
	body := o.problem
	o.problem = ""
	var m struct {
		ID, Token, Namespace string
		Policies             []string
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		o.problem = "mint: 201 with body " + body
		return o
	}
	sec, err := secret.Parse(m.Token)
	if err != nil || sec.ID != m.ID || sec.Namespace != ns || m.Namespace != ns || !slices.Equal(m.Policies, []string{"workflowView"}) {
		o.problem = fmt.Sprintf("mint: wrong 201 body (token parses: %v): %s", err, body)
		return o
	}
	o.minted = &mintedToken{id: m.ID, token: m.Token, parent: parent}
	return o
}

// whoami asks for tok's own record and checks a 200 describes tok.
func (c *loadClient) whoami(ns string, tok mintedToken) outcome {
	o := c.send("GET", "/api/namespaces/"+ns+"/auth/token", tok.token, "")
	o.op = "whoami"
	if o.status != http.StatusOK {
		if o.status != http.StatusServiceUnavailable {
			o.problem = fmt.Sprintf("whoami of acknowledged token %s: status %d: %s", tok.id, o.status, o.problem)
		}
		return o
	}
	body := o.problem
	o.problem = ""
	var v tokens.View
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.ID != tok.id || v.Namespace != ns || v.Parent != tok.parent || v.Expired {
		o.problem = fmt.Sprintf("whoami of %s: wrong 200 body: %s", tok.id, body)
	}
	return o
}

// revoke revokes id with the admin token; a 200 must revoke exactly id.
func (c *loadClient) revoke(ns, id string) outcome {
	o := c.send("DELETE", "/api/namespaces/"+ns+"/auth/tokens/"+id, testAdminToken, "")
	o.op, o.target = "revoke", id
	if o.status != http.StatusOK {
		if o.status != http.StatusServiceUnavailable {
			o.problem = fmt.Sprintf("revoke of acknowledged token %s: status %d: %s", id, o.status, o.problem)
		}
		return o
	}
	body := o.problem
	o.problem = ""
	var v struct{ Revoked []string }
	if err := json.Unmarshal([]byte(body), &v); err != nil || !slices.Equal(v.Revoked, []string{id}) {
		o.problem = fmt.Sprintf("revoke of %s: wrong 200 body: %s", id, body)
		return o
	}
	o.revoked = true
	return o
}

// loadLoop collects the outcomes of load loops.
type loadLoop struct {
	mu       sync.Mutex
	outcomes []outcome
}

// run calls step until stop is closed, at most maxSteps times and for at
// most maxTime, recording what it returns.
func (l *loadLoop) run(stop <-chan struct{}, maxSteps int, maxTime time.Duration, step func(i int) []outcome) {
	deadline := time.Now().Add(maxTime)
	for i := 0; i < maxSteps && time.Now().Before(deadline); i++ {
		select {
		case <-stop:
			return
		default:
		}
		outs := step(i)
		l.mu.Lock()
		l.outcomes = append(l.outcomes, outs...)
		l.mu.Unlock()
		time.Sleep(loadPause)
	}
}

func (l *loadLoop) all() []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.outcomes)
}

// startLoad runs one loop per step function in its own goroutine, each
// recording into l, and returns a function that stops them all and waits;
// calling it again does nothing.
func startLoad(l *loadLoop, maxSteps int, maxTime time.Duration, steps ...func(i int) []outcome) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, step := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(done, maxSteps, maxTime, step)
		}()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// succeededAfter reports whether every op in ops has an answer that is right
// and not a 503, sent after t.
func (l *loadLoop) succeededAfter(t time.Time, ops ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, op := range ops {
		found := false
		for _, o := range l.outcomes {
			if o.op == op && o.ok() && o.start.After(t) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// report fails t for every wrong answer and for any answer other than a
// success before healthyUntil, and logs per op how many requests got a 503
// and when, relative to failedAt. It returns the time each op's last 503
// ended.
func report(t *testing.T, outs []outcome, healthyUntil, failedAt time.Time) map[string]time.Time {
	t.Helper()
	type stats struct {
		n, unavailable          int
		first503, last503       time.Time
		firstOKAfter, maxLatent time.Duration
	}
	byOp := map[string]*stats{}
	problems := 0
	for _, o := range outs {
		st := byOp[o.op]
		if st == nil {
			st = &stats{}
			byOp[o.op] = st
		}
		st.n++
		st.maxLatent = max(st.maxLatent, o.end.Sub(o.start))
		if o.problem != "" {
			if problems++; problems <= 10 {
				t.Errorf("at failure%s: %s", rel(o.start, failedAt), o.problem)
			}
			continue
		}
		if o.status == http.StatusServiceUnavailable {
			st.unavailable++
			if o.end.Before(healthyUntil) {
				t.Errorf("%s answered 503 before Redis failed (at failure%s)", o.op, rel(o.start, failedAt))
			}
			if st.first503.IsZero() || o.start.Before(st.first503) {
				st.first503 = o.start
			}
			if o.end.After(st.last503) {
				st.last503 = o.end
			}
		}
	}
	if problems > 10 {
		t.Errorf("... %d wrong answers in all", problems)
	}
	last := map[string]time.Time{}
	for op, st := range byOp {
		last[op] = st.last503
		if st.unavailable == 0 {
			t.Logf("%s: %d requests, none answered 503, slowest %s", op, st.n, st.maxLatent.Round(time.Millisecond))
			continue
		}
		t.Logf("%s: %d requests, %d answered 503 from failure%s to failure%s (%s), slowest %s", op, st.n, st.unavailable,
			rel(st.first503, failedAt), rel(st.last503, failedAt),
			st.last503.Sub(st.first503).Round(time.Millisecond), st.maxLatent.Round(time.Millisecond))
	}
	return last
}

// rel formats t relative to base: +1.5s, -3ms.
func rel(t, base time.Time) string {
	d := t.Sub(base).Round(time.Millisecond)
	if d < 0 {
		return d.String()
	}
	return "+" + d.String()
}

// TestSentinelFailover kills the Redis master while one loop mints and
// another authenticates tokens minted before. The sidecar must answer every
// request rightly or with a 503, find the promoted replica by itself, and
// every token it acknowledged, before or during the failover, must work
// after it. Mints wait for a replica (wait_replicas=1), so an acknowledged
// token is on the replica the sentinels promote. With two replicas, the
// remaining one follows the new master, so mints resume without help.
func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master, two replicas and three sentinels")
	}
	sen := testutil.StartRedisSentinelWith(t, testutil.RedisSentinelOptions{Replicas: 2})
	s := startSidecar(t, []string{
		"--redis-url", sen.URL() + "?wait_replicas=1&wait_timeout=1s&read_timeout=2s",
		"--token-cache-ttl", "0", // every request asks Redis
	})
	const ns = "failover"
	c := newLoadClient(s)
	var before []mintedToken
	for i := 0; i < 10; i++ {
		m := s.mintOK(t, ns, testAdminToken, `{"description":"load","policies":["workflowView"],"expires":"PT1H"}`)
		before = append(before, mintedToken{id: m["id"].(string), token: m["token"].(string)})
	}
	// A revocation acknowledged before the failover holds after it.
	gone := s.mintOK(t, ns, testAdminToken, `{"policies":["workflowView"],"expires":"PT1H"}`)
	if o := c.revoke(ns, gone["id"].(string)); !o.revoked {
		t.Fatalf("revoke before the failover: status %d %s", o.status, o.problem)
	}

	var loop loadLoop
	stopLoad := startLoad(&loop, 20000, 45*time.Second,
		func(int) []outcome { return []outcome{c.mint(ns, testAdminToken, "")} },
		func(i int) []outcome { return []outcome{c.whoami(ns, before[i%len(before)])} },
	)
	defer stopLoad()

	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	sen.KillMaster(t)
	promoted := sen.WaitFailover(t, 30*time.Second)
	promotedAt := time.Now()
	t.Logf("sentinels promoted %s at failure%s", promoted.Addr(), rel(promotedAt, killed))
	testutil.Within(t, 20*time.Second, "mint and whoami succeed again after the failover", func() bool {
		return loop.succeededAfter(promotedAt, "mint", "whoami")
	})
	t.Logf("both loops succeeding again by failure%s", rel(time.Now(), killed))
	time.Sleep(300 * time.Millisecond)
	stopLoad()

	outs := loop.all()
	last503 := report(t, outs, killed, killed)
	for _, op := range []string{"mint", "whoami"} {
		if !loop.succeededAfter(last503[op], op) {
			t.Errorf("%s never succeeded after its last 503: the sidecar did not resume", op)
		}
	}
	// Every token acknowledged before or during the failover works.
	acked := slices.Clone(before)
	for _, o := range outs {
		if o.minted != nil {
			acked = append(acked, *o.minted)
		}
	}
	for _, tok := range acked {
		if o := c.whoami(ns, tok); o.status != http.StatusOK || o.problem != "" {
			t.Errorf("after the failover, token %s: status %d %s", tok.id, o.status, o.problem)
		}
	}
	if r := s.do(t, "GET", "/api/namespaces/"+ns+"/auth/token", gone["token"].(string), ""); r.status != http.StatusUnauthorized {
		t.Errorf("token revoked before the failover: status %d after it, want 401: %s", r.status, r.body)
	}
	t.Logf("%d acknowledged tokens checked after the failover", len(acked))
}

// TestKillRedisUnderLoad kills a standalone Redis (SIGKILL; it persists to
// an append-only file fsynced before each reply, as a Redis deployed with
// persistence does) while four loops mint, authenticate and revoke, then
// starts it again. Every answer must be right or a 503; the sidecar must
// recover by itself; every acknowledged token must work and every
// acknowledged revocation hold; and Redis must hold no half-written token:
// records, indexes and lineage agree and every key expires.
func TestKillRedisUnderLoad(t *testing.T) {
	srv := testutil.StartRedisPersistent(t)
	s := startSidecar(t, []string{"--redis-url", srv.URL(), "--token-cache-ttl", "0"})
	const ns = "killed"
	c := newLoadClient(s)
	mgr := s.mintOK(t, ns, testAdminToken, `{"policies":["permissionsManage","workflowView"],"expires":"PT2H"}`)
	manager := mintedToken{id: mgr["id"].(string), token: mgr["token"].(string)}
	var before []mintedToken
	for i := 0; i < 5; i++ {
		m := s.mintOK(t, ns, testAdminToken, `{"policies":["workflowView"],"expires":"PT1H"}`)
		before = append(before, mintedToken{id: m["id"].(string), token: m["token"].(string)})
	}

	// Each step mints (with the admin token, or with the manager's so that
	// the new token has lineage), authenticates a token minted before the
	// kill, and every third step revokes what it just minted.
	step := func(w int) func(i int) []outcome {
		return func(i int) []outcome {
			var outs []outcome
			var m outcome
			if (w+i)%2 == 0 {
				m = c.mint(ns, testAdminToken, "")
			} else {
				m = c.mint(ns, manager.token, manager.id)
			}
			outs = append(outs, m, c.whoami(ns, before[(w+i)%len(before)]))
			if m.minted != nil && i%3 == 0 {
				outs = append(outs, c.revoke(ns, m.minted.id))
			}
			return outs
		}
	}
	var loop loadLoop
	stopLoad := startLoad(&loop, 5000, 40*time.Second, step(0), step(1), step(2), step(3))
	defer stopLoad()

	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	srv.Stop(t)
	time.Sleep(1500 * time.Millisecond)
	srv.Restart(t)
	restarted := time.Now()
	recovery := testutil.Within(t, 15*time.Second, "the sidecar recovers after Redis restarts", func() bool {
		return loop.succeededAfter(restarted, "mint", "whoami", "revoke")
	})
	t.Logf("Redis down from failure+0s to failure%s; mint, whoami and revoke all succeeded again %s after the restart",
		rel(restarted, killed), recovery.Round(time.Millisecond))
	if recovery > 5*time.Second {
		t.Errorf("the sidecar took %s to recover after Redis came back, want a few seconds at most", recovery)
	}
	time.Sleep(300 * time.Millisecond)
	stopLoad()

	outs := loop.all()
	report(t, outs, killed, killed)

	// Acknowledged tokens work, acknowledged revocations hold.
	revoked, maybeRevoked := map[string]bool{}, map[string]bool{}
	for _, o := range outs {
		if o.revoked {
			revoked[o.target] = true
		}
		if o.op == "revoke" && o.status == http.StatusServiceUnavailable {
			maybeRevoked[o.target] = true // it may or may not have happened
		}
	}
	checked := 0
	for _, tok := range append(slices.Clone(before), manager) {
		if o := c.whoami(ns, tok); o.status != http.StatusOK || o.problem != "" {
			t.Errorf("after the restart, token %s minted before the kill: status %d %s", tok.id, o.status, o.problem)
		}
	}
	for _, o := range outs {
		if o.minted == nil {
			continue
		}
		checked++
		r := s.do(t, "GET", "/api/namespaces/"+ns+"/auth/token", o.minted.token, "")
		switch {
		case revoked[o.minted.id] && r.status != http.StatusUnauthorized:
			t.Errorf("token %s whose revocation was acknowledged: status %d, want 401", o.minted.id, r.status)
		case !revoked[o.minted.id] && o.minted.parent != "" && r.status == http.StatusOK:
			if p := r.json(t)["parent"]; p != manager.id {
				t.Errorf("token %s: parent %v, want %s", o.minted.id, p, manager.id)
			}
		case !revoked[o.minted.id] && r.status != http.StatusOK && !(maybeRevoked[o.minted.id] && r.status == http.StatusUnauthorized):
			t.Errorf("acknowledged token %s: status %d after the restart: %s", o.minted.id, r.status, r.body)
		}
	}
	t.Logf("%d acknowledged tokens (%d revoked) checked after the restart", checked, len(revoked))

	checkNothingHalfWritten(t, srv, ns, manager.id)
}

// checkNothingHalfWritten reads every key of namespace ns (layout in
// store/redis.go) and checks that each token record is whole and has its
// index entry; that each token minted from a token has its lineage; and
// that every key expires.
func checkNothingHalfWritten(t *testing.T, srv *testutil.RedisServer, ns, parent string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	tag := redis.DefaultPrefix + ":{" + ns + "}:"
	var all []string
	iter := rdb.Scan(ctx, 0, tag+"*", 1000).Iterator()
	for iter.Next(ctx) {
		all = append(all, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	records := map[string]store.Token{}
	kinds := map[string]int{}
	for _, k := range all {
		rest := strings.TrimPrefix(k, tag)
		kind, id, _ := strings.Cut(rest, ":")
		kinds[kind]++
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("key %s does not expire (PTTL %s)", k, ttl)
		}
		if kind != "tok" {
			continue
		}
		raw, err := rdb.Get(ctx, k).Bytes()
		var rec store.Token
		if err == nil {
			rec, err = store.DecodeRecord(raw, ns, id)
		}
		if err != nil || len(rec.Hash) != 64 {
			t.Errorf("record %s is not a whole token: %v %q", k, err, raw)
			continue
		}
		records[id] = rec
	}
	// Every record has its index entry (an entry without a record is that
	// of a revoked or expired token, which the pruning drops).
	indexed := map[string]bool{}
	for _, e := range rdb.XRange(ctx, tag+"ix", "-", "+").Val() {
		if id, ok := e.Values["i"].(string); ok {
			indexed[id] = true
		}
	}
	for id, rec := range records {
		if !indexed[id] {
			t.Errorf("token %s has no index entry: it would not be listed", id)
		}
		if rec.Parent == "" {
			continue
		}
		if rec.Parent != parent || !slices.Equal(rec.Ancestors, []string{parent}) {
			t.Errorf("token %s: ancestors %v, want [%s]", id, rec.Ancestors, parent)
		}
		if n, _ := rdb.HGet(ctx, tag+"kn", rec.Parent).Int(); n == 0 {
			t.Errorf("token %s: its parent counts no children: a revoke of the parent would not mark it", id)
		}
	}
	if len(records) == 0 || kinds["kn"] == 0 {
		t.Fatalf("keys by kind %v: the load created too little to check", kinds)
	}
	t.Logf("consistent: keys by kind %v", kinds)
}
