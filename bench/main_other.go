//go:build !linux

// Command bench is direktiv-authz's load generator and benchmark suite. It
// measures epoll relays, reads /proc and drives nginx and redis-server:
// it runs on Linux only. See bench/README.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: the bench suite runs on Linux only (epoll relays, /proc, nginx)")
	os.Exit(1)
}
