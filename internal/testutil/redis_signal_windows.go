package testutil

import "syscall"

// Windows has no SIGSTOP: Pause and Resume fail the test there (signal
// reports the error os.Process.Signal gives).
const (
	redisStopSignal = syscall.Signal(0x13)
	redisContSignal = syscall.Signal(0x12)
)
