// Package rawio holds the system calls an event loop makes most: read(2),
// write(2) and a non-blocking epoll_wait(2), made without the runtime's
// system-call bookkeeping. On a non-blocking socket they never block, and
// telling the scheduler about each of them costs more than they do. The
// sidecar's event loops (internal/relay) and the bench's floor relay use
// them. Linux only, as epoll is.
package rawio
