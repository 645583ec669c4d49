package testutil_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/direktiv/direktiv-authz/internal/testutil"
)

// TestRedisSentinelFailsOver starts a master, a replica and three sentinels,
// kills the master and checks that the sentinels promote the replica, which
// kept the data, that a go-redis failover client follows, and that the old
// master comes back as a replica of the new one.
func TestRedisSentinelFailsOver(t *testing.T) {
	start := time.Now()
	s := testutil.StartRedisSentinel(t)
	t.Logf("started in %s", time.Since(start).Round(time.Millisecond))
	wantURL := "redis+sentinel://" + strings.Join(s.SentinelAddrs(), ",") + "/mymaster/0"
	if s.URL() != wantURL || len(s.SentinelAddrs()) != 3 {
		t.Fatalf("URL %s, want %s with three sentinels", s.URL(), wantURL)
	}
	oldMaster, replica := s.Master(), s.Replica()
	if oldMaster == replica || len(s.Replicas()) != 1 {
		t.Fatalf("master %s, replicas %d", oldMaster.Addr(), len(s.Replicas()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	fc := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: testutil.RedisSentinelMaster, SentinelAddrs: s.SentinelAddrs(),
		MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second,
	})
	defer fc.Close()
	if err := fc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the sentinels: %v", err)
	}
	if n, err := fc.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v; want the replica to acknowledge", n, err)
	}
	direct := func(srv *testutil.RedisServer) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	if got := direct(replica).Get(ctx, "k").Val(); got != "v" {
		t.Fatalf("GET k on the replica = %q, want v", got)
	}

	if killed := s.KillMaster(t); killed != oldMaster {
		t.Fatalf("KillMaster killed %s, want %s", killed.Addr(), oldMaster.Addr())
	}
	killedAt := time.Now()
	newMaster := s.WaitFailover(t, 30*time.Second)
	t.Logf("failover took %s", time.Since(killedAt).Round(time.Millisecond))
	if newMaster != replica || s.Master() != replica || s.Replica() != oldMaster {
		t.Fatalf("new master %s, want the replica %s", newMaster.Addr(), replica.Addr())
	}
	if got := direct(newMaster).Get(ctx, "k").Val(); got != "v" {
		t.Fatalf("GET k on the new master = %q, want v", got)
	}
	// The failover client finds the new master by itself.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fc.Set(ctx, "k2", "v2", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET through the sentinels after the failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Without a replica the new master cannot acknowledge WAIT 1.
	if n, err := fc.Wait(ctx, 1, 100*time.Millisecond).Result(); err != nil || n != 0 {
		t.Fatalf("WAIT 1 without replicas = %d, %v; want 0", n, err)
	}

	s.RestartAsReplica(t, oldMaster)
	info := direct(oldMaster).Info(ctx, "replication").Val()
	if !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_port:"+strconv.Itoa(newMaster.Port())) {
		t.Fatalf("the old master after RestartAsReplica:\n%s", info)
	}
	if got := direct(oldMaster).Get(ctx, "k2").Val(); got != "v2" {
		t.Fatalf("GET k2 on the restarted node = %q, want v2 (synced from the new master)", got)
	}
	if n, err := fc.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 with the old master back as a replica = %d, %v", n, err)
	}
}

// TestRedisSentinelTwoReplicas: with two replicas, the remaining one follows
// the new master after a failover, so writes are replicated again without
// anyone's help.
func TestRedisSentinelTwoReplicas(t *testing.T) {
	s := testutil.StartRedisSentinelWith(t, testutil.RedisSentinelOptions{Replicas: 2})
	if n := len(s.Replicas()); n != 2 {
		t.Fatalf("%d replicas, want 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	old := s.KillMaster(t)
	m := s.WaitFailover(t, 30*time.Second)
	if m == old {
		t.Fatal("WaitFailover returned the killed master")
	}
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := c.Wait(ctx, 1, time.Second).Result()
		if err == nil && n == 1 {
			break
		}
		if err == nil {
			err = errors.New("no replica acknowledged")
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAIT 1 after the failover: %v", err)
		}
	}
}
