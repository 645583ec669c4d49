package redis_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/direktiv/direktiv-authz/store/redis"
)

const urlPassword = "s3cr3t-Pa55word"

func TestParseURL(t *testing.T) {
	tests := []struct {
		url    string
		mode   redis.Mode
		tls    bool
		addrs  []string
		master string
		db     int
		user   string
		pass   string
	}{
		{url: "redis://localhost", mode: redis.Standalone, addrs: []string{"localhost:6379"}},
		{url: "redis://127.0.0.1:6380/3", mode: redis.Standalone, addrs: []string{"127.0.0.1:6380"}, db: 3},
		{url: "redis://:" + urlPassword + "@redis:6379/0", mode: redis.Standalone, addrs: []string{"redis:6379"}, pass: urlPassword},
		{url: "rediss://authz:" + urlPassword + "@redis.example.com:6380/", mode: redis.Standalone, tls: true, addrs: []string{"redis.example.com:6380"}, user: "authz", pass: urlPassword},
		{url: "REDIS://[::1]:7000", mode: redis.Standalone, addrs: []string{"[::1]:7000"}},
		{url: "redis://[::1]", mode: redis.Standalone, addrs: []string{"[::1]:6379"}},
		{url: "redis://u%3Ax:p%40ss%2Fw%3Ard@h", mode: redis.Standalone, addrs: []string{"h:6379"}, user: "u:x", pass: "p@ss/w:rd"},
		{url: "redis://:p@ss@h", mode: redis.Standalone, addrs: []string{"h:6379"}, pass: "p@ss"},
		{url: "redis+sentinel://s1,s2:26380,[fd00::1]/mymaster", mode: redis.Sentinel, addrs: []string{"s1:26379", "s2:26380", "[fd00::1]:26379"}, master: "mymaster"},
		{url: "redis+sentinel://app:" + urlPassword + "@s1:26379/my-master.1/2?sentinel_password=sp%26w&sentinel_username=sen", mode: redis.Sentinel, addrs: []string{"s1:26379"}, master: "my-master.1", db: 2, user: "app", pass: urlPassword},
		{url: "rediss+sentinel://s1/m", mode: redis.Sentinel, tls: true, addrs: []string{"s1:26379"}, master: "m"},
		{url: "redis+cluster://n1:7000,n2:7001,n3", mode: redis.Cluster, addrs: []string{"n1:7000", "n2:7001", "n3:6379"}},
		{url: "rediss+cluster://:" + urlPassword + "@n1:7000/?pool_size=20", mode: redis.Cluster, tls: true, addrs: []string{"n1:7000"}, pass: urlPassword},
		{url: "redis+cluster://n1:7000/0", mode: redis.Cluster, addrs: []string{"n1:7000"}},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			c, err := redis.ParseURL(tc.url)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			if c.Mode != tc.mode || c.TLS != tc.tls || !slices.Equal(c.Addrs, tc.addrs) || c.MasterName != tc.master || c.DB != tc.db {
				t.Fatalf("got mode %s tls %v addrs %v master %q db %d", c.Mode, c.TLS, c.Addrs, c.MasterName, c.DB)
			}
			if strings.Contains(c.String(), urlPassword) {
				t.Fatalf("String() shows the password: %s", c)
			}
			var user, pass string
			var tlsOn bool
			switch tc.mode {
			case redis.Standalone:
				o := c.Standalone
				if c.Sentinel != nil || c.Cluster != nil || o.Addr != tc.addrs[0] || o.DB != tc.db || !o.ContextTimeoutEnabled {
					t.Fatalf("standalone options %+v", o)
				}
				user, pass, tlsOn = o.Username, o.Password, o.TLSConfig != nil
			case redis.Sentinel:
				o := c.Sentinel
				if c.Standalone != nil || c.Cluster != nil || o.MasterName != tc.master || !slices.Equal(o.SentinelAddrs, tc.addrs) || o.DB != tc.db {
					t.Fatalf("sentinel options %+v", o)
				}
				if strings.Contains(tc.url, "sentinel_password") && (o.SentinelPassword != "sp&w" || o.SentinelUsername != "sen") {
					t.Fatalf("sentinel credentials %q/%q, want sen/sp&w", o.SentinelUsername, o.SentinelPassword)
				}
				user, pass, tlsOn = o.Username, o.Password, o.TLSConfig != nil
			case redis.Cluster:
				o := c.Cluster
				if c.Standalone != nil || c.Sentinel != nil || !slices.Equal(o.Addrs, tc.addrs) {
					t.Fatalf("cluster options %+v", o)
				}
				user, pass, tlsOn = o.Username, o.Password, o.TLSConfig != nil
			}
			if user != tc.user || pass != tc.pass || tlsOn != tc.tls {
				t.Fatalf("credentials %q/%q tls %v, want %q/%q tls %v", user, pass, tlsOn, tc.user, tc.pass, tc.tls)
			}
			cl := c.NewClient()
			_ = cl.Close()
		})
	}
}

