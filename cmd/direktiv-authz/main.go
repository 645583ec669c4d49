// Command direktiv-authz is the authorization sidecar for the Direktiv
// workflow engine: it mints namespace access tokens under Rego rules, keeps
// them in Redis and enforces them on the requests it forwards to Direktiv.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "direktiv-authz:", err)
		os.Exit(1)
	}
}
