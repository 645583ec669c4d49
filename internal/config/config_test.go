package config_test

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/internal/testutil"
)

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	tokenFile := testutil.WriteFile(t, dir, "admin", "file-admin-token\n")
	emptyFile := testutil.WriteFile(t, dir, "empty", "\n")
	prod := []string{"DIREKTIV_AUTHZ_REDIS_URL=redis://127.0.0.1:1/0", "DIREKTIV_AUTHZ_ADMIN_TOKEN=env-admin-token"}

	t.Run("defaults", func(t *testing.T) {
		c, err := config.Parse(nil, prod, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != ":8090" || c.Upstream != "http://127.0.0.1:8080" || c.DefaultTTL != "P30D" || c.MaxTTL != "P1Y" || c.Dev {
			t.Errorf("defaults: %+v", c)
		}
		if c.AdminToken != "env-admin-token" {
			t.Errorf("admin token from env not taken")
		}
	})
	t.Run("flags win over environment", func(t *testing.T) {
		env := append([]string{"DIREKTIV_AUTHZ_LISTEN=:1111", "DIREKTIV_AUTHZ_MAX_TTL=P2Y"}, prod...)
		c, err := config.Parse([]string{"--listen", ":2222", "--admin-token-file", tokenFile}, env, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != ":2222" || c.MaxTTL != "P2Y" || c.AdminToken != "file-admin-token" {
			t.Errorf("got listen %s max %s", c.Listen, c.MaxTTL)
		}
	})
	t.Run("token file from environment", func(t *testing.T) {
		c, err := config.Parse(nil, []string{"DIREKTIV_AUTHZ_REDIS_URL=redis://x:1", "DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE=" + tokenFile}, io.Discard)
		if err != nil || c.AdminToken != "file-admin-token" {
			t.Fatalf("%v %q", err, c.AdminToken)
		}
	})
	t.Run("dev needs nothing", func(t *testing.T) {
		c, err := config.Parse([]string{"--dev"}, nil, io.Discard)
		if err != nil || !c.Dev {
			t.Fatalf("%v", err)
		}
		c, err = config.Parse(nil, []string{"DIREKTIV_AUTHZ_DEV=true"}, io.Discard)
		if err != nil || !c.Dev {
			t.Fatalf("%v", err)
		}
	})
	t.Run("kubernetes service links are ignored", func(t *testing.T) {
		env := append([]string{
			"DIREKTIV_AUTHZ_SERVICE_HOST=10.0.0.1", "DIREKTIV_AUTHZ_SERVICE_PORT=8090", "DIREKTIV_AUTHZ_SERVICE_PORT_HTTP=8090",
			"DIREKTIV_AUTHZ_PORT=tcp://10.0.0.1:8090", "DIREKTIV_AUTHZ_PORT_8090_TCP=tcp://10.0.0.1:8090",
			"DIREKTIV_AUTHZ_PORT_8090_TCP_ADDR=10.0.0.1", "DIREKTIV_AUTHZ_PORT_8090_TCP_PORT=8090", "DIREKTIV_AUTHZ_PORT_8090_TCP_PROTO=tcp",
		}, prod...)
		if _, err := config.Parse(nil, env, io.Discard); err != nil {
			t.Fatal(err)
		}
		if _, err := config.Parse(nil, append([]string{"DIREKTIV_AUTHZ_PORT_X"}, prod...), io.Discard); err == nil {
			t.Fatal("DIREKTIV_AUTHZ_PORT_X accepted")
		}
	})
	t.Run("event loops", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			env  string
			want int
		}{
			{nil, "", 0}, // auto: relay.DefaultLoops
			{[]string{"--event-loops", "auto"}, "", 0},
			{[]string{"--event-loops", "off"}, "", -1},
			{[]string{"--event-loops", "3"}, "", 3},
			{nil, "DIREKTIV_AUTHZ_EVENT_LOOPS=off", -1},
			{[]string{"--event-loops", "2"}, "DIREKTIV_AUTHZ_EVENT_LOOPS=off", 2},
		} {
			env := prod
			if tc.env != "" {
				env = append([]string{tc.env}, prod...)
			}
			c, err := config.Parse(tc.args, env, io.Discard)
			if err != nil || c.Loops != tc.want {
				t.Errorf("%v %s: loops %d, %v; want %d", tc.args, tc.env, c.Loops, err, tc.want)
			}
		}
		for _, v := range []string{"0", "-1", "257", "two", ""} {
			_, err := config.Parse([]string{"--event-loops", v}, prod, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "--event-loops") || !strings.Contains(err.Error(), "want auto, off or a number from 1 to 256") {
				t.Errorf("--event-loops %q: %v", v, err)
			}
		}
	})
	t.Run("help", func(t *testing.T) {
		if _, err := config.Parse([]string{"--help"}, nil, io.Discard); !errors.Is(err, config.ErrHelp) {
			t.Fatalf("%v", err)
		}
	})

	bad := []struct {
		name    string
		args    []string
		env     []string
		mention string
	}{
		{"no redis", nil, []string{"DIREKTIV_AUTHZ_ADMIN_TOKEN=x"}, "--redis-url"},
		{"no admin token", nil, []string{"DIREKTIV_AUTHZ_REDIS_URL=redis://x:1"}, "admin token is required"},
		{"both admin envs", nil, append([]string{"DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE=" + tokenFile}, prod...), "not both"},
		{"missing token file", []string{"--admin-token-file", filepath.Join(dir, "nope")}, prod, "--admin-token-file"},
		{"empty token file", []string{"--admin-token-file", emptyFile}, prod, "empty"},
		{"unknown flag", []string{"--nope"}, prod, "nope"},
		{"positional", []string{"serve"}, prod, `"serve"`},
		{"unknown env", nil, append([]string{"DIREKTIV_AUTHZ_LISTN=:1"}, prod...), "DIREKTIV_AUTHZ_LISTN"},
		{"bad bool", nil, []string{"DIREKTIV_AUTHZ_DEV=yes please"}, "DIREKTIV_AUTHZ_DEV"},
		{"bad listen", []string{"--listen", "8090"}, prod, "--listen"},
		{"bad upstream", []string{"--upstream", "ftp://x"}, prod, "--upstream"},
		{"bad default ttl", []string{"--default-ttl", "30d"}, prod, "--default-ttl"},
		{"bad max ttl", []string{"--max-ttl", "P0D"}, prod, "--max-ttl"},
		{"default above max", []string{"--default-ttl", "P2Y", "--max-ttl", "P1Y"}, prod, "longer than --max-ttl"},
		{"bad log level", []string{"--log-level", "loud"}, prod, "--log-level"},
		{"admin looks minted", nil, []string{"DIREKTIV_AUTHZ_REDIS_URL=redis://x:1", "DIREKTIV_AUTHZ_ADMIN_TOKEN=dkt_abc"}, "must not start"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse(tc.args, tc.env, io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("%q does not mention %q", err, tc.mention)
			}
			if strings.Contains(err.Error(), "env-admin-token") || strings.Contains(err.Error(), "file-admin-token") {
				t.Errorf("error shows the admin token: %v", err)
			}
		})
	}
}

