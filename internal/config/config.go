// Package config reads every setting of the sidecar from flags and their
// DIREKTIV_AUTHZ_* environment twins, and checks them in one place. It is
// read by main, by the sidecar and by the checker of the manifests in deploy/;
// it imports nothing of the sidecar's HTTP layer.
package config

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

	"github.com/direktiv/direktiv-authz/internal/framing"
	"github.com/direktiv/direktiv-authz/internal/isoduration"
	"github.com/direktiv/direktiv-authz/internal/secret"
	"github.com/direktiv/direktiv-authz/internal/tlsreload"
	"github.com/direktiv/direktiv-authz/store"
)

// Config is every setting of the sidecar. Each flag has a DIREKTIV_AUTHZ_*
// environment twin; a flag wins over its twin. Parse fills it and validate
// checks it in one place: first the settings as given (strings), then the
// values derived from them, which the rest of the sidecar reads.
type Config struct {
	Listen         string
	Upstream       string
	RedisURL       string
	AdminTokenFile string
	Policies       string
	DefaultTTL     string
	MaxTTL         string
	Dev            bool
	LogLevel       string

	// Forwarding to the upstream.
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

	// Operations: the operations listener, shutdown, TLS and mint rates.
	OpsListen            string
	ShutdownGrace        string
	TLSCertFile          string
	TLSKeyFile           string
	MintRatePerToken     string
	MintRatePerNamespace string

	// Derived by Parse and validate.
	AdminToken    string // the value; never logged
	DefaultExpiry isoduration.Duration
	MaxExpiry     isoduration.Duration
	Level         slog.Level

	UpstreamBase     *url.URL
	MaxUpstreamConns int
	DialTimeout      time.Duration
	ResponseTimeout  time.Duration // 0: no limit
	UpstreamKey      string        // the value; never logged
	UpstreamRoots    *x509.CertPool
	CacheTTL         time.Duration // 0: no cache
	Loops            int           // event loops forwarding; 0: relay.DefaultLoops; -1: off

	OpsAddr       string // "": no operations listener
	Grace         time.Duration
	TokenRate     store.Rate // zero: no limit
	NamespaceRate store.Rate // zero: no limit

	strictSet bool // --strict or DIREKTIV_AUTHZ_STRICT was given
}

// Setting ties a flag to its environment twin and to the field it fills
// (Str or Bool).
type Setting struct {
	Flag, Env, Usage string
	Str              *string
	Bool             *bool
}

