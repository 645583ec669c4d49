package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/internal/credential"
	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// testAdminToken is the admin token the binary runs with.
const testAdminToken = "test-admin-token-0123456789"

// buildBinary builds the sidecar into a temporary directory of tb.
func buildBinary(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "direktiv-authz")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/direktiv/direktiv-authz/cmd/direktiv-authz").CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// sidecarProcess is the sidecar binary running in a process of its own.
type sidecarProcess struct {
	cmd           *exec.Cmd
	addr, opsAddr string
	exited        chan struct{}
	err           error // of Wait, once exited is closed

	mu     sync.Mutex
	stderr strings.Builder
}

// startBinary runs the built binary with args, the test admin token and
// --listen/--ops-listen on loopback ports it picks, and returns once both
// listeners are up.
func startBinary(tb testing.TB, args ...string) *sidecarProcess {
	tb.Helper()
	bin := buildBinary(tb)
	args = append([]string{"--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"}, args...)
	p := &sidecarProcess{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = []string{config.EnvAdminToken + "=" + testAdminToken}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	listening := make(chan [2]string, 1)
	read := make(chan struct{}) // stderr read to its end
	go func() {
		defer close(read)
		var main, ops string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			var m struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &m) != nil {
				continue
			}
			switch m.Msg {
			case "listening":
				main = m.Addr
			case "operations listener":
				ops = m.Addr
			}
			if main != "" && ops != "" {
				listening <- [2]string{main, ops}
				main = ""
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		// Wait closes the pipe: only after every line was read (the last
		// ones are written as the process exits).
		<-read
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if tb.Failed() {
			tb.Logf("sidecar log:\n%s", p.log())
		}
	})
	select {
	case a := <-listening:
		p.addr, p.opsAddr = a[0], a[1]
	case <-p.exited:
		tb.Fatalf("the sidecar exited at start-up: %v\n%s", p.err, p.log())
	case <-time.After(60 * time.Second):
		tb.Fatalf("the sidecar did not start listening\n%s", p.log())
	}
	return p
}

func (p *sidecarProcess) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// getAdmin sends a GET with the admin token.
func getAdmin(url string) (int, string, error) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set(credential.HeaderToken, testAdminToken)
	res, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// TestShutdownOnSIGTERM runs the real binary: on SIGTERM it reports not
// ready, refuses new connections, lets the request in flight finish, closes
// Redis and exits 0.
func TestShutdownOnSIGTERM(t *testing.T) {
	srv := testutil.StartRedis(t)
	up := testutil.StartUpstream(t)
	p := startBinary(t, "--redis-url", srv.URL(), "--upstream", up.URL(), "--shutdown-grace", "20s")
	if code, body, err := getAdmin("http://" + p.opsAddr + "/readyz"); err != nil || code != 200 {
		t.Fatalf("/readyz before: %d %q %v", code, body, err)
	}

	type result struct {
		code int
		body string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		code, body, err := getAdmin("http://" + p.addr + "/test/sleep?d=2s")
		inflight <- result{code, body, err}
	}()
	testutil.Eventually(t, "the slow request reaches the upstream", func() bool { return len(up.Requests()) == 1 })

	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "/readyz answers 503 shutting down", func() bool {
		code, body, _ := getAdmin("http://" + p.opsAddr + "/readyz")
		return code == http.StatusServiceUnavailable && body == "not ready: shutting down\n"
	})
	testutil.Eventually(t, "new connections are refused", func() bool {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case r := <-inflight:
		t.Fatalf("the request in flight ended before its time: %+v", r)
	default:
	}

	r := <-inflight
	if r.err != nil || r.code != http.StatusOK || !strings.Contains(r.body, `"slept":"2s"`) {
		t.Fatalf("the request in flight: %d %q %v", r.code, r.body, r.err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the sidecar did not exit after its last request")
	}
	if p.err != nil {
		t.Fatalf("exit: %v, want status 0", p.err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %s: it waited for more than the request in flight", took)
	}
	if !strings.Contains(p.log(), `"msg":"stopped"`) {
		t.Error("no \"stopped\" line in the log")
	}
}

// TestShutdownGraceOver: a request still running when --shutdown-grace ends
// is cut off, and the process still exits 0.
func TestShutdownGraceOver(t *testing.T) {
	srv := testutil.StartRedis(t)
	up := testutil.StartUpstream(t)
	p := startBinary(t, "--redis-url", srv.URL(), "--upstream", up.URL(), "--shutdown-grace", "300ms")
	inflight := make(chan error, 1)
	go func() {
		_, _, err := getAdmin("http://" + p.addr + "/test/sleep?d=30s")
		inflight <- err
	}()
	testutil.Eventually(t, "the slow request reaches the upstream", func() bool { return len(up.Requests()) == 1 })
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the sidecar did not exit after its grace period")
	}
	if p.err != nil {
		t.Fatalf("exit: %v, want status 0", p.err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("exit %s after SIGTERM, with a grace period of 300ms", took)
	}
	if err := <-inflight; err == nil {
		t.Error("the cut-off request got an answer")
	}
	if !strings.Contains(p.log(), "grace period over") {
		t.Error("the cut-off is not logged")
	}
}
