package testutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisSentinelMaster is the name under which the sentinels of
// StartRedisSentinel monitor the master.
const RedisSentinelMaster = "mymaster"

// Sentinel settings: short, so that a failover in a test takes a few
// seconds. A sentinel calls the master down after sentinelDownAfter without
// an answer; two of the three must agree (the quorum) and a majority must
// elect one of them to run the failover. A failed election is retried after
// twice sentinelFailoverTimeout.
const (
	sentinelCount           = 3
	sentinelQuorum          = 2
	sentinelDownAfter       = 500 * time.Millisecond
	sentinelFailoverTimeout = 3 * time.Second
	sentinelReadyTimeout    = 30 * time.Second
)

// dataNodeArgs configure every data node: a replica's first sync starts at
// once instead of after redis-server's default five-second delay.
var redisDataNodeArgs = []string{"--repl-diskless-sync-delay", "0"}

// RedisSentinelOptions configures StartRedisSentinelWith.
type RedisSentinelOptions struct {
	// Replicas is how many replicas the master has; 0 means 1. After a
	// failover with one replica, the new master has none until the old one
	// is brought back (RestartAsReplica); with two, the sentinels make the
	// remaining replica follow the new master.
	Replicas int
}

// RedisSentinel is a Redis master with replicas, watched by three sentinels
// (quorum 2) under the name RedisSentinelMaster. Every process is killed when
// the test that started it ends. Its methods may be called from any goroutine.
type RedisSentinel struct {
	sentinels []*RedisServer

	mu     sync.Mutex
	nodes  []*RedisServer // the data nodes; nodes[0] started as the master
	master *RedisServer   // the master as the sentinels last reported it
}

// StartRedisSentinel runs a master, one replica and three sentinels on free
// ports and returns once the replica is in sync and every sentinel knows
// the master, the replica and the two other sentinels.
func StartRedisSentinel(tb testing.TB) *RedisSentinel {
	tb.Helper()
	return StartRedisSentinelWith(tb, RedisSentinelOptions{})
}

// StartRedisSentinelWith is StartRedisSentinel with options.
func StartRedisSentinelWith(tb testing.TB, opts RedisSentinelOptions) *RedisSentinel {
	tb.Helper()
	replicas := opts.Replicas
	if replicas <= 0 {
		replicas = 1
	}
	master := newRedisServer(tb, tb.TempDir(), nil)
	master.startOnFreePort(tb, func(int) []string { return redisDataNodeArgs })
	s := &RedisSentinel{nodes: []*RedisServer{master}, master: master}
	for i := 0; i < replicas; i++ {
		r := newRedisServer(tb, tb.TempDir(), nil)
		r.startOnFreePort(tb, func(int) []string { return replicaArgs(master) })
		s.nodes = append(s.nodes, r)
	}
	// The sentinels learn of the replicas from the master's INFO, which
	// they ask for on connecting and then every ten seconds: start them once
	// the replicas are attached, so that they see them at once.
	s.waitReady(tb, sentinelReadyTimeout, false)

	for i := 0; i < sentinelCount; i++ {
		dir := tb.TempDir()
		sen := newRedisServer(tb, dir, nil)
		sen.conf = filepath.Join(dir, "sentinel.conf")
		sen.startOnFreePort(tb, func(int) []string {
			// Written afresh for each attempt: a sentinel rewrites its file.
			conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
				"sentinel down-after-milliseconds %[1]s %[4]d\n"+
				"sentinel failover-timeout %[1]s %[5]d\n"+
				"sentinel parallel-syncs %[1]s 1\n",
				RedisSentinelMaster, master.port, sentinelQuorum,
				sentinelDownAfter.Milliseconds(), sentinelFailoverTimeout.Milliseconds())
			if err := os.WriteFile(sen.conf, []byte(conf), 0o600); err != nil {
				tb.Fatalf("testutil: writing %s: %v", sen.conf, err)
			}
			return []string{"--sentinel"}
		})
		s.sentinels = append(s.sentinels, sen)
	}
	s.WaitSynced(tb, sentinelReadyTimeout)
	return s
}