func (c *Config) Settings() []Setting {
	return []Setting{
		{Flag: "listen", Env: "DIREKTIV_AUTHZ_LISTEN", Usage: "address to serve on", Str: &c.Listen},
		{Flag: "upstream", Env: "DIREKTIV_AUTHZ_UPSTREAM", Usage: "Direktiv API base URL", Str: &c.Upstream},
		{Flag: "redis-url", Env: "DIREKTIV_AUTHZ_REDIS_URL", Usage: "redis://, rediss://, redis+sentinel:// or redis+cluster:// URL of the token store", Str: &c.RedisURL},
		{Flag: "admin-token-file", Env: "DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE", Usage: "file holding the admin token (or set DIREKTIV_AUTHZ_ADMIN_TOKEN to the value)", Str: &c.AdminTokenFile},
		{Flag: "policies", Env: "DIREKTIV_AUTHZ_POLICIES", Usage: "directory of Rego replacing the embedded policies; watched and hot-reloaded", Str: &c.Policies},
		{Flag: "default-ttl", Env: "DIREKTIV_AUTHZ_DEFAULT_TTL", Usage: "ISO 8601 duration used when a mint request has no expires", Str: &c.DefaultTTL},
		{Flag: "max-ttl", Env: "DIREKTIV_AUTHZ_MAX_TTL", Usage: "ISO 8601 duration no token outlives; longer requests are clamped", Str: &c.MaxTTL},
		{Flag: "dev", Env: "DIREKTIV_AUTHZ_DEV", Usage: "dev mode: in-memory store unless --redis-url is given, admin token generated and printed if none is given", Bool: &c.Dev},
		{Flag: "log-level", Env: "DIREKTIV_AUTHZ_LOG_LEVEL", Usage: "debug, info, warn or error", Str: &c.LogLevel},
		{Flag: "preserve-host", Env: "DIREKTIV_AUTHZ_PRESERVE_HOST", Usage: "forward the client's Host header instead of the upstream's host", Bool: &c.PreserveHost},
		{Flag: "upstream-max-conns", Env: "DIREKTIV_AUTHZ_UPSTREAM_MAX_CONNS", Usage: "most connections kept open to the upstream", Str: &c.UpstreamMaxConns},
		{Flag: "upstream-dial-timeout", Env: "DIREKTIV_AUTHZ_UPSTREAM_DIAL_TIMEOUT", Usage: "Go duration allowed to connect to the upstream (TLS handshake included); slower is a 504", Str: &c.UpstreamDialTimeout},
		{Flag: "upstream-timeout", Env: "DIREKTIV_AUTHZ_UPSTREAM_TIMEOUT", Usage: "Go duration the upstream may take from receiving a whole request to starting its response; slower is a 504; 0 means no limit", Str: &c.UpstreamTimeout},
		{Flag: "upstream-api-key-file", Env: "DIREKTIV_AUTHZ_UPSTREAM_API_KEY_FILE", Usage: "file holding Direktiv's API key, sent upstream in place of a minted token (or set " + EnvUpstreamAPIKey + " to the value)", Str: &c.UpstreamAPIKeyFile},
		{Flag: "upstream-ca-file", Env: "DIREKTIV_AUTHZ_UPSTREAM_CA_FILE", Usage: "PEM file of the CA certificates an https upstream is verified with (default: the system's)", Str: &c.UpstreamCAFile},
		{Flag: "upstream-api-key-header", Env: "DIREKTIV_AUTHZ_UPSTREAM_API_KEY_HEADER", Usage: "header the upstream API key is sent in: Direktiv-Api-Key (Direktiv 0.9 and later) or Direktiv-Token (0.8)", Str: &c.UpstreamAPIKeyHeader},
		{Flag: "strict", Env: "DIREKTIV_AUTHZ_STRICT", Usage: "the default, kept for old command lines: a request that is neither the admin token nor a valid minted token is a 401 unless a rule names its route public", Bool: &c.Strict},
		{Flag: "unsafe-forward-unauthenticated", Env: "DIREKTIV_AUTHZ_UNSAFE_FORWARD_UNAUTHENTICATED", Usage: "UNSAFE in front of open-source Direktiv, which checks no credential: forward requests without a credential, or with one that is neither the admin token nor a minted token, unchanged and unchecked", Bool: &c.UnsafeForwardUnauthenticated},
		{Flag: "token-cache-ttl", Env: "DIREKTIV_AUTHZ_TOKEN_CACHE_TTL", Usage: "Go duration a token record is cached in process; a revoked token is honoured at most this long after; 0 disables the cache", Str: &c.TokenCacheTTL},
		{Flag: "event-loops", Env: "DIREKTIV_AUTHZ_EVENT_LOOPS", Usage: "event loops that forward plain requests to an http:// upstream, and serve mints with a plain redis:// store, without a goroutine per connection (see README, Forwarding): auto (one per two cores, at least one), a number, or off (every request on the goroutine-per-connection server)", Str: &c.EventLoops},
		{Flag: "ops-listen", Env: "DIREKTIV_AUTHZ_OPS_LISTEN", Usage: "address of the operations listener (/healthz, /readyz, /metrics; plain HTTP); off (or empty) disables it and the metrics", Str: &c.OpsListen},
		{Flag: "shutdown-grace", Env: "DIREKTIV_AUTHZ_SHUTDOWN_GRACE", Usage: "Go duration in-flight requests may take to finish after SIGTERM", Str: &c.ShutdownGrace},
		{Flag: "tls-cert-file", Env: "DIREKTIV_AUTHZ_TLS_CERT_FILE", Usage: "PEM certificate (chain) to serve HTTPS with; needs --tls-key-file; reloaded when the file changes", Str: &c.TLSCertFile},
		{Flag: "tls-key-file", Env: "DIREKTIV_AUTHZ_TLS_KEY_FILE", Usage: "PEM private key of --tls-cert-file; reloaded when the file changes", Str: &c.TLSKeyFile},
		{Flag: "mint-rate-per-token", Env: "DIREKTIV_AUTHZ_MINT_RATE_PER_TOKEN", Usage: "most mints per minting token, N/s, N/m or N/h (bursts of N), shared by every replica on the Redis; 0 or empty: no limit", Str: &c.MintRatePerToken},
		{Flag: "mint-rate-per-namespace", Env: "DIREKTIV_AUTHZ_MINT_RATE_PER_NAMESPACE", Usage: "most mints per namespace (the admin token's included), N/s, N/m or N/h (bursts of N), shared by every replica on the Redis; 0 or empty: no limit", Str: &c.MintRatePerNamespace},
	}
}

