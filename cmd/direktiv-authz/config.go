package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/store"
)

// config is every setting of the sidecar. Each flag has a DIREKTIV_AUTHZ_*
// environment twin; a flag wins over its twin. parseConfig fills it and
// validate checks it in one place.
type config struct {
	Listen         string
	Upstream       string
	RedisURL       string
	AdminTokenFile string
	Policies       string
	DefaultTTL     string
	MaxTTL         string
	Dev            bool
	LogLevel       string

	// Forwarding to the upstream (see proxy.go and enforce.go).
	PreserveHost                 bool
	UpstreamMaxConns             string
	UpstreamDialTimeout          string
	UpstreamTimeout              string
	UpstreamAPIKeyFile           string
	UpstreamAPIKeyHeader         string
	UpstreamCAFile               string
	Strict                       bool
	UnsafeForwardUnauthenticated bool
	TokenCacheTTL                string
	EventLoops                   string

	// Operations (see ops.go, tls.go and ratelimit.go).
	OpsListen            string
	ShutdownGrace        string
	TLSCertFile          string
	TLSKeyFile           string
	MintRatePerToken     string
	MintRatePerNamespace string

	// Derived by parseConfig and validate.
	strictSet  bool   // --strict or DIREKTIV_AUTHZ_STRICT was given
	adminToken string // the value; never logged
	defaultTTL isoDuration
	maxTTL     isoDuration
	logLevel   slog.Level

	upstreamURL         *url.URL
	upstreamMaxConns    int
	upstreamDialTimeout time.Duration
	upstreamTimeout     time.Duration // 0: no limit
	upstreamAPIKey      string        // the value; never logged
	upstreamCAs         *x509.CertPool
	tokenCacheTTL       time.Duration // 0: no cache
	relayLoops          int           // event loops forwarding; 0: relay.DefaultLoops; -1: off

	opsListen            string // "": no operations listener
	shutdownGrace        time.Duration
	mintRatePerToken     store.Rate // zero: no limit
	mintRatePerNamespace store.Rate // zero: no limit
}

// setting ties a flag to its environment twin.
type setting struct {
	flag, env, usage string
	str              *string
	boolean          *bool
}

