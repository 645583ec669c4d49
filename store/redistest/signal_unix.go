//go:build unix

package redistest

import "syscall"

// The signals Pause and Resume send.
const (
	stopSignal = syscall.SIGSTOP
	contSignal = syscall.SIGCONT
)
