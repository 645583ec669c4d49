package relay

import (
	"bytes"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

const testToken = "direktiv-token" // parseRequest takes the lower-case name

// reqHead builds a request head from lines, each ended with CRLF, and the
// blank line.
func reqHead(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n\r\n"
}

func strs(bs [][]byte) []string {
	if len(bs) == 0 {
		return nil
	}
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

func TestParseRequestValid(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		method  string
		target  string
		host    string
		tokens  []string
		xff     []string
		length  int
		close   bool
		headers string
	}{
		{
			name:    "GET without body",
			in:      reqHead("GET /api/x?y=1 HTTP/1.1", "Host: example.com"),
			method:  "GET",
			target:  "/api/x?y=1",
			host:    "example.com",
			headers: "Host: example.com\r\n",
		},
		{
			name:    "POST with a Content-Length body",
			in:      reqHead("POST /submit HTTP/1.1", "Host: h", "Content-Length: 5") + "hello",
			method:  "POST",
			target:  "/submit",
			host:    "h",
			length:  5,
			headers: "Host: h\r\nContent-Length: 5\r\n",
		},
		{
			name:   "token headers collected in order, any case",
			in:     reqHead("GET / HTTP/1.1", "Direktiv-Token: one", "Host: h", "DIREKTIV-TOKEN:two", "direktiv-token: \t three \t", "X-Other: four"),
			method: "GET",
			target: "/",
			host:   "h",
			tokens: []string{"one", "two", "three"},
			headers: "Direktiv-Token: one\r\nHost: h\r\nDIREKTIV-TOKEN:two\r\n" +
				"direktiv-token: \t three \t\r\nX-Other: four\r\n",
		},
		{
			name:    "X-Forwarded-For values collected",
			in:      reqHead("GET / HTTP/1.1", "Host: h", "X-Forwarded-For: 1.2.3.4", "x-forwarded-for: 5.6.7.8, 9.9.9.9"),
			method:  "GET",
			target:  "/",
			host:    "h",
			xff:     []string{"1.2.3.4", "5.6.7.8, 9.9.9.9"},
			headers: "Host: h\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8, 9.9.9.9\r\n",
		},
		{
			name:    "Connection: close",
			in:      reqHead("GET / HTTP/1.1", "Host: h", "Connection: close"),
			method:  "GET",
			target:  "/",
			host:    "h",
			close:   true,
			headers: "Host: h\r\nConnection: close\r\n",
		},
		{
			name:    "Connection: keep-alive, Close in a list",
			in:      reqHead("GET / HTTP/1.1", "Host: h", "Connection: keep-alive, , Close"),
			method:  "GET",
			target:  "/",
			host:    "h",
			close:   true,
			headers: "Host: h\r\nConnection: keep-alive, , Close\r\n",
		},
		{
			name:    "Connection: keep-alive",
			in:      reqHead("GET / HTTP/1.1", "Host: h", "Connection: Keep-Alive"),
			method:  "GET",
			target:  "/",
			host:    "h",
			headers: "Host: h\r\nConnection: Keep-Alive\r\n",
		},
		{
			name:    "hop-by-hop headers the relay drops are fine",
			in:      reqHead("OPTIONS /o HTTP/1.1", "Host: h", "Keep-Alive: timeout=5", "Proxy-Connection: keep-alive", "Proxy-Authorization: Basic x"),
			method:  "OPTIONS",
			target:  "/o",
			host:    "h",
			headers: "Host: h\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic x\r\n",
		},
		{
			name:    "obs-text and tab in a value",
			in:      reqHead("GET / HTTP/1.1", "Host: h", "X-V: a\tb\x80\xff"),
			method:  "GET",
			target:  "/",
			host:    "h",
			headers: "Host: h\r\nX-V: a\tb\x80\xff\r\n",
		},
		{
			name:    "Content-Length equal to maxBody",
			in:      reqHead("PUT /p HTTP/1.1", "Host: h", "Content-Length: 100"),
			method:  "PUT",
			target:  "/p",
			host:    "h",
			length:  100,
			headers: "Host: h\r\nContent-Length: 100\r\n",
		},
		{
			name:    "body incomplete: the head is parsed",
			in:      reqHead("POST / HTTP/1.1", "Host: h", "Content-Length: 10") + "abc",
			method:  "POST",
			target:  "/",
			host:    "h",
			length:  10,
			headers: "Host: h\r\nContent-Length: 10\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			var r request
			if got := parseRequest(in, [][]byte{[]byte(testToken)}, 100, &r); got != parsedOK {
				t.Fatalf("parseRequest = %d, want parsedOK", got)
			}
			wantHead := strings.Index(tt.in, "\r\n\r\n") + 4
			if r.head != wantHead {
				t.Errorf("head = %d, want %d", r.head, wantHead)
			}
			if string(r.method) != tt.method || string(r.target) != tt.target || string(r.host) != tt.host {
				t.Errorf("method, target, host = %q %q %q, want %q %q %q", r.method, r.target, r.host, tt.method, tt.target, tt.host)
			}
			if got := strs(r.tokens); !slices.Equal(got, tt.tokens) {
				t.Errorf("tokens = %q, want %q", got, tt.tokens)
			}
			if got := strs(r.xff); !slices.Equal(got, tt.xff) {
				t.Errorf("xff = %q, want %q", got, tt.xff)
			}
			if r.length != tt.length || r.close != tt.close {
				t.Errorf("length, close = %d %v, want %d %v", r.length, r.close, tt.length, tt.close)
			}
			if string(r.headers) != tt.headers {
				t.Errorf("headers = %q, want %q", r.headers, tt.headers)
			}
		})
	}
}

