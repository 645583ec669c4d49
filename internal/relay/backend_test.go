//go:build linux

package relay

// Tests of the backend (backend.go): the RESP parser and encoder, and the
// loops' own pipelined connection to a Redis-like server, end to end over
// loopback, against a scripted fake server (beFake) and a real
// redis-server (redistest).

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/resp"
	"github.com/direktiv/direktiv-authz/store/redistest"
)

// ---------------------------------------------------------------------------
// parseReply

func TestParseReplyTypes(t *testing.T) {
	nested8 := any(int64(7))
	for range 8 {
		nested8 = []any{nested8}
	}
	tests := []struct {
		in   string
		want any
		n    int // 0: len(in)
	}{
		// Simple strings.
		{in: "+OK\r\n", want: "OK"},
		{in: "+\r\n", want: ""},
		{in: "+hello world\r\n", want: "hello world"},
		{in: "+a\nb\r\n", want: "a\nb"}, // a bare LF is no line end
		// Errors.
		{in: "-ERR boom\r\n", want: ReplyError("ERR boom")},
		{in: "-NOSCRIPT No matching script. Please use EVAL.\r\n", want: ReplyError("NOSCRIPT No matching script. Please use EVAL.")},
		// Integers.
		{in: ":0\r\n", want: int64(0)},
		{in: ":42\r\n", want: int64(42)},
		{in: ":-42\r\n", want: int64(-42)},
		{in: ":9223372036854775807\r\n", want: int64(math.MaxInt64)},
		{in: ":-9223372036854775808\r\n", want: int64(math.MinInt64)},
		// Bulk strings.
		{in: "$5\r\nhello\r\n", want: "hello"},
		{in: "$0\r\n\r\n", want: ""},
		{in: "$-1\r\n", want: nil},
		{in: "$4\r\na\r\nb\r\n", want: "a\r\nb"}, // CRLF inside: the length rules
		{in: "$3\r\n\x00\xff$\r\n", want: "\x00\xff$"},
		{in: "$2\r\n\r\n\r\n", want: "\r\n"},
		// Arrays.
		{in: "*0\r\n", want: []any{}},
		{in: "*-1\r\n", want: nil},
		{in: "*1\r\n*-1\r\n", want: []any{nil}},
		{in: "*3\r\n:1\r\n$1\r\nx\r\n$-1\r\n", want: []any{int64(1), "x", nil}},
		{in: "*2\r\n*1\r\n+a\r\n*0\r\n", want: []any{[]any{"a"}, []any{}}},
		{in: "*2\r\n-ERR x\r\n:1\r\n", want: []any{ReplyError("ERR x"), int64(1)}},
		{in: "*4\r\n+s\r\n$4\r\nb\r\nk\r\n:-1\r\n*2\r\n$0\r\n\r\n*1\r\n:9\r\n",
			want: []any{"s", "b\r\nk", int64(-1), []any{"", []any{int64(9)}}}},
		{in: strings.Repeat("*1\r\n", 8) + ":7\r\n", want: nested8}, // depth limit: 8 arrays deep
		// Only the first reply is taken.
		{in: "+OK\r\n:1\r\n", want: "OK", n: 5},
		{in: "$-1\r\n$-1\r\n", want: nil, n: 5},
		{in: "*1\r\n:1\r\n*1\r\n", want: []any{int64(1)}, n: 8},
		{in: ":5\r\ngarbage", want: int64(5), n: 4},
	}
	for _, tt := range tests {
		v, n, err := parseReply([]byte(tt.in), 0)
		wantN := tt.n
		if wantN == 0 {
			wantN = len(tt.in)
		}
		if err != nil || n != wantN || !reflect.DeepEqual(v, tt.want) {
			t.Errorf("parseReply(%q) = %#v, %d, %v; want %#v, %d, nil", tt.in, v, n, err, tt.want, wantN)
		}
	}
}

func TestParseReplyDepth(t *testing.T) {
	deep := func(arrays int, leaf string) []byte { return []byte(strings.Repeat("*1\r\n", arrays) + leaf) }
	for _, leaf := range []string{":1\r\n", "*0\r\n", "*-1\r\n"} {
		// The leaf is an array too for the last two: it counts.
		arrays := 8
		if leaf[0] == '*' {
			arrays = 7
		}
		if _, n, err := parseReply(deep(arrays, leaf), 0); err != nil || n != len(deep(arrays, leaf)) {
			t.Errorf("%d arrays and %q: n %d, err %v; want it parsed", arrays, leaf, n, err)
		}
		if v, n, err := parseReply(deep(arrays+1, leaf), 0); err == nil || n != 0 || v != nil {
			t.Errorf("%d arrays and %q: %#v, %d, %v; want an error", arrays+1, leaf, v, n, err)
		}
	}
	// depth is where the parse starts.
	if _, _, err := parseReply([]byte("*0\r\n"), 7); err != nil {
		t.Errorf("an array at depth 7: %v", err)
	}
	for _, in := range []string{"*0\r\n", "*-1\r\n", "*1\r\n:1\r\n"} {
		if _, n, err := parseReply([]byte(in), 8); err == nil || n != 0 {
			t.Errorf("%q at depth 8: n %d, err %v; want an error", in, n, err)
		}
	}
	// Depth limits arrays only.
	if v, n, err := parseReply([]byte(":1\r\n"), 8); err != nil || n != 4 || v != int64(1) {
		t.Errorf("an integer at depth 8: %#v, %d, %v", v, n, err)
	}
}

// beReplies are well-formed replies of every type, with their values.
var beReplies = []struct {
	raw  string
	want any
}{
	{"+OK\r\n", "OK"},
	{"-ERR unknown command 'FOO'\r\n", ReplyError("ERR unknown command 'FOO'")},
	{":1234567\r\n", int64(1234567)},
	{":-1\r\n", int64(-1)},
	{"$12\r\nhello\r\nworld\r\n", "hello\r\nworld"},
	{"$0\r\n\r\n", ""},
	{"$-1\r\n", nil},
	{"*-1\r\n", nil},
	{"*0\r\n", []any{}},
	{"*3\r\n$3\r\nfoo\r\n$-1\r\n:7\r\n", []any{"foo", nil, int64(7)}},
	{"*2\r\n*2\r\n:1\r\n+two\r\n*1\r\n-ERR inner\r\n", []any{[]any{int64(1), "two"}, []any{ReplyError("ERR inner")}}},
	{"+\r\n", ""},
}

// TestParseReplyIncomplete cuts each reply, and a buffer of them all, at
// every point: a prefix is no reply yet (n 0, no error), never an error.
func TestParseReplyIncomplete(t *testing.T) {
	var all []byte
	for _, r := range beReplies {
		all = append(all, r.raw...)
		for k := range len(r.raw) {
			if v, n, err := parseReply([]byte(r.raw[:k]), 0); v != nil || n != 0 || err != nil {
				t.Errorf("prefix %q of %q: %#v, %d, %v; want nil, 0, nil", r.raw[:k], r.raw, v, n, err)
			}
		}
	}
	// Walk the buffer reply by reply, each cut at every point.
	off := 0
	for _, r := range beReplies {
		for k := off; k < off+len(r.raw); k++ {
			if v, n, err := parseReply(all[off:k], 0); v != nil || n != 0 || err != nil {
				t.Fatalf("buffer[%d:%d] %q: %#v, %d, %v; want nil, 0, nil", off, k, all[off:k], v, n, err)
			}
		}
		v, n, err := parseReply(all[off:], 0)
		if err != nil || n != len(r.raw) || !reflect.DeepEqual(v, r.want) {
			t.Fatalf("buffer[%d:]: %#v, %d, %v; want %#v, %d", off, v, n, err, r.want, len(r.raw))
		}
		off += n
	}
	// The buffer arriving in three pieces, cut at every pair of points,
	// parsed the way backend.replies does: every reply comes out once, in
	// order.
	for i := 0; i <= len(all); i++ {
		for j := i; j <= len(all); j++ {
			var in []byte
			var got []any
			for _, piece := range [][]byte{all[:i], all[i:j], all[j:]} {
				in = append(in, piece...)
				for {
					v, n, err := parseReply(in, 0)
					if err != nil {
						t.Fatalf("cut at %d and %d: %v", i, j, err)
					}
					if n == 0 {
						break
					}
					got = append(got, v)
					in = in[n:]
				}
			}
			if len(in) != 0 || len(got) != len(beReplies) {
				t.Fatalf("cut at %d and %d: %d replies, %q left", i, j, len(got), in)
			}
			for k, r := range beReplies {
				if !reflect.DeepEqual(got[k], r.want) {
					t.Fatalf("cut at %d and %d: reply %d is %#v, want %#v", i, j, k, got[k], r.want)
				}
			}
		}
	}
}

