package testutil

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisClusterMasters is the number of masters StartRedisCluster runs; the
// 16384 hash slots are split evenly between them.
const redisClusterMasters = 3

// RedisCluster is a Redis Cluster of three masters without replicas.
type RedisCluster struct {
	// Nodes are the masters, in slot order: Nodes[0] serves the lowest slots.
	// Stop and Restart a node to take its slots offline and back.
	Nodes []*RedisServer
}

// StartRedisCluster runs three redis-server processes in cluster mode, assigns
// each a third of the hash slots, joins them and returns once every node
// reports cluster_state:ok and knows all three. The processes are killed
// when tb's test ends.
func StartRedisCluster(tb testing.TB) *RedisCluster {
	tb.Helper()
	c := &RedisCluster{}
	for i := 0; i < redisClusterMasters; i++ {
		s := newRedisServer(tb, tb.TempDir(), nil) // a directory of its own for nodes.conf
		s.startOnFreePort(tb, func(int) []string {
			return []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "2000",
				// The bus port is chosen too, not left at port+10000,
				// which may be taken.
				"--cluster-port", strconv.Itoa(freePort(tb)),
			}
		})
		c.Nodes = append(c.Nodes, s)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := make([]*redis.Client, len(c.Nodes))
	for i, n := range c.Nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.Addr(), Protocol: 2})
		defer clients[i].Close()
	}
	const slots = 16384
	for i, cl := range clients {
		lo, hi := i*slots/len(clients), (i+1)*slots/len(clients)-1
		// Distinct epochs up front, as redis-cli --cluster create does, so
		// the nodes need not resolve epoch collisions.
		mustDoRedis(tb, ctx, cl, "cluster", "set-config-epoch", i+1)
		mustDoRedis(tb, ctx, cl, "cluster", "addslotsrange", lo, hi)
	}
	for _, n := range c.Nodes[1:] {
		mustDoRedis(tb, ctx, clients[0], "cluster", "meet", "127.0.0.1", n.port, busPort(n))
	}
	for {
		ready := true
		for _, cl := range clients {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				tb.Fatalf("testutil: CLUSTER INFO: %v", err)
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				ready = false
			}
		}
		if ready {
			return c
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("testutil: cluster did not reach cluster_state:ok: %v", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Addrs returns the host:port of every node.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL returns redis+cluster://host:port,host:port,host:port.
func (c *RedisCluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

func busPort(s *RedisServer) string {
	for i, a := range s.extra {
		if a == "--cluster-port" && i+1 < len(s.extra) {
			return s.extra[i+1]
		}
	}
	return strconv.Itoa(s.port + 10000)
}

func mustDoRedis(tb testing.TB, ctx context.Context, c *redis.Client, args ...any) {
	tb.Helper()
	if err := c.Do(ctx, args...).Err(); err != nil {
		tb.Fatalf("testutil: %s on %s: %v", strings.TrimSpace(fmt.Sprintln(args...)), c.Options().Addr, err)
	}
}
