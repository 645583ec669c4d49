package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterMasters is the number of masters StartCluster runs; the 16384 hash
// slots are split evenly between them.
const clusterMasters = 3

// Cluster is a Redis Cluster of three masters without replicas.
type Cluster struct {
	// Nodes are the masters, in slot order: Nodes[0] serves the lowest slots.
	// Stop and Restart a node to take its slots offline and back.
	Nodes []*Server
}

// StartCluster runs three redis-server processes in cluster mode, assigns
// each a third of the hash slots, joins them and returns once every node
// reports cluster_state:ok and knows all three. The processes are killed
// when tb's test ends.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	c := &Cluster{}
	for i := 0; i < clusterMasters; i++ {
		s := newServer(tb, tb.TempDir(), nil) // a directory of its own for nodes.conf
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
		mustDo(tb, ctx, cl, "cluster", "set-config-epoch", i+1)
		mustDo(tb, ctx, cl, "cluster", "addslotsrange", lo, hi)
	}
	for _, n := range c.Nodes[1:] {
		mustDo(tb, ctx, clients[0], "cluster", "meet", "127.0.0.1", n.port, busPort(n))
	}
	for {
		ready := true
		for _, cl := range clients {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				tb.Fatalf("redistest: CLUSTER INFO: %v", err)
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
			tb.Fatalf("redistest: cluster did not reach cluster_state:ok: %v", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Addrs returns the host:port of every node.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL returns redis+cluster://host:port,host:port,host:port.
func (c *Cluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

func busPort(s *Server) string {
	for i, a := range s.extra {
		if a == "--cluster-port" && i+1 < len(s.extra) {
			return s.extra[i+1]
		}
	}
	return strconv.Itoa(s.port + 10000)
}

func mustDo(tb testing.TB, ctx context.Context, c *redis.Client, args ...any) {
	tb.Helper()
	if err := c.Do(ctx, args...).Err(); err != nil {
		tb.Fatalf("redistest: %s on %s: %v", strings.TrimSpace(fmt.Sprintln(args...)), c.Options().Addr, err)
	}
}
