package store_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/store"
	"github.com/direktiv/direktiv-authz/store/redistest"
	"github.com/direktiv/direktiv-authz/store/storetest"
)

// Tests of the direct create path (redis_direct.go): the commands
// DirectCreate builds are sent over a plain net.Conn of the test's own and
// the replies read by a small RESP2 reader written here, as the sidecar's
// event loops do, against a real redis-server.

// directRespErr is a RESP error reply ('-').
type directRespErr string

func (e directRespErr) Error() string { return string(e) }

// directConn is a plain connection to a Redis server.
type directConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func directDial(t *testing.T, addr string) *directConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &directConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *directConn) write(b []byte) {
	c.t.Helper()
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("writing to redis: %v", err)
	}
}

// read reads one reply: an int64, a string, nil or an []any of these, with
// err a directRespErr for an error reply or the transport's error.
func (c *directConn) read() (any, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return directReadReply(c.r)
}

// do sends one command built by directAppendCommand and reads its reply.
func (c *directConn) do(args ...string) (any, error) {
	c.t.Helper()
	c.write(directAppendCommand(nil, args...))
	return c.read()
}

// create sends d's EVALSHA and returns what Result makes of the reply; a
// NOSCRIPT answer fails the test.
func (c *directConn) create(d *store.DirectCreate) error {
	c.t.Helper()
	c.write(d.AppendCommand(nil))
	noScript, err := d.Result(c.read())
	if noScript {
		c.t.Fatalf("unexpected NOSCRIPT: %v", err)
	}
	return err
}

func directReadLine(r *bufio.Reader) (byte, string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, "", err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return 0, "", fmt.Errorf("malformed RESP line %q", line)
	}
	return line[0], line[1 : len(line)-2], nil
}

func directReadReply(r *bufio.Reader) (any, error) {
	kind, rest, err := directReadLine(r)
	if err != nil {
		return nil, err
	}
	switch kind {
	case '+':
		return rest, nil
	case '-':
		return nil, directRespErr(rest)
	case ':':
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("RESP integer %q", rest)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(rest)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("RESP bulk length %q", rest)
		}
		if n == -1 {
			return nil, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		if string(b[n:]) != "\r\n" {
			return nil, errors.New("RESP bulk string without CRLF")
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(rest)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("RESP array length %q", rest)
		}
		if n == -1 {
			return nil, nil
		}
		arr := make([]any, n)
		for i := range arr {
			v, err := directReadReply(r)
			var re directRespErr
			if errors.As(err, &re) {
				arr[i] = re // an error inside an array is an element
				continue
			}
			if err != nil {
				return nil, err
			}
			arr[i] = v
		}
		return arr, nil
	}
	return nil, fmt.Errorf("unknown RESP type %q", kind)
}

// directAppendCommand appends args as a RESP array of bulk strings; written
// here rather than taken from the package so the test does not check the
// encoder against itself.
func directAppendCommand(b []byte, args ...string) []byte {
	b = fmt.Appendf(b, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// directParseCommand reads back a command DirectCreate built, as the list
// of its arguments.
func directParseCommand(t *testing.T, cmd []byte) []string {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(cmd))
	v, err := directReadReply(r)
	if err != nil {
		t.Fatalf("command does not parse as RESP: %v\n%q", err, cmd)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("bytes after the command: %q", cmd)
	}
	arr, ok := v.([]any)
	if !ok {
		t.Fatalf("command is %T, want an array", v)
	}
	out := make([]string, len(arr))
	for i, a := range arr {
		s, ok := a.(string)
		if !ok {
			t.Fatalf("command argument %d is %T, want a bulk string", i, a)
		}
		out[i] = s
	}
	return out
}

// directUnconnected is a store on a client made from url that never
// connects (nothing in these tests makes it).
func directUnconnected(t *testing.T, rawURL string) *store.Redis {
	t.Helper()
	cfg, err := store.ParseRedisURL(rawURL)
	if err != nil {
		t.Fatalf("ParseRedisURL(%s): %v", rawURL, err)
	}
	r := store.NewRedisClient(cfg.NewClient(), store.RedisOptions{WaitReplicas: cfg.WaitReplicas, WaitTimeout: cfg.WaitTimeout})
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func directMust(t *testing.T, s *store.Redis, tok store.Token, l store.Limit) *store.DirectCreate {
	t.Helper()
	d, err := s.DirectCreate(tok, l)
	if err != nil || d == nil {
		t.Fatalf("DirectCreate(%s/%s): %v, %v", tok.Namespace, tok.ID, d, err)
	}
	return d
}

func directNewID(t *testing.T, ns string) string {
	t.Helper()
	sec, err := store.NewSecret(ns)
	if err != nil {
		t.Fatal(err)
	}
	return sec.ID
}

func directEqualToken(t *testing.T, what string, got, want store.Token) {
	t.Helper()
	if got.ID != want.ID || got.Namespace != want.Namespace || got.Description != want.Description ||
		!slices.Equal(got.Policies, want.Policies) || got.Parent != want.Parent ||
		!got.Created.Equal(want.Created) || !got.Expires.Equal(want.Expires) ||
		got.Revision != want.Revision || got.Hash != want.Hash {
		t.Fatalf("%s = %+v\nwant %+v", what, got, want)
	}
	if got.Created.Location() != time.UTC || got.Expires.Location() != time.UTC {
		t.Errorf("%s has times in %s/%s, want UTC", what, got.Created.Location(), got.Expires.Location())
	}
}

func directWantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v, want an error wrapping %v", what, err, want)
	}
	for _, other := range []error{store.ErrExists, store.ErrNotFound, store.ErrInvalid, store.ErrUnavailable, store.ErrRateLimited} {
		if other != want && errors.Is(err, other) {
			t.Fatalf("%s: %v also wraps %v", what, err, other)
		}
	}
}

func directWantGone(t *testing.T, s *store.Redis, ns, id string) {
	t.Helper()
	if _, err := s.Lookup(context.Background(), ns, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lookup(%s/%s): %v, want ErrNotFound", ns, id, err)
	}
}

// directKeyState is one Redis key as read back for comparison.
type directKeyState struct {
	Type     string
	Value    string // string: the value; set: sorted members; zset: member=score pairs
	ExpireAt int64  // PEXPIRETIME
}