func (c *config) settings() []setting {
	return []setting{
		{flag: "listen", env: "DIREKTIV_AUTHZ_LISTEN", usage: "address to serve on", str: &c.Listen},
		{flag: "upstream", env: "DIREKTIV_AUTHZ_UPSTREAM", usage: "Direktiv API base URL", str: &c.Upstream},
		{flag: "redis-url", env: "DIREKTIV_AUTHZ_REDIS_URL", usage: "redis://, rediss://, redis+sentinel:// or redis+cluster:// URL of the token store", str: &c.RedisURL},
		{flag: "admin-token-file", env: "DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE", usage: "file holding the admin token (or set DIREKTIV_AUTHZ_ADMIN_TOKEN to the value)", str: &c.AdminTokenFile},
		{flag: "policies", env: "DIREKTIV_AUTHZ_POLICIES", usage: "directory of Rego replacing the embedded policies; watched and hot-reloaded", str: &c.Policies},
		{flag: "default-ttl", env: "DIREKTIV_AUTHZ_DEFAULT_TTL", usage: "ISO 8601 duration used when a mint request has no expires", str: &c.DefaultTTL},
		{flag: "max-ttl", env: "DIREKTIV_AUTHZ_MAX_TTL", usage: "ISO 8601 duration no token outlives; longer requests are clamped", str: &c.MaxTTL},
		{flag: "dev", env: "DIREKTIV_AUTHZ_DEV", usage: "dev mode: in-memory store unless --redis-url is given, admin token generated and printed if none is given", boolean: &c.Dev},
		{flag: "log-level", env: "DIREKTIV_AUTHZ_LOG_LEVEL", usage: "debug, info, warn or error", str: &c.LogLevel},
		{flag: "preserve-host", env: "DIREKTIV_AUTHZ_PRESERVE_HOST", usage: "forward the client's Host header instead of the upstream's host", boolean: &c.PreserveHost},
		{flag: "upstream-max-conns", env: "DIREKTIV_AUTHZ_UPSTREAM_MAX_CONNS", usage: "most connections kept open to the upstream", str: &c.UpstreamMaxConns},
		{flag: "upstream-dial-timeout", env: "DIREKTIV_AUTHZ_UPSTREAM_DIAL_TIMEOUT", usage: "Go duration allowed to connect to the upstream (TLS handshake included); slower is a 504", str: &c.UpstreamDialTimeout},
		{flag: "upstream-timeout", env: "DIREKTIV_AUTHZ_UPSTREAM_TIMEOUT", usage: "Go duration the upstream may take from receiving a whole request to starting its response; slower is a 504; 0 means no limit", str: &c.UpstreamTimeout},
		{flag: "upstream-api-key-file", env: "DIREKTIV_AUTHZ_UPSTREAM_API_KEY_FILE", usage: "file holding Direktiv's API key, sent upstream in place of a minted token (or set " + envUpstreamAPIKey + " to the value)", str: &c.UpstreamAPIKeyFile},
		{flag: "upstream-ca-file", env: "DIREKTIV_AUTHZ_UPSTREAM_CA_FILE", usage: "PEM file of the CA certificates an https upstream is verified with (default: the system's)", str: &c.UpstreamCAFile},
		{flag: "upstream-api-key-header", env: "DIREKTIV_AUTHZ_UPSTREAM_API_KEY_HEADER", usage: "header the upstream API key is sent in: Direktiv-Api-Key (Direktiv 0.9 and later) or Direktiv-Token (0.8)", str: &c.UpstreamAPIKeyHeader},
		{flag: "strict", env: "DIREKTIV_AUTHZ_STRICT", usage: "the default, kept for old command lines: a request that is neither the admin token nor a valid minted token is a 401 unless a rule names its route public", boolean: &c.Strict},
		{flag: "unsafe-forward-unauthenticated", env: "DIREKTIV_AUTHZ_UNSAFE_FORWARD_UNAUTHENTICATED", usage: "UNSAFE in front of open-source Direktiv, which checks no credential: forward requests without a credential, or with one that is neither the admin token nor a minted token, unchanged and unchecked", boolean: &c.UnsafeForwardUnauthenticated},
		{flag: "token-cache-ttl", env: "DIREKTIV_AUTHZ_TOKEN_CACHE_TTL", usage: "Go duration a token record is cached in process; a revoked token is honoured at most this long after; 0 disables the cache", str: &c.TokenCacheTTL},
		{flag: "event-loops", env: "DIREKTIV_AUTHZ_EVENT_LOOPS", usage: "event loops that forward plain requests to an http:// upstream, and serve mints with a plain redis:// store, without a goroutine per connection (see README, Forwarding): auto (one per two cores, at least one), a number, or off (every request on the goroutine-per-connection server)", str: &c.EventLoops},
		{flag: "ops-listen", env: "DIREKTIV_AUTHZ_OPS_LISTEN", usage: "address of the operations listener (/healthz, /readyz, /metrics; plain HTTP); off (or empty) disables it and the metrics", str: &c.OpsListen},
		{flag: "shutdown-grace", env: "DIREKTIV_AUTHZ_SHUTDOWN_GRACE", usage: "Go duration in-flight requests may take to finish after SIGTERM", str: &c.ShutdownGrace},
		{flag: "tls-cert-file", env: "DIREKTIV_AUTHZ_TLS_CERT_FILE", usage: "PEM certificate (chain) to serve HTTPS with; needs --tls-key-file; reloaded when the file changes", str: &c.TLSCertFile},
		{flag: "tls-key-file", env: "DIREKTIV_AUTHZ_TLS_KEY_FILE", usage: "PEM private key of --tls-cert-file; reloaded when the file changes", str: &c.TLSKeyFile},
		{flag: "mint-rate-per-token", env: "DIREKTIV_AUTHZ_MINT_RATE_PER_TOKEN", usage: "most mints per minting token, N/s, N/m or N/h (bursts of N), shared by every replica on the Redis; 0 or empty: no limit", str: &c.MintRatePerToken},
		{flag: "mint-rate-per-namespace", env: "DIREKTIV_AUTHZ_MINT_RATE_PER_NAMESPACE", usage: "most mints per namespace (the admin token's included), N/s, N/m or N/h (bursts of N), shared by every replica on the Redis; 0 or empty: no limit", str: &c.MintRatePerNamespace},
	}
}