func replicaArgs(master *RedisServer) []string {
	return append(append([]string{}, redisDataNodeArgs...), "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
}

// URL returns redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster/0.
func (s *RedisSentinel) URL() string {
	return "redis+sentinel://" + strings.Join(s.SentinelAddrs(), ",") + "/" + RedisSentinelMaster + "/0"
}

// SentinelAddrs returns the host:port of each sentinel.
func (s *RedisSentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, sen := range s.sentinels {
		addrs[i] = sen.Addr()
	}
	return addrs
}

// Master returns the master as the sentinels last reported it: the first
// node until WaitFailover returns another.
func (s *RedisSentinel) Master() *RedisServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.master
}

// Replicas returns the data nodes other than Master, running or stopped.
func (s *RedisSentinel) Replicas() []*RedisServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*RedisServer
	for _, n := range s.nodes {
		if n != s.master {
			out = append(out, n)
		}
	}
	return out
}

// Replica returns the first of Replicas.
func (s *RedisSentinel) Replica() *RedisServer { return s.Replicas()[0] }

// KillMaster kills Master at once (SIGKILL) and returns it. Its data is
// lost, as after a crash without persistence.
func (s *RedisSentinel) KillMaster(tb testing.TB) *RedisServer {
	tb.Helper()
	m := s.Master()
	m.Stop(tb)
	return m
}