// directDump reads every key of namespace ns, with ns and the ids in names
// replaced by their labels in key names and values. The fraction of a
// second the expiry index adds to each score (the server clock's) is
// dropped.
// rawName is the canonical id of 16 raw bytes.
func rawName(b string) string {
	h := hex.EncodeToString([]byte(b))
	if len(h) != 32 {
		return h
	}
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func directDump(t *testing.T, c *redis.Client, ns string, names map[string]string) map[string]directKeyState {
	t.Helper()
	ctx := context.Background()
	pairs := []string{ns, "NS"}
	for id, label := range names {
		pairs = append(pairs, id, label)
	}
	rn := strings.NewReplacer(pairs...)
	out := map[string]directKeyState{}
	iter := c.Scan(ctx, 0, store.DefaultRedisPrefix+":{"+ns+"}:*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if strings.HasSuffix(k, "}:pc") {
			continue // where the creates' pruning stands: one create in four moves it
		}
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatalf("TYPE %s: %v", k, err)
		}
		var val string
		switch typ {
		case "string":
			val = c.Get(ctx, k).Val()
			if strings.Contains(k, ":tok:") && len(val) > 2 && val[0] == 2 {
				// A record: its ancestors' raw ids by name, the rest as is.
				d := int(val[1])
				var anc []string
				for i := range d {
					anc = append(anc, rawName(val[2+16*i:18+16*i]))
				}
				val = strings.Join(anc, ",") + "|" + hex.EncodeToString([]byte(val[2+16*d:]))
			}
		case "hash":
			m := c.HGetAll(ctx, k).Val()
			var parts []string
			for f, v := range m {
				parts = append(parts, rn.Replace(f)+"="+v)
			}
			slices.Sort(parts)
			val = strings.Join(parts, " ")
		case "stream":
			var parts []string
			for _, e := range c.XRange(ctx, k, "-", "+").Val() {
				parts = append(parts, rn.Replace(e.Values["i"].(string)))
			}
			val = strings.Join(parts, " ")
		case "set":
			m := c.SMembers(ctx, k).Val()
			for i := range m {
				m[i] = rn.Replace(m[i])
			}
			slices.Sort(m)
			val = strings.Join(m, " ")
		case "zset":
			zs := c.ZRangeWithScores(ctx, k, 0, -1).Val()
			var parts []string
			for _, z := range zs {
				score := z.Score
				if strings.HasSuffix(k, ":exp") {
					score = math.Floor(score)
				}
				parts = append(parts, rn.Replace(z.Member.(string))+"="+strconv.FormatFloat(score, 'f', -1, 64))
			}
			slices.Sort(parts)
			val = strings.Join(parts, " ")
		default:
			t.Fatalf("key %s of type %s", k, typ)
		}
		at, err := c.Do(ctx, "PEXPIRETIME", k).Int64()
		if err != nil {
			t.Fatalf("PEXPIRETIME %s: %v", k, err)
		}
		out[rn.Replace(k)] = directKeyState{Type: typ, Value: rn.Replace(val), ExpireAt: at}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return out
}

