//go:build linux

package relay

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// Handing connections off to the server: what the relay does not take on.

func TestHandoff(t *testing.T) {
	overMax := strings.Repeat("x", 100<<10) // over MaxBody
	bigHeader := strings.Repeat("h", 6000)  // a head over 4 KiB
	tests := []struct {
		name    string
		decide  func(r *Request) Verdict
		parts   []string // written in turn; after the first, once the relay has handed off
		method  string
		uri     string
		te      []string
		body    string
		headers map[string]string
		interim bool // the server answers 100 Continue first
	}{
		{
			name:   "chunked body",
			parts:  []string{"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"},
			method: "POST", uri: "/upload", te: []string{"chunked"}, body: "hello world",
		},
		{
			name:   "chunked body sent after the head",
			parts:  []string{"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"},
			method: "POST", uri: "/upload", te: []string{"chunked"}, body: "hello world",
		},
		{
			name: "Handoff verdict",
			decide: func(r *Request) Verdict {
				if bytes.HasPrefix(r.Target, []byte("/handoff/")) {
					return Verdict{Action: Handoff}
				}
				return Verdict{Action: Forward}
			},
			parts:  []string{"PATCH /handoff/x?y=z HTTP/1.1\r\nHost: h\r\nDirektiv-Token: secret\r\nX-Forwarded-For: 9.9.9.9\r\nX-Custom: v\r\nContent-Length: 3\r\n\r\nabc"},
			method: "PATCH", uri: "/handoff/x?y=z", body: "abc",
			headers: map[string]string{"Direktiv-Token": "secret", "X-Forwarded-For": "9.9.9.9", "X-Custom": "v"},
		},
		{
			name:   "head over 4 KiB",
			parts:  []string{"GET /bighead HTTP/1.1\r\nHost: h\r\nX-Big: " + bigHeader + "\r\n\r\n"},
			method: "GET", uri: "/bighead",
			headers: map[string]string{"X-Big": bigHeader},
		},
		{
			name:   "body over MaxBody",
			parts:  []string{"POST /bigbody HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(len(overMax)) + "\r\n\r\n" + overMax},
			method: "POST", uri: "/bigbody", body: overMax,
		},
		{
			name:   "Expect",
			parts:  []string{"PUT /expect HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"},
			method: "PUT", uri: "/expect", body: "ok", interim: true,
		},
		{
			name:   "Connection naming a header",
			parts:  []string{"GET /conn HTTP/1.1\r\nHost: h\r\nConnection: X-Secret\r\nX-Secret: s\r\n\r\n"},
			method: "GET", uri: "/conn",
		},
		{
			name:   "obs-fold",
			parts:  []string{"GET /fold HTTP/1.1\r\nHost: h\r\nX-Fold: a\r\n b\r\n\r\n"},
			method: "GET", uri: "/fold",
			headers: map[string]string{"X-Fold": "a b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, setup{decide: tt.decide})
			c := e.dial(t)
			for i, p := range tt.parts {
				if i > 0 {
					testutil.Eventually(t, "the handoff", func() bool { return e.ho.handed.Load() == 1 })
				}
				c.send(p)
			}
			if tt.interim {
				resp, body := c.response(tt.method)
				expectStatus(t, resp, body, 100, "")
			}
			resp, body := c.response(tt.method)
			expectStatus(t, resp, body, 299, "handed off")
			// The connection is the server's from now on.
			resp, body = c.get("/later")
			expectStatus(t, resp, body, 299, "handed off")
			reqs := e.ho.requests()
			if len(reqs) != 2 {
				t.Fatalf("the handoff server got %d requests", len(reqs))
			}
			got := reqs[0]
			if got.Method != tt.method || got.URI != tt.uri || got.Body != tt.body || !slices.Equal(got.TransferEncoding, tt.te) {
				t.Fatalf("the handoff server got %s %s te %q body of %d bytes, want %s %s te %q body of %d bytes",
					got.Method, got.URI, got.TransferEncoding, len(got.Body), tt.method, tt.uri, tt.te, len(tt.body))
			}
			for h, v := range tt.headers {
				if got := got.Header.Get(h); got != v {
					t.Errorf("%s: %d bytes %.40q, want %d bytes %.40q", h, len(got), got, len(v), v)
				}
			}
			if reqs[1].Method != "GET" || reqs[1].URI != "/later" {
				t.Fatalf("second request %s %s", reqs[1].Method, reqs[1].URI)
			}
			if n := len(e.up.Requests()); n != 0 {
				t.Fatalf("the upstream got %d requests", n)
			}
			if n := e.ho.handed.Load(); n != 1 {
				t.Fatalf("%d handoffs", n)
			}
			if d := e.h.doneCalls(); len(d) != 0 {
				t.Fatalf("Done calls %+v", d)
			}
		})
	}
}

func TestHandoffAfterForwarded(t *testing.T) {
	e := start(t, setup{})
	c := e.dial(t)
	c.send("GET /fwd HTTP/1.1\r\nHost: h\r\n\r\n" +
		"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /later HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, body := c.response("GET")
	expectStatus(t, resp, body, 200, okBody("GET", "/fwd"))
	resp, body = c.response("POST")
	expectStatus(t, resp, body, 299, "handed off")
	resp, body = c.response("GET")
	expectStatus(t, resp, body, 299, "handed off")
	reqs := e.ho.requests()
	if len(reqs) != 2 || reqs[0].URI != "/upload" || reqs[0].Body != "abc" || reqs[1].URI != "/later" {
		t.Fatalf("the handoff server got %+v", reqs)
	}
	if up := e.up.Requests(); len(up) != 1 || up[0].URI != "/fwd" {
		t.Fatalf("the upstream got %+v", up)
	}
}

// TestAmbiguousRequestsHandedOff: requests the relay must not frame
// itself, or whose bytes could be read two ways, are never forwarded by the
// relay: they are handed off (or the connection closed) before Decide.
func TestAmbiguousRequestsHandedOff(t *testing.T) {
	for _, req := range []string{
		"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc",
		"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc",
		"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length : 3\r\n\r\nabc",
		"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc",
		"GET /a HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: h\r\nX: a\nDirektiv-Token: x\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: h\r\n Direktiv-Token: x\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: h\r\nDirektiv-Token : dkt_x\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: h\r\nConnection: direktiv-token\r\n\r\n",
		"GET http://h/a HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a HTTP/1.0\r\nHost: h\r\n\r\n",
		"GET /a  HTTP/1.1\r\nHost: h\r\n\r\n",
		"\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		t.Run(strconv.Quote(req), func(t *testing.T) {
			e := start(t, setup{})
			c := e.dial(t)
			c.send(req)
			testutil.Eventually(t, "the handoff", func() bool { return e.ho.handed.Load() == 1 })
			if n := len(e.h.decideCalls()); n != 0 {
				t.Fatalf("Decide was asked")
			}
			if n := len(e.up.Requests()); n != 0 {
				t.Fatalf("the upstream got %d requests", n)
			}
		})
	}
}

