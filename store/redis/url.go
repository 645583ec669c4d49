package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/store"
)

// Mode is how the store reaches Redis.
type Mode string

// The Redis deployments a URL can name.
const (
	Standalone Mode = "standalone"
	Sentinel   Mode = "sentinel"
	Cluster    Mode = "cluster"
)

// Defaults applied to every mode; a URL query parameter overrides each. They
// are shorter than go-redis's so that an unreachable Redis turns into a 503
// quickly (fail closed) instead of holding requests.
const (
	DefaultDialTimeout  = 2 * time.Second
	DefaultReadTimeout  = time.Second
	DefaultWriteTimeout = time.Second
	// DefaultWaitTimeout is how long a write waits for its replicas
	// when wait_replicas is set without wait_timeout.
	DefaultWaitTimeout = 500 * time.Millisecond
)

// Retry pacing, not configurable by URL: a refused connection is tried
// twice, 50ms apart, and a failed command is retried with backoff capped at
// 200ms, so a Redis that is down fails a call in well under a second.
const (
	dialAttempts     = 2
	dialRetryBackoff = 50 * time.Millisecond
	maxRetryBackoff  = 200 * time.Millisecond
)

// Config is a parsed Redis URL (see ParseURL). Exactly one of
// Standalone, Sentinel and Cluster is set, matching Mode. String never shows
// a password.
type Config struct {
	Mode       Mode
	TLS        bool
	Addrs      []string // the server, the sentinels, or the cluster seed nodes
	MasterName string   // sentinel mode only
	DB         int      // always 0 in cluster mode

	// WaitReplicas and WaitTimeout are the URL's wait_replicas and
	// wait_timeout (see Options.WaitReplicas); WaitTimeout is
	// DefaultWaitTimeout when wait_replicas is set alone, and 0 when
	// WaitReplicas is 0.
	WaitReplicas int
	WaitTimeout  time.Duration

	Standalone *goredis.Options
	Sentinel   *goredis.FailoverOptions
	Cluster    *goredis.ClusterOptions
}

// ParseURL parses the URL of a Redis deployment:
//
//	redis://[user:password@]host[:6379][/db]
//	rediss://...                                   (TLS)
//	redis+sentinel://[user:password@]host[:26379][,host[:26379]...]/master-name[/db]
//	rediss+sentinel://...                          (TLS to sentinels and servers)
//	redis+cluster://[user:password@]host[:6379][,host[:6379]...]
//	rediss+cluster://...                           (TLS)
//
// The user and password are those of the Redis servers (in sentinel mode the
// data nodes; the sentinels take the query parameters sentinel_username and
// sentinel_password). Characters outside letters, digits and "-._~" in a user
// name, password or query value must be percent-encoded ('@' as %40, '/' as
// %2F, ':' in a user name as %3A). IPv6 addresses go in brackets: [::1]:6379.
//
// For example:
//
//	redis://:s3cret@redis:6379/0
//	redis+sentinel://sentinel-0:26379,sentinel-1:26379,sentinel-2:26379/mymaster/0?wait_replicas=1
//	redis+cluster://redis-0:6379,redis-1:6379,redis-2:6379
//
// Query parameters, all optional: dial_timeout, read_timeout, write_timeout
// (Go durations like 500ms; defaults DefaultRedis*Timeout), pool_size
// (connections per node, 1..10000), max_retries (retries of a failed
// command, 0..100, default 3; the store's scripts are safe to retry),
// wait_replicas (0..100, default 0: replicas that must acknowledge each
// create and revoke, see Options.WaitReplicas) and wait_timeout (how
// long to wait for them, default DefaultWaitTimeout; it must be shorter
// than read_timeout, as the wait is read like a reply), tls_ca_file (TLS
// URLs only: a PEM file of the CA certificates the servers are verified
// with, instead of the system roots; read once, when the URL is parsed).
// TLS without tls_ca_file verifies servers against the system roots, which
// SSL_CERT_FILE can also point at a private CA bundle.
//
// Every error names what is wrong and never contains the password.
func ParseURL(rawURL string) (*Config, error) {
	c, err := parseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	return c, nil
}