func TestParseReplyMalformed(t *testing.T) {
	long := "+" + strings.Repeat("a", 64<<10+1) // a line over 64 KiB without its end
	tests := []string{
		// Bad line ends.
		"+OK\rX",
		"+OK\r+\r\n",
		":1\r:2\r\n",
		"$3\r\nabcXY",
		"$3\r\nabc\rX",
		"$3\r\nabcd\r\n",
		"$3\r\nab\r\n\r\n",
		"$0\r\nX\r\n",
		"*1\r\n+a\rb",
		// Bad numbers.
		":\r\n",
		":abc\r\n",
		":1.5\r\n",
		":1 \r\n",
		":99999999999999999999\r\n",
		"$\r\n",
		"$abc\r\n",
		"$-2\r\n",
		"$1x\r\n",
		"$67108865\r\n", // over maxReply
		"*\r\n",
		"*x\r\n",
		"*-2\r\n",
		"*67108865\r\n",
		// Unknown type bytes, RESP3's among them.
		"?foo\r\n",
		"X\r\n",
		"_\r\n",
		"#t\r\n",
		",1.5\r\n",
		"%1\r\n+a\r\n+b\r\n",
		"~0\r\n",
		"\r\n+OK\r\n",
		// Inside an array.
		"*2\r\n:1\r\n:x\r\n",
		"*1\r\n?\r\n",
		"*2\r\n+ok\r\n$3\r\nabcde\r\n",
		"*1\r\n*1\r\n$-5\r\n",
		// Too deep.
		strings.Repeat("*1\r\n", 9) + ":1\r\n",
		strings.Repeat("*2\r\n", 9) + ":1\r\n:1\r\n",
		// Too long a line.
		long,
	}
	for _, in := range tests {
		v, n, err := parseReply([]byte(in), 0)
		if err == nil || n != 0 || v != nil {
			t.Errorf("parseReply(%.40q) = %#v, %d, %v; want an error", in, v, n, err)
		}
		if err != nil && !errors.Is(err, errProtocol) {
			t.Errorf("parseReply(%.40q): error %v, want errProtocol", in, err)
		}
	}
	// A long line that has its end is parsed as it stands (the limit is on
	// what is buffered without one).
	if v, n, err := parseReply([]byte(long+"\r\n"), 0); err != nil || n != len(long)+2 || v != long[1:] {
		t.Errorf("a 64 KiB simple string with its CRLF: %.20q, %d, %v", v, n, err)
	}
	// Exactly 64 KiB without a line end is still waited on.
	if v, n, err := parseReply([]byte(long[:64<<10]), 0); err != nil || n != 0 || v != nil {
		t.Errorf("64 KiB without a line end: %.20q, %d, %v", v, n, err)
	}
}

// beEncode writes v as RESP2 the way parseReply reads it back: strings as
// bulk strings.
func beEncode(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "$-1\r\n"...)
	case string:
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, "\r\n"...)
		b = append(b, v...)
		return append(b, "\r\n"...)
	case ReplyError:
		return append(append(append(b, '-'), v...), "\r\n"...)
	case int64:
		return append(strconv.AppendInt(append(b, ':'), v, 10), "\r\n"...)
	case []any:
		b = strconv.AppendInt(append(b, '*'), int64(len(v)), 10)
		b = append(b, "\r\n"...)
		for _, e := range v {
			b = beEncode(b, e)
		}
		return b
	}
	panic(fmt.Sprintf("beEncode: %T", v))
}

func FuzzParseReply(f *testing.F) {
	for _, r := range beReplies {
		f.Add([]byte(r.raw))
	}
	for _, s := range []string{
		"", "+", "+OK\r", "+OK\r\n+OK\r\n", "$5\r\nhel", "$-1\r\n", "*2\r\n:1\r\n", "*-1\r\n",
		strings.Repeat("*1\r\n", 8) + ":1\r\n", strings.Repeat("*1\r\n", 9) + ":1\r\n",
		":-0\r\n", "$+3\r\nabc\r\n", "-\r\n", "*1\r\n-\r\n", "$3\r\nab\r\r\n", "?\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, n, err := parseReply(in, 0)
		if n < 0 || n > len(in) {
			t.Fatalf("n %d of %d bytes", n, len(in))
		}
		if err != nil {
			if n != 0 || v != nil {
				t.Fatalf("error %v with n %d and %#v", err, n, v)
			}
			return
		}
		if n == 0 {
			if v != nil {
				t.Fatalf("n 0 with %#v", v)
			}
			return
		}
		// The reply alone parses the same.
		v2, n2, err := parseReply(in[:n], 0)
		if err != nil || n2 != n || !reflect.DeepEqual(v, v2) {
			t.Fatalf("re-parsed %q: %#v, %d, %v; first %#v, %d", in[:n], v2, n2, err, v, n)
		}
		// Every prefix of it is incomplete, never an error.
		if n <= 4096 {
			for k := range n {
				if pv, pn, perr := parseReply(in[:k], 0); pv != nil || pn != 0 || perr != nil {
					t.Fatalf("prefix %q of %q: %#v, %d, %v", in[:k], in[:n], pv, pn, perr)
				}
			}
		}
		// What it parsed to encodes back to a reply of the same value.
		enc := beEncode(nil, v)
		v3, n3, err := parseReply(enc, 0)
		if err != nil || n3 != len(enc) || !reflect.DeepEqual(v, v3) {
			t.Fatalf("%#v encoded as %q parses to %#v, %d, %v", v, enc, v3, n3, err)
		}
	})
}

// ---------------------------------------------------------------------------
// AppendCommand

func TestAppendCommand(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "*0\r\n"},
		{[]string{"PING"}, "*1\r\n$4\r\nPING\r\n"},
		{[]string{"SET", "k", "v"}, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"},
		{[]string{"SET", "", "a\r\nb"}, "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"},
		{[]string{"ECHO", "é€"}, "*2\r\n$4\r\nECHO\r\n$5\r\né€\r\n"},
		{[]string{"ECHO", "\x00\xff"}, "*2\r\n$4\r\nECHO\r\n$2\r\n\x00\xff\r\n"},
		{[]string{"EVALSHA", "0123456789abcdef0123456789abcdef01234567", "2", "key:a", "key:b", "arg"},
			"*6\r\n$7\r\nEVALSHA\r\n$40\r\n0123456789abcdef0123456789abcdef01234567\r\n$1\r\n2\r\n$5\r\nkey:a\r\n$5\r\nkey:b\r\n$3\r\narg\r\n"},
		{[]string{"A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L"},
			"*12\r\n$1\r\nA\r\n$1\r\nB\r\n$1\r\nC\r\n$1\r\nD\r\n$1\r\nE\r\n$1\r\nF\r\n$1\r\nG\r\n$1\r\nH\r\n$1\r\nI\r\n$1\r\nJ\r\n$1\r\nK\r\n$1\r\nL\r\n"},
		{[]string{"SET", "k", strings.Repeat("v", 1000)}, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\n" + strings.Repeat("v", 1000) + "\r\n"},
	}
	for _, tt := range tests {
		if got := string(resp.AppendCommand(nil, tt.args...)); got != tt.want {
			t.Errorf("resp.AppendCommand(%q) = %q, want %q", tt.args, got, tt.want)
		}
		// It appends, leaving what is there.
		prefix := []byte("*1\r\n$4\r\nPING\r\n")
		buf := make([]byte, len(prefix), 1024)
		copy(buf, prefix)
		if got := string(resp.AppendCommand(buf, tt.args...)); got != string(prefix)+tt.want {
			t.Errorf("resp.AppendCommand(prefix, %q) = %q", tt.args, got)
		}
		// A command is an array of bulk strings: it parses as one.
		want := []any{}
		for _, a := range tt.args {
			want = append(want, a)
		}
		if v, n, err := parseReply([]byte(tt.want), 0); err != nil || n != len(tt.want) || !reflect.DeepEqual(v, want) {
			t.Errorf("%q parses to %#v, %d, %v", tt.want, v, n, err)
		}
	}
	// Pipelined commands are one buffer.
	var b []byte
	b = resp.AppendCommand(b, "MULTI")
	b = resp.AppendCommand(b, "INCR", "n")
	b = resp.AppendCommand(b, "EXEC")
	if want := "*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*1\r\n$4\r\nEXEC\r\n"; string(b) != want {
		t.Errorf("three commands: %q, want %q", b, want)
	}
}

// ---------------------------------------------------------------------------
// A fake Redis

// beCmd is a command the fake server received.
type beCmd struct {
	Conn int // the connection: 1 is the first accepted
	Args []string
	Raw  string // as received
}

func (c beCmd) String() string { return fmt.Sprintf("%d:%s", c.Conn, strings.Join(c.Args, " ")) }

// beAct is what the fake server does for a command.
type beAct struct {
	Reply string // written back, raw; "" (without Close): no reply
	Close bool   // close the connection after Reply
}

// newHoldFake is a fake backend that answers HOLD with "held" once release
// is closed, and everything else as beDefault.
func newHoldFake(t *testing.T) (*beFake, chan struct{}) {
	release := make(chan struct{})
	f := newBeFake(t, "", nil)
	f.script = func(_ int, args []string) beAct {
		if args[0] == "HOLD" {
			select {
			case <-release:
			case <-f.quit:
			}
			return beAct{Reply: "+held\r\n"}
		}
		return beDefault(args)
	}
	return f, release
}

// beFake is a Redis-like server: it reads RESP arrays of bulk strings,
// records them, and answers each as its script says, in order. Replies to
// commands that arrived together go out with one write, as Redis does.
type beFake struct {
	ln     net.Listener
	addr   string
	script func(conn int, args []string) beAct // nil: beDefault
	slow   bool                                // write replies byte by byte
	quit   chan struct{}                       // closed at the test's end: scripts that wait give up
	wg     sync.WaitGroup

	mu    sync.Mutex
	cmds  []beCmd
	conns []net.Conn
	ended int      // connections that ended
	bad   []string // protocol errors in what the relay sent
}

