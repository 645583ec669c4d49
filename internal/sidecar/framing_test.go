package sidecar

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// The framing corpus: odd requests built after the mutation classes of
// public request-smuggling research (Transfer-Encoding obfuscations,
// Content-Length and Transfer-Encoding conflicts, chunk-size, chunk-data
// and terminator mutations, malformed heads). Each case is the bytes a
// client writes on one connection, often a request with a second one
// smuggled after it. "{p}" stands for the case's own path prefix.
type framingCase struct {
	name string
	raw  string
	// stricter: why the sidecar may refuse what Go accepts.
	stricter string
}

func framingCorpus() []framingCase {
	const host = "Host: h\r\n"
	post := "POST {p}/a HTTP/1.1\r\n" + host
	next := "GET {p}/next HTTP/1.1\r\n" + host + "\r\n"
	smuggled := "GET {p}/smuggled HTTP/1.1\r\n" + host + "\r\n"
	var cs []framingCase
	add := func(name, raw, stricter string) { cs = append(cs, framingCase{name, raw, stricter}) }

	add("plain GET pair", "GET {p}/a HTTP/1.1\r\n"+host+"X-Probe:  v \r\n\r\n"+next, "")
	add("Content-Length body", post+"Content-Length: 5\r\n\r\nhello"+next, "")
	add("chunked body", post+"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"+next, "")
	add("HTTP/1.0 without Host", "GET {p}/a HTTP/1.0\r\n\r\n", "")

	// Transfer-Encoding obfuscations: each gadget sits in a chunked request
	// whose body, read by Content-Length instead, would smuggle a request.
	chunkedSmuggle := "0\r\n\r\n" + smuggled
	gadgets := []struct{ name, line, stricter string }{
		{"TE", "Transfer-Encoding: chunked", ""},
		{"TE upper case", "TRANSFER-ENCODING: CHUNKED", ""},
		{"TE mixed case", "TrAnSFer-EnCODinG: cHuNkeD", ""},
		{"TE tab before value", "Transfer-Encoding:\tchunked", ""},
		{"TE two spaces", "Transfer-Encoding:  chunked", ""},
		{"TE tab after value", "Transfer-Encoding: chunked\t", ""},
		{"TE space before colon", "Transfer-Encoding : chunked", ""},
		{"TE tab before colon", "Transfer-Encoding\t:\tchunked", ""},
		{"TE space in name", "Transfer Encoding: chunked", ""},
		{"TE underscore", "Transfer_Encoding: chunked", ""},
		{"TE leading space", " Transfer-Encoding: chunked", ""},
		{"TE vertical tab", "Transfer-Encoding:\x0bchunked", ""},
		{"TE form feed", "Transfer-Encoding: \x0cchunked", ""},
		{"TE NUL", "Transfer-Encoding: chunked\x00", ""},
		{"TE CR suffix", "Transfer-Encoding: chunked\r", ""},
		{"TE obs-fold", "Transfer-Encoding:\r\n chunked", "obsolete line folding is refused (RFC 9112, 5.2; Go joins the lines)"},
		{"TE quoted", `Transfer-Encoding: "chunked"`, ""},
		{"TE chunk", "Transfer-Encoding: chunk", ""},
		{"TE xchunked", "Transfer-Encoding: xchunked", ""},
		{"TE chunked, identity", "Transfer-Encoding: chunked, identity", ""},
		{"TE identity, chunked", "Transfer-Encoding: identity, chunked", ""},
		{"TE gzip, chunked", "Transfer-Encoding: gzip, chunked", ""},
		{"TE chunked, chunked", "Transfer-Encoding: chunked, chunked", ""},
		{"TE identity", "Transfer-Encoding: identity", ""},
		{"TE twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", ""},
		{"TE then bogus TE", "Transfer-Encoding: chunked\r\nTransfer-Encoding: cow", ""},
		{"bogus TE then TE", "Transfer-Encoding: cow\r\nTransfer-Encoding: chunked", ""},
		{"Content-Encoding chunked", "Content-Encoding: chunked", ""},
	}
	for _, g := range gadgets {
		add(g.name+", no Content-Length", post+g.line+"\r\n\r\n"+chunkedSmuggle+next, g.stricter)
		cl := "Content-Length: " + fmt.Sprint(len(chunkedSmuggle)) + "\r\n"
		add(g.name+" with Content-Length (CL.TE)", post+g.line+"\r\n"+cl+"\r\n"+chunkedSmuggle+next, "Transfer-Encoding with Content-Length is refused (Go drops the Content-Length)")
	}
	// TE.CL: chunked to Go, and a short Content-Length to a reader that
	// prefers it.
	add("TE.CL", post+"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5c\r\nGPOST {p}/smuggled HTTP/1.1\r\nHost: h\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n"+next, "Transfer-Encoding with Content-Length is refused (Go drops the Content-Length)")
	add("TE in HTTP/1.0", "POST {p}/a HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", "Transfer-Encoding in HTTP/1.0 is refused (Go ignores it)")

	// Content-Length mutations.
	for _, v := range []struct{ name, header, stricter string }{
		{"CL plus", "Content-Length: +5", ""},
		{"CL minus", "Content-Length: -5", ""},
		{"CL hex", "Content-Length: 0x5", ""},
		{"CL two values", "Content-Length: 5, 5", ""},
		{"CL space inside", "Content-Length: 5 5", ""},
		{"CL empty", "Content-Length: ", ""},
		{"CL leading zeros", "Content-Length: 005", ""},
		{"CL surrounding space", "Content-Length:  5 ", ""},
		{"CL twice same", "Content-Length: 5\r\nContent-Length: 5", "a repeated Content-Length is refused (Go accepts equal values)"},
		{"CL twice different", "Content-Length: 5\r\nContent-Length: 6", ""},
		{"CL huge", "Content-Length: 99999999999999999999", ""},
		{"CL space before colon", "Content-Length : 5", ""},
		{"CL obs-fold", "Content-Length:\r\n 5", "obsolete line folding is refused (RFC 9112, 5.2; Go joins the lines)"},
	} {
		add(v.name, post+v.header+"\r\n\r\nhello"+next, v.stricter)
	}

	// Chunk-size line mutations.
	chunked := post + "Transfer-Encoding: chunked\r\n\r\n"
	for _, v := range []struct{ name, body, stricter string }{
		{"chunk size trailing space", "5 \r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size trailing tab", "5\t\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size leading space", " 5\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size 0x", "0x5\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size minus", "-5\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size plus", "+5\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size empty", "\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size leading zeros", "0005\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size upper hex", "A\r\n0123456789\r\n0\r\n\r\n", ""},
		{"chunk size 17 digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size overflow", "fffffffffffffffff\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size bare LF", "5\nhello\r\n0\r\n\r\n", ""},
		{"chunk size CR CR LF", "5\r\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk extension", "5;name=value\r\nhello\r\n0;last\r\n\r\n", ""},
		{"chunk extension quoted", "5;name=\"a b\"\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk extension space before semicolon", "5 ;name\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk extension with CR", "5;a\rb\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk extension 4096 bytes", "5;" + strings.Repeat("x", 4094) + "\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk extension 4093 bytes", "5;" + strings.Repeat("x", 4093) + "\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk extensions beyond Go's overhead limit", strings.Repeat("1;"+strings.Repeat("e", 4000)+"\r\na\r\n", 5) + "0\r\n\r\n", ""},
	} {
		add(v.name, chunked+v.body+next, v.stricter)
	}

	// Chunk data and terminator mutations.
	for _, v := range []struct{ name, body, stricter string }{
		{"chunk data longer than size", "3\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk data shorter than size", "7\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk data without CRLF", "5\r\nhello0\r\n\r\n", ""},
		{"chunk data then bare LF", "5\r\nhello\n0\r\n\r\n", ""},
		{"chunk data then CR only", "5\r\nhello\r0\r\n\r\n", ""},
		{"last chunk 00", "5\r\nhello\r\n00\r\n\r\n", ""},
		{"last chunk bare LFs", "5\r\nhello\r\n0\n\n", ""},
		{"last chunk without blank line", "5\r\nhello\r\n0\r\n", ""},
		{"last chunk CR CR LF", "5\r\nhello\r\n0\r\n\r\r\n", ""},
		{"trailer field", "5\r\nhello\r\n0\r\nX-Trailer: v\r\n\r\n", "trailer fields are refused (Go reads them into Request.Trailer)"},
		{"smuggled after last chunk", "0\r\n\r\n" + smuggled, ""},
		// Past the 64 KiB held back, the body streams: a bad line there must
		// still leave the upstream without a complete request.
		{"large body well formed", "11170\r\n" + strings.Repeat("x", 0x11170) + "\r\n0\r\n\r\n", ""},
		{"large body then bad chunk line", "11170\r\n" + strings.Repeat("x", 0x11170) + "\r\nzz\r\nhello\r\n0\r\n\r\n", ""},
		{"large body then trailer", "11170\r\n" + strings.Repeat("x", 0x11170) + "\r\n0\r\nX: y\r\n\r\n", "trailer fields are refused (Go reads them into Request.Trailer)"},
	} {
		add(v.name, chunked+v.body+next, v.stricter)
	}

	// Heads.
	for _, v := range []struct{ name, raw, stricter string }{
		{"bare LF head", "GET {p}/a HTTP/1.1\nHost: h\n\n" + next, "bare LF line ends are refused (Go accepts them)"},
		{"header with NUL", "GET {p}/a HTTP/1.1\r\n" + host + "X-Probe: a\x00b\r\n\r\n" + next, ""},
		{"header with DEL", "GET {p}/a HTTP/1.1\r\n" + host + "X-Probe: a\x7fb\r\n\r\n" + next, ""},
		{"header obs-text", "GET {p}/a HTTP/1.1\r\n" + host + "X-Probe: caf\xe9\r\n\r\n" + next, ""},
		{"header obs-fold", "GET {p}/a HTTP/1.1\r\n" + host + "X-Probe: a\r\n b\r\n\r\n" + next, "obsolete line folding is refused (RFC 9112, 5.2; Go joins the lines)"},
		{"header without colon", "GET {p}/a HTTP/1.1\r\n" + host + "X-Probe\r\n\r\n" + next, ""},
		{"missing Host", "GET {p}/a HTTP/1.1\r\n\r\n" + next, ""},
		{"two Hosts", "GET {p}/a HTTP/1.1\r\n" + host + host + "\r\n" + next, ""},
		{"Host with space", "GET {p}/a HTTP/1.1\r\nHost: h h\r\n\r\n" + next, ""},
		{"Host empty", "GET {p}/a HTTP/1.1\r\nHost:\r\n\r\n" + next, "an empty Host is refused (Go accepts it; the request names no host to forward for)"},
		{"Host with port", "GET {p}/a HTTP/1.1\r\nHost: h:8080\r\n\r\n" + next, ""},
		{"Host IPv6", "GET {p}/a HTTP/1.1\r\nHost: [::1]:80\r\n\r\n" + next, ""},
		{"Host with slash", "GET {p}/a HTTP/1.1\r\nHost: h/x\r\n\r\n" + next, ""},
		{"Host with userinfo", "GET {p}/a HTTP/1.1\r\nHost: u@h\r\n\r\n" + next, ""},
		{"Host with brace", "GET {p}/a HTTP/1.1\r\nHost: h{x}\r\n\r\n" + next, ""},
		{"fragment in target", "GET {p}/a#x HTTP/1.1\r\n" + host + "\r\n" + next, "a # in the target is refused (Go reads it into the path, fasthttp drops it)"},
		{"absolute-form target", "GET http://h{p}/a HTTP/1.1\r\n" + host + "\r\n" + next, "absolute-form targets are refused (see README, Forwarding)"},
		{"request line extra space", "GET {p}/a  HTTP/1.1\r\n" + host + "\r\n" + next, ""},
		{"HTTP/1.2", "GET {p}/a HTTP/1.2\r\n" + host + "\r\n" + next, "only HTTP/1.0 and HTTP/1.1 are read"},
		{"HTTP/2.0", "GET {p}/a HTTP/2.0\r\n" + host + "\r\n" + next, ""},
		{"leading blank line", "\r\nGET {p}/a HTTP/1.1\r\n" + host + "\r\n" + next, ""},
		{"Expect other", post + "Expect: something\r\nContent-Length: 5\r\n\r\nhello" + next, ""},
		{"Expect 100-continue", post + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello" + next, ""},
		{"Expect 100-continue chunked", post + "Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + next, ""},
		{"GET with a body", "GET {p}/a HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" + next, ""},
		{"chunked then Content-Length request", post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + post + "Content-Length: 3\r\n\r\nabc" + next, ""},
	} {
		add(v.name, v.raw, v.stricter)
	}
	return cs
}

// goRead is what a Go net/http server read of one request.
type goRead struct {
	Method, Target string
	Probe          []string
	Body           string
}

// readByGo returns what up read of the requests whose target starts with
// prefix, leaving out a request whose body Go failed to read: Go did not
// read it whole.
func readByGo(up *testutil.Upstream, prefix string) []goRead {
	var got []goRead
	for _, r := range up.Requests() {
		p, _, _ := strings.Cut(strings.TrimPrefix(r.URI, "/"), "/")
		if r.BodyErr == nil && p == strings.TrimPrefix(prefix, "/") {
			got = append(got, goRead{r.Method, r.URI, r.Header.Values("X-Probe"), r.Body})
		}
	}
	return got
}

// writeRaw writes raw on a new connection to addr and reads what comes
// back until the connection closes or stays silent for a moment.
func writeRaw(tb testing.TB, addr, raw string) string {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		tb.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return string(got)
		}
	}
}

