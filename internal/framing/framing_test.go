package framing

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// pipe wraps the server end of a loopback connection and returns the
// client end.
func pipe(t *testing.T, opt Options) (client net.Conn, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); raw.Close() })
	return client, Wrap(raw, opt)
}

// readN reads exactly n bytes the server may read, within a second.
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes: %v (got %q)", n, err, b)
	}
	return string(b)
}

// nothingYet checks that the server can read nothing for a moment.
func nothingYet(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var b [1]byte
	if n, err := c.Read(b[:]); n != 0 || !isTimeout(err) {
		t.Fatalf("the server could read %q (%v) of an unchecked request", b[:n], err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestRequestHeldUntilComplete(t *testing.T) {
	client, server := pipe(t, Options{})
	head := "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n"
	io.WriteString(client, head+"hello")
	nothingYet(t, server)
	io.WriteString(client, "world")
	if got := readN(t, server, len(head)+10); got != head+"helloworld" {
		t.Fatalf("released %q", got)
	}
}

func TestChunkedBodyReencoded(t *testing.T) {
	client, server := pipe(t, Options{})
	head := "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	io.WriteString(client, head+"005;ext=1\r\nhello\r\nA \r\n0123456789\r\n0;last\r\n\r\n")
	want := head + "5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n"
	if got := readN(t, server, len(want)); got != want {
		t.Fatalf("released %q\nwant     %q", got, want)
	}
}

func TestLargeBodyStreamsPastWindow(t *testing.T) {
	client, server := pipe(t, Options{Window: 1024})
	head := "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n"
	go io.WriteString(client, head+strings.Repeat("x", 2000))
	if got := readN(t, server, len(head)+2000); got != head+strings.Repeat("x", 2000) {
		t.Fatalf("released %q", got[:64])
	}
}

func TestExpectContinueReleasesHead(t *testing.T) {
	client, server := pipe(t, Options{})
	head := "POST /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
	io.WriteString(client, head)
	if got := readN(t, server, len(head)); got != head {
		t.Fatalf("released %q", got)
	}
}

// A refused request gives the server io.EOF where it would start, and
// Close answers with Options.Answer.
func TestRefusalAnsweredOnClose(t *testing.T) {
	var refused *Error
	client, server := pipe(t, Options{Answer: func(e *Error) []byte {
		refused = e
		return []byte("HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	}})
	first := "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
	io.WriteString(client, first+"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\nhello")
	if got := readN(t, server, len(first)); got != first {
		t.Fatalf("released %q", got)
	}
	var b [64]byte
	if n, err := server.Read(b[:]); n != 0 || err != io.EOF {
		t.Fatalf("after the refused request: %q, %v; want io.EOF", b[:n], err)
	}
	if Failed(server) == nil {
		// Failed claims the answer; a fresh connection checks Close.
		t.Fatal("Failed: nil after a refusal")
	}
	client2, server2 := pipe(t, Options{Answer: func(e *Error) []byte {
		refused = e
		return []byte("HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	}})
	io.WriteString(client2, "POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
	if n, err := server2.Read(b[:]); n != 0 || err != io.EOF {
		t.Fatalf("refused request: %q, %v; want io.EOF", b[:n], err)
	}
	server2.Close()
	client2.SetReadDeadline(time.Now().Add(time.Second))
	got, _ := io.ReadAll(client2)
	if !strings.HasPrefix(string(got), "HTTP/1.1 501 ") || refused == nil || refused.Status != 501 || refused.Reason != "unsupported transfer encoding" {
		t.Fatalf("client got %q; refusal %+v", got, refused)
	}
}

// A framing error inside a body the server is already reading ends the
// body with the Error, and Close does not answer a second time.
func TestErrorInsideStreamedBody(t *testing.T) {
	answered := false
	client, server := pipe(t, Options{Window: 16, Answer: func(*Error) []byte { answered = true; return nil }})
	head := "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	io.WriteString(client, head+"14\r\n01234567890123456789\r\n")
	want := head + "14\r\n01234567890123456789\r\n"
	if got := readN(t, server, len(want)); got != want {
		t.Fatalf("released %q", got)
	}
	io.WriteString(client, "5\nhello\r\n0\r\n\r\n")
	var b [64]byte
	server.SetReadDeadline(time.Now().Add(time.Second))
	_, err := server.Read(b[:])
	var fe *Error
	if !errors.As(err, &fe) || fe.Status != 400 || fe.Reason != "malformed chunk line" {
		t.Fatalf("read after a bad chunk line: %v", err)
	}
	if Failed(server) != fe {
		t.Fatal("Failed does not return the refusal")
	}
	server.Close()
	if answered {
		t.Fatal("Close answered a request the server had begun to read")
	}
}

func TestHeadLimit(t *testing.T) {
	var refused *Error
	client, server := pipe(t, Options{MaxHead: 100, Answer: func(e *Error) []byte { refused = e; return nil }})
	io.WriteString(client, "GET /a HTTP/1.1\r\nHost: h\r\nX-Long: "+strings.Repeat("x", 100)+"\r\n\r\n")
	var b [8]byte
	if n, err := server.Read(b[:]); n != 0 || err != io.EOF {
		t.Fatalf("read %q, %v; want io.EOF", b[:n], err)
	}
	server.Close()
	if refused == nil || refused.Status != 431 {
		t.Fatalf("refusal %+v; want 431", refused)
	}
}

func TestParseChunkLine(t *testing.T) {
	for line, want := range map[string]int64{
		"5\r\n": 5, "a\r\n": 10, "F\r\n": 15, "5 \t\r\n": 5, "5;x\r\n": 5, "5;\r\n": 5,
		"fffffffffffffff\r\n": 1<<60 - 1,
		"":                    -1, "\r\n": -1, "5": -1, "5\n": -1, "5\r\r\n": -1, " 5\r\n": -1, "5 ;x\r\n": -1,
		"0x5\r\n": -1, "-5\r\n": -1, "5;a\x00\r\n": -1, "1000000000000000\r\n": -1,
		"5;" + strings.Repeat("x", 4092) + "\r\n": 5, "5;" + strings.Repeat("x", 4093) + "\r\n": -1,
	} {
		n, ok := parseChunkLine([]byte(line))
		if !ok {
			n = -1
		}
		if n != want {
			t.Errorf("parseChunkLine(%.20q) = %d, want %d", line, n, want)
		}
	}
}

// memConn is a client connection that sends b and then closes.
type memConn struct {
	net.Conn
	r *strings.Reader
}

func (c memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c memConn) Close() error                     { return nil }
func (c memConn) SetReadDeadline(time.Time) error  { return nil }
func (c memConn) SetWriteDeadline(time.Time) error { return nil }
func (c memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// goReads is what Go's net/http server reads from b: each request read
// whole (its body included), up to the first that fails.
func goReads(b []byte) []string {
	br := bufio.NewReader(bytes.NewReader(b))
	var got []string
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return got
		}
		if req.ProtoMajor != 1 || (req.ProtoMinor == 1 && req.Host == "" && len(req.Header["Host"]) == 0) || len(req.Header["Host"]) > 1 {
			return got // refused by net/http's server
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return got
		}
		got = append(got, fmt.Sprintf("%s %s %q %q %q", req.Method, req.RequestURI, req.Header.Values("Content-Type"), req.Header.Values("X-Probe"), body))
	}
}

// FuzzReleasedAsGoReads: whatever Conn lets the server read, Go's net/http
// reads as the same requests it reads from the client's own bytes (a
// prefix of them: Conn may refuse more), and reads whole.
func FuzzReleasedAsGoReads(f *testing.F) {
	for _, s := range []string{
		"GET /a HTTP/1.1\r\nHost: h\r\nX-Probe: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\r\n\r\n",
		"GET /a HTTP/1.0\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c := Wrap(memConn{r: strings.NewReader(in)}, Options{})
		released, _ := io.ReadAll(c)
		want := goReads([]byte(in))
		got := goReads(released)
		if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
			t.Fatalf("Go reads the released bytes as\n%q\nand the client's as\n%q", got, want)
		}
		// Everything released is read whole by Go: no partial request.
		br := bufio.NewReader(bytes.NewReader(released))
		for n := 0; n < len(got); n++ {
			req, _ := http.ReadRequest(br)
			io.Copy(io.Discard, req.Body)
		}
		if br.Buffered() > 0 {
			rest, _ := io.ReadAll(br)
			t.Fatalf("released bytes Go does not read as a whole request: %q", rest)
		}
	})
}