// beDefault answers ECHO with its argument, PING with PONG and anything
// else with OK.
func beDefault(args []string) beAct {
	switch strings.ToUpper(args[0]) {
	case "ECHO":
		if len(args) == 2 {
			return beAct{Reply: beBulk(args[1])}
		}
	case "PING":
		return beAct{Reply: "+PONG\r\n"}
	}
	return beAct{Reply: "+OK\r\n"}
}

func beBulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

// newBeFake starts a fake server on addr ("": a free port).
func newBeFake(tb testing.TB, addr string, script func(conn int, args []string) beAct) *beFake {
	tb.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	f := &beFake{ln: ln, addr: ln.Addr().String(), script: script, quit: make(chan struct{})}
	f.wg.Add(1)
	go f.accept()
	tb.Cleanup(func() {
		close(f.quit)
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		done := make(chan struct{})
		go func() { f.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(ioTimeout):
			tb.Errorf("the fake server's goroutines did not end")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, b := range f.bad {
			tb.Errorf("the fake server got a malformed command: %s", b)
		}
	})
	return f
}

func (f *beFake) accept() {
	defer f.wg.Done()
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, conn)
		n := len(f.conns)
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(conn, n)
	}
}

var errBeProto = errors.New("not a RESP array of bulk strings")

// beReadCommand reads one command: its arguments and its bytes.
func beReadCommand(br *bufio.Reader) ([]string, []byte, error) {
	var raw []byte
	line := func() (int, error) {
		s, err := br.ReadString('\n')
		raw = append(raw, s...)
		if err != nil {
			if len(raw) > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if len(s) < 4 || !strings.HasSuffix(s, "\r\n") {
			return 0, fmt.Errorf("%w: line %q", errBeProto, s)
		}
		return strconv.Atoi(s[1 : len(s)-2])
	}
	n, err := line()
	if err != nil {
		return nil, raw, err
	}
	if raw[0] != '*' || n < 1 {
		return nil, raw, fmt.Errorf("%w: %q", errBeProto, raw)
	}
	args := make([]string, 0, n)
	for range n {
		start := len(raw)
		size, err := line()
		if err != nil {
			return nil, raw, err
		}
		if raw[start] != '$' || size < 0 {
			return nil, raw, fmt.Errorf("%w: %q", errBeProto, raw[start:])
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, raw, err
		}
		raw = append(raw, b...)
		if string(b[size:]) != "\r\n" {
			return nil, raw, fmt.Errorf("%w: bulk string %q", errBeProto, b)
		}
		args = append(args, string(b[:size]))
	}
	return args, raw, nil
}

func (f *beFake) serve(conn net.Conn, n int) {
	defer f.wg.Done()
	defer func() {
		conn.Close()
		f.mu.Lock()
		f.ended++
		f.mu.Unlock()
	}()
	br := bufio.NewReader(conn)
	bw := bufio.NewWriter(conn)
	for {
		args, raw, err := beReadCommand(br)
		if err != nil {
			if errors.Is(err, errBeProto) || errors.Is(err, strconv.ErrSyntax) || errors.Is(err, io.ErrUnexpectedEOF) {
				f.mu.Lock()
				f.bad = append(f.bad, fmt.Sprintf("%v (after %q)", err, raw))
				f.mu.Unlock()
			}
			return
		}
		f.mu.Lock()
		f.cmds = append(f.cmds, beCmd{Conn: n, Args: args, Raw: string(raw)})
		f.mu.Unlock()
		script := f.script
		if script == nil {
			script = func(_ int, args []string) beAct { return beDefault(args) }
		}
		act := script(n, args)
		if f.slow {
			for i := range len(act.Reply) {
				if _, err := conn.Write([]byte{act.Reply[i]}); err != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		} else {
			bw.WriteString(act.Reply)
		}
		if act.Close {
			bw.Flush()
			return
		}
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}

func (f *beFake) commands() []beCmd {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

func (f *beFake) accepted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

func (f *beFake) endedConns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ended
}

// expectCommands checks the commands received: want are "conn:args".
func (f *beFake) expectCommands(tb testing.TB, want ...string) []beCmd {
	tb.Helper()
	got := f.commands()
	var s []string
	for _, c := range got {
		s = append(s, c.String())
	}
	if !slices.Equal(s, want) {
		tb.Fatalf("the server got %q, want %q", s, want)
	}
	return got
}

// ---------------------------------------------------------------------------
// A Handler answering with Calls

// beProbe answers every request on the loop with a Call of the command its
// target names, /CMD/arg/arg... (/direct/x: with a response of its own, no
// Call), and records what Answer and Done were given.
type beProbe struct {
	// done, if set, makes Done's Reply; otherwise 200 with the reply
	// described (beDescribe), or 503 with the error.
	done func(target string, v any, err error) Reply

	mu    sync.Mutex
	raws  []string // the request bytes each Answer got
	dones []beDone
	loops map[uint64]bool // the goroutines Answer and Done ran on
}

type beDone struct {
	Target string
	Reply  any
	Err    error
	At     time.Time
}

func beResp(status int, body string) []byte {
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n%s", status, statusText(status), len(body), body)
}

// beDescribe writes a reply as the tests compare it.
func beDescribe(v any) string {
	switch v := v.(type) {
	case nil:
		return "nil"
	case int64:
		return "int:" + strconv.FormatInt(v, 10)
	case string:
		return strconv.Quote(v)
	case ReplyError:
		return "replyerror:" + strconv.Quote(string(v))
	case []any:
		var s []string
		for _, e := range v {
			s = append(s, beDescribe(e))
		}
		return "[" + strings.Join(s, " ") + "]"
	}
	return fmt.Sprintf("unexpected %T", v)
}

func beTargetCmd(target string) []byte {
	return resp.AppendCommand(nil, strings.Split(strings.TrimPrefix(target, "/"), "/")...)
}

func (p *beProbe) onLoop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loops == nil {
		p.loops = map[uint64]bool{}
	}
	p.loops[goid()] = true
}

func (p *beProbe) decide(r *Request) Verdict {
	target := string(r.Target)
	return Verdict{Action: Answer, Answer: func(raw []byte) Reply {
		p.onLoop()
		p.mu.Lock()
		p.raws = append(p.raws, string(raw))
		p.mu.Unlock()
		if body, ok := strings.CutPrefix(target, "/direct/"); ok {
			return Reply{Resp: beResp(200, "direct "+body)}
		}
		return Reply{Call: &Call{Cmd: beTargetCmd(target), Done: func(v any, err error) Reply {
			p.onLoop()
			p.mu.Lock()
			p.dones = append(p.dones, beDone{Target: target, Reply: v, Err: err, At: time.Now()})
			p.mu.Unlock()
			if p.done != nil {
				return p.done(target, v, err)
			}
			return beDefaultDone(v, err)
		}}}
	}}
}

func beDefaultDone(v any, err error) Reply {
	if err != nil {
		return Reply{Resp: beResp(503, "error: "+err.Error())}
	}
	return Reply{Resp: beResp(200, beDescribe(v))}
}

func (p *beProbe) doneCalls() []beDone {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.dones)
}

func (p *beProbe) waitDones(tb testing.TB, n int) []beDone {
	tb.Helper()
	return waitCalls(tb, "Done", p.doneCalls, n)
}

func (p *beProbe) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.raws)
}

// beStart starts a relay with one loop whose backend is addr and whose
// Decide is p's.
func beStart(tb testing.TB, addr string, p *beProbe, opt func(*Options)) *env {
	tb.Helper()
	return start(tb, setup{decide: p.decide, opt: func(o *Options) {
		o.Loops = 1
		o.Backend = BackendOptions{Addr: addr, Timeout: 3 * time.Second}
		if opt != nil {
			opt(o)
		}
	}})
}

// backendState is what the loops' backends hold: calls in flight, bytes not
// yet written, and whether a connection is open.
func backendState(tb testing.TB, r *Relay) (calls, unwritten, open int) {
	tb.Helper()
	onLoops(tb, r, func(l *loop) {
		calls += len(l.be.calls)
		unwritten += len(l.be.out) - l.be.woff
		if l.be.fd >= 0 {
			open++
		}
	})
	return
}

// waitWritten waits until the backends hold n calls, all written.
func waitWritten(tb testing.TB, r *Relay, n int) {
	tb.Helper()
	waitFor(tb, fmt.Sprintf("%d calls written", n), func() bool {
		calls, unwritten, open := backendState(tb, r)
		return calls == n && unwritten == 0 && open > 0
	})
}

// beExpect reads a response and checks its status and body.
func (c *tconn) beExpect(status int, body string) *http.Response {
	c.tb.Helper()
	resp, got := c.response("GET")
	expectStatus(c.tb, resp, got, status, body)
	return resp
}

// ---------------------------------------------------------------------------
// End to end, against the fake server