const urlForms = "redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"

// parseURL reads raw in the order it is written: scheme, user
// information, hosts, path, query; then builds go-redis's options.
func parseURL(raw string) (*Config, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("no scheme; want %s", urlForms)
	}
	scheme = strings.ToLower(scheme)
	c := &Config{}
	defaultPort, err := c.parseScheme(scheme)
	if err != nil {
		return nil, err
	}
	user, password, rest, err := parseUserinfo(rest)
	if err != nil {
		return nil, err
	}
	if strings.ContainsRune(rest, '#') {
		return nil, errors.New("a fragment ('#...'); percent-encode '#' in values as %23")
	}
	hostList, query, _ := strings.Cut(rest, "?")
	hostList, path, _ := strings.Cut(hostList, "/")
	if err := c.parseHosts(scheme, hostList, defaultPort); err != nil {
		return nil, err
	}
	if err := c.parsePath(path); err != nil {
		return nil, err
	}
	p, err := parseQuery(query, c.Mode)
	if err != nil {
		return nil, err
	}
	c.WaitReplicas, c.WaitTimeout = p.waitReplicas, p.waitTimeout
	tlsConfig, err := c.tlsConfig(scheme, p.tlsCAFile)
	if err != nil {
		return nil, err
	}
	if err := c.setOptions(user, password, tlsConfig, p); err != nil {
		return nil, err
	}
	return c, nil
}

// parseScheme sets c's mode and TLS from the URL's scheme (lower-cased)
// and returns the port a host without one gets.
func (c *Config) parseScheme(scheme string) (defaultPort string, _ error) {
	defaultPort = "6379"
	switch scheme {
	case "redis", "rediss":
		c.Mode = Standalone
	case "redis+sentinel", "rediss+sentinel":
		c.Mode = Sentinel
		defaultPort = "26379"
	case "redis+cluster", "rediss+cluster":
		c.Mode = Cluster
	default:
		if !isSchemeText(scheme) {
			return "", fmt.Errorf("unsupported scheme; want %s", urlForms)
		}
		return "", fmt.Errorf("unsupported scheme %q; want %s", scheme, urlForms)
	}
	c.TLS = strings.HasPrefix(scheme, "rediss")
	return defaultPort, nil
}

// parseUserinfo takes the user information off the front of rest (what
// follows "scheme://"): everything before the last '@'. It is never quoted
// in an error, so a password cannot leak through one even when it holds
// characters that should have been percent-encoded.
func parseUserinfo(rest string) (user, password, after string, _ error) {
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return "", "", rest, nil
	}
	info := rest[:at]
	if strings.ContainsAny(info, "/?#") {
		return "", "", "", errors.New("the user information (before '@') contains '/', '?' or '#', or a query value contains '@': percent-encode them (%2F, %3F, %23, %40)")
	}
	rawUser, rawPass, hasPass := strings.Cut(info, ":")
	var err error
	if user, err = url.PathUnescape(rawUser); err != nil {
		return "", "", "", errors.New("the user name has an invalid %-escape")
	}
	if password, err = url.PathUnescape(rawPass); err != nil {
		return "", "", "", errors.New("the password has an invalid %-escape")
	}
	if !hasPass && user != "" {
		return "", "", "", errors.New("a user name without a password; write user:password@ (or :password@ for the default user)")
	}
	if hasPass && password == "" {
		return "", "", "", errors.New("an empty password after ':'; leave out user information for a server without a password")
	}
	return user, password, rest[at+1:], nil
}

// parseHosts sets c.Addrs from the comma-separated host list.
func (c *Config) parseHosts(scheme, hostList, defaultPort string) error {
	if hostList == "" {
		return errors.New("no host; write host:port after the scheme")
	}
	hosts := strings.Split(hostList, ",")
	if c.Mode == Standalone && len(hosts) > 1 {
		return fmt.Errorf("%s:// takes one host, got %d; use redis+sentinel:// or redis+cluster:// for several", scheme, len(hosts))
	}
	for i, h := range hosts {
		addr, err := parseHostPort(h, defaultPort)
		if err != nil {
			if len(hosts) > 1 {
				return fmt.Errorf("host %d of %d: %w", i+1, len(hosts), err)
			}
			return err
		}
		c.Addrs = append(c.Addrs, addr)
	}
	return nil
}