// TestDirectCreateStoresLikeCreateLimited creates a root, a child and a
// grandchild (outliving both, so it extends their kids sets) once with
// CreateLimited and once over the direct path, in two namespaces, with the
// same fields but id and namespace and the same kind of limits, and compares
// every key, value and expiry the two produced.
func TestDirectCreateStoresLikeCreateLimited(t *testing.T) {
	srv := redistest.Start(t)
	s := mustRedis(t, srv.URL(), store.RedisOptions{})
	raw := rawClient(t, srv)
	conn := directDial(t, srv.Addr())
	ctx := context.Background()
	nsA, nsB := storetest.Namespace(t), storetest.Namespace(t)

	rootA, _ := storetest.MustToken(t, nsA, "", time.Hour)
	childA, _ := storetest.MustToken(t, nsA, rootA.ID, 30*time.Minute)
	grandA, _ := storetest.MustToken(t, nsA, childA.ID, 2*time.Hour)
	grandA.Policies = []string{"a\"quote", "ünïcode", "<html>"} // JSON escaping on both paths
	grandA.Description = "line\nbreak\t\u2028"
	nsLimit := store.Rate{Count: 100, Per: time.Hour}
	tokLimit := store.Rate{Count: 10, Per: time.Hour}
	limitsA := []store.Limit{
		{Namespace: nsLimit},
		{Namespace: nsLimit, Caller: tokLimit, CallerID: rootA.ID},
		{Namespace: nsLimit, Caller: tokLimit, CallerID: childA.ID},
	}

	// B: the same records but id and namespace.
	names := map[string]string{}
	ids := map[string]string{} // A id -> B id
	var bToks []store.Token
	for i, a := range []store.Token{rootA, childA, grandA} {
		b := a
		b.Namespace = nsB
		b.ID = directNewID(t, nsB)
		if a.Parent != "" {
			b.Parent = ids[a.Parent]
		}
		ids[a.ID] = b.ID
		label := []string{"ROOT", "CHILD", "GRAND"}[i]
		names[a.ID], names[b.ID] = label, label
		bToks = append(bToks, b)
	}
	for i, a := range []store.Token{rootA, childA, grandA} {
		if err := s.CreateLimited(ctx, a, limitsA[i]); err != nil {
			t.Fatalf("CreateLimited(%s): %v", names[a.ID], err)
		}
		lb := limitsA[i]
		if lb.CallerID != "" {
			lb.CallerID = ids[lb.CallerID]
		}
		if err := conn.create(directMust(t, s, bToks[i], lb)); err != nil {
			t.Fatalf("direct create of %s: %v", names[a.ID], err)
		}
	}

	dumpA, dumpB := directDump(t, raw, nsA, names), directDump(t, raw, nsB, names)
	var kA, kB []string
	for k := range dumpA {
		kA = append(kA, k)
	}
	for k := range dumpB {
		kB = append(kB, k)
	}
	slices.Sort(kA)
	slices.Sort(kB)
	if !slices.Equal(kA, kB) {
		t.Fatalf("keys of CreateLimited: %q\nkeys of the direct path: %q", kA, kB)
	}
	tag := store.DefaultRedisPrefix + ":{NS}:"
	want := []string{tag + "ix", tag + "kn", tag + "rl:ns", tag + "rl:tok:CHILD", tag + "rl:tok:ROOT",
		tag + "tok:CHILD", tag + "tok:GRAND", tag + "tok:ROOT"}
	if !slices.Equal(kA, want) {
		t.Fatalf("keys = %q\nwant %q", kA, want)
	}
	for _, k := range kA {
		a, b := dumpA[k], dumpB[k]
		if strings.Contains(k, ":rl:") {
			// A rate limit holds a time on the server clock: the two
			// namespaces' differ by the time between the creates.
			va, _ := strconv.ParseInt(a.Value, 10, 64)
			vb, _ := strconv.ParseInt(b.Value, 10, 64)
			if a.Type != "string" || b.Type != "string" || va == 0 || vb == 0 || absInt64(va-vb) > 5e6 || absInt64(a.ExpireAt-b.ExpireAt) > 5000 {
				t.Errorf("%s: CreateLimited %+v, direct %+v", k, a, b)
			}
			continue
		}
		if a != b {
			t.Errorf("%s:\nCreateLimited %+v\ndirect        %+v", k, a, b)
		}
	}
	// What the layout must be, not only alike: records expire with their
	// token; the index and the children counts live at least as long as the
	// grandchild (a little longer is allowed: the scripts add slack when
	// they move an expiry).
	for k, at := range map[string]time.Time{
		tag + "tok:ROOT": rootA.Expires, tag + "tok:CHILD": childA.Expires, tag + "tok:GRAND": grandA.Expires,
	} {
		if got := dumpB[k].ExpireAt; got != at.UnixMilli() {
			t.Errorf("PEXPIRETIME %s = %d, want %d", k, got, at.UnixMilli())
		}
	}
	for _, k := range []string{tag + "ix", tag + "kn"} {
		at := grandA.Expires.UnixMilli()
		if got := dumpB[k].ExpireAt; got < at || got > at+int64(5*time.Minute/time.Millisecond) {
			t.Errorf("PEXPIRETIME %s = %d, want the grandchild's expiry %d (or a little later)", k, got, at)
		}
	}
	for k, v := range map[string]string{
		tag + "kn": "CHILD=1 ROOT=1", tag + "ix": "ROOT CHILD GRAND",
	} {
		if got := dumpB[k].Value; got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := dumpB[tag+"tok:GRAND"].Value; !strings.HasPrefix(got, "ROOT,CHILD|") {
		t.Errorf("record of GRAND = %q, want its ancestors ROOT, CHILD", got)
	}

	// Read back through the store.
	for i, b := range bToks {
		got, err := s.Lookup(ctx, nsB, b.ID)
		if err != nil {
			t.Fatalf("Lookup(%s): %v", names[b.ID], err)
		}
		directEqualToken(t, "Lookup("+names[b.ID]+")", got, b)
		a, err := s.Lookup(ctx, nsA, []store.Token{rootA, childA, grandA}[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		a.ID, a.Namespace, a.Parent = b.ID, b.Namespace, b.Parent
		directEqualToken(t, "Lookup of CreateLimited's "+names[b.ID], a, got)
	}
	listB, next, err := s.List(ctx, nsB, "", 10)
	if err != nil || next != "" || len(listB) != 3 {
		t.Fatalf("List(%s) = %d tokens, next %q, %v", nsB, len(listB), next, err)
	}
	for i, b := range bToks { // created in this order
		directEqualToken(t, fmt.Sprintf("List[%d]", i), listB[i], b)
	}
	listA, _, err := s.List(ctx, nsA, "", 10)
	if err != nil || len(listA) != 3 {
		t.Fatalf("List(%s) = %d tokens, %v", nsA, len(listA), err)
	}
	for i := range listA {
		if names[listA[i].ID] != names[listB[i].ID] {
			t.Fatalf("List orders differ: %s at %d, direct %s", names[listA[i].ID], i, names[listB[i].ID])
		}
	}

	// The direct path's tokens are the store's like any other: a cascade
	// revoke from the direct root takes all three.
	revoked, err := s.Revoke(ctx, nsB, bToks[0].ID)
	if err != nil || len(revoked.IDs) != 3 || !revoked.Done {
		t.Fatalf("Revoke of the direct root = %v, %v; want 3 ids", revoked, err)
	}
}

func absInt64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// TestDirectCreateCommands checks the commands themselves: EVALSHA names
// the SHA-1 of the script EVAL sends, both carry the same keys and
// arguments, they append to the buffer given, and two pipelined creates get
// their answers in order.
func TestDirectCreateCommands(t *testing.T) {
	srv := redistest.Start(t)
	s := mustRedis(t, srv.URL(), store.RedisOptions{})
	conn := directDial(t, srv.Addr())
	ns := storetest.Namespace(t)

	root, _ := storetest.MustToken(t, ns, "", time.Hour)
	d := directMust(t, s, root, store.Limit{Namespace: store.Rate{Count: 5, Per: time.Minute}})
	prefix := []byte("already here")
	cmd := d.AppendCommand(slices.Clone(prefix))
	if !bytes.HasPrefix(cmd, prefix) {
		t.Fatalf("AppendCommand lost the buffer's contents: %q", cmd[:min(len(cmd), 40)])
	}
	fb := d.AppendFallback(slices.Clone(prefix))
	if !bytes.HasPrefix(fb, prefix) {
		t.Fatalf("AppendFallback lost the buffer's contents: %q", fb[:min(len(fb), 40)])
	}
	evalsha := directParseCommand(t, cmd[len(prefix):])
	eval := directParseCommand(t, fb[len(prefix):])
	if evalsha[0] != "EVALSHA" || eval[0] != "EVAL" {
		t.Fatalf("verbs %q and %q", evalsha[0], eval[0])
	}
	sum := sha1.Sum([]byte(eval[1]))
	if evalsha[1] != hex.EncodeToString(sum[:]) {
		t.Fatalf("EVALSHA %s is not the SHA-1 of the EVAL script (%x)", evalsha[1], sum)
	}
	if !slices.Equal(evalsha[2:], eval[2:]) {
		t.Fatalf("EVALSHA and EVAL arguments differ:\n%q\n%q", evalsha[2:], eval[2:])
	}
	// numkeys: record, index, revoke marker, prune cursor, namespace limit.
	if evalsha[2] != "5" {
		t.Fatalf("numkeys = %s, want 5", evalsha[2])
	}
	tag := store.DefaultRedisPrefix + ":{" + ns + "}:"
	if got := evalsha[3:8]; !slices.Equal(got, []string{tag + "tok:" + root.ID, tag + "ix", tag + "rv:" + root.ID, tag + "pc", tag + "rl:ns"}) {
		t.Fatalf("keys = %q", got)
	}
	if v, err := conn.do("SCRIPT", "EXISTS", evalsha[1]); err != nil || !slices.Equal(v.([]any), []any{int64(1)}) {
		t.Fatalf("SCRIPT EXISTS of the EVALSHA hash after NewRedis: %v, %v; want [1] (NewRedis loads the script)", v, err)
	}

	// Two creates in one write, answered in order.
	other, _ := storetest.MustToken(t, ns, root.ID, time.Hour)
	d2 := directMust(t, s, other, store.Limit{})
	conn.write(d2.AppendCommand(d.AppendCommand(nil)))
	for i, dc := range []*store.DirectCreate{d, d2} {
		noScript, err := dc.Result(conn.read())
		if noScript || err != nil {
			t.Fatalf("pipelined create %d: noScript %v, %v", i, noScript, err)
		}
	}
	for _, tok := range []store.Token{root, other} {
		got, err := s.Lookup(context.Background(), ns, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		directEqualToken(t, "Lookup", got, tok)
	}
}

// TestDirectCreateOutcomes drives every answer of the create script over a
// direct connection.
func TestDirectCreateOutcomes(t *testing.T) {
	srv := redistest.Start(t)
	s := mustRedis(t, srv.URL(), store.RedisOptions{})
	conn := directDial(t, srv.Addr())
	ctx := context.Background()

	t.Run("exists and resend", func(t *testing.T) {
		ns := storetest.Namespace(t)
		tok, _ := storetest.MustToken(t, ns, "", time.Hour)
		d := directMust(t, s, tok, store.Limit{})
		cmd := d.AppendCommand(nil)
		conn.write(cmd)
		if _, err := d.Result(conn.read()); err != nil {
			t.Fatalf("first create: %v", err)
		}
		// The identical command again (a resend): stored again.
		conn.write(cmd)
		if _, err := d.Result(conn.read()); err != nil {
			t.Fatalf("resend of the identical command: %v, want nil", err)
		}
		// The same id with other content.
		changed := tok
		changed.Description = "someone else"
		directWantErr(t, "direct create of an existing id", conn.create(directMust(t, s, changed, store.Limit{})), store.ErrExists)
		directWantErr(t, "CreateLimited of an existing id", s.CreateLimited(ctx, changed, store.Limit{}), store.ErrExists)
		got, err := s.Lookup(ctx, ns, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		directEqualToken(t, "Lookup after the refused create", got, tok)
		// A token created by CreateLimited is one the direct path sees.
		viaStore, _ := storetest.MustToken(t, ns, "", time.Hour)
		if err := s.CreateLimited(ctx, viaStore, store.Limit{}); err != nil {
			t.Fatal(err)
		}
		viaStoreChanged := viaStore
		viaStoreChanged.Revision = "rev-2"
		directWantErr(t, "direct create over CreateLimited's token", conn.create(directMust(t, s, viaStoreChanged, store.Limit{})), store.ErrExists)
		if err := conn.create(directMust(t, s, viaStore, store.Limit{})); err != nil {
			t.Fatalf("direct resend of CreateLimited's identical record: %v, want nil", err)
		}
		// A revoked id: the marker refuses the resend.
		if _, err := s.Revoke(ctx, ns, tok.ID); err != nil {
			t.Fatal(err)
		}
		conn.write(cmd)
		directWantErr(t, "resend after revoke", func() error { _, err := d.Result(conn.read()); return err }(), store.ErrExists)
		directWantGone(t, s, ns, tok.ID)
	})

	t.Run("resend not counted", func(t *testing.T) {
		ns := storetest.Namespace(t)
		l := store.Limit{Namespace: store.Rate{Count: 2, Per: time.Hour}}
		tok, _ := storetest.MustToken(t, ns, "", time.Hour)
		d := directMust(t, s, tok, l)
		for i := 0; i < 3; i++ {
			if err := conn.create(d); err != nil {
				t.Fatalf("create %d of the same record: %v", i, err)
			}
		}
		second, _ := storetest.MustToken(t, ns, "", time.Hour)
		if err := conn.create(directMust(t, s, second, l)); err != nil {
			t.Fatalf("second token of a 2/h limit: %v (resends were counted)", err)
		}
		third, _ := storetest.MustToken(t, ns, "", time.Hour)
		var rl *store.RateLimitedError
		if err := conn.create(directMust(t, s, third, l)); !errors.As(err, &rl) {
			t.Fatalf("third token of a 2/h limit: %v, want a *RateLimitedError", err)
		}
	})

	t.Run("parent not live", func(t *testing.T) {
		ns := storetest.Namespace(t)
		missing := directNewID(t, ns)
		child, _ := storetest.MustToken(t, ns, missing, time.Hour)
		directWantErr(t, "child of a parent never stored", conn.create(directMust(t, s, child, store.Limit{})), store.ErrNotFound)

		parent, _ := storetest.MustToken(t, ns, "", time.Hour)
		if err := conn.create(directMust(t, s, parent, store.Limit{})); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Revoke(ctx, ns, parent.ID); err != nil {
			t.Fatal(err)
		}
		child2, _ := storetest.MustToken(t, ns, parent.ID, time.Hour)
		directWantErr(t, "child of a revoked parent", conn.create(directMust(t, s, child2, store.Limit{})), store.ErrNotFound)
		directWantGone(t, s, ns, child.ID)
		directWantGone(t, s, ns, child2.ID)
		// Nothing but the revoke marker is left (and the index, whose
		// entry the pruning drops).
		got := directDump(t, rawClient(t, srv), ns, nil)
		if len(got) != 2 {
			t.Fatalf("keys after refused children: %v, want only the revoke marker and the index", got)
		}
		if _, ok := got[store.DefaultRedisPrefix+":{NS}:rv:"+parent.ID]; !ok {
			t.Fatalf("keys after refused children: %v, want only the revoke marker", got)
		}
	})

	t.Run("too many ancestors", func(t *testing.T) {
		ns := storetest.Namespace(t)
		parent := ""
		// Tokens with 0 to MaxAncestors-1 ancestors, through the store.
		for depth := 0; depth < store.MaxAncestors; depth++ {
			tok, _ := storetest.MustToken(t, ns, parent, time.Hour)
			if err := s.CreateLimited(ctx, tok, store.Limit{}); err != nil {
				t.Fatalf("CreateLimited at depth %d: %v", depth, err)
			}
			parent = tok.ID
		}
		// MaxAncestors ancestors: allowed.
		last, _ := storetest.MustToken(t, ns, parent, time.Hour)
		if err := conn.create(directMust(t, s, last, store.Limit{})); err != nil {
			t.Fatalf("direct create with %d ancestors: %v", store.MaxAncestors, err)
		}
		// One more: refused, over both paths.
		deeper, _ := storetest.MustToken(t, ns, last.ID, time.Hour)
		directWantErr(t, fmt.Sprintf("direct create with %d ancestors", store.MaxAncestors+1),
			conn.create(directMust(t, s, deeper, store.Limit{})), store.ErrInvalid)
		directWantErr(t, "CreateLimited of the same", s.CreateLimited(ctx, deeper, store.Limit{}), store.ErrInvalid)
		directWantGone(t, s, ns, deeper.ID)
		if n, err := rawClient(t, srv).Exists(ctx, store.DefaultRedisPrefix+":{"+ns+"}:up:"+deeper.ID).Result(); err != nil || n != 0 {
			t.Fatalf("ancestors key of the refused token: %d, %v", n, err)
		}
	})

	t.Run("expired by the server clock", func(t *testing.T) {
		ns := storetest.Namespace(t)
		tok, _ := storetest.MustToken(t, ns, "", 50*time.Millisecond)
		d := directMust(t, s, tok, store.Limit{})
		time.Sleep(time.Until(tok.Expires) + 30*time.Millisecond)
		directWantErr(t, "direct create of a token that expired in between", conn.create(d), store.ErrInvalid)
		directWantGone(t, s, ns, tok.ID)
		if got := directDump(t, rawClient(t, srv), ns, nil); len(got) != 0 {
			t.Fatalf("keys after an expired create: %v, want none", got)
		}
	})

	t.Run("rate limited", func(t *testing.T) {
		hour := store.Rate{Count: 1, Per: time.Hour}
		for _, tc := range []struct {
			name  string
			limit func(caller string) store.Limit
			scope string
			rate  store.Rate
		}{
			{"namespace", func(string) store.Limit { return store.Limit{Namespace: hour} }, store.ScopeNamespace, hour},
			{"token", func(c string) store.Limit { return store.Limit{Caller: hour, CallerID: c} }, store.ScopeToken, hour},
			{"token tighter than namespace", func(c string) store.Limit {
				return store.Limit{Namespace: store.Rate{Count: 100, Per: time.Hour}, Caller: hour, CallerID: c}
			}, store.ScopeToken, hour},
			{"namespace tighter than token", func(c string) store.Limit {
				return store.Limit{Namespace: hour, Caller: store.Rate{Count: 100, Per: time.Hour}, CallerID: c}
			}, store.ScopeNamespace, hour},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ns := storetest.Namespace(t)
				caller := directNewID(t, ns)
				first, _ := storetest.MustToken(t, ns, "", time.Hour)
				if err := conn.create(directMust(t, s, first, tc.limit(caller))); err != nil {
					t.Fatalf("first create: %v", err)
				}
				second, _ := storetest.MustToken(t, ns, "", time.Hour)
				start := time.Now()
				err := conn.create(directMust(t, s, second, tc.limit(caller)))
				var rl *store.RateLimitedError
				if !errors.As(err, &rl) {
					t.Fatalf("second create: %v, want a *RateLimitedError", err)
				}
				directWantErr(t, "second create", err, store.ErrRateLimited)
				if rl.Scope != tc.scope || rl.Rate != tc.rate {
					t.Fatalf("refused by %s %v, want %s %v", rl.Scope, rl.Rate, tc.scope, tc.rate)
				}
				if rl.RetryAfter <= 0 || rl.RetryAfter > time.Hour || rl.RetryAfter < time.Hour-time.Since(start)-5*time.Second {
					t.Fatalf("RetryAfter = %s, want just under an hour", rl.RetryAfter)
				}
				directWantGone(t, s, ns, second.ID)
				// CreateLimited shares the limit's state.
				if err := s.CreateLimited(ctx, second, tc.limit(caller)); !errors.As(err, &rl) || rl.Scope != tc.scope {
					t.Fatalf("CreateLimited after the direct create: %v, want refused by %s", err, tc.scope)
				}
				// Another caller is not held by a token limit.
				if tc.scope == store.ScopeToken {
					if err := conn.create(directMust(t, s, second, tc.limit(directNewID(t, ns)))); err != nil {
						t.Fatalf("create for another caller: %v", err)
					}
				}
			})
		}
	})
}

// TestDirectCreateNoScript flushes the script cache: EVALSHA answers
// NOSCRIPT, Result says so, the fallback EVAL stores the token and loads
// the script again.
func TestDirectCreateNoScript(t *testing.T) {
	srv := redistest.Start(t)
	s := mustRedis(t, srv.URL(), store.RedisOptions{})
	conn := directDial(t, srv.Addr())
	ctx, ns := context.Background(), storetest.Namespace(t)

	if v, err := conn.do("SCRIPT", "FLUSH"); err != nil || v != "OK" {
		t.Fatalf("SCRIPT FLUSH: %v, %v", v, err)
	}
	tok, _ := storetest.MustToken(t, ns, "", time.Hour)
	d := directMust(t, s, tok, store.Limit{Namespace: store.Rate{Count: 10, Per: time.Second}})
	conn.write(d.AppendCommand(nil))
	reply, rerr := conn.read()
	if rerr == nil || !strings.HasPrefix(rerr.Error(), "NOSCRIPT") {
		t.Fatalf("EVALSHA after SCRIPT FLUSH: %v, %v; want a NOSCRIPT error", reply, rerr)
	}
	noScript, err := d.Result(reply, rerr)
	if !noScript {
		t.Fatalf("Result of NOSCRIPT: noScript false, %v", err)
	}
	directWantErr(t, "Result of NOSCRIPT", err, store.ErrUnavailable)
	if !errors.Is(err, rerr) {
		t.Fatalf("Result of NOSCRIPT: %v does not wrap the reply's error", err)
	}
	directWantGone(t, s, ns, tok.ID)

	conn.write(d.AppendFallback(nil))
	if noScript, err := d.Result(conn.read()); noScript || err != nil {
		t.Fatalf("fallback EVAL: noScript %v, %v", noScript, err)
	}
	got, err := s.Lookup(ctx, ns, tok.ID)
	if err != nil {
		t.Fatalf("Lookup after the fallback: %v", err)
	}
	directEqualToken(t, "Lookup after the fallback", got, tok)

	// EVAL loaded the script: EVALSHA works again.
	next, _ := storetest.MustToken(t, ns, "", time.Hour)
	if err := conn.create(directMust(t, s, next, store.Limit{})); err != nil {
		t.Fatalf("EVALSHA after the fallback: %v", err)
	}
	if _, err := s.Lookup(ctx, ns, next.ID); err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	// And the store's own path still works after the flush.
	if v, err := conn.do("SCRIPT", "FLUSH"); err != nil || v != "OK" {
		t.Fatalf("SCRIPT FLUSH: %v, %v", v, err)
	}
	third, _ := storetest.MustToken(t, ns, "", time.Hour)
	if err := s.CreateLimited(ctx, third, store.Limit{}); err != nil {
		t.Fatalf("CreateLimited after SCRIPT FLUSH: %v", err)
	}
	fourth, _ := storetest.MustToken(t, ns, "", time.Hour)
	if err := conn.create(directMust(t, s, fourth, store.Limit{})); err != nil {
		t.Fatalf("EVALSHA after CreateLimited reloaded the script: %v", err)
	}
}

// TestDirectCreateResult feeds Result replies by hand: what each one means,
// and ErrUnavailable for a failed transport or an answer no create script
// gives.
func TestDirectCreateResult(t *testing.T) {
	s := directUnconnected(t, "redis://redis.invalid:7000/0")
	ns := storetest.Namespace(t)
	caller := directNewID(t, ns)
	tok, _ := storetest.MustToken(t, ns, "", time.Hour)
	nsRate := store.Rate{Count: 3, Per: time.Minute}
	tokRate := store.Rate{Count: 1, Per: time.Second}
	d := directMust(t, s, tok, store.Limit{Namespace: nsRate, Caller: tokRate, CallerID: caller})
	plain := directMust(t, s, tok, store.Limit{})

	for _, tc := range []struct {
		name  string
		d     *store.DirectCreate
		reply any
		want  error // nil: success
	}{
		{"stored", d, int64(1), nil},
		{"exists", d, int64(0), store.ErrExists},
		{"parent not live", d, int64(-1), store.ErrNotFound},
		{"expired", d, int64(-2), store.ErrInvalid},
		{"too many ancestors", d, int64(-3), store.ErrInvalid},
		{"unknown code", d, int64(2), store.ErrUnavailable},
		{"unknown negative code", d, int64(-5), store.ErrUnavailable},
		{"string", d, "OK", store.ErrUnavailable},
		{"numeric string", d, "1", store.ErrUnavailable},
		{"nil", d, nil, store.ErrUnavailable},
		{"empty array", d, []any{}, store.ErrUnavailable},
		{"array of one", d, []any{int64(1)}, store.ErrUnavailable},
		{"rate limited without limits", plain, []any{int64(-4), int64(1), int64(1000)}, store.ErrUnavailable},
		{"rate limit index past the limits", d, []any{int64(-4), int64(3), int64(1000)}, store.ErrUnavailable},
		{"rate limit index 0", d, []any{int64(-4), int64(0), int64(1000)}, store.ErrUnavailable},
		{"negative wait", d, []any{int64(-4), int64(1), int64(-1)}, store.ErrUnavailable},
		{"wrong code", d, []any{int64(-3), int64(1), int64(1000)}, store.ErrUnavailable},
		{"strings", d, []any{"-4", "1", "1000"}, store.ErrUnavailable},
		{"four elements", d, []any{int64(-4), int64(1), int64(1000), int64(0)}, store.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noScript, err := tc.d.Result(tc.reply, nil)
			if noScript {
				t.Fatalf("noScript true for %v", tc.reply)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Result(%v) = %v, want nil", tc.reply, err)
				}
				return
			}
			directWantErr(t, fmt.Sprintf("Result(%#v)", tc.reply), err, tc.want)
		})
	}

	t.Run("rate limited", func(t *testing.T) {
		for _, tc := range []struct {
			i     int64
			scope string
			rate  store.Rate
		}{{1, store.ScopeNamespace, nsRate}, {2, store.ScopeToken, tokRate}} {
			_, err := d.Result([]any{int64(-4), tc.i, int64(1_500_000)}, nil)
			var rl *store.RateLimitedError
			if !errors.As(err, &rl) {
				t.Fatalf("Result of limit %d: %v, want a *RateLimitedError", tc.i, err)
			}
			directWantErr(t, "Result", err, store.ErrRateLimited)
			want := store.RateLimitedError{Scope: tc.scope, Rate: tc.rate, RetryAfter: 1500 * time.Millisecond}
			if *rl != want {
				t.Fatalf("Result of limit %d = %+v, want %+v", tc.i, *rl, want)
			}
		}
		// Only the token limit: it is limit 1.
		only := directMust(t, s, tok, store.Limit{Caller: tokRate, CallerID: caller})
		_, err := only.Result([]any{int64(-4), int64(1), int64(0)}, nil)
		var rl *store.RateLimitedError
		if !errors.As(err, &rl) || rl.Scope != store.ScopeToken || rl.RetryAfter != 0 {
			t.Fatalf("Result with only a token limit: %v", err)
		}
		// A caller limit without a caller id limits nothing: no limit 1.
		none := directMust(t, s, tok, store.Limit{Caller: tokRate})
		_, err = none.Result([]any{int64(-4), int64(1), int64(1000)}, nil)
		directWantErr(t, "Result with a caller limit but no caller", err, store.ErrUnavailable)
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			err      error
			noScript bool
		}{
			{"EOF", io.EOF, false},
			{"unexpected EOF", io.ErrUnexpectedEOF, false},
			{"timeout", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("i/o timeout")}, false},
			{"error reply", directRespErr("ERR Error running script"), false},
			{"READONLY", directRespErr("READONLY You can't write against a read only replica."), false},
			{"NOSCRIPT", directRespErr("NOSCRIPT No matching script. Please use EVAL."), true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				// The reply passed with an error is ignored, whatever it is.
				for _, reply := range []any{nil, int64(1)} {
					noScript, err := d.Result(reply, tc.err)
					if noScript != tc.noScript {
						t.Fatalf("noScript = %v, want %v", noScript, tc.noScript)
					}
					directWantErr(t, "Result", err, store.ErrUnavailable)
					if !errors.Is(err, tc.err) {
						t.Fatalf("Result: %v does not wrap %v", err, tc.err)
					}
					if !strings.Contains(err.Error(), ns+"/"+tok.ID) {
						t.Fatalf("Result: %v does not name the token", err)
					}
				}
			})
		}
	})
}

