package testutil

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// get sends a GET to url and returns the status, a header and the body.
func get(tb testing.TB, c *http.Client, url string) (int, http.Header, string) {
	tb.Helper()
	res, err := c.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return res.StatusCode, res.Header, string(b)
}

func TestUpstreamRoutes(t *testing.T) {
	u := StartUpstream(t)
	var chunked strings.Builder
	for i := range 3 {
		chunked.Write(UpstreamChunk(i))
	}
	for _, tt := range []struct {
		target, wantHeader, wantBody string
		status                       int
	}{
		{"/a/b?c=d", "X-Upstream", `{"method":"GET","uri":"/a/b?c=d"}` + "\n", http.StatusOK},
		{"/test/sleep?d=10ms", "Content-Type", `{"slept":"10ms"}` + "\n", http.StatusOK},
		{"/test/chunked?n=3", "Content-Type", chunked.String(), http.StatusOK},
		{"/test/hop", "X-Upstream-Hop", `{"ok":true}` + "\n", http.StatusCreated},
	} {
		t.Run(tt.target, func(t *testing.T) {
			u.Reset()
			status, h, body := get(t, http.DefaultClient, u.URL()+tt.target)
			if status != tt.status || h.Get(tt.wantHeader) == "" || body != tt.wantBody {
				t.Errorf("status %d, %s %q, body %q; want %d, a %s, %q", status, tt.wantHeader, h.Get(tt.wantHeader), body, tt.status, tt.wantHeader, tt.wantBody)
			}
			if got := u.Only(t); got.Method != "GET" || got.URI != tt.target || got.Host != u.Addr() || got.Body != "" || got.BodyErr != nil {
				t.Errorf("recorded %+v", got)
			}
			u.None(t)
		})
	}
}

func TestUpstreamRecordsBodies(t *testing.T) {
	u := StartUpstream(t)
	big := strings.Repeat("x", RecordBodyLimit+10)
	res, err := http.Post(u.URL()+"/big", "text/plain", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := u.Only(t); got.Method != "POST" || got.ContentLength != int64(len(big)) || got.Size != int64(len(big)) || got.Body != big[:RecordBodyLimit] {
		t.Errorf("recorded %s, Content-Length %d, size %d, body of %d bytes", got.Method, got.ContentLength, got.Size, len(got.Body))
	}

	body := "hello upload"
	res, err = http.Post(u.URL()+"/test/upload", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	sum := sha256.Sum256([]byte(body))
	if want := `{"sha256":"` + hex.EncodeToString(sum[:]) + `","size":12}` + "\n"; string(b) != want {
		t.Errorf("upload answered %q, want %q", b, want)
	}
	if u.Received() != int64(len(body)) {
		t.Errorf("Received %d, want %d", u.Received(), len(body))
	}
	if got := u.Only(t); got.Size != int64(len(body)) || got.Body != "" {
		t.Errorf("upload recorded size %d, body %q", got.Size, got.Body)
	}
	u.Reset()
	if u.Received() != 0 {
		t.Errorf("Received %d after Reset", u.Received())
	}

	// A chunked body cut short is recorded with why Go could not read it.
	c, err := net.Dial("tcp", u.Addr())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "POST /cut HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX")
	c.Close()
	Eventually(t, "the cut request recorded", func() bool { return len(u.Requests()) == 1 })
	if got := u.Only(t); got.BodyErr == nil || got.Body != "hello" || !slices.Equal(got.TransferEncoding, []string{"chunked"}) {
		t.Errorf("cut request recorded body %q, error %v", got.Body, got.BodyErr)
	}
}

func TestUpstreamEvents(t *testing.T) {
	u := StartUpstream(t)
	res, err := http.Get(u.URL() + "/test/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	u.Send(t, "one")
	if l, _ := br.ReadString('\n'); l != "data: one\n" {
		t.Errorf("event %q", l)
	}
	br.ReadString('\n')
	u.Send(t, "")
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after the end: %q, %v", rest, err)
	}
}

func TestUpstreamAnswerFirst(t *testing.T) {
	u := StartUpstream(t, UpstreamAnswer(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/mine" {
			return false
		}
		w.WriteHeader(299)
		return true
	}))
	if status, _, _ := get(t, http.DefaultClient, u.URL()+"/mine"); status != 299 {
		t.Errorf("/mine: %d, want the answer's 299", status)
	}
	if status, h, _ := get(t, http.DefaultClient, u.URL()+"/other"); status != 200 || h.Get("X-Upstream") != "direktiv" {
		t.Errorf("/other: %d, want the upstream's own echo", status)
	}
	if n := len(u.Requests()); n != 2 {
		t.Errorf("%d requests recorded, want 2", n)
	}
}

func TestUpstreamTLSAndConns(t *testing.T) {
	u := StartUpstream(t, UpstreamTLS())
	if !strings.HasPrefix(u.URL(), "https://") {
		t.Fatalf("URL %s", u.URL())
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(u.CertPEM()) {
		t.Fatal("CertPEM holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	c := &http.Client{Transport: tr}
	for range 3 {
		if status, _, _ := get(t, c, u.URL()+"/x"); status != 200 {
			t.Fatalf("status %d", status)
		}
	}
	if u.Conns() != 1 || u.Open() != 1 {
		t.Errorf("%d connections, %d open, want 1 kept alive", u.Conns(), u.Open())
	}
	tr.CloseIdleConnections()
	Eventually(t, "the connection closed", func() bool { return u.Open() == 0 })
}

func TestUpstreamListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := StartUpstream(t, UpstreamListener(ln))
	if u.Addr() != ln.Addr().String() {
		t.Errorf("Addr %s, want the listener's %s", u.Addr(), ln.Addr())
	}
	if status, _, body := get(t, http.DefaultClient, "http://"+ln.Addr().String()+"/y"); status != 200 || !strings.Contains(body, `"uri":"/y"`) {
		t.Errorf("status %d, body %q", status, body)
	}
}
