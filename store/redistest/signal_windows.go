package redistest

import "syscall"

// Windows has no SIGSTOP: Pause and Resume fail the test there (signal
// reports the error os.Process.Signal gives).
const (
	stopSignal = syscall.Signal(0x13)
	contSignal = syscall.Signal(0x12)
)
