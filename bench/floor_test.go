//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startFloor runs a floor relay with two loops in front of upstream until
// the test ends. It returns the relay, its address, and a stop that cancels
// it and returns what serve returned.
func startFloor(tb testing.TB, upstream string) (*floor, string, func() error) {
	tb.Helper()
	ln := floorListen(tb)
	f, err := newFloor(ln, upstream, 2)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.serve(ctx) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(5 * time.Second):
				serveErr = errors.New("serve did not return within 5s of the cancel")
			}
		})
		return serveErr
	}
	tb.Cleanup(func() {
		if err := stop(); err != nil {
			tb.Error(err)
		}
	})
	return f, ln.Addr().String(), stop
}

// floorListen listens on a free loopback port until the test ends.
func floorListen(tb testing.TB) *net.TCPListener {
	tb.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

// floorAccept takes the next connection on ln, closed when the test ends.
func floorAccept(tb testing.TB, ln *net.TCPListener) *net.TCPConn {
	tb.Helper()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.AcceptTCP()
	if err != nil {
		tb.Fatalf("the upstream got no connection: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tb.Cleanup(func() { c.Close() })
	return c
}

// floorDial connects to addr, closed when the test ends.
func floorDial(tb testing.TB, addr string) *net.TCPConn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tb.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// floorEcho answers every connection with what it sends, and shuts its
// side down after the client's EOF. Its sockets' buffers are small, so
// that a slow client soon makes the relay hold back.
func floorEcho(tb testing.TB) string {
	tb.Helper()
	ln := floorListen(tb)
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetReadBuffer(32 << 10)
				c.SetWriteBuffer(32 << 10)
				buf := make([]byte, 8<<10)
				for {
					n, err := c.Read(buf)
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
					if err != nil {
						c.CloseWrite()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// floorGets sends n GETs with the key "the-key" one after another on one
// connection to addr and checks that each gets the stub's answer.
func floorGets(addr string, n int) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	const req = "GET /api/v2/namespaces/bench/instances HTTP/1.1\r\nHost: bench\r\n" + headerToken + ": the-key\r\n\r\n"
	for i := range n {
		if _, err := io.WriteString(conn, req); err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("response %d: %w", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("response %d: %w", i, err)
		}
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, stubBody) || resp.Close {
			return fmt.Errorf("response %d: HTTP %d, close %t, body %q; want 200, keep-alive, %q", i, resp.StatusCode, resp.Close, body, stubBody)
		}
	}
	return nil
}

// floorClosed reports whether err is what reading a connection its peer
// closed returns: EOF, or a reset when bytes were left unread.
func floorClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func TestFloorRelaysHTTPToTheStub(t *testing.T) {
	st, base := startStub(t, "the-key")
	_, addr, _ := startFloor(t, strings.TrimPrefix(base, "http://"))
	const keepAlive, conns, perConn = 100, 20, 5
	if err := floorGets(addr, keepAlive); err != nil {
		t.Fatalf("keep-alive connection: %v", err)
	}
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() { errs <- floorGets(addr, perConn) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent connection: %v", err)
		}
	}
	want := stubStats{Requests: keepAlive + conns*perConn, WithKey: keepAlive + conns*perConn}
	if got := st.stats(); got != want {
		t.Errorf("the stub counted %+v, want %+v", got, want)
	}
}

func TestFloorRelaysALargeTransferBothWays(t *testing.T) {
	f, addr, _ := startFloor(t, floorEcho(t))
	client := floorDial(t, addr)
	client.SetDeadline(time.Now().Add(30 * time.Second))
	client.SetReadBuffer(32 << 10)
	sent := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{7}).Read(sent)
	werr := make(chan error, 1)
	go func() {
		_, err := client.Write(sent)
		if err == nil {
			err = client.CloseWrite()
		}
		werr <- err
	}()
	// Not reading for a while fills every buffer on the way, both ways:
	// the relay must hold back rather than buffer the rest.
	time.Sleep(300 * time.Millisecond)
	got := make([]byte, 0, len(sent))
	buf := make([]byte, 4<<10)
	for {
		n, err := client.Read(buf)
		got = append(got, buf[:n]...)
		if len(got)%(256<<10) < n {
			time.Sleep(2 * time.Millisecond)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading after %d bytes: %v", len(got), err)
		}
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if !bytes.Equal(got, sent) {
		i := 0
		for i < min(len(got), len(sent)) && got[i] == sent[i] {
			i++
		}
		t.Fatalf("got %d bytes back, first difference at %d; sent %d", len(got), i, len(sent))
	}
	if f.stalls.Load() == 0 {
		t.Error("no write had to wait: the test did not exercise back-pressure")
	}
}

func TestFloorSteadyPathDoesNotAllocate(t *testing.T) {
	_, addr, _ := startFloor(t, floorEcho(t))
	client := floorDial(t, addr)
	msg, buf := make([]byte, 1000), make([]byte, 1000)
	roundTrips := func(n int) {
		for range n {
			if _, err := client.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(client, buf); err != nil {
				t.Fatal(err)
			}
		}
	}
	roundTrips(100) // the connection's first use may allocate
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 5000
	roundTrips(n)
	runtime.ReadMemStats(&after)
	// Counted over the whole process (the echo upstream and this client
	// too): an allocation per read or write would be 4 per round trip.
	if got := after.Mallocs - before.Mallocs; got > n/100 {
		t.Errorf("%d allocations over %d round trips through the floor, want next to none", got, n)
	}
}

func TestFloorPassesClosesOn(t *testing.T) {
	up := floorListen(t)
	_, addr, _ := startFloor(t, up.Addr().String())
	t.Run("client close reaches the upstream", func(t *testing.T) {
		client := floorDial(t, addr)
		server := floorAccept(t, up)
		io.WriteString(client, "hello")
		client.Close()
		if got, err := io.ReadAll(server); err != nil || string(got) != "hello" {
			t.Errorf("the upstream read %q, %v; want %q and EOF", got, err, "hello")
		}
	})
	t.Run("upstream close reaches the client", func(t *testing.T) {
		client := floorDial(t, addr)
		server := floorAccept(t, up)
		io.WriteString(server, "bye")
		server.Close()
		if got, err := io.ReadAll(client); err != nil || string(got) != "bye" {
			t.Errorf("the client read %q, %v; want %q and EOF", got, err, "bye")
		}
	})
	t.Run("client half-close, upstream answers", func(t *testing.T) {
		client := floorDial(t, addr)
		server := floorAccept(t, up)
		io.WriteString(client, "question")
		if err := client.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(server); err != nil || string(got) != "question" {
			t.Fatalf("the upstream read %q, %v; want %q and EOF", got, err, "question")
		}
		if _, err := io.WriteString(server, "answer"); err != nil {
			t.Fatalf("the upstream could not answer after the half-close: %v", err)
		}
		server.Close()
		if got, err := io.ReadAll(client); err != nil || string(got) != "answer" {
			t.Errorf("the client read %q, %v; want %q and EOF", got, err, "answer")
		}
	})
}

func TestFloorClosesTheClientWhenTheUpstreamRefuses(t *testing.T) {
	ln := floorListen(t)
	refusing := ln.Addr().String()
	ln.Close()
	_, addr, _ := startFloor(t, refusing)
	client := floorDial(t, addr)
	client.SetDeadline(time.Now().Add(2 * time.Second))
	// The client sends nothing: only the refusal can end its connection.
	n, err := client.Read(make([]byte, 64))
	if n != 0 || !floorClosed(err) {
		t.Errorf("the client read %d bytes, %v; want its connection closed", n, err)
	}
}

// floorFDsTo counts this process's file descriptors that are links to target
// (a socket:[inode] or an anon_inode:[...]).
func floorFDsTo(tb testing.TB, target string) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == target {
			n++
		}
	}
	return n
}

func TestFloorServeClosesEverythingOnCancel(t *testing.T) {
	upstream := floorEcho(t)
	ln := floorListen(t)
	var lnLink string
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { lnLink, err = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)) })
	if err != nil {
		t.Fatal(err)
	}
	targets := []string{lnLink, "anon_inode:[eventpoll]", "anon_inode:[eventfd]"}
	before := make([]int, len(targets))
	for i, tg := range targets {
		before[i] = floorFDsTo(t, tg)
	}

	f, err := newFloor(ln, upstream, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, tg := range targets {
		if got := floorFDsTo(t, tg); got != before[i]+[]int{1, 2, 2}[i] {
			t.Errorf("with the floor ready, %d fds link to %s, want %d more than %d", got, tg, []int{1, 2, 2}[i], before[i])
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.serve(ctx) }()
	var clients []*net.TCPConn
	for range 3 {
		c := floorDial(t, ln.Addr().String())
		io.WriteString(c, "ping")
		if got, err := io.ReadAll(io.LimitReader(c, 4)); err != nil || string(got) != "ping" {
			t.Fatalf("echo through the floor: %q, %v", got, err)
		}
		clients = append(clients, c)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v after the cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return within 5s of the cancel")
	}
	for i, c := range clients {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(make([]byte, 8)); n != 0 || !floorClosed(err) {
			t.Errorf("client %d read %d bytes, %v after the cancel; want its connection closed", i, n, err)
		}
	}
	for i, tg := range targets {
		if got := floorFDsTo(t, tg); got != before[i] {
			t.Errorf("after serve, %d fds link to %s, want %d as before the floor", got, tg, before[i])
		}
	}
}

func TestRunFloorRejectsBadFlags(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, tt := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"-listen", "192.0.2.1:8081"}, "-listen"},
		{[]string{"-listen", "localhost"}, "-listen"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "10.0.0.1:8080"}, "-upstream"},
		{[]string{"-listen", "127.0.0.1:0", "-upstream", "example.com:80"}, "-upstream"},
		{[]string{"-listen", "127.0.0.1:0", "-loops", "0"}, "-loops"},
		{[]string{"-listen", "127.0.0.1:0", "stray"}, `"stray"`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			// Cancelled: a run that wrongly started returns nil at once.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var out strings.Builder
			err := runFloor(ctx, tt.args, getenv, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("runFloor returned %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestRunFloorRelaysUntilCancelled(t *testing.T) {
	st, base := startStub(t, "the-key")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		args := []string{"-listen", "127.0.0.1:0", "-upstream", strings.TrimPrefix(base, "http://"), "-loops", "1"}
		done <- runFloor(ctx, args, func(string) string { return "" }, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	addr, ok := strings.CutPrefix(line, "floor relay listening on ")
	if err != nil || !ok {
		cancel()
		t.Fatalf("runFloor printed %q (%v), then returned %v; want %q", line, err, <-done, "floor relay listening on <addr>\n")
	}
	if err := floorGets(strings.TrimSuffix(addr, "\n"), 3); err != nil {
		t.Error(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runFloor returned %v after the cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("runFloor did not return within 5s of the cancel")
	}
	if got := st.stats().WithKey; got != 3 {
		t.Errorf("the stub counted %d requests with the key, want 3", got)
	}
}

// TestFloorPassesOnAnAnswerBeforeAReset: an upstream that answers and
// closes with part of the request unread resets the connection; the answer
// it wrote before must still reach the client (the reset's EPOLLERR can
// come in the same event as the data).
func TestFloorPassesOnAnAnswerBeforeAReset(t *testing.T) {
	up := floorListen(t)
	_, addr, _ := startFloor(t, up.Addr().String())
	const rounds = 50
	lost := 0
	for range rounds {
		client := floorDial(t, addr)
		server := floorAccept(t, up)
		io.WriteString(client, "question and more the upstream never reads")
		buf := make([]byte, len("question"))
		if _, err := io.ReadFull(server, buf); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // the rest is in the upstream's buffer, unread
		io.WriteString(server, "answer")
		server.Close() // unread data: a reset
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(client) // EOF or the reset passed on
		if string(got) != "answer" {
			lost++
		}
		client.Close()
	}
	if lost > 0 {
		t.Errorf("%d of %d answers written before a reset did not reach the client", lost, rounds)
	}
}