// TestDirectCreateInvalid checks that DirectCreate refuses what
// CreateLimited refuses, with the same error, and builds no command.
func TestDirectCreateInvalid(t *testing.T) {
	s := directUnconnected(t, "redis://redis.invalid:7000/0")
	ctx := context.Background()
	ns := storetest.Namespace(t)
	good, _ := storetest.MustToken(t, ns, "", time.Hour)
	with := func(f func(*store.Token)) store.Token {
		tok := good
		tok.Policies = slices.Clone(good.Policies)
		f(&tok)
		return tok
	}
	for _, tc := range []struct {
		name  string
		tok   store.Token
		limit store.Limit
	}{
		{"short hash", with(func(t *store.Token) { t.Hash = t.Hash[:63] }), store.Limit{}},
		{"uppercase hash", with(func(t *store.Token) { t.Hash = strings.ToUpper(t.Hash) }), store.Limit{}},
		{"empty hash", with(func(t *store.Token) { t.Hash = "" }), store.Limit{}},
		{"expires before created", with(func(t *store.Token) { t.Expires = t.Created.Add(-time.Second) }), store.Limit{}},
		{"expires at created", with(func(t *store.Token) { t.Expires = t.Created }), store.Limit{}},
		{"already expired", with(func(t *store.Token) {
			t.Created = time.Now().Add(-2 * time.Hour)
			t.Expires = time.Now().Add(-time.Hour)
		}), store.Limit{}},
		{"zero created", with(func(t *store.Token) { t.Created = time.Time{} }), store.Limit{}},
		{"bad namespace", with(func(t *store.Token) { t.Namespace = "Bad Namespace" }), store.Limit{}},
		{"namespace with brace", with(func(t *store.Token) { t.Namespace = "a{b}" }), store.Limit{}},
		{"empty namespace", with(func(t *store.Token) { t.Namespace = "" }), store.Limit{}},
		{"bad id", with(func(t *store.Token) { t.ID = "not-a-uuid" }), store.Limit{}},
		{"bad parent", with(func(t *store.Token) { t.Parent = "x" }), store.Limit{}},
		{"own parent", with(func(t *store.Token) { t.Parent = t.ID }), store.Limit{}},
		{"zero count rate", good, store.Limit{Namespace: store.Rate{Count: 0, Per: time.Second}}},
		{"rate below a microsecond", good, store.Limit{Namespace: store.Rate{Count: 10, Per: time.Nanosecond}}},
		{"bad caller id", good, store.Limit{Caller: store.Rate{Count: 1, Per: time.Second}, CallerID: "nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := s.DirectCreate(tc.tok, tc.limit)
			if d != nil {
				t.Fatalf("DirectCreate returned a create (%q...) with %v", d.AppendCommand(nil)[:20], err)
			}
			directWantErr(t, "DirectCreate", err, store.ErrInvalid)
			// CreateLimited refuses it before it reaches Redis, the same way.
			cerr := s.CreateLimited(ctx, tc.tok, tc.limit)
			if cerr == nil || err.Error() != cerr.Error() {
				t.Fatalf("DirectCreate: %v\nCreateLimited: %v", err, cerr)
			}
		})
	}
	// The valid record itself passes.
	directMust(t, s, good, store.Limit{})
}

