// Real redis-server processes for tests: a single server (StartRedis,
// StartRedisPersistent), a three-master Redis Cluster (StartRedisCluster),
// a master with replicas watched by three sentinels (StartRedisSentinel)
// and a server that also listens with TLS (StartRedisTLS). Each process
// listens on a free 127.0.0.1 port, keeps no data on disk (except
// StartRedisPersistent), lives in its own temporary directory and is
// killed when the test ends.
//
// Tests need redis-server 7.0 or later at /usr/bin/redis-server or on PATH;
// `make test` installs it (apt-get install redis-server).

package testutil

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer PING.
const redisStartTimeout = 15 * time.Second

// RedisServer is one redis-server process. Its methods may be called from any
// goroutine.
type RedisServer struct {
	bin   string
	dir   string
	port  int
	conf  string   // configuration file passed first, "" for none (sentinels need one)
	extra []string // mode-specific configuration, e.g. cluster mode

	mu   sync.Mutex
	proc *redisProcess // nil while stopped
}

type redisProcess struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
}

// StartRedis runs a standalone redis-server on a free port with persistence off
// (--save "" --appendonly no) and returns once it answers PING. The server
// is killed when tb's test ends. If redis-server cannot be found, StartRedis
// fails tb with a message saying how to install it.
func StartRedis(tb testing.TB) *RedisServer {
	tb.Helper()
	s := newRedisServer(tb, tb.TempDir(), nil)
	s.startOnFreePort(tb, func(int) []string { return nil })
	return s
}

// StartRedisPersistent is StartRedis with an append-only file written and
// fsynced before every reply (--appendonly yes --appendfsync always): a write
// the server acknowledged survives Stop (SIGKILL) and Restart, as on a Redis
// deployed with persistence. A script's writes are logged as one MULTI/EXEC
// block; a block cut short by the kill is dropped when the file is loaded.
func StartRedisPersistent(tb testing.TB) *RedisServer {
	tb.Helper()
	s := newRedisServer(tb, tb.TempDir(), nil)
	s.startOnFreePort(tb, func(int) []string {
		return []string{"--appendonly", "yes", "--appendfsync", "always"}
	})
	return s
}

// Addr returns the server's host:port.
func (s *RedisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the server's TCP port.
func (s *RedisServer) Port() int { return s.port }

// URL returns redis://127.0.0.1:PORT/0.
func (s *RedisServer) URL() string { return "redis://" + s.Addr() + "/0" }

// Stop kills the server at once, as a crash would (SIGKILL), and waits for
// it to exit. Its data is lost. Stopping a stopped server does nothing.
func (s *RedisServer) Stop(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kill()
}

// Pause freezes the server (SIGSTOP): connections still open, commands are
// accepted by the kernel but get no answer, as with a hung or overloaded
// Redis. Resume lets it run on and answer what it received.
func (s *RedisServer) Pause(tb testing.TB) {
	tb.Helper()
	s.signal(tb, redisStopSignal)
}

// Resume continues a paused server (SIGCONT).
func (s *RedisServer) Resume(tb testing.TB) {
	tb.Helper()
	s.signal(tb, redisContSignal)
}

func (s *RedisServer) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		tb.Fatalf("testutil: redis-server on port %d is not running", s.port)
	}
	if err := s.proc.cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("testutil: sending %s to redis-server: %v", sig, err)
	}
}

// Restart starts the server again on the same port (and directory) and waits
// until it answers PING. A running server is stopped first.
func (s *RedisServer) Restart(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kill()
	var err error
	// The port was free a moment ago; give the kernel a few tries in case
	// the old listener is still being torn down.
	for attempt := 0; attempt < 20; attempt++ {
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("testutil: restarting redis-server on port %d: %v\n%s", s.port, err, s.logTail())
}

func newRedisServer(tb testing.TB, dir string, extra []string) *RedisServer {
	tb.Helper()
	return &RedisServer{bin: findRedisServer(tb), dir: dir, extra: extra}
}

// startOnFreePort starts s on a free port, retrying with another port if
// one is taken between choosing and binding it. extra gives mode-specific
// arguments for the chosen port.
func (s *RedisServer) startOnFreePort(tb testing.TB, extra func(port int) []string) {
	tb.Helper()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		s.port = freePort(tb)
		s.extra = extra(s.port)
		s.mu.Lock()
		err = s.launch()
		s.mu.Unlock()
		if err == nil {
			tb.Cleanup(func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.kill()
				if tb.Failed() {
					tb.Logf("testutil: log of redis-server on port %d:\n%s", s.port, s.logTail())
				}
			})
			return
		}
	}
	tb.Fatalf("testutil: starting redis-server: %v\n%s", err, s.logTail())
}

func (s *RedisServer) logPath() string { return filepath.Join(s.dir, "redis.log") }

// launch starts the process on s.port and waits for PING. s.mu must be held.
func (s *RedisServer) launch() error {
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", s.logPath(),
		"--daemonize", "no",
	)
	args = append(args, s.extra...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running %s: %w", s.bin, err)
	}
	p := &redisProcess{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	s.proc = p

	deadline := time.Now().Add(redisStartTimeout)
	for {
		select {
		case <-p.exited:
			s.proc = nil
			return fmt.Errorf("redis-server on port %d exited during start-up", s.port)
		default:
		}
		if pingRedis(s.Addr()) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server on port %d did not answer PING within %s", s.port, redisStartTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill stops the process if it runs. s.mu must be held.
func (s *RedisServer) kill() {
	if s.proc == nil {
		return
	}
	_ = s.proc.cmd.Process.Kill()
	<-s.proc.exited
	s.proc = nil
}

// logTail returns the last lines of the server's log, for failure messages.
func (s *RedisServer) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return "(no redis-server log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// pingRedis sends PING and expects +PONG.
func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return err
	}
	if !bytes.Equal(line, []byte("+PONG\r\n")) {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// findRedisServer returns the redis-server to run: /usr/bin/redis-server, else
// the one on PATH.
func findRedisServer(tb testing.TB) string {
	tb.Helper()
	const standard = "/usr/bin/redis-server"
	if st, err := os.Stat(standard); err == nil && !st.IsDir() {
		return standard
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			tb.Fatalf("testutil: redis-server not found at %s or on PATH; `make test` installs it (apt-get install redis-server)", standard)
		}
		tb.Fatalf("testutil: looking for redis-server: %v; `make test` installs it (apt-get install redis-server)", err)
	}
	return p
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testutil: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
