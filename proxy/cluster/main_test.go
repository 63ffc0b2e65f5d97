package cluster

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// shared is the cluster the package's tests share (3 primaries, 3
// replicas). Tests that change it (failover) leave it stable and covered;
// none relies on which node serves which slot.
var shared *redistest.Cluster

func TestMain(m *testing.M) {
	// Fuzzing, and benchmarks of pure code, need no cluster; -short
	// skips the tests that do.
	need := true
	for _, a := range os.Args[1:] {
		if a == "-test.short=true" || a == "-test.short" {
			need = false
		}
	}
	if need {
		c, err := redistest.NewCluster()
		if err != nil {
			fmt.Fprintln(os.Stderr, "cluster tests:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "cluster tests: 3+3 node cluster ready in %v\n", c.StartupTime.Round(time.Millisecond))
		shared = c
	}
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

func needCluster(tb testing.TB) *redistest.Cluster {
	tb.Helper()
	if shared == nil {
		tb.Skip("no cluster with -short")
	}
	return shared
}

// anyNode returns a go-redis client for a live node of the shared cluster.
func anyNode(tb testing.TB) *redis.Client {
	tb.Helper()
	c := needCluster(tb)
	for _, n := range c.Nodes {
		if n.Alive() {
			return c.Client(n)
		}
	}
	tb.Fatal("no live node")
	return nil
}

func bg() context.Context { return context.Background() }