// envAdminToken is the environment variable holding the admin token's value.
// It has no flag twin on purpose: a secret never belongs on a command line.
const envAdminToken = "DIREKTIV_AUTHZ_ADMIN_TOKEN"

// envUpstreamAPIKey is the environment variable holding the value of the API
// key sent upstream in place of a minted token; like the admin token, it has
// no flag twin.
const envUpstreamAPIKey = "DIREKTIV_AUTHZ_UPSTREAM_API_KEY"

func defaultConfig() config {
	return config{
		Listen:     ":8090",
		Upstream:   "http://127.0.0.1:8080",
		DefaultTTL: "P30D",
		MaxTTL:     "P1Y",
		LogLevel:   "info",

		UpstreamMaxConns:     "512",
		UpstreamDialTimeout:  "5s",
		UpstreamTimeout:      "10m",
		TokenCacheTTL:        "1s",
		EventLoops:           "auto",
		UpstreamAPIKeyHeader: "Direktiv-Api-Key",
		Strict:               true,

		OpsListen:     ":9090",
		ShutdownGrace: "25s",
	}
}

// errHelp is returned when -h/--help was asked for; usage is already printed.
var errHelp = errors.New("help requested")

// parseConfig fills a config from defaults, then environ, then args, and
// validates it. Unknown flags, unknown DIREKTIV_AUTHZ_* variables and
// invalid values are errors naming the setting.
func parseConfig(args, environ []string, stderr io.Writer) (config, error) {
	c := defaultConfig()
	env := make(map[string]string)
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	known := map[string]bool{envAdminToken: true, envUpstreamAPIKey: true}
	for _, s := range c.settings() {
		known[s.env] = true
		v, ok := env[s.env]
		if !ok {
			continue
		}
		if s.boolean != nil {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return c, fmt.Errorf("%s=%q: want true or false", s.env, v)
			}
			*s.boolean = b
		} else {
			*s.str = v
		}
	}
	var unknown []string
	for k := range env {
		if strings.HasPrefix(k, "DIREKTIV_AUTHZ_") && !known[k] && !isServiceLink(k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return c, fmt.Errorf("unknown environment variable %s (see --help for the settings)", strings.Join(unknown, ", "))
	}

	fs := flag.NewFlagSet("direktiv-authz", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, s := range c.settings() {
		usage := s.usage + " (env " + s.env + ")"
		if s.boolean != nil {
			fs.BoolVar(s.boolean, s.flag, *s.boolean, usage)
		} else {
			fs.StringVar(s.str, s.flag, *s.str, usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, errHelp
		}
		return c, err
	}
	_, c.strictSet = env["DIREKTIV_AUTHZ_STRICT"]
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "strict" {
			c.strictSet = true
		}
	})
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: settings are --flags", fs.Arg(0))
	}

	// The admin token: --admin-token-file wins over the environment; the
	// environment may name the value or a file, not both.
	adminFlagSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "admin-token-file" {
			adminFlagSet = true
		}
	})
	value, hasValue := env[envAdminToken]
	if !adminFlagSet && hasValue && env["DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE"] != "" {
		return c, errors.New("set one of DIREKTIV_AUTHZ_ADMIN_TOKEN and DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE, not both")
	}
	switch {
	case c.AdminTokenFile != "":
		b, err := os.ReadFile(c.AdminTokenFile)
		if err != nil {
			return c, fmt.Errorf("--admin-token-file: %w", err)
		}
		c.adminToken = strings.TrimSpace(string(b))
		if c.adminToken == "" {
			return c, fmt.Errorf("--admin-token-file %s: the file is empty", c.AdminTokenFile)
		}
	case hasValue:
		c.adminToken = strings.TrimSpace(value)
		if c.adminToken == "" {
			return c, errors.New("DIREKTIV_AUTHZ_ADMIN_TOKEN is set but empty")
		}
	}
	upstreamKeyFlagSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "upstream-api-key-file" {
			upstreamKeyFlagSet = true
		}
	})
	value, hasValue = env[envUpstreamAPIKey]
	switch {
	case !upstreamKeyFlagSet && hasValue && env["DIREKTIV_AUTHZ_UPSTREAM_API_KEY_FILE"] != "":
		return c, errors.New("set one of DIREKTIV_AUTHZ_UPSTREAM_API_KEY and DIREKTIV_AUTHZ_UPSTREAM_API_KEY_FILE, not both")
	case c.UpstreamAPIKeyFile != "":
		b, err := os.ReadFile(c.UpstreamAPIKeyFile)
		if err != nil {
			return c, fmt.Errorf("--upstream-api-key-file: %w", err)
		}
		c.upstreamAPIKey = strings.TrimSpace(string(b))
		if c.upstreamAPIKey == "" {
			return c, fmt.Errorf("--upstream-api-key-file %s: the file is empty", c.UpstreamAPIKeyFile)
		}
	case hasValue:
		c.upstreamAPIKey = strings.TrimSpace(value)
		if c.upstreamAPIKey == "" {
			return c, errors.New(envUpstreamAPIKey + " is set but empty")
		}
	}
	return c, c.validate()
}