// TestDifferentialFraming feeds the corpus to a Go net/http server and to
// the sidecar on both data paths, in front of a Go net/http upstream
// (testutil.Upstream). Wherever Go reads requests whole, the upstream receives exactly those
// requests (method, target, X-Probe values, body); wherever Go refuses,
// nothing of the refused request or what follows reaches the upstream. A
// case marked stricter is one the sidecar refuses on purpose: it forwards
// what came before the refused request, and nothing after.
func TestDifferentialFraming(t *testing.T) {
	corpus := framingCorpus()
	reference := testutil.StartUpstream(t)
	refAddr := reference.Addr()
	var wg sync.WaitGroup
	for i := range corpus {
		wg.Go(func() { writeRaw(t, refAddr, strings.ReplaceAll(corpus[i].raw, "{p}", fmt.Sprintf("/c%d", i))) })
	}
	wg.Wait()
	onBothPaths(t, func(t *testing.T, loops string) {
		up := testutil.StartUpstream(t)
		s := startSidecar(t, []string{"--dev", "--upstream", up.URL(), "--event-loops", loops})
		addr := strings.TrimPrefix(s.url, "http://")
		for i, c := range corpus {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				p := fmt.Sprintf("/c%d", i)
				answer := writeRaw(t, addr, strings.ReplaceAll(c.raw, "{p}", p))
				want, got := readByGo(reference, p), readByGo(up, p)
				if c.stricter == "" {
					if !slices.EqualFunc(got, want, equalRecorded) {
						t.Errorf("upstream received %+v\nGo read %+v\nanswer: %q", got, want, answer)
					}
					return
				}
				// Refused on purpose: a prefix of what Go read.
				if len(got) > len(want) || !slices.EqualFunc(got, want[:len(got)], equalRecorded) {
					t.Errorf("stricter (%s): upstream received %+v\nGo read %+v\nanswer: %q", c.stricter, got, want, answer)
				}
				if len(got) < len(want) && !strings.Contains(answer, "HTTP/1.1 4") && !strings.Contains(answer, "HTTP/1.1 5") {
					t.Errorf("stricter (%s): no error answer: %q", c.stricter, answer)
				}
			})
		}
	})
}

func equalRecorded(a, b goRead) bool {
	return a.Method == b.Method && a.Target == b.Target && a.Body == b.Body && slices.Equal(a.Probe, b.Probe)
}
