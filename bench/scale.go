//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
)

// bench scale: the sidecar and its Redis with many live tokens.
//
// It fills a real Redis through the real sidecar to -tokens live tokens,
// measures minting and enforced forwarding at 1k and at that size, the
// bytes each token costs Redis, the first and a deep page of the token
// list, and the revocation of a subtree of -subtree tokens while a second
// client forwards. The sidecar runs with --token-cache-ttl 0, so that every
// forwarded request looks its token up in Redis: what grows is the store,
// and that is what is measured.

// The goals of the scale run.
const (
	goalScaleRatio   = 0.9 // mints/s and forwards/s at N ÷ at 1k
	goalRevokeP99    = 2.0 // forwarding p99 during a revoke ÷ before it (at most)
	goalBytesPerTok  = 400 // bytes of Redis memory per live token (at most)
	scaleSmall       = 1000
	scaleMeasureMint = 5000 // mints of each measured mint run
)

type scaleConfig struct {
	tokens, subtree int
	conns           int
	duration        time.Duration
	forwardRate     float64
	out, results    string
	sidecarBin      string
	ns              string
	quiet           bool
	limit           time.Duration
}

type scaleRun struct {
	cfg      scaleConfig
	stdout   io.Writer
	stderr   io.Writer
	progress io.Writer
	ps       *procs
	rdb      *redis.Client

	sidecar, stub, adminToken, upstreamKey string
	caller, root                           string // secrets: the minter of most tokens, the subtree's root
	rootID                                 string
	versions                               []setting
	notes                                  []string
	runs                                   []runReport
	live                                   int // tokens minted so far (none expire during the run)

	// suffix names this stack's processes: "" for the one filled to N,
	// "-1k" for the reference that stays at 1k tokens (see run).
	suffix string
}

func runScale(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c scaleConfig
	fs.IntVar(&c.tokens, "tokens", 1_000_000, "live tokens to fill Redis with, through the sidecar")
	fs.IntVar(&c.subtree, "subtree", 250_000, "tokens minted from one token, revoked at the end while a client forwards")
	fs.IntVar(&c.conns, "c", 50, "connections of the fill and of the measured closed-loop runs")
	fs.DurationVar(&c.duration, "duration", 3*time.Second, "measured time of each forwarding run (three at each size)")
	fs.Float64Var(&c.forwardRate, "forward-rate", 2000, "open-loop forwarding rate before and during the revoke (req/s)")
	fs.StringVar(&c.out, "out", "bench/out", "reports go to <out>/scale-<UTC timestamp>/")
	fs.StringVar(&c.results, "results", "bench/RESULTS.md", "append a dated section with the figures here (\"\" for none)")
	fs.StringVar(&c.sidecarBin, "sidecar", "", "the direktiv-authz binary (default: go build ./cmd/direktiv-authz into a temporary directory)")
	fs.StringVar(&c.ns, "ns", "bench", "namespace of the tokens")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress bars")
	fs.DurationVar(&c.limit, "limit", 2*time.Hour, "hard cap on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("scale: unexpected argument %q", fs.Arg(0))
	}
	if c.tokens < 10*scaleSmall || c.tokens > 50_000_000 {
		return fmt.Errorf("scale: -tokens %d: want %d..50000000", c.tokens, 10*scaleSmall)
	}
	if c.subtree < 1 || c.subtree > c.tokens-2*scaleSmall-scaleMeasureMint {
		return fmt.Errorf("scale: -subtree %d: want 1..%d (-tokens less what the runs at 1k mint)", c.subtree, c.tokens-2*scaleSmall-scaleMeasureMint)
	}
	if c.forwardRate < 10 || c.forwardRate > maxRate {
		return fmt.Errorf("scale: -forward-rate %v: want 10..%d", c.forwardRate, maxRate)
	}
	ctx, cancel := context.WithTimeout(ctx, c.limit)
	defer cancel()
	s := &scaleRun{cfg: c, stdout: stdout, stderr: stderr}
	if !c.quiet && isTerminal(stderr) {
		s.progress = stderr
	}
	dir, err := os.MkdirTemp("", "direktiv-authz-scale-")
	if err != nil {
		return err
	}
	s.ps = &procs{dir: dir}
	var ref *scaleRun
	defer func() {
		if s.rdb != nil {
			s.rdb.Close()
		}
		if ref != nil && ref.rdb != nil {
			ref.rdb.Close()
		}
		s.ps.stopAll()
		os.RemoveAll(dir)
	}()
	ref = &scaleRun{cfg: c, stdout: stdout, stderr: stderr, progress: s.progress, ps: s.ps, suffix: "-1k"}
	rep, err := s.run(ctx, ref)
	if err != nil {
		return err
	}
	return s.finish(rep)
}

