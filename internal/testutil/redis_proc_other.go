//go:build !linux

package testutil

import "syscall"

// sysProcAttr: outside Linux there is no parent-death signal; a test binary
// that dies without running its cleanups leaves redis-server running.
func sysProcAttr() *syscall.SysProcAttr { return nil }