// TestDirect checks when a store can be reached over a connection of the
// caller's own, and how.
func TestDirect(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want store.DirectConn
	}{
		{"redis://redis.invalid:7000/0", store.DirectConn{Addr: "redis.invalid:7000", DialTimeout: store.DefaultRedisDialTimeout, ReadTimeout: store.DefaultRedisReadTimeout}},
		{"redis://redis.invalid", store.DirectConn{Addr: "redis.invalid:6379", DialTimeout: store.DefaultRedisDialTimeout, ReadTimeout: store.DefaultRedisReadTimeout}},
		{"redis://[::1]:7000", store.DirectConn{Addr: "[::1]:7000", DialTimeout: store.DefaultRedisDialTimeout, ReadTimeout: store.DefaultRedisReadTimeout}},
		{"redis://redis.invalid:7000/0?dial_timeout=300ms&read_timeout=700ms", store.DirectConn{Addr: "redis.invalid:7000", DialTimeout: 300 * time.Millisecond, ReadTimeout: 700 * time.Millisecond}},
		{"redis://:s3cret@redis.invalid:7000/0", store.DirectConn{Addr: "redis.invalid:7000",
			Init: [][]string{{"AUTH", "s3cret"}}, DialTimeout: store.DefaultRedisDialTimeout, ReadTimeout: store.DefaultRedisReadTimeout}},
		{"redis://alice:p%40ss@redis.invalid:7000/0", store.DirectConn{Addr: "redis.invalid:7000",
			Init: [][]string{{"AUTH", "alice", "p@ss"}}, DialTimeout: store.DefaultRedisDialTimeout, ReadTimeout: store.DefaultRedisReadTimeout}},
		{"redis://redis.invalid:7000/3", store.DirectConn{Addr: "redis.invalid:7000",
			Init: [][]string{{"SELECT", "3"}}, DialTimeout: store.DefaultRedisDialTimeout, ReadTimeout: store.DefaultRedisReadTimeout}},
		{"redis://alice:pw@redis.invalid:7000/15", store.DirectConn{Addr: "redis.invalid:7000",
			Init: [][]string{{"AUTH", "alice", "pw"}, {"SELECT", "15"}}, DialTimeout: store.DefaultRedisDialTimeout, ReadTimeout: store.DefaultRedisReadTimeout}},
	} {
		t.Run("direct "+tc.url, func(t *testing.T) {
			got, ok := directUnconnected(t, tc.url).Direct()
			if !ok {
				t.Fatal("Direct() = false")
			}
			if got.Addr != tc.want.Addr || got.DialTimeout != tc.want.DialTimeout || got.ReadTimeout != tc.want.ReadTimeout || !directEqualInit(got.Init, tc.want.Init) {
				t.Fatalf("Direct() = %+v\nwant     %+v", got, tc.want)
			}
		})
	}

	for _, rawURL := range []string{
		"rediss://redis.invalid:7000/0",
		"rediss://:pw@redis.invalid:7000/2",
		"redis+cluster://redis.invalid:7000,redis.invalid:7001",
		"rediss+cluster://redis.invalid:7000",
		"redis://redis.invalid:7000/0?wait_replicas=1",
		"redis://redis.invalid:7000/0?wait_replicas=2&wait_timeout=100ms",
	} {
		t.Run("not direct "+rawURL, func(t *testing.T) {
			if got, ok := directUnconnected(t, rawURL).Direct(); ok {
				t.Fatalf("Direct() = %+v, true; want false", got)
			}
		})
	}

	for name, c := range map[string]redis.UniversalClient{
		"cluster client":      redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"redis.invalid:7000"}}),
		"unix socket":         redis.NewClient(&redis.Options{Network: "unix", Addr: "/tmp/redis.invalid.sock"}),
		"unix socket by path": redis.NewClient(&redis.Options{Addr: "/tmp/redis.invalid.sock"}),
		"credentials provider": redis.NewClient(&redis.Options{Addr: "redis.invalid:7000",
			CredentialsProvider: func() (string, string) { return "u", "p" }}),
		"credentials provider with context": redis.NewClient(&redis.Options{Addr: "redis.invalid:7000",
			CredentialsProviderContext: func(context.Context) (string, string, error) { return "u", "p", nil }}),
	} {
		t.Run("not direct "+name, func(t *testing.T) {
			r := store.NewRedisClient(c, store.RedisOptions{})
			defer r.Close()
			if got, ok := r.Direct(); ok {
				t.Fatalf("Direct() = %+v, true; want false", got)
			}
		})
	}
	t.Run("not direct with WaitReplicas option", func(t *testing.T) {
		r := store.NewRedisClient(redis.NewClient(&redis.Options{Addr: "redis.invalid:7000"}), store.RedisOptions{WaitReplicas: 1})
		defer r.Close()
		if got, ok := r.Direct(); ok {
			t.Fatalf("Direct() = %+v, true; want false", got)
		}
	})
	t.Run("no timeouts get defaults", func(t *testing.T) {
		// go-redis keeps -1 (none) as it is; a loop's connection needs a
		// bound all the same.
		r := store.NewRedisClient(redis.NewClient(&redis.Options{Addr: "redis.invalid:7000", DialTimeout: -1, ReadTimeout: -1}), store.RedisOptions{})
		defer r.Close()
		got, ok := r.Direct()
		if !ok || got.Addr != "redis.invalid:7000" || got.DialTimeout != 5*time.Second || got.ReadTimeout != 3*time.Second || len(got.Init) != 0 {
			t.Fatalf("Direct() = %+v, %v", got, ok)
		}
	})
}

