// Command direktiv-authz is the authorization sidecar for the Direktiv
// workflow engine: it mints namespace access tokens under Rego rules, keeps
// them in Redis and enforces them on the requests it forwards to Direktiv.
//
// main reads the settings (internal/config) and runs the sidecar
// (internal/sidecar) until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/internal/sidecar"
)

// defaultGCPercent is the garbage collector's target unless GOGC is set:
// the sidecar's live heap is small (the token cache, the compiled rules),
// and collecting it four times less often than Go's default of 100 cut the
// CPU of a mint (bench/RESULTS.md), for a heap that may grow to five times
// the live one. GOGC and GOMEMLIMIT
// work as usual.
const defaultGCPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.Parse(os.Args[1:], os.Environ(), os.Stderr)
	if errors.Is(err, config.ErrHelp) {
		return
	}
	if err == nil {
		err = sidecar.Run(ctx, cfg, os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "direktiv-authz:", err)
		os.Exit(1)
	}
}