func TestParseRequestReusesState(t *testing.T) {
	var r request
	first := reqHead("GET /a HTTP/1.1", "Host: h", "Direktiv-Token: t1", "X-Forwarded-For: 1.1.1.1", "Connection: close")
	if got := parseRequest([]byte(first), [][]byte{[]byte(testToken)}, 100, &r); got != parsedOK {
		t.Fatalf("first parse = %d", got)
	}
	second := reqHead("GET /b HTTP/1.1", "Host: h2")
	if got := parseRequest([]byte(second), [][]byte{[]byte(testToken)}, 100, &r); got != parsedOK {
		t.Fatalf("second parse = %d", got)
	}
	if len(r.tokens) != 0 || len(r.xff) != 0 || r.close || string(r.target) != "/b" || string(r.host) != "h2" {
		t.Fatalf("state of the first parse leaked: tokens %q xff %q close %v target %q host %q", r.tokens, r.xff, r.close, r.target, r.host)
	}
	// needMore resets head and length: readRequest sizes its buffer from them.
	r.head, r.length = 99, 99
	if got := parseRequest([]byte("GET / HTTP/1.1\r\nHost: h\r\n"), [][]byte{[]byte(testToken)}, 100, &r); got != needMore {
		t.Fatalf("incomplete parse = %d, want needMore", got)
	}
	if r.head != 0 || r.length != 0 {
		t.Fatalf("after needMore head, length = %d %d, want 0 0", r.head, r.length)
	}
}

func TestParseRequestNeedMore(t *testing.T) {
	full := reqHead("GET / HTTP/1.1", "Host: h")
	for i := range len(full) - 1 {
		var r request
		if got := parseRequest([]byte(full[:i]), [][]byte{[]byte(testToken)}, 100, &r); got != needMore {
			t.Fatalf("prefix %q: parseRequest = %d, want needMore", full[:i], got)
		}
	}
}

