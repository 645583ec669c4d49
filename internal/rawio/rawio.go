// Package rawio holds the system calls an event loop makes most: read(2),
// write(2) and a non-blocking epoll_wait(2), made without the runtime's
// system-call bookkeeping. On a non-blocking socket they never block, and
// telling the scheduler about each of them costs more than they do. The
// sidecar's event loops (internal/relay) and the bench's floor relay use
// them.
package rawio

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read is read(2); the count is valid only when the errno is 0.
func Read(fd int, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(r), e
}

// Write is write(2); the count is valid only when the errno is 0.
func Write(fd int, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(r), e
}

// EpollPoll is epoll_wait(2) with a timeout of 0: it never blocks.
func EpollPoll(ep int, events []unix.EpollEvent) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