// WaitFailover returns the new master once every sentinel reports a master
// other than Master and that node says it is a master; it fails tb if that
// takes longer than timeout. Master returns the new master afterwards.
func (s *RedisSentinel) WaitFailover(tb testing.TB, timeout time.Duration) *RedisServer {
	tb.Helper()
	old := s.Master()
	clients := s.sentinelClients()
	defer closeSentinelClients(clients)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		addr, err := agreedMaster(ctx, clients, s.SentinelAddrs())
		if err == nil && addr == old.Addr() {
			err = fmt.Errorf("the sentinels still report %s", addr)
		}
		if err == nil {
			node := s.nodeAt(addr)
			if node == nil {
				tb.Fatalf("testutil: the sentinels report master %s, which is none of this deployment's nodes", addr)
			}
			if err = isMaster(ctx, node); err == nil {
				s.mu.Lock()
				s.master = node
				s.mu.Unlock()
				return node
			}
		}
		last = err
		select {
		case <-ctx.Done():
			tb.Fatalf("testutil: no failover from %s within %s: %v", old.Addr(), timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RestartAsReplica starts node, a stopped data node (such as the master
// KillMaster killed), again on its port as an empty replica of Master, as
// an operator or an orchestrator would bring a failed node back, and
// returns once it is in sync and the sentinels see it up (see WaitSynced).
func (s *RedisSentinel) RestartAsReplica(tb testing.TB, node *RedisServer) {
	tb.Helper()
	m := s.Master()
	if node == m {
		tb.Fatalf("testutil: %s is the master; RestartAsReplica restarts a replica or a failed master", node.Addr())
	}
	node.mu.Lock()
	node.extra = replicaArgs(m)
	node.mu.Unlock()
	node.Restart(tb)
	s.WaitSynced(tb, sentinelReadyTimeout)
}

// WaitSynced returns once Master has every running replica attached and in
// sync, and every sentinel reports Master as the master, sees each running
// replica up and knows the two other sentinels. It fails tb after timeout.
func (s *RedisSentinel) WaitSynced(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	s.waitReady(tb, timeout, true)
}

func (s *RedisSentinel) waitReady(tb testing.TB, timeout time.Duration, withSentinels bool) {
	tb.Helper()
	var clients []*redis.SentinelClient
	if withSentinels {
		clients = s.sentinelClients()
		defer closeSentinelClients(clients)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		err := s.replicated(ctx)
		if err == nil && withSentinels {
			err = s.sentinelsReady(ctx, clients)
		}
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("testutil: sentinel deployment not ready within %s: %v", timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// replicated checks that the master has every running replica online.
func (s *RedisSentinel) replicated(ctx context.Context) error {
	m := s.Master()
	info, err := nodeInfo(ctx, m)
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:master") {
		return fmt.Errorf("%s is not a master", m.Addr())
	}
	for _, r := range s.Replicas() {
		if !r.running() {
			continue
		}
		if !strings.Contains(info, ",port="+strconv.Itoa(r.port)+",state=online,") {
			return fmt.Errorf("replica %s is not online at master %s", r.Addr(), m.Addr())
		}
	}
	return nil
}

// sentinelsReady checks what every sentinel knows.
func (s *RedisSentinel) sentinelsReady(ctx context.Context, clients []*redis.SentinelClient) error {
	m := s.Master()
	for i, c := range clients {
		addr := s.sentinels[i].Addr()
		mi, err := c.Master(ctx, RedisSentinelMaster).Result()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL MASTER: %w", addr, err)
		}
		if got := net.JoinHostPort(mi["ip"], mi["port"]); got != m.Addr() || mi["flags"] != "master" {
			return fmt.Errorf("sentinel %s sees master %s flags %q, want %s up", addr, got, mi["flags"], m.Addr())
		}
		if mi["num-other-sentinels"] != strconv.Itoa(sentinelCount-1) {
			return fmt.Errorf("sentinel %s knows %s other sentinels, want %d", addr, mi["num-other-sentinels"], sentinelCount-1)
		}
		reps, err := c.Replicas(ctx, RedisSentinelMaster).Result()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL REPLICAS: %w", addr, err)
		}
		for _, r := range s.Replicas() {
			if !r.running() {
				continue
			}
			up := false
			for _, rep := range reps {
				if net.JoinHostPort(rep["ip"], rep["port"]) == r.Addr() {
					up = !strings.Contains(rep["flags"], "down") && !strings.Contains(rep["flags"], "disconnected")
				}
			}
			if !up {
				return fmt.Errorf("sentinel %s does not see replica %s up", addr, r.Addr())
			}
		}
	}
	return nil
}

func (s *RedisSentinel) nodeAt(addr string) *RedisServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

func (s *RedisSentinel) sentinelClients() []*redis.SentinelClient {
	clients := make([]*redis.SentinelClient, len(s.sentinels))
	for i, sen := range s.sentinels {
		clients[i] = redis.NewSentinelClient(&redis.Options{
			Addr: sen.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second,
		})
	}
	return clients
}

func closeSentinelClients(clients []*redis.SentinelClient) {
	for _, c := range clients {
		_ = c.Close()
	}
}

// agreedMaster returns the master address every sentinel reports, or an
// error if one does not answer or they disagree.
func agreedMaster(ctx context.Context, clients []*redis.SentinelClient, addrs []string) (string, error) {
	var agreed string
	for i, c := range clients {
		hp, err := c.GetMasterAddrByName(ctx, RedisSentinelMaster).Result()
		if err != nil {
			return "", fmt.Errorf("sentinel %s: %w", addrs[i], err)
		}
		if len(hp) != 2 {
			return "", fmt.Errorf("sentinel %s answered %q", addrs[i], hp)
		}
		addr := net.JoinHostPort(hp[0], hp[1])
		if agreed != "" && addr != agreed {
			return "", fmt.Errorf("the sentinels disagree: %s and %s", agreed, addr)
		}
		agreed = addr
	}
	return agreed, nil
}

func isMaster(ctx context.Context, n *RedisServer) error {
	info, err := nodeInfo(ctx, n)
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:master") {
		return fmt.Errorf("%s does not report role:master yet", n.Addr())
	}
	return nil
}

// nodeInfo returns INFO replication of n.
func nodeInfo(ctx context.Context, n *RedisServer) (string, error) {
	if !n.running() {
		return "", fmt.Errorf("%s is stopped", n.Addr())
	}
	c := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", fmt.Errorf("INFO replication on %s: %w", n.Addr(), err)
	}
	return info, nil
}

// running reports whether the process is up (not stopped by Stop).
func (s *RedisServer) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}