func (s *scaleRun) logf(format string, args ...any) {
	fmt.Fprintf(s.stderr, "bench: "+format+"\n", args...)
}

func (s *scaleRun) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	s.notes = append(s.notes, n)
	s.logf("note: %s", n)
}

// start runs redis-server, the stub and the sidecar (cache off), and the
// reference's redis-server and sidecar (sharing the stub).
func (s *scaleRun) start(ctx context.Context, ref *scaleRun) error {
	bin, err := s.ps.buildSidecar(ctx, s.cfg.sidecarBin, s.logf)
	if err != nil {
		return err
	}
	// Commands of 5 ms or more are logged (SLOWLOG), as the revocation must
	// not hold Redis longer.
	redisPort, version, err := s.ps.startRedis(ctx, "--slowlog-log-slower-than", "5000", "--slowlog-max-len", "10000", "--latency-monitor-threshold", "5")
	if err != nil {
		return err
	}
	if version != "" {
		s.versions = append(s.versions, setting{"redis", version})
	}
	s.upstreamKey = randomSecret("bench-upstream-")
	if s.stub, err = s.ps.startStub(ctx, s.upstreamKey); err != nil {
		return err
	}
	if err := s.startSidecar(ctx, bin, redisPort); err != nil {
		return err
	}
	s.versions = append(s.versions, setting{"sidecar", fmt.Sprintf("GOMAXPROCS %d (every core), --token-cache-ttl 0 (every forward looks its token up in Redis), --log-level warn, metrics on", runtime.NumCPU())})

	ref.stub, ref.upstreamKey = s.stub, s.upstreamKey
	if redisPort, err = freePort(); err != nil {
		return err
	}
	redisServer, err := exec.LookPath("redis-server")
	if err != nil {
		return err
	}
	rp, err := s.ps.start("redis"+ref.suffix, cleanEnv(), redisServer, "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.ps.dir, "--protected-mode", "yes")
	if err != nil {
		return err
	}
	if err := waitReady(ctx, rp, 10*time.Second, probeRedis(fmt.Sprintf("127.0.0.1:%d", redisPort))); err != nil {
		return err
	}
	return ref.startSidecar(ctx, bin, redisPort)
}

// startSidecar runs s's sidecar (cache off) on the Redis at redisPort.
func (s *scaleRun) startSidecar(ctx context.Context, bin string, redisPort int) error {
	redisAddr := fmt.Sprintf("127.0.0.1:%d", redisPort)
	s.rdb = redis.NewClient(&redis.Options{Addr: redisAddr, ReadTimeout: 30 * time.Second})

	sidePort, err := freePort()
	if err != nil {
		return err
	}
	opsPort, err := freePort()
	if err != nil {
		return err
	}
	s.adminToken = randomSecret("bench-admin-")
	env := cleanEnv("DIREKTIV_AUTHZ_ADMIN_TOKEN="+s.adminToken, "DIREKTIV_AUTHZ_UPSTREAM_API_KEY="+s.upstreamKey)
	sdp, err := s.ps.start("sidecar"+s.suffix, env, bin, "--listen", fmt.Sprintf("127.0.0.1:%d", sidePort), "--upstream", s.stub,
		"--redis-url", fmt.Sprintf("redis://%s/0", redisAddr), "--log-level", "warn", "--ops-listen", fmt.Sprintf("127.0.0.1:%d", opsPort),
		"--token-cache-ttl", "0")
	if err != nil {
		return err
	}
	s.sidecar = fmt.Sprintf("http://127.0.0.1:%d", sidePort)
	return waitReady(ctx, sdp, 90*time.Second, probeHTTP(s.sidecar, "/api/namespaces/"+s.cfg.ns+"/auth/token"))
}

// usedMemory is Redis's INFO used_memory.
func (s *scaleRun) usedMemory(ctx context.Context) (int64, error) {
	info, err := s.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
}

// commandUsec is the time Redis has spent executing commands since it
// started (the sum of INFO commandstats' usec, INFO itself left out), in
// µs. Per request, it is what a request costs Redis without the network
// and event-loop work around it, and, unlike process CPU, it is counted in
// µs rather than in scheduler ticks. It is wall time inside each command,
// so a Redis preempted mid-command counts the wait too.
func (s *scaleRun) commandUsec(ctx context.Context) (int64, error) {
	info, err := s.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, l := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" {
			continue
		}
		for _, f := range strings.Split(stats, ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("INFO commandstats: %s: %w", l, err)
				}
				total += n
			}
		}
	}
	return total, nil
}

