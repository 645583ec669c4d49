//go:build linux

package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// stubBody is what the stub upstream answers every request with: a small
// JSON document shaped like Direktiv's instance list.
var stubBody = []byte(`{"namespace":"bench","instances":{"pageInfo":{"total":0,"limit":0,"offset":0},"results":[]}}` + "\n")

// stub is a fast stand-in for the Direktiv API: it answers every request
// with 200 and stubBody after the least work fasthttp allows. Direct runs,
// nginx and the sidecar all hit the same stub, so the only difference
// between them is what sits in front of it.
//
// With a key it plays Direktiv's API-key check on the header Direktiv reads
// it from (Direktiv-Api-Key): a request carrying any other value (a minted token the
// sidecar failed to replace, say) gets 401. A request with no token passes,
// as the sidecar forwards public routes (the web UI's files) without one. GET
// /_bench/stats answers the counters, which the compare run reads to check
// that the sidecar sent the key.
type stub struct {
	key      []byte
	requests atomic.Int64
	withKey  atomic.Int64
	noToken  atomic.Int64
	rejected atomic.Int64
	server   *fasthttp.Server
}

// stubStats is the answer of GET /_bench/stats.
type stubStats struct {
	Requests int64 `json:"requests"`
	WithKey  int64 `json:"with_key"`
	NoToken  int64 `json:"no_token"`
	Rejected int64 `json:"rejected"`
}

func newStub(key string) *stub {
	s := &stub{key: []byte(key)}
	s.server = &fasthttp.Server{
		Handler:               s.handle,
		Name:                  "bench-stub",
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		ReadTimeout:           time.Minute,
		IdleTimeout:           time.Minute,
		Concurrency:           64 << 10,
		CloseOnShutdown:       true,
	}
	return s
}

func (s *stub) handle(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) == "/_bench/stats" { // not counted
		b, _ := json.Marshal(s.stats())
		ctx.SetContentType("application/json")
		ctx.SetBody(b)
		return
	}
	if len(s.key) > 0 {
		tok := ctx.Request.Header.Peek(headerToken)
		switch {
		case len(tok) == 0:
			s.noToken.Add(1)
		case subtle.ConstantTimeCompare(tok, s.key) == 1:
			s.withKey.Add(1)
		default:
			s.requests.Add(1)
			s.rejected.Add(1)
			ctx.SetStatusCode(fasthttp.StatusUnauthorized)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"code":401,"message":"stub: this Direktiv-Api-Key is not the upstream API key"}` + "\n")
			return
		}
	}
	s.requests.Add(1)
	ctx.SetContentType("application/json")
	ctx.SetBody(stubBody)
}

func (s *stub) stats() stubStats {
	return stubStats{Requests: s.requests.Load(), WithKey: s.withKey.Load(), NoToken: s.noToken.Load(), Rejected: s.rejected.Load()}
}

// serve answers on ln until ctx is done.
func (s *stub) serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.server.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.server.ShutdownWithContext(shutdown)
}

// runStub is the "stub" subcommand: a standalone stub upstream for the
// compare run and for pointing a sidecar at by hand. The key comes from the
// environment (BENCH_STUB_KEY), never a flag, as it is a secret.
func runStub(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench stub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve on (loopback only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("stub: unexpected argument %q", fs.Arg(0))
	}
	if err := requireLoopback(*listen); err != nil {
		return fmt.Errorf("stub: -listen: %w", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("stub: %w", err)
	}
	s := newStub(getenv("BENCH_STUB_KEY"))
	fmt.Fprintf(stdout, "stub upstream listening on %s\n", ln.Addr())
	err = s.serve(ctx, ln)
	st := s.stats()
	fmt.Fprintf(stdout, "stub upstream: %d requests: %d with the key, %d without a token, %d rejected for another token\n", st.Requests, st.WithKey, st.NoToken, st.Rejected)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// requireLoopback refuses an address whose host is not a loopback IP or
// "localhost": the bench loads only this machine.
func requireLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", hostport, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address; the bench only loads 127.0.0.1/::1/localhost", hostport)
	}
	return nil
}
