//go:build unix

package testutil

import "syscall"

// The signals Pause and Resume send.
const (
	redisStopSignal = syscall.SIGSTOP
	redisContSignal = syscall.SIGCONT
)
