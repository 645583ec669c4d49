package redis_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/testutil"
	"github.com/direktiv/direktiv-authz/store"
	"github.com/direktiv/direktiv-authz/store/redis"
	"github.com/direktiv/direktiv-authz/store/storetest"
)

// TestTLS runs the conformance suite over rediss:// against a
// redis-server serving TLS with a certificate of a private CA, trusted
// through the URL's tls_ca_file.
func TestTLS(t *testing.T) {
	srv := testutil.StartRedisTLS(t)
	u := srv.TLSURL() + "?tls_ca_file=" + url.QueryEscape(srv.CAFile)
	// One server for all subtests; a prefix per subtest keeps them (and
	// their revocation channels) apart.
	prefix := storetest.PerTest(func(t *testing.T) string { return "t" + storetest.Namespace(t) })
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return mustRedis(t, u, redis.Options{Prefix: prefix(t)})
	})
}

func TestTLSRefused(t *testing.T) {
	srv := testutil.StartRedisTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct{ name, url string }{
		// The system roots do not know the test CA.
		{"untrusted certificate", srv.TLSURL() + "?max_retries=0"},
		// Plain text to the TLS port.
		{"not TLS", "redis://" + srv.TLSAddr() + "/0?max_retries=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := redis.New(ctx, tc.url, redis.Options{})
			if err == nil {
				r.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("error %v does not wrap ErrUnavailable", err)
			}
		})
	}
}

func TestURLTLSCAFile(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ url, mention string }{
		{"rediss://:s3cr3tpass@h:1/0?tls_ca_file=" + url.QueryEscape(filepath.Join(dir, "missing.pem")), "tls_ca_file"},
		{"rediss://:s3cr3tpass@h:1/0?tls_ca_file=" + url.QueryEscape(notPEM), "no PEM certificate"},
		{"redis://:s3cr3tpass@h:1/0?tls_ca_file=" + url.QueryEscape(notPEM), "only for TLS URLs"},
		{"redis+cluster://:s3cr3tpass@h:1?tls_ca_file=" + url.QueryEscape(notPEM), "only for TLS URLs"},
	} {
		_, err := redis.ParseURL(tc.url)
		if err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.url, err, tc.mention)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3tpass") {
			t.Errorf("%s: error shows the password: %v", tc.url, err)
		}
	}
	srv := testutil.StartRedisTLS(t)
	c, err := redis.ParseURL("rediss+cluster://h:1?tls_ca_file=" + url.QueryEscape(srv.CAFile))
	if err != nil || c.Cluster.TLSConfig == nil || c.Cluster.TLSConfig.RootCAs == nil {
		t.Fatalf("rediss+cluster with tls_ca_file: %v", err)
	}
}
