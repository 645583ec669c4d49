package main

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "admin", "file-admin-token\n")
	emptyFile := writeFile(t, dir, "empty", "\n")
	prod := []string{"DIREKTIV_AUTHZ_REDIS_URL=redis://127.0.0.1:1/0", "DIREKTIV_AUTHZ_ADMIN_TOKEN=env-admin-token"}

	t.Run("defaults", func(t *testing.T) {
		c, err := parseConfig(nil, prod, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != ":8090" || c.Upstream != "http://127.0.0.1:8080" || c.DefaultTTL != "P30D" || c.MaxTTL != "P1Y" || c.Dev {
			t.Errorf("defaults: %+v", c)
		}
		if c.adminToken != "env-admin-token" {
			t.Errorf("admin token from env not taken")
		}
	})
	t.Run("flags win over environment", func(t *testing.T) {
		env := append([]string{"DIREKTIV_AUTHZ_LISTEN=:1111", "DIREKTIV_AUTHZ_MAX_TTL=P2Y"}, prod...)
		c, err := parseConfig([]string{"--listen", ":2222", "--admin-token-file", tokenFile}, env, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != ":2222" || c.MaxTTL != "P2Y" || c.adminToken != "file-admin-token" {
			t.Errorf("got listen %s max %s", c.Listen, c.MaxTTL)
		}
	})
	t.Run("token file from environment", func(t *testing.T) {
		c, err := parseConfig(nil, []string{"DIREKTIV_AUTHZ_REDIS_URL=redis://x:1", "DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE=" + tokenFile}, io.Discard)
		if err != nil || c.adminToken != "file-admin-token" {
			t.Fatalf("%v %q", err, c.adminToken)
		}
	})
	t.Run("dev needs nothing", func(t *testing.T) {
		c, err := parseConfig([]string{"--dev"}, nil, io.Discard)
		if err != nil || !c.Dev {
			t.Fatalf("%v", err)
		}
		c, err = parseConfig(nil, []string{"DIREKTIV_AUTHZ_DEV=true"}, io.Discard)
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
		if _, err := parseConfig(nil, env, io.Discard); err != nil {
			t.Fatal(err)
		}
		if _, err := parseConfig(nil, append([]string{"DIREKTIV_AUTHZ_PORT_X"}, prod...), io.Discard); err == nil {
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
			c, err := parseConfig(tc.args, env, io.Discard)
			if err != nil || c.relayLoops != tc.want {
				t.Errorf("%v %s: loops %d, %v; want %d", tc.args, tc.env, c.relayLoops, err, tc.want)
			}
		}
		for _, v := range []string{"0", "-1", "257", "two", ""} {
			_, err := parseConfig([]string{"--event-loops", v}, prod, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "--event-loops") || !strings.Contains(err.Error(), "want auto, off or a number from 1 to 256") {
				t.Errorf("--event-loops %q: %v", v, err)
			}
		}
	})
	t.Run("help", func(t *testing.T) {
		if _, err := parseConfig([]string{"--help"}, nil, io.Discard); !errors.Is(err, errHelp) {
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
			_, err := parseConfig(tc.args, tc.env, io.Discard)
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