// validate checks every setting and derives the parsed values. Each error
// names the setting and what is accepted.
func (c *config) validate() error {
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return fmt.Errorf("--listen %q: want host:port, e.g. :8090 or 127.0.0.1:8090", c.Listen)
	}
	u, err := url.Parse(c.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--upstream %q: want an http:// or https:// base URL, e.g. http://127.0.0.1:8080", c.Upstream)
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return fmt.Errorf("--upstream %q: want a base URL without user info, query or fragment, e.g. http://127.0.0.1:8080 or https://direktiv/prefix", c.Upstream)
	}
	c.upstreamURL = u
	n, err := strconv.Atoi(c.UpstreamMaxConns)
	if err != nil || n < 1 {
		return fmt.Errorf("--upstream-max-conns %q: want a whole number of at least 1", c.UpstreamMaxConns)
	}
	c.upstreamMaxConns = n
	if c.upstreamDialTimeout, err = parseTimeout("--upstream-dial-timeout", c.UpstreamDialTimeout, ""); err != nil {
		return err
	}
	if c.upstreamTimeout, err = parseTimeout("--upstream-timeout", c.UpstreamTimeout, "no limit"); err != nil {
		return err
	}
	if c.tokenCacheTTL, err = parseTimeout("--token-cache-ttl", c.TokenCacheTTL, "no cache"); err != nil {
		return err
	}
	switch c.EventLoops {
	case "auto":
		c.relayLoops = 0
	case "off":
		c.relayLoops = -1
	default:
		n, err := strconv.Atoi(c.EventLoops)
		if err != nil || n < 1 || n > 256 {
			return fmt.Errorf("--event-loops %q: want auto, off or a number from 1 to 256", c.EventLoops)
		}
		c.relayLoops = n
	}
	if err := c.validateOps(); err != nil {
		return err
	}
	switch {
	case !c.Strict && !c.UnsafeForwardUnauthenticated:
		return errors.New("--strict=false: requests without a valid credential are refused by default; to forward them unchecked (unsafe in front of open-source Direktiv), set --unsafe-forward-unauthenticated")
	case c.Strict && c.UnsafeForwardUnauthenticated && c.strictSet:
		return errors.New("--strict and --unsafe-forward-unauthenticated contradict each other: set one")
	}
	if c.UnsafeForwardUnauthenticated {
		c.Strict = false
	}
	if err := validHeaderName(c.UpstreamAPIKeyHeader); err != nil {
		return fmt.Errorf("--upstream-api-key-header %q: %w", c.UpstreamAPIKeyHeader, err)
	}
	if strings.HasPrefix(c.upstreamAPIKey, secret.Prefix) {
		return fmt.Errorf("the upstream API key must be Direktiv's API key, not a token minted here (it starts with %q)", secret.Prefix)
	}
	if c.UpstreamCAFile != "" {
		if u.Scheme != "https" {
			return fmt.Errorf("--upstream-ca-file is set but --upstream %q is not https://", c.Upstream)
		}
		pem, err := os.ReadFile(c.UpstreamCAFile)
		if err != nil {
			return fmt.Errorf("--upstream-ca-file: %w", err)
		}
		c.upstreamCAs = x509.NewCertPool()
		if !c.upstreamCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--upstream-ca-file %s: no PEM certificate found", c.UpstreamCAFile)
		}
	}
	if c.defaultTTL, err = parseISODuration(c.DefaultTTL); err != nil {
		return fmt.Errorf("--default-ttl %q: %w", c.DefaultTTL, err)
	}
	if c.maxTTL, err = parseISODuration(c.MaxTTL); err != nil {
		return fmt.Errorf("--max-ttl %q: %w", c.MaxTTL, err)
	}
	ref := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if d, ok := c.defaultTTL.addTo(ref); ok {
		if m, ok := c.maxTTL.addTo(ref); ok && d.After(m) {
			return fmt.Errorf("--default-ttl %s is longer than --max-ttl %s", c.DefaultTTL, c.MaxTTL)
		}
	}
	if err := c.logLevel.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if strings.HasPrefix(c.adminToken, secret.Prefix) {
		return fmt.Errorf("the admin token must not start with %q, the prefix of minted tokens", secret.Prefix)
	}
	if !c.Dev {
		if c.RedisURL == "" {
			return errors.New("--redis-url (DIREKTIV_AUTHZ_REDIS_URL) is required unless --dev is set")
		}
		if c.adminToken == "" {
			return errors.New("an admin token is required unless --dev is set: --admin-token-file, DIREKTIV_AUTHZ_ADMIN_TOKEN or DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE")
		}
	}
	return nil
}