func TestParseOpsConfig(t *testing.T) {
	prod := []string{"DIREKTIV_AUTHZ_REDIS_URL=redis://127.0.0.1:1/0", "DIREKTIV_AUTHZ_ADMIN_TOKEN=env-admin-token"}
	c, err := config.Parse(nil, prod, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.OpsAddr != ":9090" || c.Grace != 25*time.Second || !c.TokenRate.IsZero() || !c.NamespaceRate.IsZero() {
		t.Errorf("defaults: ops %q grace %s rates %v %v", c.OpsAddr, c.Grace, c.TokenRate, c.NamespaceRate)
	}
	c, err = config.Parse([]string{"--mint-rate-per-token", "10/s", "--shutdown-grace", "0"},
		append([]string{"DIREKTIV_AUTHZ_MINT_RATE_PER_NAMESPACE=600/m", "DIREKTIV_AUTHZ_OPS_LISTEN=off"}, prod...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.OpsAddr != "" || c.Grace != 0 || c.TokenRate.String() != "10/s" || c.NamespaceRate.String() != "600/m" {
		t.Errorf("got ops %q grace %s rates %v %v", c.OpsAddr, c.Grace, c.TokenRate, c.NamespaceRate)
	}
	for _, v := range []string{"", "0"} {
		c, err := config.Parse([]string{"--mint-rate-per-namespace", v}, prod, io.Discard)
		if err != nil || !c.NamespaceRate.IsZero() {
			t.Errorf("--mint-rate-per-namespace %q: %v %v", v, c.NamespaceRate, err)
		}
	}

	dir := t.TempDir()
	cert := testutil.WriteFile(t, dir, "cert.pem", "not a certificate")
	for _, tc := range []struct {
		args    []string
		mention string
	}{
		{[]string{"--ops-listen", "9090"}, "--ops-listen"},
		{[]string{"--ops-listen", ":8090"}, "port of its own"},
		{[]string{"--shutdown-grace", "-1s"}, "--shutdown-grace"},
		{[]string{"--shutdown-grace", "25"}, "--shutdown-grace"},
		{[]string{"--tls-cert-file", cert}, "go together"},
		{[]string{"--tls-key-file", cert}, "go together"},
		{[]string{"--tls-cert-file", cert, "--tls-key-file", cert}, "--tls-cert-file"},
		{[]string{"--tls-cert-file", cert + ".missing", "--tls-key-file", cert}, "--tls-cert-file"},
		{[]string{"--mint-rate-per-token", "10"}, "--mint-rate-per-token"},
		{[]string{"--mint-rate-per-token", "10/d"}, "N/s, N/m or N/h"},
		{[]string{"--mint-rate-per-token", "0/s"}, "--mint-rate-per-token"},
		{[]string{"--mint-rate-per-token", "-1/s"}, "--mint-rate-per-token"},
		{[]string{"--mint-rate-per-token", "+5/s"}, "--mint-rate-per-token"},
		{[]string{"--mint-rate-per-namespace", "2000000/s"}, "--mint-rate-per-namespace"},
		{[]string{"--mint-rate-per-namespace", "1/ m"}, "--mint-rate-per-namespace"},
	} {
		if _, err := config.Parse(tc.args, prod, io.Discard); err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.args, err, tc.mention)
		}
	}
}

func TestForwardConfig(t *testing.T) {
	dev := []string{"--dev"}
	good, err := config.Parse(dev, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// Safe by default: --strict is on, the old pass-through off, and the
	// key goes in Direktiv-Api-Key.
	if good.MaxUpstreamConns != 512 || good.DialTimeout != 5*time.Second || good.ResponseTimeout != 10*time.Minute ||
		good.CacheTTL != time.Second || !good.Strict || good.UnsafeForwardUnauthenticated || good.UpstreamAPIKeyHeader != "Direktiv-Api-Key" ||
		good.PreserveHost || good.UpstreamKey != "" {
		t.Errorf("defaults: %+v", good)
	}
	c, err := config.Parse(append(dev, "--upstream-timeout", "0", "--token-cache-ttl", "0s", "--strict", "--upstream-max-conns", "8"), []string{"DIREKTIV_AUTHZ_UPSTREAM_API_KEY= key-1 "}, io.Discard)
	if err != nil || c.ResponseTimeout != 0 || c.CacheTTL != 0 || !c.Strict || c.UnsafeForwardUnauthenticated || c.MaxUpstreamConns != 8 || c.UpstreamKey != "key-1" {
		t.Errorf("%+v %v", c, err)
	}
	// The old pass-through, by its own name (with or without --strict=false).
	for _, tc := range []struct{ args, env []string }{
		{[]string{"--unsafe-forward-unauthenticated"}, nil},
		{[]string{"--strict=false", "--unsafe-forward-unauthenticated"}, nil},
		{nil, []string{"DIREKTIV_AUTHZ_UNSAFE_FORWARD_UNAUTHENTICATED=true"}},
		{nil, []string{"DIREKTIV_AUTHZ_STRICT=false", "DIREKTIV_AUTHZ_UNSAFE_FORWARD_UNAUTHENTICATED=true"}},
	} {
		c, err := config.Parse(append(dev, tc.args...), tc.env, io.Discard)
		if err != nil || c.Strict || !c.UnsafeForwardUnauthenticated {
			t.Errorf("%v %v: Strict %v, UnsafeForwardUnauthenticated %v, %v", tc.args, tc.env, c.Strict, c.UnsafeForwardUnauthenticated, err)
		}
	}
	// The upstream key's header, for Direktiv 0.8.
	c, err = config.Parse(append(dev, "--upstream-api-key-header", "Direktiv-Token"), nil, io.Discard)
	if err != nil || c.UpstreamAPIKeyHeader != "Direktiv-Token" {
		t.Errorf("--upstream-api-key-header Direktiv-Token: %q %v", c.UpstreamAPIKeyHeader, err)
	}
	c, err = config.Parse(dev, []string{"DIREKTIV_AUTHZ_UPSTREAM_API_KEY_HEADER=Direktiv-Token"}, io.Discard)
	if err != nil || c.UpstreamAPIKeyHeader != "Direktiv-Token" {
		t.Errorf("DIREKTIV_AUTHZ_UPSTREAM_API_KEY_HEADER=Direktiv-Token: %q %v", c.UpstreamAPIKeyHeader, err)
	}
	keyFile := testutil.WriteFile(t, t.TempDir(), "key", "file-key\n")
	c, err = config.Parse(dev, []string{"DIREKTIV_AUTHZ_UPSTREAM_API_KEY_FILE=" + keyFile, "DIREKTIV_AUTHZ_STRICT=true", "DIREKTIV_AUTHZ_UPSTREAM_DIAL_TIMEOUT=750ms"}, io.Discard)
	if err != nil || c.UpstreamKey != "file-key" || !c.Strict || c.DialTimeout != 750*time.Millisecond {
		t.Errorf("%+v %v", c, err)
	}
	c, err = config.Parse(append(dev, "--upstream", "https://direktiv.example/prefix/"), nil, io.Discard)
	if err != nil || c.UpstreamBase.Path != "/prefix/" {
		t.Errorf("%+v %v", c, err)
	}

	bad := []struct {
		args    []string
		env     []string
		mention string
	}{
		{[]string{"--upstream-timeout", "10"}, nil, "--upstream-timeout"},
		{[]string{"--upstream-timeout", "-1s"}, nil, "--upstream-timeout"},
		{[]string{"--upstream-dial-timeout", "0"}, nil, "--upstream-dial-timeout"},
		{[]string{"--token-cache-ttl", "soon"}, nil, "--token-cache-ttl"},
		{[]string{"--upstream-max-conns", "0"}, nil, "--upstream-max-conns"},
		{[]string{"--upstream-max-conns", "many"}, nil, "--upstream-max-conns"},
		{[]string{"--upstream", "http://direktiv:8080/?x=1"}, nil, "without user info, query or fragment"},
		{[]string{"--upstream", "http://user:pw@direktiv:8080"}, nil, "without user info"},
		{[]string{"--upstream-ca-file", "/nonexistent"}, nil, "not https"},
		{[]string{"--upstream", "https://d", "--upstream-ca-file", "/nonexistent"}, nil, "--upstream-ca-file"},
		{[]string{"--upstream", "https://d", "--upstream-ca-file", keyFile}, nil, "no PEM certificate"},
		{nil, []string{"DIREKTIV_AUTHZ_UPSTREAM_API_KEY=dkt_abc"}, "not a token minted here"},
		{nil, []string{"DIREKTIV_AUTHZ_UPSTREAM_API_KEY=  "}, "set but empty"},
		{nil, []string{"DIREKTIV_AUTHZ_UPSTREAM_API_KEY=a", "DIREKTIV_AUTHZ_UPSTREAM_API_KEY_FILE=" + keyFile}, "not both"},
		{[]string{"--upstream-api-key-file", "/nonexistent"}, nil, "--upstream-api-key-file"},
		{nil, []string{"DIREKTIV_AUTHZ_STRICT=maybe"}, "DIREKTIV_AUTHZ_STRICT"},
		// --strict=false alone no longer forwards unchecked: it points to the setting that does.
		{[]string{"--strict=false"}, nil, "--unsafe-forward-unauthenticated"},
		{nil, []string{"DIREKTIV_AUTHZ_STRICT=false"}, "--unsafe-forward-unauthenticated"},
		{[]string{"--strict", "--unsafe-forward-unauthenticated"}, nil, "contradict"},
		{[]string{"--unsafe-forward-unauthenticated"}, []string{"DIREKTIV_AUTHZ_STRICT=true"}, "contradict"},
		{[]string{"--upstream-api-key-header", "Direktiv Token"}, nil, "--upstream-api-key-header"},
		{[]string{"--upstream-api-key-header", ""}, nil, "--upstream-api-key-header"},
		{[]string{"--upstream-api-key-header", "Connection"}, nil, "--upstream-api-key-header"},
		{[]string{"--upstream-api-key-header", "x-forwarded-for"}, nil, "--upstream-api-key-header"},
	}
	for _, b := range bad {
		_, err := config.Parse(append(dev, b.args...), b.env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), b.mention) {
			t.Errorf("%v %v: error %v, want one mentioning %q", b.args, b.env, err, b.mention)
		}
	}
}