// parsePath sets c's database and, for Sentinel, master name from the
// path (without its leading '/'): /<db>, /<master-name>[/<db>], or nothing
// for a cluster.
func (c *Config) parsePath(path string) error {
	segs := strings.Split(path, "/")
	if path == "" {
		segs = nil
	}
	switch c.Mode {
	case Standalone:
		if len(segs) > 1 {
			return fmt.Errorf("path /%s: want /<db>", path)
		}
		if len(segs) == 1 && segs[0] != "" {
			db, err := parseDB(segs[0])
			if err != nil {
				return err
			}
			c.DB = db
		}
	case Sentinel:
		if len(segs) == 0 || segs[0] == "" {
			return errors.New("no master name; write redis+sentinel://host:26379/<master-name>[/db]")
		}
		if len(segs) > 2 || (len(segs) == 2 && segs[1] == "") {
			return fmt.Errorf("path /%s: want /<master-name>[/<db>]", path)
		}
		if !isMasterName(segs[0]) {
			return fmt.Errorf("master name %s: use letters, digits, '.', '-' and '_'", store.Quote(segs[0]))
		}
		c.MasterName = segs[0]
		if len(segs) == 2 {
			db, err := parseDB(segs[1])
			if err != nil {
				return err
			}
			c.DB = db
		}
	case Cluster:
		if len(segs) > 1 || (len(segs) == 1 && segs[0] != "" && segs[0] != "0") {
			return fmt.Errorf("path /%s: Redis Cluster has only database 0; leave the path out", path)
		}
	}
	return nil
}