// redisCommands is the CPU map's key of commandUsec per request.
const redisCommands = "redis commands"

// load runs one measured run and keeps its report.
func (s *scaleRun) load(ctx context.Context, name string, k kind, conns int, rate float64, d time.Duration, n int64, keep bool) (runReport, error) {
	groups := s.ps.cpuGroups()
	var before cpuSnapshot
	var usec0 int64
	usecErr := errors.New("the measured phase did not start")
	spec := loadSpec{name: name, scenario: k.name, target: s.sidecar, kinds: []kind{k}, conns: conns, rate: rate,
		duration: d, n: n, timeout: 10 * time.Second, progress: s.progress,
		onMeasure: func() {
			before = snapshotCPU(groups)
			usec0, usecErr = s.commandUsec(ctx)
		}}
	if n > 0 {
		spec.limit = time.Hour
	}
	res, err := runLoad(ctx, spec)
	if err != nil {
		return runReport{}, err
	}
	if res.interrupted {
		return runReport{}, fmt.Errorf("interrupted during %s: %w", name, ctx.Err())
	}
	after := snapshotCPU(groups)
	r := newRunReport(res)
	if before != nil {
		r.CPU = perRequest(before, after, r.Requests)
	}
	if usecErr == nil && r.Requests > 0 {
		if usec1, err := s.commandUsec(ctx); err == nil {
			if r.CPU == nil {
				r.CPU = map[string]float64{}
			}
			r.CPU[redisCommands] = float64(usec1-usec0) / float64(r.Requests)
		}
	}
	r.Charted = true
	if keep {
		s.runs = append(s.runs, r)
	}
	s.logf("  %-30s %9.0f ok/s  p50 %.3f ms  p99 %.3f ms  max %.3f ms  errors %d  cpu µs/req: %s", name, r.Throughput, r.Latency.P50, r.Latency.P99, r.Latency.Max, r.Failed, cpuText(r.CPU))
	if r.Failed > 0 {
		for e, v := range r.Errors {
			s.logf("    %d × %s: %.160s", v, e, r.ErrorSamples[e])
		}
	}
	return r, nil
}

func (s *scaleRun) mintKind(token string) kind {
	return kind{name: "mint", weight: 1, method: "POST", uri: "/api/namespaces/" + s.cfg.ns + "/auth/token", token: token,
		body: []byte(mintBody), expect: 201, want: []byte(`"token":"`)}
}