func TestParseRequestNotRelayed(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"HTTP/1.0", reqHead("GET / HTTP/1.0", "Host: h")},
		{"HTTP/2.0", reqHead("GET / HTTP/2.0", "Host: h")},
		{"absolute-form target", reqHead("GET http://h/ HTTP/1.1", "Host: h")},
		{"asterisk target", reqHead("OPTIONS * HTTP/1.1", "Host: h")},
		{"target without a leading slash", reqHead("GET x/y HTTP/1.1", "Host: h")},
		{"no target", reqHead("GET  HTTP/1.1", "Host: h")},
		{"no method", reqHead(" / HTTP/1.1", "Host: h")},
		{"method with a bad byte", reqHead("G(T / HTTP/1.1", "Host: h")},
		{"two spaces after the method", reqHead("GET  / HTTP/1.1", "Host: h")},
		{"space inside the target", reqHead("GET /a b HTTP/1.1", "Host: h")},
		{"trailing space after the version", reqHead("GET / HTTP/1.1 ", "Host: h")},
		{"lower-case version", reqHead("GET / http/1.1", "Host: h")},
		{"no Host", reqHead("GET / HTTP/1.1", "X: y")},
		{"no headers", reqHead("GET / HTTP/1.1")},
		{"two Hosts", reqHead("GET / HTTP/1.1", "Host: a", "host: b")},
		{"empty Host", reqHead("GET / HTTP/1.1", "Host:")},
		{"Host with a space", reqHead("GET / HTTP/1.1", "Host: a b")},
		{"fragment in the target", reqHead("GET /a#b HTTP/1.1", "Host: h")},
		{"two equal Content-Lengths", reqHead("POST / HTTP/1.1", "Host: h", "Content-Length: 1", "Content-Length: 1") + "a"},
		{"two Content-Lengths", reqHead("POST / HTTP/1.1", "Host: h", "Content-Length: 1", "Content-Length: 2") + "ab"},
		{"non-digit Content-Length", reqHead("POST / HTTP/1.1", "Host: h", "Content-Length: 1x")},
		{"signed Content-Length", reqHead("POST / HTTP/1.1", "Host: h", "Content-Length: +1") + "a"},
		{"empty Content-Length", reqHead("POST / HTTP/1.1", "Host: h", "Content-Length: ")},
		{"Content-Length list", reqHead("POST / HTTP/1.1", "Host: h", "Content-Length: 1, 1") + "a"},
		{"Content-Length of 19 digits", reqHead("POST / HTTP/1.1", "Host: h", "Content-Length: 0000000000000000001") + "a"},
		{"Content-Length above maxBody", reqHead("POST / HTTP/1.1", "Host: h", "Content-Length: 101")},
		{"Transfer-Encoding", reqHead("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked")},
		{"Transfer-Encoding any case", reqHead("POST / HTTP/1.1", "Host: h", "tRANSFER-eNCODING: identity")},
		{"Upgrade", reqHead("GET / HTTP/1.1", "Host: h", "Connection: keep-alive", "Upgrade: websocket")},
		{"Expect", reqHead("POST / HTTP/1.1", "Host: h", "Content-Length: 1", "Expect: 100-continue")},
		{"TE", reqHead("GET / HTTP/1.1", "Host: h", "TE: trailers")},
		{"Trailer", reqHead("GET / HTTP/1.1", "Host: h", "Trailer: X-Sum")},
		{"Connection naming another header", reqHead("GET / HTTP/1.1", "Host: h", "Connection: close, X-Secret", "X-Secret: s")},
		{"Connection: upgrade", reqHead("GET / HTTP/1.1", "Host: h", "Connection: Upgrade")},
		{"obs-fold", reqHead("GET / HTTP/1.1", "Host: h", "X-A: one", " two")},
		{"obs-fold with a tab", reqHead("GET / HTTP/1.1", "Host: h", "X-A: one", "\ttwo")},
		{"space before the colon", reqHead("GET / HTTP/1.1", "Host : h")},
		{"empty header name", reqHead("GET / HTTP/1.1", "Host: h", ": v")},
		{"header without a colon", reqHead("GET / HTTP/1.1", "Host: h", "X-A")},
		{"bare LF between headers", "GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n"},
		{"bare LF ending the request line", "GET / HTTP/1.1\nHost: h\r\n\r\n"},
		{"NUL in a value", reqHead("GET / HTTP/1.1", "Host: h", "X-A: a\x00b")},
		{"CR in a value", reqHead("GET / HTTP/1.1", "Host: h", "X-A: a\rb")},
		{"DEL in a value", reqHead("GET / HTTP/1.1", "Host: h", "X-A: a\x7fb")},
		{"control byte in a value", reqHead("GET / HTTP/1.1", "Host: h", "X-A: a\x01b")},
		{"head over 4096 bytes", reqHead("GET / HTTP/1.1", "Host: h", "X-Big: "+strings.Repeat("a", 4096))},
		{"incomplete head of 4096 bytes", ("GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 4096))[:4096]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r request
			if got := parseRequest([]byte(tt.in), [][]byte{[]byte(testToken)}, 100, &r); got != notRelayed {
				t.Fatalf("parseRequest(%q) = %d, want notRelayed", tt.in, got)
			}
		})
	}
}