// validHeaderName checks a header name the sidecar sends: an RFC 9110
// token, and not one a proxy removes or sets itself.
func validHeaderName(name string) error {
	if !isToken([]byte(name)) {
		return errors.New("want a header name such as Direktiv-Api-Key or Direktiv-Token")
	}
	switch strings.ToLower(name) {
	case "host", "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "expect", "content-length", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host":
		return errors.New("want a header name such as Direktiv-Api-Key or Direktiv-Token, not one the proxy sets or removes")
	}
	return nil
}

// parseTimeout parses a Go duration setting ("500ms", "5s", "1m30s").
// Negative values are refused, and so is 0 unless zero says what 0 means.
func parseTimeout(name, v, zero string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s %q: want a Go duration such as 500ms, 5s or 10m", name, v)
	case d < 0 || (d == 0 && zero == ""):
		want := "a duration above 0"
		if zero != "" {
			want = "0 (" + zero + ") or a positive duration"
		}
		return 0, fmt.Errorf("%s %q: want %s", name, v, want)
	}
	return d, nil
}

// isServiceLink reports whether name is one of the variables Kubernetes
// injects for a Service called direktiv-authz (DIREKTIV_AUTHZ_SERVICE_HOST,
// DIREKTIV_AUTHZ_PORT_8090_TCP_ADDR, ...). They are not settings, and
// refusing them would stop the sidecar in any namespace with such a
// Service, so they are ignored.
func isServiceLink(name string) bool {
	rest := strings.TrimPrefix(name, "DIREKTIV_AUTHZ_")
	if rest == "PORT" || rest == "SERVICE_HOST" || rest == "SERVICE_PORT" || strings.HasPrefix(rest, "SERVICE_PORT_") {
		return true
	}
	port, ok := strings.CutPrefix(rest, "PORT_")
	if !ok {
		return false
	}
	digits := 0
	for digits < len(port) && port[digits] >= '0' && port[digits] <= '9' {
		digits++
	}
	if digits == 0 {
		return false
	}
	proto := port[digits:]
	for _, p := range []string{"_TCP", "_UDP", "_SCTP"} {
		if proto == p || proto == p+"_ADDR" || proto == p+"_PORT" || proto == p+"_PROTO" {
			return true
		}
	}
	return false
}