func (s *scaleRun) forwardKind() kind {
	return kind{name: "forward", weight: 1, method: "GET", uri: "/api/v2/namespaces/" + s.cfg.ns + "/instances", token: s.caller, expect: 200}
}

// fill mints tokens with token until s.live reaches to (not measured).
func (s *scaleRun) fill(ctx context.Context, token string, to int, what string) error {
	n := to - s.live
	if n <= 0 {
		return nil
	}
	s.logf("filling: %d tokens %s (%d → %d live)", n, what, s.live, to)
	r, err := s.load(ctx, "fill "+what, s.mintKind(token), s.cfg.conns, 0, 0, int64(n), false)
	if err != nil {
		return err
	}
	s.live += int(r.OK)
	if r.Failed > 0 {
		return fmt.Errorf("filling: %d of %d mints failed", r.Failed, n)
	}
	return nil
}

// scaleRounds is how many forwarding runs each size takes the median of:
// one run on a shared machine moves with the neighbours.
const scaleRounds = 3

// sizeFigures is what measure found at one size: throughput, and the CPU
// the sidecar and Redis spent per request (on a shared machine it moves
// less than throughput does).
type sizeFigures struct {
	mints, forwards     float64 // ok/s
	mintCPU, forwardCPU float64 // sidecar + redis µs per request
	mintCmd, forwardCmd float64 // Redis command µs per request (commandUsec)
}

// measure runs scaleRounds rounds; in each, a forward run on each stack in
// turn, then a mint run of scaleMeasureMint mints on each. labels name the
// stacks' sizes in the runs' names. Each figure is the median of its
// rounds; the runs are kept in s's report in the order they ran. The mints
// add to the size: at 1k the mint runs see 1k to 1k + 2 ×
// scaleMeasureMint tokens, still far from N.
func (s *scaleRun) measure(ctx context.Context, stacks []*scaleRun, labels []string) ([]sizeFigures, error) {
	type samples struct{ fs, fc, fr, ms, mc, mr []float64 }
	got := make([]samples, len(stacks))
	keep := func(r runReport, round int) {
		r.Round = round
		s.runs = append(s.runs, r)
	}
	for round := 1; round <= scaleRounds; round++ {
		for i, st := range stacks {
			f, err := st.load(ctx, "forward at "+labels[i], st.forwardKind(), s.cfg.conns, 0, s.cfg.duration, 0, false)
			if err != nil {
				return nil, err
			}
			keep(f, round)
			g := &got[i]
			g.fs = append(g.fs, f.Throughput)
			g.fc = append(g.fc, f.CPU["sidecar"+st.suffix]+f.CPU["redis"+st.suffix])
			g.fr = append(g.fr, f.CPU[redisCommands])
		}
		for i, st := range stacks {
			m, err := st.load(ctx, "mint at "+labels[i], st.mintKind(st.caller), s.cfg.conns, 0, 0, scaleMeasureMint, false)
			if err != nil {
				return nil, err
			}
			keep(m, round)
			st.live += int(m.OK)
			g := &got[i]
			g.ms = append(g.ms, m.Throughput)
			g.mc = append(g.mc, m.CPU["sidecar"+st.suffix]+m.CPU["redis"+st.suffix])
			g.mr = append(g.mr, m.CPU[redisCommands])
		}
	}
	out := make([]sizeFigures, len(stacks))
	for i, g := range got {
		out[i] = sizeFigures{mints: median(g.ms), forwards: median(g.fs), mintCPU: median(g.mc), forwardCPU: median(g.fc),
			mintCmd: median(g.mr), forwardCmd: median(g.fr)}
	}
	return out, nil
}

// mintCaller mints s's caller with its admin token (s.live counts it).
func (s *scaleRun) mintCaller(ctx context.Context) error {
	var err error
	if s.caller, err = mintOne(ctx, s.sidecar, s.adminToken, s.cfg.ns, callerBodyScale); err != nil {
		return fmt.Errorf("minting the bench's caller: %w", err)
	}
	s.live = 1
	return nil
}