func TestParseRequestHeadLimit(t *testing.T) {
	// A head of exactly maxRequestHead bytes is relayed; one byte more is not.
	build := func(size int) []byte {
		prefix := "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: "
		return []byte(prefix + strings.Repeat("p", size-len(prefix)-4) + "\r\n\r\n")
	}
	tests := []struct {
		size int
		want parseStatus
	}{
		{maxRequestHead - 1, parsedOK},
		{maxRequestHead, parsedOK},
		{maxRequestHead + 1, notRelayed},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			b := build(tt.size)
			if len(b) != tt.size {
				t.Fatalf("built %d bytes", len(b))
			}
			var r request
			got := parseRequest(b, [][]byte{[]byte(testToken)}, 0, &r)
			if got != tt.want {
				t.Fatalf("parseRequest = %d, want %d", got, tt.want)
			}
			if got == parsedOK && r.head != tt.size {
				t.Fatalf("head = %d, want %d", r.head, tt.size)
			}
		})
	}
}

func TestParseDecimal(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		okay bool
	}{
		{"0", 0, true},
		{"007", 7, true},
		{"123456789012345678", 123456789012345678, true},
		{"1234567890123456789", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"1 ", 0, false},
		{"0x1", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n, ok := parseDecimal([]byte(tt.in))
			if n != tt.n || ok != tt.okay {
				t.Fatalf("parseDecimal(%q) = %d, %v; want %d, %v", tt.in, n, ok, tt.n, tt.okay)
			}
		})
	}
}

func TestDropRequest(t *testing.T) {
	tests := []struct {
		name string
		drop bool
	}{
		{"Host", true},
		{"Connection", true},
		{"keep-alive", true},
		{"Proxy-Connection", true},
		{"Proxy-Authorization", true},
		{"X-Forwarded-For", true},
		{"X-Forwarded-Host", true},
		{"X-Forwarded-Proto", true},
		{"Direktiv-Token", true},
		{"DIREKTIV-TOKEN", true},
		{"X-Forwarded-Port", false},
		{"Authorization", false},
		{"Content-Length", false},
		{"Content-Type", false},
		{"X-Hosts", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dropRequest([]byte(tt.name), [][]byte{[]byte(testToken)}); got != tt.drop {
				t.Fatalf("dropRequest(%q) = %v, want %v", tt.name, got, tt.drop)
			}
		})
	}
}

// The token header is dropped (for TokenDrop and TokenSet) whatever its
// length: dropRequest's switch on the length returns early for lengths 4,
// 10, 15, 16, 17 and 19 without looking at the token header.
func TestDropRequestTokenHeaderOfAnyLength(t *testing.T) {
	for n := 2; n <= 24; n++ {
		name := "x-" + strings.Repeat("k", n-2)
		t.Run(name, func(t *testing.T) {
			if !dropRequest([]byte(strings.ToUpper(name)), [][]byte{[]byte("direktiv-token"), []byte(name)}) {
				t.Fatalf("dropRequest(%q, %q) = false, want true", strings.ToUpper(name), name)
			}
		})
	}
}