// TestBackendCall: a request answered after a Call gets the response its
// Done made of the reply; the server gets exactly the command; Answer sees
// the request's bytes whole; Answer and Done run on the loop.
func TestBackendCall(t *testing.T) {
	f := newBeFake(t, "", func(_ int, args []string) beAct {
		switch args[0] {
		case "INT":
			return beAct{Reply: ":-42\r\n"}
		case "NIL":
			return beAct{Reply: "$-1\r\n"}
		case "NILARR":
			return beAct{Reply: "*-1\r\n"}
		case "EMPTY":
			return beAct{Reply: "$0\r\n\r\n"}
		case "STATUS":
			return beAct{Reply: "+QUEUED\r\n"}
		case "ARR":
			return beAct{Reply: "*4\r\n:1\r\n$2\r\nxy\r\n$-1\r\n*2\r\n+a\r\n-ERR in\r\n"}
		case "ERR":
			return beAct{Reply: "-ERR boom here\r\n"}
		}
		return beDefault(args)
	})
	p := &beProbe{}
	e := beStart(t, f.addr, p, nil)
	c := e.dial(t)

	post := "POST /ECHO/hello HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-A: b\r\n\r\nworld"
	c.send(post)
	c.beExpect(200, `"hello"`)
	f.expectCommands(t, "1:ECHO hello")
	if got := f.commands()[0].Raw; got != "*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n" {
		t.Fatalf("the server got %q", got)
	}
	if got := p.requests(); len(got) != 1 || got[0] != post {
		t.Fatalf("Answer got %q, want %q", got, post)
	}

	tests := []struct {
		target string
		status int
		body   string
		reply  any
		err    error
	}{
		{"/INT", 200, "int:-42", int64(-42), nil},
		{"/NIL", 200, "nil", nil, nil},
		{"/NILARR", 200, "nil", nil, nil},
		{"/EMPTY", 200, `""`, "", nil},
		{"/STATUS", 200, `"QUEUED"`, "QUEUED", nil},
		{"/ARR", 200, `[int:1 "xy" nil ["a" replyerror:"ERR in"]]`, []any{int64(1), "xy", nil, []any{"a", ReplyError("ERR in")}}, nil},
		{"/ERR", 503, "error: ERR boom here", nil, ReplyError("ERR boom here")},
		{"/ECHO/again", 200, `"again"`, "again", nil},
	}
	for i, tt := range tests {
		resp, body := c.get(tt.target)
		expectStatus(t, resp, body, tt.status, tt.body)
		d := p.doneCalls()[i+1]
		if d.Target != tt.target || !reflect.DeepEqual(d.Reply, tt.reply) || d.Err != tt.err {
			t.Fatalf("%s: Done got %#v, %#v; want %#v, %#v", tt.target, d.Reply, d.Err, tt.reply, tt.err)
		}
		if tt.err != nil {
			if _, ok := d.Err.(ReplyError); !ok {
				t.Fatalf("%s: Done's error is a %T, want a ReplyError", tt.target, d.Err)
			}
		}
	}
	p.waitDones(t, len(tests)+1)
	if n := f.accepted(); n != 1 {
		t.Fatalf("%d backend connections, want 1", n)
	}
	// Answer and Done ran on the loop: the goroutine Decide ran on.
	decides := e.h.decideCalls()
	p.mu.Lock()
	loops := p.loops
	p.mu.Unlock()
	if len(loops) != 1 || !loops[decides[0].Loop] {
		t.Fatalf("Answer and Done ran on %v, Decide on %d", loops, decides[0].Loop)
	}
	// Answered requests are no exchanges.
	if d := e.h.doneCalls(); len(d) != 0 {
		t.Fatalf("Handler.Done calls %+v", d)
	}
	if n := len(e.up.requests()); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
}

// TestBackendReplyInPieces: replies that come a byte at a time, several
// in flight, each get to their own call.
func TestBackendReplyInPieces(t *testing.T) {
	f := newBeFake(t, "", func(_ int, args []string) beAct {
		if args[0] == "ARR" {
			return beAct{Reply: "*3\r\n:1\r\n$5\r\nhe\r\no\r\n*1\r\n+" + args[1] + "\r\n"}
		}
		return beDefault(args)
	})
	f.slow = true
	p := &beProbe{}
	e := beStart(t, f.addr, p, nil)
	var conns []*tconn
	for i := range 3 {
		c := e.dial(t)
		c.send(fmt.Sprintf("GET /ARR/v%d HTTP/1.1\r\nHost: h\r\n\r\n", i))
		conns = append(conns, c)
	}
	for i, c := range conns {
		c.beExpect(200, fmt.Sprintf(`[int:1 "he\r\no" ["v%d"]]`, i))
	}
	if n := f.accepted(); n != 1 {
		t.Fatalf("%d backend connections", n)
	}
}

// TestBackendLargeReply: a reply larger than the read buffer.
func TestBackendLargeReply(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 20000) // 320,000 bytes
	f := newBeFake(t, "", func(_ int, args []string) beAct {
		if args[0] == "BIG" {
			return beAct{Reply: "*2\r\n" + beBulk(big) + ":7\r\n"}
		}
		return beDefault(args)
	})
	p := &beProbe{done: func(_ string, v any, err error) Reply {
		if a, ok := v.([]any); ok && len(a) == 2 && a[0] == big && a[1] == int64(7) {
			return Reply{Resp: beResp(200, "big ok")}
		}
		return beDefaultDone(v, err)
	}}
	e := beStart(t, f.addr, p, nil)
	c := e.dial(t)
	for range 2 {
		c.send("GET /BIG HTTP/1.1\r\nHost: h\r\n\r\nGET /ECHO/after HTTP/1.1\r\nHost: h\r\n\r\n")
		c.beExpect(200, "big ok")
		c.beExpect(200, `"after"`)
	}
}