const callerBodyScale = `{"description":"bench caller","policies":["permissionsManage","workflowView","instancesView"],"expires":"P1D"}`

// run fills s to N and measures it; ref, a second Redis and sidecar that
// stay at 1k tokens, is measured in turn with s at N: both sizes then see
// the same machine. Runs minutes apart on a shared machine (the first
// 1k runs, before the fill) differ by more than the store does: in earlier
// runs the load generator's own CPU per request, which does not depend on
// the store, moved by up to 9% between them.
func (s *scaleRun) run(ctx context.Context, ref *scaleRun) (*report, error) {
	started := time.Now()
	loadBefore := loadAverage()
	if err := s.start(ctx, ref); err != nil {
		return nil, err
	}
	if err := s.mintCaller(ctx); err != nil {
		return nil, err
	}
	if err := ref.mintCaller(ctx); err != nil {
		return nil, err
	}
	var err error
	if s.root, err = mintOne(ctx, s.sidecar, s.caller, s.cfg.ns, callerBodyScale); err != nil {
		return nil, fmt.Errorf("minting the subtree's root: %w", err)
	}
	s.rootID = idOfSecret(ctx, s.sidecar, s.root, s.cfg.ns)
	s.live = 2
	mem0, err := s.usedMemory(ctx)
	if err != nil {
		return nil, err
	}

	// At 1k.
	if err := s.fill(ctx, s.caller, scaleSmall, "to 1k"); err != nil {
		return nil, err
	}
	if err := ref.fill(ctx, ref.caller, scaleSmall, "the reference to 1k"); err != nil {
		return nil, err
	}
	figs, err := s.measure(ctx, []*scaleRun{s}, []string{"1k"})
	if err != nil {
		return nil, err
	}
	early := figs[0]
	// The subtree first, then the rest: the sweep reads the whole index
	// either way.
	if err := s.fill(ctx, s.root, s.live+s.cfg.subtree, "in the subtree"); err != nil {
		return nil, err
	}
	half := s.live + (s.cfg.tokens-s.live)/2
	if err := s.fill(ctx, s.caller, half, "to half"); err != nil {
		return nil, err
	}
	deep := fmt.Sprintf("%d-0", time.Now().UnixMilli()) // a cursor half-way down the list
	if err := s.fill(ctx, s.caller, s.cfg.tokens, "to N"); err != nil {
		return nil, err
	}
	memN, err := s.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	filled := s.live - 2
	bytesPer := float64(memN-mem0) / float64(filled)
	s.logf("Redis used_memory %d → %d bytes over %d tokens: %.0f bytes per token", mem0, memN, filled, bytesPer)
	sample := s.sampleUsage(ctx)
	// At N, in turn with the reference at 1k.
	if figs, err = s.measure(ctx, []*scaleRun{ref, s}, []string{"1k beside N", "N"}); err != nil {
		return nil, err
	}
	at1k, atN := figs[0], figs[1]

	// The token list: its first page, and one half-way down.
	listKind := func(after string) kind {
		uri := "/api/namespaces/" + s.cfg.ns + "/auth/tokens?limit=100"
		if after != "" {
			uri += "&after=" + after
		}
		return kind{name: "list", weight: 1, method: "GET", uri: uri, token: s.caller, expect: 200, want: []byte(`"next":"`)}
	}
	if _, err := s.load(ctx, "list: first page of 100", listKind(""), 4, 0, 0, 200, true); err != nil {
		return nil, err
	}
	if _, err := s.load(ctx, "list: a page half-way down", listKind(deep), 4, 0, 0, 200, true); err != nil {
		return nil, err
	}

	// The revoke, while a second client forwards.
	revoke, err := s.revokeUnderLoad(ctx)
	if err != nil {
		return nil, err
	}

	rep := &report{Title: "direktiv-authz bench: scale", Heading: "bench scale", Created: started, Machine: machine()}
	rep.Settings = append([]setting{
		{"size", fmt.Sprintf("%d live tokens in one namespace, %d at the end (the measured mints add theirs; %d in the subtree revoked at the end, the rest minted by one token), description and policies of the mint scenario, PT1H", s.cfg.tokens, s.live, s.cfg.subtree)},
		{"load", fmt.Sprintf("%d connections for the fill and the closed-loop runs; forwards the median of %d runs of %v, mints %d per measured run (at 1k: from 1k live tokens, at N: from N); open loop %.0f req/s before and during the revoke", s.cfg.conns, scaleRounds, s.cfg.duration, scaleMeasureMint, s.cfg.forwardRate)},
		{"1k beside N", "a second Redis and sidecar (redis-1k, sidecar-1k), filled to 1k tokens the same way, measured in turn with N (forward at 1k, at N, mint at 1k, at N, three rounds): S1 and S2 compare the sizes seconds apart, not minutes; S1s and S2s compare with the first stack's runs at 1k, before its fill"},
		{"memory", fmt.Sprintf("INFO used_memory %d → %d bytes over the fill: %.0f bytes per token; MEMORY USAGE %s", mem0, memN, bytesPer, sample)},
		{"load average (1, 5, 15 min) before, after", loadBefore + "; " + loadAverage() + " (the bench's own load included; much above the core count means busy neighbours)"},
		{"cpu", "each process's CPU per request, from its CPU time; \"redis commands\": the time Redis spent executing commands per request (INFO commandstats), finer than Redis's process CPU and blind to the network and event-loop work around the commands"},
	}, s.versions...)
	rep.Settings = append(rep.Settings, revoke.settings...)
	ratio := func(id, title, num, den string, n, d, goal float64, atMost bool, unit string) ratioReport {
		r := ratioReport{ID: id, Title: title, Numerator: num, Denominator: den, NumValue: n, DenValue: d, Goal: goal, AtMost: atMost, Unit: unit}
		if d > 0 {
			r.Value = n / d
			r.Rounds = []float64{r.Value}
		}
		return r
	}
	rep.Ratios = []ratioReport{
		ratio("S1", "minting at N ÷ at 1k", "mint at N", "mint at 1k beside N", atN.mints, at1k.mints, goalScaleRatio, false, "req/s"),
		asInfo(ratio("S1s", "minting at N ÷ at 1k before the fill (info)", "mint at N", "mint at 1k", atN.mints, early.mints, goalScaleRatio, false, "req/s")),
		asInfo(ratio("S1c", "CPU per mint at 1k ÷ at N (info)", "sidecar+redis µs per mint at 1k beside N", "at N", at1k.mintCPU, atN.mintCPU, goalScaleRatio, false, "µs")),
		asInfo(ratio("S1r", "Redis command time per mint at 1k ÷ at N (info)", "redis commands µs per mint at 1k beside N", "at N", at1k.mintCmd, atN.mintCmd, goalScaleRatio, false, "µs")),
		ratio("S2", "enforced forwarding at N ÷ at 1k", "forward at N", "forward at 1k beside N", atN.forwards, at1k.forwards, goalScaleRatio, false, "req/s"),
		asInfo(ratio("S2s", "enforced forwarding at N ÷ at 1k before the fill (info)", "forward at N", "forward at 1k", atN.forwards, early.forwards, goalScaleRatio, false, "req/s")),
		asInfo(ratio("S2c", "CPU per forward at 1k ÷ at N (info)", "sidecar+redis µs per forward at 1k beside N", "at N", at1k.forwardCPU, atN.forwardCPU, goalScaleRatio, false, "µs")),
		asInfo(ratio("S2r", "Redis command time per forward at 1k ÷ at N (info)", "redis commands µs per forward at 1k beside N", "at N", at1k.forwardCmd, atN.forwardCmd, goalScaleRatio, false, "µs")),
		ratio("S3", "forwarding p99 during a revoke ÷ before", "forward during the revoke", "forward before the revoke", revoke.p99During, revoke.p99Before, goalRevokeP99, true, "ms"),
		{ID: "S4", Title: "Redis bytes per live token", Numerator: "used_memory delta", Denominator: "tokens", NumValue: float64(memN - mem0), DenValue: float64(filled),
			Value: bytesPer, Rounds: []float64{bytesPer}, Goal: goalBytesPerTok, AtMost: true, Unit: "B"},
	}
	for i := range rep.Ratios {
		rep.Ratios[i].judge()
	}
	rep.Runs = s.runs
	rep.Notes = s.notes
	return rep, nil
}

