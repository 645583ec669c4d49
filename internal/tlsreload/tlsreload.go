// Package tlsreload serves a certificate and key from files and picks up
// their replacement (a Secret's ..data swap) without a restart. It imports
// nothing of the project.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CheckInterval is how often, at most, a TLS handshake looks at the
// certificate files for a change.
const CheckInterval = time.Second

// Reloader serves the certificate of --tls-cert-file/--tls-key-file and
// picks up a new one without a restart: a handshake at most once per
// CheckInterval stats both files (following symlinks, so a Kubernetes
// Secret's ..data symlink swap counts as a change) and reloads the pair when
// either changed. A pair that does not load (a half-written file, a key not
// matching the certificate) is logged and the current certificate stays
// until the next check finds a good pair.
//
// Polling on handshakes costs two stat calls a second under load and nothing
// when idle; fsnotify would need a watch on each file's directory to follow
// symlink swaps, and a goroutine.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	cert      atomic.Pointer[tls.Certificate]
	nextCheck atomic.Int64 // unix ns; a handshake after it checks the files

	mu                sync.Mutex // held by the one check running
	certStat, keyStat os.FileInfo
	now               func() time.Time
	failures          atomic.Uint64 // changes that did not load
}

// New loads the pair once; its error names the setting.
func New(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	cs, ks, pair, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert.Store(pair)
	r.certStat, r.keyStat = cs, ks
	r.nextCheck.Store(r.now().Add(CheckInterval).UnixNano())
	return r, nil
}

// LoadKeyPair stats and loads the pair. Errors name the settings.
func LoadKeyPair(certFile, keyFile string) (cs, ks os.FileInfo, pair *tls.Certificate, err error) {
	if cs, err = os.Stat(certFile); err != nil {
		return nil, nil, nil, fmt.Errorf("--tls-cert-file: %w", err)
	}
	if ks, err = os.Stat(keyFile); err != nil {
		return nil, nil, nil, fmt.Errorf("--tls-key-file: %w", err)
	}
	p, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--tls-cert-file %s and --tls-key-file %s: %w", certFile, keyFile, err)
	}
	if p.Leaf == nil && len(p.Certificate) > 0 {
		p.Leaf, _ = x509.ParseCertificate(p.Certificate[0])
	}
	return cs, ks, &p, nil
}

// Config is the server's TLS configuration: TLS 1.2 or later, HTTP/1.1
// (fasthttp speaks no HTTP/2), the certificate from r.
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: r.getCertificate,
	}
}

func (r *Reloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := r.now().UnixNano()
	if next := r.nextCheck.Load(); now >= next && r.nextCheck.CompareAndSwap(next, now+int64(CheckInterval)) {
		r.check()
	}
	return r.cert.Load(), nil
}

// check reloads the pair if either file changed since it was loaded.
func (r *Reloader) check() {
	if !r.mu.TryLock() {
		return // a slow check is still running
	}
	defer r.mu.Unlock()
	cs, err1 := os.Stat(r.certFile)
	ks, err2 := os.Stat(r.keyFile)
	if err1 == nil && err2 == nil && sameFile(cs, r.certStat) && sameFile(ks, r.keyStat) {
		return
	}
	cs, ks, pair, err := LoadKeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.failures.Add(1)
		r.log.Warn("the TLS certificate files changed but do not load; serving the previous certificate until they do", "err", err)
		return
	}
	r.cert.Store(pair)
	r.certStat, r.keyStat = cs, ks
	attrs := []any{"cert", r.certFile}
	if pair.Leaf != nil {
		attrs = append(attrs, "subject", pair.Leaf.Subject.String(), "not_after", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	r.log.Info("TLS certificate reloaded", attrs...)
}

// sameFile reports whether a and b describe the same, unchanged file.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// NotAfter is when the certificate being served expires, in unix seconds; 0
// if unknown.
func (r *Reloader) NotAfter() float64 {
	if c := r.cert.Load(); c != nil && c.Leaf != nil {
		return float64(c.Leaf.NotAfter.Unix())
	}
	return 0
}

// Failures counts changes of the files that did not load (the previous
// certificate stayed).
func (r *Reloader) Failures() uint64 { return r.failures.Load() }
