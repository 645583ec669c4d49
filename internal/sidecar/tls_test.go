package sidecar

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/credential"
	"github.com/direktiv/direktiv-authz/internal/testutil"
	"github.com/direktiv/direktiv-authz/internal/tlsreload"
)

// secretDir lays out a certificate as a mounted Kubernetes Secret does:
// tls.crt -> ..data/tls.crt, ..data -> ..<version>/, and an update swaps
// the ..data symlink atomically.
type secretDir struct {
	dir     string
	version int
}

func (d *secretDir) certFile() string { return filepath.Join(d.dir, "tls.crt") }
func (d *secretDir) keyFile() string  { return filepath.Join(d.dir, "tls.key") }

// update publishes a new certificate for cn, signed by ca.
func (d *secretDir) update(tb testing.TB, ca *testutil.CA, cn string) {
	tb.Helper()
	certPEM, keyPEM := ca.Issue(tb, cn)
	d.version++
	ver := "..v" + strings.Repeat("0", 3) + string(rune('0'+d.version))
	if err := os.Mkdir(filepath.Join(d.dir, ver), 0o700); err != nil {
		tb.Fatal(err)
	}
	testutil.WriteFile(tb, filepath.Join(d.dir, ver), "tls.crt", string(certPEM))
	testutil.WriteFile(tb, filepath.Join(d.dir, ver), "tls.key", string(keyPEM))
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(ver, tmp); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		tb.Fatal(err)
	}
	if d.version == 1 {
		for _, f := range []string{"tls.crt", "tls.key"} {
			if err := os.Symlink(filepath.Join("..data", f), filepath.Join(d.dir, f)); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// servedCN makes a new TLS connection to addr and returns the common name of
// the certificate it is served.
func servedCN(tb testing.TB, addr string, roots *x509.CertPool) string {
	tb.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		tb.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func TestTLSListener(t *testing.T) {
	ca := testutil.NewCA(t)
	sd := &secretDir{dir: t.TempDir()}
	sd.update(t, ca, "first")
	up := startUpstream(t)
	s := startSidecar(t, []string{"--dev", "--upstream", up.URL(), "--tls-cert-file", sd.certFile(), "--tls-key-file", sd.keyFile()})
	addr := s.app.addr()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, DisableKeepAlives: true}}

	// HTTPS serves the sidecar's own endpoints and forwards, telling the
	// upstream the client used https.
	req, _ := http.NewRequest("GET", "https://"+addr+"/api/namespaces/ns1/auth/token", nil)
	req.Header.Set(credential.HeaderToken, testAdminToken)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("whoami over https: %d", res.StatusCode)
	}
	req, _ = http.NewRequest("GET", "https://"+addr+"/api/version", nil)
	req.Header.Set(credential.HeaderToken, testAdminToken)
	res, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := up.Only(t).Header.Get("X-Forwarded-Proto"); res.StatusCode != 200 || got != "https" {
		t.Errorf("forwarded over https: %d, X-Forwarded-Proto %q", res.StatusCode, got)
	}
	// Plain HTTP on the TLS port is refused.
	if _, err := http.Get("http://" + addr + "/api/version"); err == nil {
		t.Error("plain HTTP answered on the TLS listener")
	}
	if got := servedCN(t, addr, ca.Pool); got != "first" {
		t.Fatalf("serving %q", got)
	}

	// A Secret update (symlink swap) is picked up by a later handshake.
	sd.update(t, ca, "second")
	testutil.Eventually(t, "the swapped certificate is served", func() bool { return servedCN(t, addr, ca.Pool) == "second" })

	// So is a file rewritten in place, even when the key and certificate
	// are written one after the other (a handshake in between keeps the
	// previous pair).
	cert, key := ca.Issue(t, "third")
	ver := filepath.Join(sd.dir, "..data")
	testutil.WriteFile(t, ver, "tls.key", string(key))
	time.Sleep(tlsreload.CheckInterval + 100*time.Millisecond)
	if got := servedCN(t, addr, ca.Pool); got != "second" {
		t.Errorf("with a key not matching the certificate: serving %q, want the previous one", got)
	}
	testutil.WriteFile(t, ver, "tls.crt", string(cert))
	testutil.Eventually(t, "the rewritten certificate is served", func() bool { return servedCN(t, addr, ca.Pool) == "third" })

	got := s.scrape(t)
	if got[`direktiv_authz_tls_cert_reload_failures_total`] < 1 {
		t.Errorf("reload failures %v, want at least 1", got[`direktiv_authz_tls_cert_reload_failures_total`])
	}
	if na := got[`direktiv_authz_tls_cert_not_after_seconds`]; na < float64(time.Now().Unix()) {
		t.Errorf("tls_cert_not_after_seconds %v", na)
	}
	if !strings.Contains(s.logs.String(), "TLS certificate reloaded") || !strings.Contains(s.logs.String(), "do not load") {
		t.Error("reloads and failed reloads are not logged")
	}
}