// sampleUsage is MEMORY USAGE of one token's record and of the index per
// token.
func (s *scaleRun) sampleUsage(ctx context.Context) string {
	tag := "direktiv-authz:{" + s.cfg.ns + "}:"
	keys, _, err := s.rdb.Scan(ctx, 0, tag+"tok:*", 100).Result()
	if err != nil || len(keys) == 0 {
		return "unavailable"
	}
	rec, _ := s.rdb.MemoryUsage(ctx, keys[0]).Result()
	idx, _ := s.rdb.MemoryUsage(ctx, tag+"ix", 0).Result()
	n, _ := s.rdb.XLen(ctx, tag+"ix").Result()
	if n == 0 {
		n = 1
	}
	return fmt.Sprintf("of a record %d bytes, of the index %.1f bytes per entry (%d entries)", rec, float64(idx)/float64(n), n)
}

// revokeOutcome is what the revoke under load measured.
type revokeOutcome struct {
	p99Before, p99During float64
	settings             []setting
}

// revokeUnderLoad forwards at a fixed rate, then revokes the subtree's root
// while forwarding on, until the background removal has finished.
func (s *scaleRun) revokeUnderLoad(ctx context.Context) (revokeOutcome, error) {
	var out revokeOutcome
	fk := s.forwardKind()
	before, err := s.load(ctx, "forward before the revoke", fk, s.cfg.conns, s.cfg.forwardRate, 5*time.Second, 0, true)
	if err != nil {
		return out, err
	}
	out.p99Before = before.Latency.P99
	// A token of the subtree: refused right after the answer.
	victim, err := mintOne(ctx, s.sidecar, s.root, s.cfg.ns, mintBody)
	if err != nil {
		return out, err
	}
	if st, _, err := getStatus(s.sidecar, fk.uri, victim); err != nil || st != 200 {
		return out, fmt.Errorf("a subtree token before the revoke: %d %v", st, err)
	}
	if err := s.rdb.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
		return out, err
	}
	_ = s.rdb.Do(ctx, "LATENCY", "RESET").Err()

	type answer struct {
		status int
		body   string
		took   time.Duration
		err    error
	}
	revoked := make(chan answer, 1)
	sweepDone := make(chan time.Duration, 1)
	go func() {
		time.Sleep(time.Second) // a second of forwarding first
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(s.sidecar + "/api/namespaces/" + s.cfg.ns + "/auth/tokens/" + s.rootID)
		req.Header.SetMethod("DELETE")
		req.Header.Set(headerToken, s.caller)
		start := time.Now()
		err := fasthttp.DoTimeout(req, resp, time.Minute)
		a := answer{status: resp.StatusCode(), body: string(resp.Body()), took: time.Since(start), err: err}
		revoked <- a
		// The removal is over when the namespace's sweep state is gone.
		for ctx.Err() == nil {
			if n, err := s.rdb.Exists(ctx, "direktiv-authz:{"+s.cfg.ns+"}:sw").Result(); err == nil && n == 0 {
				sweepDone <- time.Since(start)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// Forwarding in one-second open-loop windows until the removal is over.
	during := newHistogram()
	var total, failed int64
	var ans answer
	var removal time.Duration
	got, done := false, false
	for i := 0; !done && i < 3600; i++ {
		r, err := s.load(ctx, fmt.Sprintf("forward during the revoke (%ds)", i+1), fk, s.cfg.conns, s.cfg.forwardRate, time.Second, 0, false)
		if err != nil {
			return out, err
		}
		during.merge(r.hist)
		total += r.Requests
		failed += r.Failed
		if !got {
			select {
			case ans = <-revoked:
				got = true
			default:
			}
		}
		select {
		case removal = <-sweepDone:
			done = true
		default:
		}
	}
	if !got {
		ans = <-revoked
	}
	if !done {
		return out, errors.New("the removal of the revoked subtree did not finish within an hour")
	}
	if ans.err != nil || ans.status != 200 {
		return out, fmt.Errorf("DELETE of the subtree's root: %d %v %.200s", ans.status, ans.err, ans.body)
	}
	var body struct {
		Count    int  `json:"count"`
		Complete bool `json:"complete"`
	}
	_ = json.Unmarshal([]byte(ans.body), &body)
	if st, _, err := getStatus(s.sidecar, fk.uri, victim); err != nil || st != 401 {
		s.note("a subtree token after the revoke answered %d (%v), want 401", st, err)
	}
	dr := runReport{Name: "forward during the revoke", Scenario: "forward", Target: s.sidecar, Loop: "open", Connections: s.cfg.conns,
		RatePerS: s.cfg.forwardRate, Requests: total, OK: total - failed, Failed: failed, Latency: summarize(during), Charted: true,
		Percentiles: during.percentileSpectrum(), hist: during}
	dr.WindowS = float64(total) / s.cfg.forwardRate
	dr.Throughput = float64(dr.OK) / max(dr.WindowS, 1e-9)
	s.runs = append(s.runs, dr)
	out.p99During = dr.Latency.P99

	// SLOWLOG: every command of 5 ms or more since the revoke.
	logs, err := s.rdb.SlowLogGet(ctx, -1).Result()
	if err != nil {
		return out, err
	}
	var slowest time.Duration
	slowCmd := "none"
	for _, l := range logs {
		if l.Duration > slowest {
			slowest = l.Duration
			slowCmd = strings.Join(l.Args[:min(len(l.Args), 2)], " ")
		}
	}
	out.settings = []setting{
		{"revoke", fmt.Sprintf("DELETE of a token with %d descendants answered %d in %.1f ms (count %d so far, complete %v); the background removal ended %.1f s after the DELETE was sent",
			s.cfg.subtree+1, ans.status, float64(ans.took)/1e6, body.Count, body.Complete, removal.Seconds())},
		{"redis slowlog during the revoke", fmt.Sprintf("%d commands of 5 ms or more; slowest %s (%s)", len(logs), slowest, slowCmd)},
		{"forwarding during the revoke", fmt.Sprintf("p99 %.3f ms, max %.3f ms (before: p99 %.3f ms, max %.3f ms), %d of %d failed", dr.Latency.P99, dr.Latency.Max, before.Latency.P99, before.Latency.Max, failed, total)},
	}
	s.logf("revoke: %s", out.settings[0].Value)
	s.logf("slowlog: %s", out.settings[1].Value)
	return out, nil
}

// idOfSecret asks the sidecar who the token is.
func idOfSecret(ctx context.Context, base, token, ns string) string {
	_, body, err := getStatus(base, "/api/namespaces/"+ns+"/auth/token", token)
	if err != nil {
		return ""
	}
	var who struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal([]byte(body), &who)
	return who.ID
}

// finish prints the report, saves it and appends RESULTS.md.
func (s *scaleRun) finish(rep *report) error {
	dir := filepath.Join(s.cfg.out, "scale-"+rep.Created.UTC().Format("20060102-150405"))
	return saveReport(rep, dir, s.cfg.results, s.stdout)
}