func TestParseURLOptions(t *testing.T) {
	c, err := redis.ParseURL("redis://h/0")
	if err != nil {
		t.Fatal(err)
	}
	o := c.Standalone
	if o.DialTimeout != redis.DefaultDialTimeout || o.ReadTimeout != redis.DefaultReadTimeout || o.WriteTimeout != redis.DefaultWriteTimeout {
		t.Fatalf("default timeouts %s/%s/%s", o.DialTimeout, o.ReadTimeout, o.WriteTimeout)
	}
	c, err = redis.ParseURL("redis+cluster://h?dial_timeout=3s&read_timeout=250ms&write_timeout=1m&pool_size=7&max_retries=0")
	if err != nil {
		t.Fatal(err)
	}
	co := c.Cluster
	if co.DialTimeout != 3*time.Second || co.ReadTimeout != 250*time.Millisecond || co.WriteTimeout != time.Minute || co.PoolSize != 7 || co.MaxRetries != -1 {
		t.Fatalf("cluster options from the query: %+v", co)
	}
}

func TestParseURLErrors(t *testing.T) {
	p := urlPassword
	tests := []struct{ url, want string }{
		{"", "no scheme"},
		{"localhost:6379", "no scheme"},
		{"http://h", `unsupported scheme "http"`},
		{"unix:///tmp/redis.sock", `unsupported scheme "unix"`},
		{":" + p + "@h://x", "unsupported scheme;"},
		{"redis://", "no host"},
		{"redis:///0", "no host"},
		{"redis://:" + p + "@", "no host"},
		{"redis://h1,h2", "takes one host"},
		{"redis://h:0", "port must be a number"},
		{"redis://h:65536", "port must be a number"},
		{"redis://h:06379", "port must be a number"},
		{"redis://h:", "port must be a number"},
		{"redis://h:port", "port must be a number"},
		{"redis://:" + p, "empty host name"}, // "@host" forgotten: the password is where the host goes
		{"redis://user:" + p, "port must be a number"},
		{"redis://::1", "brackets"},
		{"redis://[::1", "missing ']'"},
		{"redis://[1.2.3.4]", "not an IPv6 address"},
		{"redis://[::1]x", "want [ipv6]:port"},
		{"redis://h%20x", "host name may contain only"},
		{"redis://h/x", `database "x"`},
		{"redis://h/-1", `database "-1"`},
		{"redis://h/0/1", "want /<db>"},
		{"redis://h#frag", "fragment"},
		{"redis://:" + p + "@h#frag", "fragment"},
		{"redis://user@h", "user name without a password"},
		{"redis://user:@h", "empty password"},
		{"redis://:p%zz" + p + "@h", "password has an invalid %-escape"},
		{"redis://us%zzer:" + p + "@h", "user name has an invalid %-escape"},
		{"redis://:pa/" + p + "@h", "percent-encode"},
		{"redis://:pa?" + p + "@h", "percent-encode"},
		{"redis://:" + p + "@h?x=1", `unknown query parameter "x"`},
		{"redis://h?dial_timeout=fast", "dial_timeout"},
		{"redis://h?read_timeout=-1s", "read_timeout"},
		{"redis://h?write_timeout=2h", "write_timeout"},
		{"redis://h?pool_size=0", "pool_size"},
		{"redis://h?max_retries=101", "max_retries"},
		{"redis://h?pool_size", "needs a value"},
		{"redis://h?pool_size=1&pool_size=2", "given twice"},
		{"redis://h?sentinel_password=" + p, "only for redis+sentinel"},
		{"redis+sentinel://s1", "no master name"},
		{"redis+sentinel://s1/", "no master name"},
		{"redis+sentinel://s1/m/0/x", "want /<master-name>[/<db>]"},
		{"redis+sentinel://s1/m/", "want /<master-name>[/<db>]"},
		{"redis+sentinel://s1/m%41", "master name"},
		{"redis+sentinel://s1/m/x", `database "x"`},
		{"redis+sentinel://s1,,s2/m", "host 2 of 3: an empty host"},
		{"redis+sentinel://s1/m?sentinel_password=a%zz", "sentinel_password has an invalid %-escape"},
		{"redis+sentinel://s1/m?sentinel_password=a&" + p + "=1", "not a known parameter"},
		{"redis+cluster://n1/1", "only database 0"},
		{"redis+cluster://n1,n2:x", "host 2 of 2: the port"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			_, err := redis.ParseURL(tc.url)
			if err == nil {
				t.Fatal("ParseURL succeeded")
			}
			if !strings.HasPrefix(err.Error(), "redis URL: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), urlPassword) {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
}

func TestParseURLWait(t *testing.T) {
	tests := []struct {
		url      string
		replicas int
		timeout  time.Duration
		want     string // error, "" for none
	}{
		{url: "redis://h", replicas: 0, timeout: 0},
		{url: "redis+sentinel://s1,s2,s3/mymaster/0?wait_replicas=1", replicas: 1, timeout: redis.DefaultWaitTimeout},
		{url: "redis+sentinel://s1/m?wait_timeout=100ms&wait_replicas=2", replicas: 2, timeout: 100 * time.Millisecond},
		{url: "redis://h?wait_replicas=1&read_timeout=300ms", replicas: 1, timeout: 150 * time.Millisecond},
		{url: "redis+cluster://n1,n2?wait_replicas=1&wait_timeout=1s&read_timeout=2s", replicas: 1, timeout: time.Second},
		{url: "redis://h?wait_replicas=0", replicas: 0, timeout: 0},
		{url: "redis://h?wait_timeout=1s", want: "wait_timeout needs wait_replicas"},
		{url: "redis://h?wait_replicas=1&wait_timeout=1s", want: "must be shorter than read_timeout"},
		{url: "redis://h?wait_replicas=1&wait_timeout=2s&read_timeout=1s", want: "must be shorter than read_timeout"},
		{url: "redis://h?wait_replicas=-1", want: "wait_replicas"},
		{url: "redis://h?wait_replicas=101", want: "wait_replicas"},
		{url: "redis://h?wait_replicas=1&wait_timeout=soon", want: "wait_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			c, err := redis.ParseURL(tc.url)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one saying %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.WaitReplicas != tc.replicas || c.WaitTimeout != tc.timeout {
				t.Fatalf("wait %d replicas %s, want %d %s", c.WaitReplicas, c.WaitTimeout, tc.replicas, tc.timeout)
			}
			if wantStr := "wait"; (tc.replicas > 0) != strings.Contains(c.String(), wantStr) {
				t.Fatalf("String() = %q", c)
			}
		})
	}
}