// Header names are tokens, and '_' and '^' are token characters: a token
// header named with them must match, and only itself.
func TestEqualFoldPunctuation(t *testing.T) {
	tests := []struct {
		name, lower string
		want        bool
	}{
		{"X_Token", "x_token", true},
		{"x^y", "x^y", true},
		{"x^y", "x~y", false},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.lower, func(t *testing.T) {
			if got := equalFold([]byte(tt.name), []byte(tt.lower)); got != tt.want {
				t.Fatalf("equalFold(%q, %q) = %v, want %v", tt.name, tt.lower, got, tt.want)
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		isHead    bool
		status    int
		http10    bool
		frame     bodyFraming
		length    int
		hasLength bool
		close     bool
		drop      []string
	}{
		{name: "Content-Length", in: "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", status: 200, frame: byLength, length: 12, hasLength: true},
		{name: "Content-Length 0", in: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", status: 200, frame: byLength, hasLength: true},
		{name: "no reason phrase", in: "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", status: 200, frame: byLength, length: 1, hasLength: true},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", status: 200, frame: chunked},
		{name: "close-delimited", in: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", status: 200, frame: byClose, close: true},
		{name: "HEAD keeps the length", in: "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", isHead: true, status: 200, frame: noBody, length: 42, hasLength: true},
		{name: "HEAD without length", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", isHead: true, status: 200, frame: noBody},
		{name: "204", in: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, frame: noBody},
		{name: "304 with a length", in: "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", status: 304, frame: noBody, length: 7, hasLength: true},
		{name: "100 Continue", in: "HTTP/1.1 100 Continue\r\n\r\n", status: 100, frame: noBody},
		{name: "103 Early Hints", in: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", status: 103, frame: noBody},
		{name: "HTTP/1.0 with length", in: "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", status: 200, http10: true, frame: byLength, length: 3, hasLength: true, close: true},
		{name: "HTTP/1.0 keep-alive with length", in: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\n", status: 200, http10: true, frame: byLength, length: 3, hasLength: true},
		{name: "HTTP/1.0 keep-alive without length", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", status: 200, http10: true, frame: byClose, close: true},
		{name: "HTTP/1.0 keep-alive with chunked", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", status: 200, http10: true, frame: chunked, length: 3, hasLength: true, close: true},
		{name: "Connection: close", in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", status: 200, frame: byLength, length: 2, hasLength: true, close: true},
		{name: "Connection naming headers", in: "HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive,, x-other\r\nX-Secret: s\r\nContent-Length: 2\r\n\r\n", status: 200, frame: byLength, length: 2, hasLength: true, drop: []string{"X-Secret", "x-other"}},
		{name: "equal duplicate Content-Lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n", status: 200, frame: byLength, length: 5, hasLength: true},
		{name: "Transfer-Encoding and Content-Length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", status: 200, frame: chunked, length: 5, hasLength: true, close: true},
		{name: "status 999", in: "HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\n\r\n", status: 999, frame: byLength, hasLength: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in + "trailing bytes")
			r := response{drop: [][]byte{[]byte("stale")}}
			more, ok := parseResponse(in, tt.isHead, &r)
			if more || !ok {
				t.Fatalf("parseResponse = more %v, ok %v; want false, true", more, ok)
			}
			if r.head != len(tt.in) {
				t.Errorf("head = %d, want %d", r.head, len(tt.in))
			}
			if r.status != tt.status || r.http10 != tt.http10 || r.frame != tt.frame {
				t.Errorf("status, http10, frame = %d %v %d; want %d %v %d", r.status, r.http10, r.frame, tt.status, tt.http10, tt.frame)
			}
			if r.length != tt.length || r.hasLength != tt.hasLength || r.close != tt.close {
				t.Errorf("length, hasLength, close = %d %v %v; want %d %v %v", r.length, r.hasLength, r.close, tt.length, tt.hasLength, tt.close)
			}
			if got := strs(r.drop); !slices.Equal(got, tt.drop) {
				t.Errorf("drop = %q, want %q", got, tt.drop)
			}
			line, _, _ := strings.Cut(tt.in, "\r\n")
			if string(r.line) != line {
				t.Errorf("line = %q, want %q", r.line, line)
			}
			_, headers, _ := strings.Cut(tt.in, "\r\n")
			if want := strings.TrimSuffix(headers, "\r\n"); string(r.headers) != want {
				t.Errorf("headers = %q, want %q", r.headers, want)
			}
		})
	}
}

func TestParseResponseIncompleteAndMalformed(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		more, ok bool
	}{
		{"empty", "", true, true},
		{"incomplete head", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", true, true},
		{"incomplete head at the limit", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxResponseHead), false, false},
		{"HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", false, false},
		{"HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", false, false},
		{"not HTTP", "ICY 200 OK\r\n\r\n", false, false},
		{"lower-case protocol", "http/1.1 200 OK\r\n\r\n", false, false},
		{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n", false, false},
		{"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", false, false},
		{"letters in the status", "HTTP/1.1 2OO OK\r\n\r\n", false, false},
		{"status below 100", "HTTP/1.1 099 Low\r\n\r\n", false, false},
		{"no space after the status", "HTTP/1.1 200OK\r\n\r\n", false, false},
		{"two spaces before the status", "HTTP/1.1  200 OK\r\n\r\n", false, false},
		{"NUL in the reason", "HTTP/1.1 200 O\x00K\r\n\r\n", false, false},
		{"short line", "HTTP/1.1\r\n\r\n", false, false},
		{"empty status line", "\r\n\r\n", false, false},
		{"conflicting Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", false, false},
		{"non-digit Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5a\r\n\r\n", false, false},
		{"Transfer-Encoding gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, false},
		{"Transfer-Encoding gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, false},
		{"Transfer-Encoding twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", false, false},
		{"bare LF between headers", "HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n", false, false},
		{"obs-fold", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", false, false},
		{"space before the colon", "HTTP/1.1 200 OK\r\nA : b\r\n\r\n", false, false},
		{"CR in a value", "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r response
			more, ok := parseResponse([]byte(tt.in), false, &r)
			if more != tt.more || ok != tt.ok {
				t.Fatalf("parseResponse(%q) = more %v, ok %v; want %v, %v", tt.in, more, ok, tt.more, tt.ok)
			}
		})
	}
}

// The status line must end in CRLF like the header lines: a head that
// starts with a bare LF made parseResponse slice head[:-1] and panic, on
// the loop goroutine, which takes the whole process down.
func TestParseResponseStatusLineBareLF(t *testing.T) {
	tests := []string{
		"\n\r\n\r\n",
		"HTTP/1.1 200 OKK\nX: y\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
	}
	for _, in := range tests {
		t.Run(fmt.Sprintf("%q", in), func(t *testing.T) {
			var r response
			var more, ok bool
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("parseResponse(%q) panicked: %v", in, p)
					}
				}()
				more, ok = parseResponse([]byte(in), false, &r)
			}()
			if more || ok {
				t.Fatalf("parseResponse(%q) = more %v, ok %v; want false, false", in, more, ok)
			}
		})
	}
}

func TestDropResponse(t *testing.T) {
	var r response
	head := "HTTP/1.1 200 OK\r\nConnection: X-Secret, close\r\nX-Secret: s\r\nContent-Length: 0\r\n\r\n"
	if more, ok := parseResponse([]byte(head), false, &r); more || !ok {
		t.Fatalf("parseResponse = %v, %v", more, ok)
	}
	tests := []struct {
		name string
		drop bool
	}{
		{"x-secret", true},
		{"X-SECRET", true},
		{"Connection", true},
		{"Keep-Alive", true},
		{"TE", true},
		{"Trailer", true},
		{"Upgrade", true},
		{"Proxy-Connection", true},
		{"Proxy-Authenticate", true},
		{"Transfer-Encoding", true},
		{"Content-Length", true},
		{"Content-Type", false},
		{"X-Secrets", false},
		{"Set-Cookie", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dropResponse([]byte(tt.name), &r); got != tt.drop {
				t.Fatalf("dropResponse(%q) = %v, want %v", tt.name, got, tt.drop)
			}
		})
	}
}

// feedAll feeds p to a fresh chunkReader in the pieces given by cuts
// (increasing offsets into p) and returns the body's end, as the relay
// counts it: bytes taken until the reader is done or bad.
func feedAll(tb testing.TB, p []byte, cuts []int) (n int, bad, done bool) {
	tb.Helper()
	var cr chunkReader
	prev := 0
	for _, cut := range append(cuts, len(p)) {
		piece := p[prev:cut]
		prev = cut
		k, b := cr.feed(piece)
		if k > len(piece) {
			tb.Fatalf("feed took %d bytes of %d", k, len(piece))
		}
		n += k
		if b {
			return n, true, cr.done()
		}
		if cr.done() {
			return n, false, true
		}
		if k != len(piece) {
			tb.Fatalf("feed took %d of %d bytes without being done or bad", k, len(piece))
		}
	}
	return n, false, cr.done()
}

var chunkBodies = []struct {
	name string
	body string // the whole body
}{
	{"empty", "0\r\n\r\n"},
	{"one chunk", "5\r\nhello\r\n0\r\n\r\n"},
	{"several chunks", "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"},
	{"hex sizes any case", "a\r\n0123456789\r\nB\r\n0123456789a\r\n00\r\n\r\n"},
	{"data holding CRLFs", "4\r\n\r\n\r\n\r\n0\r\n\r\n"},
	{"extensions", "5;name=value\r\nhello\r\n3 ; q=\"x;y\"\r\nabc\r\n0;last\r\n\r\n"},
	{"tab before an extension", "2\t;x\r\nhi\r\n0\r\n\r\n"},
	{"trailers", "3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other: two\r\n\r\n"},
	{"big size", "10000\r\n" + strings.Repeat("z", 0x10000) + "\r\n0\r\n\r\n"},
}

func TestChunkReaderSplits(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, tt := range chunkBodies {
		t.Run(tt.name, func(t *testing.T) {
			// Bytes after the body (the next response) are not taken.
			p := []byte(tt.body + "HTTP/1.1 200 OK\r\n")
			want := len(tt.body)
			check := func(how string, cuts []int) {
				t.Helper()
				n, bad, done := feedAll(t, p, cuts)
				if n != want || bad || !done {
					t.Fatalf("%s: n, bad, done = %d %v %v; want %d false true", how, n, bad, done, want)
				}
			}
			check("one piece", nil)
			if len(p) < 4096 {
				for i := range len(p) + 1 {
					check(fmt.Sprintf("split at %d", i), []int{i})
				}
				every := make([]int, 0, len(p))
				for i := 1; i < len(p); i++ {
					every = append(every, i)
				}
				check("byte by byte", every)
			}
			for range 50 {
				var cuts []int
				for i := 1; i < len(p); i += 1 + rng.Intn(64) {
					cuts = append(cuts, i)
				}
				check(fmt.Sprintf("random split %v", cuts), cuts)
			}
		})
	}
}

func TestChunkReaderIncomplete(t *testing.T) {
	for _, tt := range chunkBodies {
		if len(tt.body) > 4096 {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			for i := range len(tt.body) {
				var cr chunkReader
				n, bad := cr.feed([]byte(tt.body[:i]))
				if n != i || bad || cr.done() {
					t.Fatalf("prefix of %d: n, bad, done = %d %v %v; want %d false false", i, n, bad, cr.done(), i)
				}
			}
		})
	}
}

func TestChunkReaderBad(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int // bytes taken before the bad one
	}{
		{"empty size", "\r\n", 0},
		{"non-hex size", "g\r\n", 0},
		{"sign", "+5\r\nhello\r\n", 0},
		{"extension without a size", ";x\r\n", 0},
		{"16 hex digits", "1234567890abcdef\r\n", 15},
		{"bare LF after the size", "5\nhello", 1},
		{"bare LF in an extension", "5;x\nhello", 3},
		{"CR not followed by LF", "5\rhello", 2},
		{"missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", 8},
		{"CR then junk after data", "5\r\nhello\rX", 9},
		{"data longer than the size", "3\r\nhello\r\n", 6},
		{"bare LF ending the trailers", "0\r\nX: y\r\n\n", 9},
		{"bare LF in a trailer", "0\r\nX: y\nZ: w\r\n\r\n", 7},
		{"CR without LF in the trailers", "0\r\n\rX", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cr chunkReader
			n, bad := cr.feed([]byte(tt.in))
			if n != tt.n || !bad {
				t.Fatalf("feed(%q) = %d, %v; want %d, true", tt.in, n, bad, tt.n)
			}
			// Byte by byte finds the same place.
			every := make([]int, 0, len(tt.in))
			for i := 1; i < len(tt.in); i++ {
				every = append(every, i)
			}
			n, bad, _ = feedAll(t, []byte(tt.in), every)
			if n != tt.n || !bad {
				t.Fatalf("byte by byte: %d, %v; want %d, true", n, bad, tt.n)
			}
		})
	}
}

func TestChunkReaderDoneTakesNothing(t *testing.T) {
	var cr chunkReader
	if n, bad := cr.feed([]byte("0\r\n\r\n")); n != 5 || bad || !cr.done() {
		t.Fatalf("feed = %d, %v, done %v", n, bad, cr.done())
	}
	if n, bad := cr.feed([]byte("more")); n != 0 || bad || !cr.done() {
		t.Fatalf("feed after done = %d, %v, done %v; want 0, false, true", n, bad, cr.done())
	}
}

var fuzzRequests = []string{
	reqHead("GET / HTTP/1.1", "Host: h"),
	reqHead("GET /api/namespaces/ns/instances?limit=10 HTTP/1.1", "Host: direktiv.example.com", "User-Agent: curl/8.5.0", "Accept: */*", "Direktiv-Token: dt_ns_abc.def"),
	reqHead("POST /api/v2/namespaces/x/files HTTP/1.1", "Host: h", "Content-Type: application/json", "Content-Length: 13") + `{"key":"val"}`,
	reqHead("GET / HTTP/1.1", "Host: h", "Connection: close", "X-Forwarded-For: 10.0.0.1", "direktiv-token: a", "DIREKTIV-TOKEN: b"),
	reqHead("PUT /p HTTP/1.1", "Host: h", "Transfer-Encoding: chunked") + "5\r\nhello\r\n0\r\n\r\n",
	reqHead("GET / HTTP/1.1", "Host: h", "Upgrade: websocket", "Connection: Upgrade"),
	reqHead("GET / HTTP/1.0", "Host: h"),
	"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
	reqHead("GET / HTTP/1.1", "Host: h") + reqHead("GET /second HTTP/1.1", "Host: h"),
	"GET / HTTP/1.1\r\nHost",
}

// within reports whether s lies inside b's memory.
func within(b, s []byte) bool {
	if len(s) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(b))
}

type parsedSnapshot struct {
	status                        parseStatus
	method, target, host, headers string
	tokens, xff                   []string
	length, head                  int
	close                         bool
}

func snapshot(st parseStatus, r *request) parsedSnapshot {
	s := parsedSnapshot{status: st, length: r.length, head: r.head}
	if st == parsedOK {
		s.method, s.target, s.host, s.headers = string(r.method), string(r.target), string(r.host), string(r.headers)
		s.tokens, s.xff, s.close = strs(r.tokens), strs(r.xff), r.close
	}
	return s
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range fuzzRequests {
		f.Add([]byte(s), 1024)
	}
	f.Fuzz(func(t *testing.T, in []byte, maxBody int) {
		var fresh request
		st := parseRequest(in, [][]byte{[]byte(testToken)}, maxBody, &fresh)
		if st > notRelayed {
			t.Fatalf("status %d", st)
		}
		if st == parsedOK {
			if fresh.head > len(in) || fresh.head > maxRequestHead || fresh.head < 4 {
				t.Fatalf("head %d of %d bytes", fresh.head, len(in))
			}
			if !bytes.HasSuffix(in[:fresh.head], crlfcrlf) {
				t.Fatalf("head %q does not end in CRLFCRLF", in[:fresh.head])
			}
			if fresh.length < 0 || fresh.length > max(maxBody, 0) {
				t.Fatalf("length %d, maxBody %d", fresh.length, maxBody)
			}
			head := in[:fresh.head]
			for name, s := range map[string][]byte{"method": fresh.method, "target": fresh.target, "host": fresh.host, "headers": fresh.headers} {
				if !within(head, s) {
					t.Fatalf("%s %q is not inside the head", name, s)
				}
			}
			for _, s := range append(slices.Clone(fresh.tokens), fresh.xff...) {
				if !within(head, s) {
					t.Fatalf("value %q is not inside the head", s)
				}
			}
			if len(fresh.method) == 0 || len(fresh.target) == 0 || fresh.target[0] != '/' {
				t.Fatalf("method %q target %q", fresh.method, fresh.target)
			}
		}
		// Parsing again, into a request that held another parse, gives
		// the same.
		var reused request
		parseRequest([]byte(fuzzRequests[3]), [][]byte{[]byte(testToken)}, 1024, &reused)
		st2 := parseRequest(in, [][]byte{[]byte(testToken)}, maxBody, &reused)
		a, b := snapshot(st, &fresh), snapshot(st2, &reused)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("parses differ:\n%+v\n%+v", a, b)
		}
	})
}

func FuzzChunkReader(f *testing.F) {
	for _, tt := range chunkBodies {
		if len(tt.body) < 1024 {
			f.Add([]byte(tt.body))
		}
	}
	f.Add([]byte("5\r\nhelloX\r\n"))
	f.Add([]byte("0\r\nX: y\r\n\n"))
	f.Add([]byte("1234567890abcdef\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var whole chunkReader
		n1, bad1 := whole.feed(in)
		done1 := whole.done()
		if n1 < 0 || n1 > len(in) {
			t.Fatalf("n %d of %d", n1, len(in))
		}
		if !bad1 && !done1 && n1 != len(in) {
			t.Fatalf("took %d of %d bytes without being done or bad", n1, len(in))
		}
		every := make([]int, 0, len(in))
		for i := 1; i < len(in); i++ {
			every = append(every, i)
		}
		n2, bad2, done2 := feedAll(t, in, every)
		if n1 != n2 || bad1 != bad2 || done1 != done2 {
			t.Fatalf("one piece: %d %v %v; byte by byte: %d %v %v", n1, bad1, done1, n2, bad2, done2)
		}
	})
}
