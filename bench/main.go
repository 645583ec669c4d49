//go:build linux

// Command bench is direktiv-authz's load generator and benchmark suite.
//
//	go run ./bench -scenario forward -admin-token "$ADMIN" -c 50 -duration 10s
//	go run ./bench compare      # what `make bench` runs: the standard comparison
//	go run ./bench scale        # what `make bench-scale` runs: a million live tokens
//	go run ./bench stub         # the fast stub upstream on its own
//
// See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// run dispatches to a subcommand: "stub", "floor", "compare", "scale", or (the
// default, also spelled "run") one load run.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "stub":
			return runStub(ctx, args[1:], getenv, stdout, stderr)
		case "floor":
			return runFloor(ctx, args[1:], getenv, stdout, stderr)
		case "compare":
			return runCompare(ctx, args[1:], getenv, stdout, stderr)
		case "scale":
			return runScale(ctx, args[1:], getenv, stdout, stderr)
		case "run":
			args = args[1:]
		}
	}
	return runOne(ctx, args, getenv, stdout, stderr)
}

// isTerminal reports whether w is a character device (a terminal), where
// the progress bar is drawn.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runOne is one load run against a running sidecar (or, for direct, the
// upstream), with the results printed and optionally saved.
func runOne(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: go run ./bench [run] [flags]       one load run
       go run ./bench compare [flags]     the standard comparison (make bench)
       go run ./bench scale [flags]       the sidecar with a million live tokens (make bench-scale)
       go run ./bench stub [flags]        the stub upstream on its own
       go run ./bench floor [flags]       the floor relay (bytes copied, nothing else) on its own

Secrets may come from the environment instead of flags: BENCH_TOKEN,
BENCH_ADMIN_TOKEN, and BENCH_UPSTREAM_KEY (the Direktiv-Api-Key the direct
scenario sends to the upstream).

flags:
`)
		fs.PrintDefaults()
	}
	scenario := fs.String("scenario", "forward", "what to send: "+strings.Join(scenarios, ", "))
	conns := fs.Int("c", 50, "connections: requests in flight (closed loop), or the most in flight (open loop)")
	rate := fs.Float64("rate", 0, "open loop: send this many requests per second on a fixed schedule; 0 is a closed loop")
	duration := fs.Duration("duration", 10*time.Second, "measured time (after the warm-up)")
	n := fs.Int64("n", 0, "measured requests instead of a duration")
	warmup := fs.Duration("warmup", 2*time.Second, "load sent before measuring, not recorded")
	timeout := fs.Duration("timeout", 5*time.Second, "per-request timeout; a timeout counts as an error")
	target := fs.String("target", "http://127.0.0.1:8090", "the sidecar's base URL (loopback only)")
	upstream := fs.String("upstream", "http://127.0.0.1:8080", "the upstream's base URL, for -scenario direct (loopback only)")
	ns := fs.String("ns", "bench", "namespace of the tokens and routes")
	token := fs.String("token", getenv("BENCH_TOKEN"), "a minted token with permissionsManage, workflowView and instancesView (env BENCH_TOKEN); minted with -admin-token when empty")
	admin := fs.String("admin-token", getenv("BENCH_ADMIN_TOKEN"), "the sidecar's admin token (env BENCH_ADMIN_TOKEN)")
	mintAs := fs.String("mint-as", "token", "who mints in the mint scenario: token (a minted token with permissionsManage) or admin")
	mix := fs.String("mix", "mint=1,forward=8,pass=1", "the blend of -scenario mixed, as weights")
	forwardPath := fs.String("forward-path", "", "path forward and direct send (default /api/v2/namespaces/{ns}/instances, which needs instancesView)")
	passPath := fs.String("pass-path", "/assets/index.js", "public path (the web UI's files) the pass scenario sends without a token")
	jsonOut := fs.String("json", "", "write the report as JSON to this file")
	htmlOut := fs.String("html", "", "write the report as a self-contained HTML page to this file")
	quiet := fs.Bool("quiet", false, "no progress bar")
	procs := fs.Int("procs", 0, "GOMAXPROCS for the generator (0 leaves it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; flags only (see -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *n > 0 && !set["duration"] {
		*duration = 0
	}
	if *mintAs != "token" && *mintAs != "admin" {
		return fmt.Errorf("-mint-as %q: want token or admin", *mintAs)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	m, err := parseMix(*mix)
	if err != nil {
		return err
	}
	sc := scenarioConfig{ns: *ns, token: *token, adminToken: *admin, mintAs: *mintAs, upstreamKey: getenv("BENCH_UPSTREAM_KEY"),
		forwardPath: *forwardPath, passPath: *passPath, mix: m}
	base := *target
	if *scenario == "direct" {
		base = *upstream
	}
	if sc.needsToken(*scenario) && sc.token == "" {
		if sc.adminToken == "" {
			return fmt.Errorf("-scenario %s needs a minted token: pass -token, or -admin-token to mint one", *scenario)
		}
		if sc.token, err = mintCaller(ctx, *target, sc.adminToken, sc.ns); err != nil {
			return fmt.Errorf("minting the bench's caller token: %w", err)
		}
	}
	kinds, err := sc.kinds(*scenario)
	if err != nil {
		return err
	}
	spec := loadSpec{name: *scenario, scenario: *scenario, target: base, kinds: kinds, conns: *conns, rate: *rate,
		duration: *duration, n: *n, warmup: *warmup, timeout: *timeout}
	if !*quiet && isTerminal(stderr) {
		spec.progress = stderr
	}
	res, err := runLoad(ctx, spec)
	if err != nil {
		return err
	}
	rep := &report{Title: "direktiv-authz bench: " + *scenario, Created: time.Now(), Machine: machine(),
		Settings: []setting{{"command", "go run ./bench " + strings.Join(redactArgs(args), " ")}},
		Runs:     []runReport{newRunReport(res)}}
	if res.interrupted {
		rep.Notes = append(rep.Notes, "interrupted: the figures cover only the part that ran")
	}
	writeText(stdout, rep)
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, rep); err != nil {
			return err
		}
	}
	if *htmlOut != "" {
		if err := writeHTML(*htmlOut, rep); err != nil {
			return err
		}
	}
	if res.interrupted {
		return ctx.Err()
	}
	return nil
}

// redactArgs hides token values in the command line kept in reports.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	redactNext := false
	for i, a := range args {
		switch {
		case redactNext:
			out[i], redactNext = "REDACTED", false
		case strings.HasPrefix(a, "-token") || strings.HasPrefix(a, "--token") || strings.HasPrefix(a, "-admin-token") || strings.HasPrefix(a, "--admin-token"):
			if name, _, ok := strings.Cut(a, "="); ok {
				out[i] = name + "=REDACTED"
			} else {
				out[i], redactNext = a, true
			}
		default:
			out[i] = a
		}
	}
	return out
}