// EnvAdminToken is the environment variable holding the admin token's value.
// It has no flag twin on purpose: a secret never belongs on a command line.
const EnvAdminToken = "DIREKTIV_AUTHZ_ADMIN_TOKEN"

// EnvUpstreamAPIKey is the environment variable holding the value of the API
// key sent upstream in place of a minted token; like the admin token, it has
// no flag twin.
const EnvUpstreamAPIKey = "DIREKTIV_AUTHZ_UPSTREAM_API_KEY"

func Default() Config {
	return Config{
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

// ErrHelp is returned when -h/--help was asked for; usage is already printed.
var ErrHelp = errors.New("help requested")

// Parse fills a Config from defaults, then environ, then args, and
// validates it. Unknown flags, unknown DIREKTIV_AUTHZ_* variables and
// invalid values are errors naming the setting.
func Parse(args, environ []string, stderr io.Writer) (Config, error) {
	c := Default()
	env := make(map[string]string)
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	known := map[string]bool{EnvAdminToken: true, EnvUpstreamAPIKey: true}
	for _, s := range c.Settings() {
		known[s.Env] = true
		v, ok := env[s.Env]
		if !ok {
			continue
		}
		if s.Bool != nil {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return c, fmt.Errorf("%s=%q: want true or false", s.Env, v)
			}
			*s.Bool = b
		} else {
			*s.Str = v
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
	for _, s := range c.Settings() {
		usage := s.Usage + " (env " + s.Env + ")"
		if s.Bool != nil {
			fs.BoolVar(s.Bool, s.Flag, *s.Bool, usage)
		} else {
			fs.StringVar(s.Str, s.Flag, *s.Str, usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, ErrHelp
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
	value, hasValue := env[EnvAdminToken]
	if !adminFlagSet && hasValue && env["DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE"] != "" {
		return c, errors.New("set one of DIREKTIV_AUTHZ_ADMIN_TOKEN and DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE, not both")
	}
	switch {
	case c.AdminTokenFile != "":
		b, err := os.ReadFile(c.AdminTokenFile)
		if err != nil {
			return c, fmt.Errorf("--admin-token-file: %w", err)
		}
		c.AdminToken = strings.TrimSpace(string(b))
		if c.AdminToken == "" {
			return c, fmt.Errorf("--admin-token-file %s: the file is empty", c.AdminTokenFile)
		}
	case hasValue:
		c.AdminToken = strings.TrimSpace(value)
		if c.AdminToken == "" {
			return c, errors.New("DIREKTIV_AUTHZ_ADMIN_TOKEN is set but empty")
		}
	}
	upstreamKeyFlagSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "upstream-api-key-file" {
			upstreamKeyFlagSet = true
		}
	})
	value, hasValue = env[EnvUpstreamAPIKey]
	switch {
	case !upstreamKeyFlagSet && hasValue && env["DIREKTIV_AUTHZ_UPSTREAM_API_KEY_FILE"] != "":
		return c, errors.New("set one of DIREKTIV_AUTHZ_UPSTREAM_API_KEY and DIREKTIV_AUTHZ_UPSTREAM_API_KEY_FILE, not both")
	case c.UpstreamAPIKeyFile != "":
		b, err := os.ReadFile(c.UpstreamAPIKeyFile)
		if err != nil {
			return c, fmt.Errorf("--upstream-api-key-file: %w", err)
		}
		c.UpstreamKey = strings.TrimSpace(string(b))
		if c.UpstreamKey == "" {
			return c, fmt.Errorf("--upstream-api-key-file %s: the file is empty", c.UpstreamAPIKeyFile)
		}
	case hasValue:
		c.UpstreamKey = strings.TrimSpace(value)
		if c.UpstreamKey == "" {
			return c, errors.New(EnvUpstreamAPIKey + " is set but empty")
		}
	}
	return c, c.validate()
}

// validate checks every setting and derives the parsed values. Each error
// names the setting and what is accepted.
func (c *Config) validate() error {
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
	c.UpstreamBase = u
	n, err := strconv.Atoi(c.UpstreamMaxConns)
	if err != nil || n < 1 {
		return fmt.Errorf("--upstream-max-conns %q: want a whole number of at least 1", c.UpstreamMaxConns)
	}
	c.MaxUpstreamConns = n
	if c.DialTimeout, err = parseTimeout("--upstream-dial-timeout", c.UpstreamDialTimeout, ""); err != nil {
		return err
	}
	if c.ResponseTimeout, err = parseTimeout("--upstream-timeout", c.UpstreamTimeout, "no limit"); err != nil {
		return err
	}
	if c.CacheTTL, err = parseTimeout("--token-cache-ttl", c.TokenCacheTTL, "no cache"); err != nil {
		return err
	}
	switch c.EventLoops {
	case "auto":
		c.Loops = 0
	case "off":
		c.Loops = -1
	default:
		n, err := strconv.Atoi(c.EventLoops)
		if err != nil || n < 1 || n > 256 {
			return fmt.Errorf("--event-loops %q: want auto, off or a number from 1 to 256", c.EventLoops)
		}
		c.Loops = n
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
	if strings.HasPrefix(c.UpstreamKey, secret.Prefix) {
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
		c.UpstreamRoots = x509.NewCertPool()
		if !c.UpstreamRoots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--upstream-ca-file %s: no PEM certificate found", c.UpstreamCAFile)
		}
	}
	if c.DefaultExpiry, err = isoduration.Parse(c.DefaultTTL); err != nil {
		return fmt.Errorf("--default-ttl %q: %w", c.DefaultTTL, err)
	}
	if c.MaxExpiry, err = isoduration.Parse(c.MaxTTL); err != nil {
		return fmt.Errorf("--max-ttl %q: %w", c.MaxTTL, err)
	}
	ref := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if d, ok := c.DefaultExpiry.AddTo(ref); ok {
		if m, ok := c.MaxExpiry.AddTo(ref); ok && d.After(m) {
			return fmt.Errorf("--default-ttl %s is longer than --max-ttl %s", c.DefaultTTL, c.MaxTTL)
		}
	}
	if err := c.Level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if strings.HasPrefix(c.AdminToken, secret.Prefix) {
		return fmt.Errorf("the admin token must not start with %q, the prefix of minted tokens", secret.Prefix)
	}
	if !c.Dev {
		if c.RedisURL == "" {
			return errors.New("--redis-url (DIREKTIV_AUTHZ_REDIS_URL) is required unless --dev is set")
		}
		if c.AdminToken == "" {
			return errors.New("an admin token is required unless --dev is set: --admin-token-file, DIREKTIV_AUTHZ_ADMIN_TOKEN or DIREKTIV_AUTHZ_ADMIN_TOKEN_FILE")
		}
	}
	return nil
}

// validHeaderName checks a header name the sidecar sends: an RFC 9110
// token, and not one a proxy removes or sets itself.
func validHeaderName(name string) error {
	if name == "" || strings.IndexFunc(name, func(r rune) bool { return r >= 0x80 || !framing.Token(byte(r)) }) >= 0 {
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

// validateOps checks the operations settings: --ops-listen,
// --shutdown-grace, --tls-cert-file/--tls-key-file and the mint rates.
func (c *Config) validateOps() error {
	switch c.OpsListen {
	case "", "off":
		c.OpsAddr = ""
	default:
		if _, port, err := net.SplitHostPort(c.OpsListen); err != nil || port == "" {
			return fmt.Errorf("--ops-listen %q: want host:port, e.g. :9090 or 127.0.0.1:9090, or off", c.OpsListen)
		}
		if c.OpsListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
			return fmt.Errorf("--ops-listen %s is the address of --listen; give the operations listener a port of its own", c.OpsListen)
		}
		c.OpsAddr = c.OpsListen
	}
	var err error
	if c.Grace, err = parseTimeout("--shutdown-grace", c.ShutdownGrace, "stop at once"); err != nil {
		return err
	}
	switch {
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return errors.New("--tls-cert-file and --tls-key-file go together: set both to serve HTTPS, or neither")
	case c.TLSCertFile != "":
		if _, _, _, err := tlsreload.LoadKeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			return err
		}
	}
	if c.TokenRate, err = parseRate("--mint-rate-per-token", c.MintRatePerToken); err != nil {
		return err
	}
	if c.NamespaceRate, err = parseRate("--mint-rate-per-namespace", c.MintRatePerNamespace); err != nil {
		return err
	}
	return nil
}

// parseRate parses a rate setting: "N/s", "N/m" or "N/h", where N is also
// the burst; "" or "0" is no limit.
func parseRate(name, v string) (store.Rate, error) {
	if v == "" || v == "0" {
		return store.Rate{}, nil
	}
	bad := fmt.Errorf("%s %q: want N/s, N/m or N/h with N a whole number from 1 to %d (e.g. 10/s or 600/m), or 0 for no limit", name, v, store.MaxRateCount)
	num, unit, ok := strings.Cut(v, "/")
	if !ok {
		return store.Rate{}, bad
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > store.MaxRateCount || strconv.Itoa(n) != num {
		return store.Rate{}, bad
	}
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return store.Rate{}, bad
	}
	return store.Rate{Count: n, Per: per}, nil
}
