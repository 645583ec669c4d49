//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// proc is a server the compare run started: its own process group, so that
// stopping it stops its children too (nginx's workers), and its output in
// a log file in the run's temporary directory.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// procs tracks every server the compare run starts, to stop them all.
type procs struct {
	dir  string
	list []*proc
}

// start runs path with args and env, output to <dir>/<name>.log.
func (ps *procs) start(name string, env []string, path string, args ...string) (*proc, error) {
	logPath := filepath.Join(ps.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = ps.dir
	// Its own process group; killed with us if we die without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	ps.list = append(ps.list, p)
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop ends the process group: SIGTERM, then SIGKILL after a grace period.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(2 * time.Second):
		}
	}
	// Anything of the group that outlived its leader (an nginx worker).
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// stopAll stops every process, the last started first.
func (ps *procs) stopAll() {
	for i := len(ps.list) - 1; i >= 0; i-- {
		ps.list[i].stop(5 * time.Second)
	}
	ps.list = nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls until probe succeeds, the process exits, or the timeout
// passes. probe is a TCP connect plus one request.
func waitReady(ctx context.Context, p *proc, timeout time.Duration, probe func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		if p.exited() {
			return fmt.Errorf("%s exited during start-up (%v); its log ends:\n%s", p.name, p.err, p.tail(15))
		}
		if last = probe(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %v: %v; its log ends:\n%s", p.name, timeout, last, p.tail(15))
}

// probeHTTP connects and sends one GET; any HTTP answer is success.
func probeHTTP(base, path string) func() error {
	return func() error {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(base + path)
		return fasthttp.DoTimeout(req, resp, time.Second)
	}
}

// probeRedis connects and expects PONG to PING.
func probeRedis(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+PONG") {
			return fmt.Errorf("redis answered %q to PING", strings.TrimSpace(line))
		}
		return nil
	}
}

// getStatus sends one request and returns its status and body.
func getStatus(base, path, token string) (int, string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(base + path)
	if token != "" {
		req.Header.Set(headerToken, token)
	}
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		return 0, "", err
	}
	return resp.StatusCode(), strings.TrimSpace(string(bytes.Clone(resp.Body()))), nil
}

// cleanEnv is the environment for the servers: ours, without any
// DIREKTIV_AUTHZ_* (the sidecar refuses unknown ones) or GOMAXPROCS (each
// server uses every core, as in production), plus extra.
func cleanEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DIREKTIV_AUTHZ_") || strings.HasPrefix(kv, "GOMAXPROCS=") || strings.HasPrefix(kv, "BENCH_") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

// commandOutput runs a short command and returns its combined output.
func commandOutput(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%s did not finish within %v", name, timeout)
	}
	return string(out), err
}

// buildSidecar returns bin, or builds the sidecar into the processes'
// directory when bin is "".
func (ps *procs) buildSidecar(ctx context.Context, bin string, logf func(string, ...any)) (string, error) {
	if bin != "" {
		return bin, nil
	}
	bin = filepath.Join(ps.dir, "direktiv-authz")
	logf("building the sidecar: go build -o %s ./cmd/direktiv-authz", bin)
	if out, err := commandOutput(ctx, 5*time.Minute, "go", "build", "-o", bin, "./cmd/direktiv-authz"); err != nil {
		return "", fmt.Errorf("building the sidecar failed (%v):\n%s", err, out)
	}
	return bin, nil
}

// startRedis runs redis-server on a free loopback port, without
// persistence, with extra arguments, and waits until it answers. It returns
// the port and the server's version line.
func (ps *procs) startRedis(ctx context.Context, extra ...string) (port int, version string, err error) {
	redisServer, err := exec.LookPath("redis-server")
	if err != nil {
		return 0, "", errors.New("redis-server is not installed: run `make redis-server` (Debian: apt-get install redis-server)")
	}
	if port, err = freePort(); err != nil {
		return 0, "", err
	}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", ps.dir, "--protected-mode", "yes"}, extra...)
	rp, err := ps.start("redis", cleanEnv(), redisServer, args...)
	if err != nil {
		return 0, "", err
	}
	if err := waitReady(ctx, rp, 10*time.Second, probeRedis(fmt.Sprintf("127.0.0.1:%d", port))); err != nil {
		return 0, "", err
	}
	if v, err := commandOutput(ctx, 5*time.Second, redisServer, "--version"); err == nil {
		version = strings.TrimSpace(v)
	}
	return port, version, nil
}

// startStub runs this program's stub upstream on a free loopback port,
// accepting key ("" for any request), and returns its base URL.
func (ps *procs) startStub(ctx context.Context, key string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	env := cleanEnv()
	if key != "" {
		env = append(env, "BENCH_STUB_KEY="+key)
	}
	sp, err := ps.start("stub", env, self, "stub", "-listen", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return "", err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	return base, waitReady(ctx, sp, 10*time.Second, probeHTTP(base, "/"))
}

// cpuGroups is every server started that still runs (each in its own
// process group) and the generator, this process.
func (ps *procs) cpuGroups() []cpuGroup {
	groups := []cpuGroup{{name: "generator"}}
	for _, p := range ps.list {
		if p.cmd.Process != nil && !p.exited() {
			groups = append(groups, cpuGroup{name: p.name, pgid: p.cmd.Process.Pid})
		}
	}
	return groups
}