// TestBackendConcurrentClients: many clients at once, on two loops, each
// with its calls pipelined with the others' on its loop's connection: each
// gets the reply to its own command.
func TestBackendConcurrentClients(t *testing.T) {
	const clients, requests = 50, 20
	f := newBeFake(t, "", nil)
	p := &beProbe{}
	e := beStart(t, f.addr, p, func(o *Options) { o.Loops = 2 })
	if !eachClient(t, e.addr, clients, func(i int, conn net.Conn, br *bufio.Reader) error {
		for j := range requests {
			v := fmt.Sprintf("c%d-r%d", i, j)
			if _, err := io.WriteString(conn, "GET /ECHO/"+v+" HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", v, err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if resp.StatusCode != 200 || string(body) != strconv.Quote(v) {
				return fmt.Errorf("%s: got %d %q", v, resp.StatusCode, body)
			}
		}
		return nil
	}) {
		return
	}
	cmds := f.commands()
	if len(cmds) != clients*requests {
		t.Fatalf("the server got %d commands, want %d", len(cmds), clients*requests)
	}
	seen := map[string]bool{}
	for _, c := range cmds {
		if len(c.Args) != 2 || c.Args[0] != "ECHO" || seen[c.Args[1]] {
			t.Fatalf("command %q (again?)", c.Args)
		}
		seen[c.Args[1]] = true
	}
	// One connection per loop, at most: no redial.
	if n := f.accepted(); n < 1 || n > 2 {
		t.Fatalf("%d backend connections for 2 loops", n)
	}
	p.waitDones(t, clients*requests)
}

// TestBackendPipelinedRequests: requests pipelined on one client connection
// are answered in order, their commands sent in order; those answered at
// once wait their turn.
func TestBackendPipelinedRequests(t *testing.T) {
	f := newBeFake(t, "", nil)
	p := &beProbe{}
	e := beStart(t, f.addr, p, nil)
	c := e.dial(t)
	var reqs []string
	var want []string
	var wantCmds []string
	for i := range 12 {
		v := "p" + strconv.Itoa(i)
		switch i % 4 {
		case 1:
			reqs = append(reqs, "GET /direct/"+v+" HTTP/1.1\r\nHost: h\r\n\r\n")
			want = append(want, "direct "+v)
		case 2:
			body := "b" + v[1:] + "x"
			reqs = append(reqs, "POST /ECHO/"+v+" HTTP/1.1\r\nHost: h\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
			want = append(want, strconv.Quote(v))
			wantCmds = append(wantCmds, "1:ECHO "+v)
		default:
			reqs = append(reqs, "GET /ECHO/"+v+" HTTP/1.1\r\nHost: h\r\n\r\n")
			want = append(want, strconv.Quote(v))
			wantCmds = append(wantCmds, "1:ECHO "+v)
		}
	}
	c.send(strings.Join(reqs, ""))
	for i, w := range want {
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || body != w {
			t.Fatalf("response %d: %d %q, want %q", i, resp.StatusCode, body, w)
		}
	}
	f.expectCommands(t, wantCmds...)
	if got := p.requests(); !slices.Equal(got, reqs) {
		t.Fatalf("Answer got\n%q\nwant\n%q", got, reqs)
	}
	// The connection goes on.
	c.beGet("/ECHO/last", 200, `"last"`)
}

func (c *tconn) beGet(target string, status int, body string) {
	c.tb.Helper()
	resp, got := c.get(target)
	expectStatus(c.tb, resp, got, status, body)
}

// TestBackendInit: the Init commands go first on every new connection.
func TestBackendInit(t *testing.T) {
	f := newBeFake(t, "", func(_ int, args []string) beAct {
		if args[0] == "BYE" {
			return beAct{Reply: "+bye\r\n", Close: true}
		}
		return beDefault(args)
	})
	p := &beProbe{}
	init := [][]byte{resp.AppendCommand(nil, "AUTH", "user", "pw"), resp.AppendCommand(nil, "SELECT", "2")}
	e := beStart(t, f.addr, p, func(o *Options) { o.Backend.Init = init })
	c := e.dial(t)
	c.beGet("/ECHO/a", 200, `"a"`)
	c.beGet("/ECHO/b", 200, `"b"`)
	cmds := f.expectCommands(t, "1:AUTH user pw", "1:SELECT 2", "1:ECHO a", "1:ECHO b")
	if cmds[0].Raw != string(init[0]) || cmds[1].Raw != string(init[1]) {
		t.Fatalf("Init sent as %q %q", cmds[0].Raw, cmds[1].Raw)
	}
	// The server closes the connection: the next one starts with Init too.
	c.beGet("/BYE", 200, `"bye"`)
	waitFor(t, "the relay to see the close", func() bool { _, _, open := backendState(t, e.r); return open == 0 })
	c.beGet("/ECHO/c", 200, `"c"`)
	f.expectCommands(t, "1:AUTH user pw", "1:SELECT 2", "1:ECHO a", "1:ECHO b", "1:BYE",
		"2:AUTH user pw", "2:SELECT 2", "2:ECHO c")
	// Init replies are not handed to calls.
	for _, d := range p.waitDones(t, 4) {
		if d.Err != nil || d.Reply == "OK" {
			t.Fatalf("Done got %+v", d)
		}
	}
}

// TestBackendInitFails: an error reply to an Init command fails the calls
// on that connection, which is closed; the next call tries a new one.
func TestBackendInitFails(t *testing.T) {
	var accept atomic.Bool
	release := make(chan struct{})
	f := newBeFake(t, "", nil)
	f.script = func(conn int, args []string) beAct {
		if args[0] == "AUTH" {
			if conn == 1 {
				select { // until both calls are written
				case <-release:
				case <-f.quit:
				}
			}
			if !accept.Load() {
				return beAct{Reply: "-WRONGPASS invalid username-password pair or user is disabled.\r\n"}
			}
		}
		return beDefault(args)
	}
	p := &beProbe{}
	e := beStart(t, f.addr, p, func(o *Options) {
		o.Backend.Init = [][]byte{resp.AppendCommand(nil, "AUTH", "pw"), resp.AppendCommand(nil, "SELECT", "1")}
	})
	a, b := e.dial(t), e.dial(t)
	a.send("GET /ECHO/a HTTP/1.1\r\nHost: h\r\n\r\n")
	waitWritten(t, e.r, 1)
	b.send("GET /ECHO/b HTTP/1.1\r\nHost: h\r\n\r\n")
	waitWritten(t, e.r, 2)
	close(release)
	const msg = "error: redis refused the connection's set-up: WRONGPASS invalid username-password pair or user is disabled."
	a.beExpect(503, msg)
	b.beExpect(503, msg)
	for _, d := range p.waitDones(t, 2) {
		var re ReplyError
		if d.Reply != nil || d.Err == nil || !errors.As(d.Err, &re) || !strings.HasPrefix(string(re), "WRONGPASS") {
			t.Fatalf("Done got %#v, %v", d.Reply, d.Err)
		}
		if _, ok := d.Err.(ReplyError); ok {
			t.Fatalf("Done got the Init's error as the command's own: %v", d.Err)
		}
	}
	// The relay closed the connection.
	waitFor(t, "the connection closed", func() bool { return f.endedConns() == 1 })
	if _, _, open := backendState(t, e.r); open != 0 {
		t.Fatal("the relay kept the connection")
	}
	// A new connection, refused again.
	a.beGet("/ECHO/a2", 503, msg)
	// Accepted now.
	accept.Store(true)
	a.beGet("/ECHO/a3", 200, `"a3"`)
	b.beGet("/ECHO/b3", 200, `"b3"`)
	cmds := f.commands()
	var got []string
	for _, c := range cmds {
		got = append(got, c.String())
	}
	// On connection 1 the server may have read the commands after AUTH
	// before the relay closed it; the rest is exact.
	want := []string{"2:AUTH pw", "2:SELECT 1", "2:ECHO a2", "3:AUTH pw", "3:SELECT 1", "3:ECHO a3", "3:ECHO b3"}
	if len(got) < len(want) || !slices.Equal(got[len(got)-len(want):], want) || got[0] != "1:AUTH pw" {
		t.Fatalf("the server got %q", got)
	}
	for _, c := range got[:len(got)-len(want)] {
		if !strings.HasPrefix(c, "1:") {
			t.Fatalf("the server got %q", got)
		}
	}
	if n := f.accepted(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}

// TestBackendDown: with nothing listening the calls fail at once; once the
// server is up, the next call connects.
func TestBackendDown(t *testing.T) {
	addr := closedAddr(t)
	p := &beProbe{}
	e := beStart(t, addr, p, nil)
	c := e.dial(t)
	for i := range 3 {
		began := time.Now()
		resp, body := c.get("/ECHO/x" + strconv.Itoa(i))
		if took := time.Since(began); took > time.Second {
			t.Fatalf("the error took %s", took)
		}
		want := "error: connecting to redis " + addr + ": "
		if resp.StatusCode != 503 || !strings.HasPrefix(body, want) || !strings.Contains(body, "refused") {
			t.Fatalf("got %d %q, want 503 %q...refused", resp.StatusCode, body, want)
		}
	}
	for _, d := range p.waitDones(t, 3) {
		if d.Err == nil || d.Reply != nil {
			t.Fatalf("Done got %#v, %v", d.Reply, d.Err)
		}
		if _, ok := d.Err.(ReplyError); ok {
			t.Fatalf("Done got a ReplyError: %v", d.Err)
		}
	}
	f := newBeFake(t, addr, nil)
	c.beGet("/ECHO/up", 200, `"up"`)
	c.beGet("/ECHO/up2", 200, `"up2"`)
	f.expectCommands(t, "1:ECHO up", "1:ECHO up2")
}

// TestBackendResend: a connection that breaks after the command was
// written sends it once more, on a new connection; a second break fails
// the call.
func TestBackendResend(t *testing.T) {
	t.Run("once", func(t *testing.T) {
		f := newBeFake(t, "", func(conn int, args []string) beAct {
			if args[0] == "FLAKY" && conn == 1 {
				return beAct{Close: true}
			}
			if args[0] == "FLAKY" {
				return beAct{Reply: "+recovered\r\n"}
			}
			return beDefault(args)
		})
		p := &beProbe{}
		e := beStart(t, f.addr, p, nil)
		c := e.dial(t)
		c.beGet("/FLAKY", 200, `"recovered"`)
		f.expectCommands(t, "1:FLAKY", "2:FLAKY")
		p.waitDones(t, 1)
		c.beGet("/ECHO/next", 200, `"next"`)
		f.expectCommands(t, "1:FLAKY", "2:FLAKY", "2:ECHO next")
	})
	t.Run("twice", func(t *testing.T) {
		f := newBeFake(t, "", func(conn int, args []string) beAct {
			if args[0] == "BREAK" {
				return beAct{Close: true}
			}
			return beDefault(args)
		})
		p := &beProbe{}
		e := beStart(t, f.addr, p, nil)
		c := e.dial(t)
		resp, body := c.get("/BREAK")
		if resp.StatusCode != 503 || !(body == "error: redis closed the connection" || strings.HasPrefix(body, "error: reading from redis: ")) {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		d := p.waitDones(t, 1)
		if d[0].Err == nil || d[0].Reply != nil {
			t.Fatalf("Done got %#v, %v", d[0].Reply, d[0].Err)
		}
		time.Sleep(150 * time.Millisecond) // no third try
		f.expectCommands(t, "1:BREAK", "2:BREAK")
		// The next call gets a connection of its own, and both tries again.
		c.beGet("/ECHO/after", 200, `"after"`)
		f.expectCommands(t, "1:BREAK", "2:BREAK", "3:ECHO after")
		p.waitDones(t, 2)
	})
	t.Run("several in flight", func(t *testing.T) {
		release := make(chan struct{})
		f := newBeFake(t, "", nil)
		f.script = func(conn int, args []string) beAct {
			if args[0] == "STALL" && conn == 1 {
				select {
				case <-release:
				case <-f.quit:
				}
				return beAct{Close: true}
			}
			if args[0] == "STALL" {
				return beAct{Reply: "+stalled\r\n"}
			}
			return beDefault(args)
		}
		p := &beProbe{}
		e := beStart(t, f.addr, p, nil)
		var cs []*tconn
		for i, target := range []string{"/STALL", "/ECHO/b", "/ECHO/c"} {
			c := e.dial(t)
			c.send("GET " + target + " HTTP/1.1\r\nHost: h\r\n\r\n")
			waitWritten(t, e.r, i+1)
			cs = append(cs, c)
		}
		close(release)
		cs[0].beExpect(200, `"stalled"`)
		cs[1].beExpect(200, `"b"`)
		cs[2].beExpect(200, `"c"`)
		// Resent in order; connection 1 read only the first.
		f.expectCommands(t, "1:STALL", "2:STALL", "2:ECHO b", "2:ECHO c")
	})
	t.Run("malformed reply", func(t *testing.T) {
		f := newBeFake(t, "", func(conn int, args []string) beAct {
			if args[0] == "ODD" && conn == 1 {
				return beAct{Reply: "?what\r\n"}
			}
			if args[0] == "ODD" {
				return beAct{Reply: "+fine\r\n"}
			}
			return beDefault(args)
		})
		p := &beProbe{}
		e := beStart(t, f.addr, p, nil)
		c := e.dial(t)
		c.beGet("/ODD", 200, `"fine"`)
		f.expectCommands(t, "1:ODD", "2:ODD")
		waitFor(t, "connection 1 closed", func() bool { return f.endedConns() == 1 })
	})
	t.Run("reply to no command", func(t *testing.T) {
		f := newBeFake(t, "", func(conn int, args []string) beAct {
			if args[0] == "TWICE" {
				return beAct{Reply: "+one\r\n+two\r\n"}
			}
			return beDefault(args)
		})
		p := &beProbe{}
		e := beStart(t, f.addr, p, nil)
		c := e.dial(t)
		c.beGet("/TWICE", 200, `"one"`)
		// The stray reply closes the connection: it is out of step.
		waitFor(t, "connection 1 closed", func() bool { return f.endedConns() == 1 })
		c.beGet("/ECHO/x", 200, `"x"`)
		f.expectCommands(t, "1:TWICE", "2:ECHO x")
	})
}

// TestBackendTimeout: no reply within BackendOptions.Timeout fails the
// calls in flight; the connection is closed and the next call gets a new
// one.
func TestBackendTimeout(t *testing.T) {
	f := newBeFake(t, "", nil)
	f.script = func(conn int, args []string) beAct {
		if args[0] == "HANG" {
			<-f.quit // a hung server reads nothing more
			return beAct{}
		}
		return beDefault(args)
	}
	p := &beProbe{}
	e := beStart(t, f.addr, p, func(o *Options) { o.Backend.Timeout = 300 * time.Millisecond })
	a, b := e.dial(t), e.dial(t)
	began := time.Now()
	a.send("GET /HANG HTTP/1.1\r\nHost: h\r\n\r\n")
	waitWritten(t, e.r, 1)
	b.send("GET /ECHO/b HTTP/1.1\r\nHost: h\r\n\r\n") // behind it
	waitWritten(t, e.r, 2)
	const msg = "error: redis did not answer within 300ms"
	a.beExpect(503, msg)
	took := time.Since(began)
	b.beExpect(503, msg)
	if took < 300*time.Millisecond || took > 1200*time.Millisecond {
		t.Fatalf("the timeout came after %s, want 300ms and at most a sweep (100ms) more, with slack for a loaded machine", took)
	}
	for _, d := range p.waitDones(t, 2) {
		if d.Reply != nil || d.Err == nil || !strings.Contains(d.Err.Error(), "300ms") {
			t.Fatalf("Done got %#v, %v", d.Reply, d.Err)
		}
	}
	waitFor(t, "the connection closed", func() bool { _, _, open := backendState(t, e.r); return open == 0 })
	b.beGet("/ECHO/later", 200, `"later"`)
	f.expectCommands(t, "1:HANG", "2:ECHO later")
}

// TestBackendTimeoutStartsAtTheCall: calls that each get their reply in
// time are not failed however long the connection is busy.
func TestBackendTimeoutStartsAtTheCall(t *testing.T) {
	f := newBeFake(t, "", func(conn int, args []string) beAct {
		if args[0] == "SLOW" {
			time.Sleep(200 * time.Millisecond)
		}
		return beDefault(args)
	})
	p := &beProbe{}
	e := beStart(t, f.addr, p, func(o *Options) { o.Backend.Timeout = 300 * time.Millisecond })
	c := e.dial(t)
	for i := range 4 { // 800ms in all
		c.beGet("/SLOW/"+strconv.Itoa(i), 200, `"OK"`)
	}
	if n := f.accepted(); n != 1 {
		t.Fatalf("%d connections", n)
	}
}

// TestBackendCallAfterCall: a Done that returns another Call (a NOSCRIPT
// fallback): the second command goes out, its reply answers the client.
func TestBackendCallAfterCall(t *testing.T) {
	const script = "return 42"
	const sha = "1fa00e76656cc152ad327c13fe365858fd7be306"
	var scriptLoaded atomic.Bool
	f := newBeFake(t, "", func(_ int, args []string) beAct {
		switch args[0] {
		case "EVALSHA":
			if !scriptLoaded.Load() {
				return beAct{Reply: "-NOSCRIPT No matching script. Please use EVAL.\r\n"}
			}
			return beAct{Reply: ":42\r\n"}
		case "EVAL":
			scriptLoaded.Store(true)
			return beAct{Reply: ":42\r\n"}
		case "FAILEVAL":
			return beAct{Reply: "-ERR fallback failed\r\n"}
		}
		return beDefault(args)
	})
	var mu sync.Mutex
	var calls []string
	rec := func(s string) { mu.Lock(); calls = append(calls, s); mu.Unlock() }
	final := func(v any, err error) Reply {
		if err != nil {
			rec("final error " + err.Error())
		} else {
			rec("final " + beDescribe(v))
		}
		return beDefaultDone(v, err)
	}
	e := start(t, setup{opt: func(o *Options) {
		o.Loops = 1
		o.Backend = BackendOptions{Addr: f.addr}
	}, decide: func(r *Request) Verdict {
		fallback := resp.AppendCommand(nil, "EVAL", script, "0")
		if string(r.Target) == "/fail" {
			fallback = resp.AppendCommand(nil, "FAILEVAL")
		}
		return Verdict{Action: Answer, Answer: func([]byte) Reply {
			return Reply{Call: &Call{Cmd: resp.AppendCommand(nil, "EVALSHA", sha, "0"), Done: func(v any, err error) Reply {
				var re ReplyError
				if errors.As(err, &re) && strings.HasPrefix(string(re), "NOSCRIPT ") {
					rec("fallback after " + string(re))
					return Reply{Call: &Call{Cmd: fallback, Done: final}}
				}
				return final(v, err)
			}}}
		}}
	}})
	c := e.dial(t)
	c.beGet("/fail", 503, "error: ERR fallback failed")
	c.beGet("/eval", 200, "int:42")
	c.beGet("/eval", 200, "int:42") // loaded now: no fallback
	cmds := f.expectCommands(t, "1:EVALSHA "+sha+" 0", "1:FAILEVAL", "1:EVALSHA "+sha+" 0", "1:EVAL "+script+" 0", "1:EVALSHA "+sha+" 0")
	if want := "*3\r\n$4\r\nEVAL\r\n$9\r\nreturn 42\r\n$1\r\n0\r\n"; cmds[3].Raw != want {
		t.Fatalf("the fallback went out as %q, want %q", cmds[3].Raw, want)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"fallback after NOSCRIPT No matching script. Please use EVAL.", "final error ERR fallback failed",
		"fallback after NOSCRIPT No matching script. Please use EVAL.", "final int:42",
		"final int:42",
	}
	if !slices.Equal(calls, want) {
		t.Fatalf("Done calls %q, want %q", calls, want)
	}
}

// TestBackendClientLeaves: a client that goes while its call is in flight:
// Done still runs, its answer goes to a socket that has shut down (the
// connection is kept until then, as a client that only half-closed gets
// its answer), and the loop serves the others, each its own responses.
func TestBackendClientLeaves(t *testing.T) {
	f, release := newHoldFake(t)
	p := &beProbe{}
	e := beStart(t, f.addr, p, nil)
	a := e.dial(t)
	a.send("GET /HOLD HTTP/1.1\r\nHost: h\r\n\r\n")
	waitWritten(t, e.r, 1)
	a.Close() // its connection stays until the answer, which its socket refuses
	b := e.dial(t)
	b.send("GET /ECHO/b HTTP/1.1\r\nHost: h\r\n\r\n")
	waitWritten(t, e.r, 2)
	if n := openClients(e.r); n != 2 {
		t.Fatalf("%d client connections open with a's call in flight, want 2 (a's kept for its answer, and b)", n)
	}
	close(release)
	b.beExpect(200, `"b"`)
	d := p.waitDones(t, 2)
	if d[0].Target != "/HOLD" || d[0].Reply != "held" || d[0].Err != nil || d[1].Target != "/ECHO/b" || d[1].Reply != "b" {
		t.Fatalf("Done calls %+v", d)
	}
	b.beGet("/ECHO/b2", 200, `"b2"`)
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := b.br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatal("stray bytes for the new client")
	}
	// a's connection closed once its answer went to a socket that had
	// shut down.
	waitFor(t, "the client gone", func() bool { return openClients(e.r) == 1 })
}

// TestBackendClientLeavesThenError: the client gone, its call fails: Done
// runs with the error all the same.
func TestBackendClientLeavesThenError(t *testing.T) {
	f := newBeFake(t, "", nil)
	f.script = func(_ int, args []string) beAct {
		if args[0] == "HANG" {
			<-f.quit
		}
		return beDefault(args)
	}
	p := &beProbe{}
	e := beStart(t, f.addr, p, func(o *Options) { o.Backend.Timeout = 200 * time.Millisecond })
	a := e.dial(t)
	a.send("GET /HANG HTTP/1.1\r\nHost: h\r\n\r\n")
	waitWritten(t, e.r, 1)
	a.Close()
	d := p.waitDones(t, 1)
	if d[0].Err == nil || !strings.Contains(d[0].Err.Error(), "did not answer") {
		t.Fatalf("Done got %#v, %v", d[0].Reply, d[0].Err)
	}
	b := e.dial(t)
	b.beGet("/ECHO/b", 200, `"b"`)
}

// TestBackendHandoff: an Answer with neither response nor Call hands the
// connection off, the request with it; a Done with neither closes it.
func TestBackendHandoff(t *testing.T) {
	f := newBeFake(t, "", nil)
	p := &beProbe{}
	e := start(t, setup{opt: func(o *Options) {
		o.Loops = 1
		o.Backend = BackendOptions{Addr: f.addr}
	}, decide: func(r *Request) Verdict {
		switch string(r.Target) {
		case "/handoff":
			return Verdict{Action: Answer, Answer: func([]byte) Reply { return Reply{} }}
		case "/nofunc":
			return Verdict{Action: Answer}
		case "/done-nothing":
			return Verdict{Action: Answer, Answer: func([]byte) Reply {
				return Reply{Call: &Call{Cmd: resp.AppendCommand(nil, "PING"), Done: func(any, error) Reply { return Reply{} }}}
			}}
		}
		return p.decide(r)
	}})
	for _, target := range []string{"/handoff", "/nofunc"} {
		t.Run(target, func(t *testing.T) {
			before := e.ho.handed.Load()
			c := e.dial(t)
			c.send("POST " + target + " HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
			c.beExpect(299, "handed off")
			c.beGet("/ECHO/later", 299, "handed off") // the server's from now on
			if n := e.ho.handed.Load() - before; n != 1 {
				t.Fatalf("%d handoffs", n)
			}
			reqs := e.ho.requests()
			got := reqs[len(reqs)-2:]
			if got[0].Method != "POST" || got[0].URI != target || got[0].Body != "abc" || got[1].URI != "/ECHO/later" {
				t.Fatalf("the handoff server got %+v", got)
			}
		})
	}
	t.Run("done with nothing", func(t *testing.T) {
		before := e.ho.handed.Load()
		c := e.dial(t)
		c.send("GET /done-nothing HTTP/1.1\r\nHost: h\r\n\r\nGET /ECHO/x HTTP/1.1\r\nHost: h\r\n\r\n")
		c.expectClosed()
		if n := e.ho.handed.Load() - before; n != 0 {
			t.Fatalf("%d handoffs", n)
		}
	})
	if n := len(f.commands()); n != 1 { // the PING
		t.Fatalf("the server got %v", f.commands())
	}
}

// TestBackendClose: Reply.Close, and a request's Connection: close, close
// the connection after the response; without either it stays.
func TestBackendClose(t *testing.T) {
	f := newBeFake(t, "", nil)
	p := &beProbe{done: func(target string, v any, err error) Reply {
		rep := beDefaultDone(v, err)
		rep.Close = strings.HasPrefix(target, "/ECHO/close")
		return rep
	}}
	e := start(t, setup{opt: func(o *Options) {
		o.Loops = 1
		o.Backend = BackendOptions{Addr: f.addr}
	}, decide: func(r *Request) Verdict {
		if string(r.Target) == "/direct-close" {
			return Verdict{Action: Answer, Answer: func([]byte) Reply {
				return Reply{Resp: beResp(403, "no"), Close: true}
			}}
		}
		return p.decide(r)
	}})
	const next = "GET /ECHO/next HTTP/1.1\r\nHost: h\r\n\r\n"
	tests := []struct {
		name, req string
		status    int
		body      string
		closed    bool
	}{
		{"Reply.Close after a call", "GET /ECHO/close1 HTTP/1.1\r\nHost: h\r\n\r\n", 200, `"close1"`, true},
		{"Reply.Close at once", "GET /direct-close HTTP/1.1\r\nHost: h\r\n\r\n", 403, "no", true},
		{"Connection: close, a call", "GET /ECHO/c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 200, `"c"`, true},
		{"Connection: close, at once", "GET /direct/d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 200, "direct d", true},
		{"neither, a call", "GET /ECHO/k HTTP/1.1\r\nHost: h\r\n\r\n", 200, `"k"`, false},
		{"neither, at once", "GET /direct/k HTTP/1.1\r\nHost: h\r\n\r\n", 200, "direct k", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial(t)
			c.send(tt.req + next) // the next request comes with it
			c.beExpect(tt.status, tt.body)
			if tt.closed {
				c.expectClosed()
				waitFor(t, "the client closed", func() bool { return openClients(e.r) == 0 })
			} else {
				c.beExpect(200, `"next"`)
			}
		})
	}
}

// TestBackendPipelinedThenHalfClose: requests pipelined and the client's
// FIN after them, read in one go (printf '...' | nc -N): each is answered
// and then the connection closes, as for forwarded requests
// (TestReviewPipelinedThenHalfClose).
func TestBackendPipelinedThenHalfClose(t *testing.T) {
	for _, tt := range []struct{ name, first, second, want1, want2 string }{
		{"calls", "/ECHO/a", "/ECHO/b", `"a"`, `"b"`},
		{"at once", "/direct/a", "/direct/b", "direct a", "direct b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newBeFake(t, "", nil)
			p := &beProbe{}
			e := beStart(t, f.addr, p, nil)
			c := e.dial(t)
			c.send("GET " + tt.first + " HTTP/1.1\r\nHost: h\r\n\r\nGET " + tt.second + " HTTP/1.1\r\nHost: h\r\n\r\n")
			c.Conn.(*net.TCPConn).CloseWrite()
			c.beExpect(200, tt.want1)
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("the second pipelined request before the client's FIN is not answered: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			expectStatus(t, resp, string(body), 200, tt.want2)
			c.expectClosed()
		})
	}
}

// TestBackendHalfCloseAfterOne: one request answered at once and the
// client's FIN with it: answered, then closed.
func TestBackendHalfCloseAfterOne(t *testing.T) {
	f := newBeFake(t, "", nil)
	p := &beProbe{}
	e := beStart(t, f.addr, p, nil)
	c := e.dial(t)
	c.send("GET /direct/a HTTP/1.1\r\nHost: h\r\n\r\n")
	c.Conn.(*net.TCPConn).CloseWrite()
	c.beExpect(200, "direct a")
	c.expectClosed()
	waitFor(t, "the client closed", func() bool { return openClients(e.r) == 0 })
}

// TestBackendShutdownWaitsForCall: Shutdown lets a call in flight finish,
// writes its response and then closes the connection.
func TestBackendShutdownWaitsForCall(t *testing.T) {
	f, release := newHoldFake(t)
	p := &beProbe{}
	e := beStart(t, f.addr, p, nil)
	c := e.dial(t)
	c.send("GET /HOLD HTTP/1.1\r\nHost: h\r\n\r\nGET /ECHO/next HTTP/1.1\r\nHost: h\r\n\r\n")
	waitWritten(t, e.r, 1)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		shut <- e.shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned with a call in flight: %v", err)
	default:
	}
	close(release)
	c.beExpect(200, `"held"`)
	c.expectClosed() // the pipelined request is not taken on while stopping
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Shutdown did not return")
	}
	f.expectCommands(t, "1:HOLD")
}

// TestBackendNotConfigured: a Call on a relay without a backend fails at
// once.
func TestBackendNotConfigured(t *testing.T) {
	p := &beProbe{}
	e := beStart(t, "", p, nil)
	c := e.dial(t)
	c.beGet("/ECHO/x", 503, "error: no backend configured")
	c.beGet("/direct/y", 200, "direct y")
	if d := p.waitDones(t, 1); !errors.Is(d[0].Err, errNoBackend) {
		t.Fatalf("Done got %v", d[0].Err)
	}
}

// TestBackendEmptyErrorReply: an error reply with no text ("-\r\n") is an
// error reply all the same: Done gets it as err.
func TestBackendEmptyErrorReply(t *testing.T) {
	f := newBeFake(t, "", func(_ int, args []string) beAct {
		if args[0] == "EMPTYERR" {
			return beAct{Reply: "-\r\n"}
		}
		return beDefault(args)
	})
	p := &beProbe{}
	e := beStart(t, f.addr, p, nil)
	c := e.dial(t)
	resp, body := c.get("/EMPTYERR")
	d := p.waitDones(t, 1)
	if d[0].Err == nil {
		t.Fatalf("an empty error reply reaches Done as reply %#v with a nil error (got %d %q)", d[0].Reply, resp.StatusCode, body)
	}
	if re, ok := d[0].Err.(ReplyError); !ok || re != "" || d[0].Reply != nil {
		t.Fatalf("Done got %#v, %#v", d[0].Reply, d[0].Err)
	}
	expectStatus(t, resp, body, 503, "error: ")
}

// ---------------------------------------------------------------------------
// Against a real redis-server

// beRedisCmd sends cmds to addr on a connection of its own and returns the
// reply to the last.
func beRedisCmd(tb testing.TB, addr string, cmds ...[]byte) any {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write(slices.Concat(cmds...)); err != nil {
		tb.Fatal(err)
	}
	var in []byte
	var last any
	buf := make([]byte, 4096)
	for range cmds {
		for {
			v, n, err := parseReply(in, 0)
			if err != nil {
				tb.Fatal(err)
			}
			if n > 0 {
				in, last = in[n:], v
				break
			}
			m, err := conn.Read(buf)
			if err != nil {
				tb.Fatal(err)
			}
			in = append(in, buf[:m]...)
		}
	}
	return last
}

func TestBackendRedis(t *testing.T) {
	srv := redistest.Start(t)
	// Every request runs the commands its X-Cmd headers name, one after
	// the other (each Done returning the next Call), and answers with the
	// replies described.
	type step struct {
		cmd   []byte
		reply any
		err   error
	}
	var mu sync.Mutex
	var runs [][]step
	script := "return {1, 2, 'three', {4, 'five'}, redis.status_reply('FINE'), false, true}"
	sum := sha1.Sum([]byte(script))
	sha := hex.EncodeToString(sum[:])
	programs := map[string][][]byte{
		"/setget":   {resp.AppendCommand(nil, "SET", "k", "v"), resp.AppendCommand(nil, "GET", "k")},
		"/missing":  {resp.AppendCommand(nil, "GET", "missing")},
		"/eval":     {resp.AppendCommand(nil, "EVAL", script, "0")},
		"/evalerr":  {resp.AppendCommand(nil, "EVAL", "return redis.error_reply('MYERR boom')", "0")},
		"/wrongtyp": {resp.AppendCommand(nil, "LPUSH", "list", "a", "b"), resp.AppendCommand(nil, "GET", "list")},
		"/evalsha":  {resp.AppendCommand(nil, "EVALSHA", sha, "0")},
		"/incr":     {resp.AppendCommand(nil, "INCR", "counter")},
		"/lrange":   {resp.AppendCommand(nil, "LRANGE", "list", "0", "-1")},
		"/empty":    {resp.AppendCommand(nil, "LRANGE", "nolist", "0", "-1")},
	}
	decide := func(r *Request) Verdict {
		prog := programs[string(r.Target)]
		var done []step
		var next func(i int) *Call
		next = func(i int) *Call {
			return &Call{Cmd: prog[i], Done: func(v any, err error) Reply {
				done = append(done, step{prog[i], v, err})
				// A NOSCRIPT gets the script loaded by EVAL.
				var re ReplyError
				if errors.As(err, &re) && strings.HasPrefix(string(re), "NOSCRIPT") {
					prog = append(prog[:i:i], resp.AppendCommand(nil, "EVAL", script, "0"))
					return Reply{Call: next(i)}
				}
				if i+1 < len(prog) && err == nil {
					return Reply{Call: next(i + 1)}
				}
				mu.Lock()
				runs = append(runs, done)
				mu.Unlock()
				var s []string
				for _, st := range done {
					if st.err != nil {
						s = append(s, "error "+st.err.Error())
					} else {
						s = append(s, beDescribe(st.reply))
					}
				}
				return Reply{Resp: beResp(200, strings.Join(s, "; "))}
			}}
		}
		return Verdict{Action: Answer, Answer: func([]byte) Reply { return Reply{Call: next(0)} }}
	}
	e := start(t, setup{decide: decide, opt: func(o *Options) {
		o.Loops = 2
		o.Backend = BackendOptions{Addr: srv.Addr(), Init: [][]byte{resp.AppendCommand(nil, "SELECT", "3")}, Timeout: 2 * time.Second}
	}})
	c := e.dial(t)
	// EVALSHA first: the script is not loaded yet.
	c.beGet("/evalsha", 200, `error NOSCRIPT No matching script. Please use EVAL.; [int:1 int:2 "three" [int:4 "five"] "FINE" nil int:1]`)
	c.beGet("/evalsha", 200, `[int:1 int:2 "three" [int:4 "five"] "FINE" nil int:1]`) // cached now
	c.beGet("/setget", 200, `"OK"; "v"`)
	c.beGet("/missing", 200, "nil")
	c.beGet("/eval", 200, `[int:1 int:2 "three" [int:4 "five"] "FINE" nil int:1]`)
	c.beGet("/evalerr", 200, "error MYERR boom")
	c.beGet("/wrongtyp", 200, "int:2; error WRONGTYPE Operation against a key holding the wrong kind of value")
	c.beGet("/lrange", 200, `["b" "a"]`)
	c.beGet("/empty", 200, "[]")

	mu.Lock()
	got := slices.Clone(runs)
	mu.Unlock()
	// The exact values Done got.
	want := []any{int64(1), int64(2), "three", []any{int64(4), "five"}, "FINE", nil, int64(1)}
	if st := got[4][0]; !reflect.DeepEqual(st.reply, want) || st.err != nil {
		t.Fatalf("EVAL: %#v, %v; want %#v", st.reply, st.err, want)
	}
	if st := got[5][0]; st.reply != nil || st.err != ReplyError("MYERR boom") {
		t.Fatalf("EVAL of an error: %#v, %#v", st.reply, st.err)
	}
	if st := got[3][0]; st.reply != nil || st.err != nil {
		t.Fatalf("GET of a missing key: %#v, %v", st.reply, st.err)
	}
	// Init selected database 3.
	if v := beRedisCmd(t, srv.Addr(), resp.AppendCommand(nil, "SELECT", "3"), resp.AppendCommand(nil, "GET", "k")); v != "v" {
		t.Fatalf("GET k in db 3: %#v", v)
	}
	if v := beRedisCmd(t, srv.Addr(), resp.AppendCommand(nil, "GET", "k")); v != nil {
		t.Fatalf("GET k in db 0: %#v", v)
	}

	// Many clients on both loops: every INCR reply is a distinct number.
	const clients, requests = 20, 10
	results := make(chan string, clients*requests)
	ok := eachClient(t, e.addr, clients, func(_ int, conn net.Conn, br *bufio.Reader) error {
		io.WriteString(conn, strings.Repeat("GET /incr HTTP/1.1\r\nHost: h\r\n\r\n", requests))
		for range requests {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			results <- string(body)
		}
		return nil
	})
	close(results)
	if !ok {
		t.FailNow()
	}
	seen := map[string]bool{}
	for r := range results {
		if seen[r] {
			t.Fatalf("INCR reply %q twice", r)
		}
		seen[r] = true
	}
	for i := 1; i <= clients*requests; i++ {
		if !seen["int:"+strconv.Itoa(i)] {
			t.Fatalf("no INCR reply %d: %v", i, seen)
		}
	}
}

// TestBackendRedisFailures: a real server that refuses the Init, that
// hangs, and that dies and comes back.
func TestBackendRedisFailures(t *testing.T) {
	t.Run("Init refused", func(t *testing.T) {
		srv := redistest.Start(t)
		p := &beProbe{}
		e := beStart(t, srv.Addr(), p, func(o *Options) {
			o.Backend.Init = [][]byte{resp.AppendCommand(nil, "AUTH", "nopassword")}
		})
		c := e.dial(t)
		resp, body := c.get("/ECHO/x")
		if resp.StatusCode != 503 || !strings.HasPrefix(body, "error: redis refused the connection's set-up: ") {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	})
	t.Run("hung", func(t *testing.T) {
		srv := redistest.Start(t)
		p := &beProbe{}
		e := beStart(t, srv.Addr(), p, func(o *Options) { o.Backend.Timeout = 300 * time.Millisecond })
		c := e.dial(t)
		c.beGet("/SET/k/1", 200, `"OK"`)
		srv.Pause(t)
		resumed := false
		defer func() {
			if !resumed {
				srv.Resume(t)
			}
		}()
		began := time.Now()
		c.beGet("/INCR/k", 503, "error: redis did not answer within 300ms")
		if took := time.Since(began); took > 1200*time.Millisecond {
			t.Fatalf("the timeout took %s", took)
		}
		srv.Resume(t)
		resumed = true
		// The INCR may have run after all (a timeout says nothing of that);
		// the replies are in step again.
		resp, body := c.get("/INCR/k")
		if resp.StatusCode != 200 || (body != "int:2" && body != "int:3") {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		c.beGet("/ECHO/x", 200, `"x"`)
	})
	t.Run("restarted", func(t *testing.T) {
		srv := redistest.Start(t)
		p := &beProbe{}
		e := beStart(t, srv.Addr(), p, nil)
		c := e.dial(t)
		c.beGet("/SET/k/1", 200, `"OK"`)
		srv.Stop(t)
		resp, body := c.get("/GET/k")
		if resp.StatusCode != 503 || !strings.HasPrefix(body, "error: ") {
			t.Fatalf("with the server down: %d %q", resp.StatusCode, body)
		}
		srv.Restart(t)
		c.beGet("/GET/k", 200, "nil") // the data went with the kill
		c.beGet("/ECHO/back", 200, `"back"`)
	})
}

// eachClient runs fn on clients connections to addr at once, each with its
// index, its connection and a reader on it, and reports whether all
// returned nil (the errors are reported on t).
func eachClient(t *testing.T, addr string, clients int, fn func(i int, conn net.Conn, br *bufio.Reader) error) bool {
	t.Helper()
	errc := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(ioTimeout))
			errc <- fn(i, conn, bufio.NewReader(conn))
		}()
	}
	wg.Wait()
	close(errc)
	ok := true
	for err := range errc {
		if err != nil {
			t.Error(err)
			ok = false
		}
	}
	return ok
}