// tlsConfig is the TLS configuration of a TLS URL, nil for another;
// caFile (tls_ca_file) is for TLS URLs only.
func (c *Config) tlsConfig(scheme, caFile string) (*tls.Config, error) {
	if !c.TLS {
		if caFile != "" {
			return nil, fmt.Errorf("query parameter tls_ca_file is only for TLS URLs (rediss://, rediss+sentinel://, rediss+cluster://), not %s://", scheme)
		}
		return nil, nil
	}
	// ServerName stays empty: crypto/tls then verifies each node against
	// the host it dialled, which a list of hosts needs.
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		var err error
		if cfg.RootCAs, err = loadCAFile(caFile); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// setOptions builds go-redis's options for c's mode.
func (c *Config) setOptions(user, password string, tlsConfig *tls.Config, p params) error {
	switch c.Mode {
	case Standalone:
		// goredis.ParseURL sees neither the credentials nor the query, so none
		// of its errors can echo a password.
		o, err := goredis.ParseURL("redis://" + c.Addrs[0] + "/" + strconv.Itoa(c.DB))
		if err != nil {
			return fmt.Errorf("address %s: %w", c.Addrs[0], err)
		}
		o.Username, o.Password = user, password
		o.TLSConfig = tlsConfig
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = p.dialTimeout, p.readTimeout, p.writeTimeout
		o.PoolSize, o.MaxRetries = p.poolSize, p.maxRetries
		o.DialerRetries, o.DialerRetryTimeout, o.MaxRetryBackoff = dialAttempts, dialRetryBackoff, maxRetryBackoff
		o.ContextTimeoutEnabled = true
		c.Standalone = o
	case Sentinel:
		c.Sentinel = &goredis.FailoverOptions{
			MasterName:            c.MasterName,
			SentinelAddrs:         c.Addrs,
			SentinelUsername:      p.sentinelUser,
			SentinelPassword:      p.sentinelPassword,
			Username:              user,
			Password:              password,
			DB:                    c.DB,
			TLSConfig:             tlsConfig,
			DialTimeout:           p.dialTimeout,
			ReadTimeout:           p.readTimeout,
			WriteTimeout:          p.writeTimeout,
			PoolSize:              p.poolSize,
			MaxRetries:            p.maxRetries,
			MaxRetryBackoff:       maxRetryBackoff,
			DialerRetries:         dialAttempts,
			DialerRetryTimeout:    dialRetryBackoff,
			ContextTimeoutEnabled: true,
		}
	case Cluster:
		c.Cluster = &goredis.ClusterOptions{
			Addrs:                 c.Addrs,
			Username:              user,
			Password:              password,
			TLSConfig:             tlsConfig,
			DialTimeout:           p.dialTimeout,
			ReadTimeout:           p.readTimeout,
			WriteTimeout:          p.writeTimeout,
			PoolSize:              p.poolSize,
			MaxRetries:            p.maxRetries,
			MaxRetryBackoff:       maxRetryBackoff,
			DialerRetries:         dialAttempts,
			DialerRetryTimeout:    dialRetryBackoff,
			ContextTimeoutEnabled: true,
		}
	}
	return nil
}

// NewClient returns a go-redis client for c: goredis.NewClient,
// goredis.NewFailoverClient or goredis.NewClusterClient. It does not connect.
func (c *Config) NewClient() goredis.UniversalClient {
	switch c.Mode {
	case Sentinel:
		return goredis.NewFailoverClient(c.Sentinel)
	case Cluster:
		return goredis.NewClusterClient(c.Cluster)
	default:
		return goredis.NewClient(c.Standalone)
	}
}

// String describes c without credentials, for logs.
func (c *Config) String() string {
	var b strings.Builder
	b.WriteString(string(c.Mode))
	if c.TLS {
		b.WriteString(" tls")
	}
	if c.Mode == Sentinel {
		b.WriteString(" master " + c.MasterName + " via")
	}
	b.WriteString(" " + strings.Join(c.Addrs, ","))
	if c.Mode != Cluster {
		b.WriteString(" db " + strconv.Itoa(c.DB))
	}
	if c.WaitReplicas > 0 {
		fmt.Fprintf(&b, " wait %d replicas %s", c.WaitReplicas, c.WaitTimeout)
	}
	return b.String()
}

type params struct {
	dialTimeout, readTimeout, writeTimeout time.Duration
	poolSize, maxRetries                   int
	sentinelUser, sentinelPassword         string
	tlsCAFile                              string
	waitReplicas                           int
	waitTimeout                            time.Duration // 0: not given
}

func parseQuery(query string, mode Mode) (params, error) {
	p := params{
		dialTimeout:  DefaultDialTimeout,
		readTimeout:  DefaultReadTimeout,
		writeTimeout: DefaultWriteTimeout,
	}
	if query == "" {
		return p, nil
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(query, "&") {
		if part == "" {
			continue
		}
		rawName, rawValue, hasValue := strings.Cut(part, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil || !isParamName(name) {
			// A name that is not a plain identifier may be a piece of a
			// password with an unescaped '&': do not quote it.
			return p, errors.New("a query parameter name is not a known parameter; percent-encode '&' and '=' in values")
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return p, fmt.Errorf("query parameter %s has an invalid %%-escape", name)
		}
		if seen[name] {
			return p, fmt.Errorf("query parameter %s given twice", name)
		}
		seen[name] = true
		if !hasValue || value == "" {
			return p, fmt.Errorf("query parameter %s needs a value", name)
		}
		switch name {
		case "dial_timeout":
			p.dialTimeout, err = parseParamDuration(name, value)
		case "read_timeout":
			p.readTimeout, err = parseParamDuration(name, value)
		case "write_timeout":
			p.writeTimeout, err = parseParamDuration(name, value)
		case "pool_size":
			p.poolSize, err = parseParamInt(name, value, 1, 10000)
		case "max_retries":
			p.maxRetries, err = parseParamInt(name, value, 0, 100)
			if err == nil && p.maxRetries == 0 {
				p.maxRetries = -1 // go-redis: -1 disables retries, 0 means its default
			}
		case "tls_ca_file":
			p.tlsCAFile = value
		case "sentinel_username", "sentinel_password":
			if mode != Sentinel {
				return p, fmt.Errorf("query parameter %s is only for redis+sentinel:// URLs", name)
			}
			if name == "sentinel_username" {
				p.sentinelUser = value
			} else {
				p.sentinelPassword = value
			}
		case "wait_replicas":
			p.waitReplicas, err = parseParamInt(name, value, 0, 100)
		case "wait_timeout":
			p.waitTimeout, err = parseParamDuration(name, value)
		default:
			return p, fmt.Errorf("unknown query parameter %q; known: dial_timeout, read_timeout, write_timeout, pool_size, max_retries, tls_ca_file, sentinel_username, sentinel_password, wait_replicas, wait_timeout", name)
		}
		if err != nil {
			return p, err
		}
	}
	switch {
	case p.waitTimeout > 0 && p.waitReplicas == 0:
		return p, errors.New("query parameter wait_timeout needs wait_replicas (the number of replicas to wait for)")
	case p.waitTimeout >= p.readTimeout:
		return p, fmt.Errorf("query parameter wait_timeout=%s must be shorter than read_timeout (%s): the wait is read like a reply", p.waitTimeout, p.readTimeout)
	case p.waitReplicas > 0 && p.waitTimeout == 0:
		p.waitTimeout = min(DefaultWaitTimeout, p.readTimeout/2)
	}
	return p, nil
}

func parseParamDuration(name, value string) (time.Duration, error) {
	d, err := time.ParseDuration(value)
	if err != nil || d <= 0 || d > time.Hour {
		return 0, fmt.Errorf("query parameter %s=%s: want a duration between 1ns and 1h, like 500ms or 2s", name, store.Quote(value))
	}
	return d, nil
}

func parseParamInt(name, value string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(value)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("query parameter %s=%s: want an integer from %d to %d", name, store.Quote(value), lo, hi)
	}
	return n, nil
}

// parseHostPort checks host[:port] (IPv6 in brackets) and returns it as
// host:port with defaultPort filled in. Its errors do not quote s: a URL
// missing its '@' puts "user:password" where the host goes.
func parseHostPort(s, defaultPort string) (string, error) {
	if s == "" {
		return "", errors.New("an empty host")
	}
	var host, port string
	hasPort := false
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", errors.New("missing ']' after an IPv6 address")
		}
		host = s[1:end]
		after := s[end+1:]
		switch {
		case after == "":
		case after[0] == ':':
			port, hasPort = after[1:], true
		default:
			return "", errors.New("want [ipv6]:port after an IPv6 address")
		}
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil || !strings.Contains(host, ":") {
			return "", errors.New("not an IPv6 address inside [ ]")
		}
	} else {
		if strings.Count(s, ":") > 1 {
			return "", errors.New("more than one ':' in a host; put IPv6 addresses in brackets, like [::1]:6379")
		}
		host, port, hasPort = strings.Cut(s, ":")
		if host == "" {
			return "", errors.New("an empty host name before ':'")
		}
		for i := 0; i < len(host); i++ {
			if !isNameByte(host[i]) {
				return "", errors.New("a host name may contain only letters, digits, '.', '-' and '_'")
			}
		}
	}
	if !hasPort {
		port = defaultPort
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", errors.New("the port must be a number from 1 to 65535")
	}
	return net.JoinHostPort(host, port), nil
}

func parseDB(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1<<20 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("database %s: want a number like 0", store.Quote(s))
	}
	return n, nil
}

func isSchemeText(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLower(c) && !isDigit(c) && c != '+' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isParamName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLower(c) && c != '_' {
			return false
		}
	}
	return true
}

func isMasterName(s string) bool {
	if len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

// isNameByte reports whether c may be part of a host name or a master name:
// a letter, a digit, '.', '-' or '_'.
func isNameByte(c byte) bool {
	return isLower(c) || 'A' <= c && c <= 'Z' || isDigit(c) || c == '.' || c == '-' || c == '_'
}

func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
