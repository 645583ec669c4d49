package redis_test

import (
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/store/redis"
)

var urlSeeds = []string{
	"redis://localhost:6379/0",
	"rediss://user:pw@redis.example.com:6380/2?dial_timeout=1s",
	"redis://:p%40ss@[::1]:7000",
	"redis+sentinel://app:pw@s1:26379,s2,[fd00::1]:26380/mymaster/1?sentinel_password=x&read_timeout=200ms",
	"rediss+sentinel://s1/m",
	"redis+cluster://n1:7000,n2:7001,n3:7002?pool_size=20&max_retries=0",
	"rediss+cluster://:pw@n1",
	"redis://h:99999", "redis://[::1", "redis://a@b@c/d?e=f#g", "http://x", "",
}

// FuzzParseURL: any input either parses to one consistent client
// configuration or fails with a "redis URL:" error; nothing panics, and
// String never shows a password.
func FuzzParseURL(f *testing.F) {
	for _, s := range urlSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := redis.ParseURL(raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "redis URL: ") {
				t.Fatalf("error %q lacks the prefix", err)
			}
			return
		}
		if len(c.Addrs) == 0 {
			t.Fatal("no addresses")
		}
		var password string
		set := 0
		if c.Standalone != nil {
			set++
			password = c.Standalone.Password
		}
		if c.Sentinel != nil {
			set++
			password = c.Sentinel.Password
		}
		if c.Cluster != nil {
			set++
			password = c.Cluster.Password
		}
		if set != 1 {
			t.Fatalf("%d option sets for mode %s", set, c.Mode)
		}
		if len(password) >= 4 && strings.Contains(c.String(), password) {
			t.Fatalf("String() %q shows the password", c)
		}
	})
}

// FuzzParseURLNeverLeaksPassword puts a known password into URLs whose
// other parts are fuzzed: no error may contain it.
func FuzzParseURLNeverLeaksPassword(f *testing.F) {
	schemes := []string{"redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster", "http"}
	f.Add(uint8(0), "user", "h:6379", "/0", "")
	f.Add(uint8(2), "", "s1,s2:26380", "/master/1", "sentinel_password=x")
	f.Add(uint8(4), "u", "n1:7000,n2", "", "pool_size=x")
	f.Add(uint8(1), "u", "h:x", "/y", "z=1")
	f.Add(uint8(0), "u", "", "", "")
	f.Fuzz(func(t *testing.T, scheme uint8, user, hosts, path, query string) {
		for _, part := range []string{user, hosts, path, query} {
			if strings.Contains(part, urlPassword) {
				return
			}
		}
		for _, sep := range []string{"@", ":"} {
			raw := schemes[int(scheme)%len(schemes)] + "://" + user + sep + urlPassword + "@" + hosts + path
			if query != "" {
				raw += "?" + query
			}
			_, err := redis.ParseURL(raw)
			if err != nil && strings.Contains(err.Error(), urlPassword) {
				t.Fatalf("error %q shows the password of %q", err, raw)
			}
		}
	})
}
