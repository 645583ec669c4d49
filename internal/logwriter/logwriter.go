// Package logwriter gathers the lines many goroutines write (log and audit
// lines) into few writes of the output, in order per writer. It imports
// nothing of the project.
package logwriter

import (
	"io"
	"sync"
	"time"
)

// Writer is the sidecar's output for log and audit lines (stderr). A
// line is copied into a buffer and the caller goes on; one goroutine writes
// whatever has gathered with one system call, so under load many lines
// share a write instead of each mint paying for its own (measured in
// bench/RESULTS.md). Once woken, the goroutine lets lines gather for
// gatherFor before it writes, unless plenty are waiting already: waking it
// costs the writer of the line a thread wake-up, which under load cost more
// than the lines' write itself. A line is thus written within about a
// millisecond.
//
// What this trades: a line is in the process, not yet in the kernel, for
// that moment. Close (called at the end of every shutdown, SIGTERM
// included) writes everything; a kill -9 or a crash of the runtime loses
// the lines of the requests answered in the last instant. The synchronous
// writer it replaces had the same kind of window between the Redis write
// and the line, only shorter.
//
// Lines are never dropped and memory stays bounded: when maxLogBuffer bytes
// are waiting (stderr blocked by a slow reader), Write waits.
type Writer struct {
	out io.Writer

	mu       sync.Mutex
	room     sync.Cond // signalled when the buffer has been taken
	buf      []byte    // lines waiting, whole lines only
	spare    []byte    // the buffer last written, reused
	writing  bool      // the goroutine holds a buffer being written
	closed   bool
	flushing int // Flush calls waiting: write without gathering

	wake chan struct{} // capacity 1: there is something to write
	done chan struct{} // closed when the goroutine has returned
}

// maxLogBuffer is how many bytes of lines may wait before Write blocks.
const maxLogBuffer = 1 << 20

// gatherFor is how long a woken writer lets lines gather, and gatherBytes
// how many waiting bytes make it write at once.
const (
	gatherFor   = time.Millisecond
	gatherBytes = 64 << 10
)

// New returns a Writer of out and starts its goroutine; Close stops it.
func New(out io.Writer) *Writer {
	w := &Writer{out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.room.L = &w.mu
	go w.loop()
	return w
}

// Write queues p, which slog hands over as one whole line. After Close it
// writes p directly.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	for len(w.buf) >= maxLogBuffer && !w.closed {
		w.room.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		<-w.done // the last queued lines go first
		return w.out.Write(p)
	}
	w.buf = append(w.buf, p...)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // already woken; it takes this line with the others
	}
	return len(p), nil
}

func (w *Writer) loop() {
	defer close(w.done)
	for {
		<-w.wake
		w.mu.Lock()
		if !w.closed && len(w.buf) < gatherBytes && w.flushing == 0 {
			w.mu.Unlock()
			time.Sleep(gatherFor)
			w.mu.Lock()
		}
		b := w.buf
		w.buf, w.spare = w.spare[:0], nil
		closed := w.closed
		w.writing = len(b) > 0
		w.room.Broadcast()
		w.mu.Unlock()
		if len(b) > 0 {
			// An error (stderr closed) cannot be reported anywhere better.
			_, _ = w.out.Write(b)
		}
		w.mu.Lock()
		if cap(b) <= maxLogBuffer*2 {
			w.spare = b[:0]
		}
		w.writing = false
		w.room.Broadcast()
		w.mu.Unlock()
		if closed {
			return
		}
	}
}

// Flush waits until every line queued before it has been written.
func (w *Writer) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushing++
	defer func() { w.flushing-- }()
	for (len(w.buf) > 0 || w.writing) && !w.closed {
		select {
		case w.wake <- struct{}{}:
		default:
		}
		w.room.Wait()
	}
}

// Close writes every queued line and stops the goroutine; later lines are
// written directly. It is safe to call more than once.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return nil
	}
	w.closed = true
	w.room.Broadcast()
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
	return nil
}