func directEqualInit(a, b [][]string) bool {
	return slices.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

// TestDirectNotForSentinel: a Sentinel store's client is a *redis.Client
// too (redis.NewFailoverClient), whose Options().Addr is "FailoverClient",
// not a server.
func TestDirectNotForSentinel(t *testing.T) {
	for _, rawURL := range []string{
		"redis+sentinel://redis.invalid:26379/mymaster",
		"redis+sentinel://:pw@redis.invalid:26379,redis.invalid:26380/mymaster/2",
	} {
		t.Run(rawURL, func(t *testing.T) {
			got, ok := directUnconnected(t, rawURL).Direct()
			if ok {
				t.Errorf("Direct() on a Sentinel store = %+v, true; want false (a failover client is a *redis.Client whose Addr is no server)", got)
			}
		})
	}
}

// TestDirectRealServers checks Direct against running servers: the plain
// one is reached at its address; AUTH and SELECT from Init set a fresh
// connection up so that a direct create lands in the store's database;
// TLS and wait_replicas stores are not direct.
func TestDirectRealServers(t *testing.T) {
	ctx := context.Background()

	t.Run("plain", func(t *testing.T) {
		srv := redistest.Start(t)
		s := mustRedis(t, srv.URL(), store.RedisOptions{})
		got, ok := s.Direct()
		if !ok || got.Addr != srv.Addr() || len(got.Init) != 0 {
			t.Fatalf("Direct() = %+v, %v; want %s without Init", got, ok, srv.Addr())
		}
	})

	t.Run("auth and select", func(t *testing.T) {
		srv := redistest.Start(t)
		admin := directDial(t, srv.Addr())
		for _, cmd := range [][]string{
			{"ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "&*", "+@all"},
			{"CONFIG", "SET", "requirepass", "default-pw"},
		} {
			if v, err := admin.do(cmd...); err != nil || v != "OK" {
				t.Fatalf("%v: %v, %v", cmd[:2], v, err)
			}
		}
		for _, tc := range []struct {
			name, userinfo, user, pass string
			db                         int
			init                       [][]string
		}{
			{"user in db 3", "alice:alice-pw@", "alice", "alice-pw", 3, [][]string{{"AUTH", "alice", "alice-pw"}, {"SELECT", "3"}}},
			{"default user in db 0", ":default-pw@", "", "default-pw", 0, [][]string{{"AUTH", "default-pw"}}},
			{"default user in db 7", ":default-pw@", "", "default-pw", 7, [][]string{{"AUTH", "default-pw"}, {"SELECT", "7"}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := mustRedis(t, "redis://"+tc.userinfo+srv.Addr()+"/"+strconv.Itoa(tc.db), store.RedisOptions{})
				d, ok := s.Direct()
				if !ok || d.Addr != srv.Addr() || !directEqualInit(d.Init, tc.init) {
					t.Fatalf("Direct() = %+v, %v; want Init %q", d, ok, tc.init)
				}
				ns := storetest.Namespace(t)
				tok, _ := storetest.MustToken(t, ns, "", time.Hour)
				dc := directMust(t, s, tok, store.Limit{})

				// Without Init the server refuses the create.
				bare := directDial(t, d.Addr)
				bare.write(dc.AppendCommand(nil))
				noScript, err := dc.Result(bare.read())
				// (Redis answers NOAUTH, or for a command of more than a few
				// arguments refuses it as a protocol error and hangs up.)
				var re directRespErr
				if noScript || !errors.Is(err, store.ErrUnavailable) || !errors.As(err, &re) ||
					!(strings.HasPrefix(string(re), "NOAUTH") || strings.Contains(string(re), "unauthenticated")) {
					t.Fatalf("create without AUTH: noScript %v, %v; want the server's refusal as ErrUnavailable", noScript, err)
				}

				conn := directDial(t, d.Addr)
				var b []byte
				for _, cmd := range d.Init {
					b = directAppendCommand(b, cmd...)
				}
				conn.write(b) // pipelined, as a caller would
				for _, cmd := range d.Init {
					if v, err := conn.read(); err != nil || v != "OK" {
						t.Fatalf("%s: %v, %v", cmd[0], v, err)
					}
				}
				if err := conn.create(dc); err != nil {
					t.Fatalf("direct create: %v", err)
				}
				got, err := s.Lookup(ctx, ns, tok.ID)
				if err != nil {
					t.Fatalf("Lookup through the store: %v", err)
				}
				directEqualToken(t, "Lookup", got, tok)
				key := store.DefaultRedisPrefix + ":{" + ns + "}:tok:" + tok.ID
				for db := range 16 {
					c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DB: db, Username: tc.user, Password: tc.pass, MaxRetries: -1, Protocol: 2})
					n, err := c.Exists(ctx, key).Result()
					_ = c.Close()
					if err != nil {
						t.Fatalf("EXISTS in db %d: %v", db, err)
					}
					if want := int64(0); db == tc.db {
						if n != 1 {
							t.Fatalf("record not in db %d", db)
						}
					} else if n != want {
						t.Fatalf("record in db %d, want only in db %d", db, tc.db)
					}
				}
			})
		}
	})

	t.Run("wait_replicas", func(t *testing.T) {
		srv := redistest.Start(t)
		s := mustRedis(t, srv.URL()+"?wait_replicas=1&wait_timeout=100ms", store.RedisOptions{})
		if got, ok := s.Direct(); ok {
			t.Fatalf("Direct() = %+v, true; want false", got)
		}
	})

	t.Run("tls", func(t *testing.T) {
		srv := redistest.StartTLS(t)
		s := mustRedis(t, srv.TLSURL()+"?tls_ca_file="+url.QueryEscape(srv.CAFile), store.RedisOptions{})
		if got, ok := s.Direct(); ok {
			t.Fatalf("Direct() = %+v, true; want false", got)
		}
	})
}