// TestBodyIsNotARequest: a body that holds a whole request is a body: the
// upstream gets one request with it, and the request after the body is
// decided on its own.
func TestBodyIsNotARequest(t *testing.T) {
	inner := "GET /smuggled HTTP/1.1\r\nHost: h\r\nDirektiv-Token: dkt_x\r\n\r\n"
	e := start(t, setup{decide: func(r *Request) Verdict {
		if string(r.Target) == "/smuggled" {
			return Verdict{Action: Handoff}
		}
		return Verdict{Action: Forward, Token: TokenDrop}
	}})
	c := e.dial(t)
	c.send("POST /outer HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(len(inner)) + "\r\n\r\n" + inner +
		"GET /next HTTP/1.1\r\nHost: h\r\nContent-Length: 00\r\n\r\n")
	resp, body := c.response("POST")
	expectStatus(t, resp, body, 200, okBody("POST", "/outer"))
	resp, body = c.response("GET")
	expectStatus(t, resp, body, 200, okBody("GET", "/next"))
	reqs := e.up.Requests()
	if len(reqs) != 2 || reqs[0].URI != "/outer" || reqs[0].Body != inner || reqs[1].URI != "/next" || reqs[1].Body != "" {
		t.Fatalf("upstream got %+v", reqs)
	}
	var targets []string
	for _, d := range e.h.decideCalls() {
		targets = append(targets, d.Target)
	}
	if !slices.Equal(targets, []string{"/outer", "/next"}) {
		t.Fatalf("Decide saw %q", targets)
	}
}
